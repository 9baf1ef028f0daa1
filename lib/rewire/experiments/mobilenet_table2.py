"""DNW Table 2 (and Appendix Table 5): ways of finding a k-edge MobileNetV1-DNW on CIFAR-10, on the run engine.

Every row trains the same model, MobileNetV1-DNW x d (:mod:`rewire.models.mobilenet_dnw`; d = 0.225 in the
paper), with each graph stage held to its own edge budget k = ceil(d^2 (inp * oup + (b - 1) oup^2))
(:func:`rewire.models.mobilenet_dnw.edge_budgets`); only *how the k edges are found* changes. The rows,
with the module that implements each (DNW Section 3.3):

=========================  ==================================================================================
row (``Row.key``)          method
=========================  ==================================================================================
``mobilenet_v1``           dense MobileNetV1 x 0.25 (no graph; :class:`rewire.models.mobilenet_dnw.MobileNetV1`)
``rg``                     a fixed random graph with k edges per stage (``rewire.methods.dnw``, ``rg``)
``dnw_no_update``          top-k by |w|, no gradient to hallucinated edges (``dnw_no_update``)
``l1_anneal-<λ>``          complete graph, edges removed by magnitude until k remain, L1 term
                           (:mod:`rewire.methods.anneal`; not in the authors' code)
``td-<ρ>``                 unconstrained targeted dropout, ρ in {0.75, 0.9, 0.95, 0.99, γ}
                           (:mod:`rewire.methods.targeted_dropout`)
``td_regular-<ρ>``         regular (per-node) targeted dropout, Appendix B, Table 5
``complete``               the complete graph (every feed-forward entry), trained once (†)
``lottery``                top-k of the trained complete graph per stage, rewound to its initialisation and
                           retrained at lr 0.1 (one-shot lottery ticket, Frankle et al. 2019)
``finetune-<α>``           the same top-k, keeping the trained weights, fine-tuned from lr α
``dnw``                    DNW: top-k by |w| re-chosen every step, straight-through gradient (Algorithm 1)
=========================  ==================================================================================

The lottery-ticket and fine-tune rows find the complete-graph run of the same seed again by its hash
(:func:`run_row` trains it first if it is missing) and record its run directory in their settings.

Recipe (DNW Section 3.3, "We train for 160 epochs using Cosine Annealing as the learning rate scheduler with
initial learning rate α = 0.1"; the authors' CIFAR-10 configuration: batch 128, SGD momentum 0.9, weight
decay 1e-4, cosine stepped per iteration): :func:`hparams`. Fine-tuning uses the same recipe from lr α.

Hyperparameters the paper does not give are chosen on a validation split held out of the training set
(never on the test set): targeted dropout's ρ (the paper reports every ρ; the cpu scale runs the candidates
on the first seed only and the best one on every seed) and L1 + Anneal's coefficient λ (same protocol).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from rewire.experiments.engine import ModelSpec, RunContext, RunResult
from rewire.methods.anneal import ANNEAL_UPDATE_EVERY, AnnealSchedule, attach_l1_anneal
from rewire.methods.dnw import apply_method
from rewire.methods.targeted_dropout import apply_targeted_dropout, check_rho
from rewire.models.mobilenet_dnw import edge_budgets
from rewire.sparse.masks import AssignedMask, sparsify, topk_mask
from rewire.train.runtime import Seeds
from rewire.train.trainer import TrainingHparams

__all__ = [
    "DRIVER_MODULE",
    "PAPER_TABLE2",
    "PAPER_TABLE5",
    "Row",
    "Setup",
    "hparams",
    "run_row",
    "choose_on_validation",
    "table2_claims",
    "Plan",
    "Table2Runs",
    "run_table2",
    "expand_rows",
    "candidates",
]

# The run engine hashes this module's code into every run; under `python -m` __name__ is "__main__".
DRIVER_MODULE = "rewire.experiments.mobilenet_table2"

# DNW Table 2: CIFAR-10 test top-1 (%), mean ± std over 5 runs, 160 epochs (paper text)
PAPER_TABLE2: dict[str, tuple[float, float]] = {
    "mobilenet_v1": (86.3, 0.2),
    "rg": (87.2, 0.1),
    "dnw_no_update": (86.7, 0.5),
    "l1_anneal": (84.3, 0.6),
    "td-0.75": (87.8, 0.4),
    "td-0.9": (89.0, 0.2),
    "td-0.95": (89.2, 0.4),
    "td-0.99": (88.6, 0.2),
    "td-gamma": (88.8, 0.2),
    "lottery": (87.9, 0.3),
    "finetune-0.1": (89.4, 0.2),
    "finetune-0.01": (89.7, 0.1),
    "finetune-0.001": (88.7, 0.2),
    "dnw": (89.7, 0.2),
}
# DNW Appendix B, Table 5: unconstrained (Table 2's rows) against regular targeted dropout
PAPER_TABLE5: dict[str, tuple[float, float]] = {
    "td-0.9": (89.0, 0.2),
    "td-0.95": (89.2, 0.4),
    "td-0.99": (88.6, 0.2),
    "td-gamma": (88.8, 0.2),
    "td_regular-0.9": (87.9, 0.5),
    "td_regular-0.95": (87.9, 0.2),
    "td_regular-0.99": (87.7, 0.3),
    "td_regular-gamma": (87.9, 0.2),
}

GRAPH_METHODS = ("rg", "dnw", "dnw_no_update", "complete")
METHODS = ("mobilenet_v1", *GRAPH_METHODS, "td", "td_regular", "l1_anneal", "lottery", "finetune")
# One-shot lottery ticket: the authors' configuration retrains the rewound ticket at the recipe's lr 0.1
LOTTERY_LR = 0.1


def _number(value: float) -> str:
    return f"{value:g}"


@dataclass(frozen=True)
class Row:
    """One row of Table 2 / Table 5: a method and its own hyperparameter (ρ, α or λ)."""

    method: str
    rho: float | str | None = None  # targeted dropout
    alpha: float | None = None  # fine-tune learning rate
    l1: float | None = None  # L1 + Anneal coefficient

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown Table 2 method {self.method!r}; known: {', '.join(METHODS)}")
        if self.method in ("td", "td_regular"):
            if self.rho is None:
                raise ValueError(f"{self.method} needs rho (a number in [0, 1] or 'gamma')")
            check_rho(self.rho)
        if self.method == "finetune" and not (isinstance(self.alpha, (int, float)) and self.alpha > 0):
            raise ValueError(f"finetune needs a learning rate alpha > 0, got {self.alpha!r}")
        if self.method == "l1_anneal" and not (isinstance(self.l1, (int, float)) and self.l1 >= 0):
            raise ValueError(f"l1_anneal needs an L1 coefficient >= 0, got {self.l1!r}")

    @classmethod
    def parse(cls, key: str) -> Row:
        """``"td-0.95"``, ``"td_regular-gamma"``, ``"finetune-0.01"``, ``"l1_anneal-1e-05"``, ``"dnw"``, ..."""
        method, _, value = str(key).partition("-")
        if method in ("td", "td_regular"):
            return cls(method, rho=value if value == "gamma" else _float(key, value))
        if method == "finetune":
            return cls(method, alpha=_float(key, value))
        if method == "l1_anneal":
            return cls(method, l1=_float(key, value))
        if value:
            raise ValueError(f"Table 2 row {key!r}: {method!r} takes no value after '-'")
        return cls(method)

    @property
    def key(self) -> str:
        if self.method in ("td", "td_regular"):
            return f"{self.method}-{self.rho if self.rho == 'gamma' else _number(self.rho)}"
        if self.method == "finetune":
            return f"finetune-{_number(self.alpha)}"
        if self.method == "l1_anneal":
            return f"l1_anneal-{_number(self.l1)}"
        return self.method

    @property
    def paper_key(self) -> str:
        """The key of :data:`PAPER_TABLE2` / :data:`PAPER_TABLE5` (L1 + Anneal has one row whatever λ)."""
        return "l1_anneal" if self.method == "l1_anneal" else self.key

    @property
    def label(self) -> str:
        rho = "γ" if self.rho == "gamma" else _number(self.rho) if self.rho is not None else ""
        return {
            "mobilenet_v1": "MobileNetV1 (dense)",
            "rg": "MobileNetV1-RG",
            "dnw_no_update": "No Update Rule",
            "l1_anneal": f"L1 + Anneal (λ = {_number(self.l1) if self.l1 is not None else ''})",
            "td": f"TD ρ = {rho}",
            "td_regular": f"TD ρ = {rho} (regular)",
            "complete": "complete graph (†)",
            "lottery": "Lottery Ticket (one-shot) †",
            "finetune": f"Fine Tune α = {_number(self.alpha) if self.alpha else ''} †",
            "dnw": "MobileNetV1-DNW",
        }[self.method]

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


def _float(key: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"Table 2 row {key!r}: {value!r} is not a number") from None


@dataclass(frozen=True)
class Setup:
    """What every row of one scale shares: model widths, recipe, L1 + Anneal's schedule."""

    width: float = 0.225  # d of MobileNetV1-DNW x d (Table 2)
    dense_width: float = 0.25  # MobileNetV1 x 0.25 (Table 2's first row)
    node_width: float = 1.0  # node counts x this (1 = the paper); the cpu scale's reduction
    epochs: int = 160
    lr: float = 0.1
    weight_decay: float = 1e-4
    precision: str = "fp32"
    eval_every: int = 1
    finetune_epochs: int = 160
    anneal_end: float = 0.5  # L1 + Anneal reaches k at this fraction of training (our choice, stated)
    anneal_update_every: int = ANNEAL_UPDATE_EVERY  # optimizer steps between edge removals

    def __post_init__(self) -> None:
        if not 0 < self.node_width <= 1:
            raise ValueError(f"node_width must be in (0, 1], got {self.node_width!r}")
        if not 0 < self.anneal_end <= 1:
            raise ValueError(f"anneal_end is a fraction of training in (0, 1], got {self.anneal_end!r}")
        for name in ("epochs", "finetune_epochs", "eval_every", "anneal_update_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive int, got {getattr(self, name)!r}")

    def graph_spec(self, num_classes: int) -> ModelSpec:
        return ModelSpec(
            "mobilenet_v1_dnw", num_classes=num_classes, kwargs={"stem_stride": 1, "node_width": self.node_width}
        )

    def dense_spec(self, num_classes: int) -> ModelSpec:
        return ModelSpec(
            "mobilenet_v1",
            num_classes=num_classes,
            kwargs={"width_mult": self.dense_width * self.node_width, "stem_stride": 1},
        )

    def check(self, num_classes: int = 10, *, dense: bool = True) -> None:
        """Every width is possible: raises ValueError (naming the stage and the valid range) before any work.
        ``dense``: also the dense baseline's width ``dense_width * node_width``."""
        edge_budgets(self.graph_spec(num_classes).build(), self.width)
        if dense:
            self.dense_spec(num_classes).build()


def hparams(setup: Setup, *, lr: float | None = None, epochs: int | None = None) -> TrainingHparams:
    """DNW Section 3.3's CIFAR-10 recipe: SGD momentum 0.9, cosine per iteration from ``lr``, weight decay 1e-4."""
    return TrainingHparams(
        precision=setup.precision,
        eval_every=min(setup.eval_every, epochs or setup.epochs),
        epochs=epochs or setup.epochs,
        lr=setup.lr if lr is None else lr,
        momentum=0.9,
        weight_decay=setup.weight_decay,
        schedule="cosine",
        schedule_step="iteration",
    )


def _stage_seed(seed: int, index: int) -> int:
    return (Seeds.from_run_seed(seed).model + index) % 2**63


def _top_k_masks(model: nn.Module, budgets) -> dict[str, torch.Tensor]:
    """Per stage, the k largest |w| among the feed-forward entries (one-shot magnitude pruning)."""
    masks = {}
    for budget in budgets:
        weight = model.get_parameter(budget.target).detach()
        masks[budget.target] = topk_mask(weight.abs(), budget.k, budget.allowed.to(weight.device))
    return masks


def _assign_masks(model: nn.Module, budgets, masks: dict[str, torch.Tensor]) -> None:
    for budget in budgets:
        module_name, _, tensor = budget.target.rpartition(".")
        module = model.get_submodule(module_name)
        parametrization = sparsify(module, tensor, selector=AssignedMask(budget.allowed), route="masked")
        parametrization.assign_mask(masks[budget.target])


def run_row(ctx: RunContext, row: Row, seed: int, setup: Setup, *, subset: dict[str, Any]) -> RunResult:
    """Train (or find by its hash) one run of ``row`` with run seed ``seed``; returns the engine's result."""
    num_classes = len(ctx.data.classes)
    common = {"experiment": "mobilenet_table2", "row": row.as_dict(), "width": setup.width, **subset}
    callbacks = []
    if row.method == "mobilenet_v1":
        spec = setup.dense_spec(num_classes)
        model = ctx.build(spec, seed)
        recipe = hparams(setup)
        extra = {}
    else:
        spec = setup.graph_spec(num_classes)
        model = ctx.build(spec, seed)
        budgets = edge_budgets(model, setup.width)
        recipe = hparams(setup)
        extra = (
            {"anneal_end": setup.anneal_end, "anneal_update_every": setup.anneal_update_every}
            if row.method == "l1_anneal"
            else {}
        )
        if row.method in ("rg", "dnw", "dnw_no_update"):
            for budget in budgets:
                apply_method(
                    model,
                    row.method,
                    k=budget.k,
                    allowed=budget.allowed,
                    seed=_stage_seed(seed, budget.index),
                    targets=(budget.target,),
                )
        elif row.method in ("td", "td_regular"):
            apply_targeted_dropout(
                model,
                k={b.target: b.k for b in budgets},
                rho=row.rho,
                variant="unconstrained" if row.method == "td" else "regular",
                allowed={b.target: b.allowed for b in budgets},
                seed=Seeds.from_run_seed(seed).model,
                targets=tuple(b.target for b in budgets),
            )
        elif row.method == "l1_anneal":
            attached = attach_l1_anneal(
                model,
                k={b.target: b.k for b in budgets},
                schedule=AnnealSchedule(end=setup.anneal_end * setup.epochs),
                allowed={b.target: b.allowed for b in budgets},
                targets=tuple(b.target for b in budgets),
                l1=float(row.l1),
                update_every=setup.anneal_update_every,
            )
            callbacks = attached.callbacks
        elif row.method in ("lottery", "finetune"):
            complete = run_row(ctx, Row("complete"), seed, setup, subset=subset)
            masks = _top_k_masks(complete.model, budgets)
            if row.method == "finetune":  # keep the trained weights; the lottery ticket keeps this init
                model.load_state_dict(complete.model.state_dict())
                recipe = hparams(setup, lr=row.alpha, epochs=setup.finetune_epochs)
            else:
                recipe = hparams(setup, lr=LOTTERY_LR)
            _assign_masks(model, budgets, masks)
            extra = {"complete_run": complete.run_dir.name}
        # "complete": every feed-forward entry is an edge; the model reads nothing else
    return ctx.fit(
        f"{row.key}-seed{seed}",
        seed=seed,
        config={**common, **extra, "model": spec.as_dict(), "hparams": recipe.as_dict()},
        model=model,
        hparams=recipe,
        callbacks=callbacks,
        model_spec=spec,
        run_info={"row": row.key},
    )


def choose_on_validation(results: dict[str, RunResult]) -> str:
    """The key with the best final validation top-1 (``val_top1``; ties: the first). Never the test set."""
    scored = {key: result.final.get("val_top1") for key, result in results.items()}
    missing = [key for key, value in scored.items() if value is None]
    if missing:
        raise ValueError(f"runs {missing} have no validation accuracy: give the RunContext a validation split")
    return max(scored, key=lambda key: scored[key])


def _by_seed(per_run, key: str) -> dict[int, float]:
    rows = per_run[per_run.row == key]
    return dict(zip(rows.seed.astype(int), rows.test_top1.astype(float)))


def table2_claims(per_run, *, best_td: str, regular_td: str | None, finetune: str, l1_anneal: str) -> list:
    """DNW Table 2's claims, paired by seed (:mod:`rewire.reporting.claims`); those lacking 2 seeds are left out.

    ``per_run``: one row per run with ``row`` (a :attr:`Row.key`), ``seed`` and ``test_top1``. ``best_td``
    the TD row chosen on validation, ``regular_td`` its regular twin (Table 5), ``finetune`` the α = 0.01
    row, ``l1_anneal`` the chosen L1 + Anneal row.
    """
    from rewire.reporting.claims import Claim

    specs = [
        ("dnw", "rg", "greater", "DNW beats the random graph of the same size", "Table 2"),
        ("rg", "mobilenet_v1", "greater", "the random graph beats dense MobileNetV1 x 0.25", "Table 2"),
        ("dnw", "dnw_no_update", "greater", "DNW beats the same top-k without the update rule", "Table 2"),
        ("dnw", best_td, "at_least", "DNW is at least as good as targeted dropout (best ρ)", "Table 2"),
        ("dnw", "lottery", "at_least", "DNW is at least as good as the one-shot lottery ticket", "Table 2"),
        (finetune, "dnw", "equivalent", "fine-tuning the pruned complete graph (α = 0.01) matches DNW", "Table 2"),
        ("dnw", l1_anneal, "greater", "L1 + Anneal is below DNW", "Table 2"),
    ]
    if regular_td is not None:
        specs.append((best_td, regular_td, "at_least", "unconstrained targeted dropout >= regular", "Table 5"))
    labels = {key: Row.parse(key).label for key in set(per_run.row)}
    found = []
    for a, b, kind, words, source in specs:
        sides = _by_seed(per_run, a), _by_seed(per_run, b)
        if len(set(sides[0]) & set(sides[1])) >= 2:
            found.append(
                Claim("DNW", words, labels.get(a, a), sides[0], labels.get(b, b), sides[1], kind=kind, source=source)
            )
    return found


def expand_rows(keys: Iterable[str]) -> list[Row]:
    """Parse a list of row keys, refusing duplicates and unknown methods before any work."""
    rows = [Row.parse(key) for key in keys]
    seen = [row.key for row in rows]
    duplicates = sorted({key for key in seen if seen.count(key) > 1})
    if duplicates:
        raise ValueError(f"Table 2 rows listed twice: {duplicates}")
    return rows


def candidates(values: Sequence[Any], method: str, field: str) -> list[Row]:
    """Rows of ``method`` for each value of its hyperparameter ``field`` (``rho``, ``alpha`` or ``l1``)."""
    return [Row(method, **{field: value}) for value in values]


# ------------------------------------------------------------------------------------ the table's runs


@dataclass(frozen=True)
class Plan:
    """Which rows one scale runs, and how the hyperparameters without a paper value are chosen.

    ``rows``: rows run on every seed (keys of :meth:`Row.parse`, e.g. ``dnw``, ``lottery``); ``td_rhos``:
    unconstrained targeted dropout's ρ candidates; ``td_regular_rhos``: regular targeted dropout's ρ (Table 5;
    ``"chosen"`` = the ρ chosen for the unconstrained variant); ``finetune_alphas``: the fine-tune rows' α;
    ``l1_coefficients``: L1 + Anneal's λ candidates. With ``select_on_first_seed`` the ρ and λ candidates run
    on the first seed only and the one with the best validation top-1 on every seed (the cpu scale's saving);
    otherwise every candidate runs on every seed (the paper reports every ρ) and the choice still reads the
    first seed's validation accuracy.
    """

    rows: tuple[str, ...] = ("mobilenet_v1", "rg", "dnw_no_update", "lottery", "dnw")
    td_rhos: tuple[float | str, ...] = (0.75, 0.9, 0.95, 0.99, "gamma")
    td_regular_rhos: tuple[float | str, ...] = (0.9, 0.95, 0.99, "gamma")
    finetune_alphas: tuple[float, ...] = (0.1, 0.01, 0.001)
    l1_coefficients: tuple[float, ...] = (1e-6,)
    select_on_first_seed: bool = False

    def __post_init__(self) -> None:
        expand_rows(self.rows)  # unknown or duplicate rows stop here, before any work
        for rho in self.td_rhos:
            check_rho(rho)
        for rho in self.td_regular_rhos:
            if rho != "chosen":
                check_rho(rho)
        if self.td_regular_rhos and not self.td_rhos and "chosen" in self.td_regular_rhos:
            raise ValueError("td_regular_rhos has 'chosen' but td_rhos is empty: nothing to choose from")
        candidates(self.finetune_alphas, "finetune", "alpha")
        candidates(self.l1_coefficients, "l1_anneal", "l1")


@dataclass
class Table2Runs:
    """The runs of :func:`run_table2`: one record per run, the engine's results and the validation choices."""

    per_run: list[dict[str, Any]]
    results: dict[tuple[str, int], RunResult]
    chosen: dict[str, str]


def run_table2(
    ctx: RunContext, setup: Setup, plan: Plan, seeds: Sequence[int], *, subset: dict[str, Any], log=print
) -> Table2Runs:
    """Every run of ``plan`` over ``seeds`` (each found again by its hash when it exists); see :class:`Plan`."""
    if not seeds:
        raise ValueError("give at least one seed")
    setup.check(len(ctx.data.classes), dense="mobilenet_v1" in plan.rows)
    found: dict[tuple[str, int], RunResult] = {}

    def run(row: Row, seed: int) -> RunResult:
        if (row.key, seed) not in found:
            result = run_row(ctx, row, seed, setup, subset=subset)
            found[(row.key, seed)] = result
            if row.method in ("lottery", "finetune"):
                complete = run_row(ctx, Row("complete"), seed, setup, subset=subset)  # found by hash: no training
                found[("complete", seed)] = complete
            log(f"{row.key:>22} seed {seed}: test top-1 {result.final.get('test_top1', float('nan')):.2f}")
        return found[(row.key, seed)]

    chosen: dict[str, str] = {}
    first, rest = seeds[0], list(seeds[1:])
    for group, rows in (
        ("td", candidates(plan.td_rhos, "td", "rho")),
        ("l1_anneal", candidates(plan.l1_coefficients, "l1_anneal", "l1")),
    ):
        if not rows:
            continue
        on_first = {row.key: run(row, first) for row in rows}
        chosen[group] = choose_on_validation(on_first) if len(rows) > 1 else rows[0].key
        for row in rows:
            if row.key == chosen[group] or not plan.select_on_first_seed:
                for seed in rest:
                    run(row, seed)
    regular = [chosen["td"].partition("-")[2] if rho == "chosen" else rho for rho in plan.td_regular_rhos]
    regular_rows = [Row("td_regular", rho=rho if rho == "gamma" else float(rho)) for rho in dict.fromkeys(regular)]
    for row in [*expand_rows(plan.rows), *candidates(plan.finetune_alphas, "finetune", "alpha"), *regular_rows]:
        for seed in seeds:
            run(row, seed)
    per_run = []
    for (key, seed), result in found.items():
        row = Row.parse(key)
        group = "td" if row.method == "td" else "l1_anneal" if row.method == "l1_anneal" else None
        per_run.append(
            {
                "row": key,
                "method": row.method,
                "label": row.label,
                "seed": seed,
                "test_top1": result.final.get("test_top1"),
                "val_top1": result.final.get("val_top1"),
                "images_per_s": result.final.get("images_per_second"),
                "epochs": result.record.get("epochs"),
                "chosen_on_validation": None if group is None else key == chosen.get(group),
                "run": result.run_dir.name,
            }
        )
    return Table2Runs(per_run, found, chosen)
