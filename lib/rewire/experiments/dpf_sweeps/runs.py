"""Training the DPF sweeps through the one run engine: :func:`recipe`, :func:`run_one` and :func:`run`.

:func:`run` trains (or finds by hash) every planned (point, seed) of a :class:`Config` and returns an
:class:`~rewire.experiments.base.Outcome` whose ``runs`` are the points as written to ``run.json``
(one per (method, sparsity) of the grid, every seed inside). The phases of each method live in
:mod:`rewire.experiments.dpf_sweeps.procedures`; both modules are passed to the engine as ``code=``
(:data:`DRIVER_MODULES`), so the driver is in every run's identity even when run as ``__main__``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from rewire.experiments.base import Outcome, RunContextSpec, RunSpec, select_rows
from rewire.experiments.dpf_sweeps.config import STRUCTURED_METHODS, Config, GridPoint, Recipe
from rewire.experiments.engine import ModelSpec, RunContext
from rewire.io import write_json
from rewire.methods.dpf import GRADUAL_METHODS, GradualPruning, SparsitySchedule, second_decay_epoch
from rewire.sparse import flops
from rewire.sparse import stats as mask_stats
from rewire.train.trainer import TrainingHparams

__all__ = [
    "DRIVER_MODULES",
    "RUN_FILE",
    "Context",
    "recipe",
    "sparsity_schedule",
    "prepare_data",
    "make_context",
    "run_one",
    "run_points",
    "run",
    "write_point",
    "read_point",
]

RUN_FILE = "run.json"
# Import names, not ``__name__``: run as ``python -m`` a module is "__main__", which names no library
# module, so the driver's own code would drop out of every run's identity.
DRIVER_MODULES = ("rewire.experiments.dpf_sweeps.runs", "rewire.experiments.dpf_sweeps.procedures")


def recipe(
    point: Recipe, *, epochs: int | None = None, lr: float | None = None, schedule: str = "multistep"
) -> TrainingHparams:
    """The ``TrainingHparams`` of a phase of ``point`` (DPF Appendix A.2: SGD with Nesterov momentum,
    lr decayed by ``gamma`` at the ``milestones`` fractions of the phase's epochs, per iteration)."""
    epochs = point.epochs if epochs is None else epochs
    return TrainingHparams(
        epochs=epochs,
        lr=point.lr if lr is None else lr,
        momentum=point.momentum,
        nesterov=True,
        weight_decay=point.weight_decay,
        schedule=schedule,
        milestones=tuple(m * epochs for m in point.milestones),
        gamma=point.gamma,
        schedule_step="iteration",
        precision=point.precision,
        eval_every=point.eval_every,
    )


def sparsity_schedule(point: Recipe, final: float) -> SparsitySchedule:
    """Zhu & Gupta ramp from 0 at epoch 0 to ``final`` at "the epoch (n) when performing the second
    learning rate decay" (Appendix A.2): the whole epoch in which that decay falls, at least 1."""
    end = max(1, math.floor(second_decay_epoch(recipe(point).milestones)))
    return SparsitySchedule(final=final, end=float(end), frequency=point.sparsity_frequency)


def prepare_data(point: Recipe, data_root: str | os.PathLike = "data"):
    """The recipe's class-balanced subset and, with ``validation_fraction`` > 0, its validation split.

    Returns ``(data, validation)``: ``data`` trains (its training split without the held-out
    images) and tests; ``validation`` is ``None`` or the held-out part.
    """
    from rewire import data as rdata

    full = rdata.load(point.dataset, root=data_root)
    data = full.class_balanced_subset(point.train_per_class or None, point.test_per_class or None, seed=0)
    if point.validation_fraction == 0.0:
        return data, None
    return data.train_validation_split(point.validation_fraction, seed=0)


@dataclass
class Context(RunContext):
    """The run engine's context plus the point's recipe."""

    recipe: Recipe | None = None

    def model_spec(self) -> ModelSpec:
        return ModelSpec(self.recipe.model, num_classes=len(self.data.classes))

    def fresh_model(self, seed: int) -> nn.Module:
        return self.build(self.model_spec(), seed)

    def base_config(self, seed: int) -> dict[str, Any]:
        # seeds: one run per seed; rewind_epochs: only the rewind phase reads it (its hparams record it), so
        # the DPF run behind Figures 5 and 8 is one run, found again by its hash
        settings = {k: v for k, v in self.recipe.as_dict().items() if k not in ("seeds", "rewind_epochs")}
        return {"recipe": settings, "seed": seed, "source": self.data.source.get("kind", "unknown")}


def make_context(
    point: Recipe,
    data,
    device: torch.device,
    checkpoint_root: str | os.PathLike,
    progress: bool | None = None,
    reuse_checkpoints: bool | None = None,
    validation=None,
) -> Context:
    return Context(
        data=data,
        validation=validation,
        device=device,
        batch_size=point.batch_size,
        checkpoint_root=Path(checkpoint_root),
        progress=progress,
        reuse_checkpoints=reuse_checkpoints,
        code=DRIVER_MODULES,
        recipe=point,
    )


def _summarise(phases: list, seed: int) -> dict[str, Any]:
    """One seed's entry of ``run.json``: the last phase's accuracies, sparsity, MACs and cost, every record."""
    last = phases[-1]
    final = last.records[-1]
    macs = flops.count_macs(last.model)
    records, offset = [], 0
    for phase in phases:
        for r in phase.records:
            records.append({**r, "epoch_overall": offset + r["epoch"]})
        offset += phase.records[-1]["epoch"]
    main = phases[-1] if len(phases) == 1 else next((p for p in phases if p.name in GRADUAL_METHODS), phases[-1])
    seconds = sum(r["train_seconds"] for r in main.records)
    summary = {
        "seed": seed,
        "test_top1": final["test_top1"],
        "test_top5": final["test_top5"],
        "test_loss": final["test_loss"],
        "val_top1": final.get("val_top1"),
        "sparsity": final.get("sparsity", 0.0),
        "filter_sparsity": final.get("filter_sparsity"),
        "delta": final.get("delta", 0.0),
        "macs_dense": macs.dense_macs,
        "macs_sparse": macs.sparse_macs,
        "seconds_per_iteration": seconds / main.records[-1]["step"],
        "timed_phase": main.name,
        "phases": [p.name for p in phases],
        "checkpoints": {p.name: p.checkpoint for p in phases},
        "history": records,
    }
    if last.group is not None:
        summary["layer_sparsity"] = mask_stats.layer_sparsities(last.group.names, last.group.masks())
    for phase in phases:
        for callback in phase.callbacks:
            if isinstance(callback, GradualPruning):
                summary["mask_convergence"] = callback.mask_convergence(phase.hparams.epochs)
    return summary


def run_one(
    ctx: Context, method: str, sparsity: float, seed: int, lrs: dict[str, float] | None = None
) -> dict[str, Any]:
    """Train (or find) every phase of ``method`` at ``sparsity`` for one seed; return its ``run.json`` entry."""
    from rewire.experiments.dpf_sweeps.procedures import run_phases

    return _summarise(run_phases(ctx, method, sparsity, seed, lrs), seed)


def _run_point(ctx: Context, point: GridPoint, seeds: list[int]) -> dict[str, Any]:
    from rewire.experiments.dpf_sweeps.procedures import select_lrs

    started = time.perf_counter()
    lrs, selection = select_lrs(ctx, point.method, point.sparsity)
    runs = [run_one(ctx, point.method, point.sparsity, seed, lrs) for seed in seeds]
    return {
        "method": point.method,
        "sparsity": point.sparsity,
        "structured": point.method in STRUCTURED_METHODS,
        "recipe": point.recipe.as_dict(),
        "selected_lrs": lrs,
        "lr_selection": selection,
        "seconds": time.perf_counter() - started,
        "runs": runs,
        "tag": point.tag,
        "figure": point.figure,
    }


def run_points(
    points: list[GridPoint], specs: list[RunSpec], context: RunContextSpec, prepared: dict | None = None
) -> Outcome:
    """Train the ``specs`` (rows = point names) of ``points``; one prepared data set per distinct data recipe
    (``prepared`` caches them across calls)."""
    device = context.resolved_device()
    wanted = {spec.row: [] for spec in specs}
    for spec in specs:
        wanted[spec.row].append(spec.seed)
    prepared = {} if prepared is None else prepared
    found, sources = [], {}
    todo = [p for p in points if p.name in wanted]
    for index, point in enumerate(todo, 1):
        r = point.recipe
        key = (r.dataset, r.train_per_class, r.test_per_class, r.validation_fraction)
        if key not in prepared:
            prepared[key] = prepare_data(r, context.data_root)
        data, validation = prepared[key]
        if len(todo) > 1 and context.progress is not False:
            print(f"[{index}/{len(todo)}] {point.name}", flush=True)
        ctx = make_context(
            r, data, device, context.checkpoint_root, context.progress, context.reuse_checkpoints, validation
        )
        found.append({**_run_point(ctx, point, wanted[point.name]), "model": r.model})
        sources[point.name] = data.source
    first = next(iter(sources.values()), {})
    return Outcome(runs=found, data_source=first, extra={"sources": sources, "device": str(device)})


def run(config: Config, *, context: RunContextSpec, only=None) -> Outcome:
    """Train (or find by hash) the planned runs of ``config``; ``only`` selects grid points by name."""
    from rewire.experiments.dpf_sweeps.plan import plan

    return run_points(config.points(), select_rows(plan(config), only), context)


def write_point(out_dir: str | os.PathLike, point: dict[str, Any], label: dict[str, Any]) -> Path:
    """Write ``run.json`` into ``out_dir`` atomically (the directory appears complete or not at all)."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{out_dir.name}-", dir=out_dir.parent))
    try:
        write_json(staging / RUN_FILE, {"label": label, **point})
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return out_dir / RUN_FILE


def read_point(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; run its sweep stage first (`dvc repro dpf_runs`)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); delete it and rerun its stage") from error
