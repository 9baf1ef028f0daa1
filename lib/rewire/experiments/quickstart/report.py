"""The quickstart's outputs from an :class:`~rewire.experiments.base.Outcome` (presentation only).

Writes every file the ``quickstart`` stage of ``dvc.yaml`` declares, at every scale:
``summary.csv/.md`` (per seed, mean, std), ``precision_check.csv/.md`` (the precision claim, or one
line saying why it is not computed at this scale), ``curves.csv``, ``plot_accuracy.csv`` (the DVC
plot: evaluated epochs only), ``learning_curves.png``, ``metrics.json`` (headline numbers only:
what ``dvc metrics show`` prints), ``label.json`` and ``details.json`` (every other number).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from rewire.experiments.base import Outcome
from rewire.experiments.quickstart.config import Config
from rewire.io import write_json, write_text
from rewire.reporting import claims, plotting, results

__all__ = ["report", "runs_table", "per_seed_table", "precision_pairs", "HEADLINE"]

# metrics.json, what `dvc metrics show` prints: the keys every stage shares (tools/headline_metrics.py);
# the quickstart has no paper claim, so its one headline is its accuracy
HEADLINE = {"top1": "test_top1_mean"}  # headline key -> details.json key


def runs_table(outcome: Outcome) -> pd.DataFrame:
    """Each run: its row (precision), seed, directory and whether it trained now or was found by its hash."""
    return pd.DataFrame(
        [
            {"row": r.precision, "seed": r.seed, "run": r.result.run_dir.name, "trained now": r.result.trained_now}
            for r in outcome.runs
        ]
    )


def per_seed_table(runs) -> pd.DataFrame:
    """Final test accuracy, loss, throughput and data-loading share of each run."""
    return pd.DataFrame(
        [
            {
                "seed": run.seed,
                "test_top1": run.result.final["test_top1"],
                "test_top5": run.result.final["test_top5"],
                "test_loss": run.result.final["test_loss"],
                "images_per_s": run.result.final["images_per_second"],
                "data_share_pct": 100
                * sum(r["data_seconds"] for r in run.result.records)
                / sum(r["train_seconds"] for r in run.result.records),
            }
            for run in runs
        ]
    )


def precision_pairs(config: Config, outcome: Outcome) -> pd.DataFrame | None:
    """Per seed, top-1 and images/s at both precisions (None without the comparison runs)."""
    base = {run.seed: run for run in outcome.runs if run.precision == config.precision}
    other = {run.seed: run for run in outcome.runs if run.precision == config.compare_precision}
    seeds = [seed for seed in config.seeds if seed in base and seed in other]
    if not config.compare_precision or not seeds:
        return None
    a, b = config.compare_precision, config.precision
    pairs = pd.DataFrame(
        [
            {
                "seed": seed,
                f"top1_{b}": base[seed].result.final["test_top1"],
                f"top1_{a}": other[seed].result.final["test_top1"],
                f"images_per_s_{b}": base[seed].result.final["images_per_second"],
                f"images_per_s_{a}": other[seed].result.final["images_per_second"],
            }
            for seed in seeds
        ]
    )
    pairs["speedup"] = pairs[f"images_per_s_{a}"] / pairs[f"images_per_s_{b}"]
    return pairs


def _precision_check(config: Config, outcome: Outcome, out: Path, label: dict) -> tuple[str, dict[str, Any]]:
    """The claim "bf16 gives the same top-1 as fp32 within 1 point" (kind ``equivalent``) and the speed-up."""
    title = "Precision check"
    pairs = precision_pairs(config, outcome)
    if not config.compare_precision:
        return results.write_not_computed(
            out, "precision_check", "compare_precision is '' (no second precision)", title=title
        ), {}
    if pairs is None or len(pairs) < claims.MIN_SEEDS:
        found = 0 if pairs is None else len(pairs)
        why = f"{found} seed(s) trained at both precisions; an interval needs at least {claims.MIN_SEEDS}"
        return results.write_not_computed(out, "precision_check", why, title=title), {}
    a, b = config.compare_precision, config.precision
    seeds = list(pairs.seed)
    claim = claims.Claim(
        paper="this repository",
        claim=f"{a} training gives the same top-1 as {b} (within 1 point)",
        a_label=a,
        a=dict(zip(seeds, pairs[f"top1_{a}"])),
        b_label=b,
        b=dict(zip(seeds, pairs[f"top1_{b}"])),
        kind="equivalent",
        source="precision check",
    )
    table = claims.claims_frame([claim])
    speed = claims.interval(list(pairs.speedup))
    table["speedup_mean"], table["speedup_low"], table["speedup_high"] = speed
    table.to_csv(out / "precision_check.csv", index=False)
    text = claims.claims_markdown(
        table,
        title=f"{title}: {a} vs {b} ({len(seeds)} seeds, full test set)",
        caption=results.label_line(label)
        + f" · training speed-up {speed[0]:.2f}x [95 % CI {speed[1]:.2f}, {speed[2]:.2f}] (same run)",
    )
    write_text(out / "precision_check.md", text)
    row = table.iloc[0]
    found = {
        f"{a}_minus_{b}_top1": float(row["difference"]),
        f"{a}_minus_{b}_ci_low": float(row["ci_low"]),
        f"{a}_minus_{b}_ci_high": float(row["ci_high"]),
        f"{a}_speedup": float(row["speedup_mean"]),
        "precision_verdict": row["verdict"],
    }
    return text, found


def report(config: Config, outcome: Outcome, out_dir, label: dict[str, Any]) -> dict[str, float]:
    """Write the stage's outputs into ``out_dir``; return the headline metrics (``metrics.json``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = [run for run in outcome.runs if run.precision == config.precision]
    per_seed = per_seed_table(runs)
    summary = per_seed.copy()
    summary["seed"] = summary["seed"].astype(str)
    summary.loc[len(summary)] = ["mean"] + per_seed.drop(columns="seed").mean().tolist()
    if len(per_seed) > 1:
        summary.loc[len(summary)] = ["std"] + per_seed.drop(columns="seed").std().tolist()
    title = f"Quickstart: SmallConvNet(width={config.width}), {config.epochs} epochs"
    results.write_table(summary, out, "summary", label, title=title)

    _, precision = _precision_check(config, outcome, out, label)

    curves = pd.concat([pd.DataFrame(run.result.records).assign(seed=run.seed) for run in runs], ignore_index=True)
    fig = plotting.learning_curves(
        curves, label, title=f"Quickstart: SmallConvNet(width={config.width}) on {config.dataset}"
    )
    plotting.save_figure(fig, out / "learning_curves.png")
    curves[["seed", "epoch", "test_top1", "test_top5", "train_loss", "lr"]].to_csv(out / "curves.csv", index=False)
    # the DVC plot: one column per series (mean over seeds), evaluated epochs only
    evaluated = curves.dropna(subset=["test_top1", "test_top5"])
    plot = evaluated.groupby("epoch")[["test_top1", "test_top5"]].mean().add_suffix("_mean").reset_index()
    plot.to_csv(out / "plot_accuracy.csv", index=False)

    details = {
        "test_top1_mean": float(per_seed["test_top1"].mean()),
        "test_top1_std": float(per_seed["test_top1"].std()) if len(per_seed) > 1 else 0.0,
        "test_top5_mean": float(per_seed["test_top5"].mean()),
        "train_images_per_s": float(per_seed["images_per_s"].mean()),
        "data_loading_share_pct": float(per_seed["data_share_pct"].mean()),
        "epochs": config.epochs,
        "train_examples": outcome.extra.get("train_examples"),
        "test_examples": outcome.extra.get("test_examples"),
        "parameters": sum(p.numel() for p in runs[0].result.model.parameters()),
        "run_seconds": outcome.extra.get("run_seconds"),  # wall time of run(): short when runs were found again
        # training time of every run (both precisions) as its records hold it, found-again runs included
        "train_seconds": sum(r["train_seconds"] for run in outcome.runs for r in run.result.records),
        **precision,
    }
    headline = {key: details[source] for key, source in HEADLINE.items()}
    details.update(headline)
    results.write_metrics(out / "metrics.json", headline, label)
    write_json(out / "details.json", details)
    return headline
