"""What a dataset is: :class:`ImageDataset` (uint8 tensors in memory), its subsets and validation split,
the built-in class lists and channel statistics, and the errors the data package raises.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR100_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SPLITS",
    "CorruptDataError",
    "DataNotFoundError",
    "ImageDataset",
    "channel_statistics",
    "normalisation_for",
]

SPLITS = ("train", "test")

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
    ``origin`` -- the source's kind and file name, never a path -- and the archive's ``sha256``);
    results should carry it along.
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
        for split in SPLITS:
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

