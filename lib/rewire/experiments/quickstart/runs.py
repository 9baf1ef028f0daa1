"""The quickstart's training: SmallConvNet on a class-balanced CIFAR subset, through the run engine.

Recipe: SGD with Nesterov momentum 0.9, cosine learning-rate decay per iteration, weight decay
on convolution and linear weights only (not on biases or normalisation layers), random crop
(4-pixel padding) and flip, done batched on the training device.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rewire import data as rdata
from rewire.experiments.base import Outcome, RunContextSpec, RunSpec, select_rows
from rewire.experiments.engine import ModelSpec, RunContext, RunResult
from rewire.experiments.quickstart.config import Config
from rewire.experiments.quickstart.plan import plan
from rewire.train.trainer import TrainingHparams

__all__ = ["QuickstartRun", "recipe", "run_one", "run", "load_data"]


@dataclass
class QuickstartRun:
    """One finished run: its spec (row = precision) and the engine's result."""

    spec: RunSpec
    result: RunResult

    @property
    def seed(self) -> int:
        return self.spec.seed

    @property
    def precision(self) -> str:
        return self.spec.row


def recipe(config: Config, precision: str) -> TrainingHparams:
    """The training recipe of every quickstart run at ``precision`` (see the module docstring)."""
    return TrainingHparams(
        precision=precision,
        epochs=config.epochs,
        optimizer="sgd",
        lr=config.lr,
        momentum=0.9,
        nesterov=True,
        weight_decay=config.weight_decay,
        no_weight_decay_on=("bias", "norm"),
        schedule="cosine",
        schedule_step="iteration",
    )


def load_data(config: Config, data_root):
    """The class-balanced subset the quickstart trains and tests on (``0`` per class: the whole split)."""
    full = rdata.load(config.dataset, root=data_root)
    return full.class_balanced_subset(config.train_per_class or None, config.test_per_class or None, seed=0)


def run_one(ctx: RunContext, spec: RunSpec, config: Config) -> QuickstartRun:
    """Train (or find by its hash) the run ``spec``."""
    model_spec = ModelSpec.from_dict(spec.settings["model"])
    if model_spec.num_classes != len(ctx.data.classes):
        raise ValueError(
            f"{config.dataset} has {len(ctx.data.classes)} classes, the plan expected {model_spec.num_classes}"
        )
    result = ctx.fit(
        spec.name,
        seed=spec.seed,
        config=dict(spec.settings),
        model=ctx.build(model_spec, spec.seed),
        hparams=recipe(config, spec.row),
        model_spec=model_spec,
    )
    return QuickstartRun(spec, result)


def run(config: Config, *, context: RunContextSpec, only=None) -> Outcome:
    """Train (or find) the planned runs (``only``: the rows, i.e. precisions, to run)."""
    specs = select_rows(plan(config), only)
    started = time.perf_counter()
    data = load_data(config, context.data_root)
    device = context.resolved_device()
    ctx = RunContext(
        data,
        device,
        config.batch_size,
        context.checkpoint_root,
        progress=context.progress,
        reuse_checkpoints=context.reuse_checkpoints,
        code=(__name__,),
    )
    runs = [run_one(ctx, spec, config) for spec in specs]
    return Outcome(
        runs,
        data_source=data.source,
        extra={
            "device": device,
            "dataset": data.describe(),
            "train_examples": len(data.train_labels),
            "test_examples": len(data.test_labels),
            "run_seconds": time.perf_counter() - started,
        },
    )
