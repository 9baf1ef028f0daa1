"""Synthetic data shared by the tests (no download, no data/ folder)."""

import torch

from rewire.data import ImageDataset


def tiny_dataset() -> ImageDataset:
    """30 training and 12 test images of 3 classes, 16x16 random pixels, named like CIFAR-10 for its statistics."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat_interleave(10)
    images = torch.randint(0, 256, (30, 3, 16, 16), generator=g, dtype=torch.uint8)
    return ImageDataset(
        "cifar10",
        ("a", "b", "c"),
        images,
        labels,
        images[:12],
        labels[:12],
        {"kind": "synthetic", "description": "random pixels"},
    )
