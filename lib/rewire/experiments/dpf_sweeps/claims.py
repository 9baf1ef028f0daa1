"""The DPF paper's qualitative claims, decided on the runs of a sweep (Lin et al., ICLR 2020).

Each claim pairs two methods seed by seed at every target sparsity both were run at, model by model
(:func:`claims`); Figure 4's mask convergence and Figure 10's per-iteration overhead are judged
against a threshold. :func:`overhead_by_seed` is the one source of the overhead number: the claim
and the report's ``dpf_overhead_pct`` both read it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from rewire.experiments.dpf_sweeps.paper import CONVERGED_SHARE_PCT, OVERHEAD_PCT
from rewire.reporting.claims import Claim

__all__ = ["claims", "table_runs", "overhead_by_seed", "CONVERGED_SHARE_PCT", "OVERHEAD_PCT"]


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
    for s in unstructured:
        overhead = overhead_by_seed(runs, s)
        if len(overhead) >= 2:
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


def overhead_by_seed(runs: pd.DataFrame, sparsity: float) -> dict[int, float]:
    """DPF's per-iteration overhead over dense training (%, Figure 10), seed by seed:
    100 (t_dpf / t_dense - 1) with t the seconds per iteration of the run's main training phase."""
    dense_cost = _by_seed(runs, "dense", None, "seconds_per_iteration")
    dpf_cost = _by_seed(runs, "dpf", sparsity, "seconds_per_iteration")
    return {seed: 100.0 * (dpf_cost[seed] / dense_cost[seed] - 1.0) for seed in sorted(set(dense_cost) & set(dpf_cost))}
