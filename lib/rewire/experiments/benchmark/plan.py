"""The benchmark's runs: the dense network once per seed, then every sparse method at every sparsity, every seed.

A run's row is ``dense`` or ``<method>-<sparsity>`` (``--only dnw-0.9`` selects one); its name is
``<row>-seed<N>``. The dense rows come first: One-shot P + FT and the lottery ticket start from the dense run of
the same seed, which they find again by its hash. Count: seeds x (1 + sparse methods x sparsities).
"""

from __future__ import annotations

from rewire.experiments.base import RunSpec
from rewire.experiments.benchmark.config import REGISTRY_NAME, Config

__all__ = ["plan", "row_name"]


def row_name(method: str, sparsity: float) -> str:
    """``dense`` for the dense network, else ``<method>-<sparsity>`` (``dnw-0.9``)."""
    return "dense" if method == "dense" else f"{method}-{sparsity:g}"


def plan(config: Config) -> list[RunSpec]:
    """One :class:`RunSpec` per (row, seed), in training order; nothing is trained."""
    shared = {
        "experiment": "benchmark",
        "model": config.model,
        "width": config.width,
        "dataset": config.dataset,
        "train_per_class": config.train_per_class,
        "test_per_class": config.test_per_class,
    }
    rows = [("dense", 0.0)] + [(m, s) for s in config.sparsities for m in config.sparse_methods]
    return [
        RunSpec(
            row=row_name(method, sparsity),
            seed=seed,
            name=f"{row_name(method, sparsity)}-seed{seed}",
            settings={**shared, "method": method, "registry_method": REGISTRY_NAME[method], "sparsity": sparsity},
        )
        for method, sparsity in rows
        for seed in config.seeds
    ]
