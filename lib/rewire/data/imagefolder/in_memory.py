"""The ImageNet recipe's two transforms on images held in memory as tensors (the robust-binary ImageNet-100 path).

The robust-binary experiment keeps ImageNet-100 in memory (:func:`rewire.data.load` with ``image_size``: each
image's shorter side resized to ``image_size`` with PIL's bilinear filter, then its central square kept, uint8;
``rewire.data.sources``). With ``image_size`` 256 that square holds everything the recipe's two transforms read
(the robust-binary authors' ImageNet-100 loader, as the torchvision ImageNet recipe: ``Resize(256)`` +
``CenterCrop(224)`` for testing, ``RandomResizedCrop(224)`` + ``RandomHorizontalFlip`` for training):

* testing: :func:`centre_crop` of 224 from the stored 256 square (offset 16 = (256 - 224) / 2, exact) is
  ``CenterCrop(224)`` of the ``Resize(256)`` image, pixel for pixel, wherever the stored square's own centring
  offset rounds as torchvision's does (the cache floors ``(long - 256) / 2``, torchvision rounds it half to even:
  they differ by one pixel when that half-integer's floor is odd);
* training: :class:`RandomResizedCropLoader` draws per image a :func:`random_resized_crop_box` of the stored
  square (area 0.08-1, aspect 3/4-4/3, torchvision's algorithm) and a flip (p = 0.5), and resizes the box to 224
  with :func:`resized_crop` (bilinear, one batched ``grid_sample``). Two differences from the authors' crop of the
  original JPEG, both stated: the box lies in the central square (the sides of a non-square image are never
  seen), and it is resampled from the 256 px image (no antialiasing: a box is at most 256 px, so it is shrunk
  by at most 256/224).

:func:`paste_resized` is :func:`resized_crop`'s inverse map (crop coordinates back into the stored image), used
by the fast training's per-image perturbation cache so that a perturbation stays where it was on the image.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rewire.data.imagefolder.transforms import FLIP_PROBABILITY, random_resized_crop_box
from rewire.data.loader import BatchLoader

__all__ = [
    "CropBoxes",
    "EvalCroppedImages",
    "RandomResizedCropLoader",
    "centre_crop",
    "centre_crop_test",
    "draw_crop_boxes",
    "paste_resized",
    "resized_crop",
]


def centre_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size x size`` window of ``[N, C, H, W]`` images (top ``(H - size) // 2``, left likewise)."""
    h, w = images.shape[-2:]
    if not 0 < size <= min(h, w):
        raise ValueError(f"crop size must lie in [1, {min(h, w)}] for {h}x{w} images, got {size}; e.g. 224 of 256")
    top, left = (h - size) // 2, (w - size) // 2
    return images[..., top : top + size, left : left + size].contiguous()


@dataclass(frozen=True, eq=False, repr=False)
class EvalCroppedImages:
    """A dataset whose training images keep the stored size (the training loader crops them) and whose test images
    are centre-cropped to ``crop_size``; the attributes of :class:`rewire.data.ImageDataset` that training and
    evaluation read (an ``ImageDataset`` requires one image shape for both splits)."""

    name: str
    classes: tuple[str, ...]
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: dict
    crop_size: int


def centre_crop_test(dataset, crop_size: int) -> EvalCroppedImages:
    """``dataset`` with its test images centre-cropped to ``crop_size`` (:func:`centre_crop`), training images kept."""
    return EvalCroppedImages(
        name=dataset.name,
        classes=tuple(dataset.classes),
        train_images=dataset.train_images,
        train_labels=dataset.train_labels,
        test_images=centre_crop(dataset.test_images, crop_size),
        test_labels=dataset.test_labels,
        source=dict(dataset.source),
        crop_size=int(crop_size),
    )


@dataclass(frozen=True)
class CropBoxes:
    """Per-image crop boxes ``(top, left, height, width)`` in stored-image pixels and horizontal flips (int64 and
    bool tensors of one length)."""

    top: torch.Tensor
    left: torch.Tensor
    height: torch.Tensor
    width: torch.Tensor
    flip: torch.Tensor

    def __len__(self) -> int:
        return int(self.top.shape[0])

    def __getitem__(self, part: slice) -> CropBoxes:
        return CropBoxes(self.top[part], self.left[part], self.height[part], self.width[part], self.flip[part])


def draw_crop_boxes(n: int, height: int, width: int, generator: torch.Generator, flip: bool = True) -> CropBoxes:
    """``n`` :func:`random_resized_crop_box` boxes of a ``height x width`` image, each followed by its flip draw
    (``torch.rand < 0.5``, ``RandomHorizontalFlip``'s), all from ``generator`` in that order."""
    boxes, flips = [], []
    for _ in range(n):
        boxes.append(random_resized_crop_box(height, width, generator))
        flips.append(bool(flip) and torch.rand(1, generator=generator).item() < FLIP_PROBABILITY)
    table = torch.tensor(boxes, dtype=torch.int64).reshape(n, 4)
    return CropBoxes(*table.unbind(1), torch.tensor(flips, dtype=torch.bool))


def _source_coordinates(start, length, size: int, device) -> torch.Tensor:
    """Bilinear resize's source coordinate of each of ``size`` outputs over the window ``[start, start + length)``
    (``F.interpolate(align_corners=False)``: ``start + (j + 0.5) * length / size - 0.5``, clamped into the window)."""
    start = start.to(device, torch.float32)[:, None]
    length = length.to(device, torch.float32)[:, None]
    j = torch.arange(size, device=device, dtype=torch.float32)[None]
    position = start + (j + 0.5) * length / size - 0.5
    return torch.minimum(torch.maximum(position, start), start + length - 1)


def _normalised(position: torch.Tensor, extent: int) -> torch.Tensor:
    """Pixel coordinates -> ``grid_sample``'s [-1, 1] (``align_corners=False``)."""
    return (2 * position + 1) / extent - 1


def resized_crop(images: torch.Tensor, boxes: CropBoxes, size: int) -> torch.Tensor:
    """Each float image's box resized to ``size x size`` (bilinear, no antialiasing) and flipped where ``flip``:
    ``TF.resized_crop(x, top, left, h, w, [size, size], BILINEAR, antialias=False)`` (then ``hflip``) per image,
    in one ``grid_sample``."""
    b, _, h, w = images.shape
    if len(boxes) != b:
        raise ValueError(f"{b} images but {len(boxes)} crop boxes")
    device = images.device
    rows = _normalised(_source_coordinates(boxes.top, boxes.height, size, device), h)  # (B, size)
    cols = _source_coordinates(boxes.left, boxes.width, size, device)
    cols = _normalised(torch.where(boxes.flip.to(device)[:, None], cols.flip(1), cols), w)  # (B, size)
    grid = torch.stack(torch.broadcast_tensors(cols[:, None, :], rows[:, :, None]), dim=-1)  # x, y
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def paste_resized(crops: torch.Tensor, boxes: CropBoxes, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The inverse map of :func:`resized_crop`: each ``size x size`` crop resampled (bilinear) back onto its box of
    a ``height x width`` image. Returns ``(values, seen)``: ``values`` ``[B, C, height, width]`` (zero outside the
    box) and ``seen`` ``[B, 1, height, width]`` (bool, the box's pixels)."""
    b, _, size, _ = crops.shape
    device = crops.device
    r = torch.arange(height, device=device, dtype=torch.float32)[None]
    c = torch.arange(width, device=device, dtype=torch.float32)[None]
    top, left = boxes.top.to(device, torch.float32)[:, None], boxes.left.to(device, torch.float32)[:, None]
    bh, bw = boxes.height.to(device, torch.float32)[:, None], boxes.width.to(device, torch.float32)[:, None]
    rows = ((r - top + 0.5) * size / bh - 0.5).clamp(0, size - 1)  # crop coordinates of every stored pixel
    cols = ((c - left + 0.5) * size / bw - 0.5).clamp(0, size - 1)
    cols = torch.where(boxes.flip.to(device)[:, None], size - 1 - cols, cols)
    grid = torch.stack(
        torch.broadcast_tensors(_normalised(cols, size)[:, None, :], _normalised(rows, size)[:, :, None]), -1
    )
    values = F.grid_sample(crops, grid, mode="bilinear", padding_mode="border", align_corners=False)
    inside_rows = (r >= top) & (r < top + bh)  # (B, height)
    inside_cols = (c >= left) & (c < left + bw)
    seen = (inside_rows[:, :, None] & inside_cols[:, None, :])[:, None]
    return values * seen, seen


class RandomResizedCropLoader(BatchLoader):
    """A :class:`BatchLoader` whose training batches are ``RandomResizedCrop(crop_size)`` + flip of the stored
    images (:func:`draw_crop_boxes` from the augmentation generator at the start of each epoch, :func:`resized_crop`
    per batch), float32 ``(x / 255 - mean) / std``. Order, seeds, ``last_index`` and the state are
    :class:`BatchLoader`'s. Drawing the boxes takes about 5 s per 126,000 images on one busy CPU core (measured)."""

    def __init__(self, *args, crop_size: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        h, w = self.images.shape[-2:]
        if not self.augment:
            raise ValueError("RandomResizedCropLoader augments (augment=True); use BatchLoader for fixed images")
        if isinstance(crop_size, bool) or int(crop_size) != crop_size or not 0 < crop_size <= min(h, w):
            raise ValueError(f"crop_size must be an integer in [1, {min(h, w)}] for {h}x{w} images, got "
                             f"{crop_size!r}; e.g. 224 of 256")  # fmt: skip
        self.crop_size = int(crop_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, (h, w) = self.num_examples, self.images.shape[-2:]
        order = torch.randperm(n, generator=self._order_generator) if self.shuffle else torch.arange(n)
        boxes = draw_crop_boxes(n, h, w, self._augmentation_generator, self.horizontal_flip)
        self._epoch += 1
        order = order.to(self.device)
        limit = len(self) * self.batch_size if self.drop_last else n

        def batches():
            for start in range(0, limit, self.batch_size):
                idx = order[start : start + self.batch_size]
                pixels = self.images[idx].float().div_(255.0)
                crops = resized_crop(pixels, boxes[start : start + idx.numel()], self.crop_size)
                self.last_index = idx
                yield crops.sub_(self._mean).div_(self._std), self.labels[idx]

        return batches()
