"""The runs a robust-binary config asks for: every row on each of its seeds, in the order they train.

A row's finetune/retrain runs follow the edge-popup row whose found mask they hold (:class:`Config` checks that
``mask_from`` names an earlier row), so the plan's order is a valid training order. Each spec's ``settings`` hold
:func:`identity`, the row's part of its run's settings hash.
"""

from __future__ import annotations

from typing import Any

from rewire.experiments.base import RunSpec
from rewire.experiments.robust_binary.config import PAPER_FAST_STEP_255, Config, Row

__all__ = ["IDENTITY_FIELDS", "LATER_FIELDS", "RECIPE_FIELDS", "identity", "run_name", "plan"]

# The row fields that define a run (with ε, its step and FGSM's step as pixel fractions, as the runs recorded
# them); the recipe's other knobs (optimizer, schedule, momentum, ...) enter through the run's recipe, the batch
# size through the run's config
IDENTITY_FIELDS = (
    "model", "widths", "method", "keep", "p", "weight_init", "score_init", "last_bn", "training", "trades_beta",
    "mask_from", "steps", "attack_bn_mode", "epochs", "lr", "weight_decay", "precision", "eval_every",
    "validation_images", "test_images",
)  # fmt: skip


# The row fields that shape the training recipe only: recorded in the run's recipe (``hparams``) and its batch size,
# never twice in the identity
RECIPE_FIELDS = ("optimizer", "momentum", "schedule", "milestones", "warmup_epochs", "label_smoothing", "batch_size")


# Fields added after runs were recorded, with the value those runs had: in the identity only when they differ, so the
# recorded runs keep their directories (the attack protocol and the kept counts' rounding, issue 19)
LATER_FIELDS = {"attack_protocol": "standard", "rounding": "floor", "train_steps": None}


def identity(row: Row) -> dict[str, Any]:
    """A resolved row's settings as its runs record them (``config.setup`` of ``record.json``).

    FGSM's step was added after the first runs were recorded: it is part of the identity only when it differs
    from the paper's 4/255, so the runs recorded before keep their directories; the same for :data:`LATER_FIELDS`.
    Never change those defaults."""
    settings: dict[str, Any] = {key: getattr(row, key) for key in IDENTITY_FIELDS}
    settings["widths"] = list(row.widths)
    settings["eps"], settings["step_size"] = row.eps, row.step_size
    if row.fast_step_255 != PAPER_FAST_STEP_255:
        settings["fast_step"] = row.fast_step
    settings.update({key: getattr(row, key) for key, default in LATER_FIELDS.items() if getattr(row, key) != default})
    return settings


def run_name(row: str, seed: int) -> str:
    """The run directory's readable prefix."""
    return f"{row}-seed{seed}"


def plan(config: Config) -> list[RunSpec]:
    """One :class:`RunSpec` per row and seed, rows in the config's order (mask sources before their users)."""
    specs = []
    for row in config.resolved_rows():
        for seed in config.row_seeds(row):
            settings = {"setup": identity(row), "batch_size": row.batch_size}
            specs.append(RunSpec(row.name, seed, run_name(row.name, seed), settings))
    return specs
