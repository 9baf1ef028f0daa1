"""Figures (seaborn), written as PNG with a caption naming scale, seeds and data source.

No backend is forced here: in JupyterLab and in executed notebooks figures display inline
(matplotlib's inline backend), in scripts without a display matplotlib falls back to Agg.
Files are saved explicitly with :func:`save_figure`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import seaborn as sns

from rewire.io import atomic_path


def caption(label: dict[str, Any]) -> str:
    seeds = ",".join(str(s) for s in label["seeds"])
    return (
        f"scale={label['scale']} · seeds={seeds} · data={label['data_source']} · {label['device']} · {label['commit']}"
    )


def learning_curves(history, label: dict[str, Any], title: str = "Learning curves"):
    """Test top-1 and training loss per epoch, one line per seed (mean and band when several).

    ``history`` is a long DataFrame with columns ``epoch``, ``seed``, ``test_top1``, ``train_loss``.
    """
    sns.set_theme(style="whitegrid", context="notebook")
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 3.8))
    sns.lineplot(data=history, x="epoch", y="test_top1", marker="o", errorbar="sd", ax=ax_acc)
    ax_acc.set(ylabel="test top-1 (%)", title="Test accuracy")
    sns.lineplot(data=history, x="epoch", y="train_loss", marker="o", errorbar="sd", ax=ax_loss, color="C1")
    ax_loss.set(ylabel="training loss", title="Training loss")
    for ax in (ax_acc, ax_loss):
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(title)
    fig.text(0.5, -0.02, caption(label), ha="center", fontsize=8, color="0.35")
    fig.tight_layout()
    return fig


def save_figure(fig, path: str | os.PathLike, dpi: int = 150) -> Path:
    """Save atomically as PNG without a timestamp, so identical figures give identical bytes."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    return path
