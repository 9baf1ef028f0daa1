"""The benchmark's outputs from an :class:`~rewire.experiments.base.Outcome` (presentation only).

Writes every file the ``benchmark`` stage of ``dvc.yaml`` declares, at every scale:

* ``ranking.csv/.md``: per sparsity, the methods by mean test top-1 with a 95 % Student-t interval over seeds,
  and the paired per-seed differences against dense and against the best method, each with its interval
  (:func:`rewire.reporting.claims.interval`; under two seeds the intervals are empty);
* ``cost.csv/.md``: each method's training cost per step relative to dense (the paired benchmark of
  :mod:`rewire.experiments.benchmark.timing`), the epochs it trains in all its phases, its whole training cost
  in dense epochs (dense phases at 1, sparse phases at the method's ratio), its inference MACs;
* ``curves.csv``: every run's training loss, validation and test top-1 per epoch (a convergence test reads it);
* ``accuracy_vs_cost.png``: mean top-1 against training cost;
* ``metrics.json`` (headline: ``top1`` of the best sparse method at the first sparsity, ``baseline_top1`` of
  dense), ``label.json`` and ``details.json`` (every other number).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from rewire.experiments.base import Outcome
from rewire.experiments.benchmark.config import LABELS, Config
from rewire.experiments.benchmark.timing import cost_ratios
from rewire.io import write_json
from rewire.reporting import claims, plotting, results
from rewire.reporting.convergence import DEFAULT_CHANCE_MARGIN_PTS, ConvergenceTest, chance_margin

__all__ = [
    "report",
    "results_frame",
    "ranking",
    "convergence_frame",
    "with_convergence",
    "cost_table",
    "curves_frame",
    "accuracy_vs_cost",
    "HEADLINE",
    "CONVERGENCE",
]

CONVERGENCE = ConvergenceTest()  # the stated test of rewire.reporting.convergence, on each run's last phase
CLASSES = {"cifar10": 10, "cifar100": 100}

HEADLINE = {"top1": "best_sparse_top1_mean", "baseline_top1": "dense_top1_mean"}  # headline key -> details key


def results_frame(outcome: Outcome) -> pd.DataFrame:
    """One row per run: method, sparsity, seed, final test and validation top-1, reached sparsity, MACs."""
    columns = ["method", "sparsity", "seed", "test_top1", "val_top1", "reached_sparsity", "macs_sparse", "macs_dense"]
    return pd.DataFrame([{key: run[key] for key in columns} for run in outcome.runs], columns=columns)


def _interval(values: list[float]) -> tuple[float, float, float]:
    if len(values) >= claims.MIN_SEEDS:
        return claims.interval(values)
    return (values[0] if values else float("nan")), float("nan"), float("nan")


def _paired(a: dict[int, float], b: dict[int, float]) -> tuple[float, float, float]:
    seeds = sorted(set(a) & set(b))
    return _interval([a[s] - b[s] for s in seeds])


def ranking(frame: pd.DataFrame, metric: str = "test_top1") -> pd.DataFrame:
    """Per sparsity, the sparse methods ranked by mean ``metric`` (ties: the earlier row), dense first.

    ``frame`` has columns ``method``, ``sparsity``, ``seed`` and ``metric`` (dense's rows: method ``dense``). Each
    row: the mean and 95 % interval over seeds, and the paired per-seed differences against dense and against the
    best method of its sparsity (on the seeds both have), each a mean and 95 % interval."""
    by_seed = {
        key: dict(zip(group["seed"], group[metric])) for key, group in frame.groupby(["method", "sparsity"], sort=False)
    }
    dense = next((v for (m, _), v in by_seed.items() if m == "dense"), None)
    if dense is None:
        raise ValueError("the ranking compares with dense: the frame has no 'dense' row")
    rows = []

    def row(method, sparsity, rank, values, best):
        mean, low, high = _interval(list(values.values()))
        vs_dense, vs_best = _paired(values, dense), _paired(values, best)
        return {
            "sparsity": sparsity,
            "rank": rank,
            "method": method,
            "label": LABELS.get(method, method),
            "seeds": len(values),
            "top1_mean": mean,
            "top1_low": low,
            "top1_high": high,
            "vs_dense": vs_dense[0],
            "vs_dense_low": vs_dense[1],
            "vs_dense_high": vs_dense[2],
            "vs_best": vs_best[0],
            "vs_best_low": vs_best[1],
            "vs_best_high": vs_best[2],
        }

    sparsities = list(dict.fromkeys(s for (m, s) in by_seed if m != "dense"))
    for sparsity in sparsities:
        block = {m: v for (m, s), v in by_seed.items() if s == sparsity and m != "dense"}
        means = {m: math.fsum(v.values()) / len(v) for m, v in block.items()}
        order = sorted(block, key=lambda m: -means[m])  # sorted is stable: ties keep the frame's order
        best = block[order[0]]
        rows.append(row("dense", sparsity, None, dense, best))
        rows += [row(m, sparsity, rank, block[m], best) for rank, m in enumerate(order, 1)]
    return pd.DataFrame(rows)


def convergence_frame(outcome: Outcome, dataset: str = "cifar10", test: ConvergenceTest = CONVERGENCE) -> pd.DataFrame:
    """One row per run: did its last phase converge by ``test`` (validation top-1 first), and is it at chance
    (the final test top-1 against 100 / classes plus three binomial standard deviations on the test images)."""
    classes = CLASSES.get(dataset, 10)
    test_examples = outcome.extra.get("test_examples")
    margin = chance_margin(classes, int(test_examples)) if test_examples else DEFAULT_CHANCE_MARGIN_PTS
    validation_examples = outcome.extra.get("validation_examples") or None  # the held-out accuracy's images
    rows = []
    for run in outcome.runs:
        history = run.get("history") or []
        last = history[-1].get("phase") if history else None
        records = [r for r in history if r.get("phase") == last]
        verdict = test.judge(
            records, num_classes=classes, chance_margin_pts=margin, accuracy_examples=validation_examples
        )
        rows.append(
            {"method": run["method"], "sparsity": run["sparsity"], "seed": run["seed"], "converged": verdict.converged,
             "at_chance": verdict.at_chance, "reason": verdict.reason}
        )  # fmt: skip
    return pd.DataFrame(rows, columns=["method", "sparsity", "seed", "converged", "at_chance", "reason"])


def with_convergence(table: pd.DataFrame, convergence: pd.DataFrame) -> pd.DataFrame:
    """The ranking with ``converged`` ("2/3": runs that converged of the row's runs) and ``at_chance`` counts:
    a row whose runs did not converge ranks an under-trained method, not the method."""
    counts = {}
    for (method, sparsity), group in convergence.groupby(["method", "sparsity"]):
        counts[(method, sparsity)] = (
            int(group["converged"].sum()),
            int(group["at_chance"].fillna(False).sum()),
            len(group),
        )
    out = table.copy()
    dense_rows = convergence[convergence.method == "dense"]
    dense = (int(dense_rows["converged"].sum()), int(dense_rows["at_chance"].fillna(False).sum()), len(dense_rows))
    found = [dense if m == "dense" else counts.get((m, s), (0, 0, 0)) for m, s in zip(out["method"], out["sparsity"])]
    out["converged"] = [f"{c}/{n}" for c, _, n in found]
    out["at_chance"] = [f"{a}/{n}" for _, a, n in found]
    return out


def cost_table(ratios: pd.DataFrame, outcome: Outcome, sparsity: float) -> pd.DataFrame:
    """Per method (at ``sparsity``): its step-cost ratio with interval, epochs trained in all phases, the whole
    training cost in dense epochs (dense phases count 1 per epoch, sparse phases the ratio), inference MACs."""
    rows = []
    ratio = ratios.set_index("method")
    for method in ratio.index:
        runs = [r for r in outcome.runs if r["method"] == method and (method == "dense" or r["sparsity"] == sparsity)]
        if not runs:
            continue
        phases = runs[0]["phases"]
        dense_epochs = sum(p["epochs"] for p in phases if p["name"] == "dense")
        sparse_epochs = sum(p["epochs"] for p in phases if p["name"] != "dense")
        cost = ratio.loc[method, "cost_ratio"]
        macs = sum(r["macs_sparse"] for r in runs) / len(runs)
        rows.append(
            {
                "method": method,
                "label": LABELS.get(method, method),
                "step_cost_vs_dense": cost,
                "step_cost_low": ratio.loc[method, "cost_low"],
                "step_cost_high": ratio.loc[method, "cost_high"],
                "epochs_total": dense_epochs + sparse_epochs,
                "training_cost_dense_epochs": dense_epochs + sparse_epochs * cost,
                "inference_macs": macs,
                "macs_vs_dense": macs / runs[0]["macs_dense"],
                "reached_sparsity": sum(r["reached_sparsity"] for r in runs) / len(runs),
            }
        )
    return pd.DataFrame(rows)


def curves_frame(outcome: Outcome) -> pd.DataFrame:
    """Every run's per-epoch history (phase, epoch, training loss, validation and test top-1), one row per epoch."""
    rows = [
        {"method": run["method"], "sparsity": run["sparsity"], "seed": run["seed"], **epoch}
        for run in outcome.runs
        for epoch in run["history"]
    ]
    return pd.DataFrame(rows)


def accuracy_vs_cost(table: pd.DataFrame, costs: pd.DataFrame, label: dict[str, Any], title: str):
    """Mean test top-1 (bars: 95 % interval over seeds) against the whole training cost in dense epochs."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    merged = table.merge(costs[["method", "training_cost_dense_epochs"]], on="method", how="inner")
    fig, ax = plt.subplots(figsize=(8, 5))
    for index, (sparsity, group) in enumerate(merged.groupby("sparsity", sort=False)):
        sparse = group[group.method != "dense"]
        low = (sparse.top1_mean - sparse.top1_low).fillna(0)
        high = (sparse.top1_high - sparse.top1_mean).fillna(0)
        ax.errorbar(sparse.training_cost_dense_epochs, sparse.top1_mean, yerr=[low, high], fmt="o", capsize=3,
                    color=f"C{index}", label=f"sparsity {sparsity:g}")  # fmt: skip
        for _, r in sparse.iterrows():
            ax.annotate(r.method, (r.training_cost_dense_epochs, r.top1_mean), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")  # fmt: skip
    dense = merged[merged.method == "dense"].iloc[0]
    ax.scatter([dense.training_cost_dense_epochs], [dense.top1_mean], marker="*", s=160, color="k", label="dense")
    ax.set(xlabel="training cost (dense-network epochs)", ylabel="test top-1 (%)", title=title)
    ax.legend(fontsize=8)
    fig.text(0.5, -0.02, plotting.caption(label), ha="center", fontsize=8, color="0.35")
    fig.tight_layout()
    return fig


def _clean(value):
    return None if isinstance(value, float) and math.isnan(value) else value


def _reductions(config: Config, outcome: Outcome) -> str:
    """The network and budget in one line (every reduction from the paper recipe is visible here)."""
    width = f" width {config.width}" if config.width else ""
    return (
        f"{config.model}{width} · {outcome.extra.get('train_examples')} training / "
        f"{outcome.extra.get('validation_examples')} validation / {outcome.extra.get('test_examples')} test images · "
        f"{config.epochs} epochs per phase, batch {config.batch_size}, lr {config.lr:g} (÷{1 / config.gamma:g} at "
        f"{', '.join(f'{m:g}' for m in config.milestones)} of training) · {config.precision} · no lr search"
    )


def report(config: Config, outcome: Outcome, out_dir, label: dict[str, Any]) -> dict[str, float]:
    """Write the stage's outputs into ``out_dir``; return the headline metrics (``metrics.json``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frame = results_frame(outcome)
    convergence = convergence_frame(outcome, config.dataset)
    table = with_convergence(ranking(frame), convergence)
    budget = _reductions(config, outcome)
    seeds = len(config.seeds)
    results.write_table(
        table,
        out,
        "ranking",
        label,
        title=f"Benchmark: every method at the same budget ({seeds} seeds) · {budget} · converged: "
        f"{CONVERGENCE.describe()}",
    )
    ratios = cost_ratios(outcome.extra["step_seconds"])
    first = config.sparsities[0]
    costs = cost_table(ratios, outcome, first)
    note = (
        f"step cost: {config.timing_rounds} interleaved rounds of {config.timing_steps} steps per method at "
        f"sparsity {first:g}, same process, on {label['device']}"
    )
    results.write_table(costs, out, "cost", label, title=f"Training cost relative to dense and inference MACs · {note}")
    curves_frame(outcome).to_csv(out / "curves.csv", index=False)
    fig = accuracy_vs_cost(table, costs, label, f"Accuracy against training cost · {config.model}")
    plotting.save_figure(fig, out / "accuracy_vs_cost.png")

    best = table[(table["sparsity"] == first) & (table["rank"] == 1)].iloc[0]
    dense = table[(table["sparsity"] == first) & (table["method"] == "dense")].iloc[0]
    details: dict[str, Any] = {
        "best_sparse_method": best["method"],
        "best_sparse_top1_mean": float(best["top1_mean"]),
        "dense_top1_mean": float(dense["top1_mean"]),
        "sparsities": list(config.sparsities),
        "seeds": list(config.seeds),
        "epochs": config.epochs,
        "budget": budget,
        "train_examples": outcome.extra.get("train_examples"),
        "validation_examples": outcome.extra.get("validation_examples"),
        "test_examples": outcome.extra.get("test_examples"),
        "runs": len(outcome.runs),
        "train_seconds": outcome.extra.get("train_seconds"),
        "run_seconds": outcome.extra.get("run_seconds"),
        "timing": note,
        "convergence_test": CONVERGENCE.describe(),
        "convergence": convergence.to_dict(orient="records"),
    }
    for _, r in table[table.method != "dense"].iterrows():
        key = f"{r['method']}_{r['sparsity']:g}"
        details[f"{key}_top1_mean"] = _clean(float(r["top1_mean"]))
        details[f"{key}_vs_dense"] = _clean(float(r["vs_dense"]))
        details[f"{key}_rank"] = int(r["rank"])
    for _, r in costs.iterrows():
        details[f"{r['method']}_step_cost_vs_dense"] = _clean(float(r["step_cost_vs_dense"]))
        details[f"{r['method']}_training_cost_dense_epochs"] = _clean(float(r["training_cost_dense_epochs"]))
        details[f"{r['method']}_macs_vs_dense"] = _clean(float(r["macs_vs_dense"]))
    headline = {key: details[source] for key, source in HEADLINE.items()}
    details.update(headline)
    results.write_metrics(out / "metrics.json", headline, label)
    write_json(out / "details.json", details)
    return headline
