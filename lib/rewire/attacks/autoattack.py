"""AutoAttack (Croce & Hein 2020) and a PGD cross-check, through ``torchattacks``.

Liu et al. 2022 (App. C "General") report AutoAttack accuracy with the standard
ensemble of the original implementation (fra31/auto-attack): untargeted 100-iteration
APGD-CE, targeted 100-iteration APGD-T (DLR loss), targeted 100-iteration FAB-T and
the 5000-query Square attack, each sample counted robust only if it survives all of
them. The authors' code runs it with the model in eval mode on the full test set.

``torchattacks.AutoAttack`` builds its APGD / APGD-T / FAB with ``steps=10`` and, for
APGD-T / FAB-T, ``n_classes - 1`` target classes; the original uses 100 iterations and
9 target classes. :func:`autoattack_accuracy` therefore builds the component attacks
itself with the original's settings and applies them one after the other to the
samples that are still correctly classified (the same worst case over attacks).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from rewire.attacks._common import check_budget, check_inputs, check_steps, model_mode

__all__ = ["AUTOATTACK_STANDARD", "autoattack_accuracy", "torchattacks_pgd_accuracy", "require_torchattacks"]

AUTOATTACK_STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")
_KNOWN = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")


def require_torchattacks():
    try:
        import torchattacks
    except ImportError as exc:  # pragma: no cover - exercised only without the package
        raise ImportError(
            "AutoAttack and the PGD cross-check need the 'torchattacks' package "
            "(pinned in requirements.txt / environment.yml): pip install torchattacks==3.3.0"
        ) from exc
    return torchattacks


def _build(name: str, model: nn.Module, eps: float, n_classes: int, seed: int, steps: int, n_queries: int):
    ta = require_torchattacks()
    n_targets = max(1, min(9, n_classes - 1))
    if name in ("apgd-ce", "apgd-dlr"):
        return ta.APGD(model, norm="Linf", eps=eps, steps=steps, n_restarts=1, seed=seed, loss=name[5:])
    if name == "apgd-t":
        atk = ta.APGDT(model, norm="Linf", eps=eps, steps=steps, n_restarts=1, seed=seed, n_classes=n_classes)
        atk.n_target_classes = n_targets
        return atk
    if name in ("fab", "fab-t"):
        atk = ta.FAB(
            model,
            norm="Linf",
            eps=eps,
            steps=steps,
            n_restarts=1,
            seed=seed,
            multi_targeted=name == "fab-t",
            n_classes=n_classes,
        )
        atk.n_target_classes = n_targets
        return atk
    if name == "square":
        return ta.Square(model, norm="Linf", eps=eps, n_queries=n_queries, n_restarts=1, p_init=0.8, seed=seed)
    raise ValueError(f"unknown AutoAttack component {name!r}; known: {', '.join(_KNOWN)}")


def autoattack_accuracy(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float = 8 / 255,
    *,
    version: str = "standard",
    attacks: Sequence[str] | None = None,
    n_classes: int | None = None,
    batch_size: int = 512,
    seed: int = 0,
    steps: int = 100,
    n_queries: int = 5000,
) -> float:
    """Robust accuracy (fraction) under AutoAttack (L-infinity), model in eval mode.

    ``version="standard"`` runs :data:`AUTOATTACK_STANDARD`; ``attacks=("apgd-ce",)`` (or any
    subset of ``apgd-ce, apgd-dlr, apgd-t, fab, fab-t, square``) runs a custom list instead.
    ``steps`` / ``n_queries`` default to the original AutoAttack's 100 / 5000.
    """
    eps = check_budget(eps, "eps")
    steps = check_steps(steps)
    n_queries = check_steps(n_queries, "n_queries")
    batch_size = check_steps(batch_size, "batch_size")
    if attacks is None:
        if version != "standard":
            raise ValueError(f"unknown AutoAttack version {version!r}; use 'standard' or pass attacks=(...)")
        attacks = AUTOATTACK_STANDARD
    attacks = tuple(attacks)
    if not attacks:
        raise ValueError("attacks is empty")
    for name in attacks:
        if name not in _KNOWN:
            raise ValueError(f"unknown AutoAttack component {name!r}; known: {', '.join(_KNOWN)}")
    check_inputs(images, labels)
    require_torchattacks()
    device = next((p.device for p in model.parameters()), images.device)
    with model_mode(model, "eval"):
        if n_classes is None:
            with torch.no_grad():
                n_classes = model(images[:1].to(device)).shape[1]
        built = [_build(name, model, eps, n_classes, seed, steps, n_queries) for name in attacks]
        robust = 0
        for start in range(0, images.shape[0], batch_size):
            x = images[start : start + batch_size].to(device)
            y = labels[start : start + batch_size].to(device)
            with torch.no_grad():
                alive = model(x).argmax(1) == y
            for atk in built:
                if not alive.any():
                    break
                idx = alive.nonzero().flatten()
                x_adv = atk(x[idx], y[idx])
                with torch.no_grad():
                    still = model(x_adv).argmax(1) == y[idx]
                alive[idx[~still]] = False
            robust += int(alive.sum())
    return robust / images.shape[0]


def torchattacks_pgd_accuracy(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float = 8 / 255,
    *,
    step_size: float = 2 / 255,
    steps: int = 10,
    random_start: bool = True,
    batch_size: int = 512,
) -> float:
    """Robust accuracy under ``torchattacks.PGD`` (final iterate, model in eval mode): the cross-check of
    :func:`rewire.attacks.pgd.pgd_linf` with the same eps, step size and number of steps."""
    eps = check_budget(eps, "eps")
    step_size = check_budget(step_size, "step_size")
    steps = check_steps(steps)
    batch_size = check_steps(batch_size, "batch_size")
    check_inputs(images, labels)
    ta = require_torchattacks()
    device = next((p.device for p in model.parameters()), images.device)
    atk = ta.PGD(model, eps=eps, alpha=step_size, steps=steps, random_start=random_start)
    correct = 0
    with model_mode(model, "eval"):
        for start in range(0, images.shape[0], batch_size):
            x = images[start : start + batch_size].to(device)
            y = labels[start : start + batch_size].to(device)
            x_adv = atk(x, y)
            with torch.no_grad():
                correct += int((model(x_adv).argmax(1) == y).sum())
    return correct / images.shape[0]
