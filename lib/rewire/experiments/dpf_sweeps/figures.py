"""The DPF sweeps' figures (Lin et al. 2020, Figures 3-14 as far as a scale's grid reaches), one function each.

Every function draws from the runs of :func:`rewire.experiments.dpf_sweeps.report.per_seed` (and the
loaded ``run.json`` points), saves one PNG into ``out`` and returns the figure; a panel whose runs
are not in this scale's grid says so instead of staying blank. :func:`draw_all` draws them all (the
files ``dvc.yaml`` declares for the stage ``dpf_sweeps``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from rewire.reporting import plotting

__all__ = ["FIGURES", "draw_all"]

# file -> what it shows (the notebook's captions name the same files)
FIGURES = {
    "accuracy_vs_sparsity.png": "Figure 3a / Table 1 layout: accuracy vs target sparsity",
    "accuracy_vs_cost.png": "Figures 3, 6, 11, 12: accuracy vs MACs and parameters",
    "mask_convergence.png": "Figure 4: share of mask entries still flipping",
    "lottery_check.png": "Figure 5: DPF vs its mask retrained from initialisation",
    "rewind_budgets.png": "Figures 8 and 13: rewinds at the same computation, structured",
    "iteration_cost.png": "Figure 10: seconds per iteration",
    "structured.png": "Table 5: structured DPF vs SFP",
    "training_dynamics.png": "Figure 7: δ_t and mask IoU per epoch",
    "layer_sparsity.png": "Figure 14: per-layer sparsity under structured pruning",
    "period_batch.png": "Figure 9: reparametrisation period and batch size",
}


def _finish(fig, ax_or_none, out: Path, name: str, label: dict, below: float = -0.03) -> None:
    fig.text(0.5, below, plotting.caption(label), ha="center", fontsize=8, color="0.35")
    plotting.save_figure(fig, out / name)
    plt.close(fig)


def _empty(ax, what: str) -> None:
    ax.text(
        0.5,
        0.5,
        f"not computed at this scale: no {what} in this grid",
        ha="center",
        va="center",
        transform=ax.transAxes,
    )


def accuracy_vs_sparsity(runs: pd.DataFrame, model: str, out: Path, label: dict) -> None:
    """Every method and target sparsity of the tables' runs (structured ones dashed: their target is a share of filters)."""
    sparse_runs = runs[runs.method != "dense"].assign(
        kind=lambda d: d.structured.map({True: "structured", False: "unstructured"})
    )
    fig, ax = plt.subplots(figsize=(6.4, 4))
    if len(sparse_runs):
        sns.lineplot(data=sparse_runs, x="target", y="test_top1", hue="method", style="kind", style_order=["unstructured", "structured"],
                     marker="o", errorbar="sd", ax=ax)  # fmt: skip
    else:
        _empty(ax, "pruned runs")
    dense = runs[runs.method == "dense"].test_top1
    if len(dense):
        ax.axhline(dense.mean(), color="0.3", ls="--", lw=1, label="dense")
    ax.set(xlabel="target sparsity (pruned share of conv weights; structured: of filters)", ylabel="test top-1 (%)",
           title="Accuracy vs sparsity (DPF Figure 3a / Table 1 layout)")  # fmt: skip
    if len(sparse_runs) or len(dense):
        ax.legend(fontsize=8, ncol=2)
    _finish(fig, ax, out, "accuracy_vs_sparsity.png", label)


def _model_size(name: str) -> dict[str, float]:
    from rewire.models import build_model
    from rewire.sparse import flops
    from rewire.sparse.groups import conv_weight_targets

    dense_model = build_model(name, num_classes=10)
    conv = sum(dense_model.get_submodule(t.rpartition(".")[0]).weight.numel() for t in conv_weight_targets(dense_model))
    total = sum(p.numel() for p in dense_model.parameters())
    return {"conv_weights": conv, "parameters": total, "macs": flops.count_macs(dense_model).dense_macs}


def accuracy_vs_cost(runs: pd.DataFrame, out: Path, label: dict) -> pd.DataFrame:
    """MACs of one forward pass of the pruned model and the parameters left after pruning (Figures 3, 6, 11, 12)."""
    sizes = {name: _model_size(name) for name in runs.model.unique()}
    size_runs = runs[runs.method.isin(["dense", "dpf", "dpf_structured"])].assign(
        mmacs=lambda d: [f * sizes[m]["macs"] / 1e6 for f, m in zip(d.mac_fraction, d.model)],
        kparams=lambda d: [
            (sizes[m]["parameters"] - r * sizes[m]["conv_weights"]) / 1e3 for r, m in zip(d.reached, d.model)
        ],
        variant=lambda d: [f"{m}: {meth}" for m, meth in zip(d.model, d.method)],
    )
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    for ax, column, xlabel in (
        (axes[0], "mmacs", "MACs per image (millions)"),
        (axes[1], "kparams", "parameters left (thousands)"),
    ):
        if len(size_runs):
            sns.scatterplot(data=size_runs, x=column, y="test_top1", hue="variant", style="target", s=60, ax=ax)
            ax.set_xscale("log")
            ax.legend(fontsize=7)
        else:
            _empty(ax, "dense or DPF runs")
        ax.set(xlabel=xlabel, ylabel="test top-1 (%)")
    fig.suptitle(
        f"Accuracy vs computation and size (Figures 3, 6, 11, 12; paper: WideResNet-28-2/4/8, here {', '.join(sizes)})"
    )
    _finish(fig, None, out, "accuracy_vs_cost.png", label, below=-0.06)
    return size_runs


def mask_convergence(table_points: list[dict], model: str, out: Path, label: dict) -> None:
    from rewire.experiments.dpf_sweeps.tables import mask_convergence as convergence_of

    convergence = convergence_of(table_points, "dpf")
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    if len(convergence):
        sns.lineplot(data=convergence, x="epoch", y="still_changing", hue="target", marker="o", errorbar="sd",
                     palette="viridis", ax=ax)  # fmt: skip
    else:
        _empty(ax, "DPF runs")
    ax.set(xlabel="epoch", ylabel="share of mask entries flipping after this epoch", ylim=(0, 1.02),
           title=f"DPF mask convergence (Figure 4; paper: WideResNet-28-2, here {model})")  # fmt: skip
    _finish(fig, ax, out, "mask_convergence.png", label)


def _bars(runs: pd.DataFrame, methods: list[str], out: Path, name: str, label: dict, title: str, xlabel: str, what: str,
          dense: pd.Series | None = None) -> None:  # fmt: skip
    data = runs[runs.method.isin(methods)]
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    if len(data):
        sns.barplot(data=data, x="target", y="test_top1", hue="method", errorbar="sd", ax=ax)
    else:
        _empty(ax, what)
    if dense is not None and len(dense):
        ax.axhline(dense.mean(), color="0.3", ls="--", lw=1, label="dense")
    ax.set(xlabel=xlabel, ylabel="test top-1 (%)", title=title)
    _finish(fig, ax, out, name, label)


def rewind_budgets(
    points: list[dict], all_runs: pd.DataFrame, runs: pd.DataFrame, model: str, out: Path, label: dict
) -> None:
    """Figure 8 (DPF's mask retrained for the same MACs, entries ``fig8-*``) and Figure 13 (structured, ``fig13-*``)."""
    fig8 = all_runs[all_runs.tag.str.startswith("fig8") & (all_runs.method == "dpf_rewind")]
    fig13 = all_runs[
        all_runs.tag.str.startswith("fig13") & all_runs.method.isin(["dpf_structured", "dpf_structured_rewind"])
    ]
    retrain = {p.get("tag", ""): p["recipe"].get("rewind_epochs") or p["recipe"]["epochs"] for p in points}
    same_epochs = runs[runs.method.isin(["dpf", "dpf_rewind"]) & runs.target.isin(set(fig8.target))]
    left = pd.concat(
        [same_epochs.assign(variant=[m if m == "dpf" else f"{m}, same epochs" for m in same_epochs.method]),
         fig8.assign(variant=[f"dpf_rewind, {retrain[t]} epochs (same MACs)" for t in fig8.tag])],
        ignore_index=True,
    ) if len(fig8) else fig8  # fmt: skip
    panels = (
        (left, "Figure 8: unstructured, same computation"),
        (fig13.assign(variant=fig13.method), "Figure 13: structured, same epochs"),
    )
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, (data, title) in zip(axes, panels):
        if len(data):
            sns.barplot(data=data, x="target", y="test_top1", hue="variant", errorbar="sd", ax=ax)
            ax.legend(fontsize=7)
        else:
            _empty(ax, f"{title.split(':')[0]} entries")
        ax.set(xlabel="target sparsity", ylabel="test top-1 (%)", title=title)
    fig.suptitle(f"DPF's mask retrained from initialisation (paper: WRN-28-2; here {model})")
    _finish(fig, None, out, "rewind_budgets.png", label)


def iteration_cost(runs: pd.DataFrame, model: str, out: Path, label: dict) -> None:
    cost = runs[runs.method.isin(["dense", "dpf", "incremental", "snip"])]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    if len(cost):
        sns.barplot(data=cost, x="method", y="seconds_per_iteration", estimator="median", errorbar=None, ax=ax)
    else:
        _empty(ax, "dense, DPF, Incremental or SNIP runs")
    ax.set(ylabel="seconds per iteration (median)",
           title=f"Training cost per iteration (Figure 10; paper: ResNet-50 on ImageNet, here {model})")  # fmt: skip
    _finish(fig, ax, out, "iteration_cost.png", label)


def training_dynamics(table_points: list[dict], model: str, out: Path, label: dict) -> None:
    """Per epoch of the DPF runs: δ_t (Eq. 1) and the mean IoU of successive masks (Figure 7)."""
    dynamics = pd.DataFrame(
        [{"target": p["sparsity"], "seed": run["seed"], "epoch": r["epoch"], "delta": r["delta"], "mask_iou": r["mask_iou"]}
         for p in table_points if p["method"] == "dpf" for run in p["runs"] for r in run["history"]
         if r.get("phase") == "dpf" and "mask_iou" in r]
    )  # fmt: skip
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, column, ylabel in (
        (axes[0], "delta", "δ_t (pruning error, Eq. 1)"),
        (axes[1], "mask_iou", "IoU of successive masks"),
    ):
        if len(dynamics):
            sns.lineplot(
                data=dynamics, x="epoch", y=column, hue="target", marker="o", errorbar="sd", palette="viridis", ax=ax
            )
        else:
            _empty(ax, "DPF runs")
        ax.set(xlabel="epoch", ylabel=ylabel)
    fig.suptitle(f"DPF training dynamics (Figure 7; paper: WideResNet-28-2, here a stand-in on {model})")
    _finish(fig, None, out, "training_dynamics.png", label)


def layer_sparsity(table_points: list[dict], model: str, out: Path, label: dict) -> None:
    """The share of each layer's weights removed by structured DPF and by SFP (Figure 14)."""
    layers = pd.DataFrame(
        [{"method": p["method"], "target": p["sparsity"], "seed": run["seed"], "layer": name, "sparsity": value}
         for p in table_points if p["structured"] for run in p["runs"] for name, value in run.get("layer_sparsity", {}).items()]
    )  # fmt: skip
    fig, ax = plt.subplots(figsize=(10, 3.8))
    if len(layers):
        order = list(dict.fromkeys(layers.layer))
        sns.barplot(data=layers, x="layer", y="sparsity", hue="method", order=order, errorbar="sd", ax=ax)
        ax.set_xticks(range(len(order)), [n.removesuffix(".weight") for n in order], rotation=90, fontsize=7)
    else:
        _empty(ax, "structured runs")
    ax.set(xlabel="", ylabel="pruned share of the layer's weights",
           title=f"Per-layer sparsity, structured pruning (Figure 14; here a stand-in on {model})")  # fmt: skip
    _finish(fig, ax, out, "layer_sparsity.png", label, below=-0.42)


def period_batch(points: list[dict], table_points: list[dict], all_runs: pd.DataFrame, runs: pd.DataFrame, model: str,
                 out: Path, label: dict) -> pd.DataFrame:  # fmt: skip
    """Figure 9: DPF at other periods p and batch sizes (entries ``fig9-*``). The main DPF runs join as the
    p = 16 point only when the fig9 entries share their recipe (period, batch size and seeds aside)."""
    fig9 = all_runs[all_runs.tag.str.startswith("fig9") & (all_runs.method == "dpf")]
    recipes = {p.get("tag"): p["recipe"] for p in points}
    period = pd.DataFrame()
    if len(fig9):
        varied = {"update_every", "batch_size", "seeds", "finetune_lrs"}

        def shared(recipe: dict) -> dict:
            return {k: v for k, v in recipe.items() if k not in varied}

        main_dpf = [p for p in table_points if p["method"] == "dpf" and p["model"] in set(fig9.model)]
        main_dpf = [p for p in main_dpf if all(shared(p["recipe"]) == shared(recipes[t]) for t in set(fig9.tag))]
        base = runs[(runs.method == "dpf") & runs.model.isin(set(fig9.model)) & runs.target.isin(set(fig9.target))]
        base = base if main_dpf else base.iloc[:0]
        period = pd.concat(
            [fig9.assign(update_every=[recipes[t]["update_every"] for t in fig9.tag],
                         batch_size=[recipes[t]["batch_size"] for t in fig9.tag]),
             base.assign(update_every=main_dpf[0]["recipe"]["update_every"] if main_dpf else None,
                         batch_size=main_dpf[0]["recipe"]["batch_size"] if main_dpf else None)],
            ignore_index=True,
        )  # fmt: skip
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    if len(period):
        sns.lineplot(data=period, x="update_every", y="test_top1", hue="batch_size", style="target", marker="o",
                     errorbar="sd", ax=ax)  # fmt: skip
        ax.set_xscale("log", base=2)
    else:
        _empty(ax, "Figure 9 entries")
    ax.set(xlabel="reparametrisation period p (iterations)", ylabel="test top-1 (%)",
           title=f"DPF: mask update period and batch size (Figure 9; here a stand-in on {model})")  # fmt: skip
    _finish(fig, ax, out, "period_batch.png", label, below=-0.1)
    return period


def draw_all(
    config: Any, points: list[dict], all_runs: pd.DataFrame, runs: pd.DataFrame, out: Path, label: dict
) -> None:
    """Every figure of :data:`FIGURES` into ``out``."""
    sns.set_theme(style="whitegrid")
    model = config.model
    table_points = [p for p in points if not p.get("tag", "").startswith("fig")]
    dense = runs[runs.method == "dense"].test_top1
    accuracy_vs_sparsity(runs, model, out, label)
    accuracy_vs_cost(runs, out, label)
    mask_convergence(table_points, model, out, label)
    _bars(runs, ["dpf", "dpf_rewind", "lottery"], out, "lottery_check.png", label,
          f"DPF vs its mask retrained from init (Figure 5; paper: WRN-28-2 and ResNet-50, here {model})",
          "target sparsity", "DPF or rewind runs")  # fmt: skip
    rewind_budgets(points, all_runs, runs, model, out, label)
    iteration_cost(runs, model, out, label)
    _bars(runs[runs.structured], ["sfp", "sfp_bn", "dpf_structured", "dpf_structured_bn", "dpf_structured_rewind"], out, "structured.png", label,
          "Structured pruning: DPF vs SFP", "share of filters pruned", "structured runs", dense)  # fmt: skip
    training_dynamics(table_points, model, out, label)
    layer_sparsity(table_points, model, out, label)
    period_batch(points, table_points, all_runs, runs, model, out, label)
