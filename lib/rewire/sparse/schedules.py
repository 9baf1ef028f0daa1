"""Sparsity schedules as pure functions of training time ``t`` (in epochs).

As the learning-rate schedules (:mod:`rewire.train.schedules`) and the schedulers of
``torch/ao/pruning``: a pure function of ``t``, so a resumed run recomputes the target
sparsity from its step counter and there is no schedule state to checkpoint.
"""

from __future__ import annotations

import math


def cubic_sparsity(
    t: float, *, final: float, end: float, start: float = 0.0, initial: float = 0.0, frequency: float = 0.0
) -> float:
    """Zhu & Gupta (2017), Eq. 1: s_t = s_f + (s_i - s_f) (1 - (t - t_0) / (n Δt))^3.

    ``t`` runs from ``start`` (t_0) to ``end`` (t_0 + n Δt), in the same unit (epochs here);
    before ``start`` the sparsity is ``initial`` and after ``end`` it is ``final``. With
    ``frequency`` (Δt) > 0 the sparsity changes only at t_0, t_0 + Δt, ... (DPF Appendix A.2:
    Δt = 1 epoch, t_0 = 0, t_0 + n Δt = the epoch of the second learning-rate decay); with
    ``frequency=0`` it follows the curve continuously.
    """
    if end <= start:
        raise ValueError(f"the sparsity ramp needs end > start, got start={start}, end={end}")
    if frequency < 0:
        raise ValueError(f"frequency must be >= 0, got {frequency}")
    if t <= start:
        return initial
    if t >= end:
        return final
    if frequency > 0:
        t = start + math.floor((t - start) / frequency + 1e-9) * frequency
    progress = (t - start) / (end - start)
    return final + (initial - final) * (1.0 - progress) ** 3
