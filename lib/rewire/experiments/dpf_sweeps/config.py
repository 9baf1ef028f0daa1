"""The schema of the DPF sweeps: :class:`Recipe` (one point's training recipe), :class:`GridEntry` and :class:`Config`.

A ``dpf_sweeps`` block of ``params.yaml`` is a :class:`Config`: the recipe fields (the defaults of
every point) and a ``grid``, a list of :class:`GridEntry` (methods x target sparsities, optionally a
paper ``preset``, a ``model`` and recipe ``overrides``) or the word ``paper``, which resolves to
the paper's own grid (``paper_grid.yaml``, :func:`rewire.experiments.dpf_sweeps.paper.runnable_grid`).
:meth:`Config.from_values` expands the grid into :class:`GridPoint` s and checks every one (methods
known, sparsities in (0, 1), presets known, every recipe valid) before any work, naming the field::

    params.yaml 'cpu.dpf_sweeps': grid[0].sparsities[0]: 1.2 is not a target sparsity in (0, 1); e.g. sparsities: [0.9]

Recipe defaults are DPF's CIFAR ResNet recipe (Appendix A.2): batch 128, SGD with Nesterov momentum
0.9, lr 0.2 decayed x0.1 at 50 % and 75 % of training, weight decay 1e-4, mask update every 16
iterations, sparsity ramp over whole epochs until the second decay.
"""

from __future__ import annotations

import contextvars
import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewire.experiments.schema import ConfigError, ExperimentConfig, check, config_fields

__all__ = [
    "METHODS",
    "STRUCTURED_METHODS",
    "REWIND_SOURCES",
    "PRECISIONS",
    "RESERVED",
    "Recipe",
    "GridEntry",
    "GridPoint",
    "part_dir",
    "Config",
    "grid_points",
]

METHODS = (
    "dense",
    "dpf",
    "dpf_frozen",
    "incremental",
    "snip",
    "oneshot_ft",
    "incremental_ft",
    "dpf_ft",
    "lottery",
    "dpf_rewind",
    "sm",
    "dsr",
    "dpf_structured",
    "sfp",
    "sfp_bn",
    "dpf_structured_bn",
    "dpf_structured_rewind",
)
STRUCTURED_METHODS = ("dpf_structured", "sfp", "sfp_bn", "dpf_structured_bn", "dpf_structured_rewind")
REWIND_SOURCES = {"dpf_rewind": "dpf", "dpf_structured_rewind": "dpf_structured"}  # rewind method -> its DPF run
PRECISIONS = ("fp32", "bf16")  # rewire.train.trainer.PRECISIONS (bf16: autocast + channels-last)
DPF_UPDATE_EVERY = 16  # Section 5.1 "Implementation of DPF": the mask is updated every p = 16 iterations
# The pipeline's keys (and the notebook's `runs_dir`), accepted beside the fields and not part of the schema.
RESERVED = ("scale", "out_dir", "checkpoint_dir", "data_root", "runs_dir")

_BUILDING: contextvars.ContextVar[bool] = contextvars.ContextVar("dpf_recipe_building", default=False)


@dataclass(frozen=True)
class Recipe(ExperimentConfig):
    """Hyperparameters of one sweep point (open_lth style: every field defines the run).

    Built directly (``Recipe(epochs=2)``) or from a mapping (:meth:`from_values`), it is checked
    the same way: a bad value raises :class:`ConfigError` naming the field.
    """

    epochs: int = field(metadata=check(at_least=1, example=300, help="training epochs of every phase but fine-tuning"))
    train_per_class: int = field(default=0, metadata=check(at_least=0, example=0, help="0 = the whole training set"))
    test_per_class: int = field(default=0, metadata=check(at_least=0, example=0, help="0 = the whole test set"))
    dataset: str = field(default="cifar10", metadata=check(example="cifar10"))
    model: str = field(default="resnet20", metadata=check(example="resnet20", help="a rewire.models name"))
    batch_size: int = field(default=128, metadata=check(at_least=1, example=128))
    lr: float = field(default=0.2, metadata=check(above=0, example=0.2))
    momentum: float = field(default=0.9, metadata=check(at_least=0, below=1, example=0.9))
    weight_decay: float = field(default=1e-4, metadata=check(at_least=0, example=0.0001))
    milestones: tuple[float, ...] = field(
        default=(0.5, 0.75),
        metadata=check(above=0, below=1, example=[0.5, 0.75], help="lr decays, fractions of epochs"),
    )
    gamma: float = field(default=0.1, metadata=check(above=0, at_most=1, example=0.1))
    update_every: int = field(default=DPF_UPDATE_EVERY, metadata=check(at_least=1, example=16))
    sparsity_frequency: float = field(
        default=1.0, metadata=check(at_least=0, example=1.0, help="Δt of the cubic ramp in epochs; 0 = every update")
    )
    finetune_epochs: int = field(default=1, metadata=check(at_least=1, example=60))
    finetune_lr: float = field(default=0.01, metadata=check(above=0, example=0.01))
    lottery_rounds: int = field(default=1, metadata=check(at_least=1, example=10))
    seeds: tuple[int, ...] = field(default=(0,), metadata=check(at_least=0, example=[0, 1, 2]))
    precision: str = field(default="fp32", metadata=check(choices=PRECISIONS, example="bf16"))
    # Test and validation sets are evaluated every `eval_every` epochs and always after the last one
    # (a full 10,000-image evaluation of ResNet-20 costs about 4 s on 2 CPU cores).
    eval_every: int = field(default=1, metadata=check(at_least=1, example=2))
    # Epochs of the rewind methods' retraining (Figures 5, 8, 13); 0 = the DPF run's `epochs` (Figure 5's
    # "same epochs"). Figure 8's "same computation" sets it per sparsity (paper.same_flops_epochs).
    rewind_epochs: int = field(default=0, metadata=check(at_least=0, example=470, help="0 = as many as epochs"))
    # Held out of the training split (stratified, seeded) and evaluated every epoch as val_*:
    # what learning-rate selection reads. 0 = no validation split (and no selection).
    validation_fraction: float = field(default=0.0, metadata=check(at_least=0, below=1, example=0.1))
    # Learning-rate candidates, selected on the validation split with the first seed (the paper
    # grid-searched them for P+FT, Incremental and SNIP, Section 5.1 / Appendix A.2); empty = no search.
    finetune_lrs: tuple[float, ...] = field(default=(), metadata=check(above=0, example=[0.01, 0.001]))
    baseline_lrs: tuple[float, ...] = field(default=(), metadata=check(above=0, example=[0.05, 0.1, 0.15, 0.2]))

    # ------------------------------------------------------------------ checks

    def __post_init__(self) -> None:
        """A directly built recipe is checked like one read from ``params.yaml`` (values normalised: lists -> tuples)."""
        if _BUILDING.get():
            return
        checked = Recipe.from_values({k: v for k, v in self.as_dict().items() if k in _RECIPE_FIELDS}, where="Recipe")
        for name in _RECIPE_FIELDS:
            object.__setattr__(self, name, getattr(checked, name))

    @classmethod
    def _build(cls, values, path, problems):
        token = _BUILDING.set(True)
        try:
            return super()._build(values, path, problems)
        finally:
            _BUILDING.reset(token)

    def validate(self) -> None:
        from rewire.models import known_models

        if self.model not in known_models():
            raise ConfigError(
                f"'model': {self.model!r} is not a known model ({', '.join(known_models())}); e.g. model: resnet20"
            )
        if len(self.milestones) < 2:
            raise ConfigError(
                f"'milestones': {list(self.milestones)}: milestones are fractions of training in (0, 1), at least two "
                "(the sparsity ramp ends at the second); e.g. milestones: [0.5, 0.75]"
            )
        if not self.seeds:
            raise ConfigError("'seeds': seeds must name at least one seed; e.g. seeds: [0, 1, 2]")
        if (self.finetune_lrs or self.baseline_lrs) and self.validation_fraction == 0.0:
            raise ConfigError(
                "'finetune_lrs' / 'baseline_lrs' select a learning rate on a validation split; "
                "set validation_fraction > 0 (e.g. validation_fraction: 0.1) or leave the candidate lists empty"
            )

    def hparams(self, *, epochs: int | None = None, lr: float | None = None, schedule: str = "multistep"):
        """Shorthand for :func:`rewire.experiments.dpf_sweeps.runs.recipe` (the one hparams builder)."""
        from rewire.experiments.dpf_sweeps.runs import recipe

        return recipe(self, epochs=epochs, lr=lr, schedule=schedule)

    def sparsity_schedule(self, final: float):
        """Shorthand for :func:`rewire.experiments.dpf_sweeps.runs.sparsity_schedule`."""
        from rewire.experiments.dpf_sweeps.runs import sparsity_schedule

        return sparsity_schedule(self, final)

    @classmethod
    def from_params(cls, values: dict[str, Any]) -> Recipe:
        """The recipe of a ``params.yaml`` block; keys that are not recipe fields (``grid``, the notebook's) are left out."""
        return cls.from_values({k: v for k, v in values.items() if k in _RECIPE_FIELDS}, where="Recipe")


_RECIPE_FIELDS = tuple(config_fields(Recipe))


@dataclass(frozen=True)
class GridEntry(ExperimentConfig):
    """One entry of a grid: ``methods`` x ``sparsities`` at one recipe. ``dense`` runs once per entry.

    ``tag`` names the entry (a paper table or figure, e.g. ``table1-wrn28_2``); points of an untagged
    entry live directly under the runs directory, as ``<method>-<sparsity>``.
    """

    methods: tuple[str, ...] = field(metadata=check(example=["dense", "dpf"], help=f"of: {', '.join(METHODS)}"))
    sparsities: tuple[float, ...] = field(default=(), metadata=check(example=[0.9], help="target sparsities in (0, 1)"))
    tag: str = field(default="", metadata=check(example="fig9-p1"))
    figure: str = field(default="", metadata=check(example="Figure 9", help="the paper tables/figures it feeds"))
    model: str = field(default="", metadata=check(example="wrn28_2", help="empty: the block's model"))
    preset: str = field(default="", metadata=check(example="resnet_cifar", help="a paper recipe of presets.py"))
    overrides: dict[str, Any] = field(default_factory=dict, metadata=check(example={"update_every": 1}))
    note: str = field(default="", metadata=check(help="what the paper leaves open and our choice"))
    part: int = field(
        default=1,
        metadata=check(
            at_least=1,
            example=2,
            help="the training stage that runs it (1: dpf_runs, 2: dpf_runs_2), so that each fits its time budget; "
            "not part of any run's identity",
        ),
    )


@dataclass(frozen=True)
class GridPoint:
    """One (method, target sparsity) of a grid, with the recipe it runs at."""

    method: str
    sparsity: float
    recipe: Recipe | None
    tag: str = ""
    figure: str = ""
    part: int = 1

    @property
    def name(self) -> str:
        return f"{self.tag}/{self.method}-{self.sparsity}" if self.tag else f"{self.method}-{self.sparsity}"

    def directory(self, runs_dir: str | os.PathLike) -> Path:
        return part_dir(runs_dir, self.part) / self.name


def part_dir(runs_dir: str | os.PathLike, part: int) -> Path:
    """The runs directory of grid part ``part``: ``runs_dir`` itself for part 1, ``<runs_dir>_<part>`` after
    (the DVC stages ``dpf_runs`` and ``dpf_runs_2`` each own one, as DVC outputs may not overlap)."""
    runs_dir = Path(runs_dir)
    return runs_dir if part == 1 else runs_dir.with_name(f"{runs_dir.name}_{part}")


@dataclass(frozen=True)
class Config(Recipe):
    """A ``dpf_sweeps`` block: the recipe of every point and the ``grid`` (entries, or ``paper``)."""

    IGNORED = RESERVED

    grid: tuple[GridEntry, ...] = field(
        default=(), metadata=check(example="paper", help="grid entries, or `paper`: the paper's grid (paper_grid.yaml)")
    )
    # Figure 10's overhead: pairs of interleaved dense / DPF blocks timed by the report
    # (rewire.experiments.dpf_sweeps.overhead); not a training setting, so not in any run's identity.
    overhead_pairs: int = field(
        default=20,
        metadata=check(at_least=2, example=20, help="timed dense/DPF pairs of the overhead benchmark (>= 2)"),
    )

    @classmethod
    def from_values(cls, values, where: str = "config"):
        """As :meth:`ExperimentConfig.from_values`; ``grid: paper`` first becomes the paper's grid."""
        if isinstance(values, dict) and isinstance(values.get("grid"), str):
            if values["grid"] != "paper":
                raise ConfigError(
                    f"{where}: 'grid': {values['grid']!r} is neither a list of entries nor 'paper'; e.g. grid: paper"
                )
            from rewire.experiments.dpf_sweeps.paper import runnable_grid

            values = {**values, "grid": runnable_grid()}
        return super().from_values(values, where)

    def __post_init__(self) -> None:
        if not _BUILDING.get():  # built directly: check the whole config (grid included) as params.yaml would be
            type(self).from_values(self.as_dict(), where="Config")

    def recipe(self) -> Recipe:
        """The block's own recipe (every point's defaults)."""
        return Recipe.from_values({k: getattr(self, k) for k in _RECIPE_FIELDS}, where="Recipe")

    def validate(self) -> None:
        super().validate()
        if not self.grid:
            raise ConfigError(
                "'grid': the dpf_sweeps block needs a `grid`: a non-empty list of {methods, sparsities, ...} entries, or `paper`"
            )
        self.points()

    def points(self) -> list[GridPoint]:
        """Every (method, sparsity) point of the grid with its recipe, in grid order; checked (see the module)."""
        from rewire.experiments.dpf_sweeps import presets

        base = {k: getattr(self, k) for k in _RECIPE_FIELDS}
        points: dict[str, GridPoint] = {}
        for index, entry in enumerate(self.grid):
            where = f"grid[{index}]" + (f" ({entry.tag})" if entry.tag else "")
            fields = dict(base)
            if entry.preset:
                if entry.preset not in presets.PRESETS:
                    raise ConfigError(
                        f"{where}.preset: unknown preset {entry.preset!r}; known presets: "
                        f"{', '.join(sorted(presets.PRESETS))}; e.g. preset: resnet_cifar"
                    )
                fields.update(presets.PRESETS[entry.preset])
            if entry.model:
                fields["model"] = entry.model
            bad = sorted(set(entry.overrides) - set(_RECIPE_FIELDS))
            if bad:
                close = difflib.get_close_matches(bad[0], _RECIPE_FIELDS, n=1, cutoff=0.75)
                raise ConfigError(
                    f"{where}.overrides: {', '.join(bad)} are not recipe fields"
                    + (f" (did you mean '{close[0]}'?)" if close else f" ({', '.join(_RECIPE_FIELDS)})")
                    + "; e.g. overrides: {update_every: 4}"
                )
            fields.update(entry.overrides)
            try:
                recipe = Recipe.from_values(fields, where=f"{where} recipe")
            except ConfigError as error:
                raise ConfigError(str(error)) from None
            if not entry.methods:
                raise ConfigError(f"{where}.methods: must be a non-empty list of: {', '.join(METHODS)}")
            for method in entry.methods:
                if method not in METHODS:
                    raise ConfigError(
                        f"{where}.methods: unknown method {method!r}; known methods: {', '.join(METHODS)}; "
                        "e.g. methods: [dense, dpf]"
                    )
                for position, sparsity in enumerate([0.0] if method == "dense" else entry.sparsities):
                    if method != "dense":
                        _check_target(sparsity, method, f"{where}.sparsities[{position}]")
                    point = GridPoint(method, float(sparsity), recipe, entry.tag, entry.figure, entry.part)
                    previous = points.get(point.name)
                    if previous is not None and (previous.recipe, previous.part) != (recipe, entry.part):
                        raise ConfigError(
                            f"{where}: {point.name} appears twice with different recipes or parts; "
                            "give one entry a distinct tag"
                        )
                    points[point.name] = point
        return list(points.values())


def _check_target(sparsity: float, method: str, where: str) -> None:
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)):
        raise ConfigError(f"{where}: {sparsity!r} is not a number; e.g. sparsities: [0.9]")
    if sparsity == 0.0:
        raise ConfigError(
            f"{where}: method {method!r} needs a target sparsity in (0, 1), got 0; e.g. sparsities: [0.9]"
        )
    if not 0.0 < sparsity < 1.0:
        raise ConfigError(f"{where}: {sparsity!r} is not a target sparsity in (0, 1); e.g. sparsities: [0.9]")


def grid_points(values: dict[str, Any], where: str = "dpf_sweeps") -> list[GridPoint]:
    """Expand a ``dpf_sweeps`` block (a mapping) into its checked points (``Config.from_values(values).points()``)."""
    return Config.from_values(values, where=where).points()
