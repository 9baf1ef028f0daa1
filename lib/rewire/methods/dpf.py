"""Dynamic Model Pruning with Feedback (Lin et al., ICLR 2020), Algorithm 1, and its gradual relatives.

Algorithm 1 (Appendix A.1)::

    for t = 0..T:
        if p | t: m <- m_t(w_t)               # line 3: global magnitude mask at sparsity s_t
        w~_t = m ⊙ w_t                        # line 5: the pruned model
        g = grad f(w~_t; minibatch)           # line 6: gradient AT THE PRUNED MODEL
        w_{t+1} = Opt(w_t, g)                 # line 7: applied to the DENSE weights

In this repository that is :class:`GradualPruning` on a :class:`rewire.pruning.MaskGroup`
whose gradient route is ``straight_through``: the forward pass reads ``m ⊙ w``, every dense
weight receives dL/dw~, and the optimizer (momentum, weight decay) acts on the dense
weights, so a pruned weight whose accumulated gradient makes it large re-enters the mask
at the next update (error feedback, Section 3: w_{t+1} = w_t - γ g(w_t + e_t)).

The same callback with other switches gives the baselines that differ from DPF in one place:

================  ==========================  ============  =========================  ============
method            rule                        route         mask update                pruned weights
================  ==========================  ============  =========================  ============
DPF               global, weight              straight      every p = 16 iterations    kept (feedback)
DPF, frozen       global, weight              straight      every p = 16 until s_f     kept (feedback)
structured DPF    global, filter, RMS norm    straight      every p = 16 iterations    kept (feedback)
Incremental (ZG)  global, weight              masked        every epoch (Δt = 1)       zeroed, frozen
SFP               per layer, filter, L2 norm  (none)        zeroed at every epoch end  zeroed, updated
================  ==========================  ============  =========================  ============

The target sparsity s_t follows Zhu & Gupta's cubic ramp from 0 at epoch 0 to the target
at the epoch of the second learning-rate decay (Appendix A.2; :func:`rewire.sparse.schedules.cubic_sparsity`).
Table 5's caption says the same of the structured comparison ("We follow the gradual pruning
warmup scheme (as in Zhu & Gupta (2017)) from 0 epoch to the epoch when performing the second
learning rate decay"), in a table whose SFP column is the baseline, so SFP is given the same
ramp by the sweep. The caption does not say separately whether SFP itself got it; He et al.'s
SFP prunes at a constant rate from the start: pass ``SparsitySchedule(final=s, initial=s, end=...)``
for that.

Structured DPF ranks filters by ||W_j||_2 / sqrt(n_j) (``PruningRule(filter_norm="rms")``,
:func:`rewire.sparse.groups.filter_norm_scores`): with the raw norm under one global threshold the
filters with few weights (the 27-weight stem filters, 1x1 shortcuts, the transition convolutions)
are pruned first by shape alone; on a freshly initialised ResNet-20 at a 30% filter target they
are 209 of the 235 pruned filters, the whole stem included.

SFP (He et al. 2018, Soft Filter Pruning, Algorithm 1) is :class:`SoftFilterPruning`: at the end
of every epoch the filters of each layer with the smallest L2 norms (share s_t) are set to zero
*in the dense weights*; then every filter, zeroed ones included, takes part in the forward pass
and is updated until the next epoch end. In the one mask mechanism the zeroing is
:meth:`MaskGroup.zero_pruned`, and the mask of the pruning is held from the epoch end (so the
evaluation of that epoch, its record, its checkpoint and the final model see the pruned model)
to the start of the next epoch, where it is reset to all ones (soft: the zeroed filters train
again). A mask kept during training instead would take the pruned filters out of the forward
pass, which is not SFP.

**SFP in a short, high-learning-rate run (measured, issue 20).** A zeroed filter feeding a batch norm
gives a channel of zero mean and variance, so in training mode the batch norm multiplies its gradient by
gamma / sqrt(eps) (~316 gamma; ``tests/test_sfp.py`` checks it on exact tensors). He et al.'s code
(he-y/soft-filter-pruning, ``pruning_cifar10_resnet.py``: ``Mask.do_mask`` zeroes the conv weights
only, PyTorch's batch norm, momentum kept) does the same; so does this class. On ResNet-20 with 20,000
CIFAR-10 images, 2 epochs, the cpu recipe's lr 0.2 (decays at 70/90 %), bf16: at the first step after the
epoch-1 zeroing the zeroed filters' gradient norm is 16.5 against 0.052 (x319); within 20 steps their norm
is 32.5 against 1.38 for the others, so the epoch-2 ranking zeroes a different set (1 of the 238 filters
zeroed at the end was zeroed before; ``mask_flips`` 161,934 = 2 x 81,255 entries) that the network was
using, with no step left to adapt: train top-1 46.0 % before the final zeroing, 13.2 % after (test 45.2
-> 14.3 %; recomputing the batch-norm statistics gives back only 34.9 %). He et al.'s constant rate
fails the same way (46.8 -> 18.4 % train), and 6 epochs at lr 0.2 make it worse (the regrown norms
escalate to ~70, and the train loss rises from 1.31 to 2.09 once the lr decays). With He et al.'s lr 0.1 and
weight decay 5e-4 over 6 epochs the zeroed set settles (222 of the 238 finally zeroed filters were zeroed
the epoch before) but the evaluation still sits at chance (10.0 % test): the running batch-norm statistics
of the regrown-then-zeroed channels no longer match the model (recomputed on 40 training batches: 48.3 %
test; the same weights with the previous epoch's set zeroed and the trained statistics: 60.1 %). The
cpu scale's chance-level SFP (10.09 %) is this algorithm at that budget, not a defect of the
implementation; recomputing the statistics after the final zeroing is not part of SFP and would be a
variant of its own.

**``sfp_bn``: SFP with recomputed batch-norm statistics (our variant, not He et al.'s).**
``sfp_bn`` is SFP unchanged until its final zeroing, after which :class:`BatchNormRecalibration` recomputes
the running statistics of every batch norm on :data:`SFP_BN_BATCHES` training batches
(:func:`rewire.train.batchnorm.recalibrate_batchnorm`: train mode, cumulative average, no weight update),
before the final evaluation. The training stream is untouched (the loader's generators are restored
afterwards). It is a row of its own, beside ``sfp``, so the structured claim has a working baseline at a
short budget while plain SFP keeps its own (gated) row.

**``dpf_frozen``: DPF with its mask frozen once the ramp reaches the target (our variant, not Algorithm 1).**
Algorithm 1 re-selects the mask every p iterations to the last one, so after the ramp DPF's mask keeps
changing at the small learning rates of the last quarter. The unofficial DPF code most often used
(INCHEON-CHO/Dynamic_Model_Pruning_with_Feedback, ``main.py``) stops the mask updates once the epoch passes
the second decay, where its ramp ends; the dense weights keep training (feedback into weights that can no
longer re-enter). ``dpf_frozen`` is DPF unchanged up to and including the first update at the final target
s_f, after which the mask stays as it is. It is a row of its own: it tells whether DPF's deficit against
Incremental comes from the mask updates after the ramp (issue 20).

**``dpf_structured_bn``: the same recalibration for structured DPF, for fairness (measured, issue 20).** On
ResNet-20 with 5,000 CIFAR-10 training images (500 per class), 2 epochs at lr 0.2 (decays at 70/90 %), update
every 16 steps, bf16, 30 % of the filters, 2,000 test images: structured DPF evaluates at 10.0 % with its
trained statistics and at 22.65 % (seed 0) and 25.75 % (seed 1) after recomputing them on 40 training batches;
SFP at the same size goes from 10.0 to 24.4 % (seed 0). At such a budget (78 steps; the training loss is still
2.08) the running statistics lag the fast-moving weights for every method, so the recalibration is not an
SFP-only repair: comparing ``sfp_bn`` with structured DPF as trained would favour SFP. ``dpf_structured_bn`` is
structured DPF followed by the same :class:`BatchNormRecalibration`, and the like-for-like structured claim
reads ``dpf_structured_bn`` against ``sfp_bn``.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Any

import torch

from rewire.methods.registry import Attached, Method, register
from rewire.sparse import stats as mask_stats
from rewire.sparse.groups import MaskGroup, PruningRule, check_sparsity
from rewire.sparse.schedules import cubic_sparsity
from rewire.train.batchnorm import recalibrate_batchnorm
from rewire.train.trainer import Callback

__all__ = [
    "SparsitySchedule",
    "GradualPruning",
    "SoftFilterPruning",
    "BatchNormRecalibration",
    "RECALIBRATED_VARIANTS",
    "FROZEN_VARIANTS",
    "SFP_BN_BATCHES",
    "DPF_UPDATE_EVERY",
    "GRADUAL_METHODS",
    "attach_gradual",
    "second_decay_epoch",
]

DPF_UPDATE_EVERY = 16  # DPF Appendix A.1: "we trigger the mask update every p = 16 iterations" (Table 9)
# GradualPruning state keys that older checkpoints lack, with the behaviour they were written with
_STATE_DEFAULTS = {"freeze_at_final": False}
# sfp_bn: training batches the batch-norm statistics are recomputed on after SFP's final zeroing (the 40
# batches of the measurement above, 5,120 images at batch 128; a shorter loader is read once to its end)
SFP_BN_BATCHES = 40


def second_decay_epoch(milestones) -> float:
    """The epoch of the second learning-rate decay, where the sparsity ramp ends (DPF Appendix A.2)."""
    milestones = sorted(milestones)
    if len(milestones) < 2:
        raise ValueError(f"the DPF sparsity ramp ends at the second learning-rate decay; got milestones {milestones}")
    return float(milestones[1])


@dataclass(frozen=True)
class SparsitySchedule:
    """s_t from ``initial`` at ``start`` to ``final`` at ``end`` (epochs), cubic (Zhu & Gupta 2017, Eq. 1).

    ``frequency`` is Δt in epochs: 1.0 changes the target once per epoch (the paper's setting),
    0.0 follows the curve at every mask update (smoother when a run has only a few epochs).
    """

    final: float
    end: float
    start: float = 0.0
    initial: float = 0.0
    frequency: float = 1.0

    def __post_init__(self) -> None:
        check_sparsity(self.final)
        check_sparsity(self.initial)
        if self.end <= self.start:
            raise ValueError(f"the sparsity ramp needs end > start (epochs), got start={self.start}, end={self.end}")

    def at(self, epoch: float) -> float:
        return cubic_sparsity(
            epoch, final=self.final, end=self.end, start=self.start, initial=self.initial, frequency=self.frequency
        )


class GradualPruning(Callback):
    """Recompute the masks of ``group`` with ``rule`` at the scheduled sparsity while training.

    ``update_every``: iterations between mask updates (p of Algorithm 1), or ``None`` for
    once at the start of every epoch. ``zero_pruned``: set newly pruned dense weights and their
    momentum to zero after each update (pruning without feedback). ``freeze_at_final``: no update
    after the first one at the schedule's final sparsity (``dpf_frozen``). The mask is updated before
    the forward pass of step t when the update is due (Algorithm 1, line 2).

    Every epoch adds to the trainer's record: ``target_sparsity`` (s_t of the last update),
    ``sparsity`` (reached, over the pruned layers only), ``delta`` (δ_t, Eq. 1, at the end of
    the epoch), ``mask_updates``, ``mask_flips`` (entries that changed, summed over the epoch's
    updates) and ``mask_iou`` (mean IoU of consecutive masks, Figure 7). :meth:`mask_convergence`
    gives Figure 4's curve.
    """

    def __init__(
        self,
        group: MaskGroup,
        rule: PruningRule,
        schedule: SparsitySchedule,
        *,
        update_every: int | None = DPF_UPDATE_EVERY,
        zero_pruned: bool = False,
        freeze_at_final: bool = False,
    ) -> None:
        if update_every is not None and (
            isinstance(update_every, bool) or not isinstance(update_every, int) or update_every < 1
        ):
            raise ValueError(
                f"update_every must be a positive number of iterations or None (every epoch), got {update_every!r}"
            )
        self.group = group
        self.rule = rule
        self.schedule = schedule
        self.update_every = update_every
        self.zero_pruned = zero_pruned
        self.freeze_at_final = freeze_at_final
        self.last_flip_epoch = [torch.zeros(m.shape, dtype=torch.int32, device=m.device) for m in group.masks()]
        self.target = 0.0
        self._reset_epoch()

    def _reset_epoch(self) -> None:
        self.epoch_updates, self.epoch_flips, self.epoch_iou_sum = 0, 0, 0.0

    # -------------------------------------------------------------- hooks
    def on_fit_start(self, trainer) -> None:
        """Refuse a run whose last mask update comes before the end of the ramp: it would never reach the target."""
        period = self.update_every or trainer.batches_per_epoch
        total_steps = trainer.hparams.epochs * trainer.batches_per_epoch
        last_update = (total_steps - 1) // period * period / trainer.batches_per_epoch
        if self.schedule.at(last_update) != self.schedule.final:
            raise ValueError(
                f"the sparsity ramp ends at epoch {self.schedule.end:g}, after the last mask update "
                f"(epoch {last_update:g} of {trainer.hparams.epochs}); the target {self.schedule.final} "
                f"would never be reached. Train longer or end the ramp earlier."
            )

    @property
    def frozen(self) -> bool:
        """True once a ``freeze_at_final`` mask has been set at the final sparsity: no further update."""
        return self.freeze_at_final and self.target == self.schedule.final

    def on_batch_start(self, trainer, inputs, targets):
        step = trainer.global_step
        period = self.update_every or trainer.batches_per_epoch
        if step % period == 0 and not self.frozen:
            self.update(trainer, step / trainer.batches_per_epoch)
        return None

    @torch.no_grad()
    def update(self, trainer, epoch_time: float) -> list[torch.Tensor]:
        """One mask update at training time ``epoch_time`` (epochs); returns the new masks."""
        previous = [m.clone() for m in self.group.masks()]
        self.target = self.schedule.at(epoch_time)
        masks = self.group.apply(self.rule, self.target)
        if self.zero_pruned:
            self.group.zero_pruned(trainer.optimizer if trainer is not None else None)
        epoch = (trainer.epoch if trainer is not None else 0) + 1  # 1-based: the epoch in progress
        for last, before, after in zip(self.last_flip_epoch, previous, masks):
            last.masked_fill_(before ^ after, epoch)
        self.epoch_updates += 1
        self.epoch_flips += mask_stats.mask_flips(previous, masks)
        self.epoch_iou_sum += mask_stats.mask_iou(previous, masks)
        return masks

    def on_epoch_end(self, trainer, record: dict[str, Any]) -> None:
        masks = self.group.masks()
        record.update(
            {
                "target_sparsity": self.target,
                "sparsity": mask_stats.reached_sparsity(masks),
                "delta": mask_stats.pruning_error(self.group.dense_weights(), masks),
                "mask_updates": self.epoch_updates,
                "mask_flips": self.epoch_flips,
                "mask_iou": self.epoch_iou_sum / self.epoch_updates if self.epoch_updates else 1.0,
            }
        )
        if self.rule.granularity == "filter":
            record["filter_sparsity"] = mask_stats.filter_sparsity(masks)
        self._reset_epoch()

    def mask_convergence(self, epochs: int) -> list[float]:
        """DPF Figure 4: share of mask entries still changing after each epoch 0..epochs-1."""
        return mask_stats.still_changing_after(self.last_flip_epoch, epochs)

    # -------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "last_flip_epoch": [t.clone() for t in self.last_flip_epoch],
            "target": self.target,
            "epoch_updates": self.epoch_updates,
            "epoch_flips": self.epoch_flips,
            "epoch_iou_sum": self.epoch_iou_sum,
            "schedule": asdict(self.schedule),
            "rule": asdict(self.rule),
            "update_every": self.update_every,
            "zero_pruned": self.zero_pruned,
            "freeze_at_final": self.freeze_at_final,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, mine in (
            ("schedule", asdict(self.schedule)),
            ("rule", asdict(self.rule)),
            ("update_every", self.update_every),
            ("zero_pruned", self.zero_pruned),
            ("freeze_at_final", self.freeze_at_final),
        ):
            stored = state[key] if key in state else _STATE_DEFAULTS[key]
            if stored != mine:
                raise ValueError(
                    f"checkpoint was written with {key}={stored!r}, this run has {mine!r}; use a new run directory"
                )
        for mine, stored in zip(self.last_flip_epoch, state["last_flip_epoch"]):
            mine.copy_(stored)
        self.target = state["target"]
        self.epoch_updates, self.epoch_flips = state["epoch_updates"], state["epoch_flips"]
        self.epoch_iou_sum = state["epoch_iou_sum"]


class SoftFilterPruning(GradualPruning):
    """Soft Filter Pruning (He et al., IJCAI 2018, Algorithm 1 and Section 3.3) on a filter rule.

    He et al.'s loop: train an epoch with every filter; at its end, in every layer, the
    ``round(s_t N_l)`` filters of smallest ||W_j||_2 are set to zero (the "soft" pruning: they
    are *not* removed, and the next epoch updates them like any other filter); after the last
    epoch the zeroed filters are the pruned model. Here:

    * after the last optimizer step of every epoch (:meth:`on_batch_end`, so *before* the
      trainer evaluates that epoch) the rule's masks at s_t (t = epochs completed) are assigned
      and the dense weights of the pruned filters are set to zero. Only the weights: He et al.'s
      code (``Mask.do_mask``) multiplies the weight data by the mask and leaves the optimizer
      state alone, so a zeroed filter keeps its momentum;
    * the mask stays assigned through the evaluation, the epoch record and the checkpoint of that
      epoch; :meth:`on_epoch_start` resets it to all ones, so during training every filter is in
      the forward pass and receives its gradient (the route does not matter: nothing is masked);
    * after the last epoch the mask stays: the final model has exactly ``round(s N_l)`` zero
      filters in every layer (the ramp must end by then, :meth:`on_fit_start`).

    If s_0 > 0 (SFP's constant rate) the filters are also zeroed once before the first epoch, as
    He et al.'s script does. The records are those of :class:`GradualPruning`, computed at the
    epoch-end pruning: ``sparsity`` and ``filter_sparsity`` are those of the evaluated (pruned)
    model, ``delta`` is δ_t of Eq. 1 *before* the zeroing (the share of ||w||^2 the zeroing
    removed, i.e. how far the zeroed filters had grown back), ``mask_flips``/``mask_iou`` compare
    consecutive epoch-end masks.
    """

    def __init__(self, group: MaskGroup, rule: PruningRule, schedule: SparsitySchedule) -> None:
        if rule.granularity != "filter":
            raise ValueError(f"soft filter pruning prunes filters: the rule needs granularity='filter', got {rule}")
        super().__init__(group, rule, schedule, update_every=None, zero_pruned=True)
        self.pruned_masks = [m.clone() for m in group.masks()]  # the last epoch-end masks
        self.delta = 0.0

    def on_fit_start(self, trainer) -> None:
        if self.schedule.at(trainer.hparams.epochs) != self.schedule.final:
            raise ValueError(
                f"the sparsity ramp ends at epoch {self.schedule.end:g}, after the last epoch "
                f"({trainer.hparams.epochs}); the final model would not reach the target {self.schedule.final}. "
                f"Train longer or end the ramp earlier."
            )
        if trainer.epoch == 0 and self.schedule.at(0.0) > 0:
            self.prune(trainer, 0.0)

    def on_epoch_start(self, trainer) -> None:
        """Soft: every filter, the zeroed ones included, trains in the coming epoch."""
        self.pruned_masks = [m.clone() for m in self.group.masks()]
        self.group.assign([torch.ones_like(m) for m in self.pruned_masks])

    def on_batch_start(self, trainer, inputs, targets):
        return None

    def on_batch_end(self, trainer, loss) -> None:
        if trainer.global_step % trainer.batches_per_epoch == 0:  # the epoch's last step: prune before evaluation
            self.prune(trainer, trainer.global_step / trainer.batches_per_epoch)

    @torch.no_grad()
    def prune(self, trainer, epoch_time: float) -> list[torch.Tensor]:
        """Zero the smallest filters of every layer at s_t, t = ``epoch_time``; hold and return the masks."""
        self.target = self.schedule.at(epoch_time)
        masks = self.rule.masks(self.group.dense_weights(), self.target)
        self.delta = mask_stats.pruning_error(self.group.dense_weights(), masks)
        self.group.assign(masks)
        self.group.zero_pruned(None)  # the weights only (He et al.'s do_mask); momentum is kept
        epoch = int(round(epoch_time)) if trainer is not None else 0
        for last, before, after in zip(self.last_flip_epoch, self.pruned_masks, masks):
            last.masked_fill_(before ^ after, epoch)
        self.epoch_updates += 1
        self.epoch_flips += mask_stats.mask_flips(self.pruned_masks, masks)
        self.epoch_iou_sum += mask_stats.mask_iou(self.pruned_masks, masks)
        self.pruned_masks = [m.clone() for m in masks]
        return masks

    def update(self, trainer, epoch_time: float) -> list[torch.Tensor]:
        return self.prune(trainer, epoch_time)

    def on_epoch_end(self, trainer, record: dict[str, Any]) -> None:
        super().on_epoch_end(trainer, record)
        record["delta"] = self.delta

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "delta": self.delta}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.delta = float(state["delta"])


class BatchNormRecalibration(Callback):
    """The ``*_bn`` variants (``sfp_bn``, ``dpf_structured_bn``): right after the last optimizer step of the
    run (after SFP's final zeroing, or DPF's last mask update, whose callback must come first), recompute the
    batch-norm running statistics on ``batches`` training batches with
    :func:`rewire.train.batchnorm.recalibrate_batchnorm`, before the final evaluation. Not part of either
    paper's method (module docstring).

    The final epoch's record gains ``bn_recalibration_batches`` (batches read). The trainer's loader is
    read from a saved state and restored, so the training stream and the checkpoint are as without it.
    """

    def __init__(self, batches: int = SFP_BN_BATCHES) -> None:
        if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
            raise ValueError(
                f"batch-norm recalibration: batches={batches!r} must be an int >= 1, e.g. batches={SFP_BN_BATCHES}"
            )
        self.batches = batches
        self.recalibrated = 0

    def on_batch_end(self, trainer, loss) -> None:
        if trainer.global_step == trainer.hparams.epochs * trainer.batches_per_epoch:  # after the last step
            self.recalibrate(trainer)

    def recalibrate(self, trainer) -> int:
        """Recompute the statistics on the trainer's training loader; its state is restored afterwards."""
        loader = trainer.train_loader
        saved = loader.state_dict() if hasattr(loader, "state_dict") else None
        try:
            self.recalibrated = recalibrate_batchnorm(
                trainer.model, loader, self.batches, precision=trainer.hparams.precision
            )
        finally:
            if saved is not None:
                loader.load_state_dict(saved)
        return self.recalibrated

    def on_epoch_end(self, trainer, record: dict[str, Any]) -> None:
        if self.recalibrated:
            record["bn_recalibration_batches"] = self.recalibrated

    def state_dict(self) -> dict[str, Any]:
        return {"batches": self.batches, "recalibrated": self.recalibrated}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("batches") != self.batches:
            raise ValueError(
                f"checkpoint was written with batches={state.get('batches')!r}, this run has {self.batches!r}; "
                f"use a new run directory"
            )
        self.recalibrated = int(state.get("recalibrated", 0))


# --------------------------------------------------------------------- registry

# name: (rule, gradient route, mask update period ("p" = every ``update_every`` iterations,
# None = at the start of every epoch, "epoch_end" = SFP's zeroing at the end of every epoch),
# zero the pruned weights), DPF Section 5 and Table 5.
GRADUAL_METHODS = {
    "dpf": (PruningRule("weight", "global"), "straight_through", "p", False),
    "dpf_structured": (PruningRule("filter", "global", filter_norm="rms"), "straight_through", "p", False),
    "incremental": (PruningRule("weight", "global"), "masked", None, True),
    "sfp": (PruningRule("filter", "layer"), "straight_through", "epoch_end", True),
}
# Our variants (not the papers'): the method, then the batch-norm statistics recomputed after its last step
# (BatchNormRecalibration, SFP_BN_BATCHES batches). variant -> the method it recalibrates.
RECALIBRATED_VARIANTS = {"sfp_bn": "sfp", "dpf_structured_bn": "dpf_structured"}
GRADUAL_METHODS.update({variant: GRADUAL_METHODS[base] for variant, base in RECALIBRATED_VARIANTS.items()})
# Our variant (not Algorithm 1): the method with its mask frozen after the first update at the final sparsity
# (GradualPruning(freeze_at_final=True); the unofficial INCHEON-CHO code's behaviour). variant -> its method.
FROZEN_VARIANTS = {"dpf_frozen": "dpf"}
GRADUAL_METHODS.update({variant: GRADUAL_METHODS[base] for variant, base in FROZEN_VARIANTS.items()})


def attach_gradual(
    model, method: str, schedule: SparsitySchedule, *, update_every: int = DPF_UPDATE_EVERY, targets=None
) -> Attached:
    """Put ``method`` (one of :data:`GRADUAL_METHODS`) on every convolution weight of ``model``.

    Returns the mask group and the :class:`GradualPruning` callback to hand to the Trainer
    (build the Trainer, and so the optimizer, after this call).
    """
    rule, route, period, zero = GRADUAL_METHODS[method]
    group = MaskGroup(model, targets, route=route)
    after = [BatchNormRecalibration(SFP_BN_BATCHES)] if method in RECALIBRATED_VARIANTS else []
    if period == "epoch_end":  # SFP: ``update_every`` does not apply
        return Attached(group, [SoftFilterPruning(group, rule, schedule), *after])
    callback = GradualPruning(
        group,
        rule,
        schedule,
        update_every=update_every if period == "p" else None,
        zero_pruned=zero,
        freeze_at_final=method in FROZEN_VARIANTS,
    )
    return Attached(group, [callback, *after])


_GRADUAL_DOCS = {
    "dpf": (
        "DPF Algorithm 1",
        "global magnitude mask every p iterations; the gradient at the pruned model "
        "updates every dense weight (feedback).",
    ),
    "dpf_frozen": (
        "DPF Algorithm 1, mask frozen at the end of the ramp (our variant; the unofficial INCHEON-CHO code)",
        "DPF until the first mask update at the final sparsity; then the mask is fixed and the dense weights train on.",
    ),
    "dpf_structured": (
        "DPF Section 5.2",
        "DPF with whole filters ranked by L2 norm / sqrt(filter size) (RMS) under one global threshold.",
    ),
    "incremental": (
        "Zhu & Gupta 2017 (DPF Table 2)",
        "gradual global magnitude pruning once per epoch; pruned weights are zeroed and frozen (no feedback).",
    ),
    "sfp": (
        "He et al. 2018 (DPF Table 5)",
        "soft filter pruning: at every epoch end the smallest-L2 filters of each layer are zeroed, then train again.",
    ),
    "sfp_bn": (
        "He et al. 2018, with recomputed batch-norm statistics (our variant)",
        "SFP, then the batch-norm running statistics recomputed on training batches after the final zeroing.",
    ),
    "dpf_structured_bn": (
        "DPF Section 5.2, with recomputed batch-norm statistics (our variant)",
        "structured DPF, then the batch-norm running statistics recomputed on training batches after the last step.",
    ),
}
_PROCEDURE_DOCS = {
    "dpf_ft": ("DPF Table 2", "DPF, then fine-tuning with its final mask fixed."),
    "incremental_ft": ("DPF Table 2", "Incremental, then fine-tuning with its final mask fixed."),
    "dpf_rewind": ("DPF Figure 5", "DPF's final mask on the initial weights, retrained (not a lottery ticket)."),
}

for _name, (_paper, _summary) in _GRADUAL_DOCS.items():
    register(
        Method(
            _name,
            family="dpf",
            kind="group",
            paper=_paper,
            summary=_summary,
            attach=functools.partial(attach_gradual, method=_name),
        )
    )
for _name, (_paper, _summary) in _PROCEDURE_DOCS.items():
    register(Method(_name, family="dpf", kind="procedure", paper=_paper, summary=_summary))
