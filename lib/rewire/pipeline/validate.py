"""Validate ``params.yaml`` against every experiment's schema before anything runs.

``python -m rewire.pipeline.validate check`` is the first DVC stage (``validate_params``). For every
experiment of :mod:`rewire.experiments.registry` it builds the experiment's ``Config`` from its
block at the active scale (``--all-scales``: at every scale), which checks every key, type and
range (:meth:`rewire.experiments.schema.ExperimentConfig.from_values`), and it checks that the
notebook's parameters cell names only ``Config`` fields (plus the reserved ``scale``, ``out_dir``,
``checkpoint_dir`` and ``data_root``). A bad value stops ``dvc repro`` before the first training,
with the field's path, the value, the valid range and an example; nothing is written.

On success it writes, with ``--blocks DIR``, each stage's resolved block at the active scale to
``DIR/<stage>.yaml``: the file the stage depends on, so a changed value reruns only the stages
whose block changed, and ``dvc exp show`` tracks ``scale`` only (see ``dvc.yaml``).

The schema is the experiment's own (``registry.config_class``); this module imports no experiment.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

import yaml

from rewire.experiments import registry
from rewire.experiments.schema import ConfigError, config_fields
from rewire.pipeline.params import (
    SCALES,
    ParamsError,
    active_scale,
    check_values,
    load,
    notebook_parameters,
    source,
)

# Keys the pipeline injects into every notebook: where a stage reads and writes, not what it computes.
RESERVED = ("scale", "out_dir", "checkpoint_dir", "data_root")

# Parameters every notebook stage receives from the stage runner.
NOTEBOOK_MUST_DECLARE = ("scale", "out_dir")

# params.yaml blocks that run an experiment under another name (the Makefile's robust-imagenet100).
VARIANTS = {"robust_binary_imagenet100": "robust_binary"}


def experiment_of(block: str) -> str:
    """The registered experiment whose schema checks ``block`` (a stage name or a variant's block)."""
    name = VARIANTS.get(block, block)
    if name not in registry.EXPERIMENTS:
        raise ParamsError(
            f"params.yaml block '{block}' is not an experiment; known: {', '.join(registry.names())} "
            f"(python -m rewire list)"
        )
    return name


def schema(experiment: str) -> type:
    """The experiment's ``Config`` (its package's, through the registry); ParamsError when it has none."""
    try:
        return registry.config_class(experiment)
    except (ImportError, TypeError) as error:
        raise ParamsError(
            f"experiment '{experiment}' exposes no schema ({type(error).__name__}: {error}); its package "
            f"{registry.entry(experiment).package} must export Config (rewire.experiments.base)"
        ) from error


# ---------------------------------------------------------------------------- the stages of dvc.yaml


def stage_commands(dvc_yaml: str | os.PathLike = "dvc.yaml") -> dict[str, list[str]]:
    """Every stage of ``dvc.yaml`` and the words of its command."""
    stages = yaml.safe_load(Path(dvc_yaml).read_text(encoding="utf-8"))["stages"]
    return {name: shlex.split(s["cmd"]) if isinstance(s.get("cmd"), str) else [] for name, s in stages.items()}


def notebook_stages(dvc_yaml: str | os.PathLike = "dvc.yaml") -> list[tuple[str, Path, str, dict[str, str]]]:
    """``(stage, notebook, params block, --set values)`` of every notebook stage of ``dvc.yaml``."""
    found = []
    for name, words in stage_commands(dvc_yaml).items():
        if words[:3] == ["python", "-m", "rewire.pipeline"]:
            block = words[words.index("--stage") + 1]
            fixed = dict(w.partition("=")[::2] for w in (words[i + 1] for i, x in enumerate(words) if x == "--set"))
            found.append((name, Path(dvc_yaml).parent / words[3], block, fixed))
    return found


# ---------------------------------------------------------------------------- one block


def check_notebook_names(declared: dict[str, Any], config_class: type, notebook: str | os.PathLike) -> None:
    """Refuse a notebook parameter that is neither a field of the schema nor a reserved key."""
    known = set(config_fields(config_class)) | set(getattr(config_class, "IGNORED", ())) | set(RESERVED)
    unknown = sorted(set(declared) - known)
    if unknown:
        raise ParamsError(
            f"{notebook}: parameter{'s' if len(unknown) > 1 else ''} {', '.join(repr(u) for u in unknown)} "
            f"{'are' if len(unknown) > 1 else 'is'} not a field of {config_class.__module__}.{config_class.__name__}; "
            f"add the field (with its range and an example) to the schema, or remove the parameter"
        )


def check_block(
    block: str,
    values: dict[str, Any],
    where: str,
    notebook: str | os.PathLike | None = None,
    declared: dict[str, Any] | None = None,
) -> Any:
    """Check ``values`` (a block of ``params.yaml``) against its experiment's schema and, for a notebook
    stage, its notebook's parameters cell. Return the built config.

    Raises :class:`ParamsError` (names the file, the block and the fix) or :class:`ConfigError` (the
    field's path, the value, the valid range and an example).
    """
    if notebook is not None and declared is None:
        declared = notebook_parameters(notebook)
    if declared is not None:
        for reserved in NOTEBOOK_MUST_DECLARE:
            if reserved not in declared:
                raise ParamsError(
                    f"{notebook} must declare '{reserved}' in its parameters cell, "
                    f"e.g. {reserved}: str = {'smoke' if reserved == 'scale' else ''!r}"
                )
        check_values(values, declared, where=where)  # the notebook receives every key of the block
    config_class = schema(experiment_of(block))
    if declared is not None:
        check_notebook_names(declared, config_class, notebook)
    return config_class.from_values(values, where=where)


# ---------------------------------------------------------------------------- the whole pipeline


def check_pipeline(
    params_path: str | os.PathLike = "params.yaml",
    dvc_yaml: str | os.PathLike = "dvc.yaml",
    scale: str | None = None,
    all_scales: bool = False,
) -> dict[str, Any]:
    """Check every experiment's block at the active scale (or every scale); return what was checked::

    {"scale": "cpu", "checked": {"cpu": {"quickstart": "rewire.experiments.quickstart.config.Config", ...}},
     "blocks": {"quickstart": {"scale": "cpu", "block": "quickstart", "values": {...}}, ...}}

    ``blocks`` are the active scale's resolved blocks by stage (a stage's ``--set`` values included).
    """
    params = load(params_path)
    active = active_scale(params, scale, where=str(params_path))
    scales = [s for s in SCALES if isinstance(params.get(s), dict)] if all_scales else [active]
    notebooks = {block: (nb, fixed) for _, nb, block, fixed in notebook_stages(dvc_yaml)}
    declared_cache: dict[Path, dict[str, Any]] = {}
    checked: dict[str, dict[str, str]] = {}
    problems: list[str] = []
    for current in scales:
        checked[current] = {}
        blocks = params[current]
        missing = [name for name in registry.names() if name not in blocks]
        if missing:
            raise ParamsError(
                f"{params_path}: '{current}' has no block for {', '.join(missing)}; copy the block of another scale"
            )
        for block, values in blocks.items():
            where = f"{source(params_path)} '{current}.{block}'"
            if not isinstance(values, dict):
                problems.append(f"{where} must be a mapping of the experiment's fields")
                continue
            notebook, fixed = notebooks.get(block, (None, {}))
            if notebook is not None and notebook not in declared_cache:
                declared_cache[notebook] = notebook_parameters(notebook)
            try:
                config = check_block(
                    block, {**values, **fixed}, where, notebook, declared_cache.get(notebook) if notebook else None
                )
            except (ParamsError, ConfigError) as error:
                problems.append(str(error))
                continue
            checked[current][block] = f"{type(config).__module__}.{type(config).__name__}"
    if problems:  # every bad block at once, so one run of the check names everything to fix
        raise ParamsError("\n".join(problems))
    return {"scale": active, "checked": checked, "blocks": stage_blocks(params, active, dvc_yaml)}


def stage_blocks(params: dict[str, Any], scale: str, dvc_yaml: str | os.PathLike = "dvc.yaml") -> dict[str, Any]:
    """Every stage's resolved block at ``scale`` (:func:`stage_block`), its ``--set`` values included."""
    blocks = params[scale]
    resolved = {}
    for stage, words in stage_commands(dvc_yaml).items():
        block = stage_block(stage, words)
        if block in blocks:
            fixed = dict(w.partition("=")[::2] for w in (words[i + 1] for i, x in enumerate(words) if x == "--set"))
            resolved[stage] = {"scale": scale, "block": block, "values": {**blocks[block], **fixed}}
    return resolved


def stage_block(stage: str, words: list[str]) -> str:
    """The params.yaml block a stage's command reads: its ``--stage``, else the experiment its
    ``python -m rewire.experiments.<name>`` runs (e.g. ``dpf_runs`` reads ``dpf_sweeps``), else its name."""
    if "--stage" in words:
        return words[words.index("--stage") + 1]
    if words[:2] == ["python", "-m"] and words[2].startswith("rewire.experiments."):
        return words[2].split(".")[2]
    return stage


def write_blocks(blocks: dict[str, Any], directory: str | os.PathLike) -> list[Path]:
    """``directory/<stage>.yaml`` for every stage: what the stage's DVC dependency hashes."""
    from rewire.io import write_text

    written = []
    for stage, resolved in blocks.items():
        path = Path(directory) / f"{stage}.yaml"
        header = f"# written by `python -m rewire.pipeline.validate check`: the block stage '{stage}' runs with\n"
        write_text(path, header + yaml.safe_dump(resolved, sort_keys=False, default_flow_style=None, width=110))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m rewire.pipeline.validate",
        description="Validate params.yaml against every experiment's schema before any runs.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="check every experiment's block at the active scale (or every scale)")
    check.add_argument("--params", default="params.yaml")
    check.add_argument("--dvc-yaml", default="dvc.yaml")
    check.add_argument("--scale", default=None)
    check.add_argument("--all-scales", action="store_true", help="check the smoke, cpu and paper blocks")
    check.add_argument("--out", default=None, help="write what was checked as JSON (the DVC stage's output)")
    check.add_argument("--blocks", default=None, help="write each stage's resolved block to DIR/<stage>.yaml")
    args = parser.parse_args(argv)
    try:
        checked = check_pipeline(args.params, args.dvc_yaml, args.scale, args.all_scales)
    except (ParamsError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        print("nothing was written; fix params.yaml (or the notebook named) and run again", file=sys.stderr)
        return 2
    if args.blocks:
        write_blocks(checked["blocks"], args.blocks)
    if args.out:
        from rewire.io import write_json

        write_json(args.out, {"scale": checked["scale"], "checked": checked["checked"]})
    scales = ", ".join(checked["checked"])
    print(f"{args.params}: every experiment valid at scale{'s' if len(checked['checked']) > 1 else ''} {scales}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
