"""DPF on ImageNet: ResNet-50, Table 3 and Figure 10 of Lin et al. (ICLR 2020), as a preset and a driver.

* :data:`PRESET` / :data:`SOURCES`: the ImageNet recipe field by field with where the paper states it
  (Section 5.1 "Training schedules", Appendix A.2 "The optimal hyper-parameters for DPF"): 90 epochs, batch
  1024, SGD with Nesterov momentum 0.9, the learning rate warmed up from 0.1 to 0.4 and divided by 10 at
  epochs 30, 60 and 80, weight decay 1e-4; the Zhu & Gupta sparsity ramp from 0 at epoch 0 to the target at
  the second decay (epoch 60), Δt = 1 epoch; mask update every p = 16 iterations.
* The paper's Table 3 is data (:data:`rewire.experiments.imagenet.paper.PAPER_TABLE3`, ``paper.yaml``).
  "Reached" is over all 25.56M parameters while only the convolutions are pruned (fc, batch norm and biases
  stay dense): :func:`remaining_params` reproduces the column from the model.
* :func:`train_point`: one (method, target sparsity) point on an ImageNet-style folder through the run engine
  (:func:`rewire.experiments.engine.fit_run`), the method attached with ``rewire.methods.get(name).attach``.
  CLI (also under ``torchrun``)::

      python -m rewire.experiments.imagenet.dpf --data /path/to/imagenet --method dpf --sparsity 0.8

Warm-up: :class:`rewire.train.trainer.TrainingHparams` has a linear warm-up stepped per iteration
(``warmup_epochs``, ``warmup_start_factor``), which is Goyal et al.'s "gradual warmup" (lr raised by a
constant amount every iteration): lr 0.4 with start factor 0.25 gives 0.1 -> 0.4. No callback is needed.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Any

import torch
import torch.nn as nn

from rewire import methods
from rewire.data.imagefolder import DNW_IMAGENET_CROP, DNW_IMAGENET_RESIZE, scan_image_folder
from rewire.experiments.engine import ModelSpec, RunOptions, RunRequest, RunResult, fit_run
from rewire.experiments.imagenet.folders import data_config, make_loaders, subset_index
from rewire.experiments.imagenet.paper import PAPER_FULL_PARAMS, PAPER_TABLE3, PaperRow, paper_rows
from rewire.methods.dpf import SparsitySchedule
from rewire.models.resnet_imagenet import resnet50
from rewire.sparse.groups import check_sparsity, conv_weight_targets
from rewire.sparse.masks import sparse_modules
from rewire.train.distributed import DistContext
from rewire.train.runtime import Seeds, pick_device, seed_model_init
from rewire.train.trainer import TrainingHparams

__all__ = [
    "RUNS_MODULE",
    "PRESET",
    "SOURCES",
    "METHODS",
    "PAPER_SPARSITIES",
    "PaperRow",
    "PAPER_TABLE3",
    "PAPER_FULL_PARAMS",
    "paper_rows",
    "hparams",
    "sparsity_schedule",
    "build_model",
    "remaining_params",
    "check_method",
    "train_point",
    "main",
]

# The module the run engine hashes into every ImageNet run (it imports this one): the driver is in the identity.
RUNS_MODULE = "rewire.experiments.imagenet.runs"
NOT_STATED = "not stated in the paper; our choice: "

PRESET: dict[str, Any] = {
    "dataset": "imagenet",
    "model": "resnet50",
    "epochs": 90,
    "batch_size": 1024,
    "lr": 0.4,
    "warmup_epochs": 5.0,
    "warmup_start_lr": 0.1,
    "milestones": (30.0, 60.0, 80.0),
    "gamma": 0.1,
    "momentum": 0.9,
    "nesterov": True,
    "weight_decay": 1e-4,
    "update_every": 16,
    "sparsity_frequency": 1.0,
}

SOURCES: dict[str, str] = {
    "dataset": "Section 5.1 'Datasets' and Appendix A.2: ImageNet (ILSVRC 2012), 1.28M/50K training/validation images",
    "model": "Table 3 and Figure 10: ResNet-50 (25.56M parameters)",
    "epochs": "Section 5.1 'Training schedules' and Appendix A.2: 'the training scheme in Goyal et al. (2017) for 90 epochs'",
    "batch_size": "Section 5.1 and Appendix A.2: 'The mini-batch size is fixed to ... 1024 for ImageNet'; Figure 10 caption",
    "lr": "Appendix A.2: 'we gradually warmup the learning rate from 0.1 to 0.4' (0.4 = 0.1 x 1024/256, Goyal et al. 2017)",
    "warmup_epochs": (
        NOT_STATED + "5 epochs, linear per iteration: the DPF paper names Goyal et al.'s scheme without the length; "
        "Goyal et al. (2017, Section 2.2 'Gradual warmup') ramp up over the first 5 epochs"
    ),
    "warmup_start_lr": "Appendix A.2: 'warmup the learning rate from 0.1 to 0.4'",
    "milestones": "Section 5.1 and Appendix A.2: 'decayed learning rate by 10 at 30, 60, 80 epochs'",
    "gamma": "Section 5.1 and Appendix A.2: 'decayed learning rate by 10'",
    "momentum": "Section 5.1 'Training schedules': 'For all datasets and models, we used mini-batch SGD with Nesterov momentum (factor 0.9)'",
    "nesterov": "Section 5.1 'Training schedules': Nesterov momentum for all datasets and models",
    "weight_decay": (
        "Appendix A.2: 'The used weight decay is 1e-4' (on every parameter: the paper names no exclusion; our choice)"
    ),
    "update_every": "Section 5.1 'Implementation of DPF' and Appendix A.1: p = 16 iterations for all experiments",
    "sparsity_frequency": (
        "Appendix A.2 'Gradual Pruning Scheme': s_t from 0 at epoch 0 to the target at the second learning-rate "
        "decay (epoch 60), Δt = 1 epoch"
    ),
}

# Table 3's methods that this repository has (rewire.methods registry), plus the dense baseline.
METHODS = ("dense", "dpf", "incremental", "sm", "dsr")
PAPER_SPARSITIES = (0.8, 0.9)  # Table 3's target pruning ratios


# ------------------------------------------------------------------------------------------------ recipe


def _check_epochs(epochs: int | None) -> int:
    if epochs is None:
        return PRESET["epochs"]
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    return epochs


def hparams(epochs: int | None = None, *, precision: str = "fp32", eval_every: int = 1) -> TrainingHparams:
    """The preset as :class:`TrainingHparams` over ``epochs`` (default 90). A shorter run scales the warm-up and
    the milestones by ``epochs / 90`` (the schedule's shape is kept); the learning rates do not change."""
    epochs = _check_epochs(epochs)
    scale = epochs / PRESET["epochs"]
    return TrainingHparams(
        epochs=epochs,
        optimizer="sgd",
        lr=PRESET["lr"],
        momentum=PRESET["momentum"],
        nesterov=PRESET["nesterov"],
        weight_decay=PRESET["weight_decay"],
        schedule="multistep",
        milestones=tuple(m * scale for m in PRESET["milestones"]),
        gamma=PRESET["gamma"],
        schedule_step="iteration",
        warmup_epochs=PRESET["warmup_epochs"] * scale,
        warmup_start_factor=PRESET["warmup_start_lr"] / PRESET["lr"],
        precision=precision,
        eval_every=eval_every,
    )


def sparsity_schedule(final: float, epochs: int | None = None, frequency: float | None = None) -> SparsitySchedule:
    """Zhu & Gupta's ramp from 0 at epoch 0 to ``final`` at the whole epoch of the second learning-rate decay
    (Appendix A.2; epoch 60 of 90, at least 1), changing every ``frequency`` epochs (default Δt = 1)."""
    second = sorted(hparams(epochs).milestones)[1]
    frequency = PRESET["sparsity_frequency"] if frequency is None else frequency
    return SparsitySchedule(final=check_sparsity(final), end=float(max(1, math.floor(second))), frequency=frequency)


# ------------------------------------------------------------------------------------------------- model


def _model_spec(num_classes: int) -> ModelSpec:
    return ModelSpec("resnet50", num_classes, {})


def build_model(num_classes: int = 1000, *, seed: int = 0, device: torch.device | str = "cpu") -> nn.Module:
    """Dense ResNet-50 initialised from the run seed's model stream, on ``device``."""
    from rewire.models import MODELS

    seed_model_init(Seeds.from_run_seed(seed))
    spec = _model_spec(num_classes)
    model = spec.build() if spec.name in MODELS else resnet50(num_classes)
    return model.to(device)


def remaining_params(model: nn.Module, sparsity: float) -> tuple[int, float]:
    """``(remaining parameters, reached pruning ratio over all parameters)`` of ``model`` when a share
    ``sparsity`` of its convolution weights is pruned and fc, batch norm and biases stay dense: DPF Table 3's
    "remaining # of params" and "Reached" columns (ResNet-50 at 80 %: 6.79M and 73.5 %)."""
    sparsity = check_sparsity(sparsity)
    total = sum(p.numel() for p in model.parameters())
    conv = sum(model.get_submodule(t.rpartition(".")[0]).weight.numel() for t in conv_weight_targets(model))
    pruned = round(sparsity * conv)
    return total - pruned, pruned / total


# ---------------------------------------------------------------------------------------------- training


def check_method(method: str, sparsity: float) -> float:
    """The target sparsity of ``method`` (0 for ``dense``); an unknown method or a missing target raises ``ValueError``."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; DPF Table 3's methods here: {', '.join(METHODS)}")
    if method == "dense":
        return 0.0
    sparsity = check_sparsity(sparsity)
    if sparsity == 0.0:
        raise ValueError(f"method {method!r} needs a target sparsity in (0, 1), e.g. 0.8 or 0.9 (Table 3)")
    return sparsity


def train_point(
    method: str,
    sparsity: float,
    image_root: str | os.PathLike,
    *,
    checkpoint_root: str | os.PathLike = "checkpoints/dpf_imagenet",
    epochs: int | None = None,
    batch_size: int | None = None,
    update_every: int | None = None,
    sparsity_frequency: float | None = None,
    device: torch.device | str | None = None,
    seed: int = 0,
    progress: bool | None = None,
    num_workers: int = 0,
    max_train_images: int | None = None,
    max_val_images: int | None = None,
    crop_size: int = DNW_IMAGENET_CROP,
    resize_size: int = DNW_IMAGENET_RESIZE,
    classes=None,
    precision: str = "fp32",
    eval_every: int = 1,
    reuse_checkpoints: bool | None = None,
    distributed: DistContext | None = None,
) -> dict[str, Any]:
    """Train (or resume, or find) ResNet-50 with ``method`` at target ``sparsity`` on the folder ``image_root``.

    The preset (:data:`PRESET`; ``epochs`` / ``batch_size`` / ``update_every`` / ``sparsity_frequency``
    override it) runs through :func:`rewire.experiments.engine.fit_run` under ``checkpoint_root``. ``dpf`` and
    ``incremental`` get the Zhu & Gupta ramp (:func:`sparsity_schedule`) and p = 16; ``sm`` and ``dsr`` their
    own schedules (first convolution dense). Images are RandomResizedCrop(224) + flip for training, Resize(256)
    + CenterCrop(224) for validation (:mod:`rewire.data.imagefolder`; Goyal et al.'s augmentation, without the
    colour/lighting augmentation of He et al. 2016a). Returns a summary: final metrics, reached sparsity,
    remaining parameters and the paper's row. Every argument and the folder layout are checked before any work.
    ``distributed``: the torchrun job this process belongs to (the paper trained on several GPUs); each rank
    decodes its part of every global batch of 1,024 and rank 0 writes the run directory.
    """
    sparsity = check_method(method, sparsity)
    recipe = hparams(epochs, precision=precision, eval_every=eval_every)
    schedule = sparsity_schedule(sparsity, epochs, sparsity_frequency) if method in ("dpf", "incremental") else None
    update_every = PRESET["update_every"] if update_every is None else update_every
    batch_size = PRESET["batch_size"] if batch_size is None else batch_size
    index = scan_image_folder(image_root, classes)
    if max_train_images is not None or max_val_images is not None:
        index = subset_index(index, max_train_images, max_val_images)
    parallel = distributed if distributed is not None and distributed.distributed else None
    device = parallel.device if parallel is not None else pick_device(None if device is None else str(device))
    train, val = make_loaders(
        index,
        batch_size,
        seed=seed,
        device=device,
        num_workers=num_workers,
        crop_size=crop_size,
        resize_size=resize_size,
        distributed=parallel,
    )
    model = build_model(index.num_classes, seed=seed, device=device)
    callbacks: list = []
    if method in ("dpf", "incremental"):
        attached = methods.get(method).attach(model, schedule=schedule, update_every=update_every)
        callbacks = attached.callbacks
    elif method in ("sm", "dsr"):
        callbacks = methods.get(method).attach(model, sparsity, seed=seed).callbacks
    config = {
        "table": "DPF Table 3",
        "method": method,
        "sparsity": sparsity,
        "seed": seed,
        "batch_size": batch_size,
        "update_every": update_every if method in ("dpf", "incremental") else None,
        "schedule": None if schedule is None else {"end": schedule.end, "frequency": schedule.frequency},
        "crop_size": crop_size,
        "resize_size": resize_size,
        "data": data_config(index),
    }
    request = RunRequest(
        name=f"dpf-imagenet-{method}-{sparsity}-seed{seed}",
        config=config,
        model=model,
        hparams=recipe,
        train_loader=train,
        eval_loader=val,
        code=(RUNS_MODULE,),
        callbacks=callbacks,
        model_spec=_model_spec(index.num_classes),
        run_info={"seed": seed, "method": method},
        description=f"ResNet-50 {method} {sparsity}",
    )
    options = RunOptions(
        root=checkpoint_root, reuse_checkpoints=reuse_checkpoints, progress=progress, distributed=parallel
    )
    result: RunResult = fit_run(request, options)
    final = result.final
    total = sum(p.numel() for p in result.model.parameters())
    pruned = sum(int((~p.mask).sum()) for _, _, p in sparse_modules(result.model))
    return {
        "method": method,
        "sparsity": sparsity,
        "trained_now": result.trained_now,
        "epochs": result.record["epochs"],
        "top1": final.get("test_top1"),
        "top5": final.get("test_top5"),
        "reached_sparsity": final.get("sparsity", 0.0),  # over the pruned convolutions
        "reached_overall": pruned / total,  # Table 3's "Reached": over all parameters
        "remaining_params": total - pruned,
        "paper": [vars(r) for r in paper_rows(method, sparsity)],
        "run_dir": str(result.run_dir),
        "checkpoint": result.checkpoint,
        "result": result,
    }


# --------------------------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    from rewire.experiments.imagenet.cli import add_folder_arguments, folder_options, run_cli

    parser = argparse.ArgumentParser(
        prog="python -m rewire.experiments.imagenet.dpf", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--data", required=True, help="ImageNet-style folder: DATA/train/<class>/*, DATA/val/<class>/*")
    parser.add_argument("--method", required=True, help=f"one of {', '.join(METHODS)}")
    parser.add_argument("--sparsity", type=float, default=0.0, help="target sparsity of the convolutions, e.g. 0.8")
    parser.add_argument("--epochs", type=int, default=None, help=f"default {PRESET['epochs']}")
    parser.add_argument("--batch-size", type=int, default=None, help=f"default {PRESET['batch_size']}")
    parser.add_argument("--update-every", type=int, default=None, help=f"default {PRESET['update_every']}")
    add_folder_arguments(parser, "checkpoints/dpf_imagenet")
    args = parser.parse_args(argv)

    def train(context) -> dict[str, Any]:
        summary = train_point(
            args.method,
            args.sparsity,
            args.data,
            epochs=args.epochs,
            batch_size=args.batch_size,
            update_every=args.update_every,
            distributed=context,
            **folder_options(args),
        )
        summary.pop("result")
        return summary

    return run_cli(train, args.out)


if __name__ == "__main__":
    sys.exit(main())
