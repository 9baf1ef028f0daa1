"""Streaming ImageNet-style folders: decode each image in DataLoader workers, augment as the DNW ImageNet recipe.

Why a second loader
-------------------
The rest of :mod:`rewire.data` decodes a dataset once into uint8 tensors that live on the
training device (:class:`rewire.data.BatchLoader`). ImageNet at 224 px would need about
190 GB that way, so this module reads the files every epoch instead: ``torch.utils.data``
worker processes open, decode and augment one image each, and the batches are collated,
pinned (when CUDA is present) and moved to the training device.

Layout (the standard ImageNet ``ImageFolder`` layout)::

    root/
      train/<class>/<image files>     classes = sorted names of the train/ subfolders
      val/<class>/<image files>       the same class folders as train/

An optional ``classes`` argument (a list of folder names, or a text file with one name per
line) restricts both splits to those classes and labels them ``0..len(classes)-1`` in the given
order: the 100-class ImageNet subset of the robust-binary paper (Liu et al. 2022, Appendix,
"Experimental settings": ImageNet100, the classes chosen by the Continuum library) is such a list.
:func:`scan_image_folder` checks the whole layout before anything is decoded and raises one
:class:`ImageFolderLayoutError` that shows the expected tree and what it found.

Augmentation (the DNW ImageNet recipe: the authors' public configs, allenai/dnw
``apps/large_scale``; DNW Section 2.4 describes the model): training images get
``RandomResizedCrop(224)`` and ``RandomHorizontalFlip``, validation images
``Resize(256)`` + ``CenterCrop(224)``; both then ``ToTensor`` and ``Normalize`` with the
ImageNet channel mean/std that the torchvision model documentation gives
(mean 0.485/0.456/0.406, std 0.229/0.224/0.225: :data:`rewire.data.IMAGENET_MEAN`/``_STD``).

Reproducibility. The training order of epoch ``e`` is ``DistributedSampler``'s permutation
for ``seed = order_seed`` and ``epoch = e``; the crop and flip of every image come from its own
``torch.Generator`` seeded by ``(augmentation_seed, e, image index)``. Batches therefore do not
depend on the number of worker processes nor on which worker decodes which image, and no global
random generator is touched. Workers additionally seed Python's ``random`` and numpy from their
torch seed (which the loader's seeded generator fixes), for any library code that draws from them.
``state_dict()`` records the next epoch and the seeds; resuming starts at the beginning of that
epoch (resuming in the middle of an epoch is not supported by this loader).

Where things live: :func:`read_class_list` and :func:`scan_image_folder` (the layout, checked),
:class:`TrainAugmentation` / :class:`EvalTransform` (the two transforms, per image),
:class:`ImageFolderLoader` (batches of one split), :func:`image_folder_loaders` (both splits
from one scan).
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from tqdm import tqdm

from rewire.data.datasets import IMAGENET_MEAN, IMAGENET_STD, DataNotFoundError, _derived_seed
from rewire.data.sources import _IMAGE_EXTENSIONS  # what counts as an image file, shared with the cache reader

__all__ = [
    "DNW_IMAGENET_CROP",
    "DNW_IMAGENET_RESIZE",
    "SPLIT_FOLDERS",
    "EvalTransform",
    "ImageFolderIndex",
    "ImageFolderLayoutError",
    "ImageFolderLoader",
    "TrainAugmentation",
    "image_folder_loaders",
    "random_resized_crop_box",
    "read_class_list",
    "scan_image_folder",
]

SPLIT_FOLDERS = ("train", "val")
# DNW ImageNet recipe (authors' public configs, allenai/dnw apps/large_scale): RandomResizedCrop(224) for
# training, Resize(256) + CenterCrop(224) for validation.
DNW_IMAGENET_CROP = 224
DNW_IMAGENET_RESIZE = 256
# torchvision.transforms.RandomResizedCrop defaults (the DNW configs use them unchanged): crop area a uniform
# fraction of the image in [0.08, 1], aspect ratio log-uniform in [3/4, 4/3], 10 tries before the centre fallback.
RANDOM_RESIZED_CROP_SCALE = (0.08, 1.0)
RANDOM_RESIZED_CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
RANDOM_RESIZED_CROP_TRIES = 10
FLIP_PROBABILITY = 0.5  # torchvision.transforms.RandomHorizontalFlip default
_SHOWN = 8  # how many names an error message lists before "..." (our choice: readable with 1000 classes)


class ImageFolderLayoutError(DataNotFoundError):
    """The folder is not an ImageNet-style ``train/`` + ``val/`` tree (or lacks requested classes).

    The message shows the expected layout, what was found, and every problem at once.
    """


# ----------------------------------------------------------------------------- the layout


def read_class_list(classes: Sequence[str] | str | os.PathLike) -> tuple[str, ...]:
    """Class folder names from a list, or from a text file (a ``str``/path) with one name per line.

    In the file, surrounding whitespace is stripped and blank lines and lines starting with
    ``#`` are skipped. The order is kept: it defines the labels ``0..len-1``. An empty list or a
    repeated name raises ``ValueError``; a missing file raises ``FileNotFoundError``.
    """
    if isinstance(classes, (str, os.PathLike)):
        path = Path(classes)
        if not path.is_file():
            raise FileNotFoundError(
                f"class list file {path} does not exist; pass a text file with one class folder name per line, "
                f"or a list of names (a single name must be given as a one-element list)"
            )
        lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
        names = tuple(line for line in lines if line and not line.startswith("#"))
        where = f"class list file {path.name}"
    else:
        names = tuple(classes)
        where = "classes"
        bad = [name for name in names if not isinstance(name, str) or not name.strip()]
        if bad:
            raise ValueError(f"classes must be non-empty strings (folder names), got {bad[:_SHOWN]}")
    if not names:
        raise ValueError(f"{where} names no class; give at least one class folder name")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(
            f"{where} repeats {repeated[:_SHOWN]}; every class may appear once (its position is its label)"
        )
    return names


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(_IMAGE_EXTENSIONS)


def _class_folders(split_dir: Path) -> list[str]:
    """Sorted names of the visible subfolders of ``split_dir``."""
    with os.scandir(split_dir) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def _image_files(class_dir: Path) -> list[str]:
    """Sorted names of the image files in ``class_dir`` (not recursive: the ImageFolder layout is flat)."""
    with os.scandir(class_dir) as entries:
        return sorted(e.name for e in entries if e.is_file() and _is_image(e.name))


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return f"{shown}, ... ({len(names)} in all)" if len(names) > _SHOWN else shown


EXPECTED_LAYOUT = """expected layout (ImageNet ImageFolder):
  {root}/
    train/
      <class_a>/   image files ({extensions})
      <class_b>/   ...
    val/
      <class_a>/   the same class folders as train/
      <class_b>/   ..."""


def _layout_error(root: Path, found: list[str], problems: list[str]) -> ImageFolderLayoutError:
    extensions = ", ".join(_IMAGE_EXTENSIONS[:3]) + ", ..."
    text = EXPECTED_LAYOUT.format(root=root, extensions=extensions)
    text += "\nfound:\n" + "\n".join(f"  {line}" for line in found)
    text += "\nproblems:\n" + "\n".join(f"  - {p}" for p in problems)
    return ImageFolderLayoutError(f"{root} is not a usable ImageNet-style image folder.\n{text}")


@dataclass(frozen=True, eq=False)
class ImageFolderIndex:
    """The checked file list of an ImageNet-style folder: classes, and per split the files and labels.

    ``files[split]`` holds paths relative to ``root`` as a numpy bytes array (one object, so forked
    workers do not copy it page by page through reference counting); ``labels[split]`` is int64.
    Within a split, images are ordered by label, then by file name. ``class_list`` names where a
    class subset came from (``None``: every train/ folder).
    """

    root: Path
    classes: tuple[str, ...]
    files: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    class_list: str | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def num_images(self, split: str) -> int:
        return int(self.labels[split].shape[0])

    @property
    def source(self) -> dict[str, Any]:
        """Where the pixels come from, JSON-serialisable and free of absolute paths (like ``ImageDataset.source``)."""
        origin = f"ImageFolder directory {self.root.name or self.root.resolve().name}"
        counts = {split: self.num_images(split) for split in SPLIT_FOLDERS}
        subset = f"; class subset from {self.class_list}" if self.class_list else ""
        return {
            "kind": "image-folder-stream",
            "description": (
                f"{origin} decoded image by image every epoch ({self.num_classes} classes; "
                f"train {counts['train']}, val {counts['val']} images{subset})"
            ),
            "origin": origin,
            "layout": "image-folder",
            "test_split": "val",
            "counts": counts,
            "classes": list(self.classes),
            "class_list": self.class_list,
        }


def scan_image_folder(
    root: str | os.PathLike, classes: Sequence[str] | str | os.PathLike | None = None
) -> ImageFolderIndex:
    """List and check ``root/train`` and ``root/val`` (the ImageNet ImageFolder layout), decoding nothing.

    Without ``classes`` the labels are the sorted train/ folder names and val/ must hold the
    same set. With ``classes`` (see :func:`read_class_list`) only those folders are read, in that
    order, and each must exist, with images, in both splits. Every problem found -- missing root,
    ``train/`` or ``val/``, a split without class folders, a class folder without images, val/
    classes missing from train/ (or the reverse), requested classes that do not exist -- is
    reported together in one :class:`ImageFolderLayoutError`.
    """
    root = Path(root)
    requested = read_class_list(classes) if classes is not None else None
    if not root.is_dir():
        state = "is a file, not a directory" if root.exists() else "does not exist"
        raise _layout_error(root, [f"{root} {state}"], [f"the root folder {state}"])

    found: list[str] = []
    problems: list[str] = []
    with os.scandir(root) as entries:
        top = sorted(e.name + ("/" if e.is_dir() else "") for e in entries if not e.name.startswith("."))
    found.append(f"{root.name or root}/ holds: {_listing(top) if top else 'nothing'}")
    folders: dict[str, list[str]] = {}
    for split in SPLIT_FOLDERS:
        split_dir = root / split
        if not split_dir.is_dir():
            found.append(f"{split}/: missing")
            problems.append(f"{split}/ is missing")
            continue
        folders[split] = _class_folders(split_dir)
        if not folders[split]:
            found.append(f"{split}/: no class folders")
            problems.append(f"{split}/ holds no class folders (one subfolder per class, images inside)")
        else:
            found.append(f"{split}/: {len(folders[split])} class folders ({_listing(folders[split])})")

    if requested is not None:
        chosen = list(requested)
        for split, names in folders.items():
            absent = [c for c in requested if c not in set(names)]
            if absent:
                problems.append(f"requested classes missing from {split}/: {_listing(absent)}")
    else:
        chosen = folders.get("train") or folders.get("val", [])
        if "train" in folders and "val" in folders:
            extra = sorted(set(folders["val"]) - set(folders["train"]))
            lacking = sorted(set(folders["train"]) - set(folders["val"]))
            if extra:
                problems.append(f"val/ has class folders that train/ lacks: {_listing(extra)}")
            if lacking:
                problems.append(f"train/ has class folders that val/ lacks: {_listing(lacking)}")

    files: dict[str, np.ndarray] = {}
    labels: dict[str, np.ndarray] = {}
    for split, names in folders.items():
        present = set(names)
        paths: list[bytes] = []
        split_labels: list[int] = []
        empty: list[str] = []
        for label, name in enumerate(chosen):
            if name not in present:
                continue
            images = _image_files(root / split / name)
            if not images:
                empty.append(name)
            paths.extend(os.fsencode(f"{split}/{name}/{image}") for image in images)
            split_labels.extend([label] * len(images))
        if empty:
            problems.append(f"class folders in {split}/ without image files: {_listing(empty)}")
        files[split] = np.array(paths, dtype=np.bytes_) if paths else np.zeros(0, dtype="S1")
        labels[split] = np.array(split_labels, dtype=np.int64)
        found.append(
            f"{split}/: {len(paths)} images in the {len(chosen)} {'requested' if requested else 'train/'} classes"
        )
    if problems:
        raise _layout_error(root, found, problems)
    class_list = None
    if requested is not None:
        class_list = f"file {Path(classes).name}" if isinstance(classes, (str, os.PathLike)) else "a list"
    return ImageFolderIndex(root, tuple(chosen), files, labels, class_list)


# ----------------------------------------------------------------------------- per-image transforms


def random_resized_crop_box(
    height: int,
    width: int,
    generator: torch.Generator,
    scale: tuple[float, float] = RANDOM_RESIZED_CROP_SCALE,
    ratio: tuple[float, float] = RANDOM_RESIZED_CROP_RATIO,
) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of a random-resized crop of a ``height x width`` image, drawn from ``generator``.

    The algorithm of ``torchvision.transforms.RandomResizedCrop.get_params`` (the Inception crop of
    Szegedy et al. 2015): up to 10 tries of an area fraction uniform in ``scale`` and a log-uniform
    aspect ratio in ``ratio``; the first box that fits is placed uniformly; otherwise the central box
    with the ratio clamped to ``ratio``. The random numbers are drawn in torchvision's order, so a
    generator seeded with ``s`` gives the box torchvision gives after ``torch.manual_seed(s)`` -- but
    without touching the global generator.
    """
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))
    for _ in range(RANDOM_RESIZED_CROP_TRIES):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1], generator=generator).item()
        aspect = torch.exp(torch.empty(1).uniform_(log_ratio[0].item(), log_ratio[1].item(), generator=generator))
        aspect = aspect.item()  # exp in float32, as torchvision, so the boxes agree to the pixel
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, size=(1,), generator=generator).item())
            left = int(torch.randint(0, width - w + 1, size=(1,), generator=generator).item())
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def _to_normalised_tensor(image: Image.Image, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``ToTensor`` (uint8 HWC -> float32 CHW, ``x / 255``) then ``Normalize`` (``(x - mean) / std`` per channel).

    Computed in numpy with the same float32 operations, so the result is bit-identical to
    torchvision's, but single-threaded: torch's intra-op threads made these small per-image
    operations 15x slower in the main process (``num_workers=0``) on a busy 2-core machine
    (measured; worker processes run one torch thread anyway).
    """
    pixels = np.asarray(image, dtype=np.float32) / np.float32(255)
    pixels = (pixels - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))


@dataclass(frozen=True)
class TrainAugmentation:
    """DNW ImageNet training transform: ``RandomResizedCrop(crop_size)`` + ``RandomHorizontalFlip`` + normalise.

    The crop (bilinear resize of the :func:`random_resized_crop_box` box to ``crop_size``) and the
    flip (probability 0.5) are drawn from the ``generator`` passed with each image.
    """

    crop_size: int = DNW_IMAGENET_CROP
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def __call__(self, image: Image.Image, generator: torch.Generator) -> torch.Tensor:
        top, left, h, w = random_resized_crop_box(image.height, image.width, generator)
        image = TF.resized_crop(
            image, top, left, h, w, [self.crop_size, self.crop_size], TF.InterpolationMode.BILINEAR, antialias=True
        )
        if torch.rand(1, generator=generator).item() < FLIP_PROBABILITY:
            image = TF.hflip(image)
        return _to_normalised_tensor(image, self.mean, self.std)


@dataclass(frozen=True)
class EvalTransform:
    """DNW ImageNet validation transform: ``Resize(resize_size)`` (shorter side, bilinear), ``CenterCrop(crop_size)``,
    normalise. Deterministic."""

    resize_size: int = DNW_IMAGENET_RESIZE
    crop_size: int = DNW_IMAGENET_CROP
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def __call__(self, image: Image.Image) -> torch.Tensor:
        image = TF.resize(image, [self.resize_size], TF.InterpolationMode.BILINEAR, antialias=True)
        image = TF.center_crop(image, [self.crop_size, self.crop_size])
        return _to_normalised_tensor(image, self.mean, self.std)


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
