"""The ImageNet numbers quoted from DNW Table 3 and DPF Table 3, read from ``paper.yaml`` beside this module.

Data, not code: the run engine leaves this module (and ``paper.yaml``) out of every run's code hash, so
correcting a quoted number never retrains a run.

* :data:`TABLE3_ROWS`: every row of DNW Table 3 as a :class:`Table3Row` (Params, FLOPs = multiply-adds,
  top-1). The rows this repository can train (MobileNetV1 x0.25 and x0.5, MobileNetV1-RG, MobileNetV1-DNW
  and -DNW-Small) have ``quoted=False``; the other architectures are quoted only. Row ``rg_x51`` is the
  paper's "MobileNetV1-RG (x0.49)" as the authors' code trains it (d = 1 - 0.49 = 0.51).
* :data:`PAPER_TABLE3`: every row of DPF Table 3 as a :class:`PaperRow`; :func:`paper_rows` selects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

__all__ = [
    "Table3Row",
    "TABLE3_ROWS",
    "KINDS",
    "PaperRow",
    "PAPER_TABLE3",
    "PAPER_FULL_PARAMS",
    "paper_rows",
    "trainable_rows",
    "quoted_rows",
]

PAPER_FILE = Path(__file__).with_name("paper.yaml")
KINDS = ("dense", "rg", "dnw", "other")


@dataclass(frozen=True)
class Table3Row:
    """One row of DNW Table 3.

    ``kind``: ``dense`` (MobileNetV1 x d), ``rg`` (MobileNetV1-RG: MobileNetV1-DNW's graphs with fixed random
    edges), ``dnw`` (MobileNetV1-DNW), ``other`` (another architecture, quoted). ``width`` is the d this
    repository trains (``None`` for quoted architectures); ``small`` marks DNW-Small (sparse classifier).
    ``paper_params`` / ``paper_flops`` are in millions (``None``: "—" in the table), ``paper_top1`` in %.
    ``quoted``: the numbers are only quoted, the repository cannot train the row.
    """

    key: str
    name: str
    kind: str
    width: float | None
    small: bool
    paper_params: float | None
    paper_flops: float
    paper_top1: float
    quoted: bool
    note: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"row {self.key}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not self.quoted and self.width is None:
            raise ValueError(f"row {self.key}: a trainable row needs its width d")
        if self.small and self.kind != "dnw":
            raise ValueError(f"row {self.key}: only MobileNetV1-DNW has a Small variant")

    @property
    def method(self) -> str:
        """The :func:`rewire.methods.dnw.apply_method` method of the row (``dense`` for MobileNetV1 x d)."""
        return {"dense": "dense", "rg": "rg", "dnw": "dnw"}[self.kind]


@dataclass(frozen=True)
class PaperRow:
    """One row of DPF Table 3 (ResNet-50 on ImageNet, unstructured): accuracies in %, remaining params in M.
    ``quoted_from``: the row's numbers come from another paper (DSR: Mostafa & Wang 2019, Table 3 caption)."""

    method: str
    target: float
    reached: float
    remaining_params: float
    top1_dense: float
    top1_pruned: float
    top1_difference: float
    top5_dense: float
    top5_pruned: float
    top5_difference: float
    quoted_from: str = ""


def _load(path: Path = PAPER_FILE):
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    dnw = tuple(
        Table3Row(
            key=row["key"],
            name=row["name"],
            kind=row["kind"],
            width=row.get("width"),
            small=bool(row.get("small", False)),
            paper_params=row["params"],
            paper_flops=row["flops"],
            paper_top1=row["top1"],
            quoted=bool(row.get("quoted", False)),
            note=row.get("note", ""),
        )
        for row in raw["dnw_table3"]
    )
    dpf = raw["dpf_table3"]
    names = [f.name for f in fields(PaperRow)]
    if dpf["columns"] != names[: len(dpf["columns"])]:
        raise ValueError(f"{path}: dpf_table3.columns must be {names[:-1]}, got {dpf['columns']}")
    rows = tuple(PaperRow(*values) for values in dpf["rows"])  # a last value: quoted_from
    return dnw, rows, float(dpf["full_params_M"]) * 1e6


TABLE3_ROWS, PAPER_TABLE3, PAPER_FULL_PARAMS = _load()
assert len({row.key for row in TABLE3_ROWS}) == len(TABLE3_ROWS), "row keys must be unique"


def trainable_rows() -> list[str]:
    """Keys of the DNW Table 3 rows this repository trains (``quoted=False``), in the table's order."""
    return [row.key for row in TABLE3_ROWS if not row.quoted]


def quoted_rows() -> list[str]:
    """Keys of the DNW Table 3 rows quoted from the paper only."""
    return [row.key for row in TABLE3_ROWS if row.quoted]


def paper_rows(method: str | None = None, sparsity: float | None = None) -> list[PaperRow]:
    """The rows of DPF's :data:`PAPER_TABLE3` of ``method`` and/or target ``sparsity`` (``None``: any)."""
    return [
        r
        for r in PAPER_TABLE3
        if (method is None or r.method == method) and (sparsity is None or math.isclose(r.target, sparsity))
    ]
