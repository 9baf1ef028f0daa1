"""Every global batch split into one equal shard per rank, so a run on R ranks takes the same
optimizer steps on the same examples as one process.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from rewire.train.distributed.context import DistContext
from rewire.train.distributed.replicas import assert_same_across_ranks


def check_global_batch_size(batch_size: int, world_size: int) -> None:
    """Refuse a global batch that ``world_size`` ranks cannot split into equal shards (the equal shards
    make DDP's gradient average equal the global mean-loss gradient; see the package docstring)."""
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
