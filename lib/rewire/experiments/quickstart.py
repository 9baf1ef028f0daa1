"""The quickstart experiment: a small dense CNN on CIFAR-10, one run per seed (no paper number).

It proves the chain data -> library -> run engine -> papermill -> DVC -> figure -> nbval.
Recipe: SGD with Nesterov momentum 0.9, cosine learning-rate decay per iteration, weight decay
on convolution and linear weights only, random crop (4-pixel padding) and flip.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from rewire.experiments.engine import ModelSpec, RunContext, RunResult
from rewire.train.trainer import TrainingHparams

__all__ = ["hparams", "run_seed", "run_all"]


def hparams(*, epochs: int, lr: float, weight_decay: float, precision: str = "fp32") -> TrainingHparams:
    return TrainingHparams(
        precision=precision,
        epochs=epochs,
        optimizer="sgd",
        lr=lr,
        momentum=0.9,
        nesterov=True,
        weight_decay=weight_decay,
        no_weight_decay_on=("bias", "norm"),
        schedule="cosine",
        schedule_step="iteration",
    )


def run_seed(
    ctx: RunContext,
    seed: int,
    *,
    width: int,
    epochs: int,
    lr: float,
    weight_decay: float,
    subset: dict[str, Any],
    precision: str = "fp32",
) -> RunResult:
    """Train (or find) SmallConvNet(width) for one seed."""
    spec = ModelSpec("small_convnet", num_classes=len(ctx.data.classes), kwargs={"width": width})
    model = ctx.build(spec, seed)
    recipe = hparams(epochs=epochs, lr=lr, weight_decay=weight_decay, precision=precision)
    return ctx.fit(
        f"seed{seed}",
        seed=seed,
        config={"experiment": "quickstart", "model": spec.as_dict(), **subset},
        model=model,
        hparams=recipe,
        model_spec=spec,
    )


def run_all(
    data,
    *,
    seeds: Sequence[int],
    width: int,
    epochs: int,
    lr: float,
    weight_decay: float,
    batch_size: int,
    checkpoint_root: str | os.PathLike,
    device: torch.device,
    subset: dict[str, Any],
    precision: str = "fp32",
    progress: bool | None = None,
) -> list[RunResult]:
    ctx = RunContext(data, device, batch_size, checkpoint_root, progress=progress, code=(__name__,))
    return [
        run_seed(
            ctx, seed, width=width, epochs=epochs, lr=lr, weight_decay=weight_decay, subset=subset, precision=precision
        )
        for seed in seeds
    ]
