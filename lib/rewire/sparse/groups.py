"""Pruning rules over a *group* of tensors: which entries survive at a given sparsity.

DPF (Lin et al. 2020, Appendix A.1) prunes "across all neural network layers (no
layer-wise pruning) using magnitude-based unstructured weight pruning", applied to
every convolutional layer while "the last fully-connected layer, biases and batch
normalization layers" stay dense. A global rule cannot be a per-tensor selector, so
the tensors of a group carry :class:`rewire.masks.AssignedMask` selectors and a
:class:`PruningRule` computes all their masks at once; :class:`MaskGroup` writes them
in. The gradient route is still the per-tensor choice of :mod:`rewire.masks`:
``straight_through`` is DPF's feedback (the gradient at the pruned model reaches every
dense weight), ``masked`` is ordinary sparse training.

Counting convention: a rule at sparsity ``s`` over ``N`` candidates prunes exactly
``round(s * N)`` of them (as ``torch.nn.utils.prune`` does for a float amount), where
candidates are weights (``granularity="weight"``) or output filters (``"filter"``).
Ties are broken by position (:func:`rewire.masks.topk_mask`), so the count is exact.

Criteria
--------
* magnitude |w| (Han et al. 2015; DPF, Incremental, One-shot P+FT, lottery ticket);
* filter L2 norm ||W_j||_2 per output channel (SFP, He et al. 2018, Section 3.2), or its
  size-normalised form ||W_j||_2 / sqrt(n_j), the root mean square of the filter's n_j weights
  (``PruningRule(filter_norm="rms")``, structured DPF, Section 5.2: see :func:`filter_norm_scores`);
* connection sensitivity |g ⊙ w| at initialisation (SNIP, Lee et al. 2019, Eq. 6: the
  normalisation by the sum does not change the ranking).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from rewire.sparse.masks import AssignedMask, SparseWeight, resolve_tensor, sparsify, topk_mask

__all__ = [
    "GRANULARITIES",
    "SCOPES",
    "FILTER_NORMS",
    "PruningRule",
    "MaskGroup",
    "conv_weight_targets",
    "pruned_count",
    "magnitude_scores",
    "filter_norm_scores",
    "snip_scores",
    "check_sparsity",
]

GRANULARITIES = ("weight", "filter")
SCOPES = ("global", "layer")
FILTER_NORMS = ("l2", "rms")


def check_sparsity(sparsity: float, *, allow_one: bool = False) -> float:
    """Validate a target sparsity (a fraction in [0, 1)); the message says what is allowed."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)):
        raise ValueError(f"sparsity must be a number in [0, 1), got {sparsity!r}")
    upper_ok = sparsity <= 1.0 if allow_one else sparsity < 1.0
    if not (0.0 <= sparsity and upper_ok):
        raise ValueError(
            f"sparsity must be a fraction in [0, 1) (0.9 = 90% of the weights pruned), got {sparsity!r}; "
            f"a sparsity of 1 would prune every weight"
        )
    return float(sparsity)


def pruned_count(total: int, sparsity: float) -> int:
    """How many of ``total`` candidates a rule at ``sparsity`` prunes: ``round(sparsity * total)``."""
    return int(round(check_sparsity(sparsity) * total))


# --------------------------------------------------------------------------- criteria


def magnitude_scores(weights: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """|w| per entry (magnitude pruning, Han et al. 2015)."""
    return [w.detach().abs() for w in weights]


def filter_norm_scores(weights: Sequence[torch.Tensor], norm: str = "l2") -> list[torch.Tensor]:
    """One score per output filter (dim 0) of each weight.

    * ``norm="l2"``: the L2 norm ||W_j||_2 (SFP, He et al. 2018, Section 3.2; DPF Section 5.2,
      "l2 norm based filter selection").
    * ``norm="rms"``: ||W_j||_2 / sqrt(n_j), n_j the number of weights of the filter (in_channels x
      kernel area): the root mean square weight. Under one global threshold the raw norm ranks filters
      by their *size* as much as by their values (a 3-channel stem filter has 27 weights, a 3x3 filter
      of a 64-channel layer 576; at a comparable per-weight scale its norm is sqrt(576/27) ~ 4.6x
      larger), so the stem and the 1x1 shortcuts are pruned first by shape alone. The unofficial DPF
      code divides the importance ||W_j||_2^2 (or ||W_j||_1) by the filter's length
      (spec/reference-robust-binary-and-dpf.md, B4); ||W_j||_2^2 / n_j is the square of the RMS, so
      ``"rms"`` ranks the filters exactly as its L2 importance does, while staying an L2 criterion
      as the paper states (not the L1 alternative). Within one layer every n_j is equal, so a
      per-layer rule ranks the same under both.
    """
    if norm not in FILTER_NORMS:
        raise ValueError(f"filter norm must be one of {FILTER_NORMS}, got {norm!r}")
    scores = []
    for w in weights:
        flat = w.detach().reshape(w.shape[0], -1)
        score = flat.norm(dim=1)
        scores.append(score / flat.shape[1] ** 0.5 if norm == "rms" else score)
    return scores


def snip_scores(
    model: nn.Module,
    group: MaskGroup,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    loss_fn: Callable = nn.functional.cross_entropy,
) -> list[torch.Tensor]:
    """SNIP connection sensitivity (Lee et al. 2019, Eq. 6): |dL/dc ⊙ w| at c = 1, for one minibatch.

    dL/dc_j for a multiplicative mask c equals (dL/dW_eff)_j · w_j, which is what the gradient
    of the effective weight gives with every mask entry at 1. The model's gradients and training
    mode are left as they were.
    """
    if any(not bool(m.all()) for m in group.masks()):
        raise ValueError("SNIP scores are defined at initialisation, with every connection present (dense masks)")
    was_training = model.training
    model.train()
    loss = loss_fn(model(inputs), targets)
    grads = torch.autograd.grad(loss, [w for w in group.dense_weights()])
    model.train(was_training)
    return [(g * w.detach()).abs() for g, w in zip(grads, group.dense_weights())]


# --------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class PruningRule:
    """Which entries of a group of tensors survive: ``granularity`` x ``scope``.

    * ``granularity="weight"``: unstructured, every weight is a candidate;
      ``"filter"``: structured, whole output filters (dim 0) are kept or pruned.
    * ``scope="global"``: one ranking over the candidates of every tensor (DPF, Appendix A.1;
      structured DPF "prunes filters across layers", Table 5); ``"layer"``: every tensor
      pruned to the same sparsity (``torch.nn.utils.prune.l1_unstructured``; SFP "prunes filters
      within the layer by a given ratio", Table 5).
    * ``filter_norm`` (filters only): ``"l2"`` ranks filters by ||W_j||_2, ``"rms"`` by
      ||W_j||_2 / sqrt(n_j), so that one global threshold does not prune the filters with few
      weights first (:func:`filter_norm_scores`). The default stays ``"l2"``; structured DPF
      uses ``"rms"`` (``rewire.methods.dpf.GRADUAL_METHODS``).
    """

    granularity: str = "weight"
    scope: str = "global"
    filter_norm: str = "l2"

    def __post_init__(self) -> None:
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {GRANULARITIES}, got {self.granularity!r}")
        if self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {self.scope!r}")
        if self.filter_norm not in FILTER_NORMS:
            raise ValueError(f"filter_norm must be one of {FILTER_NORMS}, got {self.filter_norm!r}")
        if self.granularity == "weight" and self.filter_norm != "l2":
            raise ValueError(f"filter_norm={self.filter_norm!r} applies to granularity='filter' only")

    def scores(self, weights: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The default criterion of this granularity: |w| per weight, or the ``filter_norm`` of each filter."""
        if self.granularity == "weight":
            return magnitude_scores(weights)
        return filter_norm_scores(weights, self.filter_norm)

    def masks(
        self, weights: Sequence[torch.Tensor], sparsity: float, scores: Sequence[torch.Tensor] | None = None
    ) -> list[torch.Tensor]:
        """Bool masks (the weights' shapes) at ``sparsity``; ``scores`` replace the default criterion
        (one per weight entry, or one per filter for ``granularity="filter"``)."""
        check_sparsity(sparsity)
        weights = list(weights)
        if not weights:
            raise ValueError("a pruning rule needs at least one tensor")
        scores = self.scores(weights) if scores is None else [s.detach() for s in scores]
        if self.scope == "global":
            kept = _keep_top(scores, sparsity)
        else:
            kept = [_keep_top([s], sparsity)[0] for s in scores]
        if self.granularity == "weight":
            return kept
        return [k.reshape(-1, *([1] * (w.dim() - 1))).expand_as(w).clone() for k, w in zip(kept, weights)]


def _keep_top(scores: Sequence[torch.Tensor], sparsity: float) -> list[torch.Tensor]:
    """Keep the ``N - round(sparsity N)`` largest of all ``scores`` together; one bool mask per tensor."""
    flat = torch.cat([s.reshape(-1).float() for s in scores])
    keep = flat.numel() - pruned_count(flat.numel(), sparsity)
    if keep == 0:
        raise ValueError(f"sparsity {sparsity} prunes all {flat.numel()} candidates; lower it")
    chosen = topk_mask(flat, keep)
    return [part.reshape(s.shape) for part, s in zip(chosen.split([s.numel() for s in scores]), scores)]


# --------------------------------------------------------------------------- groups


def conv_weight_targets(model: nn.Module, *, dense_first: bool = False) -> list[str]:
    """The weights DPF prunes (Appendix A.1): every ``nn.Conv2d`` weight; linear layers, biases
    and normalisation layers stay dense.

    ``dense_first=True`` leaves out the first convolution (the first ``nn.Conv2d`` in module
    registration order, the stem of every model here), which Sparse Momentum and DSR keep dense
    (:mod:`rewire.methods.dynamic_sparse`)."""
    targets = [f"{name}.weight" for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]
    if dense_first:
        targets = targets[1:]
    if not targets:
        raise ValueError(
            f"{type(model).__name__} has no nn.Conv2d layer to prune" + (" besides the first" if dense_first else "")
        )
    return targets


class MaskGroup:
    """Tensors of a model pruned together, each behind an :class:`~rewire.masks.AssignedMask`.

    ``MaskGroup(model, targets, route)`` sparsifies every target (dense to begin with) with the
    given gradient route; build the optimizer afterwards. :meth:`apply` computes the masks of a
    :class:`PruningRule` from the current dense weights and writes them in.
    """

    def __init__(
        self, model: nn.Module, targets: Sequence[str] | None = None, *, route: str = "straight_through"
    ) -> None:
        targets = list(conv_weight_targets(model) if targets is None else targets)
        if not targets:
            raise ValueError("a mask group needs at least one target tensor")
        resolved = [(target, *resolve_tensor(model, target)) for target in targets]
        self.names = [t for t, _, _ in resolved]
        self.targets = [(m, n) for _, m, n in resolved]
        self.route = route
        self.parametrizations: list[SparseWeight] = [
            sparsify(module, name, selector=AssignedMask(), route=route) for _, module, name in resolved
        ]

    def __len__(self) -> int:
        return len(self.names)

    def dense_weights(self) -> list[torch.Tensor]:
        """The dense tensors the optimizer updates (``parametrizations.<name>.original``)."""
        return [module.parametrizations[name].original for module, name in self.targets]

    def masks(self) -> list[torch.Tensor]:
        return [p.mask for p in self.parametrizations]

    def numel(self) -> int:
        return sum(m.numel() for m in self.masks())

    @torch.no_grad()
    def assign(self, masks: Sequence[torch.Tensor]) -> None:
        masks = list(masks)
        if len(masks) != len(self):
            raise ValueError(f"expected {len(self)} masks, got {len(masks)}")
        for p, mask in zip(self.parametrizations, masks):
            p.assign_mask(mask)

    def apply(
        self, rule: PruningRule, sparsity: float, scores: Sequence[torch.Tensor] | None = None
    ) -> list[torch.Tensor]:
        """Compute ``rule``'s masks at ``sparsity`` from the dense weights (or ``scores``), assign them, return them."""
        masks = rule.masks(self.dense_weights(), sparsity, scores)
        self.assign(masks)
        return masks

    @torch.no_grad()
    def zero_pruned(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Set pruned dense weights (and their optimizer state, e.g. momentum) to zero: pruning
        *without* feedback (Zhu & Gupta 2017; One-shot P+FT; SNIP), where a pruned weight stays pruned."""
        for weight, mask in zip(self.dense_weights(), self.masks()):
            weight.masked_fill_(~mask, 0.0)
            if optimizer is not None:
                for value in optimizer.state.get(weight, {}).values():
                    if isinstance(value, torch.Tensor) and value.shape == weight.shape:
                        value.masked_fill_(~mask, 0.0)
