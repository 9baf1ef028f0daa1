"""DPF against Incremental where both runs converge: the cpu block's 40-epoch budget entry on several seeds.

The ``dpf_sweeps`` cpu stage (issue 20) trains its main grid for 20 epochs (700 iterations on 4,500 images),
where no DPF run passes the stated convergence test, and its figure-only 40-epoch budget entry (tag
``fig-budget-e40``: 1,400 iterations, 350 of them after the sparsity ramp) on seed 0 only, to fit the stage's
45 minutes. This benchmark trains that entry, with the same recipe and into the same checkpoints folder (a
run's hash leaves out the seed list, so the stage's seed-0 runs are found again), on ``--seeds`` and writes,
per method and seed, the test top-1 and the verdict of the stages' convergence test
(``rewire.experiments.dpf_sweeps.claims.run_convergence``), and DPF - Incremental paired by seed with its
two-sided 95 % Student-t interval (the budget table's difference row, ``regime.budget_regime``). Nothing here enters the claims table:
that reads the main grid.

    python benchmarks/dpf_converged_budget.py [--seeds 0 1 2] [--checkpoints checkpoints/dpf_sweeps]

Writes ``benchmarks/results/dpf_converged_budget.json`` and ``.md``. About 10 minutes on 2 idle cores for two
new seeds (2 methods x 2 seeds x 40 epochs of ResNet-20 on 4,500 images in bf16).
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from pathlib import Path

from rewire.experiments import scales as params_module
from rewire.experiments.base import RunContextSpec, RunSpec
from rewire.experiments.dpf_sweeps.claims import run_convergence
from rewire.experiments.dpf_sweeps.config import Config
from rewire.experiments.dpf_sweeps.regime import DIFFERENCE, budget_regime
from rewire.experiments.dpf_sweeps.runs import run_points
from rewire.io import write_json
from rewire.reporting import results

TAG = "fig-budget-e40"  # scales.yaml, cpu.dpf_sweeps: the budget entry whose runs converge
METHODS = ("dpf", "incremental")
OUT = Path(__file__).resolve().parent / "results"


def budget_values(values: dict, seeds: list[int]) -> dict:
    """The stage's block with its grid cut to the ``TAG`` entry, trained on ``seeds``."""
    entries = [entry for entry in values.get("grid", []) if entry.get("tag") == TAG]
    if not entries:
        raise ValueError(f"no grid entry tagged {TAG!r} in this block; it is in scales.yaml's cpu.dpf_sweeps")
    entry = copy.deepcopy(entries[0])
    entry["overrides"] = {**entry.get("overrides", {}), "seeds": list(seeds)}
    return {**values, "grid": [entry]}


def summarise(points: list[dict]) -> dict:
    """Per run: test top-1, final training loss, convergence; and DPF - Incremental paired by seed (the budget
    table's difference row, :func:`rewire.experiments.dpf_sweeps.regime.budget_regime`)."""
    verdicts = run_convergence(points)
    table, _, _ = budget_regime(points)
    per_seed, (paired,) = table[table.method != DIFFERENCE], table[table.method == DIFFERENCE].to_dict("records")
    models = {point["method"]: point.get("model", "") for point in points}
    runs = []
    for row in per_seed.to_dict("records"):
        verdict = verdicts[(models[row["method"]], row["method"], float(row["sparsity"]), int(row["seed"]))]
        runs.append({
            "method": row["method"], "seed": int(row["seed"]), "test_top1": float(row["test_top1"]),
            "train_loss_final": float(row["train_loss_final"]), "converged": verdict.converged,
            "convergence": verdict.reason,
        })  # fmt: skip
    top1 = {(r["method"], r["seed"]): r["test_top1"] for r in runs}
    seeds = sorted({s for (m, s) in top1 if m == "dpf"} & {s for (m, s) in top1 if m == "incremental"})
    low, high = (None if math.isnan(v) else float(v) for v in (paired["top1_ci_low"], paired["top1_ci_high"]))
    return {
        "runs": runs,
        "paired_seeds": seeds,
        "dpf_minus_incremental": {
            "mean": float(paired["test_top1"]),
            "ci_low": low,
            "ci_high": high,
            "per_seed": [top1[("dpf", s)] - top1[("incremental", s)] for s in seeds],
        },  # fmt: skip
        "all_converged": all(r["converged"] for r in runs),
    }


def markdown(summary: dict, label: dict, seconds: float) -> str:
    d = summary["dpf_minus_incremental"]
    ci = f"[{d['ci_low']:+.2f}, {d['ci_high']:+.2f}]" if d["ci_low"] is not None else "(one seed: no interval)"
    lines = [
        "### DPF vs Incremental at 40 epochs (1,400 iterations), where the runs converge",
        "",
        f"scale **{label['scale']}** · seeds {', '.join(map(str, summary['paired_seeds']))} · data: "
        f"{label['data_source']} · {label['device']} · commit {label['commit']} · {seconds / 60:.1f} min",
        "",
        "| method | seed | test top-1 | final training loss | converged | convergence test |",
        "| --- | --: | --: | --: | --- | --- |",
    ]
    for r in summary["runs"]:
        lines.append(f"| {r['method']} | {r['seed']} | {r['test_top1']:.2f} | {r['train_loss_final']:.3f} | "
                     f"{'yes' if r['converged'] else 'no'} | {r['convergence']} |")  # fmt: skip
    lines += ["", f"DPF − Incremental, paired by seed: **{d['mean']:+.2f}** {ci} points (95 % Student-t)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--checkpoints", default="checkpoints/dpf_sweeps")
    parser.add_argument("--data-root", default="data")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        print(
            f"error: --seeds {args.seeds} must be distinct non-negative integers, e.g. --seeds 0 1 2", file=sys.stderr
        )
        return 2
    scale, values = params_module.stage_values("dpf_sweeps", "params.yaml", "cpu")
    try:
        config = Config.from_values(budget_values(values, args.seeds), where=f"cpu.dpf_sweeps ({TAG})")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    points = [p for p in config.points() if p.method in METHODS]
    context = RunContextSpec(data_root=args.data_root, checkpoint_root=args.checkpoints)
    device = context.resolved_device()
    start, found, prepared = time.perf_counter(), [], {}
    for point in points:
        specs = [RunSpec(point.name, seed, f"{point.name}-seed{seed}") for seed in point.recipe.seeds]
        outcome = run_points([point], specs, context, prepared)
        found.extend(outcome.runs)
        data_source = outcome.data_source
    seconds = time.perf_counter() - start
    label = results.run_label(scale=scale, seeds=args.seeds, data_source=data_source, device=device)
    summary = {"benchmark": "dpf_converged_budget", "tag": TAG, "label": label, "seconds": seconds,
               **summarise(found)}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "dpf_converged_budget.json", summary)
    (args.out / "dpf_converged_budget.md").write_text(markdown(summary, label, seconds))
    print(markdown(summary, label, seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
