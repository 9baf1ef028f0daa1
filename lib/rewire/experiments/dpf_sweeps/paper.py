"""The DPF paper's CIFAR-10 numbers and experiment grid, read from the data files beside this module.

``paper.yaml`` holds every number of the paper's CIFAR-10 tables (Lin et al., ICLR 2020), top-1 test
accuracy (%, mean and std over three runs); :data:`PAPER_NUMBERS` lays them out one dict per
(table, model, method, sparsity):

* Table 4 (Appendix A.3.1): unstructured pruning from scratch; Dense, SNIP, SM, DSR, DPF.
* Table 1 (Section 5.2): a subset of Table 4 (``table1_sparsities``), kept as its own rows so that
  ``table`` says where a number is printed.
* Table 2 (Section 5.2): Dense, One-shot + FT, Incremental (Zhu & Gupta 2017), Incremental + FT,
  DPF, DPF + FT, for ResNet-20/32/56 at 90 % and 95 %.
* Table 5 (Appendix A.4.1): structured (filter) pruning; Dense, SFP, DPF, "pruning ratio" = share of
  filters (per layer for SFP, across layers for DPF).

The paper's "*" (the method did not converge) is ``top1 = nan`` with ``top1_std = None``; its "-"
(not reported) has no row (:data:`NOT_REPORTED`). Table 3 and Figure 10 are ImageNet and not here.

``paper_grid.yaml`` is :data:`PAPER_GRID`, the paper-scale experiment grid (the one source of
``params.yaml``'s ``grid: paper``). This module is named ``paper`` so that the run engine leaves it
out of every run's code hash: editing a quoted number never retrains a run.
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "PAPER_NUMBERS",
    "PAPER_MODEL_NAMES",
    "PAPER_RESNET20",
    "NOT_REPORTED",
    "TABLE1_SPARSITIES",
    "PAPER_GRID",
    "OVERHEAD_PCT",
    "CONVERGED_SHARE_PCT",
    "paper_number",
    "paper_rows",
    "grid_entries",
    "runnable_grid",
    "table_sparsities",
    "same_flops_epochs",
]

HERE = Path(__file__).parent
STAR, DASH = "*", "-"  # the paper's "did not converge" and "not reported"


@cache
def _load(name: str) -> Any:
    return yaml.safe_load((HERE / name).read_text(encoding="utf-8"))


_DATA = _load("paper.yaml")
PAPER_MODEL_NAMES: dict[str, str] = dict(_DATA["model_names"])
TABLE1_SPARSITIES: dict[str, tuple[float, ...]] = {m: tuple(s) for m, s in _DATA["table1_sparsities"].items()}
OVERHEAD_PCT: float = float(_DATA["overhead_pct"])  # Figure 10, "trivial": our reading, below 5 % per iteration
CONVERGED_SHARE_PCT: float = float(_DATA["converged_share_pct"])  # Figure 4: 5 % of the mask still changing


def _row(table: str, model: str, method: str, sparsity: float, structured: bool, cell, note: str = "") -> dict:
    base = _DATA["notes"][method] + (f"; {note}" if note else "")
    row = {"table": table, "model": model, "method": method, "sparsity": sparsity, "structured": structured}
    if cell == STAR:
        return {
            **row,
            "top1": math.nan,
            "top1_std": None,
            "note": base + "; '*' in the paper: the method did not converge",
        }
    mean, std = cell
    return {**row, "top1": mean, "top1_std": std, "note": base}


def _build() -> tuple[list[dict[str, Any]], list[tuple[str, str, str, float]]]:
    rows, not_reported = [], []
    table4 = _DATA["table4"]
    for table, keep in (("Table 4", None), ("Table 1", TABLE1_SPARSITIES)):
        for model, block in table4["models"].items():
            rows.append(_row(table, model, "dense", 0.0, False, block["dense"]))
            for sparsity, *cells in block["rows"]:
                if keep is not None and sparsity not in keep[model]:
                    continue
                for method, cell in zip(table4["methods"], cells):
                    if cell == DASH:
                        not_reported.append((table, model, method, sparsity))
                    else:
                        rows.append(_row(table, model, method, sparsity, False, cell))
    for model, block in _DATA["table2"]["models"].items():
        rows.append(_row("Table 2", model, "dense", 0.0, False, block["dense"]))
        for sparsity, *cells in block["rows"]:
            for method, cell in zip(_DATA["table2"]["methods"], cells):
                rows.append(_row("Table 2", model, method, sparsity, False, cell))
    for model, block in _DATA["table5"]["models"].items():
        note = "as printed in Table 5 (Tables 1, 2 and 4 give 93.83 +- 0.12)" if model == "resnet32" else ""
        rows.append(_row("Table 5", model, "dense", 0.0, True, block["dense"], note))
        for sparsity, *cells in block["rows"]:
            for method, cell in zip(_DATA["table5"]["methods"], cells):
                rows.append(_row("Table 5", model, method, sparsity, True, cell))
    return rows, not_reported


_ROWS, _NOT_REPORTED = _build()
PAPER_NUMBERS: list[dict[str, Any]] = _ROWS
NOT_REPORTED: tuple[tuple[str, str, str, float], ...] = tuple(_NOT_REPORTED)

# Which table answers paper_number first (Tables 1, 2 and 4 agree wherever they overlap).
_TABLE_ORDER = ("Table 4", "Table 1", "Table 2", "Table 5")


def paper_number(model: str, method: str, sparsity: float, structured: bool = False) -> dict[str, Any] | None:
    """The paper's number for (model, method, target sparsity), or ``None`` if no table has it.

    Unstructured numbers come from Table 4 (or Tables 1/2, which agree with it), structured ones
    (``structured=True``) from Table 5. ``dense`` ignores ``sparsity``; with ``structured=True`` it
    is the dense baseline printed in Table 5. Returns a copy of the :data:`PAPER_NUMBERS` row.
    """
    matches = [
        row
        for row in PAPER_NUMBERS
        if row["model"] == model
        and row["method"] == method
        and row["structured"] == structured
        and (method == "dense" or math.isclose(row["sparsity"], sparsity, abs_tol=1e-9))
    ]
    if not matches:
        return None
    return dict(min(matches, key=lambda row: _TABLE_ORDER.index(row["table"])))


def paper_rows(model: str) -> list[dict[str, Any]]:
    """Every :data:`PAPER_NUMBERS` row of ``model`` (copies), in table order; empty for models the paper lacks."""
    return [dict(row) for row in PAPER_NUMBERS if row["model"] == model]


def _resnet20() -> dict[tuple[str, float], tuple[float, float]]:
    """ResNet-20's cells of Tables 1, 2 and 5: (method, sparsity) -> (mean, std); nan for '*'."""
    cells = {}
    for row in paper_rows("resnet20"):
        if row["table"] in ("Table 1", "Table 2", "Table 5"):
            std = math.nan if row["top1_std"] is None else row["top1_std"]
            cells.setdefault((row["method"], row["sparsity"]), (row["top1"], std))
    return cells


PAPER_RESNET20: dict[tuple[str, float], tuple[float, float]] = _resnet20()


def table_sparsities(table: str) -> dict[str, tuple[float, ...]]:
    """model -> the target sparsities of ``table`` ("table2", "table4" or "table5") in printed order."""
    return {model: tuple(row[0] for row in block["rows"]) for model, block in _DATA[table]["models"].items()}


def table_methods(table: str) -> tuple[str, ...]:
    return tuple(_DATA[table]["methods"])


# --------------------------------------------------------------------- the experiment grid

PAPER_GRID: list[dict[str, Any]] = [
    {
        "tag": e["tag"],
        "figure": e["figure"],
        "preset": e["preset"],
        "model": e["model"],
        "methods": tuple(e["methods"]),
        "sparsities": tuple(e["sparsities"]),
        "overrides": dict(e.get("overrides") or {}),
        "note": e.get("note", ""),
        "missing": e.get("missing"),
        "run": e.get("run", True),
    }
    for e in _load("paper_grid.yaml")
]


def runnable_grid() -> list[dict[str, Any]]:
    """The :data:`PAPER_GRID` entries this repository can run (all but ``run: false``), as
    ``dpf_sweeps`` grid entries: what ``grid: paper`` in ``params.yaml`` resolves to."""
    keys = ("tag", "figure", "preset", "model", "methods", "sparsities", "overrides", "note")
    return [
        {k: (list(e[k]) if isinstance(e[k], tuple) else e[k]) for k in keys if e[k] not in ("", {}, None)}
        for e in PAPER_GRID
        if e["run"]
    ]


def grid_entries(figure_or_table: str) -> list[dict[str, Any]]:
    """The :data:`PAPER_GRID` entries that produce ``figure_or_table`` (e.g. ``"Table 5"``, ``"Figure 9"``)."""
    return [e for e in PAPER_GRID if figure_or_table in [s.strip() for s in e["figure"].split(",")]]


def same_flops_epochs(epochs: int, sparsity: float, ramp_end: float) -> int:
    """Epochs of sparse retraining at density 1 - s that cost as many MACs as one DPF run (Figure 8).

    Assumes a training iteration costs in proportion to the density of the mask in use (the MAC
    count of Figures 3c and 6) and the cubic ramp s_t = s (1 - (1 - t / n)^3) of Appendix A.2 up to
    ``ramp_end`` (fraction of training), whose mean density is 1 - 3 s / 4. Rounded up.
    """
    if not 0 < sparsity < 1 or not 0 < ramp_end <= 1:
        raise ValueError(f"need sparsity in (0, 1) and ramp_end in (0, 1], got {sparsity}, {ramp_end}")
    dpf_cost = ramp_end * (1 - 0.75 * sparsity) + (1 - ramp_end) * (1 - sparsity)
    return math.ceil(round(epochs * dpf_cost / (1 - sparsity), 6))
