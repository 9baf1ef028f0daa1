"""L1 + Anneal (DNW Section 3.3, Table 2): start from the complete graph and remove edges by magnitude until k remain.

The paper's whole description: "start with a fully connected graph and remove edges by magnitude
throughout training until there are only k remaining. We found that accuracy was much better if
we added an L1 regularization term." The authors' public code (allenai/dnw) has no implementation
(only an unused auxiliary-loss hook in its training script), so this one is built from those words:

* :class:`AnnealedTopK` -- a held selector with a budget k_t: at t = 0 every allowed entry is
  real; at each update it keeps the top-k_t of |w| *among the edges still present*, so a removed
  edge never comes back ("remove edges": the masks are nested whatever the weights do);
* :func:`annealed_edge_count` -- k_t, Zhu & Gupta's (2017) cubic ramp (their Eq. 1) written in
  edge counts, from n_allowed at ``start`` to k at ``end``;
* :class:`EdgeAnnealing` -- the callback that sets k_t and updates the masks every
  ``update_every`` optimizer steps (before the forward pass of a due step, as
  :class:`rewire.methods.dpf.GradualPruning`);
* :class:`L1Penalty` -- the L1 term λ Σ|w| over the real edges of the annealed tensors, applied
  as its gradient λ·sign(w) (see the class for why a gradient term and not a loss term).

Removed edges get no gradient (route ``masked``): they are gone from the network, as in ordinary
magnitude pruning (Zhu & Gupta mask the pruned weights). The schedule's ``end`` and the L1
coefficient are left to the experiment driver, to be chosen on a validation split; the defaults
here are stated as our choices where they are defined.

Use::

    attached = attach_l1_anneal(model, k={"graph.weight": 32_000}, schedule=AnnealSchedule(end=80.0),
                                allowed=model.allowed_edges(), targets=("graph.weight",))
    trainer = Trainer(model, hparams, train, test, callbacks=attached.callbacks)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn as nn

from rewire.methods.registry import Attached, Method, register
from rewire.methods.targeted_dropout import sparsify_targets
from rewire.sparse.masks import Selector, SparseWeight, TopKSelector, sparse_modules, topk_mask
from rewire.sparse.schedules import cubic_sparsity
from rewire.train.trainer import Callback

__all__ = [
    "ANNEAL_UPDATE_EVERY",
    "L1_COEFFICIENT",
    "AnnealedTopK",
    "AnnealSchedule",
    "annealed_edge_count",
    "EdgeAnnealing",
    "L1Penalty",
    "l1_penalty",
    "apply_anneal",
    "attach_l1_anneal",
]

# Our choice: the lower end of Zhu & Gupta (2017, Section 3): "varying the pruning frequency Δt between 100
# and 1000 training steps had a negligible impact on the final model quality"; the lower end removes fewer
# edges at a time.
ANNEAL_UPDATE_EVERY = 100

# Our choice, to be tuned on a validation split (the paper gives no value). Under DNW's CIFAR-10 recipe
# (160 epochs x 391 steps, SGD momentum 0.9, cosine lr from 0.1: mean lr 0.05) a constant gradient λ·sign(w)
# moves a weight by about λ · 0.05 · 62,560 / (1 - 0.9) ≈ 31,000 λ in total: 0.03 for λ = 1e-6, the scale of
# the graphs' initial weights (1/sqrt(fan in) for fan in ~ 10^3), so an edge the loss does not support is
# driven towards zero within the run without the penalty dominating the loss gradient.
L1_COEFFICIENT = 1e-6


# ------------------------------------------------------------------ schedule


def annealed_edge_count(t: float, *, n_allowed: int, k: int, start: float, end: float, frequency: float = 0.0) -> int:
    """k_t = k + (n_allowed - k)(1 - (t - start)/(end - start))^3, rounded to the nearest int.

    Zhu & Gupta (2017), Eq. 1, s_t = s_f + (s_i - s_f)(1 - (t - t_0)/(n Δt))^3 with s_i = 0 and
    s_f = 1 - k/n_allowed, mapped to edge counts k_t = n_allowed (1 - s_t) (a linear map, so the
    curve is the same cubic); :func:`rewire.sparse.schedules.cubic_sparsity` evaluates it. Exactly
    n_allowed for t <= ``start`` and exactly k for t >= ``end``; non-increasing in t. ``t``,
    ``start``, ``end`` and ``frequency`` (Δt, 0 = follow the curve) share one unit (epochs here).
    """
    for name, value in (("n_allowed", n_allowed), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an int, got {value!r}")
    if not 1 <= k <= n_allowed:
        raise ValueError(f"k must be in [1, n_allowed={n_allowed}], got {k}")
    remaining = cubic_sparsity(
        t, final=float(k), initial=float(n_allowed), start=start, end=end, frequency=frequency
    )  # Eq. 1 in edges: the function is affine in (initial, final)
    return min(n_allowed, max(k, math.floor(remaining + 0.5)))


@dataclass(frozen=True)
class AnnealSchedule:
    """When the edges go: from all allowed at ``start`` to k at ``end`` (epochs), Zhu & Gupta's cubic ramp.

    ``start`` = 0 by default (our choice, the paper's "start with a fully connected graph": the
    removal begins at once). ``end`` has no default: it depends on the run's length and is to be
    chosen on a validation split (Zhu & Gupta end the ramp well before training ends, so the
    network recovers from the last removals; DPF ends it at the second learning-rate decay).
    ``frequency`` (Δt in epochs) 0 follows the curve at every update (our choice: the update
    period ``update_every`` already spaces the removals).
    """

    end: float
    start: float = 0.0
    frequency: float = 0.0

    def __post_init__(self) -> None:
        if not self.end > self.start >= 0.0:
            raise ValueError(f"the anneal needs 0 <= start < end (epochs), got start={self.start}, end={self.end}")
        if self.frequency < 0:
            raise ValueError(f"frequency must be >= 0 epochs, got {self.frequency}")

    def edges_at(self, t: float, n_allowed: int, k: int) -> int:
        """k_t at training time ``t`` (epochs) for a tensor with ``n_allowed`` candidate entries and final ``k``."""
        return annealed_edge_count(
            t, n_allowed=n_allowed, k=k, start=self.start, end=self.end, frequency=self.frequency
        )


# ------------------------------------------------------------------ selector


class AnnealedTopK(TopKSelector):
    """The top-k_t of |w| among the edges still present, held between updates (L1 + Anneal, DNW Section 3.3).

    ``k`` is the final edge count; the budget k_t (buffer ``budget``) starts at every allowed entry
    and only decreases (:meth:`set_budget`). Each :meth:`select` (called by
    ``SparseWeight.update_mask`` or :func:`rewire.sparse.masks.update_masks`) keeps the k_t largest
    |w| among the entries of the previous mask (buffer ``kept``), so an edge once removed never
    returns. Ties as :func:`rewire.sparse.masks.topk_mask` (the lower flat index first). ``budget``
    and ``kept`` are in the ``state_dict``: a resumed run continues from the same graph.
    """

    recompute_every_forward = False

    def __init__(self, k: int, allowed: torch.Tensor | None = None) -> None:
        super().__init__(k, allowed)
        self.n_allowed: int | None = None
        self.register_buffer("budget", torch.tensor(0, dtype=torch.int64))
        self.register_buffer("kept", None)

    def bind(self, weight: torch.Tensor) -> None:
        super().bind(weight)
        self.n_allowed = weight.numel() if self.allowed is None else int(self.allowed.sum())
        self.budget = torch.tensor(self.n_allowed, dtype=torch.int64, device=weight.device)
        self.kept = (
            torch.ones(weight.shape, dtype=torch.bool, device=weight.device)
            if self.allowed is None
            else self.allowed.clone()
        )

    def set_budget(self, edges: int) -> None:
        """Set k_t for the next :meth:`select`: an int from ``k`` up to the edges still present (it cannot grow)."""
        present = int(self.kept.sum())
        if isinstance(edges, bool) or not isinstance(edges, int) or not self.k <= edges <= present:
            raise ValueError(
                f"the edge budget must be an int in [k={self.k}, {present}] (annealing only removes edges and "
                f"{present} are present), got {edges!r}"
            )
        self.budget.fill_(edges)

    @torch.no_grad()
    def select(self, weight: torch.Tensor) -> torch.Tensor:
        self.kept = topk_mask(weight.detach().abs(), int(self.budget), self.kept)
        return self.kept

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, budget={int(self.budget)}"


# ----------------------------------------------------------------- callbacks


def _annealed_tensors(model: nn.Module) -> list[tuple[str, nn.Module, str, SparseWeight]]:
    """``(target, module, tensor name, parametrization)`` of every tensor of ``model`` under :class:`AnnealedTopK`."""
    found = []
    for target, module, p in sparse_modules(model):
        if isinstance(p.selector, AnnealedTopK):
            found.append((target, module, target.rpartition(".")[2], p))
    if not found:
        raise ValueError("the model has no tensor under AnnealedTopK; call apply_anneal(model, ...) first")
    return found


class EdgeAnnealing(Callback):
    """Remove edges by magnitude on the schedule (DNW Section 3.3, "L1 + Anneal").

    Every ``update_every`` optimizer steps (and at step 0), before that step's forward pass, each
    annealed tensor gets k_t = ``schedule.edges_at(step / batches_per_epoch, n_allowed, k)`` and
    keeps its top-k_t of |w| among the edges still present. Every epoch adds ``anneal_edges`` (real
    edges of all annealed tensors, summed) and ``anneal_budget`` (Σ k_t) to the trainer's record.
    The schedule is a pure function of the step counter and the budgets and masks are in the model's
    ``state_dict``, so a resumed run takes the same edges away.
    """

    def __init__(self, model: nn.Module, schedule: AnnealSchedule, *, update_every: int = ANNEAL_UPDATE_EVERY):
        if isinstance(update_every, bool) or not isinstance(update_every, int) or update_every < 1:
            raise ValueError(f"update_every must be a positive number of optimizer steps, got {update_every!r}")
        if not isinstance(schedule, AnnealSchedule):
            raise TypeError(f"schedule must be an AnnealSchedule, got {type(schedule).__name__}")
        self.tensors = _annealed_tensors(model)
        self.schedule = schedule
        self.update_every = update_every

    def on_fit_start(self, trainer) -> None:
        """Refuse a run whose last update comes before the ramp's end: it would never reach k."""
        total_steps = trainer.hparams.epochs * trainer.batches_per_epoch
        last_update = (total_steps - 1) // self.update_every * self.update_every / trainer.batches_per_epoch
        if any(
            self.schedule.edges_at(last_update, p.selector.n_allowed, p.selector.k) != p.selector.k
            for *_, p in self.tensors
        ):
            raise ValueError(
                f"the anneal ends at epoch {self.schedule.end:g}, after the last edge update (epoch {last_update:g} "
                f"of {trainer.hparams.epochs}); k would never be reached. End the anneal earlier or train longer."
            )

    def on_batch_start(self, trainer, inputs, targets):
        if trainer.global_step % self.update_every == 0:
            self.update(trainer.global_step / trainer.batches_per_epoch)
        return None

    @torch.no_grad()
    def update(self, epoch_time: float) -> dict[str, int]:
        """Set every annealed tensor's k_t at ``epoch_time`` (epochs) and re-choose its edges; returns ``{target: k_t}``."""
        budgets = {}
        for target, module, tensor_name, p in self.tensors:
            selector = p.selector
            edges = self.schedule.edges_at(epoch_time, selector.n_allowed, selector.k)
            selector.set_budget(edges)
            p.update_mask(module.parametrizations[tensor_name].original)
            budgets[target] = edges
        return budgets

    def on_epoch_end(self, trainer, record: dict[str, Any]) -> None:
        record["anneal_edges"] = sum(int(p.mask.sum()) for *_, p in self.tensors)
        record["anneal_budget"] = sum(int(p.selector.budget) for *_, p in self.tensors)

    def state_dict(self) -> dict[str, Any]:
        return {"schedule": asdict(self.schedule), "update_every": self.update_every}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, mine in (("schedule", asdict(self.schedule)), ("update_every", self.update_every)):
            if state[key] != mine:
                raise ValueError(
                    f"checkpoint was written with {key}={state[key]!r}, this run has {mine!r}; use a new run directory"
                )


def l1_penalty(weights: Iterable[torch.Tensor], coefficient: float) -> torch.Tensor:
    """λ Σ_i |w_i| over ``weights`` (the effective, masked tensors): the L1 term of "L1 + Anneal" as a loss value."""
    weights = list(weights)
    if not weights:
        raise ValueError("l1_penalty needs at least one tensor")
    return coefficient * sum(w.abs().sum() for w in weights)


class L1Penalty(Callback):
    """The L1 term λ Σ|w| over the real edges of the annealed tensors, applied as its gradient λ·sign(w) (DNW Section 3.3).

    After ``loss.backward()`` and before the optimizer step, the dense weight's gradient receives
    λ·sign(w) on the real edges (the current mask) and nothing on removed ones, which is exactly the
    gradient of λ Σ|w_eff| (autograd's d|x|/dx = sign(x), 0 at 0; removed edges have w_eff = 0 and,
    under the ``masked`` route, no gradient). A gradient term rather than a loss term because the
    :class:`rewire.train.trainer.Trainer` computes the loss inside its loop and offers no hook to
    add to it, while ``on_after_backward`` sees the gradients before the step; it also needs no
    extra autograd graph and is unaffected by bf16 autocast (gradients are float32). The recorded
    ``train_loss`` therefore excludes the penalty; every epoch adds ``l1_penalty`` (λ Σ|w_eff| at
    the epoch's end) to the record.

    ``targets``: qualified tensor names (``"graph.weight"``); None = every tensor under
    :class:`AnnealedTopK`. ``coefficient`` λ >= 0, default :data:`L1_COEFFICIENT` (our choice, see there).
    """

    def __init__(
        self, model: nn.Module, coefficient: float = L1_COEFFICIENT, *, targets: Sequence[str] | None = None
    ) -> None:
        if isinstance(coefficient, bool) or not isinstance(coefficient, (int, float)) or not coefficient >= 0.0:
            raise ValueError(f"the L1 coefficient must be a number >= 0, got {coefficient!r}")
        if not math.isfinite(coefficient):
            raise ValueError(f"the L1 coefficient must be finite, got {coefficient!r}")
        self.coefficient = float(coefficient)
        if targets is None:
            self.tensors = [(module, name, p) for _, module, name, p in _annealed_tensors(model)]
        else:
            sparse = {target: (module, target.rpartition(".")[2], p) for target, module, p in sparse_modules(model)}
            missing = [t for t in targets if t not in sparse]
            if missing:
                raise ValueError(f"L1 targets {missing} are not sparse tensors of the model; sparse: {sorted(sparse)}")
            self.tensors = [sparse[t] for t in targets]

    @torch.no_grad()
    def on_after_backward(self, trainer) -> None:
        for module, tensor_name, p in self.tensors:
            original = module.parametrizations[tensor_name].original
            term = torch.where(p.mask, original.sign(), original.new_zeros(())) * self.coefficient
            if original.grad is None:
                original.grad = term
            else:
                original.grad.add_(term)

    @torch.no_grad()
    def on_epoch_end(self, trainer, record: dict[str, Any]) -> None:
        effective = [
            torch.where(p.mask, module.parametrizations[name].original, 0.0) for module, name, p in self.tensors
        ]
        record["l1_penalty"] = float(l1_penalty(effective, self.coefficient))

    def state_dict(self) -> dict[str, Any]:
        return {"coefficient": self.coefficient}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["coefficient"] != self.coefficient:
            raise ValueError(
                f"checkpoint was written with L1 coefficient {state['coefficient']!r}, this run has "
                f"{self.coefficient!r}; use a new run directory"
            )


# ------------------------------------------------------------------- applying


def apply_anneal(
    model: nn.Module,
    *,
    k: int | Mapping[str, int],
    allowed: torch.Tensor | Mapping[str, torch.Tensor] | None = None,
    targets: Sequence[str] = ("weight",),
) -> dict[str, SparseWeight]:
    """Put :class:`AnnealedTopK` (final ``k`` per target, an int or target -> int) with the ``masked`` route on ``targets``.

    Every allowed entry is real until the first budget below n_allowed; returns ``{target: parametrization}``.
    """

    def make_selector(target_k: int, target_allowed: torch.Tensor | None, seed: int) -> Selector:
        return AnnealedTopK(target_k, target_allowed)

    return sparsify_targets(model, make_selector, "masked", k=k, allowed=allowed, targets=targets)


def attach_l1_anneal(
    model: nn.Module,
    *,
    k: int | Mapping[str, int],
    schedule: AnnealSchedule,
    allowed: torch.Tensor | Mapping[str, torch.Tensor] | None = None,
    targets: Sequence[str] = ("weight",),
    l1: float = L1_COEFFICIENT,
    update_every: int = ANNEAL_UPDATE_EVERY,
) -> Attached:
    """DNW Table 2's "L1 + Anneal" row: :func:`apply_anneal` plus its callbacks (:class:`EdgeAnnealing`, :class:`L1Penalty`).

    Returns an :class:`rewire.methods.registry.Attached` with ``group=None`` (the masks are per
    tensor: :func:`rewire.sparse.masks.sparse_modules` lists them) and the two callbacks; build the
    trainer (and so the optimizer) afterwards. Bad ``schedule``, ``l1`` or ``update_every`` raise
    before the model is changed.
    """
    if not isinstance(schedule, AnnealSchedule):
        raise TypeError(f"schedule must be an AnnealSchedule, got {type(schedule).__name__}")
    if isinstance(update_every, bool) or not isinstance(update_every, int) or update_every < 1:
        raise ValueError(f"update_every must be a positive number of optimizer steps, got {update_every!r}")
    if isinstance(l1, bool) or not isinstance(l1, (int, float)) or not 0.0 <= l1 < math.inf:
        raise ValueError(f"the L1 coefficient must be a finite number >= 0, got {l1!r}")
    apply_anneal(model, k=k, allowed=allowed, targets=targets)
    callbacks = [EdgeAnnealing(model, schedule, update_every=update_every), L1Penalty(model, l1)]
    return Attached(group=None, callbacks=callbacks)


register(
    Method(
        "l1_anneal",
        family="anneal",
        kind="selector",
        paper="DNW Section 3.3, Table 2 (L1 + Anneal; not in the authors' code, built from the paper's words)",
        summary="From the complete graph, edges removed by magnitude on a cubic schedule until k remain, with an L1 term.",
        attach=attach_l1_anneal,
    )
)
