"""The two per-image transforms of the DNW ImageNet recipe (authors' public configs): training
RandomResizedCrop + flip, evaluation Resize + CenterCrop, both normalised; seeded per image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from rewire.data.datasets import IMAGENET_MEAN, IMAGENET_STD

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
