"""One registry of sparse-training methods (open_lth style: one file per family registers its own).

A :class:`Method` names a family (the module that implements it), the paper it comes
from, what it does in one sentence, and how it is attached to a dense model:

* ``kind="selector"``: a per-tensor selector + gradient route of the one mask mechanism
  (:mod:`rewire.sparse.masks`), applied with :func:`rewire.methods.apply_method`
  (DNW, its no-update ablation, the random graph);
* ``kind="group"``: a :class:`rewire.sparse.groups.MaskGroup` over the model's convolution
  weights plus training callbacks that change its masks (DPF, Incremental, SFP, SM, DSR,
  SNIP): ``method.attach(model, sparsity, ...)`` returns an :class:`Attached`;
* ``kind="procedure"``: several training phases built from the others (One-shot P+FT, the
  lottery ticket, DPF + FT, the DPF rewind), run by an experiment driver such as
  :mod:`rewire.experiments.dpf_sweep`.

Models never know which method sparsifies them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Method", "Attached", "KINDS", "register", "get", "names", "table"]

KINDS = ("selector", "group", "procedure", "dense")


@dataclass
class Attached:
    """What ``Method.attach`` returns: the model's mask group (or None) and the training callbacks."""

    group: Any
    callbacks: list = field(default_factory=list)


@dataclass(frozen=True)
class Method:
    name: str
    family: str
    kind: str
    paper: str
    summary: str
    attach: Callable[..., Any] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"method {self.name!r}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")


_REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add ``method``; a second method with the same name is a programming error."""
    existing = _REGISTRY.get(method.name)
    if existing is not None and existing.family != method.family:
        raise ValueError(f"method {method.name!r} is registered twice ({existing.family} and {method.family})")
    _REGISTRY[method.name] = method
    return method


def get(name: str) -> Method:
    """The registered method ``name``; an unknown name raises ``ValueError`` listing the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown method {name!r}; known methods: {', '.join(names())} "
            f"(each family registers its methods in rewire/methods/<family>.py)"
        ) from None


def names(*, family: str | None = None, kind: str | None = None) -> list[str]:
    """Registered method names, sorted, optionally of one family or kind."""
    return sorted(
        n for n, m in _REGISTRY.items() if (family is None or m.family == family) and (kind is None or m.kind == kind)
    )


def table() -> list[dict[str, str]]:
    """One row per method (name, family, kind, paper, summary), for README and notebooks."""
    return [
        {"method": m.name, "family": m.family, "kind": m.kind, "paper": m.paper, "summary": m.summary}
        for m in sorted(_REGISTRY.values(), key=lambda m: (m.family, m.name))
    ]
