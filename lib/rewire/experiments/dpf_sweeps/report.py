"""The DPF sweeps' report: every output of the DVC stage ``dpf_sweeps`` from an :class:`Outcome` (Lin et al. 2020).

:func:`report` writes the tables beside the paper's numbers (:mod:`.tables`), the claims
(:mod:`.claims`), the figures (:mod:`.figures`), DPF against Incremental across budgets
(:mod:`.regime`) and the plot data, at every scale (a table or claim
a scale cannot compute says why), and returns the headline metrics (``metrics.json``: verdict
counts and two accuracies; everything else in ``details.json``). Figure 10's overhead is measured here,
by one paired benchmark of dense and DPF steps in this process (:func:`overhead_benchmark`,
``overhead_pairs`` pairs), never read off the runs' wall times; the claim and ``dpf_overhead_pct`` read it.
Every claim's sides carry their runs' convergence (:func:`.claims.run_convergence`): a side at chance or
not converged leaves the claim "not decided" (``claims_not_decided`` counts every verdict that is neither
"holds" nor "reversed"); ``details.json`` keeps each claim's per-side words, the interval's own verdict
and every run's convergence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from rewire.experiments.base import Outcome
from rewire.experiments.dpf_sweeps.claims import claims, run_convergence, table_runs
from rewire.experiments.dpf_sweeps.config import Config, Recipe
from rewire.experiments.dpf_sweeps.overhead import OverheadBenchmark, benchmark_overhead
from rewire.experiments.dpf_sweeps.regime import write_budget_regime
from rewire.experiments.dpf_sweeps.tables import TABLES, lr_selection, paper_table, per_seed
from rewire.io import write_json
from rewire.reporting import claims as claims_module
from rewire.reporting import results

__all__ = ["TABLE_TITLES", "PLOT_SERIES", "HEADLINE", "plot_data", "overhead_benchmark", "report"]

TABLE_TITLES = {
    "table1": "DPF Tables 1 and 4: top-1 (%) trained from scratch (dense, SNIP, SM, DSR, DPF)",
    "table2": "DPF Table 2: top-1 (%) of simple pruning schemes and fine-tuning",
    "table5": "DPF Table 5: top-1 (%), structured filter pruning (SFP vs DPF)",
}
# The series of plot_accuracy_vs_sparsity.csv (dvc.yaml `plots`): every table method and the rewinds,
# always as columns (empty where this scale's grid has no such run), one row per target sparsity run.
PLOT_SERIES = (
    "dense", "dpf", "dpf_frozen", "dpf_ft", "dpf_rewind", "dpf_structured", "dpf_structured_bn", "dsr", "incremental", "incremental_ft",
    "lottery", "oneshot_ft", "sfp", "sfp_bn", "sm", "snip",
)  # fmt: skip
# metrics.json: the verdict counts, DPF's top-1 at the highest unstructured sparsity and the dense baseline's.
HEADLINE = ("claims_held", "claims_not_decided", "claims_reversed", "top1", "baseline_top1")


# --------------------------------------------------------------------- the stage's outputs


def _sparsities(runs: pd.DataFrame) -> tuple[list[float], list[float]]:
    unstructured = sorted(runs[~runs.structured & (runs.method != "dense")].target.unique())
    structured = sorted(runs[runs.structured].target.unique())
    return [float(s) for s in unstructured], [float(s) for s in structured]


def overhead_benchmark(config: Config, points, device=None) -> OverheadBenchmark | None:
    """Figure 10's paired benchmark at the recipe of the block's DPF point (the block's model, the highest
    sparsity; untagged points first), ``config.overhead_pairs`` pairs; ``None`` when the grid has no DPF."""
    from rewire.train.runtime import pick_device

    candidates = [p for p in points if p["method"] == "dpf"]
    if not candidates:
        return None
    point = max(
        candidates,
        key=lambda p: (p.get("model", config.model) == config.model, not p.get("tag"), p["sparsity"]),
    )
    recipe = Recipe.from_params(point["recipe"])
    return benchmark_overhead(
        recipe.model,
        hparams=recipe.hparams(),
        batch_size=recipe.batch_size,
        sparsity=point["sparsity"],
        pairs=config.overhead_pairs,
        update_every=recipe.update_every,
        num_classes=100 if recipe.dataset == "cifar100" else 10,
        device=pick_device(str(device) if device is not None else None),
    )


def _write_claims(
    out: Path, runs: pd.DataFrame, points, config: Config, label: dict, overhead: OverheadBenchmark | None
) -> pd.DataFrame:
    found = claims(runs, points, overhead, run_convergence(points))
    seeds = len(config.seeds)
    if found and seeds >= claims_module.MIN_SEEDS:
        table = claims_module.claims_frame(found)
        table.to_csv(out / "claims.csv", index=False)
        models = ", ".join(dict.fromkeys(runs.model)) if len(runs) else config.model
        text = claims_module.claims_markdown(
            table,
            title=f"DPF claims at the {label.get('scale', '?')} scale ({models}, {seeds} seeds, {runs.seed.nunique()} per method)",
            caption=results.label_line(label),
        )
    else:  # one seed (smoke) decides nothing: say so instead of a table
        table = pd.DataFrame(columns=["claim", "verdict"])
        table.to_csv(out / "claims.csv", index=False)
        text = (
            f"### DPF claims at the {label.get('scale', '?')} scale\n\nNot computed at this scale: {seeds} seed(s); "
            f"an interval needs at least {claims_module.MIN_SEEDS}.\n"
        )
    (out / "claims.md").write_text(text, encoding="utf-8")
    return table


def _write_tables(out: Path, runs: pd.DataFrame, label: dict) -> None:
    unstructured, structured = _sparsities(runs)
    levels = {"table1": unstructured, "table2": unstructured, "table5": structured}
    for name, title in TABLE_TITLES.items():
        table = paper_table(runs, TABLES[name], levels[name])
        if table.empty:  # not in this scale's grid: say so (the stage's outputs always exist)
            pd.DataFrame(columns=["model", "sparsity", "method", "top1_mean"]).to_csv(out / f"{name}.csv", index=False)
            (out / f"{name}.md").write_text(
                f"### {title}\n\nNot computed at this scale: the {label.get('scale', '?')} grid has none of its points.\n",
                encoding="utf-8",
            )
            continue
        results.write_table(table, out, name, label, title=title)


def plot_data(runs: pd.DataFrame, model: str) -> pd.DataFrame:
    """DVC's accuracy-vs-sparsity plot: one row per target sparsity run (dense at 0), one column per
    :data:`PLOT_SERIES` method (mean test top-1 over seeds; empty where the method has no run there)."""
    mine = runs[runs.model == model] if (runs.model == model).any() else runs
    wide = mine.groupby(["target", "method"]).test_top1.mean().unstack("method")
    wide = wide.reindex(columns=list(PLOT_SERIES)).reset_index().rename(columns={"target": "sparsity"})
    return wide.rename_axis(columns=None)


def report(config: Config, outcome: Outcome, out_dir, label: dict[str, Any]) -> dict[str, Any]:
    """Write every output of the stage into ``out_dir``; return the headline metrics (``metrics.json``)."""
    from rewire.experiments.dpf_sweeps import figures

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    points = outcome.runs
    all_runs = per_seed(points)
    all_runs.to_csv(out / "per_seed.csv", index=False)
    runs = table_runs(all_runs)  # the tables' and claims' runs; figure-only variants (tags fig*) aside
    overhead = overhead_benchmark(config, points, outcome.extra.get("device"))
    claims_table = _write_claims(
        out, runs, [p for p in points if not p.get("tag", "").startswith("fig")], config, label, overhead
    )
    _write_tables(out, runs, label)
    plot_data(runs, config.model).to_csv(out / "plot_accuracy_vs_sparsity.csv", index=False)
    figures.draw_all(config, points, all_runs, runs, out, label)
    write_budget_regime(points, out, label, config.model)  # DPF vs Incremental across budgets (issue 20)

    unstructured, _ = _sparsities(runs)
    top = max(unstructured) if unstructured else None
    means = runs.groupby(["method", "target"]).test_top1.mean()
    details: dict[str, Any] = {f"{m}_{s}_top1_mean": float(v) for (m, s), v in means.items()}
    for s in unstructured:
        for other in ("incremental", "snip", "oneshot_ft", "dpf_rewind", "sm", "dsr"):
            if ("dpf", s) in means.index and (other, s) in means.index:
                details[f"dpf_minus_{other}_{s}"] = float(means[("dpf", s)] - means[(other, s)])
    sparse = runs[~runs.structured & (runs.method != "dense")]
    details["max_abs_reached_minus_target"] = (
        float((sparse.reached - sparse.target).abs().max()) if len(sparse) else 0.0
    )
    # Figure 10: the paired benchmark's mean overhead, the number the overhead claim reads (claims.overhead_claim)
    details["dpf_overhead_pct"] = overhead.overhead_pct if overhead is not None else None
    details["dpf_overhead_ci_pct"] = list(overhead.interval_pct()) if overhead is not None else None
    details["dpf_overhead_sparsity"] = overhead.sparsity if overhead is not None else None
    details["dpf_overhead_benchmark"] = overhead.as_dict() if overhead is not None else None
    verdicts = claims_table["verdict"].tolist() if len(claims_table) else []
    headline = {
        "claims_held": verdicts.count("holds"),
        "claims_not_decided": len(verdicts) - verdicts.count("holds") - verdicts.count("reversed"),
        "claims_reversed": verdicts.count("reversed"),
        "top1": float(means[("dpf", top)]) if ("dpf", top) in means.index else None,
        "baseline_top1": float(runs[runs.method == "dense"].test_top1.mean())
        if (runs.method == "dense").any()
        else None,
    }
    details["dpf_top1_sparsity"] = top
    if len(claims_table):
        columns = ["claim", "difference", "ci_low", "ci_high", "verdict", "interval_verdict"]
        columns += ["a_converged", "a_convergence", "b_converged", "b_convergence", "convergence_test"]
        details["claims"] = claims_table[columns].to_dict("records")
    details["convergence"] = [
        {"model": model, "method": method, "sparsity": sparsity, "seed": seed, **result.as_dict()}
        for (model, method, sparsity, seed), result in run_convergence(
            [p for p in points if not p.get("tag", "").startswith("fig")]
        ).items()
    ]
    details["lr_selection"] = lr_selection(points).to_dict("records")
    results.write_metrics(out / "metrics.json", headline, label)
    write_json(out / "details.json", {**headline, **details})
    return headline
