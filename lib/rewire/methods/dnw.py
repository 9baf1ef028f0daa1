"""DNW (Wortsman et al. 2019) and its baselines: methods that are one selector + gradient route.

Each method is a pair (selector, gradient route) of the one mask mechanism
(:mod:`rewire.sparse.masks`), applied to named tensors of a dense model from outside::

    from rewire.methods import apply_method
    model = StaticGraph(GraphConfig())
    apply_method(model, "dnw", k=32_000, allowed=model.allowed_edges(), targets=("graph.weight",))
    trainer = Trainer(model, ...)          # build the optimizer after applying the method

=================  ======================  ==================  ===========================================
method             selector                route               paper
=================  ======================  ==================  ===========================================
``dnw``            TopKMagnitude (k)       straight_through    DNW Section 2.2, Algorithm 1, Appendix F
``dnw_no_update``  TopKMagnitude (k)       masked              DNW Section 3.3, "No Update Rule"
``rg``             FixedRandom (k, seed)   masked              DNW Section 3, RG baseline
``dense``          --                      --                  the complete graph (no sparsity)
=================  ======================  ==================  ===========================================
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from rewire.methods.registry import Method, register
from rewire.sparse.masks import FixedRandom, Selector, SparseWeight, TopKMagnitude, resolve_tensor, sparsify

__all__ = ["SelectorMethod", "SELECTOR_METHODS", "apply_method", "known_methods"]


@dataclass(frozen=True)
class SelectorMethod:
    """A method of this family: how to build the selector (``None`` for a dense model) and which route to use."""

    name: str
    make_selector: Callable[[int, torch.Tensor | None, int], Selector] | None
    route: str | None
    doc: str


def _dnw(k: int, allowed: torch.Tensor | None, seed: int) -> Selector:
    """DNW (Section 2.2, Algorithm 1): the real edges are the k largest |w| and are re-chosen every
    forward pass; every candidate edge, hallucinated ones included, gets the gradient (line 10;
    Appendix F straight-through form), so a hallucinated edge can grow and swap in."""
    return TopKMagnitude(k, allowed)


def _dnw_no_update(k: int, allowed: torch.Tensor | None, seed: int) -> Selector:
    """ "No Update Rule" ablation (Section 3.3): the same top-k choice, but hallucinated edges get
    no gradient; an edge can only swap in when a real edge's magnitude decreases below it."""
    return TopKMagnitude(k, allowed)


def _rg(k: int, allowed: torch.Tensor | None, seed: int) -> Selector:
    """RG, the randomly wired baseline (Section 3): uniform random scores, the k largest kept,
    fixed for the whole run; ordinary (masked) training of the real edges."""
    return FixedRandom(k, allowed, seed=seed)


SELECTOR_METHODS: dict[str, SelectorMethod] = {
    "dnw": SelectorMethod("dnw", _dnw, "straight_through", _dnw.__doc__),
    "dnw_no_update": SelectorMethod("dnw_no_update", _dnw_no_update, "masked", _dnw_no_update.__doc__),
    "rg": SelectorMethod("rg", _rg, "masked", _rg.__doc__),
    "dense": SelectorMethod(
        "dense",
        None,
        None,
        "The complete graph (DNW Section 3.3, trained before pruning for the "
        "lottery-ticket and fine-tune rows of Table 2): no mask, every entry the model reads is used.",
    ),
}


_PAPER = {
    "dnw": "DNW Section 2.2, Algorithm 1",
    "dnw_no_update": "DNW Section 3.3",
    "rg": "DNW Section 3",
    "dense": "no sparsity",
}


def _attach(name: str):
    def attach(model: nn.Module, **kwargs) -> dict[str, SparseWeight]:
        return apply_method(model, name, **kwargs)

    attach.__doc__ = f"``apply_method(model, {name!r}, k=..., allowed=..., seed=..., targets=...)``"
    return attach


for _name, _entry in SELECTOR_METHODS.items():
    register(
        Method(
            _name,
            family="dnw",
            kind="dense" if _entry.make_selector is None else "selector",
            paper=_PAPER[_name],
            summary=" ".join(_entry.doc.split()).split(". ")[0].strip('"') + ".",
            attach=_attach(_name),
        )
    )


def known_methods() -> list[str]:
    """The methods of this family (``rewire.methods.names()`` lists every family's)."""
    return sorted(SELECTOR_METHODS)


def _target_seed(seed: int, index: int) -> int:
    """An independent seed for the ``index``-th target tensor, derived from the run's ``seed``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def apply_method(
    model_or_module: nn.Module,
    method: str,
    *,
    k: int | None = None,
    allowed: torch.Tensor | Mapping[str, torch.Tensor] | None = None,
    seed: int = 0,
    targets: Sequence[str] = ("weight",),
) -> dict[str, SparseWeight]:
    """Apply ``method`` to the tensors ``targets`` of ``model_or_module``; return ``{target: parametrization}``.

    ``targets`` are tensor names relative to ``model_or_module`` (``"weight"`` for a
    layer, ``"graph.weight"`` for a neural graph). ``k`` is the number of real
    entries of each target, ``allowed`` a bool tensor of candidate entries (one
    for all targets, or a mapping target -> tensor; ``None`` allows every entry).
    ``seed`` seeds the random graph (each target gets its own stream derived from
    it). ``"dense"`` leaves the model unchanged and returns ``{}``.

    Raises ``ValueError`` for an unknown method (listing the known ones), an unknown
    target, or an impossible ``k`` (saying the valid range).
    """
    if method not in SELECTOR_METHODS:
        raise ValueError(
            f"unknown method {method!r}; known methods: {', '.join(known_methods())} "
            f"(apply_method puts one selector on each tensor; group methods such as DPF, SNIP "
            f"or SM attach with rewire.methods.get(name).attach(model, ...))"
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    entry = SELECTOR_METHODS[method]
    if isinstance(targets, str):
        targets = (targets,)
    resolved = [(target, *resolve_tensor(model_or_module, target)) for target in targets]
    if entry.make_selector is None:
        return {}
    if isinstance(k, bool) or not isinstance(k, int):
        raise ValueError(f"method {method!r} needs the number of real edges k as an int, got {k!r}")
    plans = []  # validate every target before changing any
    for index, (target, module, tensor_name) in enumerate(resolved):
        target_allowed = allowed.get(target) if isinstance(allowed, Mapping) else allowed
        weight = getattr(module, tensor_name)
        if target_allowed is not None:
            target_allowed = torch.as_tensor(target_allowed)
            if tuple(target_allowed.shape) != tuple(weight.shape):
                raise ValueError(
                    f"allowed for {target!r} has shape {tuple(target_allowed.shape)}, "
                    f"the tensor has {tuple(weight.shape)}"
                )
        available = weight.numel() if target_allowed is None else int(target_allowed.sum())
        if not 1 <= k <= available:
            raise ValueError(
                f"k must be in [1, {available}] for {target!r} ({available} allowed entries of "
                f"{weight.numel()}), got k={k}"
            )
        plans.append((target, module, tensor_name, entry.make_selector(k, target_allowed, _target_seed(seed, index))))
    return {
        target: sparsify(module, tensor_name, selector=selector, route=entry.route)
        for target, module, tensor_name, selector in plans
    }
