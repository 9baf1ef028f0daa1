"""The quickstart's runs: every seed at ``precision``, then every seed at ``compare_precision`` when set.

A run's row is its precision (``--only bf16`` selects the comparison runs); its name is ``seed<N>``
and its settings are the model, the data subset and the experiment's name. The training recipe
(:func:`rewire.experiments.quickstart.runs.recipe`, where the precision lives) enters the settings
hash through the engine, which adds it to every run's settings.
"""

from __future__ import annotations

from rewire.data.sources import OFFICIAL_RELEASES
from rewire.experiments.base import RunSpec
from rewire.experiments.engine import ModelSpec
from rewire.experiments.quickstart.config import Config

__all__ = ["plan", "model_spec"]


def model_spec(config: Config) -> ModelSpec:
    """SmallConvNet(width) with one output per class of the dataset."""
    classes = len(OFFICIAL_RELEASES[config.dataset]["classes"])
    return ModelSpec("small_convnet", num_classes=classes, kwargs={"width": config.width})


def plan(config: Config) -> list[RunSpec]:
    """One run per (precision, seed), in training order; nothing is trained."""
    settings = {
        "experiment": "quickstart",
        "model": model_spec(config).as_dict(),
        "dataset": config.dataset,
        "train_per_class": config.train_per_class,
        "test_per_class": config.test_per_class,
    }
    return [
        RunSpec(row=precision, seed=seed, name=f"seed{seed}", settings=settings)
        for precision in config.precisions
        for seed in config.seeds
    ]
