"""Sparse-from-scratch baselines of DPF's Table 1: a prune-redistribute-regrow cycle at a fixed sparsity.

Both methods train a network whose overall sparsity over the pruned layers is fixed at the
target from the first iteration (no dense phase). Periodically they remove some kept weights,
decide how many each layer gets back, and regrow that many at pruned positions, so the total
number of kept weights never changes:

=======================================  ===================  ===========================  =======================  ================
method                                   when                 prune                        redistribute             regrow
=======================================  ===================  ===========================  =======================  ================
SM  (Dettmers & Zettlemoyer 2019)        end of every epoch   share p_t of every layer,    mean |momentum| of the   largest |momentum|
                                                              smallest |w|                 layer's kept weights
DSR (Mostafa & Wang 2019)                every U iterations   |w| < H, one global adaptive  surviving weights        uniformly at random
                                                              threshold H                  of the layer
=======================================  ===================  ===========================  =======================  ================

Both callbacks run on a :class:`rewire.pruning.MaskGroup` built with ``route="masked"``: a
pruned weight receives no gradient, and its dense value and optimizer state are set to zero
after every mask change (:meth:`MaskGroup.zero_pruned`), so it stays exactly zero while
pruned. A regrown weight starts at zero (with zero optimizer state), as in both papers.

Layers. Both papers keep some layers out of the cycle: Mostafa & Wang do not reparameterize the
first convolution and the last (fully-connected) layer, and in the ImageNet reference code
(TimDettmers/sparse_learning, imagenet/dynamic-reparameterization/main.py) the first
convolution and the ResNet-50 downsampling convolutions stay dense for both methods. Here, by
default (``dense_first_conv=True`` of the registry's ``attach``), the group holds every convolution
weight except the first (``rewire.sparse.groups.conv_weight_targets(model, dense_first=True)``):
the first convolution stays dense, as in both papers, and the target sparsity is that of the
remaining convolutions. The final linear layer, biases and batch norm stay dense. DPF itself
prunes the first convolution too (DPF Section 5: "our competitors may ignore some layers (e.g.
the first convolution and downsampling layers in DSR)"); ``dense_first_conv=False`` puts SM and
DSR on exactly DPF's layers.

Counting. The initial mask (:func:`initial_masks`) has exactly ``round(s N)`` pruned entries
over the ``N`` entries of the group (the convention of :func:`rewire.pruning.pruned_count`),
spread uniformly: every layer at the same sparsity up to one entry. Regrowth counts are
apportioned by largest remainders and capped at each layer's free capacity, the overflow
going to the layers with room (:func:`apportion`), so no update changes the total.

Resume. The masks live in the model's state_dict (``SparseWeight.mask`` buffers). A callback's
``state_dict`` holds the rest: whether the initial mask was drawn, the private generator's
state, DSR's threshold, SM's dense-gradient momentum, and the epoch counters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import torch

from rewire.methods.registry import Attached, Method, register
from rewire.sparse import stats as mask_stats
from rewire.sparse.groups import MaskGroup, check_sparsity, conv_weight_targets, pruned_count
from rewire.sparse.masks import topk_mask
from rewire.train.schedules import cosine_factor
from rewire.train.trainer import Callback

__all__ = [
    "initial_masks",
    "apportion",
    "SparseMomentum",
    "DynamicSparseReparameterization",
    "SM_PRUNE_RATE",
    "SM_PRUNE_RATE_FLOOR",
    "DSR_INITIAL_THRESHOLD",
    "DSR_TOLERANCE",
    "DSR_UPDATE_EVERY",
    "DSR_WRN_UPDATE_SCHEDULE",
    "DSR_WRN_STOP_EPOCH",
    "DSR_WRN_EPOCHS",
    "DSR_TARGET_PRUNED_FRACTION",
]

# Sparse Momentum (Dettmers & Zettlemoyer 2019). Reference code TimDettmers/sparse_learning:
# "--death-rate" (the prune rate) defaults to 0.5, decayed with a cosine schedule over training.
SM_PRUNE_RATE = 0.5
# The SM authors' code decays the prune ("death") rate with CosineAnnealingLR(eta_min=0.005)
# (TimDettmers/sparse_learning, sparselearning/core.py, CosineDecay): p_t never reaches 0.
SM_PRUNE_RATE_FLOOR = 0.005

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


# --------------------------------------------------------------------------- counting


def apportion(total: int, weights: Sequence[float], capacity: Sequence[int]) -> list[int]:
    """Split ``total`` into integers proportional to ``weights``, each at most its ``capacity``; exact sum.

    Largest-remainder (Hamilton) rounding in exact rational arithmetic, ties to the lower index.
    A share above its capacity is capped and the overflow re-apportioned among the entries
    with room, again in proportion to their weights (water-filling). Entries of zero (or
    non-finite) weight receive something only once every entry of positive weight is full
    (then in proportion to their remaining room). Raises if ``total`` exceeds the total capacity.
    """
    n = len(weights)
    if len(capacity) != n:
        raise ValueError(f"{n} weights but {len(capacity)} capacities")
    capacity = [int(c) for c in capacity]
    if total < 0 or any(c < 0 for c in capacity):
        raise ValueError(f"apportion needs total >= 0 and capacities >= 0, got {total}, {capacity}")
    if total > sum(capacity):
        raise ValueError(f"cannot place {total} entries in a total capacity of {sum(capacity)}")
    clean = [Fraction(w) if (math.isfinite(w) and w > 0) else Fraction(0) for w in map(float, weights)]
    allocation = [0] * n
    remaining = int(total)
    while remaining > 0:
        room = [c - a for c, a in zip(capacity, allocation)]
        active = [i for i in range(n) if room[i] > 0 and clean[i] > 0]
        share = {i: clean[i] for i in active}
        if not active:  # every layer of positive weight is full: fill by remaining room
            active = [i for i in range(n) if room[i] > 0]
            share = {i: Fraction(room[i]) for i in active}
        norm = sum(share.values())
        exact = [remaining * share[i] / norm for i in active]
        base = [math.floor(e) for e in exact]
        order = sorted(range(len(active)), key=lambda j: (-(exact[j] - base[j]), active[j]))
        for j in order[: remaining - sum(base)]:
            base[j] += 1
        for j, i in enumerate(active):
            grant = min(base[j], room[i])
            allocation[i] += grant
            remaining -= grant
    return allocation


def _kept_counts(masks: Sequence[torch.Tensor]) -> list[int]:
    return [int(m.sum()) for m in masks]


@torch.no_grad()
def initial_masks(group: MaskGroup, sparsity: float, generator: torch.Generator) -> list[torch.Tensor]:
    """A uniformly random mask with exactly ``round(sparsity * N)`` pruned entries over the group.

    The pruned count is spread over the layers in proportion to their sizes (every layer at
    the target sparsity up to one entry, largest remainders fixing the rounding so the total
    is exact), and every layer keeps at least one weight. Within a layer the pruned positions
    are uniformly random: the kept entries are the largest of ``torch.rand`` scores drawn from
    ``generator`` (a CPU generator; same seed, same masks on every device). Returns the masks
    (on the masks' devices) without assigning them.
    """
    check_sparsity(sparsity)
    sizes = [m.numel() for m in group.masks()]
    total_pruned = pruned_count(sum(sizes), sparsity)
    if total_pruned > sum(sizes) - len(sizes):
        raise ValueError(
            f"sparsity {sparsity} prunes {total_pruned} of {sum(sizes)} entries: "
            f"every one of the {len(sizes)} layers must keep at least one weight"
        )
    per_layer = apportion(total_pruned, sizes, [s - 1 for s in sizes])
    masks = []
    for mask, pruned in zip(group.masks(), per_layer):
        scores = torch.rand(mask.shape, generator=generator)
        masks.append(topk_mask(scores, mask.numel() - pruned).to(mask.device))
    return masks


def _is_int(value, minimum: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= minimum


# --------------------------------------------------------------------------- common machinery


class _PruneRegrow(Callback):
    """Shared parts: validation, the initial mask, applying an update, epoch statistics, state."""

    def __init__(self, group: MaskGroup, sparsity: float, seed: int) -> None:
        if not isinstance(group, MaskGroup):
            raise TypeError(f"group must be a rewire.pruning.MaskGroup, got {type(group).__name__}")
        if group.route != "masked":
            raise ValueError(
                f"{type(self).__name__} trains a sparse network: build the MaskGroup with "
                f"route='masked' (pruned weights get no gradient), got route={group.route!r}"
            )
        if not _is_int(seed, 0):
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.group = group
        self.sparsity = check_sparsity(sparsity)
        self.seed = seed
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        sizes = [m.numel() for m in group.masks()]
        self.kept_total = sum(sizes) - pruned_count(sum(sizes), self.sparsity)
        if pruned_count(sum(sizes), self.sparsity) > sum(sizes) - len(sizes):
            raise ValueError(f"sparsity {sparsity} would leave a layer of the group without weights")
        self.started = False
        self.updates = 0  # updates over the whole run
        self._reset_epoch()

    def _reset_epoch(self) -> None:
        self.epoch_updates, self.epoch_flips, self.epoch_iou_sum, self.epoch_regrown = 0, 0, 0.0, 0

    # -------------------------------------------------------------- hooks
    def on_fit_start(self, trainer) -> None:
        if not self.started:  # a resumed run has its masks in the model state_dict already
            self.start(trainer.optimizer)

    @torch.no_grad()
    def start(self, optimizer: torch.optim.Optimizer | None = None) -> list[torch.Tensor]:
        """Draw and assign the initial random mask; pruned weights (and their optimizer state) become zero."""
        masks = initial_masks(self.group, self.sparsity, self.generator)
        self.group.assign(masks)
        self.group.zero_pruned(optimizer)
        self.started = True
        return masks

    @torch.no_grad()
    def _commit(
        self,
        optimizer,
        previous: list[torch.Tensor],
        after_prune: list[torch.Tensor],
        final: list[torch.Tensor],
        regrown: int,
    ) -> list[torch.Tensor]:
        """Assign ``final``; entries pruned now, and entries regrown now, end with value and state zero."""
        if sum(_kept_counts(final)) != sum(_kept_counts(previous)):  # pragma: no cover - guarded by construction
            raise RuntimeError(
                f"{type(self).__name__} changed the kept count: "
                f"{sum(_kept_counts(previous))} -> {sum(_kept_counts(final))}"
            )
        self.group.assign(after_prune)
        self.group.zero_pruned(optimizer)  # removed and (to be) regrown entries: zero value, zero momentum
        self.group.assign(final)
        self.updates += 1
        self.epoch_updates += 1
        self.epoch_regrown += regrown
        self.epoch_flips += mask_stats.mask_flips(previous, final)
        self.epoch_iou_sum += mask_stats.mask_iou(previous, final)
        return final

    def _record(self, record: dict[str, Any]) -> None:
        record.update(
            {
                "sparsity": mask_stats.reached_sparsity(self.group.masks()),
                "mask_updates": self.epoch_updates,
                "mask_flips": self.epoch_flips,
                "mask_iou": self.epoch_iou_sum / self.epoch_updates if self.epoch_updates else 1.0,
                "regrown": self.epoch_regrown,
            }
        )
        self._reset_epoch()

    # -------------------------------------------------------------- state
    def _config(self) -> dict[str, Any]:
        return {"sparsity": self.sparsity, "seed": self.seed, "layers": list(self.group.names)}

    def state_dict(self) -> dict[str, Any]:
        return {
            "config": self._config(),
            "started": self.started,
            "generator": self.generator.get_state(),
            "updates": self.updates,
            "epoch_updates": self.epoch_updates,
            "epoch_flips": self.epoch_flips,
            "epoch_iou_sum": self.epoch_iou_sum,
            "epoch_regrown": self.epoch_regrown,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mine = self._config()
        for key in sorted(set(mine) | set(state["config"])):
            if state["config"].get(key) != mine.get(key):
                raise ValueError(
                    f"checkpoint was written with {key}={state['config'].get(key)!r}, this run has "
                    f"{mine.get(key)!r}; use a new run directory"
                )
        self.started = bool(state["started"])
        self.generator.set_state(state["generator"].cpu())
        self.updates = int(state["updates"])
        self.epoch_updates, self.epoch_flips = int(state["epoch_updates"]), int(state["epoch_flips"])
        self.epoch_iou_sum, self.epoch_regrown = float(state["epoch_iou_sum"]), int(state["epoch_regrown"])


def _param_group(optimizer: torch.optim.Optimizer, weight: torch.Tensor) -> dict | None:
    for group in optimizer.param_groups:
        if any(p is weight for p in group["params"]):
            return group
    return None


# --------------------------------------------------------------------------- Sparse Momentum


class SparseMomentum(_PruneRegrow):
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
            settings = _param_group(optimizer, weight) if optimizer is not None else None
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


# --------------------------------------------------------------------------- DSR


class DynamicSparseReparameterization(_PruneRegrow):
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
    reallocation; so does the registry's ``attach`` by default (see the module docstring).

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
        if _is_int(update_every, 1):
            return ((0.0, update_every),)
        try:
            schedule = tuple((float(start), period) for start, period in update_every)
        except (TypeError, ValueError):
            schedule = ()
        if (
            not schedule
            or schedule[0][0] != 0.0
            or any(not _is_int(p, 1) for _, p in schedule)
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


def _attach(callback_class, **paper_defaults):
    def attach(model, sparsity: float, *, seed: int = 0, targets=None, dense_first_conv: bool = True, **kwargs):
        if targets is None:
            targets = conv_weight_targets(model, dense_first=dense_first_conv)
        group = MaskGroup(model, targets, route="masked")
        return Attached(group, [callback_class(group, sparsity, seed=seed, **{**paper_defaults, **kwargs})])

    attach.__doc__ = (
        f"A masked MaskGroup over the convolution weights (the first one left dense unless "
        f"``dense_first_conv=False``, or over ``targets``) with a {callback_class.__name__} callback"
        + (f" (defaults {paper_defaults}; keyword arguments override them)." if paper_defaults else ".")
    )
    return attach


register(
    Method(
        "sm",
        family="dynamic_sparse",
        kind="group",
        paper="Dettmers & Zettlemoyer 2019 (DPF Table 1)",
        summary="sparse momentum: prune the smallest weights per layer, regrow by momentum each epoch.",
        attach=_attach(SparseMomentum),
    )
)
register(
    Method(
        "dsr",
        family="dynamic_sparse",
        kind="group",
        paper="Mostafa & Wang 2019 (DPF Table 1)",
        summary="dynamic sparse reparameterization: global adaptive threshold, random regrowth.",
        attach=_attach(
            DynamicSparseReparameterization,
            update_every=DSR_WRN_UPDATE_SCHEDULE,
            stop_epoch=DSR_WRN_STOP_EPOCH,
            schedule_epochs=DSR_WRN_EPOCHS,
        ),
    )
)
