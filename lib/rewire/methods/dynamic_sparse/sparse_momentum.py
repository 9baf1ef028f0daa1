"""Sparse Momentum (Dettmers & Zettlemoyer 2019), a sparse-from-scratch baseline of DPF Table 1:
prune the smallest weights of every layer and regrow by momentum at the end of every epoch.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from rewire.methods.dynamic_sparse.cycle import (
    PruneRegrow,
    apportion,
    optimizer_group_of,
)
from rewire.sparse.groups import MaskGroup
from rewire.sparse.masks import topk_mask
from rewire.train.schedules import cosine_factor

# Sparse Momentum (Dettmers & Zettlemoyer 2019). Reference code TimDettmers/sparse_learning:
# "--death-rate" (the prune rate) defaults to 0.5, decayed with a cosine schedule over training.
SM_PRUNE_RATE = 0.5
# The SM authors' code decays the prune ("death") rate with CosineAnnealingLR(eta_min=0.005)
# (TimDettmers/sparse_learning, sparselearning/core.py, CosineDecay): p_t never reaches 0.
SM_PRUNE_RATE_FLOOR = 0.005


class SparseMomentum(PruneRegrow):
    """Sparse Momentum (Dettmers & Zettlemoyer 2019, "Sparse Networks from Scratch: Faster Training
    without Losing Performance"), Algorithm 1, on the convolution weights of a ``MaskGroup``.

    Algorithm 1 (paraphrased; the statements of its update phase)::

        initialise: every layer i gets a random mask M_i at density d, applied to w_i
        every batch: forward, backward, update_weights(w), apply_mask_to_weights(M, w)
        at the end of every epoch:
          totalMomentum <- get_total_momentum(m)        # [S1] sum over layers of mean |m| of kept weights
          totalPruned   <- get_total_prune_size(w, p)    # [S2] sum over layers of p * (kept weights)
          for each layer i:
            m_i <- get_momentum_contribution(m_i, M_i, totalMomentum)   # [S3] layer mean / total
            magnitude_prune_weight(w_i, M_i, p)                          # [S4] the p share of smallest |w|
            regrow_weights(w_i, M_i, m_i * totalPruned)                  # [S5] largest |m| among zeros
          p <- decay_schedule(p)                        # [S6] cosine decay
          apply_mask_to_weights(M, w)

    Here, at the end of every epoch (:meth:`on_epoch_end`):

    (a) [S1, S3]: per layer the mean |momentum| of its *kept* weights, from the optimizer's
        ``momentum_buffer`` (``exp_avg`` for Adam; the gradient if the optimizer keeps neither),
        normalised over the layers: the momentum contribution c_i (taken before pruning, as in
        the reference code);
    (b) [S2, S4, S6]: every layer drops ``round(p_t * kept_i)`` of its kept weights with the
        smallest |w| (at most ``kept_i - 1``: a layer is never emptied), p_t = ``prune_rate`` *
        ½(1 + cos(π t / T)) after t of T epochs (``prune_rate_schedule="constant"`` keeps p);
    (c) [S5]: the total removed R is apportioned as c_i * R (largest remainders, :func:`apportion`);
    (d) [S5]: each layer regrows its share at the currently pruned entries (those pruned in (b)
        included, as in the reference code) of largest momentum magnitude; a share above the
        layer's free capacity is capped and the overflow goes to the other layers in proportion
        to c_i. The kept total is exactly preserved.

    Momentum of pruned weights. In the reference implementation the gradient is dense and only
    the weights are masked after each step, so the momentum of a zero-valued weight is the
    exponentially smoothed *dense* gradient dL/dW_eff at that position -- the signal of [S5].
    With ``route="masked"`` a pruned dense weight gets no gradient (and its optimizer momentum
    stays zero), so this callback tracks that momentum itself: a forward hook on each
    parametrization catches dL/dW_eff, and after every backward pass
    ``dense_momentum = μ dense_momentum + (1 - dampening) dL/dW_eff`` with the optimizer's own
    coefficients (SGD momentum/dampening; Adam β1 with 1 - β1). Weight decay adds nothing at a
    zero weight, so this equals what the optimizer's buffer would hold for a pruned weight
    under a dense-gradient implementation. Regrowth scores are ``|dense_momentum|``; the
    redistribution (a) uses the optimizer's momentum of kept weights, as stated.

    Defaults: ``prune_rate=0.5`` with cosine decay (reference code ``--death-rate 0.5``,
    ``CosineDecay``, which ends at :data:`SM_PRUNE_RATE_FLOOR` = 0.005, as here). ``seed`` seeds the
    private generator that draws the initial mask.

    The record of every epoch gets ``sparsity``, ``mask_updates``, ``mask_flips``, ``mask_iou``
    (as :class:`rewire.dpf.GradualPruning`), ``regrown`` (R) and ``prune_rate`` (p_t of the update).
    """

    SCHEDULES = ("cosine", "constant")

    def __init__(
        self,
        group: MaskGroup,
        sparsity: float,
        prune_rate: float = SM_PRUNE_RATE,
        prune_rate_schedule: str = "cosine",
        seed: int = 0,
    ) -> None:
        super().__init__(group, sparsity, seed)
        if isinstance(prune_rate, bool) or not isinstance(prune_rate, (int, float)) or not 0.0 <= prune_rate < 1.0:
            raise ValueError(
                f"prune_rate must be a fraction in [0, 1) of each layer's kept weights, got {prune_rate!r}"
            )
        if prune_rate_schedule not in self.SCHEDULES:
            raise ValueError(f"prune_rate_schedule must be one of {self.SCHEDULES}, got {prune_rate_schedule!r}")
        self.prune_rate = float(prune_rate)
        self.prune_rate_schedule = prune_rate_schedule
        self.last_prune_rate = self.prune_rate
        self.dense_momentum = [
            torch.zeros(m.shape, dtype=w.dtype, device=w.device) for m, w in zip(group.masks(), group.dense_weights())
        ]
        self._dense_grads: list[torch.Tensor | None] = [None] * len(group)
        self._hooks = [
            p.register_forward_hook(self._make_forward_hook(i)) for i, p in enumerate(group.parametrizations)
        ]

    # -------------------------------------------------------------- dense-gradient momentum
    def _make_forward_hook(self, index: int):
        def collect(grad: torch.Tensor) -> None:
            g = grad.detach()
            self._dense_grads[index] = g.clone() if self._dense_grads[index] is None else self._dense_grads[index] + g

        def hook(module, inputs, output) -> None:
            if isinstance(output, torch.Tensor) and output.requires_grad:
                output.register_hook(collect)

        return hook

    def remove_hooks(self) -> None:
        """Detach the gradient hooks from the parametrizations (the callback stops tracking dense momentum)."""
        for handle in self._hooks:
            handle.remove()
        self._hooks = []

    @torch.no_grad()
    def accumulate_momentum(self, optimizer: torch.optim.Optimizer | None) -> None:
        """Fold the dense gradients dL/dW_eff of the last backward pass into :attr:`dense_momentum`."""
        for i, (weight, buffer) in enumerate(zip(self.group.dense_weights(), self.dense_momentum)):
            coefficient, scale = 0.0, 1.0
            settings = optimizer_group_of(optimizer, weight) if optimizer is not None else None
            if settings is not None:
                if "betas" in settings:
                    coefficient = float(settings["betas"][0])
                    scale = 1.0 - coefficient
                elif settings.get("momentum", 0.0):
                    coefficient = float(settings["momentum"])
                    scale = 1.0 - float(settings.get("dampening", 0.0))
            grad = self._dense_grads[i]
            buffer.mul_(coefficient)
            if grad is not None:
                buffer.add_(grad.to(buffer.dtype), alpha=scale)
            self._dense_grads[i] = None

    def on_batch_start(self, trainer, inputs, targets):
        self._dense_grads = [None] * len(self.group)  # nothing from evaluation or outside autograd calls
        return None

    def on_after_backward(self, trainer) -> None:
        self.accumulate_momentum(trainer.optimizer)

    # -------------------------------------------------------------- the update
    def prune_rate_at(self, epoch: float, total_epochs: float) -> float:
        """p_t after ``epoch`` of ``total_epochs`` epochs (Algorithm 1, [S6])."""
        if self.prune_rate_schedule == "constant":
            return self.prune_rate
        floor = min(SM_PRUNE_RATE_FLOOR, self.prune_rate)
        return floor + (self.prune_rate - floor) * cosine_factor(epoch, total_epochs)

    @staticmethod
    def kept_momentum(optimizer: torch.optim.Optimizer | None, weight: torch.Tensor) -> torch.Tensor:
        """The momentum of ``weight`` the optimizer holds (SGD ``momentum_buffer``, Adam ``exp_avg``),
        else its gradient, else zeros."""
        state = optimizer.state.get(weight, {}) if optimizer is not None else {}
        for key in ("momentum_buffer", "exp_avg"):
            value = state.get(key)
            if isinstance(value, torch.Tensor):
                return value
        return weight.grad if weight.grad is not None else torch.zeros_like(weight)

    @torch.no_grad()
    def momentum_contributions(self, optimizer: torch.optim.Optimizer | None) -> list[float]:
        """c_i: mean |momentum| of each layer's kept weights, normalised to sum 1 (Algorithm 1, [S1], [S3])."""
        means = []
        for weight, mask in zip(self.group.dense_weights(), self.group.masks()):
            momentum = self.kept_momentum(optimizer, weight)
            value = float(momentum[mask].abs().double().mean()) if bool(mask.any()) else 0.0
            means.append(value if math.isfinite(value) else 0.0)
        total = sum(means)
        return [m / total for m in means] if total > 0 else [0.0] * len(means)

    @torch.no_grad()
    def update(self, optimizer: torch.optim.Optimizer | None, prune_rate: float) -> list[torch.Tensor]:
        """One prune-redistribute-regrow cycle at prune rate ``prune_rate``; returns the new masks."""
        self.last_prune_rate = float(prune_rate)
        previous = [m.clone() for m in self.group.masks()]
        contributions = self.momentum_contributions(optimizer)  # before pruning, as the reference code
        after_prune, removed = [], []
        for weight, mask in zip(self.group.dense_weights(), previous):
            kept = int(mask.sum())
            drop = min(int(round(prune_rate * kept)), kept - 1)
            removed.append(drop)
            after_prune.append(topk_mask(weight.abs(), kept - drop, allowed=mask) if drop > 0 else mask.clone())
        total_removed = sum(removed)
        if total_removed == 0:
            return previous
        capacity = [m.numel() - int(m.sum()) for m in after_prune]
        # no momentum anywhere (e.g. no step yet): give every layer back what it lost
        weights = contributions if sum(contributions) > 0 else [float(r) for r in removed]
        regrow = apportion(total_removed, weights, capacity)
        final = []
        for mask, score, count in zip(after_prune, self.dense_momentum, regrow):
            if count > 0:
                mask = mask | topk_mask(score.abs(), count, allowed=~mask)
            final.append(mask)
        return self._commit(optimizer, previous, after_prune, final, total_removed)

    def on_epoch_end(self, trainer, record: dict[str, Any]) -> None:
        rate = self.prune_rate_at(trainer.epoch, trainer.hparams.epochs)  # trainer.epoch: epochs completed
        if trainer.epoch < trainer.hparams.epochs:  # after the last epoch nothing would train the regrown weights
            self.update(trainer.optimizer, rate)
        else:
            self.last_prune_rate = float(rate)
        self._record(record)
        record["prune_rate"] = self.last_prune_rate

    # -------------------------------------------------------------- state
    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "prune_rate": self.prune_rate, "prune_rate_schedule": self.prune_rate_schedule}

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "last_prune_rate": self.last_prune_rate,
            "dense_momentum": [t.clone() for t in self.dense_momentum],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.last_prune_rate = float(state["last_prune_rate"])
        for mine, stored in zip(self.dense_momentum, state["dense_momentum"]):
            mine.copy_(stored)
