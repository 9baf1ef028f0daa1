"""The numbers DNW Table 2 and Appendix Table 5 quote, read from ``paper.yaml`` beside this module.

Data, not code: the run engine leaves this module (and ``paper.yaml``) out of every run's code hash, so
correcting a quoted number never retrains a run.
"""

from __future__ import annotations

from pathlib import Path

import yaml

__all__ = ["PAPER_TABLE2", "PAPER_TABLE5", "load"]

PAPER_FILE = Path(__file__).with_name("paper.yaml")


def load(path: str | Path = PAPER_FILE) -> dict[str, dict[str, tuple[float, float]]]:
    """``{"table2": {row: (mean, std)}, "table5": {...}}`` from ``paper.yaml``."""
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    return {table: {key: (float(mean), float(std)) for key, (mean, std) in rows.items()} for table, rows in raw.items()}


_PAPER = load()
# DNW Table 2: CIFAR-10 test top-1 (%), mean ± std over 5 runs, 160 epochs
PAPER_TABLE2: dict[str, tuple[float, float]] = _PAPER["table2"]
# DNW Appendix B, Table 5: unconstrained (Table 2's rows) against regular targeted dropout
PAPER_TABLE5: dict[str, tuple[float, float]] = _PAPER["table5"]
