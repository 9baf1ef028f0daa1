"""DNW Table 1's quoted numbers, read from ``paper.yaml`` beside this module (data, not code)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml

__all__ = ["PAPER_FILE", "table1"]

PAPER_FILE = Path(__file__).with_name("paper.yaml")


@cache
def table1() -> dict[tuple[str, str], tuple[float, float]]:
    """DNW Table 1: ``(setting, method) -> (mean, std)`` of test top-1 (%), 5 runs, 160 epochs, full CIFAR-10."""
    quoted = yaml.safe_load(PAPER_FILE.read_text(encoding="utf-8"))["table1"]
    return {
        (setting, method): (float(cell["mean"]), float(cell["std"]))
        for setting, methods in quoted.items()
        for method, cell in methods.items()
    }
