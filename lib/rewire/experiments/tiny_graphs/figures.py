"""DNW Table 1's figures: per-epoch curves by setting, the adjacency before and after, the swap claim."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import seaborn as sns

from rewire.methods.dnw_wiring import adjacency_image
from rewire.reporting import plotting

__all__ = ["per_epoch", "adjacency", "swap_claim"]


def per_epoch(curves, column: str, y_label: str, title: str, label: dict, path: Path):
    """``column`` per epoch, one panel per setting, one line per method (mean and sd over seeds)."""
    sns.set_theme(style="whitegrid")
    grid = sns.relplot(
        data=curves.dropna(subset=[column]),
        x="epoch",
        y=column,
        hue="method",
        col="setting",
        kind="line",
        marker="o",
        errorbar="sd",
        height=3.2,
        facet_kws={"sharex": False},
    )
    grid.set_axis_labels("epoch", y_label)
    grid.figure.suptitle(title, y=1.03)
    grid.figure.text(0.5, -0.04, plotting.caption(label), ha="center", fontsize=8, color="0.35")
    plotting.save_figure(grid.figure, path)
    plt.close(grid.figure)


def adjacency(runs, label: dict, path: Path):
    """Real edges of each run at initialisation and at the end (rows: receiving node, columns: emitting)."""
    fig, axes = plt.subplots(2, len(runs), figsize=(2.6 * len(runs), 5.4), squeeze=False)
    for column, run in enumerate(runs):
        for row, (mask, when) in enumerate(zip((run.initial_mask, run.final_mask), ("initialisation", "end"))):
            axes[row, column].imshow(adjacency_image(mask), cmap="Greys", interpolation="nearest")
            axes[row, column].set_title(f"{run.setting} {run.method}\n{when}", fontsize=8)
            axes[row, column].set_xticks([])
            axes[row, column].set_yticks([])
    fig.suptitle("Real edges (rows: receiving node, columns: emitting node)")
    fig.text(0.5, 0.0, plotting.caption(label), ha="center", fontsize=8, color="0.35")
    plotting.save_figure(fig, path)
    plt.close(fig)


def swap_claim(table, trials: int, path: Path):
    """Share of single swaps that lowered the loss, and that met the proof's Eq. 4, per learning rate."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.semilogx(table["alpha"], table["fraction_holds"], marker="o", label="loss lowered")
    ax.semilogx(table["alpha"], table["fraction_aligned"], marker="s", label="Eq. 4 holds")
    ax.set(
        xlabel="learning rate α", ylabel="share of single swaps", ylim=(0, 1.05), title="Swap claim, DNW Section 2.2"
    )
    ax.legend()
    # the instance size of swap_claim.swap_trials' defaults
    fig.text(
        0.5,
        -0.1,  # below the x label (at -0.05 the two overlapped)
        f"{trials} random instances per α · 8 emitters, 4 real edges, states in R^16",
        ha="center",
        fontsize=8,
    )
    plotting.save_figure(fig, path)
    plt.close(fig)
