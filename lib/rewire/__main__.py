"""One command line for every experiment.

    python -m rewire list                                   the experiments
    python -m rewire plan robust_binary --scale cpu         the runs a scale asks for (nothing trains)
    python -m rewire run robust_binary --scale cpu [--only ours_p01]
                                                            train (or find by hash) those runs
    python -m rewire validate [--scale cpu]                 check every block of params.yaml

The config is the experiment's block of ``params.yaml`` at the scale, checked against the
experiment's schema before any work; ``--set FIELD=YAML`` overrides one field (e.g. ``--set
epochs=3``). Runs land in ``checkpoints/<experiment>/`` and are found again by the notebook stage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main", "load_config"]


def load_config(experiment: str, scale: str | None = None, params_path: str = "params.yaml", overrides=None):
    """The experiment's typed config at ``scale`` (default: params.yaml's ``scale``), overrides applied."""
    from rewire.experiments import registry
    from rewire.experiments import scales as params_module

    registry.entry(experiment)  # an unknown experiment is refused before any file is read
    scale, values = params_module.stage_values(experiment, params_path, scale)
    values = {**values, **(overrides or {})}
    config_class = registry.config_class(experiment)
    return scale, config_class.from_values(values, where=f"{params_path} '{scale}.{experiment}'")


def _overrides(items: list[str], parser: argparse.ArgumentParser) -> dict:
    import yaml

    found = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            parser.error(f"--set takes FIELD=VALUE (a YAML value), got {item!r}")
        found[name] = yaml.safe_load(text)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rewire", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the experiments, their stages and notebooks")
    for name, text in (("plan", "list the runs a scale asks for"), ("run", "train (or find) the planned runs")):
        command = sub.add_parser(name, help=text)
        command.add_argument("experiment")
        command.add_argument("--scale", default=None, help="smoke, cpu, gpu or paper (default: params.yaml's scale)")
        command.add_argument("--params", default="params.yaml")
        command.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a field")
        command.add_argument("--only", action="append", default=None, metavar="ROW", help="only this row; repeatable")
        if name == "run":
            command.add_argument("--data-root", default="data")
            command.add_argument("--checkpoints", default="checkpoints", help="root of the run directories")
            command.add_argument("--reuse-checkpoints", action="store_true", help="reuse runs of other code (recorded)")
    validate = sub.add_parser("validate", help="check every experiment's block of params.yaml")
    validate.add_argument("--scale", default=None)
    validate.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)

    from rewire.experiments import registry
    from rewire.experiments.schema import ConfigError
    from rewire.pipeline.params import ParamsError
    from rewire.train.checkpoint import CheckpointError

    try:
        if args.command == "list":
            for e in registry.EXPERIMENTS.values():
                print(f"{e.name:15s} {e.notebook or '(no notebook)':34s} {e.title}")
            return 0
        if args.command == "validate":
            from rewire.pipeline.validate import check_pipeline

            checked = check_pipeline(args.params, scale=args.scale)
            print(f"{args.params}: every experiment valid at scale '{checked['scale']}'")
            return 0
        from rewire.experiments.base import RunContextSpec, select_rows

        scale, config = load_config(args.experiment, args.scale, args.params, _overrides(args.set, parser))
        module = registry.load(args.experiment)
        specs = select_rows(module.plan(config), args.only)
        if args.command == "plan":
            for spec in specs:
                print(f"{spec.row:28s} seed {spec.seed:<3d} {spec.name}")
            print(f"{len(specs)} runs at scale '{scale}'")
            return 0
        context = RunContextSpec(
            data_root=args.data_root,
            checkpoint_root=Path(args.checkpoints) / args.experiment,
            reuse_checkpoints=args.reuse_checkpoints or None,
        )
        outcome = module.run(config, context=context, only=args.only)
        print(f"{args.experiment}: {len(outcome.runs)} runs done at scale '{scale}'")
        return 0
    except (ConfigError, ParamsError, CheckpointError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
