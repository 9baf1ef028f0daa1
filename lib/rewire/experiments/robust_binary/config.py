"""The robust-binary experiment's schema: every key of its ``params.yaml`` blocks and every notebook parameter.

:class:`Config` is one scale's block (``smoke.robust_binary``, ``cpu.robust_binary``, ``paper.robust_binary`` and
``paper.robust_binary_imagenet100``); its ``rows`` are :class:`Row` configs, one network and one way of training
it each (Liu et al., NeurIPS 2022: edge-popup on frozen random weights, the adaptive allocation, the last batch
norm; the baselines of Tables 7-11). A row names only what differs from the scale's values; :meth:`Config.resolved`
fills the rest in. Everything is checked before any data is loaded or any run trains, values included: keep in
(0, 1], p >= 0, epochs >= 1, known methods, trainings, attacks, AutoAttack variants and datasets, every ε and step
in /255 units within 0.25-64 (Section 4.1: ε = 8/255 on CIFAR-10, 2/255 on ImageNet-100), ``mask_from`` naming an
earlier edge-popup row of the same network and dataset, unique row names, seeds among the scale's, and each row's
recipe. A row of another dataset (``dataset: cifar100`` in a CIFAR-10 block) with CIFAR-10's budgets is allowed but
warned about, naming the paper's values (:data:`PAPER_BUDGETS_255`).

Two settings per scale (a row may override them) say how the paper's protocol is reproduced, and every run's
identity names them when they differ from the committed runs' values: ``attack_protocol`` (:data:`ATTACK_PROTOCOLS`:
``standard`` or the authors' code, the paper scale's) and ``rounding`` (the kept count per layer,
:data:`rewire.sparse.allocation.ROUNDINGS`: ``floor`` = ``int(r·n)`` or ``get_subnet`` = ``n - int((1-r)·n)``, what
the authors' forward pass keeps, the paper scale's).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rewire.experiments.schema import ConfigError, ExperimentConfig, check
from rewire.methods.edge_popup import SCORE_INITS, WEIGHT_INITS
from rewire.models.resnet_robust import ROBUST_MODELS
from rewire.sparse.allocation import ROUNDINGS
from rewire.train.trainer import PRECISIONS

__all__ = [
    "METHODS",
    "TRAININGS",
    "FOUND_MASK_METHODS",
    "ATTACK_BN_MODES",
    "ATTACK_PROTOCOLS",
    "ROUNDINGS",
    "AUTOATTACK_VARIANTS",
    "DATASETS",
    "BUDGET_RANGE_255",
    "PAPER_FAST_STEP_255",
    "TRADES_BETA",
    "PAPER_BUDGETS_255",
    "Row",
    "Config",
    "SMOKE_ROWS",
]

METHODS = ("edge_popup", "dense", "binary_connect", "finetune", "retrain")
TRAININGS = ("pgd", "trades", "fast", "clean")  # the training attack: PGD (Alg. 1), TRADES, FGSM + ATTA (Alg. 2), none
# method -> hold_found_mask's weights: fine-tune trains the found ±1 weights, retrain fresh ±1 weights (the authors'
# lottery_binary re-initialisation)
FOUND_MASK_METHODS = {"finetune": "found", "retrain": "binary"}
ATTACK_BN_MODES = ("eval", "train")
# How the training attacks run. "standard": PGD returns its final iterate, the attacks see the network in eval mode
# (the row's attack_bn_mode), ATTA's crops start at offsets 0..8 (torchvision's RandomCrop). "authors": the authors'
# code (IVRL/RobustBinarySubNet, util/attack.py and util/augmentation.py), whose numbers the paper reports: training
# PGD returns the per-sample worst iterate among iterates 0..steps-1, PGD and FGSM run with BN in train mode, ATTA's
# crop offsets are 0..7. Evaluation (model selection and test) is the same under both: PGD in eval mode.
ATTACK_PROTOCOLS = ("standard", "authors")
AUTOATTACK_VARIANTS = ("apgd-ce", "standard")  # APGD-CE alone, or the standard four (the paper's protocol)
DATASETS = ("cifar10", "cifar100", "imagenet100")  # the paper's three (Tables 9-11)
# Every ε and step in /255 units: below 1/4 of a grey level or above 64/255 (a quarter of the range) is a slip,
# most often a fraction (0.0314 for 8/255) where /255 units are expected
BUDGET_RANGE_255 = (0.25, 64.0)
PAPER_FAST_STEP_255 = 4.0  # FGSM's step in fast training on CIFAR-10 (the authors' fast configuration, Alg. 2)
# The paper's budgets per dataset in /255 (Section 4.1 and Appendix C; the authors' configs): ε, PGD's step, FGSM's
PAPER_BUDGETS_255 = {
    "cifar10": {"eps_255": 8.0, "step_255": 2.0, "fast_step_255": 4.0},
    "cifar100": {"eps_255": 4.0, "step_255": 1.0, "fast_step_255": 2.0},
    "imagenet100": {"eps_255": 2.0, "step_255": 0.5, "fast_step_255": 1.0},
}
TRADES_BETA = 6.0  # TRADES β of Table 9's TRADES rows
OPTIMIZERS = ("sgd", "adam")  # rewire.train.TrainingHparams
SCHEDULES = ("constant", "multistep", "cosine")
# A row may name these with the old fraction names; they are /255 fields now
RENAMED_BUDGETS = {"eps": ("eps_255", 8), "step_size": ("step_255", 2), "fast_step": ("fast_step_255", 4)}


def _budget(default: float | None, example: float, help: str) -> Any:
    low, high = BUDGET_RANGE_255
    return field(default=default, metadata=check(at_least=low, at_most=high, unit="/255", example=example, help=help))


@dataclass(frozen=True)
class Row(ExperimentConfig):
    """One row: a network and a way of training it. Fields left ``None`` take the scale's value (:class:`Config`)."""

    name: str = field(metadata=check(example="ours_p01", help="the row's name: --only, tables, claims"))
    method: str = field(default="edge_popup", metadata=check(choices=METHODS, example="edge_popup"))
    training: str = field(default="pgd", metadata=check(choices=TRAININGS, example="fast"))
    p: float = field(default=0.1, metadata=check(at_least=0, example=0.1, help="allocation exponent: kept_i = c n_i^p"))
    keep: float | None = field(default=None, metadata=check(above=0, at_most=1, example=0.01))
    weight_init: str = field(default="binary", metadata=check(choices=WEIGHT_INITS, example="binary"))
    score_init: str = field(default="uniform", metadata=check(choices=SCORE_INITS, example="uniform"))
    last_bn: bool = True
    trades_beta: float = field(default=TRADES_BETA, metadata=check(at_least=0, example=6.0))
    mask_from: str = field(
        default="", metadata=check(example="ours_p01", help="finetune/retrain: the found mask's row")
    )
    seeds: list[int] | None = field(default=None, metadata=check(at_least=0, example=[0]))
    model: str | None = field(default=None, metadata=check(choices=tuple(ROBUST_MODELS), example="cresnet34"))
    widths: list[int] | None = field(default=None, metadata=check(at_least=1, example=[64, 128, 256, 512]))
    epochs: int | None = field(default=None, metadata=check(at_least=1, example=400))
    lr: float | None = field(default=None, metadata=check(above=0, example=0.1))
    weight_decay: float | None = field(default=None, metadata=check(at_least=0, example=0.0005))
    batch_size: int | None = field(default=None, metadata=check(at_least=1, example=512))
    eps_255: float | None = _budget(None, 8, "the L-infinity budget, training and evaluation")
    step_255: float | None = _budget(None, 2, "PGD's step")
    fast_step_255: float = _budget(PAPER_FAST_STEP_255, 4, "FGSM's step in fast training (ImageNet-100: 1)")
    steps: int | None = field(default=None, metadata=check(at_least=1, example=10))
    train_steps: int | None = field(
        default=None,
        metadata=check(at_least=1, example=5, help="PGD training's steps (training: pgd; default: steps, which "
                       "the evaluation attack keeps): a reduced-cost baseline, stated beside its table"),
    )  # fmt: skip
    attack_bn_mode: str | None = field(default=None, metadata=check(choices=ATTACK_BN_MODES, example="eval"))
    attack_protocol: str | None = field(
        default=None, metadata=check(choices=ATTACK_PROTOCOLS, example="authors", help="the training attacks' protocol")
    )
    rounding: str | None = field(
        default=None, metadata=check(choices=ROUNDINGS, example="get_subnet", help="kept count per layer")
    )
    dataset: str | None = field(
        default=None, metadata=check(choices=DATASETS, example="cifar100", help="the row's data (default: the block's)")
    )
    eval_every: int | None = field(default=None, metadata=check(at_least=1, example=10))
    validation_images: int | None = field(default=None, metadata=check(at_least=1, example=1000))
    test_images: int | None = field(default=None, metadata=check(at_least=1, example=10000))
    precision: str = field(default="fp32", metadata=check(choices=PRECISIONS, example="fp32"))
    optimizer: str = field(default="sgd", metadata=check(choices=OPTIMIZERS, example="adam"))
    momentum: float = field(default=0.9, metadata=check(at_least=0, below=1, example=0.875))
    schedule: str = field(default="cosine", metadata=check(choices=SCHEDULES, example="multistep"))
    # int | float: an epoch count stays as written (200, not 200.0) in the recipe, so recorded runs keep their hashes
    milestones: list[int | float] = field(default=(), metadata=check(at_least=0, example=[200, 300]))
    warmup_epochs: int | float = field(default=0.0, metadata=check(at_least=0, example=5))
    label_smoothing: float = field(default=0.0, metadata=check(at_least=0, below=1, example=0.1))

    # ------------------------------------------------------------------ fractions for the attacks

    @property
    def eps(self) -> float:
        """The L-infinity budget as a pixel fraction (the attacks' unit)."""
        return self.eps_255 / 255

    @property
    def step_size(self) -> float:
        return self.step_255 / 255

    @property
    def fast_step(self) -> float:
        return self.fast_step_255 / 255

    # ------------------------------------------------------------------ the training attacks' protocol

    @property
    def worst_iterate(self) -> bool:
        """Training PGD returns the per-sample worst iterate (the ``authors`` protocol) instead of the final one."""
        return self.attack_protocol == "authors"

    @property
    def training_bn_mode(self) -> str:
        """BN mode of the PGD and FGSM training attacks: train under the ``authors`` protocol (the authors' code
        attacks inside ``model.train()``), else the row's ``attack_bn_mode``. TRADES keeps ``attack_bn_mode``."""
        return "train" if self.attack_protocol == "authors" else self.attack_bn_mode

    @property
    def atta_offsets(self) -> str:
        """ATTA's crop offsets: ``authors`` (0..2·pad-1, the authors' ``randint(0, 8)``) or ``torchvision`` (0..2·pad)."""
        return "authors" if self.attack_protocol == "authors" else "torchvision"

    @classmethod
    def _build(cls, values: Any, path: str, problems: list[str]) -> Row:
        """The schema's checks, with the old fraction names (``eps: 0.0314``) refused with their /255 field, and
        the row's name beside each problem's path (``'rows[2].keep' (row 'ours_nolbn'): 1.5 is not in (0, 1]``)."""
        start = len(problems)
        if isinstance(values, Mapping):
            for old, (new, example) in RENAMED_BUDGETS.items():
                if old in values:
                    problems.append(
                        f"'{old}': {values[old]!r} is not a field: budgets are in /255 units, "
                        f"{BUDGET_RANGE_255[0]:g} to {BUDGET_RANGE_255[1]:g}; e.g. {new}: {example} (for {example}/255)"
                    )
            values = {k: v for k, v in values.items() if k not in RENAMED_BUDGETS}
        built = super()._build(values, path, problems)
        name = values.get("name") if isinstance(values, Mapping) else None
        if isinstance(name, str) and name:
            problems[start:] = [_name_row(problem, name) for problem in problems[start:]]
        return built


def _name_row(problem: str, name: str) -> str:
    """``'keep': 1.5 ...`` -> ``'keep' (row 'x'): 1.5 ...``: the row's name after the field's path."""
    if not problem.startswith("'"):
        return f"(row '{name}') {problem}"
    end = problem.index("'", 1) + 1
    rest = problem[end:]
    return problem[:end] + f" (row '{name}')" + (rest if rest.startswith((":", " ")) else " " + rest)


# The smoke scale's rows (params.yaml `smoke.robust_binary`, the notebook's defaults): every method and training once
SMOKE_ROWS: tuple[Row, ...] = (
    Row("ours_p01", p=0.1, training="fast"),
    Row("ours_p1", p=1.0, training="fast"),
    Row("ours_nolbn", p=0.1, training="fast", last_bn=False),
    Row("ours_skc", p=0.1, training="fast", weight_init="signed_kaiming_constant", score_init="fan_scaled_uniform"),
    Row("ours_pgd", p=0.1, training="pgd"),
    Row("binary_connect_small", method="binary_connect", training="fast", widths=(2, 2, 4, 4), optimizer="adam", lr=0.0001),
    Row("dense_at", method="dense", training="fast", schedule="multistep", milestones=(1,), batch_size=16),
    Row("dense_trades", method="dense", training="trades"),
    Row("finetune", method="finetune", mask_from="ours_p01", training="fast"),
    Row("retrain", method="retrain", mask_from="ours_p01", training="fast"),
    Row("ours_p01_keep05", p=0.1, keep=0.5, training="fast"),
    Row("vanilla_p01", p=0.1, training="clean"),
    Row("vanilla_p01_nolbn", p=0.1, training="clean", last_bn=False),
)  # fmt: skip

# The fields a row inherits from its scale when it leaves them out
INHERITED = (
    "keep", "model", "widths", "epochs", "lr", "weight_decay", "batch_size", "eps_255", "step_255", "steps",
    "attack_bn_mode", "attack_protocol", "rounding", "dataset", "eval_every", "validation_images", "test_images",
)  # fmt: skip


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """One scale's block of ``params.yaml`` (defaults: the smoke scale, the notebook's parameters cell)."""

    IGNORED = ("scale", "out_dir", "checkpoint_dir", "data_root")  # the pipeline's and the run context's

    dataset: str = field(default="cifar10", metadata=check(choices=DATASETS, example="cifar10"))
    data_archive: str = field(default="", metadata=check(example="../data/raw/imagenet100", help="an ImageFolder tree"))
    image_size: int = field(default=0, metadata=check(at_least=0, example=256, help="0 keeps the images' size"))
    crop_size: int = field(
        default=0,
        metadata=check(at_least=0, example=224, help="0: none; else the ImageNet recipe on the image_size images: "
                       "test centre crop, training RandomResizedCrop + flip, to crop_size"),
    )  # fmt: skip
    train_per_class: int = field(default=10, metadata=check(at_least=0, example=450, help="0: the whole split"))
    test_per_class: int = field(default=5, metadata=check(at_least=0, example=0, help="0: the whole split"))
    validation_fraction: float = field(default=0.2, metadata=check(above=0, below=1, example=0.02))
    model: str = field(default="cresnet18", metadata=check(choices=tuple(ROBUST_MODELS), example="cresnet34"))
    widths: list[int] = field(default=(4, 8, 16, 32), metadata=check(at_least=1, example=[64, 128, 256, 512]))
    keep: float = field(default=0.05, metadata=check(above=0, at_most=1, example=0.01))
    epochs: int = field(default=1, metadata=check(at_least=1, example=400))
    batch_size: int = field(default=32, metadata=check(at_least=1, example=256))
    lr: float = field(default=0.1, metadata=check(above=0, example=0.1))
    weight_decay: float = field(default=0.0005, metadata=check(at_least=0, example=0.0005))
    eps_255: float = _budget(8.0, 8, "the L-infinity budget (Section 4.1: 8 on CIFAR-10)")
    step_255: float = _budget(2.0, 2, "PGD's step (ε/4)")
    steps: int = field(default=2, metadata=check(at_least=1, example=10, help="PGD steps, training and evaluation"))
    attack_bn_mode: str = field(default="eval", metadata=check(choices=ATTACK_BN_MODES, example="eval"))
    attack_protocol: str = field(
        default="standard",
        metadata=check(choices=ATTACK_PROTOCOLS, example="authors", help="standard (final iterate, BN eval, crop "
                       "offsets 0-8) or authors (worst iterate, BN train, offsets 0-7): the paper scale's"),
    )  # fmt: skip
    rounding: str = field(
        default="floor",
        metadata=check(choices=ROUNDINGS, example="get_subnet", help="kept per layer: floor = int(r n); "
                       "get_subnet = n - int((1 - r) n), the authors' forward pass (the paper scale's)"),
    )  # fmt: skip
    eval_every: int = field(default=1, metadata=check(at_least=1, example=10))
    validation_images: int = field(default=10, metadata=check(at_least=1, example=1000))
    test_images: int = field(default=20, metadata=check(at_least=1, example=10000))
    autoattack_images: int = field(default=10, metadata=check(at_least=1, example=10000))
    apgd_steps: int = field(default=5, metadata=check(at_least=1, example=100))
    autoattack: str = field(default="apgd-ce", metadata=check(choices=AUTOATTACK_VARIANTS, example="standard"))
    rows: list[Row] = SMOKE_ROWS
    seeds: list[int] = field(default=(0,), metadata=check(at_least=0, example=[0, 1, 2]))

    def validate(self) -> None:
        """Rules across fields and rows, all collected: unique names, seeds, found masks, each row's recipe."""
        problems: list[str] = []
        if not self.rows:
            problems.append("'rows' is empty; e.g. rows: [{name: ours_p01, p: 0.1, training: fast}]")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            problems.append(f"'seeds': {list(self.seeds)} must be distinct and at least one; e.g. seeds: [0, 1, 2]")
        if self.crop_size and not 0 < self.crop_size <= self.image_size:
            problems.append(
                f"'crop_size': {self.crop_size} needs image_size >= crop_size (the crops are cut from the "
                f"image_size images), got image_size {self.image_size}; e.g. image_size: 256, crop_size: 224"
            )
        seen: dict[str, tuple[int, Row]] = {}
        for i, row in enumerate(self.rows):
            where = f"'rows[{i}].%s' (row '{row.name}')"
            if row.name in seen:
                problems.append(
                    (where % "name") + f": {row.name!r} is also rows[{seen[row.name][0]}]'s name; row names must be "
                    f"unique; e.g. name: {row.name}_2"
                )
            if row.seeds is not None and (not row.seeds or not set(row.seeds) <= set(self.seeds)):
                problems.append(
                    (where % "seeds") + f": {list(row.seeds)} must be a non-empty list among the scale's seeds "
                    f"{list(self.seeds)}; e.g. seeds: [{self.seeds[0]}]"
                )
            problems += _found_mask_problems(where, row, self.resolved(row), seen, self)
            problems += _recipe_problems(where, self.resolved(row))
            seen.setdefault(row.name, (i, row))
        if problems:
            raise ConfigError(problems[0] if len(problems) == 1 else "\n  - " + "\n  - ".join(problems))
        for warning in self.budget_warnings():
            warnings.warn(warning, UserWarning, stacklevel=2)

    def budget_warnings(self) -> list[str]:
        """A row of another dataset with CIFAR-10's ε (8/255) or steps: not an error (a deliberate setting is
        allowed) but not the paper's protocol, whose value the warning names (:data:`PAPER_BUDGETS_255`)."""
        cifar10, found = PAPER_BUDGETS_255["cifar10"], []
        for row in self.resolved_rows():
            paper = PAPER_BUDGETS_255.get(row.dataset)
            if row.dataset == "cifar10" or paper is None:
                continue
            slips = [
                f"{key} {getattr(row, key):g} (the paper's: {paper[key]:g}/255)"
                for key in ("eps_255", "step_255", "fast_step_255")
                if getattr(row, key) == cifar10[key] != paper[key]
                and (key != "fast_step_255" or row.training == "fast")
            ]
            if slips:
                found.append(
                    f"row {row.name!r} on {row.dataset} keeps CIFAR-10's budgets: {', '.join(slips)}; e.g. "
                    + ", ".join(f"{key}: {paper[key]:g}" for key in ("eps_255", "step_255", "fast_step_255"))
                )
        return found

    # ------------------------------------------------------------------ rows with the scale's values

    def resolved(self, row: Row) -> Row:
        """``row`` with every field it leaves out (``None``) taken from the scale."""
        return dataclasses.replace(row, **{k: getattr(self, k) for k in INHERITED if getattr(row, k) is None})

    def resolved_rows(self) -> tuple[Row, ...]:
        return tuple(self.resolved(row) for row in self.rows)

    def row_seeds(self, row: Row) -> list[int]:
        """The seeds a row runs: its own (among the scale's, e.g. one seed for a costly row), else the scale's."""
        return list(row.seeds) if row.seeds is not None else list(self.seeds)

    def protocol_label(self) -> dict[str, Any]:
        """What every robust number's label states about how it was produced: the scale's ``attack_protocol`` and
        ``rounding`` in words, and the rows that override either (``{row: {field: value}}``)."""
        words = {
            "standard": "standard (PGD's final iterate, attacks with BN in eval mode, ATTA crop offsets 0-8)",
            "authors": "the authors' code (training PGD's worst iterate, PGD and FGSM with BN in train mode, ATTA "
            "crop offsets 0-7)",
            "floor": "floor: int(r n) weights per layer",
            "get_subnet": "get_subnet: n - int((1 - r) n) weights per layer, as the authors' forward pass keeps",
        }
        overrides = {
            row.name: {
                key: getattr(row, key) for key in ("attack_protocol", "rounding") if getattr(row, key) is not None
            }
            for row in self.rows
            if any(getattr(row, key) not in (None, getattr(self, key)) for key in ("attack_protocol", "rounding"))
        }
        return {
            "attack_protocol": self.attack_protocol,
            "attack_protocol_words": words[self.attack_protocol],
            "rounding": self.rounding,
            "rounding_words": words[self.rounding],
            "rows_with_their_own_protocol": overrides,
        }

    def row(self, name: str) -> Row:
        """The resolved row named ``name``."""
        for row in self.rows:
            if row.name == name:
                return self.resolved(row)
        raise ConfigError(f"no row named {name!r}; rows: {', '.join(r.name for r in self.rows)}")


def _found_mask_problems(where: str, row: Row, resolved: Row, seen: dict[str, tuple[int, Row]], config: Config):
    """finetune/retrain hold the mask of an earlier edge-popup row of the same network, and only they name one."""
    if (row.method in FOUND_MASK_METHODS) != bool(row.mask_from):
        return [
            (where % "mask_from") + f": {row.mask_from!r} with method {row.method!r}: mask_from names the edge-popup "
            f"row whose found mask finetune/retrain hold, and only those methods take it; e.g. method: finetune, "
            f"mask_from: ours_p01"
        ]
    if not row.mask_from:
        return []
    source = seen.get(row.mask_from)
    if source is None or source[1].method != "edge_popup":
        earlier = [name for name, (_, r) in seen.items() if r.method == "edge_popup"]
        return [
            (where % "mask_from") + f": {row.mask_from!r} must name an earlier edge_popup row; earlier edge_popup "
            f"rows: {', '.join(earlier) or 'none'}; e.g. mask_from: {earlier[0] if earlier else 'ours_p01'}"
        ]
    found = config.resolved(source[1])
    if found.dataset != resolved.dataset:
        return [
            (where % "mask_from") + f": {row.mask_from!r} is a {found.dataset} row, this row trains on "
            f"{resolved.dataset}: a found mask is held on the dataset it was found on; e.g. mask_from: an earlier "
            f"edge_popup row of {resolved.dataset}"
        ]
    if (found.model, tuple(found.widths)) != (resolved.model, tuple(resolved.widths)):
        return [
            (where % "widths") + f": {resolved.model} {list(resolved.widths)}: the found mask's network "
            f"({found.model}, {list(found.widths)}) differs; e.g. leave widths out"
        ]
    return []


def _recipe_problems(where: str, resolved: Row) -> list[str]:
    """The trainer's own checks of the row's recipe (:func:`rewire.experiments.robust_binary.runs.recipe`), and
    milestones in increasing order."""
    from rewire.experiments.robust_binary.runs import recipe

    try:
        recipe(resolved)
    except ValueError as error:
        return [(where % "optimizer") + f": {resolved.optimizer!r}, schedule {resolved.schedule!r}: {error}; "
                "e.g. optimizer: sgd, schedule: cosine"]  # fmt: skip
    if resolved.train_steps is not None and resolved.training != "pgd":
        return [(where % "train_steps") + f": {resolved.train_steps} sets PGD training's steps, but the row trains "
                f"with {resolved.training!r}; remove it, or use training: pgd"]  # fmt: skip
    milestones = list(resolved.milestones)
    if milestones != sorted(milestones):
        return [(where % "milestones") + f": {milestones} must be increasing epochs; e.g. milestones: [200, 300]"]
    return []
