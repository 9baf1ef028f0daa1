"""Learning-rate schedules as pure functions of training time ``t`` (in epochs).

In the style of ``torch/ao/pruning/scheduler``: each schedule is a pure function,
so a resumed run recomputes the learning rate from the step counter and there is
no scheduler state to checkpoint. ``t`` is fractional when the schedule is stepped
per iteration (``t = epoch + batch / batches_per_epoch``) and an integer when it
is stepped per epoch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def multistep_factor(t: float, milestones: Sequence[float], gamma: float) -> float:
    """Multiply by ``gamma`` at every milestone already passed (torch ``MultiStepLR``)."""
    return gamma ** sum(1 for m in milestones if t >= m)


def cosine_factor(t: float, total: float) -> float:
    """Half-cosine from 1 at ``t=0`` to 0 at ``t=total`` (Loshchilov & Hutter 2017, no restarts)."""
    if total <= 0:
        raise ValueError("cosine schedule needs a positive length")
    progress = min(max(t / total, 0.0), 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def linear_warmup_factor(t: float, warmup: float, start_factor: float) -> float:
    """Linear ramp from ``start_factor`` at ``t=0`` to 1 at ``t=warmup`` (Goyal et al. 2017)."""
    if warmup <= 0 or t >= warmup:
        return 1.0
    return start_factor + (1.0 - start_factor) * t / warmup


def lr_factor(
    t: float,
    *,
    schedule: str,
    total: float,
    milestones: Sequence[float] = (),
    gamma: float = 0.1,
    warmup: float = 0.0,
    warmup_start_factor: float = 0.1,
) -> float:
    """Factor applied to the base learning rate at time ``t``: warm-up times the decay schedule."""
    if schedule == "constant":
        decay = 1.0
    elif schedule == "multistep":
        decay = multistep_factor(t, milestones, gamma)
    elif schedule == "cosine":
        decay = cosine_factor(t, total)
    else:
        raise ValueError(f"unknown schedule {schedule!r}; choose 'constant', 'multistep' or 'cosine'")
    return linear_warmup_factor(t, warmup, warmup_start_factor) * decay
