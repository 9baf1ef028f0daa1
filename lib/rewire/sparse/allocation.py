"""Adaptive layer-wise pruning: how many weights each layer keeps under one global budget.

Liu et al., *Robust Binary Models by Pruning Randomly-initialized Networks* (NeurIPS 2022),
Section 3.2 and Appendix A.1 (Theorems A.1/A.2): layer i, with n_i prunable weights, keeps

    kept_i = c · n_i^p          (per-layer keep rate r_i = c · n_i^(p-1), at most 1)

where c is set so that the layers keep ``keep`` of all weights together. ``p = 1`` gives every
layer the same rate (Theorem A.1's "fixed pruning rate"); ``p = 0`` every layer the same count
(Theorem A.2's equal retained counts); the paper's best setting at ``keep = 0.01`` is ``p = 0.1``.
Here ``keep`` is the fraction **kept** (the authors' ``--prune-rate``; 0.01 = 99 % pruned).

The rule as the authors' code computes it (IVRL/RobustBinarySubNet,
``code/arch/net_utils.py::set_model_prune_rate``), reproduced to the last weight:

1. sort the layers by size, smallest first (a stable sort: equal sizes keep the model's order);
2. c = keep · Σn / Σn^p (float64, numpy);
3. for each layer in that order: r_i = c · n_i^(p-1), clipped at 1 (a small layer that cannot
   keep its share keeps everything); the layer keeps ``int(r_i · n_i)`` weights (floor);
   the remaining budget, which starts at ``int(keep · Σn)``, loses that many and c is recomputed
   over the layers not yet visited: c = remaining / Σ_{later} n^p.

Because of the floor, the total kept can fall short of ``int(keep · Σn)`` by a few weights
(cResNet34 at keep 0.01: 212,649 or 212,650 of 21,265,088 for p ∈ {0, 0.1, 0.5, 1}). The
authors' last recompute divides by an empty sum (a numpy warning); it is skipped here.

Rounding in the forward pass. The counts above are the authors' *budget bookkeeping*. Their
forward pass (``GetSubnet`` in ``code/arch/conv_type.py``) receives only the rate r_i and zeroes
``int((1 - r_i) · n_i)`` entries, i.e. keeps ``n_i - int((1 - r_i) · n_i)``, which is usually
one more than ``int(r_i · n_i)`` (:func:`get_subnet_count`). :attr:`Allocation.kept` holds the
budget counts (our default: the layers then keep exactly what the allocation accounted for);
:meth:`Allocation.counts` with ``rounding="get_subnet"`` gives what the authors' network
actually keeps.

Sorting smallest first and carrying the budget forward only works when the rate falls with the
layer size, i.e. ``p <= 1`` (the authors assert ``0 <= p <= 1``); larger ``p`` is rejected.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["ROUNDINGS", "Allocation", "adaptive_allocation", "get_subnet_count", "floor_count", "kept_count"]

ROUNDINGS = ("floor", "get_subnet")


def floor_count(size: int, rate: float) -> int:
    """``int(rate · size)``: the kept count of the authors' allocation bookkeeping (``set_model_prune_rate``)."""
    return int(float(rate) * size)


def get_subnet_count(size: int, rate: float) -> int:
    """``size - int((1 - rate) · size)``: what the authors' forward pass keeps (``GetSubnet`` zeroes the
    ``int((1 - rate) · size)`` smallest |scores| of the layer)."""
    return size - int((1 - float(rate)) * size)


def kept_count(size: int, rate: float, rounding: str = "floor") -> int:
    """The kept count of a layer of ``size`` weights at keep ``rate`` under ``rounding`` (see :data:`ROUNDINGS`)."""
    if rounding == "floor":
        return floor_count(size, rate)
    if rounding == "get_subnet":
        return get_subnet_count(size, rate)
    raise ValueError(f"rounding must be one of {', '.join(ROUNDINGS)}, got {rounding!r}")


@dataclass(frozen=True)
class Allocation:
    """Per-layer keep rates and kept counts of :func:`adaptive_allocation`.

    ``sizes``, ``rates`` and ``kept`` are keyed by layer name in the order the layers were given
    (the model's order); ``kept`` holds the floor counts ``int(rate · size)`` of the budget.
    """

    keep: float
    p: float
    sizes: dict[str, int]
    rates: dict[str, float]
    kept: dict[str, int]

    @property
    def total(self) -> int:
        """Σ n_i, the prunable weights of all layers."""
        return sum(self.sizes.values())

    @property
    def budget(self) -> int:
        """``int(keep · Σn)``: the kept weights the allocation aims at."""
        return int(self.keep * np.sum(np.asarray(list(self.sizes.values()), dtype=np.int64)))

    @property
    def total_kept(self) -> int:
        """Σ kept_i (at most :attr:`budget`, a few weights short of it because of the floors)."""
        return sum(self.kept.values())

    def counts(self, rounding: str = "floor") -> dict[str, int]:
        """Kept count per layer: ``"floor"`` = :attr:`kept`; ``"get_subnet"`` = what the authors' forward pass keeps."""
        if rounding == "floor":
            return dict(self.kept)
        return {name: kept_count(size, self.rates[name], rounding) for name, size in self.sizes.items()}


def _check_sizes(sizes: Mapping[str, int] | Iterable[tuple[str, int]]) -> dict[str, int]:
    items = list(sizes.items()) if isinstance(sizes, Mapping) else list(sizes)
    if not items:
        raise ValueError("adaptive allocation needs at least one layer; the layer list is empty")
    checked: dict[str, int] = {}
    for item in items:
        if not (isinstance(item, tuple) and len(item) == 2):
            raise ValueError(f"layers must be (name, size) pairs or a mapping name -> size, got {item!r}")
        name, size = item
        if name in checked:
            raise ValueError(f"layer {name!r} appears twice")
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"layer {name!r}: the size must be a positive int (its prunable weights), got {size!r}")
        checked[name] = int(size)
    return checked


def _check_keep_p(keep: float, p: float) -> tuple[float, float]:
    if isinstance(keep, bool) or not isinstance(keep, (int, float, np.floating)) or not 0.0 < float(keep) <= 1.0:
        raise ValueError(f"keep (the fraction of weights kept, e.g. 0.01 = 99% pruned) must be in (0, 1], got {keep!r}")
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)) or not np.isfinite(p):
        raise ValueError(f"p must be a number in [0, 1], got {p!r}")
    if p < 0:
        raise ValueError(f"p must be >= 0 (kept_i = c * n_i^p; p = 0: equal counts, p = 1: equal rates), got {p!r}")
    if p > 1:
        raise ValueError(
            f"p must be <= 1, got {p!r}: the allocation visits the layers smallest first and clips rates at 1, "
            f"which assumes the keep rate c * n^(p-1) falls with the layer size (the authors assert 0 <= p <= 1)"
        )
    return float(keep), float(p)


def adaptive_allocation(
    sizes: Mapping[str, int] | Iterable[tuple[str, int]], keep: float, p: float = 1.0
) -> Allocation:
    """Per-layer keep rates and kept counts: kept_i = c · n_i^p with Σ kept_i = ``keep`` · Σ n_i (module docstring).

    ``sizes``: layer name -> prunable weights, in the model's order (equal sizes are visited in
    that order, which decides which of them gets a floor's extra weight). ``keep`` in (0, 1];
    ``p`` in [0, 1]. Raises ``ValueError`` for an empty layer list, ``keep`` or ``p`` out of range,
    or a layer whose count rounds to zero kept weights (named; a layer with no weights left would
    cut the network).
    """
    layers = _check_sizes(sizes)
    keep, p = _check_keep_p(keep, p)

    names = list(layers)
    order = sorted(range(len(names)), key=lambda i: layers[names[i]])  # stable: ties keep the model's order
    counts = np.asarray([layers[names[i]] for i in order], dtype=np.int64)
    powered = np.power(counts, p)  # float64
    remaining = int(keep * np.sum(counts))
    c = keep * np.sum(counts) / np.sum(powered)
    rates: dict[str, float] = {}
    kept: dict[str, int] = {}
    for position, index in enumerate(order):
        name, size = names[index], int(counts[position])
        rate = c * np.power(counts[position], p - 1.0)
        if rate > 1:
            rate = 1.0
        rates[name] = float(rate)
        kept[name] = int(rate * size)
        remaining -= kept[name]
        if position + 1 < len(order):
            c = remaining / np.sum(powered[position + 1 :])

    empty = [name for name in names if kept[name] < 1]
    if empty:
        raise ValueError(
            f"keep={keep:g}, p={p:g} leaves no weight in {len(empty)} layer(s): "
            + ", ".join(f"{name!r} ({layers[name]} weights, rate {rates[name]:.3g})" for name in empty)
            + "; raise keep or lower p"
        )
    return Allocation(
        keep=keep,
        p=p,
        sizes=dict(layers),
        rates={name: rates[name] for name in names},
        kept={name: kept[name] for name in names},
    )
