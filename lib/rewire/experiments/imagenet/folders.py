"""ImageNet-style folders for the ImageNet tables: loaders, subsets, the identity of a folder, a generated one.

* :func:`make_loaders`: training (RandomResizedCrop + flip) and validation (Resize + CenterCrop) loaders of an
  :class:`~rewire.data.imagefolder.ImageFolderIndex`, seeded from the run seed; sharded under torchrun.
* :func:`subset_index`: a class-balanced, deterministic part of a folder (quick runs).
* :func:`data_config`: what a run's identity takes from the folder.
* :func:`write_synthetic_folder`: a small folder of generated images (the smoke scale: the whole path in seconds).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rewire.data.imagefolder import DNW_IMAGENET_CROP, DNW_IMAGENET_RESIZE, ImageFolderIndex, ImageFolderLoader
from rewire.train.distributed import DistContext, check_global_batch_size
from rewire.train.runtime import Seeds

__all__ = [
    "SYNTHETIC",
    "SYNTHETIC_CLASSES",
    "write_synthetic_folder",
    "subset_index",
    "data_config",
    "make_loaders",
]

SYNTHETIC = "synthetic"  # the ``data`` value that asks for a generated folder
# The smoke scale's generated folder: 3 classes x 8 training and 2 validation images of 40 x 48 px (our choice:
# enough for two global batches of 8 on two processes, small enough to decode in a blink)
SYNTHETIC_CLASSES, SYNTHETIC_TRAIN, SYNTHETIC_VAL, SYNTHETIC_SIZE = 3, 8, 2, (40, 48)


def write_synthetic_folder(root: str | Path, *, seed: int = 0) -> Path:
    """An ImageNet-style folder of random JPEG images (``train/`` and ``val/``, one folder per class); returns it.

    The pixels are class-dependent colour offsets plus noise, so a model can learn something in a few steps."""
    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(seed)
    height, width = SYNTHETIC_SIZE
    for split, count in (("train", SYNTHETIC_TRAIN), ("val", SYNTHETIC_VAL)):
        for label in range(SYNTHETIC_CLASSES):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                base = np.full((height, width, 3), 60 + 60 * label, dtype=np.float64)
                pixels = np.clip(base + rng.normal(0, 25, (height, width, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"img{i}.jpg", quality=90)
    return root


def subset_index(
    index: ImageFolderIndex, max_train_images: int | None = None, max_val_images: int | None = None
) -> ImageFolderIndex:
    """A class-balanced, deterministic part of ``index``: per class the first ceil(max / classes) images (in
    file-name order) of each split, at most ``max`` in all (``None``: the whole split). For quick runs."""
    files, labels = dict(index.files), dict(index.labels)
    for split, limit in (("train", max_train_images), ("val", max_val_images)):
        if limit is None:
            continue
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"max_{split}_images must be a positive int or None, got {limit!r}")
        per_class = math.ceil(limit / index.num_classes)
        keep = []
        for label in range(index.num_classes):
            keep.extend(np.flatnonzero(index.labels[split] == label)[:per_class].tolist())
        keep = sorted(keep)[:limit] if len(keep) > limit else sorted(keep)
        files[split] = index.files[split][keep]
        labels[split] = index.labels[split][keep]
    return ImageFolderIndex(index.root, index.classes, files, labels, index.class_list)


def data_config(index: ImageFolderIndex) -> dict[str, Any]:
    """What a run's identity takes from the folder: counts and a digest of the class names (not 1000 names)."""
    source = {k: v for k, v in index.source.items() if k != "classes"}
    source["classes_sha256"] = hashlib.sha256("\n".join(index.classes).encode()).hexdigest()[:16]
    source["num_classes"] = index.num_classes
    return source


def make_loaders(
    index: ImageFolderIndex,
    batch_size: int,
    *,
    seed: int,
    device: torch.device,
    num_workers: int = 0,
    crop_size: int = DNW_IMAGENET_CROP,
    resize_size: int = DNW_IMAGENET_RESIZE,
    eval_batch_size: int | None = None,
    progress: bool | None = False,
    distributed: DistContext | None = None,
) -> tuple[ImageFolderLoader, ImageFolderLoader]:
    """Training and validation loaders of ``index`` (RandomResizedCrop + flip / Resize + CenterCrop), ordered and
    augmented from the run seed's streams (:class:`rewire.train.runtime.Seeds`).

    ``distributed`` (a torchrun job of W processes): ``batch_size`` stays the global batch and each rank's
    training loader decodes only its own part of every epoch (``DistributedSampler``, ``batch_size / W`` images
    per step), so the decoding work is split, not repeated; every rank evaluates the whole validation split."""
    seeds = Seeds.from_run_seed(seed)
    shard = {}
    if distributed is not None and distributed.distributed:
        check_global_batch_size(batch_size, distributed.world_size)
        shard = {"rank": distributed.rank, "world_size": distributed.world_size}
    options = dict(
        num_workers=num_workers,
        crop_size=crop_size,
        resize_size=resize_size,
        device=device,
        progress=progress,
    )
    train = ImageFolderLoader(
        index,
        "train",
        batch_size,
        order_seed=seeds.data_order,
        augmentation_seed=seeds.augmentation,
        **shard,
        **options,
    )
    val = ImageFolderLoader(index, "val", eval_batch_size or batch_size, **options)
    return train, val
