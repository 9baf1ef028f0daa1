"""The DPF sweep's command line: every point of a scale's grid (the DVC stage ``dpf_runs``), or one point.

    python -m rewire.experiments.dpf_sweeps --grid --part 1 --out results/dpf_runs
    python -m rewire.experiments.dpf_sweeps --method dpf --sparsity 0.9 --out results/dpf_runs/dpf-0.9

Each point's ``run.json`` (every seed) is written atomically into its own directory; the notebook
``03_dpf_sweeps.ipynb`` reads them. ``python -m rewire plan dpf_sweeps --scale cpu`` lists the runs.
A grid entry's ``part`` says which stage trains it: ``--part 2`` runs only those and writes them under
``<out>_2`` (:func:`~rewire.experiments.dpf_sweeps.config.part_dir`), with ``part.json`` listing them;
``--grid`` alone runs every part.
"""

from __future__ import annotations

import argparse
import signal
import sys

from rewire.data.datasets import CorruptDataError, DataNotFoundError
from rewire.experiments import scales as params_module
from rewire.experiments.base import RunContextSpec, RunSpec
from rewire.experiments.dpf_sweeps.config import METHODS, Config, GridPoint, Recipe, part_dir
from rewire.experiments.dpf_sweeps.runs import run_points, write_point
from rewire.io import write_json
from rewire.sparse.groups import check_sparsity
from rewire.train import checkpoint as checkpoint_module

__all__ = ["main", "STAGE"]

STAGE = "dpf_sweeps"
PART_FILE = "part.json"  # --grid --part N: the points of that part (the stage's output even where it has none)


def _todo(args, values: dict, where: str) -> tuple[list[GridPoint], bool]:
    if args.grid:
        if args.method or args.sparsity is not None:
            raise ValueError("--grid runs the whole grid; leave out --method and --sparsity")
        points = Config.from_values(values, where=where).points()
        return [p for p in points if args.part is None or p.part == args.part], True
    if args.part is not None:
        raise ValueError("--part selects part of the grid; use it with --grid")
    if args.method is None or args.sparsity is None:
        raise ValueError("give --method and --sparsity (one point), or --grid (the scale's whole grid)")
    if args.method not in METHODS:
        raise ValueError(f"unknown method {args.method!r}; known methods: {', '.join(METHODS)}")
    sparsity = 0.0 if args.method == "dense" else check_sparsity(args.sparsity)
    return [GridPoint(args.method, sparsity, Recipe.from_params(values))], False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rewire.experiments.dpf_sweeps", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--grid", action="store_true", help="run every point of the scale's `grid` (the DVC stage)")
    parser.add_argument(
        "--part", type=_part, help="with --grid: only the entries of this part (1: stage dpf_runs, 2: dpf_runs_2)"
    )
    parser.add_argument("--method", help=f"one point: one of {', '.join(METHODS)}")
    parser.add_argument("--sparsity", type=float, help="one point: target sparsity over the pruned layers, e.g. 0.9")
    parser.add_argument(
        "--out",
        required=True,
        help="one point: directory for its run.json; --grid: the runs directory (one sub-directory per point)",
    )
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--stage", default=STAGE, help="the params.yaml block holding the recipe")
    parser.add_argument("--scale", default=None, help="override params.yaml's scale (smoke, cpu, gpu, paper)")
    parser.add_argument("--data-root", default="data")
    # the same folder as `python -m rewire run dpf_sweeps`, so either finds the other's runs
    parser.add_argument("--checkpoints", default="checkpoints/dpf_sweeps")
    parser.add_argument(
        "--reuse-checkpoints",
        action="store_true",
        help="reuse runs trained by other code (same settings) instead of training again; recorded",
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)  # a killed stage leaves no half-written run.json
    try:
        scale, values = params_module.stage_values(args.stage, args.params, args.scale)
        todo, whole_grid = _todo(args, values, f"{args.params} '{scale}.{args.stage}'")
        from rewire.reporting import results

        context = RunContextSpec(
            data_root=args.data_root, checkpoint_root=args.checkpoints, reuse_checkpoints=args.reuse_checkpoints or None
        )
        device = context.resolved_device()
        prepared: dict = {}
        for index, point in enumerate(todo, 1):
            if len(todo) > 1:
                print(f"[{index}/{len(todo)}] {point.name}", file=sys.stderr, flush=True)
            specs = [RunSpec(point.name, seed, f"{point.name}-seed{seed}") for seed in point.recipe.seeds]
            outcome = run_points([point], specs, context, prepared)
            (found,) = outcome.runs
            label = results.run_label(
                scale=scale, seeds=point.recipe.seeds, data_source=outcome.data_source, device=device
            )
            path = write_point(point.directory(args.out) if whole_grid else args.out, found, label)
            top1 = ", ".join(f"{r['test_top1']:.2f}" for r in found["runs"])
            print(f"{point.name}: test top-1 {top1} -> {path}")
        if whole_grid and args.part is not None:
            listing = part_dir(args.out, args.part) / PART_FILE
            write_json(listing, {"part": args.part, "scale": scale, "points": [p.name for p in todo]})
            print(f"part {args.part}: {len(todo)} point(s) -> {listing}")
    except (
        params_module.ParamsError,
        ValueError,
        TypeError,
        FileNotFoundError,
        checkpoint_module.CheckpointError,
        DataNotFoundError,
        CorruptDataError,
    ) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"error: interrupted; nothing was written to {args.out} (finished epochs resume from {args.checkpoints})",
            file=sys.stderr,
        )
        return 130
    return 0


def _part(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"--part must be a whole number >= 1 (a grid entry's `part`), got {text!r}")
    return int(text)


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt(f"received signal {signum}")
