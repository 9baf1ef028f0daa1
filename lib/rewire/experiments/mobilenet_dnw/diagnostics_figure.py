"""DNW against RG over training: the graph diagnostics of :mod:`rewire.methods.dnw_diagnostics` as a table and a figure.

Issue 20 (point 3). Every diagnosed run (:data:`rewire.experiments.mobilenet_dnw.runs.DIAGNOSED_METHODS`) carries
``diag_*`` keys in its epoch records, and with ``diagnostics_every_steps`` > 0 a ``diag_steps`` list of step
records. :func:`diagnostics_table` flattens them into one row per (run, record): ``row``, ``seed``, ``record``
(``step`` or ``epoch``), ``step``, ``epoch``, the pooled numbers and one ``live_fraction_stage<i>`` /
``abs_w_mean_stage<i>`` column per stage; :func:`write_diagnostics_csv` writes it, :func:`plot_diagnostics`
draws |w| mean, churn, the live fraction per stage and the hallucinated edges' gradient norm against the step;
:func:`diagnostics_summary` averages each row's runs over seeds at a few steps and at the last epoch (the numbers
the diagnostics page quotes, written as ``diagnostics_summary.csv``).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rewire.io import atomic_path

__all__ = ["COLUMNS", "diagnostics_table", "diagnostics_summary", "write_diagnostics_csv", "plot_diagnostics"]

SUMMARY_STEPS = (0, 5, 10, 20, 40, 100)  # the steps the summary keeps (the graph locks in within ~40: issue 20)

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


def diagnostics_summary(table: list[dict[str, Any]], steps: Iterable[int] = SUMMARY_STEPS) -> list[dict[str, Any]]:
    """The mean over seeds of every numeric column of ``table`` (:func:`diagnostics_table`), per row, at each of
    ``steps`` (step records; ``at`` = ``step <n>``) and at the last epoch record (``at`` = ``last epoch``), with
    ``seeds``: the runs averaged. A step some seed did not record is averaged over the seeds that did."""
    wanted = set(steps)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    last_epoch: dict[tuple[str, int], dict[str, Any]] = {}
    for entry in table:
        if entry["record"] == "step" and entry.get("step") in wanted:
            groups.setdefault((entry["row"], f"step {entry['step']}"), []).append(entry)
        elif entry["record"] == "epoch":
            key = (entry["row"], entry["seed"])
            if key not in last_epoch or (entry.get("epoch") or 0) > (last_epoch[key].get("epoch") or 0):
                last_epoch[key] = entry
    for (row, _), entry in last_epoch.items():
        groups.setdefault((row, "last epoch"), []).append(entry)
    summary = []
    for (row, at), entries in groups.items():
        out: dict[str, Any] = {"row": row, "at": at, "seeds": len(entries)}
        for column in entries[0]:
            if column in ("row", "seed", "record", "step", "epoch"):
                continue
            values = [
                e[column] for e in entries if isinstance(e.get(column), (int, float)) and not math.isnan(e[column])
            ]
            out[column] = math.fsum(values) / len(values) if values else None
        summary.append(out)
    order = {f"step {n}": i for i, n in enumerate(sorted(wanted))} | {"last epoch": len(wanted)}
    return sorted(summary, key=lambda r: (r["row"], order.get(r["at"], len(wanted) + 1)))


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
