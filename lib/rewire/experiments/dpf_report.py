"""Tables of the DPF sweeps at any scale, beside the paper's numbers (Lin et al. 2020).

:func:`load_runs` reads the ``run.json`` of every (method, sparsity) point and refuses
points made at another scale or with another recipe (stale results). :func:`per_seed`
flattens them to one row per seed; :func:`paper_table` lays the means out like the
paper's Tables 1, 2 and 5 with the paper's ResNet-20 numbers beside them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from rewire.experiments.dpf_sweep import RUN_FILE, Recipe, read_point

__all__ = ["PAPER_RESNET20", "TABLES", "point_dir", "load_runs", "per_seed", "paper_table", "mask_convergence"]

NOT_CONVERGED = float("nan")  # the paper's "*": the method did not converge

# Top-1 test accuracy (%) of ResNet-20 on CIFAR-10, mean and std over three runs:
# (method, sparsity) -> (mean, std). Dense: 92.48 ± 0.20 in every table.
PAPER_RESNET20: dict[tuple[str, float], tuple[float, float]] = {
    ("dense", 0.0): (92.48, 0.20),
    # Table 1 / Table 4 (unstructured, trained from scratch)
    ("snip", 0.7): (91.10, 0.22),
    ("sm", 0.7): (91.98, 0.01),
    ("dsr", 0.7): (92.00, 0.19),
    ("dpf", 0.7): (92.42, 0.14),
    ("snip", 0.8): (90.53, 0.27),
    ("sm", 0.8): (91.54, 0.16),
    ("dsr", 0.8): (91.78, 0.28),
    ("dpf", 0.8): (92.17, 0.21),
    ("snip", 0.9): (88.50, 0.13),
    ("sm", 0.9): (89.76, 0.40),
    ("dsr", 0.9): (87.88, 0.04),
    ("dpf", 0.9): (90.88, 0.07),
    ("snip", 0.95): (84.91, 0.25),
    ("sm", 0.95): (83.03, 0.74),
    ("dsr", 0.95): (NOT_CONVERGED, NOT_CONVERGED),
    ("dpf", 0.95): (88.01, 0.30),
    # Table 2 (simple pruning techniques; FT = 60 extra epochs)
    ("oneshot_ft", 0.9): (90.18, 0.12),
    ("incremental", 0.9): (90.55, 0.38),
    ("incremental_ft", 0.9): (90.54, 0.25),
    ("dpf_ft", 0.9): (91.76, 0.12),
    ("oneshot_ft", 0.95): (86.91, 0.16),
    ("incremental", 0.95): (89.21, 0.10),
    ("incremental_ft", 0.95): (89.24, 0.28),
    ("dpf_ft", 0.95): (90.34, 0.31),
    # Table 5 (structured: share of filters pruned)
    ("sfp", 0.1): (92.18, 0.31),
    ("dpf_structured", 0.1): (92.54, 0.07),
    ("sfp", 0.2): (91.12, 0.20),
    ("dpf_structured", 0.2): (91.90, 0.06),
    ("sfp", 0.3): (90.32, 0.25),
    ("dpf_structured", 0.3): (91.07, 0.40),
    ("sfp", 0.4): (89.60, 0.46),
    ("dpf_structured", 0.4): (90.28, 0.26),
}

# Column order of the paper's tables.
TABLES = {
    "table1": ("dense", "snip", "sm", "dsr", "dpf"),
    "table2": ("dense", "oneshot_ft", "incremental", "incremental_ft", "dpf", "dpf_ft"),
    "table5": ("dense", "sfp", "dpf_structured"),
}


def point_dir(runs_dir: str | os.PathLike, method: str, sparsity: float) -> Path:
    """Where the stage of (method, sparsity) writes: ``runs_dir/<method>-<sparsity>`` (as in dvc.yaml)."""
    return Path(runs_dir) / f"{method}-{sparsity}"


def load_runs(
    runs_dir: str | os.PathLike, grid: Sequence[tuple[str, float]], *, scale: str, recipe: Recipe
) -> list[dict[str, Any]]:
    """Read every point of ``grid``; stop with advice if one is missing or was made at another scale or recipe."""
    points = []
    for method, sparsity in grid:
        path = point_dir(runs_dir, method, sparsity) / RUN_FILE
        point = read_point(path)
        made_at = point.get("label", {}).get("scale")
        if made_at != scale:
            raise ValueError(
                f"{path} was made at scale {made_at!r}, this notebook runs at {scale!r}; "
                f"rerun the sweep (`dvc repro`) so both use the same scale"
            )
        if point.get("recipe") != recipe.as_dict():
            differing = sorted(k for k in recipe.as_dict() if point.get("recipe", {}).get(k) != recipe.as_dict()[k])
            raise ValueError(
                f"{path} was made with another recipe (differing: {', '.join(differing)}); "
                f"rerun the sweep (`dvc repro`)"
            )
        points.append(point)
    return points


def per_seed(points: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per (method, target sparsity, seed); the dense baseline appears once per seed."""
    rows, seen_dense = [], set()
    for point in points:
        for run in point["runs"]:
            if point["method"] == "dense":
                if run["seed"] in seen_dense:
                    continue
                seen_dense.add(run["seed"])
            rows.append(
                {
                    "method": point["method"],
                    "target": point["sparsity"],
                    "seed": run["seed"],
                    "structured": point["structured"],
                    "test_top1": run["test_top1"],
                    "reached": run["sparsity"],
                    "filter_sparsity": run.get("filter_sparsity"),
                    "delta": run["delta"],
                    "mac_fraction": run["macs_sparse"] / run["macs_dense"],
                    "seconds_per_iteration": run["seconds_per_iteration"],
                }
            )
    return pd.DataFrame(rows)


def paper_table(runs: pd.DataFrame, methods: Sequence[str], sparsities: Sequence[float]) -> pd.DataFrame:
    """Long table: one row per (target sparsity, method present in ``runs``), our mean ± std beside the paper's."""
    rows = []
    dense = runs[runs.method == "dense"].test_top1
    for sparsity in sparsities:
        for method in methods:
            ours = dense if method == "dense" else runs[(runs.method == method) & (runs.target == sparsity)].test_top1
            if ours.empty:
                continue
            paper = PAPER_RESNET20.get((method, 0.0 if method == "dense" else sparsity), (math.nan, math.nan))
            rows.append(
                {
                    "sparsity": sparsity,
                    "method": method,
                    "top1_mean": ours.mean(),
                    "top1_std": ours.std(ddof=1) if len(ours) > 1 else 0.0,
                    "runs": len(ours),
                    "paper_mean": paper[0],
                    "paper_std": paper[1],
                }
            )
    return pd.DataFrame(rows)


def mask_convergence(points: Sequence[dict[str, Any]], method: str = "dpf") -> pd.DataFrame:
    """DPF Figure 4 in long form: epoch, target sparsity, seed, share of mask entries still changing after it."""
    rows = []
    for point in points:
        if point["method"] != method:
            continue
        for run in point["runs"]:
            for epoch, share in enumerate(run.get("mask_convergence", [])):
                rows.append({"epoch": epoch, "target": point["sparsity"], "seed": run["seed"], "still_changing": share})
    return pd.DataFrame(rows)
