"""DPF against Incremental across training budgets: the regime behind the comparison (issue 20, point 2).

Issue 20 asks that a reversal which survives convergence be explained with evidence: the regime (steps,
mask updates, the time at full sparsity) or a defect. This module reads the loaded ``run.json`` points
(no training) of DPF and Incremental (Zhu & Gupta) at the main target sparsity, in the main (untagged)
grid and in the figure-only budget entries (tags ``fig-budget*``, e.g. 10 and 40 epochs beside the main
20), and writes ``budget_regime.csv`` / ``.md`` (one row per budget, method and seed, then one paired
DPF - Incremental row per budget) and ``budget_regime.png``.

The regime is counted as the run engine trains: ``iterations_per_epoch`` = training images // batch
(the engine's training loader drops the last partial batch; the training images are ``train_per_class``
per class, or the whole CIFAR split, less the validation split's ``max(1, round(f n_c))`` per class);
the ramp ends at ``floor(milestones[1] x epochs)`` (:func:`rewire.experiments.dpf_sweeps.runs.sparsity_schedule`,
DPF Appendix A.2); a mask update happens before every step t with t % ``update_every`` == 0
(:class:`rewire.methods.dpf.GradualPruning`), so the ramp's steps [0, R) hold ceil(R / p) of them.
Where a run's history records ``step`` or ``mask_updates`` that disagree with these counts, the Markdown says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from rewire.experiments.dpf_sweeps.claims import dataset_classes, phase_records, split_per_class
from rewire.experiments.dpf_sweeps.config import Recipe
from rewire.experiments.dpf_sweeps.runs import sparsity_schedule
from rewire.io import write_text
from rewire.methods.dpf import GRADUAL_METHODS
from rewire.reporting import claims as claims_module
from rewire.reporting import results

__all__ = ["BUDGET_TAG", "METHODS", "NAME", "iterations_per_epoch", "regime", "budget_regime", "write_budget_regime"]

BUDGET_TAG = "fig-budget"  # scales.yaml: the figure-only budget entries (kept out of tables and claims)
METHODS = ("dpf", "incremental")  # DPF against Zhu & Gupta's gradual pruning without feedback (DPF Table 2)
# Our variant beside them where the grid has it (rewire.methods.dpf): DPF with its mask frozen after the ramp
VARIANTS = ("dpf_frozen",)
NAME = "budget_regime"
DIFFERENCE = "dpf - incremental"
# Paired rows per budget: name -> (a, b), a - b over the seeds both ran
DIFFERENCES = {DIFFERENCE: ("dpf", "incremental"), "dpf_frozen - incremental": ("dpf_frozen", "incremental")}
READING = (
    "iterations = epochs x iterations_per_epoch (training images // batch); the ramp ends at ramp_end_epoch "
    "(floor of the second decay's fraction x epochs); ramp_mask_updates / mask_updates_after_ramp: DPF's mask "
    "updates (every update_every steps) before / after it, where Incremental prunes once per epoch of the ramp "
    "(Zhu & Gupta's Δt = 1 epoch); flipping_after_ramp_pct: mask entries that still change after "
    f"the ramp (Figure 4). Rows `{DIFFERENCE}`: the paired means of DPF minus Incremental over the seeds both "
    "ran (the top-1's 95 % Student-t interval with 2 seeds or more; one seed: the difference only); "
    "`dpf_frozen - incremental` the same for our variant with DPF's mask frozen once the ramp ends.\n\n"
)
CURVE_COLUMNS = ("budget", "method", "seed", "epochs", "ramp_end_epoch", "fraction", "train_loss")
OUTCOMES = ("test_top1", "train_loss_ramp_last_half", "train_loss_final")  # paired in the difference rows


def iterations_per_epoch(recipe: Recipe) -> int:
    """Optimizer steps per epoch: the training images less the validation split
    (:func:`~rewire.experiments.dpf_sweeps.claims.split_per_class`) // batch size (``drop_last``)."""
    train, _ = split_per_class(recipe.dataset, recipe.train_per_class, recipe.validation_fraction)
    return train * dataset_classes(recipe.dataset) // recipe.batch_size


def regime(recipe: Recipe, sparsity: float) -> dict[str, int]:
    """Epochs, iterations, the ramp's end and mask updates during and after it, epochs at full sparsity."""
    per_epoch = iterations_per_epoch(recipe)
    ramp_end = int(sparsity_schedule(recipe, sparsity).end)
    total, ramp_steps = recipe.epochs * per_epoch, ramp_end * per_epoch
    updates = math.ceil(total / recipe.update_every)
    ramp_updates = math.ceil(ramp_steps / recipe.update_every)
    return {
        "epochs": recipe.epochs,
        "iterations_per_epoch": per_epoch,
        "iterations": total,
        "ramp_end_epoch": ramp_end,
        "ramp_mask_updates": ramp_updates,
        "mask_updates_after_ramp": updates - ramp_updates,
        "epochs_at_full_sparsity": recipe.epochs - ramp_end,
    }


def _selected(points: Sequence[dict[str, Any]], model: str | None) -> list[dict[str, Any]]:
    """The DPF and Incremental points (and :data:`VARIANTS`) of the main grid and of the budget entries, of
    ``model`` where it has any."""
    chosen = [
        p
        for p in points
        if p["method"] in METHODS + VARIANTS and (not p.get("tag") or str(p.get("tag")).startswith(BUDGET_TAG))
    ]
    if model is not None and any(p.get("model") == model for p in chosen):
        chosen = [p for p in chosen if p.get("model", model) == model]
    return chosen


def _main_sparsity(points: Sequence[dict[str, Any]]) -> float | None:
    """The highest target sparsity at which some budget has both methods (else the highest of any)."""
    both = {
        p["sparsity"]
        for p in points
        if {q["method"] for q in points if q.get("tag", "") == p.get("tag", "") and q["sparsity"] == p["sparsity"]}
        >= set(METHODS)
    }
    pool = both or {p["sparsity"] for p in points}
    return max(pool) if pool else None


def _mean_loss(records: list[dict[str, Any]], low: float, high: float) -> float:
    losses = [r["train_loss"] for r in records if low < r.get("epoch", 0) <= high and "train_loss" in r]
    return math.fsum(losses) / len(losses) if losses else math.nan


def _seed_row(point: dict[str, Any], run: dict[str, Any], shape: dict[str, int], notes: list[str]) -> dict:
    records = phase_records(run)
    ramp_end = shape["ramp_end_epoch"]
    flips = run.get("mask_convergence", [])
    budget = point.get("tag") or "main"
    recorded_steps = records[-1].get("step") if records else None
    if recorded_steps is not None and recorded_steps != shape["iterations"]:
        notes.append(f"{budget} {point['method']} seed {run['seed']}: history records {recorded_steps} steps, "
                     f"the recipe gives {shape['iterations']}")  # fmt: skip
    recorded = [r["mask_updates"] for r in records if r.get("epoch", 0) <= ramp_end and "mask_updates" in r]
    # DPF re-selects every update_every steps; Incremental prunes once per epoch (Zhu & Gupta's Δt), so its
    # ramp holds ramp_end updates by design (rewire.methods.dpf.GRADUAL_METHODS)
    expected = shape["ramp_mask_updates"] if GRADUAL_METHODS[point["method"]][2] == "p" else ramp_end
    if len(recorded) == ramp_end and sum(recorded) != expected:
        notes.append(f"{budget} {point['method']} seed {run['seed']}: history records {sum(recorded)} mask "
                     f"updates in the ramp, the recipe gives {expected}")  # fmt: skip
    return {
        "budget": budget,
        "method": point["method"],
        "sparsity": float(point["sparsity"]),
        "seed": str(run["seed"]),
        **shape,
        "test_top1": float(run["test_top1"]),
        "train_loss_ramp_last_half": _mean_loss(records, ramp_end / 2, ramp_end),
        "train_loss_final": float(records[-1]["train_loss"]) if records and "train_loss" in records[-1] else math.nan,
        # Figure 4's share of mask entries that still change after the ramp's last epoch (as claims.py reads it)
        "flipping_after_ramp_pct": 100.0 * flips[ramp_end] if len(flips) > ramp_end else math.nan,
    }


def _difference_row(rows: pd.DataFrame, name: str) -> dict[str, Any] | None:
    """The paired row ``name`` of :data:`DIFFERENCES` (a - b) of one budget, over the seeds both methods ran;
    mean and 95 % t interval with >= 2 seeds. ``None`` where no seed has both."""
    a, b = DIFFERENCES[name]
    by_method = {m: rows[rows.method == m].set_index("seed") for m in (a, b)}
    seeds = sorted(set(by_method[a].index) & set(by_method[b].index), key=int)
    if not seeds:
        return None
    row = {"budget": rows.budget.iloc[0], "method": name, "seed": "paired: " + " ".join(seeds)}
    for column in OUTCOMES:
        values = [float(by_method[a].at[s, column] - by_method[b].at[s, column]) for s in seeds]
        row[column] = math.fsum(values) / len(values)
        if column == "test_top1":
            low, high = (
                claims_module.interval(values)[1:] if len(values) >= claims_module.MIN_SEEDS else (math.nan, math.nan)
            )
            row.update({"top1_ci_low": low, "top1_ci_high": high, "paired_seeds": len(values)})
    return row


def budget_regime(
    points: Sequence[dict[str, Any]], model: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """``(table, curves, notes)``: the per-seed and paired rows, budgets in order of iterations; the training
    loss per epoch of every run (for the figure); notes on what is missing or disagrees with the recipe."""
    chosen = _selected(points, model)
    sparsity = _main_sparsity(chosen)
    rows, curves, notes = [], [], []
    for point in (p for p in chosen if p["sparsity"] == sparsity):
        shape = regime(Recipe.from_params(point["recipe"]), sparsity)
        for run in point["runs"]:
            rows.append(_seed_row(point, run, shape, notes))
            curves += [{"budget": rows[-1]["budget"], "method": point["method"], "seed": run["seed"],
                        "epochs": shape["epochs"], "ramp_end_epoch": shape["ramp_end_epoch"],
                        "fraction": r["epoch"] / shape["epochs"], "train_loss": r["train_loss"]}
                       for r in phase_records(run) if "train_loss" in r and "epoch" in r]  # fmt: skip
    per_seed = pd.DataFrame(rows)
    if per_seed.empty:
        return per_seed, pd.DataFrame(curves, columns=CURVE_COLUMNS), ["no DPF or Incremental runs in this grid"]
    per_seed = per_seed.sort_values(["iterations", "method", "seed"], key=_natural, kind="stable")
    table = []
    for budget, group in per_seed.groupby("budget", sort=False):
        table += group.to_dict("records")
        shared = ("sparsity", "epochs", "iterations_per_epoch", "iterations", "ramp_end_epoch", "ramp_mask_updates",
                  "mask_updates_after_ramp", "epochs_at_full_sparsity")  # fmt: skip
        for name in DIFFERENCES:
            difference = _difference_row(group, name)
            if difference is not None:
                table.append({**difference, **{k: group[k].iloc[0] for k in shared}})
            elif name == DIFFERENCE:
                notes.append(f"{budget}: only {', '.join(sorted(set(group.method)))}; no paired difference")
    if not any(str(b).startswith(BUDGET_TAG) for b in per_seed.budget):
        notes.append(f"no budget entries (tags {BUDGET_TAG}*) in this grid: the main budget only")
    return pd.DataFrame(table), pd.DataFrame(curves, columns=CURVE_COLUMNS), notes


def _natural(column: pd.Series) -> pd.Series:
    return column.map(int) if column.name == "seed" else column


def write_budget_regime(points: Sequence[dict[str, Any]], out, label: dict[str, Any], model: str | None = None) -> None:
    """Write ``budget_regime.csv``, ``.md`` and ``.png`` into ``out``; a grid without the runs gets the
    "not computed" files (the stage's declared outputs always exist)."""
    out = Path(out)
    table, curves, notes = budget_regime(points, model)
    title = "DPF vs Incremental across training budgets (issue 20: the regime behind the comparison)"
    if table.empty:
        results.write_not_computed(out, NAME, "; ".join(notes), title=title)
        results.write_not_computed(out, f"{NAME}.png", "; ".join(notes))
        return
    results.write_table(table, out, NAME, label, title=title)
    markdown = (out / f"{NAME}.md").read_text(encoding="utf-8") + "\n" + READING + "".join(f"- {n}\n" for n in notes)
    write_text(out / f"{NAME}.md", markdown)
    _draw(table, curves, out, label)


def _draw(table: pd.DataFrame, curves: pd.DataFrame, out: Path, label: dict[str, Any]) -> None:
    """Left: final test top-1 against iterations (one marker per seed, the mean as a line); right: the mean
    training loss per epoch against the fraction of training, one line style per budget, x at the ramp's end."""
    import matplotlib.pyplot as plt

    from rewire.experiments.dpf_sweeps.figures import _empty, _finish

    runs = table[table.method.isin(METHODS + VARIANTS)]
    colours = {"dpf": "C0", "incremental": "C1", "dpf_frozen": "C2"}
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for method, colour in colours.items():
        mine = runs[runs.method == method]
        if mine.empty:
            continue
        left.scatter(mine.iterations, mine.test_top1, color=colour, alpha=0.5, s=20)
        means = mine.groupby("iterations").test_top1.mean()
        left.plot(means.index, means.values, color=colour, marker="o", label=f"{method} (mean over seeds)")
    left.set_xscale("log")
    ticks = sorted(set(runs.iterations))
    left.set_xticks(ticks, [str(t) for t in ticks], minor=False)
    left.set_xticks([], minor=True)
    left.set(xlabel="training iterations (log)", ylabel="final test top-1 (%)", title="Accuracy against budget")
    left.legend(fontsize=8)
    budgets = list(dict.fromkeys(runs.budget))
    for style, budget in zip(("--", "-.", "-", ":"), budgets):
        for method, colour in colours.items():
            mine = curves[(curves.budget == budget) & (curves.method == method)]
            if mine.empty:
                continue
            mean = mine.groupby("fraction").train_loss.mean()
            epochs, ramp_end = int(mine.epochs.iloc[0]), int(mine.ramp_end_epoch.iloc[0])
            right.plot(mean.index, mean.values, color=colour, ls=style, label=f"{method}, {epochs} epochs")
            if ramp_end / epochs in mean.index:
                right.plot([ramp_end / epochs], [mean[ramp_end / epochs]], color=colour, marker="x", ms=8)
    if curves.empty:
        _empty(right, "training loss records")
    right.set(xlabel="fraction of training (epoch / epochs); x: the ramp's end", title="Training loss",
              ylabel="training loss (mean over seeds)")  # fmt: skip
    if len(curves):
        right.legend(fontsize=7, ncol=2)
    single = [b for b in budgets if runs[runs.budget == b].seed.nunique() == 1]
    side = "the side budgets " if "main" not in single else ""
    seeds = f"; one seed at {side}({', '.join(single)})" if single else ""
    fig.suptitle(f"DPF vs Incremental across training budgets at sparsity {runs.sparsity.iloc[0]:g}{seeds}")
    fig.tight_layout()
    _finish(fig, None, out, f"{NAME}.png", label, below=-0.04)
