"""TRADES (Zhang et al. 2019, "Theoretically principled trade-off between robustness and accuracy").

Loss = CE(f(x), y) + beta * KL(softmax f(x) || softmax f(x_adv)) / batch, with x_adv the
inner maximiser of the same KL term: start at x + 0.001 * N(0, 1), ``steps`` signed
gradient steps of ``step_size``, projection onto the eps-ball and a clamp to [0, 1]
(the official implementation, ``trades.py::trades_loss``: KL summed over the batch in
the inner loop, model in eval mode while attacking, batch-mean KL in the outer loss).
The start point is clamped to [0, 1] here (the official code clamps only after the first step).
Liu et al. 2022 use beta = 6 with 10 steps of 2/255 at eps = 8/255 (paper Table 9's TRADES rows).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from rewire.attacks._common import check_bn_mode, check_budget, check_inputs, check_steps, model_mode

__all__ = ["trades_adversary", "trades_loss"]


def trades_adversary(
    model: nn.Module,
    x: torch.Tensor,
    *,
    eps: float = 8 / 255,
    step_size: float = 2 / 255,
    steps: int = 10,
    bn_mode: str = "eval",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The inner maximisation of TRADES: x_adv maximising KL(f(x) || f(x_adv)) in the eps-ball."""
    eps = check_budget(eps, "eps")
    step_size = check_budget(step_size, "step_size")
    steps = check_steps(steps)
    check_bn_mode(bn_mode)
    check_inputs(x)
    x = x.detach()
    with model_mode(model, bn_mode):
        with torch.no_grad():
            p_clean = F.softmax(model(x), dim=1)
        if generator is None:
            noise = torch.randn_like(x)
        else:
            noise = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)
        x_adv = torch.clamp(x + 0.001 * noise, 0, 1)
        for _ in range(steps):
            x_adv.requires_grad_(True)
            kl = F.kl_div(F.log_softmax(model(x_adv), dim=1), p_clean, reduction="sum")
            grad = torch.autograd.grad(kl, x_adv)[0]
            x_adv = x_adv.detach() + step_size * grad.sign()
            x_adv = torch.clamp(x + torch.clamp(x_adv - x, -eps, eps), 0, 1)
    return x_adv.detach()


def trades_loss(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    beta: float = 6.0,
    eps: float = 8 / 255,
    step_size: float = 2 / 255,
    steps: int = 10,
    bn_mode: str = "eval",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(TRADES loss to back-propagate, x_adv). The outer forward passes use the model's own mode."""
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    check_inputs(x, y)
    x_adv = trades_adversary(model, x, eps=eps, step_size=step_size, steps=steps, bn_mode=bn_mode, generator=generator)
    logits = model(x)
    kl = F.kl_div(F.log_softmax(model(x_adv), dim=1), F.softmax(logits, dim=1), reduction="batchmean")
    return F.cross_entropy(logits, y) + beta * kl, x_adv
