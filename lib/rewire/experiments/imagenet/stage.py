"""The ImageNet tables as one DVC stage: ``python -m rewire.experiments.imagenet --out results/imagenet``.

Reads the ``imagenet`` block of ``params.yaml`` at the active scale (checked against
:class:`~rewire.experiments.imagenet.config.Config` before any work), trains (or finds) the planned runs and
writes the report (:mod:`~rewire.experiments.imagenet.report`). Every row is a run of the run engine (hashed,
resumable, found again), so a killed stage resumes. Under ``torchrun`` every rank trains each run
data-parallel and rank 0 writes the results::

    torchrun --standalone --nproc_per_node 4 -m rewire.experiments.imagenet --out results/imagenet
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rewire.experiments import scales
from rewire.experiments.base import RunContextSpec
from rewire.experiments.imagenet.config import Config
from rewire.experiments.imagenet.report import report
from rewire.experiments.imagenet.runs import run

__all__ = ["run_stage", "block", "main"]

PROG = "python -m rewire.experiments.imagenet"


def run_stage(values: dict[str, Any], scale: str, out: Path, checkpoints: Path, *, distributed=None) -> dict:
    """Check ``values`` (a ``params.yaml`` block), train what it lists, write the tables; returns the metrics
    (``{}`` on a rank other than 0). Bad input stops before any file is written."""
    from rewire.reporting.results import run_label

    config = Config.from_values(values, where=f"params.yaml '{scale}.imagenet'")
    context = RunContextSpec(checkpoint_root=checkpoints)
    outcome = run(config, context=context, distributed=distributed)
    if not outcome.extra["main_process"]:
        return {}
    label = run_label(scale=scale, seeds=config.seeds, data_source=outcome.data_source, device=outcome.extra["device"])
    return report(config, outcome, out, label)


def block(params_path: str, scale: str | None = None) -> tuple[str, dict[str, Any]]:
    """``(scale, the imagenet block)`` at ``scale`` (default: ``params.yaml``'s ``scale``): the blocks of
    ``scales.yaml`` with ``params.yaml``'s overrides (:mod:`rewire.experiments.scales`)."""
    return scales.stage_values("imagenet", params_path, scale)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/imagenet")
    parser.add_argument("--checkpoints", default="checkpoints/imagenet")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--scale", default=None, help="default: the active scale of params.yaml")
    args = parser.parse_args(argv)
    from rewire.data.imagefolder import ImageFolderLayoutError
    from rewire.train.distributed import init_from_env, shutdown

    try:
        scale, values = block(args.params, args.scale)
        Config.from_values(values, where=f"{args.params} '{scale}.imagenet'")  # before joining any job
        context = init_from_env()
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        run_stage(values, scale, out, Path(args.checkpoints), distributed=context)
    except (ValueError, TypeError, ImageFolderLayoutError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        shutdown()
        return 2
    shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
