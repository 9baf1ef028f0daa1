"""Dynamic Sparse Reparameterization (Mostafa & Wang 2019), a sparse-from-scratch baseline of DPF Table 1:
one global adaptive threshold prunes every U iterations, surviving weights decide the regrowth.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from rewire.methods.dynamic_sparse.cycle import (
    PruneRegrow,
    apportion,
    is_int_at_least,
)
from rewire.sparse.groups import MaskGroup
from rewire.sparse.masks import topk_mask

# Dynamic Sparse Reparameterization (Mostafa & Wang 2019), WRN-28-2 on CIFAR-10, from the authors'
# code (sparse_learning/imagenet/dynamic-reparameterization: main.py, wrnet_experiments.yaml,
# learning_schedules/wrnet_schedule.yaml): initial threshold 1e-3, tolerance 10% ("> 1.1 Np" halves,
# "< 0.9 Np" doubles), Np = 20,000 weights ("--n-prune-params 20000") at every sparsity, reallocation
# every 100 iterations growing to 200/400/800 at epochs 25/80/140, no reallocation after epoch 190 of 200.
DSR_INITIAL_THRESHOLD = 1e-3
DSR_TOLERANCE = 0.1
DSR_UPDATE_EVERY = 100
DSR_WRN_UPDATE_SCHEDULE = ((0, 100), (25, 200), (80, 400), (140, 800))
DSR_WRN_STOP_EPOCH = 190
# The length of the run the two lines above are given for (wrnet_experiments.yaml: 200 epochs). A run
# of another length gets the epochs of the schedule and the stop epoch as the same fractions of its own
# (``schedule_epochs`` of DynamicSparseReparameterization).
DSR_WRN_EPOCHS = 200
# Np as a share of the group: 20,000 of the 1,462,272 reparameterized convolution weights of this
# repository's WRN-28-2 (1,462,704 convolution weights less the 432 of the dense first convolution).
DSR_TARGET_PRUNED_FRACTION = 20_000 / 1_462_272


class DynamicSparseReparameterization(PruneRegrow):
    """Dynamic Sparse Reparameterization (Mostafa & Wang 2019, "Parameter Efficient Training of Deep
    Convolutional Neural Networks by Dynamic Sparse Reparameterization"), Algorithm 1, on a ``MaskGroup``.

    Algorithm 1 (reallocate free parameters within and across layers; paraphrased), every U iterations::

        for each sparse layer l:
            (W_l, M_l), k_l <- prune_by_threshold(W_l, M_l, H)   # kept weights with |w| < H
            l_l <- number of surviving (kept) weights of layer l
        K, L <- sum_l k_l, sum_l l_l
        H <- 2H   if K < (1 - δ) N_p                             # adjust_pruning_threshold
        H <- H/2  if K > (1 + δ) N_p
        for each sparse layer l:
            G_l <- K * l_l / L                                   # free parameters to layer l
            (W_l, M_l) <- grow_back_at_random(W_l, M_l, G_l)      # zero-initialised

    Here: after every ``update_every``-th optimizer step (:meth:`on_batch_end`, the reference
    code reallocates after the step), all kept weights with |w| < H are pruned with one global
    threshold H (a layer keeps at least its largest weight, as the reference code keeps one);
    H is then adapted for the next reallocation; the K freed parameters are apportioned to the
    layers in proportion to their surviving weights (largest remainders, capped at each
    layer's free capacity, :func:`apportion`) and regrown at uniformly random positions drawn
    from the private generator among the entries that were already pruned before this
    reallocation (the reference code excludes the just-pruned positions; they are used only if
    there is no other room). Regrown weights start at zero. The kept total is exactly preserved.

    ``update_every`` is U, an int or a schedule ``((from_epoch, U), ...)``;
    ``target_pruned_fraction`` gives N_p = round(fraction * N) over the N entries of the group
    (a fixed count, as the paper's N_p is the same at every sparsity); ``tolerance`` is δ;
    ``stop_epoch``: no reallocation from this epoch on (None: until the end). ``schedule_epochs``:
    the number of epochs the epochs of ``update_every`` and ``stop_epoch`` are given for; if set,
    :meth:`on_fit_start` rescales them to the run's epochs (epoch e becomes e * epochs /
    schedule_epochs; a 20-epoch run of the 200-epoch paper schedule reallocates every 100
    iterations until epoch 2.5, ..., and stops at epoch 19). U itself, in iterations, is not
    rescaled. Epochs are compared as fractions: an optimizer step taken at training time
    t = (step - 1) / batches_per_epoch uses U of t and is the last reallocation before
    ``stop_epoch`` if t < stop_epoch.

    Paper settings (WRN-28-2 / CIFAR-10, the authors' code): H(0) = 1e-3, δ = 0.1, N_p = 20,000
    (:data:`DSR_TARGET_PRUNED_FRACTION` of this repository's WRN-28-2 convolutions), U = 100
    growing to 200/400/800 at epochs 25/80/140 (:data:`DSR_WRN_UPDATE_SCHEDULE`), reallocation
    stopped at epoch 190 of 200 (:data:`DSR_WRN_STOP_EPOCH`, :data:`DSR_WRN_EPOCHS`). The class's
    own defaults are U = 100 throughout; the registry's ``dsr`` attaches the paper schedule,
    rescaled to the run. Mostafa & Wang exclude the first convolution and the final layer from
    reallocation; so does the registry's ``attach`` by default (see the package docstring).

    The record of every epoch gets ``sparsity``, ``mask_updates``, ``mask_flips``, ``mask_iou``
    (as :class:`rewire.dpf.GradualPruning`), ``regrown`` (sum of K) and ``threshold`` (H at the end).
    """

    def __init__(
        self,
        group: MaskGroup,
        sparsity: float,
        update_every: int | Sequence[Sequence[float]] = DSR_UPDATE_EVERY,
        initial_threshold: float = DSR_INITIAL_THRESHOLD,
        target_pruned_fraction: float = DSR_TARGET_PRUNED_FRACTION,
        tolerance: float = DSR_TOLERANCE,
        seed: int = 0,
        stop_epoch: float | None = None,
        schedule_epochs: float | None = None,
    ) -> None:
        super().__init__(group, sparsity, seed)
        self.update_schedule = self._schedule(update_every)
        if schedule_epochs is not None and (
            isinstance(schedule_epochs, bool) or not isinstance(schedule_epochs, (int, float)) or schedule_epochs <= 0
        ):
            raise ValueError(f"schedule_epochs must be a positive number of epochs or None, got {schedule_epochs!r}")
        self.schedule_epochs = schedule_epochs
        self.epoch_scale = 1.0  # run epochs / schedule_epochs, set by on_fit_start
        if (
            isinstance(initial_threshold, bool)
            or not isinstance(initial_threshold, (int, float))
            or not initial_threshold > 0
        ):
            raise ValueError(f"initial_threshold must be a positive number, got {initial_threshold!r}")
        if (
            isinstance(target_pruned_fraction, bool)
            or not isinstance(target_pruned_fraction, (int, float))
            or not 0.0 < target_pruned_fraction < 1.0
        ):
            raise ValueError(f"target_pruned_fraction must be in (0, 1), got {target_pruned_fraction!r}")
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0.0 <= tolerance < 1.0:
            raise ValueError(f"tolerance must be a fraction in [0, 1), got {tolerance!r}")
        if stop_epoch is not None and (isinstance(stop_epoch, bool) or not isinstance(stop_epoch, (int, float))):
            raise ValueError(f"stop_epoch must be a number of epochs or None, got {stop_epoch!r}")
        self.initial_threshold = float(initial_threshold)
        self.threshold = float(initial_threshold)
        self.target_pruned_fraction = float(target_pruned_fraction)
        self.target_pruned = max(1, int(round(self.target_pruned_fraction * group.numel())))
        self.tolerance = float(tolerance)
        self.stop_epoch = stop_epoch
        self.last_pruned = 0

    @staticmethod
    def _schedule(update_every) -> tuple[tuple[float, int], ...]:
        if is_int_at_least(update_every, 1):
            return ((0.0, update_every),)
        try:
            schedule = tuple((float(start), period) for start, period in update_every)
        except (TypeError, ValueError):
            schedule = ()
        if (
            not schedule
            or schedule[0][0] != 0.0
            or any(not is_int_at_least(p, 1) for _, p in schedule)
            or any(b[0] <= a[0] for a, b in zip(schedule, schedule[1:]))
        ):
            raise ValueError(
                f"update_every must be a positive number of iterations or a schedule "
                f"((0, U0), (epoch1, U1), ...) with increasing epochs, got {update_every!r}"
            )
        return schedule

    def period_at(self, epoch: float) -> int:
        """U in force at training time ``epoch`` (epochs, fractional; schedule epochs rescaled by :attr:`epoch_scale`)."""
        return [period for start, period in self.update_schedule if epoch >= start * self.epoch_scale][-1]

    def stops_at(self) -> float | None:
        """The (rescaled) epoch from which there is no reallocation; None: never stops."""
        return None if self.stop_epoch is None else self.stop_epoch * self.epoch_scale

    # -------------------------------------------------------------- the update
    def on_fit_start(self, trainer) -> None:
        if self.schedule_epochs is not None:
            self.epoch_scale = trainer.hparams.epochs / self.schedule_epochs
        super().on_fit_start(trainer)

    def on_batch_end(self, trainer, loss) -> None:
        time = (trainer.global_step - 1) / trainer.batches_per_epoch  # when the step just taken began (epochs)
        stop = self.stops_at()
        if stop is not None and time >= stop:
            return
        if trainer.global_step % self.period_at(time) == 0:  # global_step: steps completed
            self.update(trainer.optimizer)

    def adapt_threshold(self, pruned: int) -> float:
        """H <- 2H if fewer than (1 - δ) N_p were pruned, H/2 if more than (1 + δ) N_p; returns H."""
        if pruned < (1.0 - self.tolerance) * self.target_pruned:
            self.threshold *= 2.0
        elif pruned > (1.0 + self.tolerance) * self.target_pruned:
            self.threshold /= 2.0
        return self.threshold

    @torch.no_grad()
    def update(self, optimizer: torch.optim.Optimizer | None = None) -> list[torch.Tensor]:
        """One reallocation (Algorithm 1) with the current threshold H; returns the new masks."""
        previous = [m.clone() for m in self.group.masks()]
        after_prune, just_pruned = [], []
        for weight, mask in zip(self.group.dense_weights(), previous):
            survive = mask & (weight.abs() >= self.threshold)
            if not bool(survive.any()):  # never empty a layer: keep its largest weight
                survive = topk_mask(weight.abs(), 1, allowed=mask)
            after_prune.append(survive)
            just_pruned.append(mask & ~survive)
        pruned = sum(int(m.sum()) for m in just_pruned)
        self.last_pruned = pruned
        self.adapt_threshold(pruned)
        surviving = [int(m.sum()) for m in after_prune]
        old_room = [int((~m).sum()) for m in previous]
        if pruned <= sum(old_room):
            capacity, prefer_old = old_room, False
        else:  # more freed than ever pruned (low sparsity): just-pruned positions become eligible too
            capacity, prefer_old = [m.numel() - s for m, s in zip(after_prune, surviving)], True
        regrow = apportion(pruned, surviving, capacity) if pruned else [0] * len(previous)
        final = []
        for before, survive, count in zip(previous, after_prune, regrow):
            scores = torch.rand(before.shape, generator=self.generator).to(before.device)  # drawn every time
            if count > 0:
                if prefer_old:
                    candidates = ~survive
                    scores = scores + (~before).to(scores.dtype)  # previously pruned first
                else:
                    candidates = ~before
                survive = survive | topk_mask(scores, count, allowed=candidates)
            final.append(survive)
        if pruned == 0:
            self.updates += 1
            self.epoch_updates += 1
            self.epoch_iou_sum += 1.0
            return previous
        return self._commit(optimizer, previous, after_prune, final, pruned)

    def on_epoch_end(self, trainer, record: dict[str, Any]) -> None:
        self._record(record)
        record["threshold"] = self.threshold

    # -------------------------------------------------------------- state
    def _config(self) -> dict[str, Any]:
        return {
            **super()._config(),
            "update_every": [list(p) for p in self.update_schedule],
            "initial_threshold": self.initial_threshold,
            "target_pruned": self.target_pruned,
            "tolerance": self.tolerance,
            "stop_epoch": self.stop_epoch,
            "schedule_epochs": self.schedule_epochs,
        }

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "threshold": self.threshold, "last_pruned": self.last_pruned}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.threshold = float(state["threshold"])
        self.last_pruned = int(state["last_pruned"])
