"""DNW Table 1: tiny neural graphs (static, discrete-time, continuous-time) trained with RG or DNW.

One run = (setting, method, seed) on the run engine: the graph model of
:mod:`rewire.models.tiny_graphs`, the method applied to its adjacency ``graph.weight`` from
outside (:func:`rewire.methods.apply_method`), and a :class:`rewire.sparse.wiring.WiringMonitor`
recording real and live edges, swaps and dead nodes every epoch.

Recipe of the DNW authors' code, shortened to the scale's epochs: SGD momentum 0.9, lr 0.1,
weight decay 1e-4 on all parameters; cosine decay per iteration at the smoke and cpu scales,
the paper's step decay (x0.1 at epochs 80 and 120 of 160) at the paper scale; random crop + flip.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from rewire.experiments.engine import ModelSpec, RunContext, RunResult
from rewire.methods.dnw import apply_method
from rewire.models.tiny_graphs import ADAPTIVE_SOLVERS, GraphConfig
from rewire.sparse.wiring import WiringMonitor, graph_mask
from rewire.train.runtime import Seeds
from rewire.train.trainer import TrainingHparams

__all__ = ["PAPER_TABLE1", "TinyGraphRun", "graph_config", "hparams", "run_one", "table1_claims"]

# DNW Table 1: test top-1 (%), mean ± std over 5 runs, 160 epochs, full CIFAR-10
PAPER_TABLE1 = {
    ("static", "rg"): (76.1, 0.5),
    ("static", "dnw"): (80.9, 0.6),
    ("discrete_time", "rg"): (77.3, 0.7),
    ("discrete_time", "dnw"): (82.3, 0.6),
    ("continuous_time", "rg"): (78.5, 1.2),
    ("continuous_time", "dnw"): (83.1, 0.3),
}
MODEL_NAMES = {
    "static": "tiny_static",
    "discrete_time": "tiny_discrete_time",
    "continuous_time": "tiny_continuous_time",
}


@dataclass
class TinyGraphRun:
    setting: str
    method: str
    seed: int
    result: RunResult
    initial_mask: torch.Tensor
    final_mask: torch.Tensor


def graph_config(
    setting: str, *, ode_solver: str, ode_step: float, num_classes: int = 10, graph_variant: str = "paper"
) -> GraphConfig:
    """The paper's graph (800 nodes, k = 32,000); the continuous one with the scale's ODE solver.

    ``graph_variant``: ``"paper"`` (the paper's text) or ``"authors_code"`` (what the DNW authors'
    code computes, which produced Table 1's numbers); see :mod:`rewire.models.tiny_graphs`."""
    config = GraphConfig(num_classes=num_classes, graph_variant=graph_variant)
    if setting == "continuous_time":
        config = config.replace(solver=ode_solver, step_size=None if ode_solver in ADAPTIVE_SOLVERS else ode_step)
    return config


def hparams(
    *,
    epochs: int,
    lr: float,
    weight_decay: float,
    schedule: str,
    milestones: Sequence[float],
    precision: str = "fp32",
    eval_every: int = 1,
) -> TrainingHparams:
    return TrainingHparams(
        precision=precision,
        eval_every=eval_every,
        epochs=epochs,
        lr=lr,
        momentum=0.9,
        weight_decay=weight_decay,
        schedule=schedule,
        milestones=tuple(milestones),
        schedule_step="iteration" if schedule == "cosine" else "epoch",
    )


def run_one(
    ctx: RunContext,
    setting: str,
    method: str,
    seed: int,
    *,
    config: GraphConfig,
    recipe: TrainingHparams,
    subset: dict[str, Any],
) -> TinyGraphRun:
    """Train (or find) one tiny graph with ``method`` ("rg", "dnw", "dnw_no_update", "dense")."""
    fields = {
        k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items() if k != "num_classes"
    }
    spec = ModelSpec(MODEL_NAMES[setting], num_classes=config.num_classes, kwargs=fields)
    model = ctx.build(spec, seed)
    apply_method(
        model,
        method,
        k=config.k,
        allowed=model.allowed_edges(),
        seed=Seeds.from_run_seed(seed).model,
        targets=("graph.weight",),
    )
    initial = graph_mask(model).cpu()
    result = ctx.fit(
        f"{setting}-{method}-seed{seed}",
        seed=seed,
        config={
            "experiment": "tiny_graphs",
            "setting": setting,
            "method": method,
            "model": spec.as_dict(),
            "hparams": recipe.as_dict(),
            **subset,
        },
        model=model,
        hparams=recipe,
        callbacks=[WiringMonitor()],
        model_spec=spec,
        run_info={"setting": setting, "method": method},
    )
    return TinyGraphRun(setting, method, seed, result, initial, graph_mask(model).cpu())


def table1_claims(per_run) -> list:
    """DNW Table 1's claim in each setting, "DNW beats RG", paired by seed (:mod:`rewire.reporting.claims`).

    ``per_run`` has one row per (setting, method, seed) with ``test_top1``; settings where either
    side has fewer than two seeds are left out (an interval needs two).
    """
    from rewire.reporting.claims import Claim

    found = []
    for setting in dict.fromkeys(per_run.setting):
        rows = per_run[per_run.setting == setting]
        sides = {m: dict(zip(rows[rows.method == m].seed, rows[rows.method == m].test_top1)) for m in ("dnw", "rg")}
        if len(set(sides["dnw"]) & set(sides["rg"])) >= 2:
            found.append(
                Claim(
                    "DNW",
                    f"DNW beats a random graph of the same size ({setting.replace('_', '-')})",
                    "DNW",
                    sides["dnw"],
                    "RG",
                    sides["rg"],
                    kind="greater",
                    source="Table 1",
                )
            )
    return found
