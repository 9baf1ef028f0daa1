"""Training the ImageNet tables' runs through the run engine (:func:`rewire.experiments.engine.fit_run`).

The images come from a folder (:mod:`rewire.data.imagefolder`), decoded batch by batch, so each run builds
its own folder loaders (:func:`rewire.experiments.imagenet.folders.make_loaders`) and calls ``fit_run``
with ``code=(RUNS_MODULE,)``: this module and everything it imports (the DNW and DPF drivers) are in every
run's identity. Under ``torchrun`` every rank trains each run data-parallel and rank 0 writes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rewire.experiments.base import Outcome, RunContextSpec, RunSpec, select_rows
from rewire.experiments.imagenet import dnw, dpf
from rewire.experiments.imagenet.config import Config
from rewire.experiments.imagenet.folders import SYNTHETIC, write_synthetic_folder
from rewire.experiments.imagenet.plan import DNW, plan
from rewire.train.distributed import DistContext
from rewire.train.trainer import TrainingHparams

__all__ = ["RUNS_MODULE", "recipe", "run_one", "prepare_folder", "run"]

RUNS_MODULE = "rewire.experiments.imagenet.runs"
assert dnw.RUNS_MODULE == dpf.RUNS_MODULE == RUNS_MODULE


def recipe(spec: RunSpec, config: Config) -> TrainingHparams:
    """The run's recipe: DNW Section 3.2's (:func:`~.dnw.table3_hparams`) or DPF Appendix A.2's
    (:func:`~.dpf.hparams`), over ``config.epochs`` (``None``: the paper's)."""
    if spec.settings["table"] == DNW:
        return dnw.table3_hparams(config.epochs)
    return dpf.hparams(config.epochs)


def prepare_folder(config: Config, checkpoints: Path, distributed: DistContext | None = None) -> str:
    """The folder the runs read: ``config.data``, or for ``synthetic`` a generated one under ``checkpoints``
    (written once, by rank 0; the other ranks wait for it). ``""`` when the scale has none."""
    if config.data != SYNTHETIC:
        return config.data
    folder = Path(checkpoints) / "synthetic-folder"
    if (distributed is None or distributed.is_main) and not folder.exists():
        write_synthetic_folder(folder)
    if distributed is not None and distributed.distributed:
        from rewire.train.distributed import barrier

        barrier(distributed)
    return str(folder)


def run_one(
    spec: RunSpec,
    config: Config,
    folder: str,
    checkpoints: Path,
    *,
    distributed: DistContext | None = None,
    reuse_checkpoints: bool | None = None,
    progress: bool | None = None,
):
    """Train (or find by its hash) one planned run: a DNW Table 3 row (:func:`~.dnw.train_table3_row`, returns a
    :class:`~.dnw.Table3Result`) or a DPF Table 3 point (:func:`~.dpf.train_point`, returns its summary)."""
    options = {
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "num_workers": config.workers,
        "crop_size": config.crop_size_or_default,
        "resize_size": config.resize_size_or_default,
        "progress": progress,
        "distributed": distributed,
        "reuse_checkpoints": reuse_checkpoints,
        "seed": spec.seed,
    }
    if spec.settings["table"] == DNW:
        return dnw.train_table3_row(spec.settings["row"], folder, checkpoint_root=Path(checkpoints) / "dnw", **options)
    return dpf.train_point(
        spec.settings["method"],
        spec.settings["sparsity"],
        folder,
        checkpoint_root=Path(checkpoints) / "dpf",
        update_every=config.update_every,
        **options,
    )


def run(
    config: Config,
    *,
    context: RunContextSpec,
    only: str | list[str] | None = None,
    distributed: DistContext | None = None,
) -> Outcome:
    """Train (or find) the planned runs (``only``: those rows) on the scale's folder; return the outcome.

    ``distributed``: the torchrun job (default: :func:`rewire.train.distributed.init_from_env`, one process
    outside torchrun). ``Outcome.runs``: one summary per run; ``extra``: ``dnw`` (``(row, seed)`` ->
    :class:`~.dnw.Table3Result`), ``dpf`` (``(method, sparsity, seed)`` -> summary), ``trained_dnw_rows``,
    ``trained_dpf_points``, ``main_process`` and ``device``. A malformed folder stops before any run."""
    from rewire.data.imagefolder import scan_image_folder
    from rewire.train.distributed import init_from_env

    specs = select_rows(plan(config), only)
    distributed = init_from_env() if distributed is None else distributed
    checkpoints = Path(context.checkpoints("imagenet"))
    folder = prepare_folder(config, checkpoints, distributed) if config.data else ""
    trained_dnw: dict[tuple[str, int], Any] = {}
    trained_dpf: dict[tuple[str, float, int], dict[str, Any]] = {}
    if folder:
        index = scan_image_folder(folder)  # a malformed folder stops here with the expected layout
        source = index.source
        config.check_rows(index.num_classes)  # a Small classifier's budget depends on the class count
        for spec in specs:
            result = run_one(
                spec,
                config,
                folder,
                checkpoints,
                distributed=distributed,
                reuse_checkpoints=context.reuse_checkpoints,
                progress=context.progress,
            )
            if spec.settings["table"] == DNW:
                trained_dnw[(spec.row, spec.seed)] = result
            else:
                trained_dpf[(spec.settings["method"], spec.settings["sparsity"], spec.seed)] = result
    else:
        source = {"kind": "none", "description": "no ImageNet folder at this scale (params: imagenet.data)"}
    summaries = [r.summary() for r in trained_dnw.values()]
    summaries += [{k: v for k, v in s.items() if k != "result"} for s in trained_dpf.values()]
    extra = {
        "dnw": trained_dnw,
        "dpf": trained_dpf,
        "trained_dnw_rows": list(dict.fromkeys(key for key, _ in trained_dnw)),
        "trained_dpf_points": list(dict.fromkeys((m, s) for m, s, _ in trained_dpf)),
        "main_process": distributed.is_main,
        "device": distributed.device if distributed.distributed else context.resolved_device(),
    }
    return Outcome(runs=summaries, data_source=source, extra=extra)
