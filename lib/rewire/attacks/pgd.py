"""L-infinity PGD (Madry et al. 2018) and robust-accuracy evaluation.

Defaults follow Liu et al. 2022, App. C "General": eps = 8/255 on CIFAR-10, 10
iterations, step size eps/4 = 2/255, a uniform random start in the eps-ball;
every step is a signed-gradient ascent step on the cross-entropy, a projection
onto the eps-ball and a clamp to [0, 1].

Two behaviours of the authors' code (``code/util/attack.py::PGD``) are available
but are not the default:

* ``worst_iterate=True``: return, per sample, the iterate with the largest loss
  among the iterates *at which a gradient was taken* (0 = the random start, ...,
  steps-1); the point reached by the last step is never evaluated unless
  ``evaluate_last=True``. The default returns the final iterate (Madry et al.).
* ``bn_mode="train"``: run the attack with the model in train mode, so BN uses the
  batch statistics (and updates its running statistics) during the attack. The
  default is ``bn_mode="eval"``: the attack sees the network that is evaluated.

``authors_mode=True`` switches on both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn as nn

from rewire.attacks._common import (
    check_bn_mode,
    check_budget,
    check_inputs,
    check_steps,
    model_mode,
    per_sample_ce,
    uniform_like,
)

__all__ = ["pgd_linf", "RobustAccuracy", "robust_accuracy", "ATTACKS", "make_attack", "clean_accuracy_on"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def pgd_linf(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float = 8 / 255,
    step_size: float = 2 / 255,
    steps: int = 10,
    random_start: bool = True,
    worst_iterate: bool = False,
    evaluate_last: bool = False,
    bn_mode: str = "eval",
    authors_mode: bool = False,
    loss_fn: LossFn | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Adversarial images in the eps-ball around ``x`` (pixels in [0, 1]), clamped to [0, 1].

    ``loss_fn(logits, y)`` must return per-sample losses (default: cross-entropy); the
    ascent direction is the sign of the gradient of their mean. With ``generator=None``
    the random start is drawn from the global RNG as ``torch.empty_like(x).uniform_``,
    the same draw as ``torchattacks.PGD``. Parameter gradients are not touched.
    """
    eps = check_budget(eps, "eps")
    step_size = check_budget(step_size, "step_size")
    steps = check_steps(steps)
    check_bn_mode(bn_mode)
    check_inputs(x, y)
    if authors_mode:
        worst_iterate, bn_mode = True, "train"
    loss_fn = loss_fn or per_sample_ce
    x = x.detach()
    with model_mode(model, bn_mode):
        x_adv = x.clone()
        if random_start:
            x_adv = torch.clamp(x_adv + uniform_like(x, eps, generator), 0, 1)
        best = x_adv.clone()
        best_loss = torch.full((x.shape[0],), -float("inf"), device=x.device)
        for _ in range(steps):
            x_adv.requires_grad_(True)
            losses = loss_fn(model(x_adv), y)
            grad = torch.autograd.grad(losses.mean(), x_adv)[0]
            x_adv = x_adv.detach()
            if worst_iterate:
                _keep_worst(best, best_loss, x_adv, losses.detach())
            x_adv = x_adv + step_size * grad.sign()
            x_adv = torch.clamp(x + torch.clamp(x_adv - x, -eps, eps), 0, 1)
        if not worst_iterate:
            return x_adv
        if evaluate_last:
            with torch.no_grad():
                _keep_worst(best, best_loss, x_adv, loss_fn(model(x_adv), y))
        return best


def _keep_worst(best: torch.Tensor, best_loss: torch.Tensor, x_adv: torch.Tensor, losses: torch.Tensor) -> None:
    better = losses > best_loss
    best[better] = x_adv[better]
    best_loss[better] = losses[better]


def _no_attack(model, x, y, **kwargs):  # noqa: ARG001
    check_inputs(x, y)
    return x.detach()


def _fgsm(model, x, y, **kwargs):
    from rewire.attacks.fast import fgsm_rs

    return fgsm_rs(model, x, y, **kwargs)


ATTACKS: dict[str, Callable[..., torch.Tensor]] = {"pgd": pgd_linf, "fgsm_rs": _fgsm, "none": _no_attack}


def make_attack(name: str, **kwargs) -> Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]:
    """``attack(model, x, y) -> x_adv`` for ``name`` in :data:`ATTACKS`, with ``kwargs`` checked now."""
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; known attacks: {', '.join(sorted(ATTACKS))}")
    for key in ("eps", "step_size"):
        if key in kwargs:
            check_budget(kwargs[key], key)
    if "steps" in kwargs:
        check_steps(kwargs["steps"])
    if "bn_mode" in kwargs:
        check_bn_mode(kwargs["bn_mode"])
    fn = ATTACKS[name]

    def attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return fn(model, x, y, **kwargs)

    attack.__name__ = f"{name}_attack"
    return attack


@dataclass(frozen=True)
class RobustAccuracy:
    clean: float  # fraction of the n images classified correctly
    robust: float  # fraction still correct under the attack
    n: int


def clean_accuracy_on(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Boolean per-sample correctness in eval mode (no grad)."""
    with model_mode(model, "eval"), torch.no_grad():
        return model(x).argmax(1) == y


def robust_accuracy(
    model: nn.Module,
    loader: Iterable,
    *,
    attack: str = "pgd",
    n: int | None = None,
    device: torch.device | str | None = None,
    **attack_kwargs,
) -> RobustAccuracy:
    """Clean and robust accuracy of ``model`` on the first ``n`` images of ``loader`` (all when ``None``).

    ``loader`` yields ``(images, labels, ...)`` with pixels in [0, 1]. The model is
    evaluated in eval mode; the attack runs with its own ``bn_mode`` (eval by default).
    ``attack_kwargs`` go to the attack (``eps``, ``step_size``, ``steps``, ...).
    """
    attack_fn = make_attack(attack, **attack_kwargs)
    if n is not None:
        n = check_steps(n, "n")
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    correct_clean = correct_robust = seen = 0
    for batch in loader:
        x, y = batch[0], batch[1]
        if n is not None:
            take = n - seen
            if take <= 0:
                break
            x, y = x[:take], y[:take]
        x, y = x.to(device), y.to(device)
        correct_clean += int(clean_accuracy_on(model, x, y).sum())
        x_adv = attack_fn(model, x, y)
        correct_robust += int(clean_accuracy_on(model, x_adv, y).sum())
        seen += x.shape[0]
    if seen == 0:
        raise ValueError("robust_accuracy: the loader yielded no images")
    return RobustAccuracy(correct_clean / seen, correct_robust / seen, seen)
