"""Input checks and model-mode handling shared by the attacks.

Every attack validates its arguments before doing any work: budgets are in pixel
units of images in [0, 1] (8/255, not 8), step counts are positive integers, and
the inputs are pixels in [0, 1] (normalisation lives inside the models of
:mod:`rewire.models.resnet_robust`).
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

BN_MODES = ("eval", "train", "keep")


def check_budget(value: float, name: str = "eps", *, allow_zero: bool = True) -> float:
    """A perturbation size in [0, 1] pixel units; refuses values > 1 (pixels given as 0-255)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if value != value:
        raise ValueError(f"{name} is NaN")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    if value > 1:
        raise ValueError(
            f"{name}={value:g} is larger than 1, but budgets are in pixel units of images in [0, 1]: "
            f"divide by 255 (e.g. {name}={value:g}/255 = {value / 255:.6f})"
        )
    return value


def check_steps(steps: int, name: str = "steps") -> int:
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(steps).__name__}")
    if steps < 1:
        raise ValueError(f"{name} must be >= 1, got {steps}")
    return int(steps)


def check_bn_mode(bn_mode: str) -> str:
    if bn_mode not in BN_MODES:
        raise ValueError(f"unknown bn_mode {bn_mode!r}; choose one of {BN_MODES}")
    return bn_mode


def check_inputs(x: torch.Tensor, y: torch.Tensor | None = None) -> None:
    if not torch.is_tensor(x) or not x.is_floating_point():
        raise TypeError("images must be a floating-point tensor")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(
            f"images must be pixels in [0, 1] (got range [{x.min().item():.3g}, {x.max().item():.3g}]); "
            "normalisation belongs inside the model"
        )
    if y is not None and (y.ndim != 1 or y.shape[0] != x.shape[0]):
        raise ValueError(f"labels must have shape ({x.shape[0]},), got {tuple(y.shape)}")


@contextlib.contextmanager
def model_mode(model: nn.Module, bn_mode: str) -> Iterator[None]:
    """Run with the whole model in eval ("eval") or train ("train") mode, or as it is ("keep").

    Restores every module's own ``training`` flag afterwards.
    """
    check_bn_mode(bn_mode)
    flags = [(m, m.training) for m in model.modules()]
    try:
        if bn_mode == "eval":
            model.eval()
        elif bn_mode == "train":
            model.train()
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def per_sample_ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="none")


def uniform_like(x: torch.Tensor, bound: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """U(-bound, bound) noise shaped like ``x``; from the global RNG when ``generator`` is None."""
    if generator is None:
        return torch.empty_like(x).uniform_(-bound, bound)
    noise = torch.rand(x.shape, generator=generator, device=generator.device, dtype=x.dtype)
    return (noise * 2 - 1).mul_(bound).to(x.device)
