"""The process context of a torchrun job (rank, local rank, world size, backend, device), how it is
read from torchrun's environment, and the collective helpers every part of the package uses.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from rewire.train.runtime import pick_device

# The variables torchrun sets for every worker (torch.distributed.run documentation, "Environment Variables").
TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


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


def gather_from_ranks(context: DistContext, value: Any) -> list[Any]:
    """``value`` of every rank, in rank order (a picklable object)."""
    if not context.distributed:
        return [value]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, value)
    return gathered
