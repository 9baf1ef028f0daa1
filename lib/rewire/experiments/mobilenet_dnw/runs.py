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
(never on the test set): targeted dropout's ρ and L1 + Anneal's λ (:func:`choose_on_validation`). With
``final_on_all_images`` (the paper scale) the candidates train on the reduced split and the reported runs on
all the training images (:func:`data_splits`, the plan's phases).

``graph_variant`` (:class:`~rewire.experiments.mobilenet_dnw.config.Config`): which entries the top-k choices
rank (:func:`rewire.models.mobilenet_dnw.topk_candidates`) and how targeted dropout acts
(:mod:`rewire.methods.targeted_dropout`). The settings of a run whose computation the variant changes carry
``graph_variant`` only when it is ``authors_code``, so the ``paper`` runs keep their settings.

The rows of :data:`DIAGNOSED_METHODS` train with :class:`rewire.methods.dnw_diagnostics.GraphDiagnostics`: their
epoch records carry ``diag_*`` keys (real-edge |w|, churn, live receivers per stage, the hallucinated edges'
gradient norm), and with ``diagnostics_every_steps`` a ``diag_steps`` list (then part of the run's settings).

Every run record has the final epoch's test top-1 and, beside it, the best test epoch's (the authors' code
tracks ``best_val``, the best test top-1 over epochs): that is selection on the test set, reported beside the
final number, never used for a claim or a choice.
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
from rewire.experiments.mobilenet_dnw.plan import CHOSEN, FINAL, SELECTION, candidate_groups, plan
from rewire.experiments.mobilenet_dnw.rows import Row
from rewire.methods.anneal import AnnealSchedule, attach_l1_anneal
from rewire.methods.dnw import apply_method
from rewire.methods.dnw_diagnostics import GraphDiagnostics
from rewire.methods.targeted_dropout import apply_targeted_dropout
from rewire.models.mobilenet_dnw import edge_budgets, topk_candidates
from rewire.sparse.masks import AssignedMask, sparsify, topk_mask
from rewire.train.runtime import Seeds
from rewire.train.trainer import TrainingHparams

__all__ = [
    "RUNS_MODULE",
    "LOTTERY_LR",
    "VARIANT_METHODS",
    "DIAGNOSED_METHODS",
    "recipe",
    "run_one",
    "best_test_epoch",
    "choose_on_validation",
    "Table2Runs",
    "run_table2",
    "data_splits",
    "run",
]

# This module's import name: the run engine hashes it (and what it imports) into every run's identity.
RUNS_MODULE = "rewire.experiments.mobilenet_dnw.runs"
# One-shot lottery ticket: the authors' configuration retrains the rewound ticket at the recipe's lr 0.1
LOTTERY_LR = 0.1
# evaluation batch (our choice: evaluation holds no gradients, so a large batch only saves time)
EVAL_BATCH_SIZE = 500
# The settings key every Table 2 run has carried since the first runs (kept so the runs are found again).
EXPERIMENT_KEY = "mobilenet_table2"
# the rows whose computation graph_variant changes (top-k over the whole matrix; targeted dropout's |W| and γ)
VARIANT_METHODS = ("dnw", "dnw_no_update", "lottery", "finetune", "td", "td_regular")
# the rows whose records carry the graph diagnostics (issue 20, point 3): DNW, its No Update ablation and the
# fixed-mask rows it is compared with (targeted dropout's and the anneal's masks are random or shrinking by design)
DIAGNOSED_METHODS = ("dnw", "dnw_no_update", "rg", "lottery", "finetune")


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


def _on(mask: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if mask is None else mask.to(device)


def _top_k_masks(model: nn.Module, budgets, graph_variant: str) -> dict[str, torch.Tensor]:
    """Per stage, the k largest |w| (one-shot magnitude pruning) among the feed-forward entries (``paper``) or
    over the whole adjacency matrix (``authors_code``)."""
    masks = {}
    for budget in budgets:
        weight = model.get_parameter(budget.target).detach()
        masks[budget.target] = topk_mask(
            weight.abs(), budget.k, _on(topk_candidates(budget, graph_variant), weight.device)
        )
    return masks


def _assign_masks(model: nn.Module, budgets, masks: dict[str, torch.Tensor], graph_variant: str) -> None:
    for budget in budgets:
        module_name, _, tensor = budget.target.rpartition(".")
        module = model.get_submodule(module_name)
        selector = AssignedMask(topk_candidates(budget, graph_variant))
        parametrization = sparsify(module, tensor, selector=selector, route="masked")
        parametrization.assign_mask(masks[budget.target])


def _diagnostics(model: nn.Module, config: Config) -> GraphDiagnostics:
    """Per-epoch graph diagnostics of every stage (:mod:`rewire.methods.dnw_diagnostics`), plus step records
    every ``diagnostics_every_steps`` steps up to ``diagnostics_until_step`` when asked."""
    return GraphDiagnostics(
        model,
        model.allowed_edges(),
        every_steps=config.diagnostics_every_steps,
        until_step=config.diagnostics_until_step,
    )


def run_one(ctx: RunContext, row: Row, seed: int, config: Config, *, phase: str = FINAL) -> RunResult:
    """Train (or find by its hash) one run of ``row`` with run seed ``seed``; returns the engine's result.

    ``phase`` ``"selection"`` names the run ``<row>-seed<s>-selection`` (a candidate trained to be chosen
    among, with ``final_on_all_images``); its data (``ctx``) tells the runs apart in their hash either way."""
    num_classes = len(ctx.data.classes)
    variant = config.graph_variant
    common = {"experiment": EXPERIMENT_KEY, "row": row.as_dict(), "width": config.width, **config.subset()}
    if variant != "paper" and row.method in VARIANT_METHODS:
        common["graph_variant"] = variant
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
                    allowed=budget.allowed if row.method == "rg" else topk_candidates(budget, variant),
                    seed=_stage_seed(seed, budget.index),
                    targets=(budget.target,),
                )
        elif row.method in ("td", "td_regular"):
            apply_targeted_dropout(
                model,
                k={b.target: b.k for b in budgets},
                rho=row.rho,
                variant="unconstrained" if row.method == "td" else "regular",
                allowed={b.target: topk_candidates(b, variant) for b in budgets},
                seed=Seeds.from_run_seed(seed).model,
                targets=tuple(b.target for b in budgets),
                graph_variant=variant,
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
            masks = _top_k_masks(complete.model, budgets, variant)
            if row.method == "finetune":  # keep the trained weights; the lottery ticket keeps this init
                model.load_state_dict(complete.model.state_dict())
                hparams = recipe(config, lr=row.alpha, epochs=config.finetune_epochs)
            else:
                hparams = recipe(config, lr=LOTTERY_LR)
            _assign_masks(model, budgets, masks, variant)
            extra = {"complete_run": complete.run_dir.name}
        # "complete": every feed-forward entry is an edge; the model reads nothing else
        if row.method in DIAGNOSED_METHODS:
            callbacks = [*callbacks, _diagnostics(model, config)]
            if config.diagnostics_every_steps:  # the step records change what a run holds: part of its identity
                extra["diagnostics"] = {
                    "every_steps": config.diagnostics_every_steps,
                    "until_step": config.diagnostics_until_step,
                }
    return ctx.fit(
        f"{row.key}-seed{seed}" + (f"-{SELECTION}" if phase == SELECTION else ""),
        seed=seed,
        config={**common, **extra, "model": spec.as_dict(), "hparams": hparams.as_dict()},
        model=model,
        hparams=hparams,
        callbacks=callbacks,
        model_spec=spec,
        run_info={"row": row.key},
    )


def best_test_epoch(records: list[dict[str, Any]]) -> tuple[float | None, int | None]:
    """(best test top-1, its epoch) over the evaluated epochs: what the authors' code tracks as ``best_val``.

    Selection on the test set: reported beside the final epoch's number, never used for a claim or a choice."""
    scored = [(r["test_top1"], r.get("epoch")) for r in records if r.get("test_top1") is not None]
    if not scored:
        return None, None
    return max(scored, key=lambda pair: pair[0])  # ties: the earliest epoch


def choose_on_validation(results: dict[str, RunResult]) -> str:
    """The key with the best final validation top-1 (``val_top1``; ties: the first). Never the test set."""
    scored = {key: result.final.get("val_top1") for key, result in results.items()}
    missing = [key for key, value in scored.items() if value is None]
    if missing:
        raise ValueError(f"runs {missing} have no validation accuracy: give the RunContext a validation split")
    return max(scored, key=lambda key: scored[key])


@dataclass
class Table2Runs:
    """The runs of :func:`run_table2`: one record per run, the engine's results and the validation choices.

    ``results`` are the reported runs by ``(row, seed)``; ``selection`` the candidates trained only to be chosen
    among (``final_on_all_images``; empty otherwise, where the candidates are reported runs)."""

    per_run: list[dict[str, Any]]
    results: dict[tuple[str, int], RunResult]
    chosen: dict[str, str]
    selection: dict[tuple[str, int], RunResult]


def _record(key: str, seed: int, result: RunResult, phase: str, chosen: dict[str, str]) -> dict[str, Any]:
    row = Row.parse(key)
    group = "td" if row.method == "td" else "l1_anneal" if row.method == "l1_anneal" else None
    best, best_epoch = best_test_epoch(result.records)
    return {
        "row": key,
        "method": row.method,
        "label": row.label,
        "seed": seed,
        "phase": phase,
        "test_top1": result.final.get("test_top1"),
        "best_epoch_test_top1": best,  # test-set selection (the authors' best_val): beside, never for claims
        "best_epoch": best_epoch,
        "val_top1": result.final.get("val_top1"),
        "train_examples": result.record.get("config", {}).get("data", {}).get("train_examples"),
        "images_per_s": result.final.get("images_per_second"),
        "epochs": result.record.get("epochs"),
        "chosen_on_validation": None if group is None else key == chosen.get(group),
        "run": result.run_dir.name,
    }


def run_table2(
    ctx: RunContext,
    config: Config,
    specs: list[RunSpec] | None = None,
    *,
    final_ctx: RunContext | None = None,
    log: Callable[[str], None] = print,
) -> Table2Runs:
    """Train (or find by hash) every run of ``specs`` (default: :func:`plan` ``(config)``), in their order.

    A ``<group>-chosen`` row is resolved when reached: its group's candidates on the first seed are found (or
    trained) and the best on validation taken (:func:`choose_on_validation`). ``ctx`` holds the reduced training
    split and the validation split; ``final_ctx`` (``final_on_all_images``) all the training images, on which the
    ``final`` phase trains (default: ``ctx``, where choosing and reporting share the runs)."""
    specs = plan(config) if specs is None else specs
    config.check_widths(len(ctx.data.classes))
    separate = final_ctx is not None and config.final_on_all_images
    final_ctx = final_ctx if separate else ctx
    first = config.seeds[0]
    groups = {group: [row.key for row in rows] for group, rows in candidate_groups(config).items()}
    found: dict[tuple[str, int], RunResult] = {}
    selection: dict[tuple[str, int], RunResult] = {}
    chosen: dict[str, str] = {}
    prerequisites: dict[int, RunResult] = {}  # complete graphs trained ahead of their first dependant row

    def train(row: Row, seed: int, phase: str = FINAL) -> RunResult:
        store, context = (selection, ctx) if phase == SELECTION and separate else (found, final_ctx)
        if (row.key, seed) not in store:
            result = run_one(context, row, seed, config, phase=phase if separate else FINAL)
            store[(row.key, seed)] = result
            if row.method in ("lottery", "finetune"):  # listed after its dependant, as the complete graph always was
                complete = prerequisites.pop(seed, None) or run_one(context, Row("complete"), seed, config)  # by hash
                store.setdefault(("complete", seed), complete)
            where = f" ({phase})" if separate else ""
            log(f"{row.key:>22} seed {seed}{where}: test top-1 {result.final.get('test_top1', float('nan')):.2f}")
        return store[(row.key, seed)]

    def choose(group: str) -> str:
        if group not in chosen:
            keys = groups[group]
            on_first = {key: train(Row.parse(key), first, SELECTION) for key in keys}
            chosen[group] = choose_on_validation(on_first) if len(keys) > 1 else keys[0]
        return chosen[group]

    for spec in specs:
        key, phase = spec.row, spec.settings.get("phase", FINAL)
        if "prerequisite_of" in spec.settings and (key, spec.seed) not in found:
            prerequisites[spec.seed] = run_one(final_ctx, Row(key), spec.seed, config)
            continue
        if key == f"td_regular-{CHOSEN}":
            key = "td_regular-" + choose("td").partition("-")[2]
        elif key.endswith(f"-{CHOSEN}"):
            key = choose(key.rpartition("-")[0])
        train(Row.parse(key), spec.seed, phase)
    for seed, complete in prerequisites.items():  # a complete graph whose dependant rows were not selected
        found.setdefault(("complete", seed), complete)
    for group, keys in groups.items():  # the choices the first seed's runs already decide
        candidates_store = selection if separate else found
        if keys and group not in chosen and all((key, first) in candidates_store for key in keys):
            choose(group)
    per_run = [_record(key, seed, result, SELECTION, chosen) for (key, seed), result in selection.items()]
    per_run += [_record(key, seed, result, FINAL, chosen) for (key, seed), result in found.items()]
    return Table2Runs(per_run, found, chosen, selection)


def data_splits(config: Config, full):
    """``(selection_train, validation, final_train)`` of the CIFAR release ``full`` for ``config``.

    The class-balanced subset (``train_per_class``, ``test_per_class``; seed 0) less a stratified
    ``validation_fraction`` (seed 0) is the selection split, the held-out part the validation split. The final
    runs train on the selection split too, or with ``final_on_all_images`` on the whole subset (the paper scale:
    45,000 + 5,000 to choose, then 50,000), always evaluated on the same test images."""
    subset = full.class_balanced_subset(config.train_per_class or None, config.test_per_class or None, seed=0)
    data, validation = subset.train_validation_split(config.validation_fraction, seed=0)
    return data, validation, (subset if config.final_on_all_images else data)


def run(config: Config, *, context: RunContextSpec, only: str | list[str] | None = None) -> Outcome:
    """Load the CIFAR subset, train (or find) the planned runs (``only``: those rows), return the outcome.

    ``Outcome.runs``: one record per run (:class:`Table2Runs`, ``phase`` ``selection`` or ``final``); ``extra``:
    ``results`` (the reported runs, by ``(row, seed)``), ``selection`` (the candidates trained only to be chosen
    among), ``chosen`` (the validation choices), ``data`` (the final runs' training split), ``validation`` (the
    held-out split that chose), ``selection_data``, ``splits`` (a line of image counts), ``dataset`` (the whole
    release, for its description), ``device`` and ``seconds`` (wall time)."""
    from rewire import data as rdata

    started = time.perf_counter()
    specs = select_rows(plan(config), only)  # an unknown row stops here, before any data is read
    device = context.resolved_device()
    full = rdata.load(config.dataset, root=context.data_root)
    selection_data, validation, final_data = data_splits(config, full)

    def context_on(data, held_out) -> RunContext:
        return RunContext(
            data,
            device,
            config.batch_size,
            context.checkpoints("mobilenet_dnw"),
            eval_batch_size=EVAL_BATCH_SIZE,
            progress=context.progress,
            reuse_checkpoints=context.reuse_checkpoints,
            code=(RUNS_MODULE,),
            validation=held_out,
        )

    ctx = context_on(selection_data, validation)
    final_ctx = context_on(final_data, None) if config.final_on_all_images else None
    runs = run_table2(ctx, config, specs, final_ctx=final_ctx)
    counts = (len(selection_data.train_labels), len(validation.test_labels), len(final_data.test_labels))
    splits = f"ρ and λ chosen on {counts[0]} training + {counts[1]} validation images; "
    splits += f"reported runs train on {len(final_data.train_labels)} images, tested on {counts[2]}"
    extra = {
        "results": runs.results,
        "selection": runs.selection,
        "chosen": runs.chosen,
        "data": final_data,
        "validation": validation,
        "selection_data": selection_data,
        "splits": splits,
        "dataset": full,
        "device": device,
        "seconds": time.perf_counter() - started,
    }
    return Outcome(runs=runs.per_run, data_source=full.source, extra=extra)
