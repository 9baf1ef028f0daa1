"""One mask mechanism for every sparse-training method of the repository.

A sparse tensor is a dense parameter seen through a weight parametrization
(:func:`torch.nn.utils.parametrize.register_parametrization`). The
parametrization, :class:`SparseWeight`, combines two independent choices:

* a **selector** decides *which* entries are real (the mask);
* a **gradient route** decides *where the gradient goes* in the backward pass.

Models never know they are sparsified: :func:`sparsify` (or
``rewire.methods.apply_method``) is applied to a dense model from outside, and
the model keeps reading ``module.weight``, which now returns the effective
(masked) weight. The dense values live on in
``module.parametrizations.weight.original``; that is the tensor the optimizer
updates.

Selectors
---------
:class:`Selector` is the base class. A selector either recomputes its mask on
every forward pass (``recompute_every_forward = True``: DNW's top-k of |w|) or
*holds* the mask chosen when it was bound until it is told to update
(``False``: the fixed random graph; DPF's magnitude mask refreshed every p steps
through :func:`update_masks`). Selectors whose own scores are learned (edge-popup,
with an ``nn.Parameter`` of scores inside the selector) override
:meth:`Selector.effective` to let the gradient reach those scores; the mechanism
itself does not change.

Implemented here:

* :class:`TopKMagnitude` -- DNW, Algorithm 1 line 5: the k largest |w|.
* :class:`FixedRandom`   -- RG baseline (DNW Section 3): k largest of uniform random scores, fixed.
* :class:`AssignedMask`  -- a held mask decided *jointly* for a group of tensors by a pruning rule
  of :mod:`rewire.pruning` (DPF's global magnitude, filter norms, SNIP saliency, lottery tickets,
  regrowth) and written in with :meth:`SparseWeight.assign_mask`.

Gradient routes
---------------
* :func:`straight_through` -- DNW Algorithm 1 line 10 / Appendix F: forward ``w * mask``,
  backward the identity on every *allowed* entry. Hallucinated edges receive
  dL/dW_eff (the gradient flows *to* them); the gradient does not flow *through*
  them, because the forward pass, and hence the input gradient W_effᵀ·δ, uses only
  real edges.
* :func:`masked` -- ordinary sparse training (RG, "No update rule" ablation):
  the gradient of hallucinated entries is zero.

Both use ``torch.where`` rather than multiplication, so a NaN or inf in a
hallucinated weight or in an unrelated gradient entry never leaks through a
zero of the mask.

Reading a sparse weight
-----------------------
Every read of ``module.weight`` runs the parametrization (a per-forward selector
chooses its edges again). Read it once per forward pass and reuse the tensor, as
``rewire.graphs`` does, or wrap the code in ``torch.nn.utils.parametrize.cached()``.
Under ``torch.inference_mode()`` the ``mask`` buffer is not updated (an
inference tensor could not be loaded into later).

State
-----
:class:`SparseWeight` keeps the last mask in the bool buffer ``mask``. It is part
of ``model.state_dict()`` (as are a selector's ``allowed`` entries and, for
:class:`FixedRandom`, its scores), so checkpoints written by ``rewire.training``
(loaded with ``torch.load(weights_only=True)``) restore the wiring exactly. The
model must be sparsified the same way *before* ``load_state_dict``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import ClassVar

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

__all__ = [
    "Selector",
    "TopKSelector",
    "TopKMagnitude",
    "FixedRandom",
    "AssignedMask",
    "SparseWeight",
    "ROUTES",
    "straight_through",
    "masked",
    "topk_mask",
    "sparsify",
    "resolve_tensor",
    "is_sparse",
    "sparse_modules",
    "current_mask",
    "update_masks",
    "remove",
]


# --------------------------------------------------------------------------- top-k


def topk_mask(
    scores: torch.Tensor, k: int, allowed: torch.Tensor | None = None, allowed_index: torch.Tensor | None = None
) -> torch.Tensor:
    """Bool mask of the ``k`` largest ``scores`` among the ``allowed`` entries: exactly ``k`` entries.

    Ties at the k-th value are broken by position: among equal scores the entries
    with the lowest flat index win, on every device. The k-th largest value is
    found with ``torch.kthvalue`` (a selection, not a sort); the entries strictly above it are taken, and the
    remaining places are filled with the first tied entries in index order, so a
    tie can never yield k+1 entries (the bug of a plain ``score >= threshold``).
    NaN scores rank below every number. ``allowed_index`` (the flat indices of
    ``allowed``, in increasing order) may be passed to save recomputing it.
    """
    flat = scores.detach().reshape(-1)
    if allowed is not None and allowed_index is None:
        allowed_index = allowed.reshape(-1).nonzero().squeeze(1)
    candidates = flat if allowed_index is None else flat.index_select(0, allowed_index)
    if not 0 < k <= candidates.numel():
        raise ValueError(f"k must be in [1, {candidates.numel()}] (the number of allowed entries), got {k}")
    candidates = torch.nan_to_num(candidates, nan=float("-inf"))
    if k == candidates.numel():
        chosen = torch.ones_like(candidates, dtype=torch.bool)
    else:
        kth = torch.kthvalue(candidates, candidates.numel() - k + 1).values  # k-th largest; 2x faster than topk at 23M
        above = candidates > kth
        tied = candidates == kth
        room = k - above.sum()
        chosen = above | (tied & (tied.cumsum(0) <= room))
    if allowed_index is None:
        return chosen.reshape(scores.shape)
    mask = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    return mask.scatter_(0, allowed_index, chosen).reshape(scores.shape)


# ------------------------------------------------------------------------ selectors


class Selector(nn.Module):
    """Decides which entries of a weight are real.

    Subclasses implement :meth:`select` (weight -> bool mask of the same shape) and
    set ``recompute_every_forward``:

    * ``True``: :class:`SparseWeight` calls :meth:`select` on every forward pass
      (the mask follows the weights at once, as DNW's Algorithm 1 line 5);
    * ``False``: the mask is chosen when the selector is bound to its weight and then
      held in ``SparseWeight.mask`` until :meth:`SparseWeight.update_mask` (or
      :func:`update_masks`) is called, e.g. every p optimizer steps for DPF or never
      for the fixed random graph.

    ``allowed`` (bool, the weight's shape) restricts the candidates, e.g. to the
    feed-forward entries of a static neural graph; it is a buffer, so it moves with
    the model and is saved in its state_dict. :meth:`bind` is called once with the
    dense weight before the first selection (validate shapes, draw fixed scores).

    :meth:`effective` combines weight, mask and gradient route; the default is
    ``route(weight, mask, allowed)``. A selector with learned scores (edge-popup's
    ``TopKScores``: an ``nn.Parameter`` inside the selector) overrides it to route a
    straight-through gradient to its scores as well.
    """

    recompute_every_forward: ClassVar[bool] = True
    assigned_externally: ClassVar[bool] = False  # True: a group rule writes the mask (AssignedMask)

    def __init__(self, allowed: torch.Tensor | None = None) -> None:
        super().__init__()
        if allowed is not None:
            allowed = torch.as_tensor(allowed)
            if allowed.dtype != torch.bool:
                raise ValueError(f"allowed must be a bool tensor, got dtype {allowed.dtype}")
            allowed = allowed.detach().clone()
        self.register_buffer("allowed", allowed)

    def bind(self, weight: torch.Tensor) -> None:
        """Called once with the dense weight before the first :meth:`select`."""
        if self.allowed is not None:
            if tuple(self.allowed.shape) != tuple(weight.shape):
                raise ValueError(f"allowed has shape {tuple(self.allowed.shape)}, the weight {tuple(weight.shape)}")
            if self.allowed.device != weight.device:
                self.allowed = self.allowed.to(weight.device)

    def select(self, weight: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def effective(self, weight: torch.Tensor, mask: torch.Tensor, route: Callable) -> torch.Tensor:
        return route(weight, mask, self.allowed)


class TopKSelector(Selector):
    """Base of the top-k selectors: the ``k`` entries with the largest :meth:`scores` among the allowed ones.

    Exactly ``k`` entries always (see :func:`topk_mask` for the tie rule).
    Subclasses define :meth:`scores` (weight -> float tensor of the weight's shape).
    """

    def __init__(self, k: int, allowed: torch.Tensor | None = None) -> None:
        super().__init__(allowed)
        if isinstance(k, bool) or not isinstance(k, int):
            raise ValueError(f"k must be an int, got {k!r}")
        self.k = k
        self.register_buffer("_allowed_index", None, persistent=False)
        self.register_load_state_dict_post_hook(lambda module, incompatible: module._index_allowed())

    def bind(self, weight: torch.Tensor) -> None:
        super().bind(weight)
        available = weight.numel() if self.allowed is None else int(self.allowed.sum())
        if not 1 <= self.k <= available:
            where = (
                f"{available} allowed entries of {weight.numel()}"
                if self.allowed is not None
                else f"{available} entries"
            )
            raise ValueError(f"k must be in [1, {available}] ({where}), got k={self.k}")
        self._index_allowed()

    def _index_allowed(self) -> None:
        self._allowed_index = None if self.allowed is None else self.allowed.reshape(-1).nonzero().squeeze(1)

    def scores(self, weight: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @torch.no_grad()
    def select(self, weight: torch.Tensor) -> torch.Tensor:
        return topk_mask(self.scores(weight), self.k, self.allowed, self._allowed_index)

    def extra_repr(self) -> str:
        allowed = "all" if self.allowed is None else f"{int(self.allowed.sum())} of {self.allowed.numel()}"
        return f"k={self.k}, allowed={allowed}"


class TopKMagnitude(TopKSelector):
    """DNW, Algorithm 1 line 5: E = the k edges of largest |w_uv| (among the allowed entries).

    Recomputed on every forward pass, in training and evaluation alike (as in the
    paper: the edge set is re-chosen every iteration, so a hallucinated edge whose
    magnitude overtakes a real one swaps in at the next forward).
    """

    recompute_every_forward = True

    def scores(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.detach().abs()


class FixedRandom(TopKSelector):
    """RG baseline (DNW Section 3): "assign a uniform random weight to each edge then pick the k
    edges with the largest magnitude weights".

    The uniform scores are drawn once, when the selector is bound, from a CPU
    generator seeded with ``seed`` (so the graph is the same on every device), and
    kept in the ``random_scores`` buffer. The mask is held: it never changes during
    training, and :func:`update_masks` reproduces it exactly.
    """

    recompute_every_forward = False

    def __init__(self, k: int, allowed: torch.Tensor | None = None, *, seed: int = 0) -> None:
        super().__init__(k, allowed)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.seed = seed
        self.register_buffer("random_scores", None)

    def bind(self, weight: torch.Tensor) -> None:
        super().bind(weight)
        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        self.random_scores = torch.rand(weight.shape, generator=generator).to(weight.device)

    def scores(self, weight: torch.Tensor) -> torch.Tensor:
        return self.random_scores

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, seed={self.seed}"


class AssignedMask(Selector):
    """A held mask that a rule over *several* tensors decides (a "group selector").

    Global pruning ranks the entries of all pruned layers together (DPF Appendix A.1:
    "pruning across all neural network layers"), so no single tensor can choose its
    own mask. The tensor starts dense; :mod:`rewire.pruning` computes the masks of a
    whole group and writes each in with :meth:`SparseWeight.assign_mask`.
    :func:`update_masks` leaves these masks alone: only the group rule changes them.
    """

    recompute_every_forward = False
    assigned_externally = True

    @torch.no_grad()
    def select(self, weight: torch.Tensor) -> torch.Tensor:
        return torch.ones(weight.shape, dtype=torch.bool, device=weight.device)


# --------------------------------------------------------------------- gradient routes


class _StraightThrough(torch.autograd.Function):
    """Forward: the real entries of ``weight`` (zero elsewhere). Backward: the incoming gradient
    dL/dW_eff for every allowed entry, real or hallucinated (DNW Appendix F, Eq. 31-32)."""

    @staticmethod
    def forward(ctx, weight, mask, allowed):
        ctx.has_allowed = allowed is not None
        if ctx.has_allowed:
            ctx.save_for_backward(allowed)
        return torch.where(mask, weight, weight.new_zeros(()))

    @staticmethod
    def backward(ctx, grad):
        if ctx.has_allowed:
            (allowed,) = ctx.saved_tensors
            grad = torch.where(allowed, grad, grad.new_zeros(()))
        return grad, None, None


class _Masked(torch.autograd.Function):
    """Forward: the real entries of ``weight``. Backward: the gradient of the real entries only."""

    @staticmethod
    def forward(ctx, weight, mask):
        ctx.save_for_backward(mask)
        return torch.where(mask, weight, weight.new_zeros(()))

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        return torch.where(mask, grad, grad.new_zeros(())), None


def straight_through(weight: torch.Tensor, mask: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """DNW's update rule (Algorithm 1 line 10, Appendix F): ``w * mask`` forward; every allowed
    entry (hallucinated included) receives dL/dW_eff, entries outside ``allowed`` receive 0."""
    return _StraightThrough.apply(weight, mask, allowed)


def masked(weight: torch.Tensor, mask: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """Ordinary sparse training (RG; DNW's "No update rule" ablation, Section 3.3):
    ``w * mask`` forward, ``grad * mask`` backward, so hallucinated entries receive no gradient."""
    return _Masked.apply(weight, mask)


ROUTES: dict[str, Callable] = {"straight_through": straight_through, "masked": masked}


def _route_name(route: str | Callable) -> str:
    if isinstance(route, str):
        if route in ROUTES:
            return route
    else:
        for name, function in ROUTES.items():
            if route is function:
                return name
    raise ValueError(f"unknown gradient route {route!r}; known routes: {', '.join(sorted(ROUTES))}")


# ---------------------------------------------------------------- the parametrization


class SparseWeight(nn.Module):
    """The parametrization: ``forward(weight)`` returns the effective (masked) weight.

    ``selector`` chooses the mask, ``route`` (a name in :data:`ROUTES` or the function
    itself) chooses where the gradient goes. The last mask is kept in the bool
    buffer ``mask`` (read by diagnostics without recomputing, saved in the
    state_dict). ``weight`` is the dense tensor the parametrization will be
    registered on; it binds the selector and sets the initial mask.
    """

    def __init__(self, selector: Selector, route: str | Callable = "straight_through", *, weight: torch.Tensor) -> None:
        super().__init__()
        if not isinstance(selector, Selector):
            raise TypeError(f"selector must be a rewire.masks.Selector, got {type(selector).__name__}")
        self.selector = selector
        self.route = _route_name(route)
        with torch.no_grad():
            selector.bind(weight.detach())
            self.register_buffer("mask", selector.select(weight.detach()))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self.selector.recompute_every_forward:
            with torch.no_grad():
                mask = self.selector.select(weight)
            if not torch.is_inference_mode_enabled():  # an inference tensor could not be loaded into later
                self.mask = mask  # rebind, not copy_: a mask saved for a pending backward stays intact
        else:
            mask = self.mask
        return self.selector.effective(weight, mask, ROUTES[self.route])

    @torch.no_grad()
    def assign_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """Hold ``mask`` (bool, the weight's shape), decided outside the tensor by a group rule."""
        if not isinstance(self.selector, AssignedMask):
            raise TypeError(
                f"only an AssignedMask selector takes an assigned mask; this one is {type(self.selector).__name__}"
            )
        if mask.dtype != torch.bool or tuple(mask.shape) != tuple(self.mask.shape):
            raise ValueError(
                f"an assigned mask must be bool with shape {tuple(self.mask.shape)}, "
                f"got {mask.dtype} {tuple(mask.shape)}"
            )
        self.mask = mask.detach().to(self.mask.device).clone()  # rebind: a mask saved for backward stays intact
        return self.mask

    @torch.no_grad()
    def update_mask(self, weight: torch.Tensor) -> torch.Tensor:
        """Choose the mask again from ``weight`` (the dense original) and hold it; returns it."""
        self.mask = self.selector.select(weight.detach())
        return self.mask

    def extra_repr(self) -> str:
        held = "per forward" if self.selector.recompute_every_forward else "held"
        return f"route={self.route}, mask={held}, real={int(self.mask.sum())}/{self.mask.numel()}"


# ------------------------------------------------------------------------- helpers


def _sparse_weight(module: nn.Module, name: str) -> SparseWeight | None:
    if not parametrize.is_parametrized(module, name):
        return None
    for p in module.parametrizations[name]:
        if isinstance(p, SparseWeight):
            return p
    return None


def resolve_tensor(model: nn.Module, target: str) -> tuple[nn.Module, str]:
    """``(module, tensor name)`` of a qualified tensor name such as ``"graph.weight"``; a ``ValueError``
    that lists the model's parameters when ``target`` is not a tensor of ``model``."""
    module_path, _, tensor_name = target.rpartition(".")
    try:
        module = model.get_submodule(module_path) if module_path else model
    except AttributeError:
        module = None
    if module is None or not isinstance(getattr(module, tensor_name, None), torch.Tensor):
        names = [n for n, _ in model.named_parameters()]
        raise ValueError(
            f"target {target!r} is not a tensor of {type(model).__name__}; its parameters are: {', '.join(names)}"
        )
    return module, tensor_name


def sparsify(
    module: nn.Module, name: str = "weight", *, selector: Selector, route: str | Callable = "straight_through"
) -> SparseWeight:
    """Make ``module.<name>`` sparse: register a :class:`SparseWeight` on it and return it.

    Build the optimizer *after* this call: the dense values move to
    ``module.parametrizations.<name>.original``. Initialise weights before
    sparsifying (or write to ``.original``).
    """
    if not isinstance(getattr(module, name, None), torch.Tensor):
        raise ValueError(f"{type(module).__name__} has no tensor named {name!r}")
    if _sparse_weight(module, name) is not None:
        raise ValueError(f"{type(module).__name__}.{name} is already sparse; call rewire.masks.remove first")
    parametrization = SparseWeight(selector, route, weight=getattr(module, name))
    parametrize.register_parametrization(module, name, parametrization)
    return parametrization


def is_sparse(module: nn.Module, name: str | None = None) -> bool:
    """Whether ``module.<name>`` (any tensor of ``module`` when ``name`` is None) is sparsified here."""
    if name is not None:
        return _sparse_weight(module, name) is not None
    if not parametrize.is_parametrized(module):
        return False
    return any(_sparse_weight(module, n) is not None for n in module.parametrizations.keys())


def sparse_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module, SparseWeight]]:
    """Yield ``(qualified tensor name, module, parametrization)`` for every sparse tensor of ``model``,
    e.g. ``("graph.weight", model.graph, <SparseWeight>)``."""
    for module_name, module in model.named_modules():
        if not parametrize.is_parametrized(module):
            continue
        for tensor_name in module.parametrizations.keys():
            p = _sparse_weight(module, tensor_name)
            if p is not None:
                yield (f"{module_name}.{tensor_name}" if module_name else tensor_name), module, p


def current_mask(module: nn.Module, name: str = "weight", *, recompute: bool = False) -> torch.Tensor:
    """A copy of the mask of ``module.<name>``.

    By default the mask of the last forward pass (or the held mask). With
    ``recompute=True`` a per-forward selector chooses it again from the current
    weights, e.g. right after an optimizer step (held masks are returned as held).
    """
    p = _sparse_weight(module, name)
    if p is None:
        raise ValueError(f"{type(module).__name__}.{name} is not sparse")
    if recompute and p.selector.recompute_every_forward:
        with torch.no_grad():
            return p.selector.select(module.parametrizations[name].original).clone()
    return p.mask.clone()


def update_masks(model: nn.Module) -> int:
    """Re-choose every held mask of ``model`` from its current dense weights; returns how many
    tensors were updated. Per-forward selectors and group-assigned masks (:class:`AssignedMask`,
    refreshed by :mod:`rewire.pruning`) are left alone."""
    updated = 0
    for _, module, p in sparse_modules(model):
        if p.selector.recompute_every_forward or p.selector.assigned_externally:
            continue
        for tensor_name in module.parametrizations.keys():
            if _sparse_weight(module, tensor_name) is p:
                p.update_mask(module.parametrizations[tensor_name].original)
                updated += 1
    return updated


def remove(module: nn.Module, name: str = "weight", *, leave_sparse: bool = True) -> None:
    """Undo :func:`sparsify`. ``leave_sparse=True`` bakes the current mask in (a plain parameter holding
    ``w * mask``, the current mask chosen again from the weights for per-forward selectors);
    ``False`` restores the dense weights."""
    if _sparse_weight(module, name) is None:
        raise ValueError(f"{type(module).__name__}.{name} is not sparse")
    parametrize.remove_parametrizations(module, name, leave_parametrized=leave_sparse)
