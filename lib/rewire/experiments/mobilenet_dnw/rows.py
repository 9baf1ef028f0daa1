"""The rows of DNW Table 2 (and Appendix Table 5): a method and its own hyperparameter, named by a key.

=========================  ==================================================================================
row (``Row.key``)          method
=========================  ==================================================================================
``mobilenet_v1``           dense MobileNetV1 x 0.25 (no graph; :class:`rewire.models.mobilenet_dnw.MobileNetV1`)
``rg``                     a fixed random graph with k edges per stage (``rewire.methods.dnw``, ``rg``)
``dnw_no_update``          top-k by |w|, no gradient to hallucinated edges (``dnw_no_update``)
``l1_anneal-<λ>``          complete graph, edges removed by magnitude until k remain, L1 term
                           (:mod:`rewire.methods.anneal`; not in the authors' code); λ = 0 is labelled
                           "Anneal" (no L1 term: not the paper's row, no paper number beside it)
``td-<ρ>``                 unconstrained targeted dropout, ρ in {0.75, 0.9, 0.95, 0.99, γ}
                           (:mod:`rewire.methods.targeted_dropout`)
``td_regular-<ρ>``         regular (per-node) targeted dropout, Appendix B, Table 5
``complete``               the complete graph (every feed-forward entry), trained once (†)
``lottery``                top-k of the trained complete graph per stage, rewound to its initialisation and
                           retrained at lr 0.1 (one-shot lottery ticket, Frankle et al. 2019)
``finetune-<α>``           the same top-k, keeping the trained weights, fine-tuned from lr α
``dnw``                    DNW: top-k by |w| re-chosen every step, straight-through gradient (Algorithm 1)
=========================  ==================================================================================
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rewire.methods.targeted_dropout import check_rho

__all__ = ["Row", "METHODS", "GRAPH_METHODS", "ROW_FORMS", "expand_rows", "candidates"]

GRAPH_METHODS = ("rg", "dnw", "dnw_no_update", "complete")
METHODS = ("mobilenet_v1", *GRAPH_METHODS, "td", "td_regular", "l1_anneal", "lottery", "finetune")
# every form a row key takes (what an unknown row's message lists)
ROW_FORMS = (
    "mobilenet_v1", "rg", "dnw_no_update", "complete", "lottery", "dnw",
    "td-<rho>", "td_regular-<rho>", "finetune-<alpha>", "l1_anneal-<lambda>",
)  # fmt: skip


def _number(value: float) -> str:
    return f"{value:g}"


@dataclass(frozen=True)
class Row:
    """One row of Table 2 / Table 5: a method and its own hyperparameter (ρ, α or λ)."""

    method: str
    rho: float | str | None = None  # targeted dropout
    alpha: float | None = None  # fine-tune learning rate
    l1: float | None = None  # L1 + Anneal coefficient

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(
                f"unknown Table 2 method {self.method!r}; known: {', '.join(METHODS)} (rows: {', '.join(ROW_FORMS)})"
            )
        if self.method in ("td", "td_regular"):
            if self.rho is None:
                raise ValueError(f"{self.method} needs rho (a number in [0, 1] or 'gamma')")
            check_rho(self.rho)
        if self.method == "finetune" and not (isinstance(self.alpha, (int, float)) and self.alpha > 0):
            raise ValueError(f"finetune needs a learning rate alpha > 0, got {self.alpha!r}")
        if self.method == "l1_anneal" and not (isinstance(self.l1, (int, float)) and self.l1 >= 0):
            raise ValueError(f"l1_anneal needs an L1 coefficient >= 0, got {self.l1!r}")

    @classmethod
    def parse(cls, key: str) -> Row:
        """``"td-0.95"``, ``"td_regular-gamma"``, ``"finetune-0.01"``, ``"l1_anneal-1e-05"``, ``"dnw"``, ..."""
        method, _, value = str(key).partition("-")
        if method in ("td", "td_regular"):
            return cls(method, rho=value if value == "gamma" else _float(key, value))
        if method == "finetune":
            return cls(method, alpha=_float(key, value))
        if method == "l1_anneal":
            return cls(method, l1=_float(key, value))
        if value:
            raise ValueError(f"Table 2 row {key!r}: {method!r} takes no value after '-'")
        return cls(method)

    @property
    def key(self) -> str:
        if self.method in ("td", "td_regular"):
            return f"{self.method}-{self.rho if self.rho == 'gamma' else _number(self.rho)}"
        if self.method == "finetune":
            return f"finetune-{_number(self.alpha)}"
        if self.method == "l1_anneal":
            return f"l1_anneal-{_number(self.l1)}"
        return self.method

    @property
    def paper_key(self) -> str:
        """The key of the paper's Table 2 / Table 5 (``paper.yaml``; L1 + Anneal has one row whatever λ)."""
        return "l1_anneal" if self.method == "l1_anneal" else self.key

    @property
    def label(self) -> str:
        rho = "γ" if self.rho == "gamma" else _number(self.rho) if self.rho is not None else ""
        return {
            "mobilenet_v1": "MobileNetV1 (dense)",
            "rg": "MobileNetV1-RG",
            "dnw_no_update": "No Update Rule",
            "l1_anneal": self._anneal_label(),
            "td": f"TD ρ = {rho}",
            "td_regular": f"TD ρ = {rho} (regular)",
            "complete": "complete graph (†)",
            "lottery": "Lottery Ticket (one-shot) †",
            "finetune": f"Fine Tune α = {_number(self.alpha) if self.alpha else ''} †",
            "dnw": "MobileNetV1-DNW",
        }[self.method]

    @property
    def has_l1_term(self) -> bool:
        """False for the L1 + Anneal row with λ = 0: the anneal alone, not the paper's L1 + Anneal."""
        return self.method != "l1_anneal" or bool(self.l1)

    def _anneal_label(self) -> str:
        """``L1 + Anneal (λ = …)``, or ``Anneal (λ = 0, no L1)``: with λ = 0 the row has no L1 term, so it is not
        the paper's L1 + Anneal row (Section 3.3: "accuracy was much better if we added an L1 regularization term")."""
        if self.l1 is not None and not self.has_l1_term:
            return "Anneal (λ = 0, no L1)"
        return f"L1 + Anneal (λ = {_number(self.l1) if self.l1 is not None else ''})"

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


def _float(key: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"Table 2 row {key!r}: {value!r} is not a number") from None


def expand_rows(keys: Iterable[str]) -> list[Row]:
    """Parse a list of row keys, refusing duplicates and unknown methods before any work."""
    rows = [Row.parse(key) for key in keys]
    seen = [row.key for row in rows]
    duplicates = sorted({key for key in seen if seen.count(key) > 1})
    if duplicates:
        raise ValueError(f"Table 2 rows listed twice: {duplicates}")
    return rows


def candidates(values: Sequence[Any], method: str, field: str) -> list[Row]:
    """Rows of ``method`` for each value of its hyperparameter ``field`` (``rho``, ``alpha`` or ``l1``)."""
    return [Row(method, **{field: value}) for value in values]
