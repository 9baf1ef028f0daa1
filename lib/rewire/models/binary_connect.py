"""BinaryConnect (Courbariaux, Bengio & David 2015) as a weight parametrization.

The BNN baselines of Liu et al. 2022 (paper App. C "Baselines": "we plug in the
*BinaryConnect* algorithm [10]") train a network whose forward pass uses
``sign(w)``:

* forward: ``w_b = +1 if w >= 0 else -1`` (exactly +-1, no scaling: every conv is
  followed by BN; BinaryConnect's deterministic binarisation, Courbariaux et al.
  Eq. 1, with 0 mapped to +1 so that no weight is 0);
* backward: the straight-through estimator, dL/dw := dL/dw_b (Courbariaux et al.
  Algorithm 1: the gradient w.r.t. the binary weights updates the real-valued ones);
* after every optimizer step the latent real-valued weights are clipped to
  [-1, 1] (Courbariaux et al. Algorithm 1, "clip"). Because of the clip, the
  "hard-tanh" variant of the STE (zero gradient where |w| > 1) would be identical.

This is a :func:`torch.nn.utils.parametrize` parametrization of its own
(:class:`BinarizeWeight`), independent of the mask mechanism in
:mod:`rewire.sparse.masks`; the latent weights live in
``module.parametrizations.weight.original``.

Use::

    names = binarize_(model)                       # every Conv2d / Linear weight
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    attach_latent_clip(optimizer, model)           # clip to [-1, 1] after each step
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

__all__ = [
    "sign_ste",
    "BinarizeWeight",
    "binarize_",
    "binarized_modules",
    "clip_latent_weights_",
    "attach_latent_clip",
]


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w: torch.Tensor) -> torch.Tensor:  # noqa: D401
        return torch.where(w >= 0, torch.ones_like(w), -torch.ones_like(w))

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        return grad_output


def sign_ste(w: torch.Tensor) -> torch.Tensor:
    """+-1 forward (0 -> +1), identity gradient backward."""
    return _SignSTE.apply(w)


class BinarizeWeight(nn.Module):
    """Parametrization: the module's weight reads ``sign_ste(latent)``."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return sign_ste(w)


def _default_filter(name: str, module: nn.Module) -> bool:
    return isinstance(module, (nn.Conv2d, nn.Linear))


def binarize_(
    model: nn.Module, include: Callable[[str, nn.Module], bool] | None = None, *, bound: float = 1.0
) -> list[str]:
    """Register :class:`BinarizeWeight` on the weights of ``model`` (default: every Conv2d and Linear).

    The latent weights are clipped into ``[-bound, bound]`` first. Returns the names of the
    binarized modules. Biases, BN parameters and the input normalisation stay real-valued.
    """
    include = include or _default_filter
    names = []
    for name, module in model.named_modules():
        if include(name, module) and getattr(module, "weight", None) is not None:
            if any(isinstance(p, BinarizeWeight) for p in _weight_parametrizations(module)):
                continue
            with torch.no_grad():
                module.weight.clamp_(-bound, bound)
            parametrize.register_parametrization(module, "weight", BinarizeWeight())
            names.append(name)
    if not names:
        raise ValueError("binarize_ found no module to binarize")
    return names


def _weight_parametrizations(module: nn.Module) -> Iterable[nn.Module]:
    if parametrize.is_parametrized(module, "weight"):
        return list(module.parametrizations.weight)
    return []


def binarized_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every module whose weight carries a :class:`BinarizeWeight`."""
    return [
        (name, m)
        for name, m in model.named_modules()
        if any(isinstance(p, BinarizeWeight) for p in _weight_parametrizations(m))
    ]


@torch.no_grad()
def clip_latent_weights_(model: nn.Module, bound: float = 1.0) -> int:
    """Clip the latent weights of every binarized module to ``[-bound, bound]``; returns how many tensors."""
    mods = binarized_modules(model)
    for _, m in mods:
        m.parametrizations.weight.original.clamp_(-bound, bound)
    return len(mods)


def attach_latent_clip(optimizer: torch.optim.Optimizer, model: nn.Module, bound: float = 1.0):
    """Clip the latent weights after every ``optimizer.step()``; returns the hook handle."""
    if not binarized_modules(model):
        raise ValueError("attach_latent_clip: the model has no binarized module; call binarize_ first")

    def hook(opt, args, kwargs):  # noqa: ARG001
        clip_latent_weights_(model, bound)

    return optimizer.register_step_post_hook(hook)
