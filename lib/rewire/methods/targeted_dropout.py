"""Targeted dropout (Gomez et al. 2019) as the DNW paper runs it: one selector of the one mask mechanism.

DNW Section 3.3 ("Targeted Dropout", Table 2) and Appendix B (Table 5): "choose the bottom γ
fraction of weights by magnitude and apply dropout with probability ρ", with γ fixed per graph
stage "so that the network *post pruning* has the same number of edges per stage as
MobileNetV1-DNW (x0.225)". Two variants:

* **unconstrained** (Table 2's rows; footnote 5): the candidates are the bottom γ of all the
  stage's edges, so nodes may lose every incoming edge;
* **regular** (Gomez et al.'s original, Appendix B): the candidates are the bottom γ of the
  incoming weights *of each node* (each row of the adjacency ``weight[v, u]``).

Here a stage is one sparsified weight tensor with ``k`` real edges after pruning, and only the
``allowed`` entries (e.g. the feed-forward ones of a static neural graph) are candidates or kept:

* unconstrained: the kept set is the top-k of |w| among the allowed entries, so
  γ = 1 - k / n_allowed and the stage keeps exactly k edges;
* regular: row r keeps its own top-k_r of |w|, where the k_r split k over the rows in
  proportion to their allowed entries (:func:`row_budgets`: floors plus the largest
  remainders, our choice: every row gets the stage's γ as closely as integers allow and the
  stage keeps exactly k; the authors' code instead drops ``floor(γ · columns)`` of every row
  of the whole matrix, which keeps k only approximately and ignores the allowed entries).

Training (``module.train()``): each candidate is dropped independently with probability ρ at
every forward pass; the other entries are always kept. Evaluation (``module.eval()``): every
candidate is dropped, i.e. the pruned network, exactly k edges per stage. The survivors are not
rescaled by 1/(1-ρ) (neither are they in the authors' public code, allenai/dnw): at test time the
candidates are removed, not averaged. ``rho="gamma"`` sets ρ = γ (Table 2's "TD ρ = γ" row).

The selector's :meth:`~TargetedDropout.select` returns the deterministic kept set (the pruned
network: what ``SparseWeight.mask`` holds and what diagnostics read); the random dropout of the
candidates happens in :meth:`~TargetedDropout.effective`, in training mode only, so building the
parametrization, :func:`rewire.sparse.masks.current_mask` and evaluation never draw random numbers.
The draws come from a ``torch.Generator`` owned by the selector, seeded with ``seed`` and created
on the weight's device at the first training forward pass; its state is saved in the model's
``state_dict`` (the module's extra state), so a resumed run drops the same entries as an
uninterrupted one. Every read of ``module.weight`` in training mode draws a new dropout mask:
read it once per forward pass.

**Signs are kept** (``graph_variant="paper"``, the default). The authors' code (allenai/dnw,
``TargetedDropout`` and ``RegularTargetedDropout``) returns the masked *absolute* weights, so every
negative edge acts as a positive one (and its gradient changes sign); this is a bug. Here the
effective weight is ``w`` on the kept entries and 0 elsewhere.

**``graph_variant="authors_code"``**: what the authors' code computes, the numbers of Table 2 and
Table 5: the effective weight is the masked ``|w|`` (its gradient is sign(w) times the masked
one), and the candidates are ranked over the whole matrix given (the experiment passes no
``allowed``, :func:`rewire.models.mobilenet_dnw.topk_candidates`): γ = 1 - k/n over all n
entries; the regular variant drops floor(γ · a_r) of every row r of a_r entries (computed in
integers, (n - k) · a_r // n), keeping only approximately k in total.

**Gradient route: ``masked``** (:func:`apply_targeted_dropout`). A dropped weight does not take
part in this forward pass, so its true gradient is zero, and ordinary dropout (Gomez et al.;
the authors' code differentiates through the masked product) gives it none; a candidate that
survives the draw receives its gradient as usual. A straight-through route would instead update
dropped weights with a gradient they did not cause (DNW's rule, which is what TD is compared with).

Use::

    from rewire.methods.targeted_dropout import apply_targeted_dropout
    apply_targeted_dropout(model, k={"graph.weight": 32_000}, rho=0.95, allowed=model.allowed_edges(),
                           targets=("graph.weight",))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from rewire.methods.registry import Method, register
from rewire.models.mobilenet_dnw import GRAPH_VARIANTS, check_graph_variant
from rewire.sparse.masks import Selector, SparseWeight, TopKSelector, is_sparse, resolve_tensor, sparsify

__all__ = [
    "TD_VARIANTS",
    "GRAPH_VARIANTS",
    "TargetedDropout",
    "check_rho",
    "row_budgets",
    "authors_row_budgets",
    "apply_targeted_dropout",
    "sparsify_targets",
]

TD_VARIANTS = ("unconstrained", "regular")  # DNW Appendix B: footnote 5's variant and Gomez et al.'s per-node one


def check_rho(rho: float | str) -> float | str:
    """``rho`` as stored: a float in [0, 1], or ``"gamma"`` (ρ = γ, DNW Table 2); anything else raises ``ValueError``."""
    if rho == "gamma":
        return rho
    if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not 0.0 <= float(rho) <= 1.0:
        raise ValueError(f"rho must be a probability in [0, 1] or 'gamma' (rho = gamma), got {rho!r}")
    return float(rho)


def row_budgets(allowed_per_row: torch.Tensor, k: int) -> torch.Tensor:
    """How many of its top-|w| entries each row keeps under regular targeted dropout: exactly ``k`` in total.

    Row r has a_r allowed entries out of n = Σ a_r; its quota is k·a_r/n (the stage's keep share
    1 - γ = k/n in every row). Each row gets the floor of its quota, and the k - Σ floors places
    left go one each to the rows with the largest remainders (Hamilton's largest-remainder method;
    equal remainders: the lower row index first). Our choice: deterministic, never more than a
    row's allowed entries, and within one edge of γ in every row. Computed in integers
    (remainders k·a_r mod n), so no rounding error can move an edge.
    """
    counts = torch.as_tensor(allowed_per_row)
    if counts.dim() != 1 or counts.dtype == torch.bool or counts.is_floating_point() or counts.is_complex():
        raise ValueError(f"allowed_per_row must be a 1-D integer tensor, got {counts.dtype} {tuple(counts.shape)}")
    counts = counts.to(torch.int64)
    if bool((counts < 0).any()):
        raise ValueError("allowed_per_row must be non-negative counts")
    total = int(counts.sum())
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= total:
        raise ValueError(f"k must be an int in [0, {total}] (the allowed entries of all rows), got {k!r}")
    if total == 0:
        return torch.zeros_like(counts)
    budget = counts * k // total
    remainder = counts * k % total
    left = k - int(budget.sum())  # = Σ remainder / total < number of rows with a positive remainder
    order = torch.sort(remainder, descending=True, stable=True).indices
    budget[order[:left]] += 1
    return budget


def authors_row_budgets(allowed_per_row: torch.Tensor, k: int) -> torch.Tensor:
    """Regular targeted dropout as the authors' code counts it: row r keeps a_r - floor(γ · a_r), γ = 1 - k/n.

    n = Σ a_r. The floor is taken in integers, floor((n - k) · a_r / n), so no float rounding moves an
    edge. The total is at least k and exceeds it by less than the number of rows (the authors' code keeps k
    only approximately; :func:`row_budgets` is the exact split the ``paper`` variant uses).
    """
    counts = torch.as_tensor(allowed_per_row).to(torch.int64)
    total = int(counts.sum())
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= total:
        raise ValueError(f"k must be an int in [0, {total}] (the entries of all rows), got {k!r}")
    if total == 0:
        return torch.zeros_like(counts)
    return counts - (total - k) * counts // total


def _row_topk_mask(scores: torch.Tensor, row_keep: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
    """Bool mask keeping, in every row r (first dimension) of ``scores``, the ``row_keep[r]`` largest allowed scores.

    Ties: the lower column index first (stable sort). NaN scores rank below every number; entries
    outside ``allowed`` are never chosen. ``row_keep`` is assumed valid (checked once when binding).
    """
    rows = scores.shape[0]
    flat = torch.nan_to_num(scores.detach().reshape(rows, -1), nan=float("-inf"))
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    if allowed is not None:  # move the entries outside ``allowed`` behind every allowed one, keeping the order
        outside = (~allowed.reshape(rows, -1)).gather(1, order).to(torch.uint8)
        order = order.gather(1, torch.sort(outside, dim=1, stable=True).indices)
    position = torch.arange(flat.shape[1], device=flat.device).expand(rows, -1)
    chosen = position < row_keep.to(flat.device)[:, None]
    return torch.zeros_like(chosen).scatter_(1, order, chosen).reshape(scores.shape)


class TargetedDropout(TopKSelector):
    """Targeted weight dropout (DNW Section 3.3 and Appendix B; Gomez et al. 2019): see the module docstring.

    ``k``: the edges the stage keeps after pruning; ``rho``: the drop probability of a candidate in
    training, a number in [0, 1] or ``"gamma"`` (ρ = γ = 1 - k/n_allowed); ``variant``:
    ``"unconstrained"`` (candidates per stage) or ``"regular"`` (per row, i.e. per receiving node);
    ``seed``: of the selector's own generator. :meth:`select` gives the kept set (exactly ``k``
    entries); :meth:`candidates` the entries that are dropped at evaluation and with probability ρ in
    training. ``gamma`` and ``rho`` are known once the selector is bound to its weight.
    """

    recompute_every_forward = True  # the candidates follow the weights' magnitudes at every step

    def __init__(
        self,
        k: int,
        allowed: torch.Tensor | None = None,
        *,
        rho: float | str,
        variant: str = "unconstrained",
        seed: int = 0,
        graph_variant: str = "paper",
    ) -> None:
        super().__init__(k, allowed)
        if variant not in TD_VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(TD_VARIANTS)}, got {variant!r}")
        self.graph_variant = check_graph_variant(graph_variant)
        rho = check_rho(rho)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.variant = variant
        self.rho_setting = rho
        self.rho: float | None = None if rho == "gamma" else rho
        self.gamma: float | None = None
        self.seed = seed
        self._shape: tuple[int, ...] | None = None
        self.register_buffer("_row_keep", None, persistent=False)
        self._generator: torch.Generator | None = None
        self._pending_state: tuple[str, torch.Tensor] | None = None  # (device type, state) loaded, not yet used

    # -------------------------------------------------------------- binding
    def bind(self, weight: torch.Tensor) -> None:
        if self.variant == "regular" and weight.dim() < 2:
            raise ValueError(
                f"regular targeted dropout chooses per receiving node (per row); the weight has shape "
                f"{tuple(weight.shape)}: use variant='unconstrained' for a 1-D tensor"
            )
        self._shape = tuple(weight.shape)
        super().bind(weight)  # checks k and ``allowed``, then calls _index_allowed
        available = weight.numel() if self.allowed is None else int(self.allowed.sum())
        self.gamma = 1.0 - self.k / available
        if self.rho_setting == "gamma":
            self.rho = self.gamma

    def _index_allowed(self) -> None:
        super()._index_allowed()
        if self.variant != "regular" or self._shape is None:
            return
        rows = self._shape[0]
        if self.allowed is None:
            per_row = torch.full((rows,), math.prod(self._shape[1:]), dtype=torch.int64)
        else:
            per_row = self.allowed.reshape(rows, -1).sum(1)
        budgets = authors_row_budgets if self.graph_variant == "authors_code" else row_budgets
        self._row_keep = budgets(per_row, self.k).to(per_row.device)

    # ------------------------------------------------------------ the masks
    def scores(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.detach().abs()

    @torch.no_grad()
    def select(self, weight: torch.Tensor) -> torch.Tensor:
        """The kept set: the top-k of |w| per stage (unconstrained) or the top-k_r of every row (regular)."""
        if self.variant == "unconstrained":
            return super().select(weight)
        return _row_topk_mask(self.scores(weight), self._row_keep, self.allowed)

    @torch.no_grad()
    def candidates(self, weight: torch.Tensor) -> torch.Tensor:
        """The bottom-γ entries (allowed, not kept): dropped at evaluation, each with probability ρ in training."""
        kept = self.select(weight)
        return ~kept if self.allowed is None else self.allowed & ~kept

    def effective(self, weight: torch.Tensor, mask: torch.Tensor, route: Callable) -> torch.Tensor:
        """Training: the kept set plus every candidate that survives a Bernoulli(1 - ρ) draw; evaluation: the kept set.

        ``graph_variant="authors_code"`` routes |w| instead of w (the authors' code: signs dropped)."""
        if self.training and self.rho < 1.0:
            mask = mask | self._surviving_candidates(weight, mask)
        return route(weight.abs() if self.graph_variant == "authors_code" else weight, mask, self.allowed)

    @torch.no_grad()
    def _surviving_candidates(self, weight: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
        candidates = ~kept if self.allowed is None else self.allowed & ~kept
        if self.rho == 0.0:
            return candidates
        uniform = torch.rand(weight.shape, generator=self._generator_on(weight.device), device=weight.device)
        return candidates & (uniform >= self.rho)  # P(drop) = P(u < rho) = rho

    # ------------------------------------------------- the random generator
    def _generator_on(self, device: torch.device) -> torch.Generator:
        if self._generator is None:
            generator = torch.Generator(device=device)
            generator.manual_seed(self.seed)
            if self._pending_state is not None:
                device_type, state = self._pending_state
                if device_type != device.type:
                    raise RuntimeError(
                        f"the targeted-dropout state was saved while training on {device_type} and the weight is now "
                        f"on {device.type}; move the model to {device_type} before training on (a {device_type} "
                        f"generator's state cannot continue on {device.type})"
                    )
                generator.set_state(state)
                self._pending_state = None
            self._generator = generator
        elif self._generator.device != device:
            raise RuntimeError(
                f"the targeted-dropout generator draws on {self._generator.device} and the weight moved to {device}; "
                f"move the model before the first training forward pass, or save its state_dict and load it into "
                f"a model on {device}"
            )
        return self._generator

    def get_extra_state(self) -> dict[str, Any]:
        """The generator's state (saved in ``state_dict``): an empty state means "not drawn yet, fresh from ``seed``"."""
        if self._generator is not None:
            device_type, state = self._generator.device.type, self._generator.get_state()
        elif self._pending_state is not None:
            device_type, state = self._pending_state
        else:
            device_type, state = "", torch.empty(0, dtype=torch.uint8)
        return {"seed": self.seed, "device_type": device_type, "generator_state": state.clone()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if state["seed"] != self.seed:
            raise ValueError(
                f"the state was saved by a targeted-dropout selector with seed {state['seed']}, this one has seed "
                f"{self.seed}; build the model with the same seed before loading"
            )
        self._generator = None
        saved = state["generator_state"]
        self._pending_state = None if saved.numel() == 0 else (state["device_type"], saved.detach().cpu().clone())

    def extra_repr(self) -> str:
        rho = "gamma" if self.rho_setting == "gamma" else f"{self.rho_setting:g}"
        if self.rho_setting == "gamma" and self.rho is not None:
            rho += f"={self.rho:.4g}"
        return f"{super().extra_repr()}, variant={self.variant}, rho={rho}, seed={self.seed}, {self.graph_variant}"


# ------------------------------------------------------------------- applying


def _target_seed(seed: int, index: int) -> int:
    """An independent seed for the ``index``-th target, derived from the run's ``seed`` (as ``rewire.methods.dnw``)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def sparsify_targets(
    model: nn.Module,
    make_selector: Callable[[int, torch.Tensor | None, int], Selector],
    route: str,
    *,
    k: int | Mapping[str, int],
    allowed: torch.Tensor | Mapping[str, torch.Tensor] | None = None,
    seed: int = 0,
    targets: Sequence[str] = ("weight",),
) -> dict[str, SparseWeight]:
    """Sparsify each tensor of ``targets`` with its own selector ``make_selector(k, allowed, seed)``; return ``{target: parametrization}``.

    ``k`` is one int for every target or a mapping target -> int (the per-stage budgets of
    MobileNetV1-DNW); ``allowed`` one bool tensor, a mapping target -> tensor, or None. Each target
    gets its own seed derived from ``seed``. Every target is checked (name, shape, k, not already
    sparse) and every selector bound before the first one is registered, so bad input leaves the
    model unchanged.
    """
    if isinstance(targets, str):
        targets = (targets,)
    targets = tuple(targets)
    if not targets or len(set(targets)) != len(targets):
        raise ValueError(f"targets must name distinct tensors, got {targets!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    for name, mapping in (("k", k), ("allowed", allowed)):
        if isinstance(mapping, Mapping) and set(mapping) != set(targets):
            raise ValueError(
                f"{name} is a mapping with keys {sorted(mapping)}; it needs exactly the targets {sorted(targets)}"
            )
    plans = []
    for index, target in enumerate(targets):
        module, tensor_name = resolve_tensor(model, target)
        if is_sparse(module, tensor_name):
            raise ValueError(f"{target!r} is already sparse; call rewire.sparse.masks.remove on it first")
        target_k = k[target] if isinstance(k, Mapping) else k
        if isinstance(target_k, bool) or not isinstance(target_k, int):
            raise ValueError(f"k for {target!r} must be an int (the real edges after pruning), got {target_k!r}")
        target_allowed = allowed[target] if isinstance(allowed, Mapping) else allowed
        weight = getattr(module, tensor_name)
        if target_allowed is not None:
            target_allowed = torch.as_tensor(target_allowed)
            if tuple(target_allowed.shape) != tuple(weight.shape):
                raise ValueError(
                    f"allowed for {target!r} has shape {tuple(target_allowed.shape)}, the tensor has {tuple(weight.shape)}"
                )
        selector = make_selector(target_k, target_allowed, _target_seed(seed, index))
        try:
            selector.bind(weight.detach())  # checks k against the allowed entries before anything changes
        except ValueError as error:
            raise ValueError(f"{target!r}: {error}") from error
        plans.append((target, module, tensor_name, selector))
    return {
        target: sparsify(module, tensor_name, selector=selector, route=route)
        for target, module, tensor_name, selector in plans
    }


def apply_targeted_dropout(
    model: nn.Module,
    *,
    k: int | Mapping[str, int],
    rho: float | str,
    variant: str = "unconstrained",
    allowed: torch.Tensor | Mapping[str, torch.Tensor] | None = None,
    seed: int = 0,
    targets: Sequence[str] = ("weight",),
    graph_variant: str = "paper",
) -> dict[str, SparseWeight]:
    """DNW Table 2's "TD ρ" rows: targeted dropout on each tensor of ``targets`` with the ``masked`` route.

    ``k`` (an int or target -> int) is each stage's edge count after pruning, which fixes its γ;
    ``rho`` in [0, 1] or ``"gamma"``; ``variant`` ``"unconstrained"`` (Table 2) or ``"regular"``
    (Appendix B, Table 5); ``graph_variant`` ``"paper"`` (signs kept) or ``"authors_code"`` (masked |w|, the
    authors' row counts; see the module docstring). Returns ``{target: parametrization}``; build the optimizer
    afterwards.
    """
    if variant not in TD_VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(TD_VARIANTS)}, got {variant!r}")
    check_graph_variant(graph_variant)
    check_rho(rho)

    def make_selector(target_k: int, target_allowed: torch.Tensor | None, target_seed: int) -> Selector:
        return TargetedDropout(
            target_k, target_allowed, rho=rho, variant=variant, seed=target_seed, graph_variant=graph_variant
        )

    return sparsify_targets(model, make_selector, "masked", k=k, allowed=allowed, seed=seed, targets=targets)


def _attach_variant(variant: str) -> Callable[..., dict[str, SparseWeight]]:
    def attach(model: nn.Module, **kwargs) -> dict[str, SparseWeight]:
        return apply_targeted_dropout(model, variant=variant, **kwargs)

    attach.__doc__ = f"``apply_targeted_dropout(model, variant={variant!r}, k=..., rho=..., allowed=..., targets=...)``"
    return attach


register(
    Method(
        "td",
        family="targeted_dropout",
        kind="selector",
        paper="DNW Section 3.3, Table 2 (unconstrained targeted weight dropout)",
        summary="Bottom-gamma |w| of each stage dropped with probability rho in training, all pruned at evaluation.",
        attach=_attach_variant("unconstrained"),
    )
)
register(
    Method(
        "td_regular",
        family="targeted_dropout",
        kind="selector",
        paper="DNW Appendix B, Table 5 (Gomez et al. 2019's per-node targeted weight dropout)",
        summary="Bottom-gamma |w| of each node's incoming edges dropped with probability rho, pruned at evaluation.",
        attach=_attach_variant("regular"),
    )
)
