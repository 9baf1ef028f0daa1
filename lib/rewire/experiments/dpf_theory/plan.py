"""The runs a ``dpf_theory`` config asks for: per seed, DPF and SGD → prune at every sparsity (its settings)."""

from __future__ import annotations

from rewire.experiments.base import RunSpec
from rewire.experiments.dpf_theory.config import Config

__all__ = ["plan"]


def plan(config: Config) -> list[RunSpec]:
    """One :class:`RunSpec` per (sparsity, seed); ``row`` is ``s<sparsity>`` (``--only s0.9``).

    Each run is DPF, SGD → prune (one SGD trajectory per seed serves every sparsity) and, with
    ``dense_decay_variant``, DPF with weight decay on the dense weights, all with the same minibatches.
    """
    methods = ["dpf", "sgd"] + (["dpf_dense_decay"] if config.dense_decay_variant else [])
    return [
        RunSpec(
            row=f"s{sparsity:g}",
            seed=seed,
            name=f"s{sparsity:g}-seed{seed}",
            settings={"sparsity": sparsity, "methods": methods, "steps": config.steps, "shift": config.shift},
        )
        for seed in config.seeds
        for sparsity in config.sparsities
    ]
