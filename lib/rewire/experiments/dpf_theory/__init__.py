"""DPF's Theorem 4.1 on a strongly convex toy (Lin et al., *Dynamic Model Pruning with Feedback*, ICLR 2020).

The experiment contract of :mod:`rewire.experiments.base`:

``Config`` (:mod:`.config`)
    a ``dpf_theory`` block: the synthetic ℓ2-regularised logistic regression, the sparsities, T, the seeds;
``plan(config)`` (:mod:`.plan`)
    one run per (sparsity, seed): DPF, SGD → prune and optionally DPF + dense decay (the settings themselves);
``run(config, context=None, only=None)`` (:mod:`.runs`)
    the toy runs (float64, seconds on a CPU; ``run_one`` runs one sparsity and seed);
``report(config, outcome, out_dir, label)`` (:mod:`.report`)
    the final-gap table, the suboptimality curves, the summary and the metrics.

The math (the problem, DPF, SGD, Theorem 4.1's weights and bound) is :mod:`.problem`; its names are
re-exported here (``dpf_theory.make_problem``, ``dpf_theory.run_dpf``, ...).
"""

from rewire.experiments.dpf_theory.config import Config
from rewire.experiments.dpf_theory.plan import plan
from rewire.experiments.dpf_theory.problem import (
    LogisticProblem,
    SGDRun,
    Trajectory,
    keep_count,
    magnitude_mask,
    make_problem,
    pruning_quality,
    run_dpf,
    run_sgd,
    run_sgd_then_prune,
    running_theorem_average,
    sample_batches,
    sparse_references,
    step_size,
    theorem_weights,
)
from rewire.experiments.dpf_theory.report import report
from rewire.experiments.dpf_theory.runs import run, run_one

__all__ = [
    "Config",
    "plan",
    "run",
    "run_one",
    "report",
    "LogisticProblem",
    "SGDRun",
    "Trajectory",
    "keep_count",
    "magnitude_mask",
    "make_problem",
    "pruning_quality",
    "run_dpf",
    "run_sgd",
    "run_sgd_then_prune",
    "running_theorem_average",
    "sample_batches",
    "sparse_references",
    "step_size",
    "theorem_weights",
]
