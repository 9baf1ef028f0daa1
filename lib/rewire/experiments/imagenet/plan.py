"""The runs of the ImageNet tables a :class:`~rewire.experiments.imagenet.config.Config` asks for, in training order.

Every DNW Table 3 row on every seed, then every DPF Table 3 point on every seed. Without a folder
(``data: ""``, the cpu scale) nothing is planned: the stage writes Table 3's counts only.
"""

from __future__ import annotations

from rewire.experiments.base import RunSpec
from rewire.experiments.imagenet.config import Config

__all__ = ["plan", "DNW", "DPF"]

DNW, DPF = "dnw", "dpf"  # the two tables (RunSpec.settings["table"])


def plan(config: Config) -> list[RunSpec]:
    """One spec per (DNW row or DPF point, seed); none when ``config.data`` is empty."""
    if not config.data:
        return []
    specs = [
        RunSpec(row=key, seed=seed, name=f"table3-{key}-seed{seed}", settings={"table": DNW, "row": key})
        for key in config.dnw_rows
        for seed in config.seeds
    ]
    specs += [
        RunSpec(
            row=point.row,
            seed=seed,
            name=f"dpf-imagenet-{point.method}-{point.target}-seed{seed}",
            settings={"table": DPF, "method": point.method, "sparsity": point.target},
        )
        for point in config.dpf_points
        for seed in config.seeds
    ]
    return specs
