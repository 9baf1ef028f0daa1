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


def separable_loaders(num_classes: int):
    """Train and test loaders over 12 images per class whose pixel level encodes the class (learnable in a
    few steps): batch 8, 6 steps per epoch for 4 classes; no augmentation."""
    from rewire.data import BatchLoader

    g = torch.Generator().manual_seed(0)
    labels = torch.arange(num_classes).repeat_interleave(12)
    images = (torch.randint(0, 200, (labels.numel(), 3, 8, 8), generator=g) + 12 * labels[:, None, None, None]).to(
        torch.uint8
    )
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    train = BatchLoader(
        images, labels, 8, shuffle=True, augment=False, mean=mean, std=std, order_seed=1, drop_last=True
    )
    test = BatchLoader(images, labels, 16, shuffle=False, augment=False, mean=mean, std=std)
    return train, test
