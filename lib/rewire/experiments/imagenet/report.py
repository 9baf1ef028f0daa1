"""The ImageNet tables' outputs from an :class:`~rewire.experiments.base.Outcome` (presentation only).

Writes every file the ``imagenet`` stage of ``dvc.yaml`` declares, at every scale: ``table3.csv``/``.md`` (DNW:
the counter's params and multiply-adds of every row, trained or not, beside the paper's, with the trained
rows' top-1), ``dpf_table3.csv``/``.md`` (top-1 and reached sparsity beside the paper's; empty with a title
saying so when no point trained), ``figure10.csv``/``.png`` (DPF against dense SGD: top-1 per epoch and
seconds per epoch; a frame saying "not computed at this scale" without runs), ``metrics.json`` (headline
numbers only: ``top1`` = DNW x0.225's top-1 when it trained, else nothing), ``label.json`` and ``details.json``
(rows and points trained, every trained row's top-1, the DPF rows and the curves).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rewire.experiments.base import Outcome
from rewire.experiments.imagenet.config import Config
from rewire.experiments.imagenet.paper import paper_rows
from rewire.io import write_json

__all__ = ["report", "HEADLINE_ROW", "NOT_COMPUTED"]

# the DNW Table 3 row whose trained top-1 is a headline number: MobileNetV1-DNW x0.225 (the paper's 60.9 %)
HEADLINE_ROW = "dnw_x225"
NOT_COMPUTED = "not computed at this scale: no ImageNet run (params: imagenet.data)"
DPF_COLUMNS = ["method", "target", "seed", "top1", "top5", "reached_overall", "remaining_params_M", "paper_top1"]
DPF_COLUMNS += ["paper_reached", "epochs"]
CURVE_COLUMNS = ["method", "sparsity", "seed", "epoch", "test_top1", "train_seconds"]


def _table3(outcome: Outcome) -> pd.DataFrame:
    """Every DNW Table 3 row's counts (:func:`~.dnw.table3_counts`) with the trained rows' mean top-1 and counts."""
    from rewire.experiments.imagenet.dnw import table3_counts

    counts = pd.DataFrame([count.as_dict() for count in table3_counts()])
    for column in ("trained_top1_mean", "trained_flops_M", "trained_params_M"):
        counts[column] = np.nan
    for key in outcome.extra["trained_dnw_rows"]:
        runs = [result.summary() for (row, _), result in outcome.extra["dnw"].items() if row == key]
        where = counts.row == key
        counts.loc[where, "trained_top1_mean"] = float(np.mean([r["top1"] for r in runs]))
        counts.loc[where, "trained_flops_M"] = float(np.mean([r["flops_M"] for r in runs]))
        counts.loc[where, "trained_params_M"] = float(np.mean([r["params_M"] for r in runs]))
    return counts


def _dpf_table3(outcome: Outcome) -> pd.DataFrame:
    """One row per trained DPF point and seed, beside DPF Table 3 (the dense row: the table's dense top-1)."""
    rows = []
    for (method, sparsity, seed), summary in outcome.extra["dpf"].items():
        paper = summary["paper"][0] if summary["paper"] else {}
        if method == "dense":  # Table 3 prints the dense model's accuracy in every row
            paper = {"top1_pruned": paper_rows()[0].top1_dense, "reached": 0.0}
        rows.append(
            {
                "method": method,
                "target": sparsity,
                "seed": seed,
                "top1": summary["top1"],
                "top5": summary["top5"],
                "reached_overall": summary["reached_overall"],
                "remaining_params_M": summary["remaining_params"] / 1e6,
                "paper_top1": paper.get("top1_pruned"),
                "paper_reached": paper.get("reached"),
                "epochs": summary["epochs"],
            }
        )
    return pd.DataFrame(rows, columns=DPF_COLUMNS)


def _curves(outcome: Outcome) -> pd.DataFrame:
    curves = []
    for (method, sparsity, seed), summary in outcome.extra["dpf"].items():
        for record in summary["result"].records:
            curves.append(
                {
                    "method": method,
                    "sparsity": sparsity,
                    "seed": seed,
                    "epoch": record["epoch"],
                    "test_top1": record.get("test_top1"),
                    "train_seconds": record.get("train_seconds"),
                }
            )
    return pd.DataFrame(curves, columns=CURVE_COLUMNS)


def _figure10(curves: pd.DataFrame, path: Path, label: dict[str, Any]) -> None:
    """DPF Figure 10: top-1 per epoch and seconds per epoch, DPF against dense SGD (an empty frame says why)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    from rewire.reporting import plotting

    sns.set_theme(style="whitegrid")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    if curves.empty:
        for ax in axes:
            ax.text(0.5, 0.5, NOT_COMPUTED, ha="center", va="center", transform=ax.transAxes, wrap=True)
            ax.set_axis_off()
    else:
        curves = curves.assign(run=[f"{m} {s:g}" for m, s in zip(curves.method, curves.sparsity)])
        sns.lineplot(data=curves, x="epoch", y="test_top1", hue="run", marker="o", ax=axes[0])
        axes[0].set(ylabel="validation top-1 (%)", title="learning curves")
        sns.barplot(data=curves, x="run", y="train_seconds", ax=axes[1])
        axes[1].set(ylabel="training seconds per epoch", xlabel="", title="cost per epoch")
    fig.suptitle("DPF Figure 10: ResNet-50 on ImageNet, DPF vs dense SGD", y=1.02)
    fig.tight_layout()
    fig.text(0.5, -0.06, plotting.caption(label), ha="center", fontsize=8, color="0.35")
    plotting.save_figure(fig, path)
    plt.close(fig)


def report(config: Config, outcome: Outcome, out_dir, label: dict[str, Any]) -> dict[str, Any]:
    """Write every output of the stage into ``out_dir``; return the headline metrics (``metrics.json``)."""
    from rewire.reporting import results

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    trained = outcome.extra["trained_dnw_rows"]
    counts = _table3(outcome)
    note = "trained here: " + (", ".join(trained) if trained else "none at this scale")
    results.write_table(counts, out, "table3", label, title=f"DNW Table 3 (ImageNet): counter vs paper; {note}")
    dpf_table = _dpf_table3(outcome)
    title = "DPF Table 3 (ResNet-50, ImageNet): trained here" + ("" if len(dpf_table) else f"; {NOT_COMPUTED}")
    results.write_table(dpf_table, out, "dpf_table3", label, title=title)
    curves = _curves(outcome)
    curves.to_csv(out / "figure10.csv", index=False)
    _figure10(curves, out / "figure10.png", label)
    top1 = {f"dnw_{k}_top1": float(v) for k, v in zip(counts.row, counts.trained_top1_mean) if not np.isnan(v)}
    headline = f"dnw_{HEADLINE_ROW}_top1"
    metrics = {"top1": top1[headline]} if headline in top1 else {}  # nothing when DNW x0.225 did not train
    details = {
        "dnw_rows_trained": len(trained),
        "dpf_points_trained": len(outcome.extra["trained_dpf_points"]),
        **top1,
        **metrics,
        "dpf": dpf_table.to_dict("records"),
        "curves": curves.to_dict("records"),
        "label": label,
    }
    results.write_metrics(out / "metrics.json", metrics, label)
    write_json(out / "details.json", details)
    return metrics
