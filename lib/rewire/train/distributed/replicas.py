"""The data-parallel model: DDP around the model (SyncBatchNorm, sparse masks' buffers kept in step)
and the checks that every rank holds the same replica.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from rewire.sparse import masks
from rewire.train.distributed.context import DistContext
from rewire.train.distributed.sync_batchnorm import CpuSyncBatchNorm


class DataParallelModel(DistributedDataParallel):
    """DDP that stays interchangeable with the model it wraps.

    * ``state_dict``/``load_state_dict`` are the wrapped module's (no ``module.`` prefix), so a
      checkpoint of a 4-GPU run resumes or evaluates in one process and vice versa;
    * attributes the wrapper does not have are looked up on the wrapped module, so callbacks that
      read ``trainer.model.graph`` or ``trainer.model.allowed_edges()`` work unchanged.

    ``named_parameters``/``modules`` still carry the ``module.`` prefix; use ``.module`` for names.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            wrapped = self.__dict__.get("_modules", {}).get("module")
            if wrapped is None:
                raise
            return getattr(wrapped, name)

    def state_dict(self, *args, **kwargs) -> dict[str, Any]:
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        return self.module.load_state_dict(state_dict, strict=strict, assign=assign)


def _no_forward_buffer_sync() -> dict[str, bool]:
    """DDP's keyword for "do not broadcast buffers at every forward, but do sync them at wrap time"."""
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters:
        return {"forward_sync_buffers": False}  # torch >= 2.13
    return {"broadcast_buffers": False}  # older torch: also skips the wrap-time buffer sync (checked below)


def wrap_model(
    model: nn.Module, context: DistContext, sync_batchnorm: bool, *, find_unused_parameters: bool = False
) -> nn.Module:
    """The model to train on this rank: ``model`` itself for one process, else a :class:`DataParallelModel`.

    Call after the sparsity method is attached and before the optimizer is built. With
    ``sync_batchnorm`` every BatchNorm becomes ``torch.nn.SyncBatchNorm``
    (``convert_sync_batchnorm``) on CUDA, or :class:`CpuSyncBatchNorm` on CPU. The wrapped model
    starts from rank 0's parameters and buffers (DDP's wrap-time broadcast), checked equal on every
    rank. Buffers are not re-broadcast at each forward (see "Sparse models under DDP" above).
    """
    model.to(context.device)
    if not context.distributed:
        return model
    if sync_batchnorm:
        if context.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            model = CpuSyncBatchNorm.convert(model)
    device_ids = [context.local_rank] if context.device.type == "cuda" else None
    wrapped = DataParallelModel(
        model, device_ids=device_ids, find_unused_parameters=find_unused_parameters, **_no_forward_buffer_sync()
    )
    assert_same_across_ranks(replica_state(model, buffers=True))
    return wrapped


def replica_state(model: nn.Module, *, buffers: bool) -> dict[str, torch.Tensor]:
    """What must be identical on every rank: every parameter, the mask of every sparse tensor chosen from
    the current weights (:func:`rewire.sparse.masks.current_mask` with ``recompute=True``) and, with
    ``buffers``, every buffer (BatchNorm statistics, held masks, allowed entries)."""
    model = model.module if isinstance(model, DistributedDataParallel) else model
    state = {f"parameter {name}": p.detach() for name, p in model.named_parameters()}
    for name, module, _ in masks.sparse_modules(model):
        state[f"mask {name}"] = masks.current_mask(module, name.rpartition(".")[2], recompute=True)
    if buffers:
        state.update({f"buffer {name}": b.detach() for name, b in model.named_buffers()})
    return state


def assert_same_across_ranks(tensors: Mapping[str, torch.Tensor]) -> None:
    """Raise ``AssertionError`` on every rank unless every rank holds the same names, shapes, dtypes and
    exactly the same values (each tensor compared with rank 0's). A no-op without a process group."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    names = sorted(tensors)
    layout = [(name, tuple(tensors[name].shape), str(tensors[name].dtype)) for name in names]
    layouts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(layouts, layout)
    if any(other != layouts[0] for other in layouts):
        raise AssertionError(
            "the ranks hold different tensors: "
            + "; ".join(f"rank {r}: {len(other)} tensors" for r, other in enumerate(layouts))
        )
    # NCCL moves CUDA tensors only; gloo moves CPU tensors and no bool.
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    differing = []
    for name in names:
        local = tensors[name].detach().to(device)
        local = local.to(torch.uint8) if local.dtype == torch.bool else local
        reference = local.clone()
        dist.broadcast(reference, src=0)
        if not torch.equal(reference, local):
            differing.append(name)
    reports: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(reports, differing)
    problems = [
        f"rank {r}: {', '.join(found[:5])}" + (f" and {len(found) - 5} more" if len(found) > 5 else "")
        for r, found in enumerate(reports)
        if found
    ]
    if problems:
        raise AssertionError(
            "tensors differ from rank 0's (same seeds on every rank? same code?): " + "; ".join(problems)
        )
