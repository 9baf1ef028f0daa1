"""DPF's per-iteration overhead over dense training (DPF Figure 10), from one paired benchmark in one process.

Figure 10 calls DPF's extra cost "trivial". Stage wall times cannot decide that on a shared machine:
each run's seconds per iteration were measured minutes apart, under whatever else ran then (the cpu
scale's claim once read -18.65 % while the metric beside it said +7.5 %). :func:`benchmark_overhead`
measures both sides in one process, interleaved, so that a change of the machine's speed hits both:

* two copies of the same model (same seed, same batch, same optimizer and precision as the training
  recipe), one dense, one with DPF attached (:func:`rewire.methods.dpf.attach_gradual`: the global
  magnitude mask recomputed every ``update_every`` iterations at the target sparsity, the forward
  pass through ``m ⊙ w``);
* a *pair* is ``update_every`` dense training steps, then ``update_every`` DPF steps (so every DPF
  block holds exactly one mask update, amortised as in training); pairs run back to back (ABAB...)
  after ``warmup_pairs`` untimed pairs;
* per pair i, r_i = t_dpf,i / t_dense,i (seconds per step of the two blocks); the overhead is
  100 (mean r - 1) % with the two-sided 95 % Student-t interval of the mean of the r_i
  (:func:`paired_ratio`, the same interval as :func:`rewire.reporting.claims.interval`).

The claim of :mod:`.claims` and the report's ``dpf_overhead_pct`` both read one
:class:`OverheadBenchmark`: the claim's values are the per-pair overheads 100 (r_i - 1), whose mean
is ``dpf_overhead_pct``. ``benchmarks/bench_dpf.py`` runs the same function alone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from rewire.reporting.claims import CONFIDENCE, interval

__all__ = [
    "MIN_PAIRS",
    "WARMUP_PAIRS",
    "PairedRatio",
    "OverheadBenchmark",
    "check_pairs",
    "paired_ratio",
    "benchmark_overhead",
]

MIN_PAIRS = 2  # a paired interval needs a spread: at least two pairs
WARMUP_PAIRS = 1  # untimed pairs first (allocator, kernel choice, the first mask update); our choice


def check_pairs(pairs: Any, field: str = "overhead_pairs") -> int:
    """``pairs`` as an int >= :data:`MIN_PAIRS`, or a ValueError naming the field, the value and an example."""
    if isinstance(pairs, bool) or not isinstance(pairs, int) or pairs < MIN_PAIRS:
        raise ValueError(
            f"'{field}': {pairs!r} is not a number of benchmark pairs; a paired interval needs an integer "
            f">= {MIN_PAIRS} (one pair = one dense and one DPF block); e.g. {field}: 20"
        )
    return pairs


@dataclass(frozen=True)
class PairedRatio:
    """Mean of the per-pair ratios r_i = dpf_i / dense_i and its two-sided Student-t interval."""

    ratios: tuple[float, ...]
    mean: float
    low: float
    high: float
    confidence: float = CONFIDENCE

    @property
    def pairs(self) -> int:
        return len(self.ratios)

    def overhead_pct(self) -> tuple[float, float, float]:
        """(mean, low, high) of 100 (r - 1): DPF's extra time per step in % of dense."""
        return tuple(100.0 * (v - 1.0) for v in (self.mean, self.low, self.high))


def paired_ratio(
    dense_seconds: Sequence[float], dpf_seconds: Sequence[float], confidence: float = CONFIDENCE
) -> PairedRatio:
    """The paired ratio of ``dpf_seconds`` over ``dense_seconds`` (pair i: the two blocks timed back to back)."""
    dense, dpf = [float(v) for v in dense_seconds], [float(v) for v in dpf_seconds]
    if len(dense) != len(dpf):
        raise ValueError(f"paired timings need as many dense as DPF values, got {len(dense)} and {len(dpf)}")
    check_pairs(len(dense), "pairs")
    bad = [v for v in dense + dpf if not (math.isfinite(v) and v > 0)]
    if bad:
        raise ValueError(f"timings must be positive seconds, got {bad[0]!r}")
    ratios = tuple(b / a for a, b in zip(dense, dpf))
    mean, low, high = interval(list(ratios), confidence)
    return PairedRatio(ratios, mean, low, high, confidence)


@dataclass(frozen=True)
class OverheadBenchmark:
    """One paired benchmark: its setting, the per-pair seconds per step, and the paired ratio."""

    model: str
    batch_size: int
    sparsity: float
    update_every: int
    precision: str
    device: str
    warmup_pairs: int
    dense_seconds: tuple[float, ...]
    dpf_seconds: tuple[float, ...]
    ratio: PairedRatio

    @property
    def pairs(self) -> int:
        return self.ratio.pairs

    @property
    def overhead_pct(self) -> float:
        """100 (mean r - 1): the number the claim and ``dpf_overhead_pct`` report."""
        return self.ratio.overhead_pct()[0]

    def interval_pct(self) -> tuple[float, float]:
        return self.ratio.overhead_pct()[1:]

    def per_pair_overhead_pct(self) -> dict[int, float]:
        """Pair index -> 100 (r_i - 1): the claim's values (their mean is :attr:`overhead_pct`)."""
        return {i: 100.0 * (r - 1.0) for i, r in enumerate(self.ratio.ratios)}

    def as_dict(self) -> dict[str, Any]:
        low, high = self.interval_pct()
        return {
            **{k: v for k, v in asdict(self).items() if k != "ratio"},
            "pairs": self.pairs,
            "ratio_mean": self.ratio.mean,
            "ratio_ci": [self.ratio.low, self.ratio.high],
            "overhead_pct": self.overhead_pct,
            "overhead_ci_pct": [low, high],
            "dense_seconds": list(self.dense_seconds),
            "dpf_seconds": list(self.dpf_seconds),
            # the per-step means over the pairs (docs quote them; the ratio above is per pair, not of these)
            "dense_seconds_per_iteration": math.fsum(self.dense_seconds) / self.pairs,
            "dpf_seconds_per_iteration": math.fsum(self.dpf_seconds) / self.pairs,
        }

    def describe(self) -> str:
        low, high = self.interval_pct()
        return (
            f"{self.model}, batch {self.batch_size}, {self.precision}, sparsity {self.sparsity:g}, mask every "
            f"{self.update_every} steps, {self.device}: DPF over dense {self.overhead_pct:+.1f} % per step "
            f"[95 % CI {low:+.1f}, {high:+.1f}] over {self.pairs} interleaved pairs"
        )


class _Clock:
    """The trainer attributes :class:`rewire.methods.dpf.GradualPruning` reads; no data, no evaluation."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer, self.global_step, self.epoch, self.batches_per_epoch = optimizer, 0, 0, 10**9


def _block(model, optimizer, inputs, targets, steps: int, precision: str, device, pruning=None, clock=None) -> float:
    """Seconds per step over ``steps`` training steps, as the trainer takes them (mask update first when due)."""
    from rewire.train.trainer import autocast, to_memory_format

    started = time.perf_counter()
    for _ in range(steps):
        if pruning is not None:
            pruning.on_batch_start(clock, inputs, targets)
        with autocast(precision, device):
            loss = F.cross_entropy(model(to_memory_format(inputs, precision)), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if clock is not None:
            clock.global_step += 1
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - started) / steps


def benchmark_overhead(
    model: str,
    *,
    hparams,
    batch_size: int,
    sparsity: float,
    pairs: int,
    update_every: int,
    num_classes: int = 10,
    image_size: int = 32,
    device: torch.device | str = "cpu",
    warmup_pairs: int = WARMUP_PAIRS,
    seed: int = 0,
) -> OverheadBenchmark:
    """Time dense and DPF training steps of ``model`` interleaved, ``pairs`` pairs (module docstring).

    ``hparams`` (:class:`rewire.train.trainer.TrainingHparams`) gives the optimizer and the precision of
    the training recipe. Bad input stops before any work.
    """
    from rewire import methods
    from rewire.methods.dpf import SparsitySchedule
    from rewire.models import build_model
    from rewire.sparse.groups import check_sparsity
    from rewire.train.runtime import describe_device
    from rewire.train.trainer import build_optimizer

    check_pairs(pairs)
    check_sparsity(sparsity)
    for name, value, least in (("update_every", update_every, 1), ("batch_size", batch_size, 1),
                               ("warmup_pairs", warmup_pairs, 0)):  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"'{name}': {value!r} must be an integer >= {least}; e.g. {name}: {max(least, 16)}")
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(batch_size, 3, image_size, image_size, generator=generator).to(device)
    targets = torch.randint(0, num_classes, (batch_size,), generator=generator).to(device)
    copies = []
    for _ in range(2):  # the same initial weights on both sides
        torch.manual_seed(seed)
        copies.append(build_model(model, num_classes=num_classes).to(device))
    dense, pruned = copies
    attached = methods.get("dpf").attach(
        pruned, schedule=SparsitySchedule(final=sparsity, initial=sparsity, end=1.0), update_every=update_every
    )
    optimizers = []
    for net in (dense, pruned):  # as the trainer: channels-last before the optimizer under bf16
        if hparams.precision == "bf16":
            net.to(memory_format=torch.channels_last)
        optimizers.append(build_optimizer(net, hparams))
    (pruning,) = attached.callbacks
    clock = _Clock(optimizers[1])
    dense_seconds, dpf_seconds = [], []
    for index in range(warmup_pairs + pairs):
        a = _block(dense, optimizers[0], inputs, targets, update_every, hparams.precision, device)
        b = _block(pruned, optimizers[1], inputs, targets, update_every, hparams.precision, device, pruning, clock)
        if index >= warmup_pairs:
            dense_seconds.append(a)
            dpf_seconds.append(b)
    return OverheadBenchmark(
        model=model,
        batch_size=batch_size,
        sparsity=float(sparsity),
        update_every=update_every,
        precision=hparams.precision,
        device=describe_device(device),
        warmup_pairs=warmup_pairs,
        dense_seconds=tuple(dense_seconds),
        dpf_seconds=tuple(dpf_seconds),
        ratio=paired_ratio(dense_seconds, dpf_seconds),
    )
