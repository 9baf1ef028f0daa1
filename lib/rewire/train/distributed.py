"""Data-parallel training on several GPUs (or CPU processes): ``torchrun`` + ``DistributedDataParallel``.

The DNW authors trained their ImageNet models on 4 GPUs (README of their public repository,
allenai/dnw: ``nn.DataParallel``, one process driving 4 GPUs). This module runs the repository's
:class:`~rewire.train.trainer.Trainer` on several devices, launched by PyTorch's own launcher
``torchrun`` (one process per device; no multiprocessing of our own) and synchronised by PyTorch's
``DistributedDataParallel`` (DDP), the multi-process successor PyTorch recommends over ``DataParallel``.

Commands
--------
One machine with 4 GPUs (``--standalone`` picks a free local rendezvous port)::

    torchrun --standalone --nproc_per_node 4 DRIVER.py ARGS

Two machines with 4 GPUs each; run the same line on both (HOST:PORT is a port that machine 1 can open
and machine 2 can reach; JOB any name shared by the two)::

    torchrun --nnodes 2 --nproc_per_node 4 --rdzv_backend c10d --rdzv_endpoint HOST:PORT --rdzv_id JOB DRIVER.py ARGS

``DRIVER.py`` is any script that follows the recipe below (``tools/ddp_equivalence.py`` does). The run
directory must be on a file system every machine sees: rank 0 writes it, every rank resumes from it.

The recipe (what a driver calls, in this order)
-----------------------------------------------
1. ``context = init_from_env()`` -- reads torchrun's environment (``RANK``, ``LOCAL_RANK``,
   ``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT``), picks NCCL on CUDA machines and gloo otherwise,
   binds the process to its GPU and joins the process group. Without torchrun: world size 1, no group.
2. Seed exactly as a single-process run would, with the *same* seeds on every rank
   (:class:`rewire.train.runtime.Seeds`); never add the rank to a seed. Build the model, attach the
   sparsity method (``rewire.methods.apply_method`` or ``method.attach``), build the *global*
   ``BatchLoader`` (global batch size, same ``order_seed``/``augmentation_seed`` everywhere) and the
   evaluation loader, all on ``context.device``.
3. ``trainer = DistributedTrainer(model, hparams, train_loader, eval_loader, context=context,
   sync_batchnorm=True, run_dir=..., callbacks=...)`` -- converts BatchNorm to SyncBatchNorm, wraps
   the model in DDP, shards every global batch, writes only on rank 0; then ``trainer.fit(resume=True)``.
   (The pieces are usable one by one: :func:`wrap_model`, :class:`ShardedLoader`, :func:`barrier`.)
4. Results, records and plots on ``context.is_main`` only, then ``shutdown()``.

Why the result equals single-process training of the global batch
------------------------------------------------------------------
Every rank draws the *same* global batch ``B`` (same loader seeds) and keeps its contiguous slice
``S_r`` of ``b = |B| / W`` examples (:class:`ShardedLoader`). The trainer's loss on rank ``r`` is the
mean over its shard, ``L_r = (1/b) sum_{i in S_r} l_i``. DDP all-reduces the gradients and divides
by the world size ``W``, so every rank applies::

    (1/W) sum_r grad L_r = (1/W) (1/b) sum_r sum_{i in S_r} grad l_i = (1/|B|) sum_{i in B} grad l_i = grad L

the gradient of the single-process mean loss ``L`` of the global batch, because the shards are equal
(``|B| = W b``; an indivisible batch is refused) and disjoint with union ``B``. Weight decay and
momentum act on identical weights with identical gradients, so the optimizer steps agree too, and
the learning-rate recipe of the paper applies unchanged (the global batch is the paper's batch).
The equation holds when ``l_i`` depends on example ``i`` only. BatchNorm breaks that: its statistics
are taken over the batch, so without synchronisation every shard is normalised by its own
statistics. With ``sync_batchnorm=True`` the statistics are those of the global batch and the
equation holds again (``tools/ddp_equivalence.py`` measures both cases). Which one reproduces the
authors: ``nn.DataParallel`` replicates plain BatchNorm on each GPU, so their statistics were per GPU
(a quarter of the batch each), as with ``sync_batchnorm=False`` here; ``True`` reproduces one device
holding the whole batch (the single-process runs of this repository). Randomness drawn inside the
forward pass (dropout) comes from each rank's global generator, which has the same state on every
rank; it is not bit-identical to the single-process draw (the models of DNW and DPF here use none).

Sparse models under DDP
-----------------------
A sparsified weight (:mod:`rewire.sparse.masks`) is a parametrization: DDP sees, and averages the
gradient of, the dense ``module.parametrizations.weight.original`` that the optimizer updates.
Every ``original`` takes part in every forward pass (both gradient routes give it a gradient
tensor, zero where masked), so ``find_unused_parameters=False`` (the default here, and DDP's
cheaper mode) is correct; a model with parameters a forward pass skips needs ``True``.

DNW's per-forward top-k mask is a deterministic function of the weights (:func:`~rewire.sparse.masks.topk_mask`
breaks ties by index), and the weights are identical on every rank after every step, so the masks are
identical without any communication. Buffers are therefore *not* broadcast at every forward
(``broadcast_buffers`` off, named ``forward_sync_buffers=False`` since torch 2.13; DDP still
broadcasts parameters and buffers from rank 0 once, when it wraps the model): (1) the bool ``mask``
buffer of every sparse tensor has one byte per weight entry, a quarter of the bytes of the gradient
all-reduce, and broadcasting it every step would carry no information; (2) with SyncBatchNorm the
BatchNorm running statistics are updated from the all-reduced global statistics and are already
identical; (3) without SyncBatchNorm the per-rank running statistics differ, but training mode never
reads them (batch statistics are used), and only rank 0's reach the logs (its evaluation), the
checkpoint and, on resume, every rank.
:meth:`DistributedTrainer.fit` ends with :func:`assert_same_across_ranks` on every parameter and
mask (and, with SyncBatchNorm, every buffer), so a divergence stops the run instead of passing unseen.

Rank-0 side effects
-------------------
Only rank 0 writes ``history.json`` and ``checkpoint.pt`` (other ranks get no run directory),
followed by a :func:`barrier` after each epoch, so every rank can read what rank 0 wrote. On resume
every rank loads the *same* checkpoint file (model, optimizer, loader generators, callback states),
so the loaders keep drawing the same global batches. Epoch records hold the global training loss
(the mean of the ranks' shard means, equal to the global mean since the shards are equal) and the
summed throughput. Every rank evaluates the whole evaluation set (identical models give identical
numbers; no communication); only rank 0's are written.

SyncBatchNorm on CPU
--------------------
``torch.nn.SyncBatchNorm`` runs on CUDA only (its statistics kernels have no CPU implementation, and
DDP refuses it in CPU modules). On CPU (gloo: tests, CPU clusters) :func:`wrap_model` uses
:class:`CpuSyncBatchNorm`, the same global-batch statistics computed with differentiable
all-reduces.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from rewire.sparse import masks
from rewire.train.checkpoint import CheckpointError
from rewire.train.runtime import pick_device
from rewire.train.trainer import Callback, History, Trainer, TrainingHparams, build_optimizer

__all__ = [
    "TORCHRUN_VARIABLES",
    "DistContext",
    "init_from_env",
    "shutdown",
    "barrier",
    "main_process_dir",
    "check_global_batch_size",
    "shard_slice",
    "ShardedLoader",
    "CpuSyncBatchNorm",
    "DataParallelModel",
    "wrap_model",
    "replica_state",
    "assert_same_across_ranks",
    "DistributedTrainer",
]

# The variables torchrun sets for every worker (torch.distributed.run documentation, "Environment Variables").
TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


# --------------------------------------------------------------------------- process context


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a data-parallel run: its rank among ``world_size`` processes, its
    rank on this machine (``local_rank``, which picks the GPU), the collective backend and its device."""

    rank: int
    local_rank: int
    world_size: int
    backend: str
    device: torch.device

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size or self.local_rank < 0:
            raise ValueError(
                f"inconsistent process context: rank {self.rank}, local rank {self.local_rank}, "
                f"world size {self.world_size} (need 0 <= rank < world size and local rank >= 0)"
            )

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and logs."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one process: collectives are needed."""
        return self.world_size > 1

    @classmethod
    def single_process(cls, device: torch.device | str | None = None) -> DistContext:
        """World size 1 on ``device`` (CUDA when available by default): plain single-process training."""
        device = pick_device(str(device) if device is not None else None)
        return cls(0, 0, 1, _default_backend(), device)


def _default_backend() -> str:
    """NCCL on CUDA machines (the GPU collective library), gloo otherwise (CPU)."""
    return "nccl" if torch.cuda.is_available() else "gloo"


def init_from_env(backend: str | None = None, environ: Mapping[str, str] | None = None) -> DistContext:
    """The :class:`DistContext` of this process, from the environment torchrun sets; joins the process group.

    Without any torchrun variable: world size 1 on the default device, no process group. Under
    torchrun: NCCL when CUDA is present, else gloo (``backend`` overrides); with NCCL the process
    is bound to GPU ``LOCAL_RANK``. A process group is created only for world size > 1.
    """
    env = os.environ if environ is None else environ
    present = [name for name in TORCHRUN_VARIABLES if name in env]
    if not present:
        return DistContext.single_process()
    missing = [name for name in TORCHRUN_VARIABLES if name not in env]
    if missing:
        raise ValueError(
            f"partial torchrun environment: {', '.join(present)} set but {', '.join(missing)} missing; "
            f"launch with `torchrun --nproc_per_node N script.py` or unset {', '.join(present)} for one process"
        )
    try:
        rank, local_rank, world_size = (int(env[name]) for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"))
    except ValueError as error:
        raise ValueError(f"RANK, LOCAL_RANK and WORLD_SIZE must be integers: {error}") from None
    backend = backend or _default_backend()
    if backend not in ("nccl", "gloo"):
        raise ValueError(f"backend must be 'nccl' or 'gloo', got {backend!r}")
    if backend == "nccl":
        if local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"local rank {local_rank} needs GPU {local_rank}, but this machine has {torch.cuda.device_count()}; "
                f"lower --nproc_per_node to the number of GPUs"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    context = DistContext(rank, local_rank, world_size, backend, device)
    if context.distributed and not dist.is_initialized():
        if not dist.is_available():
            raise RuntimeError("this PyTorch build has no torch.distributed; install a build with it")
        options = {"device_id": device} if backend == "nccl" else {}
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world_size, **options)
    return context


def shutdown() -> None:
    """Leave the process group (after the last collective of the run); a no-op without one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(context: DistContext) -> None:
    """Wait until every rank arrives here (e.g. until rank 0 has written a checkpoint); a no-op for one process."""
    if not context.distributed:
        return
    if context.backend == "nccl":
        dist.barrier(device_ids=[context.local_rank])
    else:
        dist.barrier()


def main_process_dir(context: DistContext, run_dir: str | os.PathLike | None) -> Path | None:
    """``run_dir`` on rank 0, ``None`` on every other rank: a :class:`Trainer` given ``None`` writes nothing."""
    if run_dir is None or not context.is_main:
        return None
    return Path(run_dir)


def _gather(context: DistContext, value: Any) -> list[Any]:
    """``value`` of every rank, in rank order (a picklable object)."""
    if not context.distributed:
        return [value]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, value)
    return gathered


# ------------------------------------------------------------------------------------ sharding


def check_global_batch_size(batch_size: int, world_size: int) -> None:
    """Refuse a global batch that ``world_size`` ranks cannot split into equal shards (the equal shards
    make DDP's gradient average equal the global mean-loss gradient; see the module docstring)."""
    if batch_size % world_size:
        below = batch_size - batch_size % world_size
        above = below + world_size
        options = f"{below} or {above}" if below > 0 else f"{above}"
        raise ValueError(
            f"global batch size {batch_size} cannot be split into {world_size} equal shards; use a multiple "
            f"of {world_size} (e.g. {options}) or another number of processes"
        )


def shard_slice(batch_size: int, context: DistContext) -> slice:
    """This rank's contiguous slice of a global batch: examples ``[rank b, (rank + 1) b)``, ``b = batch_size / W``."""
    check_global_batch_size(batch_size, context.world_size)
    shard = batch_size // context.world_size
    return slice(context.rank * shard, (context.rank + 1) * shard)


class ShardedLoader:
    """This rank's share of a global-batch loader (a :class:`rewire.data.BatchLoader`).

    Every rank iterates its own copy of the *same* global loader (same seeds, so the same order,
    crops and flips) and yields the contiguous slice :func:`shard_slice` of each global batch: the
    ranks' slices are disjoint and, concatenated in rank order, are the global batch exactly. Each
    rank draws and augments the whole global batch and keeps 1/W of it: a little redundant data work
    (an in-memory gather) for an exact, seed-for-seed match with single-process training.

    ``len``, ``state_dict`` and ``load_state_dict`` are the global loader's (its generators are the
    state; every rank resumes from rank 0's). At the start of every epoch the generator states are
    compared across ranks (:func:`assert_same_across_ranks`), so a driver that seeds ranks differently
    stops with a message instead of training on overlapping shards.
    """

    def __init__(self, loader, context: DistContext) -> None:
        check_global_batch_size(loader.batch_size, context.world_size)
        leftover = loader.num_examples % loader.batch_size
        if not loader.drop_last and leftover % context.world_size:
            raise ValueError(
                f"the last global batch holds {leftover} examples ({loader.num_examples} examples, batch size "
                f"{loader.batch_size}), which {context.world_size} ranks cannot split equally; build the loader "
                f"with drop_last=True"
            )
        self.loader = loader
        self.context = context

    @property
    def global_batch_size(self) -> int:
        return self.loader.batch_size

    @property
    def batch_size(self) -> int:
        """Examples per rank and step."""
        return self.loader.batch_size // self.context.world_size

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.context.distributed:
            state = self.loader.state_dict()
            generators = ("order_generator", "augmentation_generator")
            assert_same_across_ranks({name: state[name] for name in generators})
        for inputs, targets in self.loader:
            shard = shard_slice(targets.shape[0], self.context)
            yield inputs[shard], targets[shard]

    def state_dict(self) -> dict[str, Any]:
        return self.loader.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loader.load_state_dict(state)

    def __repr__(self) -> str:
        return f"ShardedLoader(rank {self.context.rank} of {self.context.world_size}, {self.loader!r})"


# ----------------------------------------------------------------------------- synchronised BN


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks, differentiable: the gradient of a sum over ranks is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone()
        dist.all_reduce(total)
        return total


class CpuSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch normalisation over the global batch of all ranks, on CPU (Ioffe & Szegedy 2015, Algorithm 1).

    ``torch.nn.SyncBatchNorm`` needs CUDA; this is the same computation for gloo on CPU: per channel,
    the mean ``mu = sum x / N`` and the biased variance ``sigma^2 = sum (x - mu)^2 / N`` over the
    ``N`` values of *every* rank (two all-reduces, the two-pass variance of ``F.batch_norm``), then
    ``y = (x - mu) / sqrt(sigma^2 + eps) * weight + bias``; the running variance takes the unbiased
    ``N / (N - 1)`` estimate, as in ``nn.BatchNorm``. The all-reduces are differentiable (their
    backward sums the ranks' gradients), so autograd gives the global-batch gradient. Evaluation,
    and training without a process group, is plain ``BatchNorm``.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input (batch, channels, ...), got {input.dim()}-D")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average, as nn.BatchNorm
                factor = 1.0 / float(self.num_batches_tracked)
        channels = input.shape[1]
        dims = [0, *range(2, input.dim())]
        shape = [1, channels] + [1] * (input.dim() - 2)
        local_count = input.new_full((1,), input.numel() // channels)
        sums = _AllReduceSum.apply(torch.cat([input.sum(dims), local_count]))
        count = sums[channels].detach()
        mean = sums[:channels] / count
        centred = input - mean.view(shape)
        variance = _AllReduceSum.apply((centred * centred).sum(dims)) / count
        output = centred * torch.rsqrt(variance + self.eps).view(shape)
        if self.affine:
            output = output * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                unbiased = variance * (count / (count - 1).clamp(min=1))
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                self.running_var.mul_(1 - factor).add_(unbiased.detach(), alpha=factor)
        return output

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """Replace every ``BatchNorm*d``/``SyncBatchNorm`` of ``module`` by this class, keeping its parameters
        and buffers (the same tensors); returns ``module`` (or the replacement when ``module`` is one)."""
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, cls):
            converted = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
            if module.affine:
                converted.weight, converted.bias = module.weight, module.bias
            if module.track_running_stats:
                converted.running_mean, converted.running_var = module.running_mean, module.running_var
                converted.num_batches_tracked = module.num_batches_tracked
            converted.train(module.training)
            return converted
        for name, child in module.named_children():
            module.add_module(name, cls.convert(child))
        return module


# ----------------------------------------------------------------------------------- the model


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


# -------------------------------------------------------------------------------- the trainer


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
        visible = _gather(self.context, self.shared_checkpoint is not None and self.shared_checkpoint.exists())
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
