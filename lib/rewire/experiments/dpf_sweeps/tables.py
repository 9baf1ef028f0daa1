"""The DPF sweeps' runs as tables (Lin et al. 2020): reading ``run.json``, one row per seed, the paper's layout.

:func:`load_runs` reads the ``run.json`` of every grid point and refuses points made at another scale
or with another recipe (stale results); :func:`per_seed` flattens them to one row per seed;
:func:`paper_table` lays the means out like the paper's Tables 1, 2 and 5 with the paper's numbers
for the same model beside them (``paper.yaml``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from rewire.experiments.base import Outcome
from rewire.experiments.dpf_sweeps import paper
from rewire.experiments.dpf_sweeps.claims import claims, table_runs
from rewire.experiments.dpf_sweeps.config import Config, GridPoint
from rewire.experiments.dpf_sweeps.runs import RUN_FILE, read_point

__all__ = [
    "PAPER_RESNET20",
    "TABLES",
    "point_dir",
    "load_runs",
    "outcome_from_runs",
    "per_seed",
    "paper_table",
    "mask_convergence",
    "lr_selection",
    "claims",
    "table_runs",
]

PAPER_RESNET20 = paper.PAPER_RESNET20

# Column order of the paper's tables.
TABLES = {
    "table1": ("dense", "snip", "sm", "dsr", "dpf"),
    # dpf_frozen: our variant (DPF's mask frozen once the ramp ends, rewire.methods.dpf), no paper number
    "table2": ("dense", "oneshot_ft", "incremental", "incremental_ft", "dpf", "dpf_ft", "dpf_frozen"),
    # *_bn: our variants (batch-norm statistics recomputed after the last step), no paper number
    "table5": ("dense", "sfp", "sfp_bn", "dpf_structured", "dpf_structured_bn"),
}


def point_dir(runs_dir: str | os.PathLike, method: str, sparsity: float, tag: str = "") -> Path:
    """Where the sweep writes the point (method, sparsity) of grid entry ``tag`` (as ``GridPoint.directory``)."""
    return GridPoint(method, sparsity, None, tag).directory(runs_dir)


def load_runs(runs_dir: str | os.PathLike, points: Sequence[GridPoint], *, scale: str) -> list[dict[str, Any]]:
    """Read every grid point; stop with advice if one is missing or was made at another scale or recipe."""
    loaded = []
    for grid_point in points:
        path = grid_point.directory(runs_dir) / RUN_FILE
        point = read_point(path)
        made_at = point.get("label", {}).get("scale")
        if made_at != scale:
            raise ValueError(
                f"{path} was made at scale {made_at!r}, this notebook runs at {scale!r}; "
                f"rerun the sweep (`dvc repro`) so both use the same scale"
            )
        expected = grid_point.recipe.as_dict()
        if point.get("recipe") != expected:
            differing = sorted(k for k in expected if point.get("recipe", {}).get(k) != expected[k])
            raise ValueError(
                f"{path} was made with another recipe (differing: {', '.join(differing)}); rerun the sweep (`dvc repro`)"
            )
        loaded.append({**point, "tag": grid_point.tag, "model": grid_point.recipe.model})
    return loaded


def outcome_from_runs(config: Config, runs_dir: str | os.PathLike, *, scale: str) -> Outcome:
    """The :class:`Outcome` of a sweep already run by the DVC stage ``dpf_runs`` (its ``run.json`` files)."""
    points = load_runs(runs_dir, config.points(), scale=scale)
    label = points[0]["label"] if points else {}
    source = {"kind": label.get("data_source", "unknown"), "description": label.get("data_source_description", "")}
    return Outcome(runs=points, data_source=source, extra={"label": label})


def per_seed(points: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per (grid entry, method, target sparsity, seed)."""
    rows = []
    for point in points:
        for run in point["runs"]:
            rows.append(
                {
                    "tag": point.get("tag", ""),
                    "model": point.get("model", point.get("recipe", {}).get("model", "")),
                    "method": point["method"],
                    "target": point["sparsity"],
                    "seed": run["seed"],
                    "structured": point["structured"],
                    "test_top1": run["test_top1"],
                    "val_top1": run.get("val_top1"),
                    "reached": run["sparsity"],
                    "filter_sparsity": run.get("filter_sparsity"),
                    "delta": run["delta"],
                    "mac_fraction": run["macs_sparse"] / run["macs_dense"],
                    "seconds_per_iteration": run["seconds_per_iteration"],
                    "train_lr": point.get("selected_lrs", {}).get("train"),
                    "finetune_lr": point.get("selected_lrs", {}).get("finetune"),
                }
            )
    return pd.DataFrame(rows)


def paper_table(runs: pd.DataFrame, methods: Sequence[str], sparsities: Sequence[float]) -> pd.DataFrame:
    """Long table: one row per (target sparsity, method present in ``runs``), our mean ± std beside the paper's."""
    rows = []
    for model in sorted(runs.model.unique()) if "model" in runs else ["resnet20"]:
        mine = runs[runs.model == model] if "model" in runs else runs
        rows += _paper_rows(mine, model, methods, sparsities)
    return pd.DataFrame(rows)


def _paper_rows(runs: pd.DataFrame, model: str, methods: Sequence[str], sparsities: Sequence[float]) -> list[dict]:
    rows = []
    dense = runs[runs.method == "dense"].drop_duplicates("seed").test_top1
    for sparsity in sparsities:
        for method in methods:
            ours = dense if method == "dense" else runs[(runs.method == method) & (runs.target == sparsity)].test_top1
            if ours.empty:
                continue
            structured = bool(runs[runs.method == method].structured.any()) if method != "dense" else False
            row = paper.paper_number(model, method, 0.0 if method == "dense" else sparsity, structured=structured)
            mean, std = (math.nan, math.nan) if row is None else (row["top1"], row.get("top1_std"))
            rows.append(
                {
                    "model": model,
                    "sparsity": sparsity,
                    "method": method,
                    "top1_mean": ours.mean(),
                    "top1_std": ours.std(ddof=1) if len(ours) > 1 else 0.0,
                    "runs": len(ours),
                    "paper_mean": mean,
                    "paper_std": math.nan if std is None else std,
                }
            )
    return rows


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


def lr_selection(points: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Every learning-rate candidate tried on the validation split, and which one won."""
    return pd.DataFrame([row for p in points for row in p.get("lr_selection", [])])
