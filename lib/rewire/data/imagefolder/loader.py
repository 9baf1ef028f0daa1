""":class:`ImageFolderLoader`: batches of one split of an image folder, seeded and resumable like
:class:`rewire.data.BatchLoader`, sharded over ranks; :func:`image_folder_loaders` builds both splits.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from tqdm import tqdm

from rewire.data.datasets import IMAGENET_MEAN, IMAGENET_STD, _derived_seed
from rewire.data.imagefolder.layout import SPLIT_FOLDERS, ImageFolderIndex, scan_image_folder
from rewire.data.imagefolder.transforms import DNW_IMAGENET_CROP, DNW_IMAGENET_RESIZE, EvalTransform, TrainAugmentation


class _SplitImages(Dataset):
    """One split's images; an item is ``(index, sample_seed)``: the seed drives the training augmentation
    (``None`` for the deterministic validation transform)."""

    def __init__(
        self,
        root: Path,
        files: np.ndarray,
        labels: np.ndarray,
        train: TrainAugmentation | None,
        evaluation: EvalTransform | None,
    ) -> None:
        self.root, self.files, self.labels = os.fspath(root), files, labels
        self.train, self.evaluation = train, evaluation

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, item: tuple[int, int | None]) -> tuple[torch.Tensor, int]:
        index, sample_seed = item
        path = os.path.join(self.root, os.fsdecode(self.files[index]))
        try:
            with Image.open(path) as opened:
                image = opened.convert("RGB")
        except (OSError, ValueError, SyntaxError) as error:  # PIL.UnidentifiedImageError is an OSError
            raise ValueError(
                f"cannot decode {path} ({type(error).__name__}: {error}); replace or remove the file"
            ) from error
        if sample_seed is None:
            pixels = self.evaluation(image)
        else:
            pixels = self.train(image, torch.Generator().manual_seed(sample_seed))
        return pixels, int(self.labels[index])


class _EpochBatches(Sampler):
    """Batches of ``(index, sample_seed)`` for the epoch in ``self.epoch`` (set by the loader before each pass).

    With ``order`` (a ``DistributedSampler``) the indices are this rank's part of that epoch's
    permutation; without it, ``0..n-1`` in order. With ``augmentation_seed`` every image gets a
    seed from a table drawn for the whole split and epoch (identical on every rank).
    """

    def __init__(
        self,
        num_examples: int,
        batch_size: int,
        drop_last: bool,
        order: DistributedSampler | None,
        augmentation_seed: int | None,
    ) -> None:
        self.num_examples, self.batch_size, self.drop_last = num_examples, batch_size, drop_last
        self.order, self.augmentation_seed = order, augmentation_seed
        self.epoch = 0

    def _indices(self) -> list[int]:
        if self.order is None:
            return list(range(self.num_examples))
        self.order.set_epoch(self.epoch)
        return list(self.order)

    def __len__(self) -> int:
        n = len(self.order) if self.order is not None else self.num_examples
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, int | None]]]:
        # Drawn now, not at the first batch: an iterator keeps its epoch even if ``epoch`` changes later.
        indices = self._indices()
        if self.augmentation_seed is None:
            seeds: list[int | None] = [None] * len(indices)
        else:
            g = torch.Generator().manual_seed(
                _derived_seed(self.augmentation_seed, "imagefolder", f"epoch{self.epoch}")
            )
            table = torch.randint(0, 2**62, (self.num_examples,), generator=g)
            seeds = table[torch.tensor(indices, dtype=torch.long)].tolist()
        limit = len(self) * self.batch_size if self.drop_last else len(indices)
        items = list(zip(indices[:limit], seeds[:limit]))
        return iter([items[start : start + self.batch_size] for start in range(0, limit, self.batch_size)])


def _seed_worker(worker_id: int) -> None:
    """Seed Python's and numpy's generators in a worker from its torch seed (base seed + worker id, where the
    base seed comes from the loader's seeded generator), so library code drawing from them is reproducible too."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def _positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _progress_disabled(progress: bool | None) -> bool:
    """As the Trainer's bars: ``None`` shows them unless ``TQDM_DISABLE`` is set (CI), else ``progress`` decides."""
    if progress is None:
        return os.environ.get("TQDM_DISABLE", "").lower() not in ("", "0", "false")
    return not progress


# ----------------------------------------------------------------------------- the loader


class ImageFolderLoader:
    """Epochs of ``(images, labels)`` batches of one split of an ImageNet-style folder, decoded by worker processes.

    ``data`` is the folder (checked by :func:`scan_image_folder` with ``classes``) or an
    :class:`ImageFolderIndex` already scanned. ``split="train"`` shuffles (``order_seed``),
    augments with :class:`TrainAugmentation` (``augmentation_seed``) and drops the last incomplete
    batch; ``split="val"`` keeps the file order and uses :class:`EvalTransform`. Batches are
    float32 ``[B, 3, crop_size, crop_size]`` with int64 labels, on ``device``.

    ``num_workers`` worker processes decode (0: in this process); with workers they persist across
    epochs. ``pin_memory`` defaults to whether CUDA is present (pinned batches make the copy to the
    GPU asynchronous). ``progress`` shows a tqdm bar per epoch (``None``: as the Trainer, on unless
    ``TQDM_DISABLE`` is set).

    Distributed training: ``batch_size`` is the global batch; with ``rank``/``world_size`` the
    training order is sharded by ``torch.utils.data.DistributedSampler`` (``drop_last=True``, so
    shards are disjoint; at most ``world_size - 1`` images per epoch are left out) and each rank
    yields batches of ``batch_size / world_size``. The validation split is not sharded.

    Every ``iter(loader)`` is one epoch, by default the next one; :meth:`set_epoch` chooses it
    (as ``DistributedSampler.set_epoch``). ``state_dict()`` records the next epoch and the seeds;
    loaded into a fresh loader, the next epoch is the one the original would draw. There is no
    mid-epoch resume: a state taken during an epoch resumes at the start of the following one
    (as :class:`rewire.data.BatchLoader`).
    """

    STATE_FORMAT = "rewire.ImageFolderLoader/1"

    def __init__(
        self,
        data: str | os.PathLike | ImageFolderIndex,
        split: str,
        batch_size: int,
        *,
        classes: Sequence[str] | str | os.PathLike | None = None,
        num_workers: int = 0,
        crop_size: int = DNW_IMAGENET_CROP,
        resize_size: int = DNW_IMAGENET_RESIZE,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        order_seed: int = 0,
        augmentation_seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        device: torch.device | str = "cpu",
        pin_memory: bool | None = None,
        progress: bool | None = False,
    ) -> None:
        if split not in SPLIT_FOLDERS:
            raise ValueError(f"split must be one of {SPLIT_FOLDERS}, got {split!r}")
        batch_size = _positive_int("batch_size", batch_size)
        num_workers = _positive_int("num_workers", num_workers, minimum=0)
        crop_size = _positive_int("crop_size", crop_size)
        resize_size = _positive_int("resize_size", resize_size)
        if resize_size < crop_size:
            raise ValueError(
                f"resize_size ({resize_size}) must be at least crop_size ({crop_size}): the validation "
                f"centre crop is taken from the image resized to resize_size (DNW: 256 and 224)"
            )
        if len(mean) != 3 or len(std) != 3 or any(float(s) <= 0 for s in std):
            raise ValueError(f"mean and std need 3 values (RGB) and std must be positive, got {mean} and {std}")
        for name, seed in (("order_seed", order_seed), ("augmentation_seed", augmentation_seed)):
            if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {seed!r}")
        if (rank is None) != (world_size is None):
            raise ValueError(f"pass both rank and world_size or neither, got rank={rank!r}, world_size={world_size!r}")
        if world_size is not None:
            if split != "train":
                raise ValueError("rank/world_size shard the training split only; every rank evaluates the whole val/")
            world_size = _positive_int("world_size", world_size)
            if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 0 <= rank < world_size:
                raise ValueError(f"rank must be an integer in [0, {world_size}), got {rank!r}")
            if batch_size % world_size:
                raise ValueError(
                    f"the global batch {batch_size} is not divisible by world_size {world_size}; choose a multiple of "
                    f"{world_size} (each rank then takes batch_size / world_size images per step)"
                )
        if isinstance(data, ImageFolderIndex):
            if classes is not None:
                raise ValueError("classes is applied when scanning; pass it to scan_image_folder, not with an index")
            index = data
        else:
            index = scan_image_folder(data, classes)

        self.index = index
        self.split = split
        self.training = split == "train"
        self.batch_size = batch_size
        self.rank = int(rank) if rank is not None else 0
        self.world_size = int(world_size) if world_size is not None else 1
        self.local_batch_size = batch_size // self.world_size
        self.num_workers = num_workers
        self.crop_size, self.resize_size = crop_size, resize_size
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.order_seed, self.augmentation_seed = int(order_seed), int(augmentation_seed)
        self.device = torch.device(device)
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)
        self.progress = progress
        self._epoch = 0

        n = index.num_images(split)
        self._dataset = _SplitImages(
            index.root,
            index.files[split],
            index.labels[split],
            TrainAugmentation(crop_size, self.mean, self.std),
            EvalTransform(resize_size, crop_size, self.mean, self.std),
        )
        order = None
        if self.training:
            order = DistributedSampler(
                self._dataset,
                num_replicas=self.world_size,
                rank=self.rank,
                shuffle=True,
                seed=self.order_seed,
                drop_last=True,
            )
        self._batches = _EpochBatches(
            n, self.local_batch_size, self.training, order, self.augmentation_seed if self.training else None
        )
        if len(self._batches) == 0:
            per_rank = len(order) if order is not None else n
            raise ValueError(
                f"{split}/ has {n} images ({per_rank} per rank), fewer than one batch of {self.local_batch_size} with "
                f"drop_last; lower batch_size"
            )
        self._loader = DataLoader(
            self._dataset,
            batch_sampler=self._batches,
            num_workers=num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=num_workers > 0,
            worker_init_fn=_seed_worker if num_workers > 0 else None,
            generator=torch.Generator().manual_seed(_derived_seed(self.augmentation_seed, "imagefolder-workers")),
        )

    # --------------------------------------------------------------- properties
    @property
    def classes(self) -> tuple[str, ...]:
        return self.index.classes

    @property
    def num_classes(self) -> int:
        return self.index.num_classes

    @property
    def num_examples(self) -> int:
        """Images in this split (all ranks together)."""
        return self.index.num_images(self.split)

    @property
    def source(self) -> dict[str, Any]:
        return self.index.source

    @property
    def epoch(self) -> int:
        """The epoch the next ``iter(loader)`` draws (= epochs started so far, unless :meth:`set_epoch` was used)."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter(loader)`` draw epoch ``epoch`` (its order and augmentation)."""
        self._epoch = _positive_int("epoch", epoch, minimum=0)

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        return len(self._batches)

    # --------------------------------------------------------------- iteration
    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self._epoch
        self._batches.epoch = epoch
        batches = iter(self._loader)  # workers start prefetching this epoch now
        self._epoch += 1
        bar = tqdm(
            total=len(self),
            desc=f"{self.split} epoch {epoch + 1}",
            unit="batch",
            leave=False,
            disable=_progress_disabled(self.progress),
        )
        non_blocking = self.pin_memory and self.device.type == "cuda"

        def moved():
            try:
                for images, labels in batches:
                    bar.update()
                    yield (
                        images.to(self.device, non_blocking=non_blocking),
                        labels.to(self.device, non_blocking=non_blocking),
                    )
            finally:
                bar.close()

        return moved()

    # --------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """The next epoch and the seeds (plain ints): enough to redraw every later epoch exactly."""
        return {
            "format": self.STATE_FORMAT,
            "epoch": self._epoch,
            "order_seed": self.order_seed,
            "augmentation_seed": self.augmentation_seed,
            "num_examples": self.num_examples,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue at the beginning of the recorded epoch with the recorded seeds (same data required)."""
        missing = {"epoch", "order_seed", "augmentation_seed"} - set(state)
        if missing or state.get("format") != self.STATE_FORMAT:
            raise ValueError(
                f"not an ImageFolderLoader state (format {state.get('format')!r}, missing {sorted(missing)})"
            )
        if int(state.get("num_examples", self.num_examples)) != self.num_examples:
            raise ValueError(
                f"the state belongs to a loader over {state['num_examples']} images, this {self.split}/ split has "
                f"{self.num_examples}; resume with the same folder and classes"
            )
        self.order_seed = int(state["order_seed"])
        self.augmentation_seed = int(state["augmentation_seed"])
        if self._batches.order is not None:
            self._batches.order.seed = self.order_seed
        if self._batches.augmentation_seed is not None:
            self._batches.augmentation_seed = self.augmentation_seed
        self.set_epoch(int(state["epoch"]))

    def __repr__(self) -> str:
        shard = f", rank {self.rank}/{self.world_size}" if self.world_size > 1 else ""
        return (
            f"ImageFolderLoader({self.source['origin']}, {self.split}: {self.num_examples} images, "
            f"{self.num_classes} classes, batch_size={self.batch_size}{shard}, workers={self.num_workers}, "
            f"device={self.device}, epoch={self._epoch})"
        )


def image_folder_loaders(
    root: str | os.PathLike,
    batch_size: int,
    *,
    eval_batch_size: int | None = None,
    classes: Sequence[str] | str | os.PathLike | None = None,
    **options: Any,
) -> tuple[ImageFolderLoader, ImageFolderLoader]:
    """``(train_loader, val_loader)`` from one :func:`scan_image_folder` of ``root``.

    ``options`` go to both :class:`ImageFolderLoader` s, except ``rank``/``world_size``, which only
    shard the training loader. ``eval_batch_size`` defaults to ``batch_size``.
    """
    index = scan_image_folder(root, classes)
    shard = {key: options.pop(key) for key in ("rank", "world_size") if key in options}
    train = ImageFolderLoader(index, "train", batch_size, **shard, **options)
    val = ImageFolderLoader(index, "val", eval_batch_size or batch_size, **options)
    return train, val
