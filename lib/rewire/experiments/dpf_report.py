"""Tables of the DPF sweeps at any scale, beside the paper's numbers (Lin et al. 2020).

:func:`load_runs` reads the ``run.json`` of every (method, sparsity) point and refuses
points made at another scale or with another recipe (stale results). :func:`per_seed`
flattens them to one row per seed; :func:`paper_table` lays the means out like the
paper's Tables 1, 2 and 5 with the paper's ResNet-20 numbers beside them.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from rewire.experiments.dpf_sweep import RUN_FILE, GridPoint, read_point
from rewire.reporting.claims import Claim

__all__ = [
    "PAPER_RESNET20",
    "TABLES",
    "point_dir",
    "load_runs",
    "per_seed",
    "paper_table",
    "mask_convergence",
    "claims",
    "CONVERGED_SHARE_PCT",
    "OVERHEAD_PCT",
]

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
                f"{path} was made with another recipe (differing: {', '.join(differing)}); "
                f"rerun the sweep (`dvc repro`)"
            )
        loaded.append({**point, "tag": grid_point.tag, "model": grid_point.recipe.model})
    return loaded


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
            paper = _paper_value(model, method, 0.0 if method == "dense" else sparsity, structured)
            rows.append(
                {
                    "model": model,
                    "sparsity": sparsity,
                    "method": method,
                    "top1_mean": ours.mean(),
                    "top1_std": ours.std(ddof=1) if len(ours) > 1 else 0.0,
                    "runs": len(ours),
                    "paper_mean": paper[0],
                    "paper_std": paper[1],
                }
            )
    return rows


def _paper_value(model: str, method: str, sparsity: float, structured: bool) -> tuple[float, float]:
    try:
        from rewire.experiments import dpf_paper
    except ImportError:  # pragma: no cover - the per-model numbers are optional
        dpf_paper = None
    if dpf_paper is not None:
        row = dpf_paper.paper_number(model, method, sparsity, structured=structured)
        if row is not None:
            std = row.get("top1_std")
            return row["top1"], math.nan if std is None else std
    if model == "resnet20":
        return PAPER_RESNET20.get((method, 0.0 if method == "dense" else sparsity), (math.nan, math.nan))
    return math.nan, math.nan


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


# --------------------------------------------------------------------- claims

# Figure 4: "except for a small percentage of weights that keep oscillating, the mask has converged
# early" (after epoch 157 of 200 only 5 % of mask elements were changing, at 95 % sparsity).
CONVERGED_SHARE_PCT = 5.0
# Figure 10: "trivial computational overhead"; this repository reads trivial as below 5 % per iteration.
OVERHEAD_PCT = 5.0


def _by_seed(runs: pd.DataFrame, method: str, sparsity: float | None, column: str = "test_top1") -> dict[int, float]:
    rows = runs[runs.method == method]
    if sparsity is not None:
        rows = rows[rows.target == sparsity]
    rows = rows.drop_duplicates("seed")
    return {int(s): float(v) for s, v in zip(rows.seed, rows[column])}


def table_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs the tables and claims read: every grid entry except the figure-only variants (tags
    ``fig*``, e.g. Figure 9's other periods), one row per (model, method, sparsity, seed)."""
    if "tag" in runs:
        runs = runs[~runs.tag.fillna("").str.startswith("fig")]
    keys = [k for k in ("model", "method", "target", "seed") if k in runs]
    return runs.drop_duplicates(keys).reset_index(drop=True)


def claims(runs: pd.DataFrame, points: Sequence[dict[str, Any]] = ()) -> list[Claim]:
    """The DPF paper's qualitative claims that the runs in ``runs`` (:func:`per_seed`) can decide.

    Each claim pairs the two methods by seed at every target sparsity both were run at, model by
    model (the model is named in the claim when there are several). ``points`` (the loaded
    ``run.json`` files) give Figure 4's mask-convergence curves.
    """
    runs = table_runs(runs)
    models = list(dict.fromkeys(runs.model)) if "model" in runs else [None]
    found: list[Claim] = []
    for model in models:
        mine = runs if model is None else runs[runs.model == model]
        points_of = list(
            {
                (p["method"], p["sparsity"]): p
                for p in points
                if (model is None or p.get("model", model) == model) and not p.get("tag", "").startswith("fig")
            }.values()
        )
        for claim in _model_claims(mine, points_of):
            if len(models) > 1:
                claim = dataclasses.replace(claim, claim=f"{claim.claim} [{model}]")
            found.append(claim)
    return found


def _model_claims(runs: pd.DataFrame, points: Sequence[dict[str, Any]]) -> list[Claim]:
    found: list[Claim] = []
    unstructured = sorted(runs[~runs.structured & (runs.method != "dense")].target.unique())
    structured = sorted(runs[runs.structured].target.unique())

    def pair(paper, words, a, b, sparsity, kind, source):
        a_values, b_values = _by_seed(runs, a, sparsity), _by_seed(runs, b, sparsity)
        if len(set(a_values) & set(b_values)) >= 2:
            at = f" at {sparsity:g}" if sparsity else ""
            found.append(Claim(paper, words + at, f"{a}{at}", a_values, f"{b}{at}", b_values, kind=kind, source=source))

    for s in unstructured:
        pair("DPF", "DPF beats SNIP", "dpf", "snip", s, "greater", "Table 1")
        pair(
            "DPF",
            "DPF is at least as good as Incremental (no feedback)",
            "dpf",
            "incremental",
            s,
            "at_least",
            "Table 2",
        )
        pair("DPF", "DPF is at least as good as One-shot P+FT", "dpf", "oneshot_ft", s, "at_least", "Table 2")
        if s >= 0.9:
            pair("DPF", "fine-tuning DPF's model helps at high sparsity", "dpf_ft", "dpf", s, "at_least", "Table 2")
        pair(
            "DPF",
            "DPF's mask retrained from initialisation is worse than DPF",
            "dpf",
            "dpf_rewind",
            s,
            "greater",
            "Figure 5",
        )
    for s in structured:
        pair("DPF", "structured DPF is at least as good as SFP", "dpf_structured", "sfp", s, "at_least", "Table 5")
    for point in points:
        if point["method"] != "dpf":
            continue
        ramp_end = max(1, math.floor(point["recipe"]["milestones"][1] * point["recipe"]["epochs"]))
        shares = {
            int(run["seed"]): 100.0 * run["mask_convergence"][ramp_end]
            for run in point["runs"]
            if len(run.get("mask_convergence", [])) > ramp_end
        }
        if len(shares) >= 2:
            found.append(
                Claim(
                    "DPF",
                    f"DPF's mask has converged once the sparsity ramp ends (share still changing after epoch "
                    f"{ramp_end} of {point['recipe']['epochs']}, {point['sparsity']:g})",
                    "% of mask entries flipping later",
                    shares,
                    kind="below",
                    threshold=CONVERGED_SHARE_PCT,
                    unit="%",
                    source="Figure 4",
                )
            )
    dense_cost = _by_seed(runs, "dense", None, "seconds_per_iteration")
    for s in unstructured:
        dpf_cost = _by_seed(runs, "dpf", s, "seconds_per_iteration")
        common = sorted(set(dense_cost) & set(dpf_cost))
        if len(common) >= 2:
            overhead = {seed: 100.0 * (dpf_cost[seed] / dense_cost[seed] - 1.0) for seed in common}
            found.append(
                Claim(
                    "DPF",
                    f"DPF's per-iteration overhead over dense training is trivial (at {s:g})",
                    "overhead %",
                    overhead,
                    kind="below",
                    threshold=OVERHEAD_PCT,
                    unit="%",
                    source="Figure 10",
                )
            )
    return found
