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

``--mode engine`` checks the same equivalence through the run engine
(:func:`rewire.experiments.engine.fit_run`, which experiment drivers call): rank 0 first trains the
run alone (``distributed=None``, root ``DIR/single``), then every rank trains it with
``distributed=init_from_env()`` (root ``DIR/ddp``, SyncBatchNorm) and calls ``fit_run`` once more,
which must skip the finished run on every rank. Rank 0 writes ``DIR/ddp_engine.pt``: the final
weights and masks of both runs, both run directory names, the ranks' calls that wrote ``record.json``,
the record, and what each rank's ``RunResult`` said; it prints the largest differences.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn

from rewire.data import BatchLoader
from rewire.experiments import engine
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
ENGINE_RESULT_FILE = "ddp_engine.pt"
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
    return model_snapshot(trainer.module, trainer.history.records)


def model_snapshot(model: nn.Module, records: list[dict[str, Any]]) -> dict[str, Any]:
    """:func:`snapshot` of a trained model and its epoch records."""
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
        "train_loss": [record["train_loss"] for record in records],
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


ENGINE_CONFIG = {  # what defines the run for the engine's settings hash (the world size does not)
    "model": {"name": "SmallConvNet", "width": 4, "classes": CLASSES},
    "method": "dnw",
    "density": DENSITY,
    "data": {"synthetic": True, "examples": EXAMPLES, "image_size": IMAGE_SIZE, "seed": SEED},
    "batch_size": GLOBAL_BATCH,
}


def engine_fit(root: Path, distributed: DistContext | None):
    """The run through :func:`rewire.experiments.engine.fit_run` (a fresh model, fresh loaders)."""
    device = distributed.device if distributed is not None else torch.device("cpu")
    train_loader, eval_loader = synthetic_loaders(device)
    request = engine.RunRequest(
        name="ddp-equivalence",
        config=ENGINE_CONFIG,
        model=sparse_model().to(device),
        hparams=HPARAMS,
        train_loader=train_loader,
        eval_loader=eval_loader,
        code=(__name__,),
    )
    options = engine.RunOptions(root=root, progress=False, distributed=distributed, sync_batchnorm=True)
    return engine.fit_run(request, options)


def run_engine(out: Path, backend: str | None = None) -> dict[str, Any] | None:
    """The engine check of ``--mode engine`` on this rank; rank 0 returns the results (other ranks ``None``)."""
    context = init_from_env(backend)
    record_writes = 0
    write_json = engine.write_json

    def counting_write_json(path, obj):  # counts this rank's writes of record.json
        nonlocal record_writes
        record_writes += Path(path).name == engine.RECORD_FILE
        return write_json(path, obj)

    engine.write_json = counting_write_json
    results: dict[str, Any] = {"world_size": context.world_size, "backend": context.backend}
    if context.is_main:
        single = engine_fit(out / "single", None)
        results["single"] = model_snapshot(single.model, single.records)
        results["single_run_dir"] = single.run_dir.name
        results["single_record"] = single.record
    record_writes = 0
    barrier(context)
    first = engine_fit(out / "ddp", context)
    writes_of_first_call = record_writes
    again = engine_fit(out / "ddp", context)  # a finished run: every rank skips it
    engine.write_json = write_json
    mine = {
        "writes": writes_of_first_call,
        "run_dir": str(first.run_dir),
        "trained_now": [first.trained_now, again.trained_now],
        "record": first.record,
        "records_equal": first.records == again.records,
    }
    every_rank: list[Any] = [None] * context.world_size
    if context.distributed:
        dist.all_gather_object(every_rank, mine)
    else:
        every_rank = [mine]
    if context.is_main:
        results["ddp"] = model_snapshot(first.model, first.records)
        results["ddp_run_dir"] = first.run_dir.name
        results["ranks"] = every_rank
        results["record_on_disk"] = json.loads((first.run_dir / engine.RECORD_FILE).read_text(encoding="utf-8"))
        results["record_files"] = sorted(str(p.relative_to(out)) for p in out.rglob(engine.RECORD_FILE))
    barrier(context)
    shutdown()
    return results if context.is_main else None


def engine_summary(results: dict[str, Any]) -> str:
    """The engine check in a few lines: weight and mask differences, run directories, record writes."""
    single, ddp = results["single"], results["ddp"]
    mask_difference = max(
        float((ddp["masks"][t].int() - single["masks"][t].int()).abs().max()) for t in single["masks"]
    )
    return "\n".join(
        [
            f"engine: world size {results['world_size']} ({results['backend']}) vs one process, SyncBatchNorm",
            f"max |w - w_single| = {max_difference(ddp['weights'], single['weights']):.3e}, "
            f"max |mask - mask_single| = {mask_difference:.0f}",
            f"run directory: {results['ddp_run_dir']} (one process: {results['single_run_dir']})",
            f"record.json writes per rank (first call): {[rank['writes'] for rank in results['ranks']]}, "
            f"world_size in record: {results['record_on_disk'].get('world_size')}",
            f"trained_now per rank (first call, second call): {[rank['trained_now'] for rank in results['ranks']]}",
        ]
    )


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
    parser.add_argument(
        "--mode",
        choices=("trainer", "engine"),
        default="trainer",
        help="trainer: DistributedTrainer runs (default); engine: the same through the run engine's fit_run",
    )
    args = parser.parse_args(argv)
    if args.mode == "engine":
        results = run_engine(args.out, args.backend)
        result_file, describe = ENGINE_RESULT_FILE, engine_summary
    else:
        results = run(args.out, args.backend)
        result_file, describe = RESULT_FILE, summary
    if results is not None:
        with atomic_path(args.out / result_file) as tmp:
            torch.save(results, tmp)
        print(describe(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
