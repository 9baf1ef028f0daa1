"""Datasets for rewire: a compact prepared cache, in-memory uint8 tensors and batched on-device augmentation.

Design
------
The models trained here are small and CIFAR images are tiny, so a classic
``torchvision`` pipeline (decode a PIL image, ``RandomCrop``, ``RandomHorizontalFlip``,
``ToTensor``, ``Normalize`` -- per image, in Python, in worker processes) costs
more time than the forward and backward passes. This package therefore splits the
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
   are deterministic for a given source -- and hold no absolute path (the archive is
   named by its file name) -- so DVC hashes stay stable across checkouts.

2. **Training, every epoch** (:class:`BatchLoader`). The uint8 arrays (150 MB for the
   CIFAR-10 training set) are moved to the training device once. Each batch is
   a tensor index; random crops (zero padding + per-image offsets) and horizontal
   flips are done for the whole batch at once with one gather, followed by
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

Where things live
-----------------
- ``datasets.py``  :class:`ImageDataset` (subsets, validation split), class names, channel
  statistics (:func:`normalisation_for`, :func:`channel_statistics`), the error classes
- ``sources.py``   reading a raw release: tar archives and directories, layout detection,
  ImageFolder decoding, the official CIFAR pickles (restricted unpickler)
- ``cache.py``     the prepared cache on disk (atomic write, ``meta.json``, checksums) and
  :func:`prepare` / :func:`load`, which find or create it (including the torchvision download)
- ``loader.py``    :func:`crop_and_flip` and :class:`BatchLoader`
- ``cli.py``       ``python -m rewire.data prepare|verify`` (``__main__.py`` runs it)

Everything public is importable from ``rewire.data`` itself.
"""

from __future__ import annotations

from rewire.data.cache import CACHE_FORMAT, ENV_ARCHIVE, load, prepare
from rewire.data.cache import SHARED_JPEG_HINT, TOOL_VERSION  # noqa: F401  (public names of the old module)
from rewire.data.cli import main
from rewire.data.datasets import (
    CIFAR10_CLASSES,
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_CLASSES,
    CIFAR100_MEAN,
    CIFAR100_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    CorruptDataError,
    DataNotFoundError,
    ImageDataset,
    channel_statistics,
    normalisation_for,
)
from rewire.data.loader import BatchLoader, crop_and_flip

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
