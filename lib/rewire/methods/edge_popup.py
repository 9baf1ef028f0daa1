"""Edge-popup (Ramanujan et al. 2020) as Liu et al. run it to find robust binary subnetworks.

Liu et al., *Robust Binary Models by Pruning Randomly-initialized Networks* (NeurIPS 2022),
Appendix C, Algorithms 1-2: the weights ``w`` are drawn once and never trained; every weight entry
has a learned score ``s``, the network uses ``w ⊙ M(s, r)`` and only ``s`` is updated
("Calculate the gradient g = ∇_s L(f(w ⊙ M(s, r), x), y); update the score s"). Here that is one
selector of the one mask mechanism (:mod:`rewire.sparse.masks`), :class:`TopKScores`:

**Mask.** ``M(s, r)`` keeps, in each layer, the ``k`` entries of largest ``|s|`` (exactly ``k``:
:func:`rewire.sparse.masks.topk_mask`, ties by position) and is chosen again at every forward pass.
The authors' code (IVRL/RobustBinarySubNet, ``code/arch/conv_type.py``, ``GetSubnet`` applied to
``SubnetConv.clamped_scores = scores.abs()``) sorts ``|s|`` and zeroes the ``int((1 - r) · n)``
smallest; here the layer's ``k`` is an integer decided once by the allocation
(:mod:`rewire.sparse.allocation`, which also gives the authors' rounding if wanted).

**Gradient (the authors' code, reproduced).** ``GetSubnet.backward`` passes the gradient of the
mask output straight through to its input, which is ``|s|``, and autograd then differentiates the
``abs``. The mask's gradient is that of ``w ⊙ m`` with respect to ``m``, i.e. ``g ⊙ w`` with
``g = ∂L/∂(w ⊙ m)``, for *every* entry, kept or not. So

    ∂L/∂s = g ⊙ w ⊙ sign(s)

The ``sign(s)`` factor is kept on purpose: since the mask depends on ``|s|``, a negative score
moves the opposite way to a positive one (growing ``|s|`` when ``g ⊙ w < 0`` either way); at
``s = 0`` the gradient is 0 (``torch.abs``'s subgradient, as in the authors' code). Scores outside
``allowed`` (never candidates) get no gradient.

**Weights get no gradient.** Two safeguards: :func:`apply_edge_popup` freezes them
(``requires_grad = False`` on the dense original, as the authors' ``freeze_model_weights`` does,
so the optimizer sees only scores), and the score path reads ``w`` detached. The weight side of
the parametrization follows its gradient route, ``"masked"`` (the exact gradient of ``w ⊙ m``
with respect to ``w``, what autograd gives the authors' ``SubnetConv`` if its weights were
unfrozen); with frozen weights it is never computed.

**Initialisations** (the authors' ``code/arch/builder.py::_init_conv`` and ``SubnetConv.init_scores``):

* weights ``"binary"`` (the paper's method): i.i.d. ±1, unscaled (every convolution is followed by
  BatchNorm, and the classifier by the last BN). The authors take ``sign()`` of PyTorch's default
  (symmetric, continuous) initialisation, which is a fair coin per entry; here the coin is drawn
  directly, so no entry can be 0 (``sign(0) = 0`` there, about once per 2^24 entries).
* weights ``"signed_kaiming_constant"`` (``init: signed_constant_correct, scale_fan: True``):
  ±gain/√(fan_in · keep) with gain = √2 (ReLU) and ``keep`` the *global* keep rate (the authors use
  ``--prune-rate`` here even under adaptive per-layer rates; ``skc_keep`` overrides it). Their
  other variant, ``signed_constant``, scales by fan_in · (1 - keep), which under their naming
  (``prune_rate`` = fraction kept) is a mistake; it is not offered.
* weights ``"keep"``: leave the model's weights as they are.
* scores ``"uniform"``: U(-a, a), a = ``score_scale`` (default 0.01, the paper's best setting
  ``--score-init-scale 0.01 --fan-scaled-score-mode none``);
  ``"fan_scaled_uniform"``: U(-a/√fan_in, a/√fan_in) (default a = 1, the argparse default with
  ``--fan-scaled-score-mode all``, used by the signed-Kaiming-constant configuration).

Use::

    from rewire.methods.edge_popup import apply_edge_popup, kept_counts
    apply_edge_popup(model, keep=0.01, p=0.1, weight_init="binary", score_init="uniform", seed=1234)
    optimizer = torch.optim.SGD([q for q in model.parameters() if q.requires_grad], lr=0.1, momentum=0.9,
                                weight_decay=5e-4)  # the scores (and nothing else of the pruned layers)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn

from rewire.methods.registry import Method, register
from rewire.methods.targeted_dropout import sparsify_targets
from rewire.sparse.allocation import Allocation, adaptive_allocation, kept_count
from rewire.sparse.masks import (
    AssignedMask,
    Selector,
    SparseWeight,
    TopKSelector,
    current_mask,
    is_sparse,
    resolve_tensor,
    sparse_modules,
    sparsify,
)

__all__ = [
    "WEIGHT_INITS",
    "SCORE_INITS",
    "TopKScores",
    "fan_in",
    "binary_weights",
    "signed_kaiming_constant",
    "default_targets",
    "apply_edge_popup",
    "kept_counts",
    "FOUND_WEIGHTS",
    "hold_found_mask",
    "score_parameters",
]

WEIGHT_INITS = ("binary", "signed_kaiming_constant", "keep")
SCORE_INITS = ("uniform", "fan_scaled_uniform")
_DEFAULT_SCORE_SCALE = {"uniform": 0.01, "fan_scaled_uniform": 1.0}
_PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def fan_in(weight: torch.Tensor) -> int:
    """Inputs per output unit: ``in_channels/groups · kernel`` of a convolution, ``in_features`` of a linear layer."""
    if weight.dim() < 2:
        raise ValueError(f"fan_in needs a weight with at least 2 dimensions, got shape {tuple(weight.shape)}")
    return int(weight[0].numel())


def _generator(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(seed)


def _random_signs(shape: torch.Size, seed: int) -> torch.Tensor:
    """I.i.d. fair ±1 (float32, CPU), from a CPU generator seeded with ``seed``."""
    return torch.randint(0, 2, tuple(shape), generator=_generator(seed)).to(torch.float32).mul_(2).sub_(1)


def binary_weights(shape: torch.Size, seed: int) -> torch.Tensor:
    """The paper's binary initialisation: i.i.d. ±1, unscaled."""
    return _random_signs(shape, seed)


def signed_kaiming_constant(shape: torch.Size, keep: float, seed: int) -> torch.Tensor:
    """Ramanujan et al.'s scaled signed Kaiming constant: i.i.d. ±√2/√(fan_in · keep)."""
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be in (0, 1], got {keep!r}")
    if len(shape) < 2:
        raise ValueError(f"the signed Kaiming constant needs a conv/linear weight shape, got {tuple(shape)}")
    std = math.sqrt(2.0) / math.sqrt(math.prod(shape[1:]) * keep)
    return _random_signs(shape, seed).mul_(std)


def _check_score_init(scores_init: str | torch.Tensor, score_scale: float | None) -> float | None:
    if isinstance(scores_init, torch.Tensor):
        if not scores_init.is_floating_point():
            raise ValueError(f"explicit initial scores must be a float tensor, got {scores_init.dtype}")
        return None
    if scores_init not in SCORE_INITS:
        raise ValueError(f"scores_init must be one of {', '.join(SCORE_INITS)} or a tensor, got {scores_init!r}")
    scale = _DEFAULT_SCORE_SCALE[scores_init] if score_scale is None else score_scale
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0.0 < float(scale) < math.inf:
        raise ValueError(f"score_scale must be a positive number, got {score_scale!r}")
    return float(scale)


class _ScoreStraightThrough(torch.autograd.Function):
    """Forward: the effective weight unchanged. Backward: the incoming gradient goes on to the effective
    weight (its own route) and, straight through the mask, ``grad ⊙ w`` to ``|s|`` (zero outside ``allowed``)."""

    @staticmethod
    def forward(ctx, effective, abs_scores, weight, allowed):
        ctx.has_allowed = allowed is not None
        if ctx.has_allowed:
            ctx.save_for_backward(weight, allowed)
        else:
            ctx.save_for_backward(weight)
        return effective.view_as(effective)

    @staticmethod
    def backward(ctx, grad):
        weight, *rest = ctx.saved_tensors
        grad_scores = None
        if ctx.needs_input_grad[1]:
            grad_scores = grad * weight
            if ctx.has_allowed:
                grad_scores = torch.where(rest[0], grad_scores, grad_scores.new_zeros(()))
        return (grad if ctx.needs_input_grad[0] else None), grad_scores, None, None


class TopKScores(TopKSelector):
    """Edge-popup's selector: a learned score per weight entry (``popup_scores``, an ``nn.Parameter``);
    the mask is the top-``k`` of ``|popup_scores|`` (among ``allowed``), chosen at every forward pass.

    ``scores_init``: ``"uniform"`` (U(-a, a)), ``"fan_scaled_uniform"`` (U(-a/√fan_in, a/√fan_in)) or
    an explicit float tensor of the weight's shape; ``score_scale`` is a (default 0.01 and 1.0
    respectively); ``seed`` seeds the CPU generator the scores are drawn from (the same scores on
    every device). The scores are drawn when the selector is first bound to its weight (binding
    again keeps them) and live in the model's ``parameters()`` and ``state_dict``.
    See the module docstring for the gradient.
    """

    recompute_every_forward = True

    def __init__(
        self,
        k: int,
        allowed: torch.Tensor | None = None,
        *,
        scores_init: str | torch.Tensor = "uniform",
        score_scale: float | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(k, allowed)
        self.score_scale = _check_score_init(scores_init, score_scale)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.seed = seed
        self.scores_init = "tensor" if isinstance(scores_init, torch.Tensor) else scores_init
        self._initial = scores_init.detach().clone() if isinstance(scores_init, torch.Tensor) else None
        self.register_parameter("popup_scores", None)

    def bind(self, weight: torch.Tensor) -> None:
        super().bind(weight)
        if self.popup_scores is not None:
            if tuple(self.popup_scores.shape) != tuple(weight.shape):
                raise ValueError(
                    f"the selector's scores have shape {tuple(self.popup_scores.shape)}, the weight {tuple(weight.shape)}"
                )
            return
        dtype = weight.dtype if weight.is_floating_point() else torch.float32
        if self._initial is not None:
            if tuple(self._initial.shape) != tuple(weight.shape):
                raise ValueError(
                    f"the initial scores have shape {tuple(self._initial.shape)}, the weight {tuple(weight.shape)}"
                )
            initial = self._initial
            self._initial = None
        else:
            bound = self.score_scale
            if self.scores_init == "fan_scaled_uniform":
                bound = bound / math.sqrt(fan_in(weight))
            initial = torch.empty(tuple(weight.shape)).uniform_(-bound, bound, generator=_generator(self.seed))
        self.popup_scores = nn.Parameter(initial.to(device=weight.device, dtype=dtype))

    def scores(self, weight: torch.Tensor) -> torch.Tensor:
        return self.popup_scores.detach().abs()

    def effective(self, weight: torch.Tensor, mask: torch.Tensor, route: Callable) -> torch.Tensor:
        """``w ⊙ mask`` (the weight's gradient from ``route``); ``|s|`` receives ``grad ⊙ w`` straight through."""
        return _ScoreStraightThrough.apply(
            route(weight, mask, self.allowed), self.popup_scores.abs(), weight.detach(), self.allowed
        )

    def extra_repr(self) -> str:
        scale = "" if self.score_scale is None else f", a={self.score_scale:g}"
        return f"{super().extra_repr()}, scores_init={self.scores_init}{scale}, seed={self.seed}"


# ------------------------------------------------------------------- applying


def default_targets(model: nn.Module) -> tuple[str, ...]:
    """Every convolution and linear weight of ``model`` in module order (the paper prunes all of them,
    stem and classifier included), skipping tensors that are already sparse."""
    return tuple(
        f"{name}.weight" if name else "weight"
        for name, module in model.named_modules()
        if isinstance(module, _PRUNABLE) and not is_sparse(module, "weight")
    )


def _derived_seed(seed: int, index: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed, index, stream]).generate_state(1)[0])


def _plan_counts(
    sizes: dict[str, int], keep: float | Mapping[str, float] | Allocation, p: float, rounding: str
) -> tuple[dict[str, int], float]:
    """Per-target kept counts and the global keep rate (for the signed Kaiming constant)."""
    if isinstance(keep, Allocation):
        if keep.sizes != sizes:
            raise ValueError(
                f"the allocation was computed for layers {keep.sizes}; the targets are {sizes} "
                f"(names and sizes must match)"
            )
        return keep.counts(rounding), keep.keep
    if isinstance(keep, Mapping):
        if set(keep) != set(sizes):
            raise ValueError(
                f"keep is a mapping with keys {sorted(keep)}; it needs exactly the targets {sorted(sizes)}"
            )
        counts = {}
        for target, size in sizes.items():
            rate = keep[target]
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 < float(rate) <= 1.0:
                raise ValueError(f"keep for {target!r} must be a fraction in (0, 1], got {rate!r}")
            counts[target] = kept_count(size, float(rate), rounding)
            if counts[target] < 1:
                raise ValueError(f"keep {rate:g} leaves no weight in {target!r} ({size} weights)")
        return counts, sum(counts.values()) / sum(sizes.values())
    allocation = adaptive_allocation(sizes, keep, p)
    return allocation.counts(rounding), allocation.keep


def apply_edge_popup(
    model: nn.Module,
    *,
    keep: float | Mapping[str, float] | Allocation,
    p: float = 1.0,
    weight_init: str = "binary",
    score_init: str = "uniform",
    score_scale: float | None = None,
    skc_keep: float | None = None,
    rounding: str = "floor",
    seed: int = 0,
    targets: Sequence[str] | None = None,
) -> dict[str, SparseWeight]:
    """Prune ``model`` with edge-popup: freeze and initialise the target weights, attach a :class:`TopKScores` to each.

    ``keep``: the global fraction kept (with ``p``, the adaptive allocation of
    :func:`rewire.sparse.allocation.adaptive_allocation`; ``p = 1`` is a fixed rate), a mapping
    target -> per-layer fraction, or an :class:`~rewire.sparse.allocation.Allocation` over exactly
    the targets. ``rounding``: ``"floor"`` (``int(r · n)``, the allocation's counts) or
    ``"get_subnet"`` (``n - int((1 - r) · n)``, what the authors' forward pass keeps).
    ``weight_init``: one of :data:`WEIGHT_INITS`; ``skc_keep`` overrides the keep rate in the signed
    Kaiming constant (default: the global keep). ``score_init``/``score_scale``: see :class:`TopKScores`.
    ``targets``: qualified weight names (default: every convolution and linear weight,
    :func:`default_targets`). ``seed`` derives one seed per target for its weights and one for its scores.

    Everything is checked before the model changes. The target weights (and their modules' biases)
    are frozen; build the optimizer afterwards over the parameters that still require gradients
    (the scores, plus whatever else of the model is trainable). Returns ``{target: parametrization}``.
    """
    if weight_init not in WEIGHT_INITS:
        raise ValueError(f"weight_init must be one of {', '.join(WEIGHT_INITS)}, got {weight_init!r}")
    _check_score_init(score_init, score_scale)
    if rounding not in ("floor", "get_subnet"):
        raise ValueError(f"rounding must be 'floor' or 'get_subnet', got {rounding!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    targets = (
        default_targets(model) if targets is None else ((targets,) if isinstance(targets, str) else tuple(targets))
    )
    if not targets:
        raise ValueError(f"{type(model).__name__} has no convolution or linear weight to prune (targets is empty)")
    sizes = {}
    for target in targets:
        module, tensor_name = resolve_tensor(model, target)
        if is_sparse(module, tensor_name):
            raise ValueError(f"{target!r} is already sparse; call rewire.sparse.masks.remove on it first")
        weight = getattr(module, tensor_name)
        if weight.dim() < 2:
            raise ValueError(f"{target!r} has shape {tuple(weight.shape)}; edge-popup prunes conv/linear weights")
        sizes[target] = weight.numel()
    counts, global_keep = _plan_counts(sizes, keep, p, rounding)
    if skc_keep is None:
        skc_keep = global_keep
    elif isinstance(skc_keep, bool) or not isinstance(skc_keep, (int, float)) or not 0.0 < float(skc_keep) <= 1.0:
        raise ValueError(f"skc_keep must be in (0, 1], got {skc_keep!r}")

    def make_selector(k: int, allowed: torch.Tensor | None, target_seed: int) -> Selector:
        return TopKScores(k, allowed, scores_init=score_init, score_scale=score_scale, seed=target_seed)

    parametrizations = sparsify_targets(model, make_selector, "masked", k=counts, seed=seed, targets=targets)
    with torch.no_grad():
        for index, target in enumerate(targets):
            module, tensor_name = resolve_tensor(model, target)
            original = module.parametrizations[tensor_name].original
            weight_seed = _derived_seed(seed, index, 1)
            if weight_init == "binary":
                original.copy_(binary_weights(original.shape, weight_seed))
            elif weight_init == "signed_kaiming_constant":
                original.copy_(signed_kaiming_constant(original.shape, float(skc_keep), weight_seed))
            original.requires_grad_(False)
            original.grad = None
            bias = getattr(module, "bias", None)
            if isinstance(bias, nn.Parameter):
                bias.requires_grad_(False)
                bias.grad = None
    return parametrizations


def kept_counts(model: nn.Module) -> dict[str, int]:
    """Kept weights per edge-popup tensor, ``{qualified name: count}``, from the current scores."""
    return {
        name: int(current_mask(module, name.rpartition(".")[2], recompute=True).sum())
        for name, module, p in sparse_modules(model)
        if isinstance(p.selector, TopKScores)
    }


FOUND_WEIGHTS = ("found", "reinit", "binary")
_RETRAIN_STREAM = 3  # the seed stream of retrain's ±1 weights (apply_edge_popup's weights use stream 1)


def hold_found_mask(model: nn.Module, found: nn.Module, *, weights: str, seed: int = 0) -> dict[str, SparseWeight]:
    """The lottery-style baselines of Liu et al. 2022 (the authors' ``adv_step_lottery`` trainers): hold the mask
    edge-popup found in ``found`` (a trained edge-popup model of ``model``'s architecture) and train the weights
    under it, the gradient reaching kept weights only (route ``masked``).

    ``weights="found"`` (fine-tune) starts from ``found``'s frozen random weights, now trainable;
    ``"reinit"`` keeps ``model``'s own fresh initialisation (PyTorch's default); ``"binary"`` (retrain as the
    authors run it, their ``lottery_binary``) draws fresh i.i.d. ±1 weights, one draw per tensor from ``seed``
    (a stream of it that :func:`apply_edge_popup`'s weights never use, so they differ from ``found``'s). Every
    edge-popup tensor of ``found`` is re-initialised here, the shortcut convolutions and the classifier included
    (the authors' retrain re-initialises only modules whose names contain "conv"). Checked before ``model`` changes; returns ``{target: parametrization}``.
    """
    if weights not in FOUND_WEIGHTS:
        raise ValueError(f"weights must be one of {', '.join(FOUND_WEIGHTS)}, got {weights!r}")
    found_masks = {
        name: (
            current_mask(module, name.rpartition(".")[2], recompute=True),
            module.parametrizations[name.rpartition(".")[2]].original,
        )
        for name, module, p in sparse_modules(found)
        if isinstance(p.selector, TopKScores)
    }
    if not found_masks:
        raise ValueError(f"{type(found).__name__} has no edge-popup tensor: train an edge-popup row first")
    for name, (mask, _) in found_masks.items():
        module, tensor_name = resolve_tensor(model, name)
        if is_sparse(module, tensor_name):
            raise ValueError(f"{name!r} is already sparse in the model to train; build a fresh model")
        if tuple(getattr(module, tensor_name).shape) != tuple(mask.shape):
            raise ValueError(
                f"{name!r}: the found mask has shape {tuple(mask.shape)}, the model's weight "
                f"{tuple(getattr(module, tensor_name).shape)}: build the same architecture as the found network"
            )
    held = {}
    for index, (name, (mask, found_weight)) in enumerate(found_masks.items()):
        module, tensor_name = resolve_tensor(model, name)
        if weights == "found":
            with torch.no_grad():
                getattr(module, tensor_name).copy_(found_weight)
        elif weights == "binary":
            with torch.no_grad():
                weight = getattr(module, tensor_name)
                weight.copy_(binary_weights(weight.shape, _derived_seed(seed, index, _RETRAIN_STREAM)))
        held[name] = sparsify(module, tensor_name, selector=AssignedMask(), route="masked")
        held[name].assign_mask(mask)
    return held


def score_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The learned scores of every edge-popup tensor of ``model``, in module order."""
    return [p.selector.popup_scores for _, _, p in sparse_modules(model) if isinstance(p.selector, TopKScores)]


register(
    Method(
        "edge_popup",
        family="edge_popup",
        kind="selector",
        paper="Liu et al. 2022 (robust binary subnetworks), Appendix C Algorithm 1; Ramanujan et al. 2020",
        summary="Frozen binary (or signed Kaiming constant) weights; a learned score per weight, top-k of |s| kept per layer.",
        attach=apply_edge_popup,
    )
)
