"""The runs a ``dpf_sweeps`` config asks for: every grid point x every seed of its recipe, in training order."""

from __future__ import annotations

from rewire.experiments.base import RunSpec
from rewire.experiments.dpf_sweeps.config import Config

__all__ = ["plan"]


def plan(config: Config) -> list[RunSpec]:
    """One :class:`RunSpec` per (grid point, seed); ``row`` is the point's name (``--only`` selects it).

    Nothing trains here. A point's seeds are its own recipe's (an entry's ``overrides`` may change them).
    """
    return [
        RunSpec(
            row=point.name,
            seed=seed,
            name=f"{point.name}-seed{seed}",
            settings={
                "method": point.method,
                "sparsity": point.sparsity,
                "tag": point.tag,
                "recipe": point.recipe.as_dict(),
            },
        )
        for point in config.points()
        for seed in point.recipe.seeds
    ]
