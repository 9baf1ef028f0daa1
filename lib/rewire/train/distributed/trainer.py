""":class:`DistributedTrainer`: :class:`rewire.train.Trainer` on every rank of a torchrun job, each
global batch sharded, epoch metrics over the whole data, rank 0 writing the run directory.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from rewire.train.checkpoint import CheckpointError
from rewire.train.distributed.context import DistContext, barrier, gather_from_ranks, main_process_dir
from rewire.train.distributed.replicas import assert_same_across_ranks, replica_state, wrap_model
from rewire.train.distributed.sharding import ShardedLoader
from rewire.train.trainer import Callback, History, Trainer, TrainingHparams, build_optimizer


class _GlobalEpochMetrics(Callback):
    """Turns the rank-local epoch record into the global one: mean training loss over ranks (equal shards,
    so the mean of the shard means is the global mean) and throughput summed over ranks."""

    def __init__(self, context: DistContext) -> None:
        self.context = context

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        local = torch.tensor([record["train_loss"], record["images_per_second"]], dtype=torch.float64)
        total = local.to(self.context.device)
        dist.all_reduce(total)
        record["train_loss"] = float(total[0]) / self.context.world_size
        record["images_per_second"] = float(total[1])


def _rank_loader(loader, context: DistContext):
    """The training loader this rank iterates: ``loader`` itself when it already yields only this rank's part of
    each global batch (a loader with ``rank``/``world_size``, e.g. :class:`rewire.data.imagefolder.ImageFolderLoader`,
    which decodes only its own images), otherwise :class:`ShardedLoader` over the global loader."""
    if not context.distributed:
        return loader
    world_size = getattr(loader, "world_size", 1)
    if world_size == 1:
        return ShardedLoader(loader, context)
    if world_size != context.world_size or getattr(loader, "rank", None) != context.rank:
        raise ValueError(
            f"the training loader is sharded for rank {getattr(loader, 'rank', None)} of {world_size}, this process "
            f"is rank {context.rank} of {context.world_size}; build it with rank=context.rank, "
            f"world_size=context.world_size (or unsharded, as the global loader)"
        )
    return loader


class DistributedTrainer(Trainer):
    """:class:`Trainer` on every rank of a torchrun job: DDP model, sharded batches, rank-0 writes.

    ``model`` carries its sparsity method and lives on ``context.device``; ``train_loader`` is the
    *global* loader (global batch size, the same seeds on every rank), or a loader already sharded for this
    rank (``rank``/``world_size`` attributes, as a streaming image-folder loader); the other arguments are
    :class:`Trainer`'s. With world size 1 this is exactly :class:`Trainer`. ``self.model`` is the
    :class:`DataParallelModel` (checkpoints hold the plain model's state), ``self.module`` the model.
    """

    def __init__(
        self,
        model: nn.Module,
        hparams: TrainingHparams,
        train_loader,
        eval_loader,
        *,
        context: DistContext,
        sync_batchnorm: bool = True,
        find_unused_parameters: bool = False,
        validation_loader=None,
        run_dir: str | os.PathLike | None = None,
        callbacks: Sequence[Callback] = (),
        run_info: dict[str, Any] | None = None,
        progress: bool | None = None,
        description: str = "train",
    ) -> None:
        self.context = context
        self.sync_batchnorm = sync_batchnorm
        if hparams.precision == "bf16":  # channels-last before DDP registers its gradient hooks
            model.to(memory_format=torch.channels_last)
        wrapped = wrap_model(model, context, sync_batchnorm, find_unused_parameters=find_unused_parameters)
        self.module = wrapped.module if isinstance(wrapped, DistributedDataParallel) else wrapped
        self.shared_checkpoint = Path(run_dir) / self.CHECKPOINT_FILE if run_dir is not None else None
        self._epoch_metrics = _GlobalEpochMetrics(context) if context.distributed else None
        info = {**(run_info or {})}
        if context.distributed:
            info["data_parallel"] = {
                "world_size": context.world_size,
                "backend": context.backend,
                "sync_batchnorm": sync_batchnorm,
            }
        super().__init__(
            wrapped,
            hparams,
            _rank_loader(train_loader, context),
            eval_loader,
            validation_loader=validation_loader,
            run_dir=main_process_dir(context, run_dir),
            callbacks=callbacks,
            run_info=info,
            progress=progress if context.is_main else False,
            description=description,
        )
        # Parameter names without DDP's "module." prefix, so no_weight_decay_on patterns match as in one process.
        self.optimizer = build_optimizer(self.module, hparams)

    def fit(self, resume: bool = True) -> History:
        """Train until ``hparams.epochs``; with ``resume`` every rank continues from the one shared checkpoint."""
        visible = gather_from_ranks(
            self.context, self.shared_checkpoint is not None and self.shared_checkpoint.exists()
        )
        if len(set(visible)) > 1:
            raise CheckpointError(
                f"{self.shared_checkpoint} exists for ranks {[r for r, v in enumerate(visible) if v]} only; the run "
                f"directory must be on a file system every machine sees"
            )
        if visible[0] and not self.context.is_main:  # rank 0 loads it inside Trainer.fit
            if not resume:
                raise FileExistsError(
                    f"{self.shared_checkpoint.parent} already holds a checkpoint; pass resume=True to continue it "
                    f"or choose another run directory"
                )
            self.load_checkpoint(self.shared_checkpoint)
        history = super().fit(resume=resume)
        if self.context.distributed:  # a process may also train alone while a group exists (a reference run)
            assert_same_across_ranks(replica_state(self.module, buffers=self.sync_batchnorm))
        barrier(self.context)
        return history

    def _train_one_epoch(self) -> dict[str, Any]:
        # The global-metrics callback runs first in on_epoch_end, before user callbacks read the record and
        # before rank 0 writes it; it is not one of the run's callbacks (state_dict leaves it out).
        callbacks = self.callbacks
        if self._epoch_metrics is not None:
            self.callbacks = [self._epoch_metrics, *callbacks]
        try:
            record = super()._train_one_epoch()
        finally:
            self.callbacks = callbacks
        barrier(self.context)  # rank 0 has written history.json and, when due, checkpoint.pt
        return record

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["callbacks"] = [
            entry for cb, entry in zip(self.callbacks, state["callbacks"]) if cb is not self._epoch_metrics
        ]
        return state
