"""Fast adversarial training: FGSM with a random start and ATTA perturbation reuse.

* :func:`fgsm_rs` -- FGSM with a random start (Wong, Rice & Kolter 2020, "Fast is
  better than free"): one signed-gradient step of size ``step_size`` from a start
  point in the eps-ball, projected onto the eps-ball and clamped to [0, 1].
* :class:`ATTACache` -- ATTA (Zheng et al. 2020, "Efficient adversarial training
  with transferable adversarial examples"): the perturbation found for a training
  image in one epoch is the start point of the next epoch's attack on the same
  image. Liu et al. 2022 (App. C, Algorithm 2) combine both for their fast
  training; ImageNet-100's cache is stored at reduced resolution (downsampled for
  storage and upsampled when used).

Since a training image is randomly cropped and flipped every epoch, the cache is
kept on the *padded canvas* (C x (H + 2 pad) x (W + 2 pad)) and the augmentation
is done by the attacker (the loader must not augment): each batch draws its crop
offsets and flips, the image and the cached perturbation are cropped/flipped the
same way, and after the FGSM step the perturbation is written back through the
inverse crop/flip. Canvas pixels the crop did not cover keep their values.

Authors' code (``util/augmentation.py``, ``trainers/adv_step_fast.py``) choices
reproduced here: padding 4 with value 0.5; horizontal flip with probability 1/2;
the canvas initialised U(-eps, eps); the cache stores the perturbation actually
applied, ``x_adv - x`` after the [0, 1] clamp (as the authors' ``update_delta``
does); compression by 8x8 average pooling for storage and nearest-neighbour
upsampling for use, applied when H > 160 (``compress="auto"``); step size 4/255 at
eps = 8/255 on CIFAR (config ``resnet34-binary-weights-fast.yaml``).
Differences, each switchable (the robust-binary experiment's ``attack_protocol:
authors`` switches the first two to the authors' behaviour):

* crop offsets are drawn from 0..2*pad inclusive (torchvision ``RandomCrop``); the
  authors draw 0..2*pad-1 (``offsets="authors"``);
* the FGSM step sees the network in eval mode (``bn_mode="eval"``); the authors'
  attack runs in ``model.train()`` (``bn_mode="train"``);
* with compression, canvas blocks that the crop did not touch keep their stored
  value exactly (a block is re-averaged only when at least one of its pixels was seen).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from rewire.attacks._common import (
    check_bn_mode,
    check_budget,
    check_inputs,
    check_steps,
    model_mode,
    per_sample_ce,
    uniform_like,
)

__all__ = ["fgsm_rs", "Augmentation", "ATTACache"]


def fgsm_rs(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float = 8 / 255,
    step_size: float | None = None,
    delta: torch.Tensor | None = None,
    bn_mode: str = "eval",
    loss_fn=None,
    generator: torch.Generator | None = None,
    steps: int = 1,
) -> torch.Tensor:
    """One FGSM step from ``x + delta`` (``delta`` ~ U(-eps, eps) when not given).

    ``step_size`` defaults to 1.25 * eps (Wong et al. 2020). ``steps`` must be 1 and exists
    only so that ``make_attack("fgsm_rs", steps=1)`` reads like the other attacks.
    """
    eps = check_budget(eps, "eps")
    step_size = check_budget(1.25 * eps if step_size is None else step_size, "step_size")
    if check_steps(steps) != 1:
        raise ValueError(f"fgsm_rs takes exactly one step, got steps={steps}; use pgd_linf for more")
    check_bn_mode(bn_mode)
    check_inputs(x, y)
    loss_fn = loss_fn or per_sample_ce
    x = x.detach()
    if delta is None:
        delta = uniform_like(x, eps, generator)
    elif delta.shape != x.shape:
        raise ValueError(f"delta has shape {tuple(delta.shape)}, images {tuple(x.shape)}")
    delta = torch.clamp(delta.detach(), -eps, eps)
    with model_mode(model, bn_mode):
        x_start = torch.clamp(x + delta, 0, 1).requires_grad_(True)
        grad = torch.autograd.grad(loss_fn(model(x_start), y).mean(), x_start)[0]
    delta = torch.clamp(delta + step_size * grad.sign(), -eps, eps)
    return torch.clamp(x + delta, 0, 1)


@dataclass(frozen=True)
class Augmentation:
    """Per-sample crop offsets into the padded canvas and horizontal flips."""

    dy: torch.Tensor  # (B,) int64, row offset in the padded canvas
    dx: torch.Tensor  # (B,) int64, column offset
    flip: torch.Tensor  # (B,) bool, flip the width axis after cropping

    def __len__(self) -> int:
        return self.dy.shape[0]


class ATTACache:
    """Per-sample perturbation cache on the padded canvas, with the augmentation done here.

    Arguments:
        num_samples: size of the training set; samples are addressed by dataset index.
        image_shape: (C, H, W) of the un-augmented images.
        eps: L-infinity budget (pixels in [0, 1]).
        pad: padding of the random crop (4).
        pad_value: value of the padded image pixels (0.5 in the authors' code).
        compress: storage downsampling factor; ``"auto"``: 8 when H > 160, else 1.
        offsets: ``"torchvision"`` (0..2*pad) or ``"authors"`` (0..2*pad-1).
        device: where the canvas lives.
        generator: RNG for the canvas initialisation and the augmentation draws.
    """

    def __init__(
        self,
        num_samples: int,
        image_shape: tuple[int, int, int],
        *,
        eps: float = 8 / 255,
        pad: int = 4,
        pad_value: float = 0.5,
        compress: int | str = "auto",
        offsets: str = "torchvision",
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
    ) -> None:
        self.eps = check_budget(eps, "eps")
        check_steps(num_samples, "num_samples")
        if len(image_shape) != 3:
            raise ValueError(f"image_shape must be (C, H, W), got {tuple(image_shape)}")
        if pad < 0:
            raise ValueError(f"pad must be >= 0, got {pad}")
        if offsets not in ("torchvision", "authors"):
            raise ValueError(f"unknown offsets {offsets!r}; choose 'torchvision' or 'authors'")
        if offsets == "authors" and pad == 0:
            raise ValueError("offsets='authors' draws from 0..2*pad-1 and needs pad >= 1")
        c, h, w = image_shape
        if compress == "auto":
            compress = 8 if h > 160 else 1
        compress = check_steps(compress, "compress")
        ph, pw = h + 2 * pad, w + 2 * pad
        if ph % compress or pw % compress:
            raise ValueError(f"padded canvas {ph}x{pw} is not divisible by compress={compress}")
        self.image_shape = (c, h, w)
        self.pad, self.pad_value, self.compress, self.offsets = pad, float(pad_value), compress, offsets
        self.generator = generator
        canvas = torch.empty(num_samples, c, ph // compress, pw // compress)
        self.canvas = uniform_like(canvas, self.eps, generator).to(device)

    # -- augmentation ---------------------------------------------------------------
    def sample_augmentation(self, batch_size: int) -> Augmentation:
        high = 2 * self.pad + (1 if self.offsets == "torchvision" else 0)
        g = self.generator
        dev = g.device if g is not None else "cpu"
        dy = torch.randint(0, high, (batch_size,), generator=g, device=dev)
        dx = torch.randint(0, high, (batch_size,), generator=g, device=dev)
        flip = torch.rand(batch_size, generator=g, device=dev) < 0.5
        return Augmentation(dy.cpu(), dx.cpu(), flip.cpu())

    def _grid(self, aug: Augmentation, device: torch.device):
        _, h, w = self.image_shape
        rows = aug.dy.to(device)[:, None] + torch.arange(h, device=device)[None]  # (B, H)
        cols_fwd = torch.arange(w, device=device)[None]
        cols_rev = torch.arange(w - 1, -1, -1, device=device)[None]
        cols = aug.dx.to(device)[:, None] + torch.where(aug.flip.to(device)[:, None], cols_rev, cols_fwd)  # (B, W)
        b = torch.arange(len(aug), device=device)[:, None, None, None]
        ch = torch.arange(self.image_shape[0], device=device)[None, :, None, None]
        return b, ch, rows[:, None, :, None], cols[:, None, None, :]

    def pad_images(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (self.pad,) * 4, value=self.pad_value)

    def augment(self, x: torch.Tensor, aug: Augmentation) -> torch.Tensor:
        """Pad, crop and flip images (B x C x H x W) as ``aug`` says."""
        self._check_batch(x, aug)
        return self.pad_images(x)[self._grid(aug, x.device)]

    # -- cache ----------------------------------------------------------------------
    def _full(self, index: torch.Tensor) -> torch.Tensor:
        stored = self.canvas[index]
        if self.compress == 1:
            return stored.clone()
        return stored.repeat_interleave(self.compress, 2).repeat_interleave(self.compress, 3)

    def load(self, index: torch.Tensor, aug: Augmentation) -> torch.Tensor:
        """The cached perturbations of samples ``index``, cropped and flipped as ``aug`` says."""
        index = self._index(index, aug)
        return self._full(index)[self._grid(aug, self.canvas.device)]

    def store(self, index: torch.Tensor, aug: Augmentation, delta: torch.Tensor) -> None:
        """Write ``delta`` (augmented coordinates) back through the inverse crop/flip."""
        index = self._index(index, aug)
        self._check_batch(delta, aug)
        delta = delta.detach().to(self.canvas.device, self.canvas.dtype)
        full = self._full(index)
        grid = self._grid(aug, self.canvas.device)
        full[grid] = delta
        if self.compress == 1:
            self.canvas[index] = full
            return
        seen = torch.zeros_like(full)
        seen[grid] = 1.0
        k = self.compress
        touched = F.avg_pool2d(seen, k) > 0
        self.canvas[index] = torch.where(touched, F.avg_pool2d(full, k), self.canvas[index])

    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        index: torch.Tensor,
        *,
        step_size: float = 4 / 255,
        aug: Augmentation | None = None,
        bn_mode: str = "eval",
        loss_fn=None,
    ) -> tuple[torch.Tensor, torch.Tensor, Augmentation]:
        """Augment ``x``, take one FGSM step from the cached perturbation, update the cache.

        Returns ``(x_adv, x_aug, aug)``: the adversarial augmented images to train on, the
        clean augmented images and the augmentation used. ``x`` are un-augmented pixels in
        [0, 1]; ``index`` are their dataset indices.
        """
        check_budget(step_size, "step_size")
        check_bn_mode(bn_mode)
        check_inputs(x, y)
        aug = aug or self.sample_augmentation(x.shape[0])
        x_aug = self.augment(x, aug)
        delta0 = self.load(index, aug).to(x.device)
        x_adv = fgsm_rs(
            model, x_aug, y, eps=self.eps, step_size=step_size, delta=delta0, bn_mode=bn_mode, loss_fn=loss_fn
        )
        self.store(index, aug, x_adv - x_aug)
        return x_adv, x_aug, aug

    # -- state ----------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The canvas and the generator's state: a training run resumes with the perturbations it had
        (C x (H+2·pad) x (W+2·pad) float32 per sample, /compress² when compressed: 19 KB per CIFAR image)."""
        return {
            "canvas": self.canvas.detach().cpu().clone(),
            "generator": None if self.generator is None else self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        canvas = state["canvas"]
        if tuple(canvas.shape) != tuple(self.canvas.shape):
            raise ValueError(
                f"the saved cache has shape {tuple(canvas.shape)}, this one {tuple(self.canvas.shape)}: "
                "a different training set, image size or padding"
            )
        self.canvas = canvas.to(self.canvas.device, self.canvas.dtype)
        if state["generator"] is not None and self.generator is not None:
            self.generator.set_state(state["generator"])

    # -- checks ---------------------------------------------------------------------
    def _check_batch(self, x: torch.Tensor, aug: Augmentation) -> None:
        if tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"expected images of shape (B, {self.image_shape}), got {tuple(x.shape)}")
        if x.shape[0] != len(aug):
            raise ValueError(f"batch of {x.shape[0]} images but augmentation for {len(aug)}")

    def _index(self, index, aug: Augmentation) -> torch.Tensor:
        index = torch.as_tensor(index, dtype=torch.long).to(self.canvas.device)
        if index.ndim != 1 or index.shape[0] != len(aug):
            raise ValueError(f"index must have shape ({len(aug)},), got {tuple(index.shape)}")
        if index.numel() and (index.min() < 0 or index.max() >= self.canvas.shape[0]):
            raise IndexError(f"sample index out of range [0, {self.canvas.shape[0]})")
        return index
