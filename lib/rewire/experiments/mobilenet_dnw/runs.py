"""Training the runs of DNW Table 2 through the run engine (:class:`rewire.experiments.engine.RunContext`).

Every row trains the same model, MobileNetV1-DNW x d (:mod:`rewire.models.mobilenet_dnw`; d = 0.225 in the
paper), with each graph stage held to its own edge budget k = ceil(d^2 (inp * oup + (b - 1) oup^2))
(:func:`rewire.models.mobilenet_dnw.edge_budgets`); only *how the k edges are found* changes
(:mod:`rewire.experiments.mobilenet_dnw.rows`, DNW Section 3.3). The lottery-ticket and fine-tune rows find
the complete-graph run of the same seed again by its hash (:func:`run_one` trains it first if it is missing)
and record its run directory in their settings.

Recipe (DNW Section 3.3, "We train for 160 epochs using Cosine Annealing as the learning rate scheduler with
initial learning rate α = 0.1"; the authors' CIFAR-10 configuration: batch 128, SGD momentum 0.9, weight
decay 1e-4, cosine stepped per iteration): :func:`recipe`. Fine-tuning uses the same recipe from lr α.

Hyperparameters the paper does not give are chosen on a validation split held out of the training set
(never on the test set): targeted dropout's ρ and L1 + Anneal's λ (:func:`choose_on_validation`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from rewire.experiments.base import Outcome, RunContextSpec, RunSpec, select_rows
from rewire.experiments.engine import RunContext, RunResult
from rewire.experiments.mobilenet_dnw.config import Config
from rewire.experiments.mobilenet_dnw.plan import CHOSEN, candidate_groups, plan
from rewire.experiments.mobilenet_dnw.rows import Row
from rewire.methods.anneal import AnnealSchedule, attach_l1_anneal
from rewire.methods.dnw import apply_method
from rewire.methods.targeted_dropout import apply_targeted_dropout
from rewire.models.mobilenet_dnw import edge_budgets
from rewire.sparse.masks import AssignedMask, sparsify, topk_mask
from rewire.train.runtime import Seeds
from rewire.train.trainer import TrainingHparams

__all__ = ["RUNS_MODULE", "LOTTERY_LR", "recipe", "run_one", "choose_on_validation", "Table2Runs", "run_table2", "run"]

# This module's import name: the run engine hashes it (and what it imports) into every run's identity.
RUNS_MODULE = "rewire.experiments.mobilenet_dnw.runs"
# One-shot lottery ticket: the authors' configuration retrains the rewound ticket at the recipe's lr 0.1
LOTTERY_LR = 0.1
# evaluation batch (our choice: evaluation holds no gradients, so a large batch only saves time)
EVAL_BATCH_SIZE = 500
# The settings key every Table 2 run has carried since the first runs (kept so the runs are found again).
EXPERIMENT_KEY = "mobilenet_table2"


def recipe(config: Config, *, lr: float | None = None, epochs: int | None = None) -> TrainingHparams:
    """DNW Section 3.3's CIFAR-10 recipe: SGD momentum 0.9, cosine per iteration from ``lr``, weight decay 1e-4."""
    return TrainingHparams(
        precision=config.precision,
        eval_every=min(config.eval_every, epochs or config.epochs),
        epochs=epochs or config.epochs,
        lr=config.lr if lr is None else lr,
        momentum=0.9,
        weight_decay=config.weight_decay,
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


def run_one(ctx: RunContext, row: Row, seed: int, config: Config) -> RunResult:
    """Train (or find by its hash) one run of ``row`` with run seed ``seed``; returns the engine's result."""
    num_classes = len(ctx.data.classes)
    common = {"experiment": EXPERIMENT_KEY, "row": row.as_dict(), "width": config.width, **config.subset()}
    callbacks = []
    hparams = recipe(config)
    extra: dict[str, Any] = {}
    if row.method == "mobilenet_v1":
        spec = config.dense_spec(num_classes)
        model = ctx.build(spec, seed)
    else:
        spec = config.graph_spec(num_classes)
        model = ctx.build(spec, seed)
        budgets = edge_budgets(model, config.width)
        if row.method == "l1_anneal":
            extra = {"anneal_end": config.anneal_end, "anneal_update_every": config.anneal_update_every}
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
                schedule=AnnealSchedule(end=config.anneal_end * config.epochs),
                allowed={b.target: b.allowed for b in budgets},
                targets=tuple(b.target for b in budgets),
                l1=float(row.l1),
                update_every=config.anneal_update_every,
            )
            callbacks = attached.callbacks
        elif row.method in ("lottery", "finetune"):
            complete = run_one(ctx, Row("complete"), seed, config)
            masks = _top_k_masks(complete.model, budgets)
            if row.method == "finetune":  # keep the trained weights; the lottery ticket keeps this init
                model.load_state_dict(complete.model.state_dict())
                hparams = recipe(config, lr=row.alpha, epochs=config.finetune_epochs)
            else:
                hparams = recipe(config, lr=LOTTERY_LR)
            _assign_masks(model, budgets, masks)
            extra = {"complete_run": complete.run_dir.name}
        # "complete": every feed-forward entry is an edge; the model reads nothing else
    return ctx.fit(
        f"{row.key}-seed{seed}",
        seed=seed,
        config={**common, **extra, "model": spec.as_dict(), "hparams": hparams.as_dict()},
        model=model,
        hparams=hparams,
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


@dataclass
class Table2Runs:
    """The runs of :func:`run_table2`: one record per run, the engine's results and the validation choices."""

    per_run: list[dict[str, Any]]
    results: dict[tuple[str, int], RunResult]
    chosen: dict[str, str]


def run_table2(
    ctx: RunContext, config: Config, specs: list[RunSpec] | None = None, *, log: Callable[[str], None] = print
) -> Table2Runs:
    """Train (or find by hash) every run of ``specs`` (default: :func:`plan` ``(config)``), in their order.

    A ``<group>-chosen`` row is resolved when reached: its group's candidates on the first seed are found (or
    trained) and the best on validation taken (:func:`choose_on_validation`)."""
    specs = plan(config) if specs is None else specs
    config.check_widths(len(ctx.data.classes))
    first = config.seeds[0]
    groups = {group: [row.key for row in rows] for group, rows in candidate_groups(config).items()}
    found: dict[tuple[str, int], RunResult] = {}
    chosen: dict[str, str] = {}
    prerequisites: dict[int, RunResult] = {}  # complete graphs trained ahead of their first dependant row

    def train(row: Row, seed: int) -> RunResult:
        if (row.key, seed) not in found:
            result = run_one(ctx, row, seed, config)
            found[(row.key, seed)] = result
            if row.method in ("lottery", "finetune"):  # listed after its dependant, as the complete graph always was
                complete = prerequisites.pop(seed, None) or run_one(ctx, Row("complete"), seed, config)  # by hash
                found.setdefault(("complete", seed), complete)
            log(f"{row.key:>22} seed {seed}: test top-1 {result.final.get('test_top1', float('nan')):.2f}")
        return found[(row.key, seed)]

    def choose(group: str) -> str:
        if group not in chosen:
            keys = groups[group]
            on_first = {key: train(Row.parse(key), first) for key in keys}
            chosen[group] = choose_on_validation(on_first) if len(keys) > 1 else keys[0]
        return chosen[group]

    for spec in specs:
        key = spec.row
        if "prerequisite_of" in spec.settings and (key, spec.seed) not in found:
            prerequisites[spec.seed] = run_one(ctx, Row(key), spec.seed, config)
            continue
        if key == f"td_regular-{CHOSEN}":
            key = "td_regular-" + choose("td").partition("-")[2]
        elif key.endswith(f"-{CHOSEN}"):
            key = choose(key.rpartition("-")[0])
        train(Row.parse(key), spec.seed)
    for seed, complete in prerequisites.items():  # a complete graph whose dependant rows were not selected
        found.setdefault(("complete", seed), complete)
    for group, keys in groups.items():  # the choices the first seed's runs already decide
        if keys and group not in chosen and all((key, first) in found for key in keys):
            choose(group)
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


def run(config: Config, *, context: RunContextSpec, only: str | list[str] | None = None) -> Outcome:
    """Load the CIFAR subset, train (or find) the planned runs (``only``: those rows), return the outcome.

    ``Outcome.runs``: one record per run (:class:`Table2Runs`); ``extra``: ``results`` (the engine's, by
    ``(row, seed)``), ``chosen`` (the validation choices), ``data`` / ``validation`` (the splits the runs used),
    ``dataset`` (the whole release, for its description), ``device`` and ``seconds`` (wall time)."""
    from rewire import data as rdata

    started = time.perf_counter()
    specs = select_rows(plan(config), only)  # an unknown row stops here, before any data is read
    device = context.resolved_device()
    full = rdata.load(config.dataset, root=context.data_root)
    data, validation = full.class_balanced_subset(
        config.train_per_class or None, config.test_per_class or None, seed=0
    ).train_validation_split(config.validation_fraction, seed=0)
    ctx = RunContext(
        data,
        device,
        config.batch_size,
        context.checkpoints("mobilenet_dnw"),
        eval_batch_size=EVAL_BATCH_SIZE,
        progress=context.progress,
        reuse_checkpoints=context.reuse_checkpoints,
        code=(RUNS_MODULE,),
        validation=validation,
    )
    runs = run_table2(ctx, config, specs)
    extra = {
        "results": runs.results,
        "chosen": runs.chosen,
        "data": data,
        "validation": validation,
        "dataset": full,
        "device": device,
        "seconds": time.perf_counter() - started,
    }
    return Outcome(runs=runs.per_run, data_source=full.source, extra=extra)
