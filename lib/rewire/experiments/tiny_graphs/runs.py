"""DNW Table 1's training: one tiny graph per (setting, method, seed) through the run engine.

The graph model of :mod:`rewire.models.tiny_graphs`, the method applied to its adjacency
``graph.weight`` from outside (:func:`rewire.methods.apply_method`), and a
:class:`rewire.sparse.wiring.WiringMonitor` recording real and live edges, swaps and dead nodes
every epoch.

Recipe of the DNW authors' code, shortened to the scale's epochs: SGD momentum 0.9, lr 0.1,
weight decay 1e-4 on all parameters; cosine decay per iteration at the smoke and cpu scales,
the paper's step decay (x0.1 at epochs 80 and 120 of 160) at the paper scale; random crop + flip.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from rewire import data as rdata
from rewire.experiments.base import Outcome, RunContextSpec, RunSpec, select_rows
from rewire.experiments.engine import ModelSpec, RunContext, RunResult
from rewire.experiments.tiny_graphs.config import Config
from rewire.experiments.tiny_graphs.plan import plan
from rewire.methods.dnw import apply_method
from rewire.methods.dnw_wiring import WiringMonitor, graph_mask
from rewire.train.runtime import Seeds
from rewire.train.trainer import TrainingHparams

__all__ = ["TinyGraphRun", "recipe", "run_one", "run", "EVAL_BATCH_SIZE"]

EVAL_BATCH_SIZE = 250  # test batches of the graphs (the dynamic ones hold every node's state per image)


@dataclass
class TinyGraphRun:
    """One finished run: setting, method, seed, the engine's result and the real edges before and after."""

    setting: str
    method: str
    seed: int
    result: RunResult
    initial_mask: torch.Tensor
    final_mask: torch.Tensor


def recipe(config: Config, setting: str) -> TrainingHparams:
    """The training recipe of ``setting`` (see the module docstring)."""
    return TrainingHparams(
        precision=config.precision,
        eval_every=config.eval_every,
        epochs=config.epochs(setting),
        lr=config.lr,
        momentum=0.9,
        weight_decay=config.weight_decay,
        schedule=config.schedule,
        milestones=tuple(config.milestones),
        schedule_step="iteration" if config.schedule == "cosine" else "epoch",
    )


def run_one(ctx: RunContext, spec: RunSpec, config: Config) -> TinyGraphRun:
    """Train (or find by its hash) one tiny graph with its method ("rg", "dnw", "dnw_no_update", "dense")."""
    setting, method = spec.settings["setting"], spec.settings["method"]
    model_spec = ModelSpec.from_dict(spec.settings["model"])
    if model_spec.num_classes != len(ctx.data.classes):
        raise ValueError(
            f"{config.dataset} has {len(ctx.data.classes)} classes; the plan expected {model_spec.num_classes}"
        )
    model = ctx.build(model_spec, spec.seed)
    apply_method(
        model,
        method,
        k=model.config.k,
        allowed=model.allowed_edges(),
        seed=Seeds.from_run_seed(spec.seed).model,
        targets=("graph.weight",),
    )
    initial = graph_mask(model).cpu()
    hparams = recipe(config, setting)
    result = ctx.fit(
        spec.name,
        seed=spec.seed,
        config={**spec.settings, "hparams": hparams.as_dict()},
        model=model,
        hparams=hparams,
        callbacks=[WiringMonitor()],
        model_spec=model_spec,
        run_info={"setting": setting, "method": method},
    )
    return TinyGraphRun(setting, method, spec.seed, result, initial, graph_mask(model).cpu())


def run(config: Config, *, context: RunContextSpec, only=None) -> Outcome:
    """Train (or find) the planned runs (``only``: rows such as ``static_dnw``), setting by setting."""
    specs = select_rows(plan(config), only)
    started = time.perf_counter()
    full = rdata.load(config.dataset, root=context.data_root)
    device = context.resolved_device()
    contexts: dict[int, RunContext] = {}  # one data subset per training size (static vs dynamic graphs)
    runs = []
    for spec in specs:
        per_class = spec.settings["train_per_class"]
        if per_class not in contexts:
            data = full.class_balanced_subset(per_class or None, config.test_per_class or None, seed=0)
            contexts[per_class] = RunContext(
                data,
                device,
                config.batch_size,
                context.checkpoint_root,
                eval_batch_size=EVAL_BATCH_SIZE,
                progress=context.progress,
                reuse_checkpoints=context.reuse_checkpoints,
                code=(__name__,),
            )
        runs.append(run_one(contexts[per_class], spec, config))
    return Outcome(
        runs,
        data_source=full.source,
        extra={
            "device": device,
            "dataset": full.describe(),
            "train_examples": {key: len(ctx.data.train_labels) for key, ctx in contexts.items()},
            "run_seconds": time.perf_counter() - started,
        },
    )
