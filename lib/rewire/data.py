"""Datasets for rewire: a compact prepared cache, in-memory uint8 tensors and batched on-device augmentation.

Design
------
The models trained here are small and CIFAR images are tiny, so a classic
``torchvision`` pipeline (decode a PIL image, ``RandomCrop``, ``RandomHorizontalFlip``,
``ToTensor``, ``Normalize`` -- per image, in Python, in worker processes) costs
more time than the forward and backward passes. This module therefore splits the
work in two:

1. **Preparation, once** (:func:`prepare`, ``python -m rewire.data prepare``, ``make data``).
   The raw release -- the official pickled CIFAR python tarball, a torchvision
   download, or an ImageFolder tree of image files (for example the lossy JPEG copy
   in ``../shared/datasets/cifar10-jpeg.tar.gz``) -- is decoded a single time into four
   ``.npy`` arrays under ``root/<dataset>/`` (uint8 ``N x 3 x H x W`` images and int64
   labels) plus ``meta.json`` recording the classes, the counts, the sha256 of every
   array and where the pixels came from (``source``: official release or JPEG copy).
   The cache is written into a temporary directory next to its destination and
   renamed into place, so a crash never leaves a half-written cache, and its bytes
   are deterministic for a given source so DVC hashes stay stable.

2. **Training, every epoch** (:class:`BatchLoader`). The uint8 arrays (150 MB for the
   CIFAR-10 training set) are moved to the training device once. Each batch is
   a tensor index; random crops (zero padding + per-image offsets) and horizontal
   flips are done for the whole batch at once with advanced indexing, followed by
   the float conversion and normalisation. There is no PIL and no per-image Python
   work in the loop, and no worker processes. The random numbers come from two
   dedicated CPU ``torch.Generator`` objects (data order, augmentation), so a run is
   reproducible on CPU and CUDA alike and the loader's state can be checkpointed and
   resumed exactly.

Source order of :func:`prepare` (the first that works wins):

1. an existing valid cache in ``root/<dataset>`` (for example from ``dvc pull data.dvc``);
2. a local archive: the ``archive`` argument, else the ``REWIRE_DATA_ARCHIVE`` environment
   variable -- a ``.tar``/``.tar.gz``/``.tgz`` file or a directory holding the official
   CIFAR-10 or CIFAR-100 python release or an ImageFolder tree;
3. the official release downloaded through torchvision (CIFAR-10/100 only, needs internet).

Otherwise :class:`DataNotFoundError` explains the three ways to get the data.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib
import io
import json
import logging
import math
import os
import pickle
import posixpath
import re
import shutil
import sys
import tarfile
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch

__all__ = [
    "CACHE_FORMAT",
    "CIFAR10_CLASSES",
    "CIFAR100_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ENV_ARCHIVE",
    "BatchLoader",
    "CorruptDataError",
    "DataNotFoundError",
    "ImageDataset",
    "channel_statistics",
    "crop_and_flip",
    "load",
    "main",
    "normalisation_for",
    "prepare",
]

log = logging.getLogger(__name__)

CACHE_FORMAT = "rewire-image-cache/1"
TOOL_VERSION = "rewire.data/1"
ENV_ARCHIVE = "REWIRE_DATA_ARCHIVE"
SHARED_JPEG_HINT = "../shared/datasets/cifar10-jpeg.tar.gz"

# Per-channel statistics of the training sets (pixels scaled to [0, 1]). The DNW authors'
# code uses the same CIFAR-10 values rounded to three digits: (0.491, 0.482, 0.447) / (0.247, 0.243, 0.262).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Official label order (label i is the i-th name); both lists happen to be alphabetical,
# so an ImageFolder tree with these folder names yields the official labels.
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
    "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
    "train", "trolley_bus", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)

_OFFICIAL = {
    "cifar10": {
        "title": "CIFAR-10",
        "tarball": "cifar-10-python.tar.gz",
        "folder": "cifar-10-batches-py",
        "classes": CIFAR10_CLASSES,
    },
    "cifar100": {
        "title": "CIFAR-100",
        "tarball": "cifar-100-python.tar.gz",
        "folder": "cifar-100-python",
        "classes": CIFAR100_CLASSES,
    },
}

_SPLITS = ("train", "test")
_FILES = {
    "train_images": "train_images.npy",
    "train_labels": "train_labels.npy",
    "test_images": "test_images.npy",
    "test_labels": "test_labels.npy",
}
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".webp")


class DataNotFoundError(RuntimeError):
    """No prepared cache, no usable local archive and no download: the message lists the three ways out."""


class CorruptDataError(RuntimeError):
    """A prepared cache that fails its checks (missing file, wrong checksum, truncated array)."""


# ----------------------------------------------------------------------------- normalisation


def normalisation_for(dataset_name: str) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """``(mean, std)`` per channel for ``dataset_name``: CIFAR-10/100 statistics, else ImageNet's."""
    key = str(dataset_name).lower()
    if key == "cifar10":
        return CIFAR10_MEAN, CIFAR10_STD
    if key == "cifar100":
        return CIFAR100_MEAN, CIFAR100_STD
    return IMAGENET_MEAN, IMAGENET_STD


def channel_statistics(images: torch.Tensor | np.ndarray, chunk: int = 1024) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 ``[N, C, H, W]`` images, on the [0, 1] scale.

    Use it for user datasets whose statistics are not built in; the sums are exact
    (int64), so the result does not depend on the chunk size.
    """
    images = torch.as_tensor(images)
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"channel_statistics expects uint8 images [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
    n, c = images.shape[0], images.shape[1]
    count = n * images.shape[2] * images.shape[3]
    if count == 0:
        raise ValueError("channel_statistics needs at least one image")
    total = torch.zeros(c, dtype=torch.int64)
    squares = torch.zeros(c, dtype=torch.int64)
    for start in range(0, n, chunk):
        block = images[start:start + chunk].to("cpu", torch.int64)
        total += block.sum(dim=(0, 2, 3))
        squares += (block * block).sum(dim=(0, 2, 3))
    means, stds = [], []
    for s, ss in zip(total.tolist(), squares.tolist()):
        mean = s / count
        var = max(ss / count - mean * mean, 0.0)
        means.append(mean / 255.0)
        stds.append(math.sqrt(var) / 255.0)
    return tuple(means), tuple(stds)


# ----------------------------------------------------------------------------- the dataset


def _derived_seed(seed: int, *tags: str) -> int:
    """A 63-bit seed from ``seed`` and a purpose tag, stable across platforms and Python runs."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    text = ":".join([str(int(seed)), *tags])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & ((1 << 63) - 1)


@dataclass(frozen=True, eq=False, repr=False)
class ImageDataset:
    """A labelled image dataset held in memory as uint8 tensors (CPU).

    ``train_images``/``test_images`` are uint8 ``[N, 3, H, W]``, the labels int64 ``[N]``
    indexing ``classes``. ``source`` says where the pixels came from (JSON-serialisable:
    ``kind`` is "official", "jpeg-copy" or "image-folder", plus ``description``,
    ``origin`` and the archive's ``sha256``); results should carry it along.
    """

    name: str
    classes: tuple[str, ...]
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: dict

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        if not self.classes:
            raise ValueError("an ImageDataset needs at least one class")
        if not isinstance(self.source, dict):
            raise ValueError("source must be a dict")
        shapes = []
        for split in _SPLITS:
            images, labels = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
                raise ValueError(f"{split}_images must be a uint8 tensor [N, C, H, W], got "
                                 f"{getattr(images, 'dtype', type(images).__name__)} {tuple(getattr(images, 'shape', ()))}")
            if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.dim() != 1:
                raise ValueError(f"{split}_labels must be an int64 tensor [N]")
            if labels.shape[0] != images.shape[0]:
                raise ValueError(f"{split}: {images.shape[0]} images but {labels.shape[0]} labels")
            if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= len(self.classes)):
                raise ValueError(f"{split}_labels must lie in [0, {len(self.classes)}) for {len(self.classes)} classes")
            if images.shape[0]:
                shapes.append(tuple(images.shape[1:]))
        if len(set(shapes)) > 1:
            raise ValueError(f"train and test images differ in shape: {shapes[0]} vs {shapes[1]}")

    # --------------------------------------------------------------- properties
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        images = self.train_images if self.train_images.shape[0] else self.test_images
        return tuple(int(s) for s in images.shape[1:])  # type: ignore[return-value]

    def describe(self) -> str:
        """One line: name, classes, split sizes, image shape and where the pixels came from."""
        c, h, w = self.image_shape
        test_name = self.source.get("test_split", "test")
        return (f"{self.name}: {self.num_classes} classes, train {self.train_labels.numel()}, "
                f"{test_name} {self.test_labels.numel()}, images {c}x{h}x{w}, "
                f"source {self.source.get('kind', 'unknown')} ({self.source.get('origin', 'unknown origin')})")

    def __repr__(self) -> str:
        return f"ImageDataset({self.describe()})"

    # --------------------------------------------------------------- subsets
    def class_balanced_subset(self, train_per_class: int | None, test_per_class: int | None, seed: int) -> "ImageDataset":
        """Exactly ``n`` images of every class per split, drawn with ``seed``, in a seeded shuffled order.

        ``None`` keeps a split whole (in its original order). A class with fewer than
        ``n`` images raises ``ValueError``. Train and test draws use independent streams
        derived from ``seed``, so the train subset does not depend on ``test_per_class``.
        """
        parts = {}
        for split, n in (("train", train_per_class), ("test", test_per_class)):
            images, labels = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            if n is None:
                parts[split] = (images, labels)
                continue
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
                raise ValueError(f"{split}_per_class must be a positive integer or None, got {n!r}")
            n = int(n)
            g = torch.Generator().manual_seed(_derived_seed(seed, "class-balanced-subset", split))
            chosen = []
            for c, class_name in enumerate(self.classes):
                idx = torch.nonzero(labels == c).flatten()
                if idx.numel() < n:
                    raise ValueError(
                        f"{self.name}: class {class_name!r} has only {idx.numel()} {split} images, fewer than the "
                        f"{n} per class requested; lower {split}_per_class (at most "
                        f"{int(torch.bincount(labels, minlength=self.num_classes).min())}) or pass None to keep the whole split")
                chosen.append(idx[torch.randperm(idx.numel(), generator=g)[:n]])
            index = torch.cat(chosen)
            index = index[torch.randperm(index.numel(), generator=g)]
            parts[split] = (images[index], labels[index])
        source = dict(self.source)
        source["subset"] = {"train_per_class": train_per_class, "test_per_class": test_per_class, "seed": int(seed)}
        return ImageDataset(self.name, self.classes, parts["train"][0], parts["train"][1],
                            parts["test"][0], parts["test"][1], source)

    def train_validation_split(self, validation_fraction: float, seed: int) -> tuple["ImageDataset", "ImageDataset"]:
        """Hold out a stratified, seeded part of the training split for validation.

        Returns ``(train_part, validation_part)``, both :class:`ImageDataset`:

        - ``train_part``: training split without the held-out images; test split unchanged
          (the real test set, for the final evaluation);
        - ``validation_part``: the *same* reduced training split (the same tensors) and, as
          its test split, the held-out images. Running the unchanged training loop on
          ``validation_part`` therefore tunes on validation data without touching the test set.

        Per class ``round(fraction * n_c)`` images are held out (at least one when
        ``fraction > 0``, and at least one is kept for training). The two parts are
        disjoint, their union is the original training split, and both keep the original
        order. ``validation_fraction`` must lie in [0, 1).
        """
        f = float(validation_fraction)
        if not 0.0 <= f < 1.0:
            raise ValueError(f"validation_fraction must lie in [0, 1), got {validation_fraction!r}")
        g = torch.Generator().manual_seed(_derived_seed(seed, "train-validation-split"))
        keep, hold = [], []
        for c, class_name in enumerate(self.classes):
            idx = torch.nonzero(self.train_labels == c).flatten()
            n_c = idx.numel()
            k = 0 if f == 0.0 or n_c == 0 else max(1, math.floor(f * n_c + 0.5))
            if n_c and k >= n_c:
                raise ValueError(f"{self.name}: class {class_name!r} has {n_c} training images; holding out "
                                 f"{k} of them would leave none for training. Use a smaller validation_fraction.")
            perm = idx[torch.randperm(n_c, generator=g)]
            hold.append(perm[:k])
            keep.append(perm[k:])
        keep_idx = torch.sort(torch.cat(keep)).values
        hold_idx = torch.sort(torch.cat(hold)).values
        train_images, train_labels = self.train_images[keep_idx], self.train_labels[keep_idx]
        split_info = {"validation_fraction": f, "seed": int(seed),
                      "train": int(keep_idx.numel()), "validation": int(hold_idx.numel())}
        train_part = ImageDataset(self.name, self.classes, train_images, train_labels,
                                  self.test_images, self.test_labels,
                                  {**self.source, "validation_split": {**split_info, "role": "train-part"}})
        validation_part = ImageDataset(self.name, self.classes, train_images, train_labels,
                                       self.train_images[hold_idx], self.train_labels[hold_idx],
                                       {**self.source, "test_split": "validation",
                                        "validation_split": {**split_info, "role": "validation-part"}})
        return train_part, validation_part


# ----------------------------------------------------------------------------- the batch loader


def crop_and_flip(images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor,
                  padding: int) -> torch.Tensor:
    """Batched random-crop + horizontal-flip of uint8 ``[B, C, H, W]`` images (no Python loop over images).

    Image ``b`` becomes the ``H x W`` window at ``(top[b], left[b])`` of the image zero-padded
    by ``padding`` on every side, mirrored left-right where ``flip[b]`` is true. Offsets lie
    in ``[0, 2 * padding]``; ``top = left = padding`` without flip is the identity.
    """
    b, c, h, w = images.shape
    device = images.device
    hp, wp = h + 2 * padding, w + 2 * padding
    if padding > 0:
        padded = images.new_zeros((b, c, hp, wp))
        padded[:, :, padding:padding + h, padding:padding + w] = images
    else:
        padded = images.contiguous()
    ar_h = torch.arange(h, device=device)
    ar_w = torch.arange(w, device=device)
    rows = top.to(device=device, dtype=torch.long)[:, None] + ar_h  # [B, H]
    cols = left.to(device=device, dtype=torch.long)[:, None] + torch.where(
        flip.to(device=device, dtype=torch.bool)[:, None], (w - 1) - ar_w, ar_w)  # [B, W]
    # One gather over the flattened padded planes (several times faster than 4-D advanced indexing).
    flat = (rows[:, :, None] * wp + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    return padded.view(b, c, hp * wp).gather(2, flat).view(b, c, h, w)


class BatchLoader:
    """Epochs of ``(images, labels)`` batches from uint8 tensors kept on the training device.

    ``images`` (uint8 ``[N, C, H, W]``) and ``labels`` are moved to ``device`` once. Every
    ``iter(loader)`` is one epoch: a permutation (``shuffle=True``) from the order generator
    (``order_seed``) and, with ``augment=True``, per-image crop offsets in
    ``[0, 2 * crop_padding]`` and flips (p = 0.5) from the augmentation generator
    (``augmentation_seed``). Both generators live on the CPU, so the same seeds give the
    same batches on CPU and CUDA; the random numbers of an epoch are drawn when the epoch
    starts. Batches are float32, ``(x / 255 - mean) / std`` per channel, with int64 labels.

    ``state_dict()`` holds both generator states and the epoch counter (plain tensors and
    ints, loadable with ``torch.load(weights_only=True)``). Taken between epochs and loaded
    into a fresh loader, the next epoch is identical to the one the original would produce.
    Taken in the middle of an epoch it resumes at the start of the next epoch.
    """

    STATE_FORMAT = "rewire.BatchLoader/1"

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool,
        augment: bool,
        mean: Sequence[float],
        std: Sequence[float],
        device: torch.device | str = "cpu",
        order_seed: int = 0,
        augmentation_seed: int = 0,
        drop_last: bool = False,
        crop_padding: int = 4,
        horizontal_flip: bool = True,
    ) -> None:
        images = torch.as_tensor(images)
        labels = torch.as_tensor(labels)
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"BatchLoader expects uint8 images [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
        if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(f"labels must be [N] with N = {images.shape[0]}, got {tuple(labels.shape)}")
        if labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise ValueError(f"labels must be integers, got {labels.dtype}")
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if int(crop_padding) != crop_padding or crop_padding < 0:
            raise ValueError(f"crop_padding must be a non-negative integer, got {crop_padding!r}")
        channels = images.shape[1]
        if len(mean) != channels or len(std) != channels:
            raise ValueError(f"mean and std need {channels} values (one per channel), got {len(mean)} and {len(std)}")
        if any(float(s) <= 0 for s in std):
            raise ValueError(f"std must be positive, got {tuple(std)}")
        n = images.shape[0]
        if n == 0:
            raise ValueError("BatchLoader needs at least one example")
        if drop_last and n < batch_size:
            raise ValueError(f"drop_last=True with {n} examples and batch_size {batch_size} yields no batch; "
                             f"lower batch_size or set drop_last=False")
        self.device = torch.device(device)
        self.images = images.to(self.device).contiguous()
        self.labels = labels.to(self.device, torch.int64)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.augment = bool(augment)
        self.drop_last = bool(drop_last)
        self.crop_padding = int(crop_padding)
        self.horizontal_flip = bool(horizontal_flip)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self._mean = torch.tensor(self.mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self._std = torch.tensor(self.std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.order_seed = int(order_seed)
        self.augmentation_seed = int(augmentation_seed)
        self._order_generator = torch.Generator(device="cpu").manual_seed(self.order_seed)
        self._augmentation_generator = torch.Generator(device="cpu").manual_seed(self.augmentation_seed)
        self._epoch = 0

    @property
    def num_examples(self) -> int:
        return int(self.images.shape[0])

    @property
    def epoch(self) -> int:
        """Number of epochs started so far."""
        return self._epoch

    def __len__(self) -> int:
        n, b = self.num_examples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, C, H, W]`` -> float32 ``(x / 255 - mean) / std``."""
        return images.float().div_(255.0).sub_(self._mean).div_(self._std)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = self.num_examples
        # All random numbers of the epoch are drawn now, on the CPU generators.
        order = torch.randperm(n, generator=self._order_generator) if self.shuffle else torch.arange(n)
        if self.augment:
            span = 2 * self.crop_padding + 1
            top = torch.randint(0, span, (n,), generator=self._augmentation_generator)
            left = torch.randint(0, span, (n,), generator=self._augmentation_generator)
            if self.horizontal_flip:
                flip = torch.rand(n, generator=self._augmentation_generator) < 0.5
            else:
                flip = torch.zeros(n, dtype=torch.bool)
            top, left, flip = top.to(self.device), left.to(self.device), flip.to(self.device)
        self._epoch += 1
        order = order.to(self.device)
        limit = len(self) * self.batch_size if self.drop_last else n

        def batches():
            for start in range(0, limit, self.batch_size):
                idx = order[start:start + self.batch_size]
                x = self.images[idx]
                if self.augment:
                    stop = start + idx.numel()
                    x = crop_and_flip(x, top[start:stop], left[start:stop], flip[start:stop], self.crop_padding)
                yield self.normalise(x), self.labels[idx]

        return batches()

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": self.STATE_FORMAT,
            "epoch": self._epoch,
            "num_examples": self.num_examples,
            "order_generator": self._order_generator.get_state().clone(),
            "augmentation_generator": self._augmentation_generator.get_state().clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = {"epoch", "order_generator", "augmentation_generator"} - set(state)
        if missing or state.get("format", self.STATE_FORMAT) != self.STATE_FORMAT:
            raise ValueError(f"not a BatchLoader state (format {state.get('format')!r}, missing {sorted(missing)})")
        if int(state.get("num_examples", self.num_examples)) != self.num_examples:
            raise ValueError(f"the state belongs to a loader over {state['num_examples']} examples, this one has "
                             f"{self.num_examples}; resume with the same data (same subset and seeds)")
        self._order_generator.set_state(state["order_generator"].to("cpu", torch.uint8))
        self._augmentation_generator.set_state(state["augmentation_generator"].to("cpu", torch.uint8))
        self._epoch = int(state["epoch"])

    def __repr__(self) -> str:
        return (f"BatchLoader({self.num_examples} examples, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"augment={self.augment}, device={self.device}, epoch={self._epoch})")


# ----------------------------------------------------------------------------- reading sources


def _normalise_member(name: str) -> str:
    name = name.replace("\\", "/").lstrip("/")
    name = posixpath.normpath(name)
    return "" if name == "." else name


def _ignored(path: str) -> bool:
    """macOS resource forks, hidden files and folders."""
    return any(part.startswith(".") or part == "__MACOSX" for part in path.split("/"))


class _Source:
    """Files of an archive or directory, addressed by relative POSIX paths."""

    origin: str

    def files(self) -> list[str]:
        raise NotImplementedError

    def read_many(self, paths: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        """Yield ``(path, bytes)`` for the requested paths, in the order cheapest for the source."""
        raise NotImplementedError

    def read(self, path: str) -> bytes:
        for _, data in self.read_many([path]):
            return data
        raise FileNotFoundError(path)

    def sha256(self) -> str | None:
        return None

    def close(self) -> None:
        pass


class _TarSource(_Source):
    def __init__(self, path: Path, origin: str):
        self.path = path
        self.origin = origin
        try:
            self._tar = tarfile.open(path, "r:*")
            members = self._tar.getmembers()
        except (tarfile.TarError, EOFError, OSError) as error:
            raise ValueError(f"{origin} is not a readable tar archive ({type(error).__name__}: {error}); "
                             f"re-download it or point to another archive") from error
        self._members = [(_normalise_member(m.name), m) for m in members if m.isfile()]
        self._index = {name: i for i, (name, _) in enumerate(self._members)}

    def files(self) -> list[str]:
        return [name for name, _ in self._members]

    def read_many(self, paths):
        wanted = sorted({self._index[p] for p in paths})  # archive order: one forward pass
        for i in wanted:
            name, member = self._members[i]
            handle = self._tar.extractfile(member)
            yield name, handle.read()

    def sha256(self) -> str:
        return _sha256_file(self.path)

    def close(self) -> None:
        self._tar.close()


class _DirectorySource(_Source):
    def __init__(self, path: Path, origin: str):
        self.path = path
        self.origin = origin

    def files(self) -> list[str]:
        out = []
        for dirpath, dirnames, filenames in os.walk(self.path):
            dirnames.sort()
            rel = os.path.relpath(dirpath, self.path)
            for f in sorted(filenames):
                out.append(_normalise_member(f if rel == "." else f"{rel}/{f}"))
        return out

    def read_many(self, paths):
        for p in sorted(set(paths)):
            yield p, (self.path / p).read_bytes()


def _open_source(path: Path, origin: str) -> _Source:
    if path.is_dir():
        return _DirectorySource(path, origin)
    if path.is_file():
        if not tarfile.is_tarfile(path):
            raise ValueError(f"{origin} is neither a directory nor a tar archive (.tar, .tar.gz, .tgz); "
                             f"extract it and pass the directory, or repack it as .tar.gz")
        return _TarSource(path, origin)
    raise FileNotFoundError(origin)


# ------------------------------------------------------------- layout detection


@dataclass
class _Layout:
    kind: str  # "cifar10-python" | "cifar100-python" | "image-folder"
    prefix: str  # folder inside the source holding the layout ("" = top level)
    splits: dict = dataclasses.field(default_factory=dict)  # image-folder: {"train": {class: [paths]}, "test": ...}
    test_folder: str = "test"

    @property
    def depth(self) -> int:
        return 0 if not self.prefix else self.prefix.count("/") + 1


def _detect_layouts(files: Sequence[str]) -> list[_Layout]:
    """Every recognised layout in a file list, shallowest first."""
    fileset = set(files)
    found: list[_Layout] = []
    join = posixpath.join
    for path in files:
        base, folder = posixpath.basename(path), posixpath.dirname(path)
        if base == "data_batch_1" and all(join(folder, f) in fileset
                                          for f in ["test_batch"] + [f"data_batch_{i}" for i in range(2, 6)]):
            found.append(_Layout("cifar10-python", folder))
        if base == "train" and join(folder, "test") in fileset and join(folder, "meta") in fileset:
            found.append(_Layout("cifar100-python", folder))

    trees: dict[str, dict[str, dict[str, list[str]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for path in files:
        if not path.lower().endswith(_IMAGE_EXTENSIONS) or _ignored(path):
            continue
        parts = path.split("/")
        for i in range(len(parts) - 2):
            if parts[i] in ("train", "test", "val"):
                trees["/".join(parts[:i])][parts[i]][parts[i + 1]].append(path)
    for prefix, splits in trees.items():
        if "train" in splits and ("test" in splits or "val" in splits):
            test_folder = "test" if "test" in splits else "val"
            found.append(_Layout("image-folder", prefix, {"train": splits["train"], "test": splits[test_folder]},
                                 test_folder))
    found.sort(key=lambda layout: (layout.depth, layout.kind, layout.prefix))
    return found


class _WrongDataset(ValueError):
    """The source is readable but does not hold the requested dataset."""


def _choose_layout(layouts: list[_Layout], dataset: str, source: _Source) -> _Layout:
    preferred = {"cifar10": ("cifar10-python", "image-folder"),
                 "cifar100": ("cifar100-python", "image-folder")}.get(dataset, ("image-folder",))
    for kind in preferred:
        matches = [layout for layout in layouts if layout.kind == kind]
        if matches:
            best = [m for m in matches if m.depth == matches[0].depth]
            if len(best) > 1:
                raise ValueError(f"{source.origin} holds several {kind} trees at the same level "
                                 f"({', '.join(repr(m.prefix) for m in best)}); pass the folder you want as archive=")
            return best[0]
    expected = {
        "cifar10": "the official CIFAR-10 python release (cifar-10-batches-py/ with data_batch_1..5 and test_batch) "
                   "or an ImageFolder tree (<dir>/train/<class>/<image> and <dir>/test/<class>/<image>, or val/)",
        "cifar100": "the official CIFAR-100 python release (cifar-100-python/ with train, test and meta) "
                    "or an ImageFolder tree (<dir>/train/<class>/<image> and <dir>/test/<class>/<image>, or val/)",
    }.get(dataset, "an ImageFolder tree (<dir>/train/<class>/<image> and <dir>/test/<class>/<image>, or val/)")
    if layouts:
        names = {"cifar10-python": "cifar10", "cifar100-python": "cifar100"}
        other = ", ".join(sorted({f"{lay.kind} (dataset={names[lay.kind]!r})" for lay in layouts if lay.kind in names}))
        raise _WrongDataset(f"{source.origin} holds {other}, not dataset {dataset!r}; "
                            f"pass the matching dataset name or another archive")
    top = sorted({f.split("/")[0] for f in source.files()})[:8]
    raise _WrongDataset(f"{source.origin} holds no recognised layout for dataset {dataset!r}. Expected {expected}. "
                        f"Top-level entries found: {top or 'none'}")


# ------------------------------------------------------------- decoding


def _resize_and_centre_crop(img, size: int):
    """Shorter side to ``size`` (bilinear), then the central ``size x size`` square."""
    from PIL import Image

    w, h = img.size
    if min(w, h) != size:
        if w <= h:
            new_w, new_h = size, max(size, int(size * h / w))
        else:
            new_w, new_h = max(size, int(size * w / h)), size
        img = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
        w, h = img.size
    if (w, h) != (size, size):
        left, top = (w - size) // 2, (h - size) // 2
        img = img.crop((left, top, left + size, top + size))
    return img


def _decode_image(data: bytes, image_size: int | None) -> tuple[np.ndarray, str]:
    """Encoded image bytes -> (uint8 ``H x W x 3`` RGB array, PIL format name)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img.load()
        fmt = img.format or "unknown"
        rgb = img if img.mode == "RGB" else img.convert("RGB")
        if image_size is not None:
            rgb = _resize_and_centre_crop(rgb, image_size)
        return np.array(rgb, dtype=np.uint8), fmt


def _read_image_folder(source: _Source, layout: _Layout, dataset: str, image_size: int | None):
    train_classes = sorted(layout.splits["train"])
    unknown = sorted(set(layout.splits["test"]) - set(train_classes))
    if unknown:
        raise ValueError(f"{source.origin}: the {layout.test_folder}/ split has class folders missing from train/: "
                         f"{unknown[:10]}; every {layout.test_folder}/ class needs a train/ folder of the same name")
    if dataset in _OFFICIAL:
        official = list(_OFFICIAL[dataset]["classes"])
        if train_classes != official:
            missing = sorted(set(official) - set(train_classes))[:10]
            extra = sorted(set(train_classes) - set(official))[:10]
            raise _WrongDataset(
                f"{source.origin}: the class folders are not the {_OFFICIAL[dataset]['title']} classes "
                f"(missing {missing}, unexpected {extra}); the folders must be named exactly "
                f"{', '.join(official[:10])}{', ...' if len(official) > 10 else ''}, or use another dataset name")
    label_of = {c: i for i, c in enumerate(train_classes)}
    slots: dict[str, tuple[str, int]] = {}
    labels = {}
    for split in _SPLITS:
        ordered = [(label_of[c], p) for c in sorted(layout.splits[split]) for p in sorted(layout.splits[split][c])]
        labels[split] = np.array([lab for lab, _ in ordered], dtype=np.int64)
        for i, (_, p) in enumerate(ordered):
            slots[p] = (split, i)

    arrays: dict[str, np.ndarray] = {}
    first: tuple[str, tuple[int, int]] | None = None
    formats: set[str] = set()
    started = time.perf_counter()
    for path, data in source.read_many(slots):
        try:
            pixels, fmt = _decode_image(data, image_size)
        except (OSError, ValueError, SyntaxError) as error:  # PIL.UnidentifiedImageError is an OSError
            raise ValueError(f"{source.origin}: cannot decode {path} ({type(error).__name__}: {error}); "
                             f"remove the file or repair the archive") from error
        formats.add(fmt)
        h, w = pixels.shape[:2]
        if first is None:
            first = (path, (h, w))
            for split in _SPLITS:
                arrays[split] = np.empty((len(labels[split]), 3, h, w), dtype=np.uint8)
        elif (h, w) != first[1]:
            raise ValueError(
                f"{source.origin}: images differ in size ({first[1][1]}x{first[1][0]} for {first[0]}, {w}x{h} for {path}); "
                f"pass image_size=N (CLI: --image-size N) to resize the shorter side to N and centre-crop N x N")
        split, i = slots[path]
        arrays[split][i] = pixels.transpose(2, 0, 1)
    log.info("decoded %d images from %s in %.1f s", len(slots), source.origin, time.perf_counter() - started)
    return train_classes, arrays, labels, sorted(formats)


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles the official CIFAR pickles (dicts, lists, numpy arrays) and refuses anything else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) == ("_codecs", "encode"):  # how protocol-2 pickles written by Python 3 store bytes
            return _latin1_encode
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: the CIFAR python release "
                                         f"only contains dicts, lists and numpy arrays")
        if module.startswith("numpy.core"):
            modern = "numpy._core" + module[len("numpy.core"):]
            try:
                return getattr(importlib.import_module(modern), name)
            except (ImportError, AttributeError):
                pass
        return super().find_class(module, name)


def _latin1_encode(text, encoding="latin1"):
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _unpickle(data: bytes, where: str) -> dict:
    try:
        obj = _ArrayOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()
    except Exception as error:
        raise ValueError(f"{where} is not a readable CIFAR python pickle ({type(error).__name__}: {error})") from error
    if not isinstance(obj, dict):
        raise ValueError(f"{where} should hold a dict, found {type(obj).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _read_cifar_python(source: _Source, layout: _Layout, dataset: str, image_size: int | None):
    join = posixpath.join
    if layout.kind == "cifar10-python":
        split_files = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
        meta_file, names_key, labels_key = "batches.meta", "label_names", "labels"
    else:
        split_files = {"train": ["train"], "test": ["test"]}
        meta_file, names_key, labels_key = "meta", "fine_label_names", "fine_labels"
    wanted = [join(layout.prefix, f) for files in split_files.values() for f in files]
    meta_path = join(layout.prefix, meta_file)
    have_meta = meta_path in set(source.files())
    blobs = dict(source.read_many(wanted + ([meta_path] if have_meta else [])))

    official = list(_OFFICIAL[dataset]["classes"])
    if have_meta:
        meta = _unpickle(blobs[meta_path], f"{source.origin}:{meta_path}")
        if names_key not in meta:
            raise ValueError(f"{source.origin}:{meta_path} has no {names_key!r} entry")
        classes = [_text(c) for c in meta[names_key]]
    else:
        classes = official
    if dataset == "cifar10" and classes != official:
        raise ValueError(f"{source.origin}: label names {classes} differ from the official CIFAR-10 classes")

    arrays, labels = {}, {}
    for split, files in split_files.items():
        xs, ys = [], []
        for f in files:
            where = f"{source.origin}:{join(layout.prefix, f)}"
            batch = _unpickle(blobs[join(layout.prefix, f)], where)
            if "data" not in batch or labels_key not in batch:
                raise ValueError(f"{where} lacks the 'data' or {labels_key!r} entry")
            x = np.asarray(batch["data"])
            y = np.asarray(batch[labels_key], dtype=np.int64)
            if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 or len(y) != len(x):
                raise ValueError(f"{where}: expected uint8 data N x 3072 with N labels, got {x.dtype} {x.shape} "
                                 f"and {len(y)} labels")
            if len(y) and (y.min() < 0 or y.max() >= len(classes)):
                raise ValueError(f"{where}: labels outside [0, {len(classes)})")
            xs.append(x.reshape(-1, 3, 32, 32))
            ys.append(y)
        arrays[split] = np.ascontiguousarray(np.concatenate(xs))
        labels[split] = np.concatenate(ys)
        if image_size is not None and image_size != 32:
            arrays[split] = _resize_array(arrays[split], image_size)
    return classes, arrays, labels


def _resize_array(images: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    out = np.empty((len(images), 3, size, size), dtype=np.uint8)
    for i, img in enumerate(images):
        out[i] = np.asarray(_resize_and_centre_crop(Image.fromarray(img.transpose(1, 2, 0)), size)).transpose(2, 0, 1)
    return out


def _read_source(source: _Source, dataset: str, image_size: int | None, origin_label: str | None = None):
    """Decode a source into (classes, arrays, labels, source-provenance dict)."""
    layouts = _detect_layouts(source.files())
    layout = _choose_layout(layouts, dataset, source)
    origin = origin_label or source.origin
    started = time.perf_counter()
    if layout.kind in ("cifar10-python", "cifar100-python"):
        classes, arrays, labels = _read_cifar_python(source, layout, dataset, image_size)
        title = _OFFICIAL[dataset]["title"]
        how = "downloaded through torchvision" if origin_label else f"read from {origin}"
        provenance = {
            "kind": "official",
            "description": f"official {title} python release (pickled batches, pixel-exact), {how}",
            "formats": ["cifar-python-pickle"],
        }
    else:
        classes, arrays, labels, formats = _read_image_folder(source, layout, dataset, image_size)
        test_note = f"; test split taken from {layout.test_folder}/" if layout.test_folder != "test" else ""
        resize_note = f"; resized (shorter side {image_size}, bilinear) and centre-cropped to {image_size}x{image_size}" \
            if image_size is not None else ""
        if dataset in _OFFICIAL and formats == ["JPEG"]:
            title = _OFFICIAL[dataset]["title"]
            provenance = {
                "kind": "jpeg-copy",
                "description": (f"{title} as a lossy JPEG re-encoding of the official data (ImageFolder {origin}); "
                                f"pixel values differ slightly from the official release, so accuracies may sit "
                                f"1-2 points lower than on the official data{test_note}{resize_note}"),
            }
        else:
            provenance = {
                "kind": "image-folder",
                "description": (f"ImageFolder {origin} ({len(classes)} classes, {'/'.join(formats)} files)"
                                f"{test_note}{resize_note}"),
            }
        provenance["formats"] = formats
    provenance.update({
        "origin": origin,
        "sha256": source.sha256(),
        "layout": layout.kind,
        "layout_root": layout.prefix,
    })
    log.info("read %s (%s) in %.1f s", origin, layout.kind, time.perf_counter() - started)
    return classes, arrays, labels, provenance


# ----------------------------------------------------------------------------- the cache


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


class _HashingWriter:
    def __init__(self, f):
        self.f = f
        self.hash = hashlib.sha256()

    def write(self, data) -> int:
        self.hash.update(data)
        return self.f.write(data)


def _write_npy(path: Path, array: np.ndarray) -> str:
    """Write ``array`` as a plain .npy (no pickle, deterministic bytes); return its sha256."""
    with open(path, "wb") as f:
        writer = _HashingWriter(f)
        np.lib.format.write_array(writer, np.ascontiguousarray(array), version=(1, 0), allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())
    return writer.hash.hexdigest()


def _check_name(dataset: str) -> str:
    name = str(dataset).strip()
    if name.lower() in _OFFICIAL:
        name = name.lower()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ValueError(f"dataset name {dataset!r} must be a simple folder name (letters, digits, '_', '-', '.')")
    return name


def _fix_permissions(path: Path) -> None:
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o777 & ~mask)


def _write_cache(target: Path, name: str, classes, arrays, labels, provenance, image_size) -> None:
    """Build the cache in ``root/.tmp-<name>-*`` and rename it to ``target``; nothing is left behind on failure."""
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=target.parent))
    try:
        hashes = {}
        for split in _SPLITS:
            hashes[_FILES[f"{split}_images"]] = _write_npy(tmp / _FILES[f"{split}_images"], arrays[split])
            hashes[_FILES[f"{split}_labels"]] = _write_npy(tmp / _FILES[f"{split}_labels"],
                                                           labels[split].astype(np.int64))
        created_by = {"tool": TOOL_VERSION, "numpy": np.__version__}
        if provenance.get("kind") != "official" or image_size is not None:
            import PIL

            created_by["pillow"] = PIL.__version__
        meta = {
            "format": CACHE_FORMAT,
            "name": name,
            "classes": list(classes),
            "counts": {split: int(len(labels[split])) for split in _SPLITS},
            "class_counts": {split: np.bincount(labels[split], minlength=len(classes)).tolist() for split in _SPLITS},
            "image_shape": [int(s) for s in arrays["train"].shape[1:]],
            "image_size": image_size,
            "source": provenance,
            "sha256": hashes,
            "created_by": created_by,
        }
        with open(tmp / "meta.json", "w", encoding="utf-8") as f:
            f.write(json.dumps(meta, indent=2) + "\n")
            f.flush()
            os.fsync(f.fileno())
        _fix_permissions(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if (target / "meta.json").exists():  # another process finished first: keep its cache
                shutil.rmtree(tmp, ignore_errors=True)
                return
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _corrupt(target: Path, name: str, detail: str) -> CorruptDataError:
    root = target.parent
    return CorruptDataError(
        f"the prepared data in {target} is damaged or incomplete ({detail}). Delete the folder "
        f"(rm -rf {target}) and recreate it with `make data` "
        f"(or `python -m rewire.data prepare --dataset {name} --root {root}`), or fetch it again with `dvc pull data.dvc`."
    )


def _read_meta(target: Path, name: str) -> dict | None:
    """The cache's meta.json, or None when ``target`` is an empty directory."""
    if not target.is_dir():
        raise _corrupt(target, name, "it exists but is not a directory")
    meta_path = target / "meta.json"
    if not meta_path.exists():
        if not any(target.iterdir()):
            return None
        raise _corrupt(target, name, "meta.json is missing")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise _corrupt(target, name, f"meta.json is unreadable: {error}") from error
    if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise _corrupt(target, name, f"meta.json has format {found!r}, expected {CACHE_FORMAT!r}")
    if meta.get("name") != name:
        raise _corrupt(target, name, f"it holds dataset {meta.get('name')!r}, not {name!r}")
    for key in ("classes", "counts", "image_shape", "source", "sha256"):
        if key not in meta:
            raise _corrupt(target, name, f"meta.json lacks {key!r}")
    return meta


def _verify_checksums(target: Path, name: str, meta: dict) -> None:
    for fname in _FILES.values():
        path = target / fname
        if not path.exists():
            raise _corrupt(target, name, f"{fname} is missing")
        expected = meta["sha256"].get(fname)
        actual = _sha256_file(path)
        if actual != expected:
            raise _corrupt(target, name, f"{fname} has sha256 {actual[:12]}..., meta.json records "
                                         f"{str(expected)[:12]}... (truncated or modified file)")


def _check_image_size(meta: dict, target: Path, image_size: int | None) -> None:
    if image_size is not None and list(meta["image_shape"][1:]) != [image_size, image_size]:
        h, w = meta["image_shape"][1:]
        raise ValueError(f"{target} holds {h}x{w} images but image_size={image_size} was requested; "
                         f"delete {target} to prepare it again at the new size, or use another root")


def _not_found_message(name: str, target: Path, attempts: list[str]) -> str:
    if name == "cifar10":
        archives = (f"the official cifar-10-python.tar.gz, or an ImageFolder JPEG archive such as {SHARED_JPEG_HINT}")
    elif name == "cifar100":
        archives = "the official cifar-100-python.tar.gz, or an ImageFolder archive (train/ and test/, one folder per class)"
    else:
        archives = "an ImageFolder archive or directory (train/ and test/ or val/, one subfolder per class)"
    if name in _OFFICIAL:
        download = "(c) allow the official torchvision download: it needs internet access (download=True; CLI without --no-download)."
    else:
        download = (f"(c) the torchvision download exists only for cifar10 and cifar100, not for {name!r}; "
                    f"use (a) or (b).")
    lines = [
        f"no prepared data for {name!r} in {target} and no way to create it. Get it in one of three ways:",
        f"  (a) fetch the prepared cache with `dvc pull data.dvc`, or copy an existing prepared cache to {target};",
        f"  (b) point to a local archive: set {ENV_ARCHIVE}=/path/to/archive or pass archive= (CLI: --archive PATH); "
        f"accepted: {archives}; a .tar/.tar.gz/.tgz file or an extracted directory;",
        f"  {download}",
    ]
    if attempts:
        lines.append("Tried: " + "; ".join(attempts))
    return "\n".join(lines)


def _brief(error: BaseException, limit: int = 300) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def _download_official(dataset: str, workdir: Path) -> Path:
    """Download the official release with torchvision into ``workdir``; return the tarball (or folder)."""
    import torchvision

    cls = {"cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100}[dataset]
    cls(root=str(workdir), train=True, download=True)
    tarball = workdir / _OFFICIAL[dataset]["tarball"]
    if tarball.is_file():
        return tarball
    folder = workdir / _OFFICIAL[dataset]["folder"]
    if folder.is_dir():
        return folder
    raise RuntimeError(f"torchvision finished but neither {tarball.name} nor {folder.name}/ is in {workdir}")


def _build_from(path: Path, origin: str, target: Path, name: str, image_size: int | None,
                origin_label: str | None = None) -> None:
    source = _open_source(path, origin)
    try:
        classes, arrays, labels, provenance = _read_source(source, name, image_size, origin_label)
    finally:
        source.close()
    _write_cache(target, name, classes, arrays, labels, provenance, image_size)


def _ensure_cache(dataset, root, archive, download, image_size) -> tuple[Path, dict, bool]:
    """(cache path, meta, checksums verified in this call)."""
    name = _check_name(dataset)
    if image_size is not None and (isinstance(image_size, bool) or int(image_size) != image_size or image_size < 1):
        raise ValueError(f"image_size must be a positive integer or None, got {image_size!r}")
    image_size = None if image_size is None else int(image_size)
    root = Path(root)
    target = root / name

    # 1. an existing cache
    if target.exists():
        meta = _read_meta(target, name)
        if meta is not None:
            _verify_checksums(target, name, meta)
            _check_image_size(meta, target, image_size)
            log.info("using the prepared cache %s", target)
            return target, meta, True
        target.rmdir()  # an empty folder left by a tool: prepare into it

    root.mkdir(parents=True, exist_ok=True)
    attempts: list[str] = []

    # 2. a local archive
    if archive is not None:
        path = Path(archive)
        if not path.exists():
            raise DataNotFoundError(_not_found_message(name, target, [f"archive={str(archive)!r} does not exist"]))
        try:
            _build_from(path, str(archive), target, name, image_size)
        except _WrongDataset as error:
            raise ValueError(str(error)) from None
        meta = _read_meta(target, name)
        return target, meta, False
    env = os.environ.get(ENV_ARCHIVE, "").strip()
    if env:
        path = Path(env)
        if not path.exists():
            attempts.append(f"{ENV_ARCHIVE}={env!r} does not exist")
        else:
            try:
                _build_from(path, env, target, name, image_size)
                return target, _read_meta(target, name), False
            except _WrongDataset as error:  # e.g. the CIFAR-10 copy while cifar100 is requested
                attempts.append(f"{ENV_ARCHIVE}={env!r}: {error}")
        log.warning("%s", attempts[-1])

    # 3. the official download
    if name not in _OFFICIAL:
        attempts.append(f"no download for {name!r}")
    elif not download:
        attempts.append("download disabled (download=False / --no-download)")
    else:
        workdir = Path(tempfile.mkdtemp(prefix=f".tmp-download-{name}-", dir=root))
        try:
            try:
                fetched = _download_official(name, workdir)
            except Exception as error:  # no network, proxy, checksum mismatch...
                attempts.append(f"torchvision download failed ({_brief(error)})")
            else:
                _build_from(fetched, str(fetched), target, name, image_size, origin_label="torchvision download")
                return target, _read_meta(target, name), False
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    raise DataNotFoundError(_not_found_message(name, target, attempts))


def prepare(dataset: str = "cifar10", root: str | os.PathLike = "data", archive: str | os.PathLike | None = None,
            download: bool = True, image_size: int | None = None) -> Path:
    """Create the prepared cache ``root/<dataset>/`` once and return its path.

    Sources, in order: (1) an existing valid cache (returned untouched); (2) a local archive:
    ``archive``, else ``$REWIRE_DATA_ARCHIVE`` -- a tar(.gz) file or a directory with the official
    CIFAR-10/CIFAR-100 python release or an ImageFolder tree (``train/`` and ``test/`` or ``val/``,
    one subfolder per class; ``val`` becomes the test split); (3) the official torchvision
    download (cifar10/cifar100, ``download=True``). ``image_size`` resizes image-folder data
    (shorter side, bilinear) and centre-crops it square; without it all images must share one size.

    An explicit ``archive`` that does not hold the dataset raises ``ValueError``; one named by
    the environment variable is skipped (so a global CIFAR-10 setting does not block cifar100).
    Raises :class:`DataNotFoundError` when nothing works and :class:`CorruptDataError` for a
    damaged cache.
    """
    return _ensure_cache(dataset, root, archive, download, image_size)[0]


def load(dataset: str = "cifar10", root: str | os.PathLike = "data", archive: str | os.PathLike | None = None,
         download: bool = True, image_size: int | None = None) -> ImageDataset:
    """:func:`prepare` the cache if needed, verify its checksums and read it into an :class:`ImageDataset`."""
    target, meta, verified = _ensure_cache(dataset, root, archive, download, image_size)
    name = meta["name"]
    if not verified:
        _verify_checksums(target, name, meta)
    tensors = {}
    for key, fname in _FILES.items():
        try:
            array = np.load(target / fname, allow_pickle=False)
        except (OSError, ValueError, EOFError) as error:
            raise _corrupt(target, name, f"{fname} is unreadable: {error}") from error
        split = key.split("_")[0]
        expected_n = meta["counts"][split]
        if key.endswith("images"):
            ok = array.dtype == np.uint8 and list(array.shape) == [expected_n, *meta["image_shape"]]
        else:
            ok = array.dtype == np.int64 and list(array.shape) == [expected_n]
        if not ok:
            raise _corrupt(target, name, f"{fname} holds {array.dtype} {array.shape}, which disagrees with meta.json")
        tensors[key] = torch.from_numpy(array)
    try:
        return ImageDataset(name=name, classes=tuple(meta["classes"]), source=dict(meta["source"]), **tensors)
    except ValueError as error:
        raise _corrupt(target, name, str(error)) from error


# ----------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rewire.data", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("prepare", help="create the prepared cache root/<dataset> (cache > archive > download)")
    p.add_argument("--dataset", default="cifar10", help="cifar10, cifar100 or a name for an ImageFolder dataset")
    p.add_argument("--root", default="data", help="folder holding the prepared caches (default: data)")
    p.add_argument("--archive", default=None, help=f"local archive or directory (default: ${ENV_ARCHIVE})")
    p.add_argument("--no-download", action="store_true", help="never try the torchvision download")
    p.add_argument("--image-size", type=int, default=None, help="resize image-folder data to N x N")
    v = commands.add_parser("verify", help="check an existing cache's checksums and describe it (no preparation)")
    v.add_argument("--dataset", default="cifar10")
    v.add_argument("--root", default="data")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        if args.command == "prepare":
            started = time.perf_counter()
            path = prepare(args.dataset, args.root, archive=args.archive, download=not args.no_download,
                           image_size=args.image_size)
            seconds = time.perf_counter() - started
        else:
            target = Path(args.root) / _check_name(args.dataset)
            if not target.exists():
                raise DataNotFoundError(_not_found_message(_check_name(args.dataset), target, []))
            path, seconds = target, None
        data = load(args.dataset, args.root, download=False)
    except (DataNotFoundError, CorruptDataError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    src = data.source
    print(f"cache: {path}")
    print(f"source: {src.get('kind')} - {src.get('description')}")
    print(f"origin: {src.get('origin')} (sha256 {src.get('sha256')})")
    print(f"classes: {data.num_classes}; train: {data.train_labels.numel()}; test: {data.test_labels.numel()}; "
          f"images: {'x'.join(str(s) for s in data.image_shape)}")
    for fname, digest in meta["sha256"].items():
        print(f"sha256 {fname}: {digest}")
    if seconds is not None:
        print(f"seconds: {seconds:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
