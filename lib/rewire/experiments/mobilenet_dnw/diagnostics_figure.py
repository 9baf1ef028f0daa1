"""DNW against RG over training: the graph diagnostics of :mod:`rewire.methods.dnw_diagnostics` as a table and a figure.

Issue 20 (point 3). Every diagnosed run (:data:`rewire.experiments.mobilenet_dnw.runs.DIAGNOSED_METHODS`) carries
``diag_*`` keys in its epoch records, and with ``diagnostics_every_steps`` > 0 a ``diag_steps`` list of step
records. :func:`diagnostics_table` flattens them into one row per (run, record): ``row``, ``seed``, ``record``
(``step`` or ``epoch``), ``step``, ``epoch``, the pooled numbers and one ``live_fraction_stage<i>`` /
``abs_w_mean_stage<i>`` column per stage; :func:`write_diagnostics_csv` writes it, :func:`plot_diagnostics`
draws |w| mean, churn, the live fraction per stage and the hallucinated edges' gradient norm against the step.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rewire.io import atomic_path

__all__ = ["COLUMNS", "diagnostics_table", "write_diagnostics_csv", "plot_diagnostics"]

# the pooled numbers of a record, in the CSV's order (the per-stage columns follow)
COLUMNS = (
    "abs_w_mean",
    "abs_w_max",
    "churn",
    "churn_per_step",
    "hallucinated_grad_norm",
    "hallucinated_grad_max",
    "real_grad_norm",
    "real_edges",
)
PER_STAGE = (("live_fraction", "diag_live_fraction_per_stage"), ("abs_w_mean", "diag_abs_w_mean_per_stage"))


def _runs(source) -> Iterable[tuple[str, int, list[dict[str, Any]]]]:
    """(row, seed, records) of an ``Outcome`` (its ``extra["results"]``), a ``{(row, seed): RunResult}`` mapping or
    a list of ``{"row", "seed", "records"}`` dicts."""
    extra = getattr(source, "extra", None)
    if extra is not None:
        source = extra.get("results", {})
    if isinstance(source, dict):
        for (row, seed), result in source.items():
            yield row, seed, result.records
    else:
        for run in source:
            yield run["row"], run["seed"], run["records"]


def _flatten(row: str, seed: int, kind: str, epoch: int | None, record: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"row": row, "seed": seed, "record": kind, "step": record.get("step"), "epoch": epoch}
    for name in COLUMNS:
        out[name] = record.get(f"diag_{name}")
    for prefix, key in PER_STAGE:
        for index, value in enumerate(record.get(key) or ()):
            out[f"{prefix}_stage{index}"] = value
    return out


def diagnostics_table(source) -> list[dict[str, Any]]:
    """One dict per diagnosed record (module docstring); runs without diagnostics are left out."""
    table = []
    for row, seed, records in _runs(source):
        for record in records:
            if "diag_abs_w_mean" not in record:
                continue
            for step_record in record.get("diag_steps") or ():
                table.append(_flatten(row, seed, "step", None, step_record))
            table.append(_flatten(row, seed, "epoch", record.get("epoch"), record))
    return table


def write_diagnostics_csv(source, path: str | os.PathLike) -> Path:
    """Write :func:`diagnostics_table` of ``source`` (or a table already built) as CSV; returns the path."""
    table = source if isinstance(source, list) and (not source or "record" in source[0]) else diagnostics_table(source)
    columns: list[str] = []
    for entry in table:
        columns += [key for key in entry if key not in columns]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns or ["row"])
        writer.writeheader()
        writer.writerows(table)
    return Path(path)


def _series(table: list[dict[str, Any]], row: str, seed: int, column: str) -> tuple[list[float], list[float]]:
    """(steps, values) of one run: its step records when it has them, else its epoch records."""
    entries = [e for e in table if e["row"] == row and e["seed"] == seed]
    kind = "step" if any(e["record"] == "step" for e in entries) else "epoch"
    points = [
        (e["step"], e[column])
        for e in entries
        if e["record"] == kind and e.get(column) is not None and not math.isnan(e[column])
    ]
    return [p[0] for p in points], [p[1] for p in points]


def plot_diagnostics(source, path: str | os.PathLike, *, title: str = "MobileNetV1-DNW: DNW against RG") -> Path:
    """Four panels against the optimizer step, one line per run (colour: row; style: seed): real-edge mean |w|,
    churn, the hallucinated edges' gradient norm (log scales) and the live fraction per stage at the last record
    (grouped bars, one group per stage). Writes a PNG at ``path`` and returns it."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    table = source if isinstance(source, list) and (not source or "record" in source[0]) else diagnostics_table(source)
    runs = sorted({(e["row"], e["seed"]) for e in table})
    rows = sorted({row for row, _ in runs})
    colours = {row: f"C{i}" for i, row in enumerate(rows)}
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    panels = (
        (axes[0, 0], "abs_w_mean", "real edges' mean |w|", "log"),
        (axes[0, 1], "churn", "churn (fraction of real edges replaced)", "symlog"),
        (axes[1, 0], "hallucinated_grad_norm", "hallucinated edges' ‖dL/dW_eff‖", "log"),
    )
    for ax, column, label, scale in panels:
        for row, seed in runs:
            steps, values = _series(table, row, seed, column)
            ax.plot(steps, values, color=colours[row], lw=1.2, label=f"{row} seed {seed}", alpha=0.9)
        if scale == "symlog":
            ax.set_yscale("symlog", linthresh=1e-3)
        else:
            ax.set_yscale(scale)
        ax.set(xlabel="optimizer step", ylabel=label)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    ax = axes[1, 1]
    stages = sorted({key for e in table for key in e if key.startswith("live_fraction_stage")})
    width = 0.8 / max(1, len(runs))
    for offset, (row, seed) in enumerate(runs):
        last = [e for e in table if e["row"] == row and e["seed"] == seed][-1]
        ax.bar(
            [i + offset * width for i in range(len(stages))],
            [last.get(stage) or 0.0 for stage in stages],
            width,
            color=colours[row],
            alpha=0.6 + 0.4 * (offset % 2),
            label=f"{row} seed {seed}",
        )
    ax.set_xticks(
        [i + width * (len(runs) - 1) / 2 for i in range(len(stages))], [f"stage {i}" for i in range(len(stages))]
    )
    ax.set(ylim=(0, 1.05), ylabel="receivers with an incoming real edge (end)")
    ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=130, format="png")
    plt.close(fig)
    return Path(path)
