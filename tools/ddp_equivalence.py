#!/usr/bin/env python
"""Does data-parallel training (torchrun + DDP) equal single-process training of the global batch?

    python -m torch.distributed.run --nproc_per_node 2 tools/ddp_equivalence.py --out DIR [--backend gloo]

(``torchrun`` is the same launcher; the ranks talk over NCCL on GPUs, else, or with ``--backend gloo``,
over gloo on the CPU.) Every rank
trains rewire's ``SmallConvNet`` (width 4: six 3x3 conv + BatchNorm + ReLU layers, a linear
classifier), every convolution sparsified with DNW's top-k at half density
(``rewire.methods.apply_method(..., "dnw")``), for 2 epochs of 4 SGD steps (momentum 0.9, weight
decay 5e-4, cosine schedule) on a fixed synthetic data set (64 images 3x8x8 of 4 classes, random
crops and flips) with global batch 16, through :class:`rewire.train.distributed.DistributedTrainer`:

==============  =====================================================================================
``reference``   one process: rank 0 alone, plain BatchNorm, no DDP (what the others must reproduce)
``sync``        every rank, DDP with SyncBatchNorm (global-batch statistics)
``no_sync``     every rank, DDP with plain BatchNorm (each rank normalises its own shard)
``resumed``     the ``sync`` run stopped in epoch 2 (after rank 0 wrote the epoch-1 checkpoint), then
                continued by every rank from that one checkpoint
==============  =====================================================================================

Rank 0 writes ``DIR/ddp_equivalence.pt`` (loadable with ``torch.load(weights_only=True)``): for each
run the final parameters and DNW masks (recomputed from the final weights) and the per-epoch training
loss, plus the files of the ``sync`` run directory, which rank wrote it, and whether
``assert_same_across_ranks`` caught a tensor that differs between ranks. It prints the largest weight
difference of each run from the reference. ``tests/test_distributed.py`` launches this script and
checks the numbers. Without torchrun the script trains the reference alone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn

from rewire.data import BatchLoader
from rewire.io import atomic_path
from rewire.methods import apply_method
from rewire.models.convnet import SmallConvNet
from rewire.sparse import masks
from rewire.train.distributed import (
    DistContext,
    DistributedTrainer,
    assert_same_across_ranks,
    barrier,
    init_from_env,
    shutdown,
)
from rewire.train.trainer import Callback, TrainingHparams

RESULT_FILE = "ddp_equivalence.pt"
# Our choices: small enough to run in seconds on 2 CPU cores, large enough that a wrong batch split,
# a missing gradient average or unsynchronised BatchNorm statistics change the weights visibly.
EXAMPLES, CLASSES, IMAGE_SIZE = 64, 4, 8
GLOBAL_BATCH = 16  # 4 steps per epoch; 8 examples per rank with 2 ranks
SEED = 0
HPARAMS = TrainingHparams(epochs=2, optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4, schedule="cosine")
DENSITY = 0.5  # fraction of each convolution's weights that are real edges (our choice: many candidate swaps)
NORMALISATION = ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))  # mean, std of the synthetic pixels / 255 (our choice)


class Interrupted(Exception):
    """Raised by :class:`StopAtEpoch` to simulate a run killed before it saved an epoch."""


class StopAtEpoch(Callback):
    """Raise :class:`Interrupted` at the end of epoch ``epoch``, before its checkpoint is written (``None``: never)."""

    def __init__(self, epoch: int | None) -> None:
        self.epoch = epoch

    def on_epoch_end(self, trainer, record: dict[str, Any]) -> None:
        if trainer.epoch == self.epoch:
            raise Interrupted(f"stopped at the end of epoch {self.epoch}")


def synthetic_loaders(device: torch.device) -> tuple[BatchLoader, BatchLoader]:
    """Training loader (global batch, shuffled, cropped and flipped) and evaluation loader over one fixed
    data set whose pixel level encodes the class (learnable in a few steps)."""
    generator = torch.Generator().manual_seed(SEED)
    labels = torch.arange(CLASSES).repeat_interleave(EXAMPLES // CLASSES)
    pixels = torch.randint(0, 160, (EXAMPLES, 3, IMAGE_SIZE, IMAGE_SIZE), generator=generator)
    images = (pixels + 30 * labels[:, None, None, None]).to(torch.uint8)
    mean, std = NORMALISATION
    train = BatchLoader(
        images,
        labels,
        GLOBAL_BATCH,
        shuffle=True,
        augment=True,
        mean=mean,
        std=std,
        device=device,
        order_seed=SEED + 1,
        augmentation_seed=SEED + 2,
        drop_last=True,
        crop_padding=1,
    )
    evaluation = BatchLoader(images, labels, 32, shuffle=False, augment=False, mean=mean, std=std, device=device)
    return train, evaluation


def sparse_model() -> nn.Module:
    """SmallConvNet with DNW top-k (Algorithm 1) on every convolution, built from the fixed seed."""
    torch.manual_seed(SEED)
    model = SmallConvNet(num_classes=CLASSES, width=4)
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Conv2d):
            apply_method(model, "dnw", k=int(DENSITY * module.weight.numel()), targets=(f"{name}.weight",))
    return model


def train(context: DistContext, *, sync_batchnorm: bool, run_dir: Path | None = None, stop_at: int | None = None):
    """One run of the recipe in :mod:`rewire.train.distributed`; returns the trainer."""
    model = sparse_model()
    train_loader, eval_loader = synthetic_loaders(context.device)
    trainer = DistributedTrainer(
        model,
        HPARAMS,
        train_loader,
        eval_loader,
        context=context,
        sync_batchnorm=sync_batchnorm,
        run_dir=run_dir,
        callbacks=[StopAtEpoch(stop_at)],
        progress=False,
    )
    trainer.fit(resume=True)
    return trainer


def snapshot(trainer) -> dict[str, Any]:
    """Final parameters, DNW masks chosen from the final weights, the k-th/(k+1)-th |w| gap of every
    sparse tensor (how far the masks are from a tie) and the per-epoch training loss, on the CPU."""
    model = trainer.module
    weights = {name: p.detach().cpu().clone() for name, p in model.named_parameters()}
    chosen, margins = {}, {}
    for name, module, parametrization in masks.sparse_modules(model):
        chosen[name] = masks.current_mask(module, "weight", recompute=True).cpu()
        magnitudes = module.parametrizations.weight.original.detach().abs().flatten().sort(descending=True).values
        k = parametrization.selector.k
        margins[name] = float(magnitudes[k - 1] - magnitudes[k])
    return {
        "weights": weights,
        "masks": chosen,
        "mask_margins": margins,
        "train_loss": [record["train_loss"] for record in trainer.history.records],
    }


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Largest absolute entry-wise difference over all tensors of two snapshots with the same names."""
    if a.keys() != b.keys():
        raise ValueError(f"different tensors: {sorted(a.keys() ^ b.keys())}")
    return max(float((a[name].double() - b[name].double()).abs().max()) for name in a)


def run(out: Path, backend: str | None = None) -> dict[str, Any] | None:
    """All runs of the table above on this rank; rank 0 returns the results (other ranks ``None``)."""
    context = init_from_env(backend)
    results: dict[str, Any] = {"world_size": context.world_size, "backend": context.backend}
    if context.is_main:
        results["reference"] = snapshot(train(DistContext.single_process(context.device), sync_batchnorm=False))
    barrier(context)
    if context.distributed:
        sync = train(context, sync_batchnorm=True, run_dir=out / "sync")
        results["sync"] = snapshot(sync)
        results["no_sync"] = snapshot(train(context, sync_batchnorm=False))
        try:
            train(context, sync_batchnorm=True, run_dir=out / "resumed", stop_at=2)
        except Interrupted:
            pass
        results["resumed"] = snapshot(train(context, sync_batchnorm=True, run_dir=out / "resumed"))
        writers: list[Any] = [None] * context.world_size
        dist.all_gather_object(writers, None if sync.run_dir is None else str(sync.run_dir))
        results["writers"] = writers
        results["sync_run_files"] = sorted(p.name for p in (out / "sync").iterdir())
        try:
            assert_same_across_ranks({"rank": torch.tensor([context.rank])})
            results["mismatch_detected"] = False
        except AssertionError:
            results["mismatch_detected"] = True
    barrier(context)
    shutdown()
    return results if context.is_main else None


def summary(results: dict[str, Any]) -> str:
    """One line per run: largest weight difference from the reference and whether the masks are identical."""
    reference = results["reference"]
    lines = [f"world size {results['world_size']} ({results['backend']}), reference: one process"]
    for name in ("sync", "no_sync", "resumed"):
        if name in results:
            run_ = results[name]
            same_masks = all(torch.equal(run_["masks"][t], reference["masks"][t]) for t in reference["masks"])
            lines.append(
                f"{name:8s} max |w - w_reference| = {max_difference(run_['weights'], reference['weights']):.3e}, "
                f"masks identical: {same_masks}, final train loss {run_['train_loss'][-1]:.6f} "
                f"(reference {reference['train_loss'][-1]:.6f})"
            )
    lines.append(f"smallest k-th/(k+1)-th |w| gap of the reference: {min(reference['mask_margins'].values()):.3e}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for run directories and the result file")
    parser.add_argument(
        "--backend",
        choices=("gloo", "nccl"),
        default=None,
        help="collective backend (default: nccl with CUDA, else gloo); gloo trains on the CPU",
    )
    args = parser.parse_args(argv)
    results = run(args.out, args.backend)
    if results is not None:
        with atomic_path(args.out / RESULT_FILE) as tmp:
            torch.save(results, tmp)
        print(summary(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
