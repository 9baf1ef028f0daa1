"""The toy runs of DPF's Theorem 4.1: :func:`run_one` (one sparsity, one seed) and :func:`run` (the plan).

Everything is float64 and seeded, and runs in seconds on a CPU, so nothing goes through the run
engine's checkpoints: a run is recomputed, never found. The math is :mod:`.problem`.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch

from rewire.experiments.base import Outcome, RunContextSpec, select_rows
from rewire.experiments.dpf_theory import problem as toy
from rewire.experiments.dpf_theory.config import Config
from rewire.experiments.dpf_theory.plan import plan

__all__ = ["make_problem", "data_source", "run_one", "run"]


def make_problem(config: Config) -> toy.LogisticProblem:
    return toy.make_problem(
        config.n_samples,
        config.dim,
        config.sparse_truth,
        config.reg,
        config.problem_seed,
        signal=config.signal,
        tail=config.tail,
    )


def data_source(config: Config) -> dict[str, str]:
    return {
        "kind": "synthetic",
        "description": f"l2-regularised logistic regression, n={config.n_samples}, d={config.dim}, mu={config.reg}, "
        f"planted w: {config.sparse_truth:g} large + dense tail {config.tail:g}, problem seed {config.problem_seed}",
    }


def run_one(
    config: Config, problem: toy.LogisticProblem, sparsity: float, seed: int, sgd: toy.SGDRun
) -> tuple[list[dict[str, Any]], list[pd.DataFrame]]:
    """DPF, SGD → prune (from the seed's ``sgd`` trajectory) and optionally DPF + dense decay at ``sparsity``:
    one summary row per method (the final gaps, Theorem 4.1's average and bound) and its curve."""
    steps, batch, shift = config.steps, config.batch_size, config.shift
    trajectories = {
        "dpf": toy.run_dpf(problem, sparsity, steps, batch, seed, config.update_every, shift=shift),
        "sgd": toy.run_sgd_then_prune(problem, sparsity, steps, batch, seed, shift=shift, sgd=sgd),
    }
    if config.dense_decay_variant:
        trajectories["dpf_dense_decay"] = toy.run_dpf(
            problem, sparsity, steps, batch, seed, config.update_every, shift=shift, regulariser="dense"
        )
    rows, curves = [], []
    for method, trajectory in trajectories.items():
        frame = pd.DataFrame(trajectory.records(points=config.curve_points))
        frame.insert(0, "method", method)
        frame.insert(1, "sparsity", sparsity)
        frame.insert(2, "seed", seed)
        frame["L_neighbourhood"] = problem.L * frame["neighbourhood"]
        curves.append(frame)
        row = {
            "method": method,
            "sparsity": sparsity,
            "seed": seed,
            "k": trajectory.k,
            "theorem_average_gap": trajectory.averaged_pruned_gap,
            "last_pruned_gap": trajectory.final_pruned_gap,
            "last_dense_gap": float(trajectory.gap_dense[-1]),
            "avg_L_neighbourhood": float((toy.theorem_weights(steps) * trajectory.neighbourhood).sum()) * problem.L,
            "last_L_neighbourhood": problem.L * float(trajectory.neighbourhood[-1]),
            "last_w_norm2": float(trajectory.iterates[-1] @ trajectory.iterates[-1]),
            "mask_changes_last_10pct": float(trajectory.mask_changes[-max(1, steps // 10) :].sum()),
            "one_shot_bound": trajectory.one_shot_bound(problem),
        }
        if method == "dpf" and shift == 0:
            bound = trajectory.theorem_bound(problem)
            row.update(
                theorem_bound=bound["bound"],
                theorem_bound_sgd_term=bound["sgd_term"],
                theorem_bound_pruning_term=bound["pruning_term"],
            )
        rows.append(row)
    return rows, curves


def run(config: Config, *, context: RunContextSpec | None = None, only=None) -> Outcome:
    """Every planned (sparsity, seed); ``Outcome.runs`` are the summary rows, ``extra`` holds the problem,
    the references (pruned and refitted optimum per sparsity) and the curves."""
    torch.set_num_threads(1)  # tiny tensors: a second thread only adds synchronisation (2-3x slower on a busy CPU)
    problem = make_problem(config)
    specs = select_rows(plan(config), only)
    rows, curves, sgd_runs = [], [], {}
    for spec in specs:
        if spec.seed not in sgd_runs:  # one SGD run per seed serves every sparsity (pruning never feeds back)
            sgd_runs[spec.seed] = toy.run_sgd(problem, config.steps, config.batch_size, spec.seed, shift=config.shift)
        found, curve = run_one(config, problem, spec.settings["sparsity"], spec.seed, sgd_runs[spec.seed])
        rows += found
        curves += curve
    sparsities = sorted({spec.settings["sparsity"] for spec in specs})
    references = {s: toy.sparse_references(problem, s) for s in sparsities}
    return Outcome(
        runs=rows,
        data_source=data_source(config),
        extra={"problem": problem, "references": references, "curves": pd.concat(curves, ignore_index=True)},
    )
