"""DNW Table 1's runs: one per (setting, method, seed), in that order; the graph each one trains.

A run's row is ``<setting>_<method>`` (``--only static_dnw``), its name ``<setting>-<method>-seed<N>``,
its settings the graph (:func:`graph_config`), the method, the data subset and the experiment's
name. The training recipe (:func:`rewire.experiments.tiny_graphs.runs.recipe`) enters the
settings hash through the engine, which adds it to every run's settings.
"""

from __future__ import annotations

import dataclasses

from rewire.data.sources import OFFICIAL_RELEASES
from rewire.experiments.base import RunSpec
from rewire.experiments.engine import ModelSpec
from rewire.experiments.tiny_graphs.config import Config
from rewire.models.tiny_graphs import ADAPTIVE_SOLVERS, GraphConfig

__all__ = ["MODEL_NAMES", "graph_config", "model_spec", "plan"]

MODEL_NAMES = {
    "static": "tiny_static",
    "discrete_time": "tiny_discrete_time",
    "continuous_time": "tiny_continuous_time",
}


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


def model_spec(config: Config, setting: str) -> ModelSpec:
    """The model of ``setting``: its graph's fields as the model's arguments (lists, not tuples)."""
    graph = graph_config(
        setting,
        ode_solver=config.ode_solver,
        ode_step=config.ode_step,
        num_classes=len(OFFICIAL_RELEASES[config.dataset]["classes"]),
        graph_variant=config.graph_variant,
    )
    fields = {
        k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(graph).items() if k != "num_classes"
    }
    return ModelSpec(MODEL_NAMES[setting], num_classes=graph.num_classes, kwargs=fields)


def plan(config: Config) -> list[RunSpec]:
    """One run per (setting, method, seed), in training order; nothing is trained."""
    specs = []
    for setting in config.settings:
        model = model_spec(config, setting).as_dict()
        for method in config.methods:
            for seed in config.seeds:
                settings = {
                    "experiment": "tiny_graphs",
                    "setting": setting,
                    "method": method,
                    "model": model,
                    "dataset": config.dataset,
                    "train_per_class": config.train_per_class(setting),
                    "test_per_class": config.test_per_class,
                }
                specs.append(RunSpec(f"{setting}_{method}", seed, f"{setting}-{method}-seed{seed}", settings))
    return specs
