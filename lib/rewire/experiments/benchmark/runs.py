"""Training the benchmark through the one run engine: :func:`recipe`, :func:`attach`, :func:`run_one`, :func:`run`.

Every method trains the same network with the same recipe (:func:`recipe`, DPF's CIFAR schedule: SGD with
Nesterov momentum, lr decayed by ``gamma`` at the ``milestones``, per iteration) for the same ``epochs`` in every
training phase, on the same seeds, pruning the same tensors (every ``nn.Conv2d`` weight) to the same sparsity:

==================  ===========================================================================================
row                 how it is attached (and trained)
==================  ===========================================================================================
dense, dpf, snip,   the phases of the DPF sweeps (:func:`rewire.experiments.dpf_sweeps.procedures.run_phases`),
oneshot_ft,         run here with this module in the code hash: DPF and Incremental ramp the sparsity from 0 to
lottery,            the target at the second lr decay (Zhu & Gupta's cubic ramp); SNIP masks at initialisation
incremental,        from one minibatch; One-shot P + FT and the lottery ticket start from the dense run of the
sm, dsr             same seed (found again by its hash) and add ``finetune_epochs`` / ``lottery_rounds x
                    epochs``; SM and DSR keep the first convolution dense (their papers)
random              a fixed random mask, ``floor((1 - s) n)`` kept per layer (DNW's RG, ``rewire.methods.dnw``)
dnw                 DNW: top-k by |w| per layer, re-chosen every step, straight-through gradient
edge_popup_binary   frozen ±1 weights, learned scores, top-k of |s| per layer (Liu et al. 2022; uniform scores
                    U(-0.01, 0.01)); batch norm and the dense classifier train, as in every other row
edge_popup_skc      the same on frozen signed Kaiming constant weights (Ramanujan et al. 2020; fan-scaled
                    uniform scores, the authors' configuration for it)
td                  unconstrained targeted dropout, ``td_rho`` (DNW Table 2's rows)
l1_anneal           from the dense network, edges removed by magnitude until k remain per layer on the same
                    cubic ramp as DPF and Incremental (updated every ``update_every`` steps), L1 term
                    ``l1_coefficient`` (DNW Section 3.3)
==================  ===========================================================================================

No learning rate is searched (one recipe for all: the point of the benchmark). Every run holds a validation split
out of its training images and records the training loss and validation top-1 every epoch (``history`` of each
run's summary), so a convergence test can be applied to it later.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch.nn as nn

from rewire.experiments.base import Outcome, RunContextSpec, RunSpec, select_rows
from rewire.experiments.benchmark.config import Config
from rewire.experiments.benchmark.plan import plan
from rewire.experiments.dpf_sweeps import runs as dpf_runs
from rewire.experiments.dpf_sweeps.procedures import Phase, run_phases
from rewire.experiments.engine import ModelSpec
from rewire.methods import get as get_method
from rewire.methods.anneal import AnnealSchedule, attach_l1_anneal
from rewire.methods.dnw import apply_method
from rewire.methods.edge_popup import apply_edge_popup
from rewire.methods.pruning import attach_fixed_mask, magnitude_masks
from rewire.methods.targeted_dropout import apply_targeted_dropout
from rewire.sparse import flops
from rewire.sparse.allocation import kept_count
from rewire.sparse.groups import conv_weight_targets
from rewire.train.runtime import Seeds
from rewire.train.trainer import Callback

__all__ = [
    "RUNS_MODULE",
    "DPF_PHASE_METHODS",
    "FIXED_MASK_METHODS",
    "BenchmarkContext",
    "recipe",
    "attach",
    "train_phases",
    "summarise",
    "run_one",
    "run",
]

# This module's import name (run as ``python -m`` it would be "__main__"): the engine hashes it into every run's
# identity, beside the DPF sweep modules whose phases it runs.
RUNS_MODULE = "rewire.experiments.benchmark.runs"
DPF_PHASE_METHODS = ("dense", "dpf", "snip", "oneshot_ft", "lottery", "incremental", "sm", "dsr")
FIXED_MASK_METHODS = ("snip", "oneshot_ft", "lottery")  # their sparse phase: a fixed mask, masked route
# edge-popup's two rows: (weight initialisation, score initialisation) of rewire.methods.edge_popup
EDGE_POPUP_INITS = {"edge_popup_binary": ("binary", "uniform"), "edge_popup_skc": ("signed_kaiming_constant", "fan_scaled_uniform")}  # fmt: skip


@dataclass
class BenchmarkContext(dpf_runs.Context):
    """The DPF sweep's run context (data, recipe, the phases' helpers) with the benchmark's network width and the
    settings of the methods it adds (targeted dropout's ρ, L1 + Anneal's λ)."""

    width: int = 0
    td_rho: float | str = "gamma"
    l1_coefficient: float = 0.0

    def model_spec(self) -> ModelSpec:
        kwargs = {"width": self.width} if self.width else {}
        return ModelSpec(self.recipe.model, num_classes=len(self.data.classes), kwargs=kwargs)

    def base_config(self, seed: int) -> dict[str, Any]:
        return {**super().base_config(seed), "experiment": "benchmark", "width": self.width}


def recipe(ctx: BenchmarkContext):
    """The ``TrainingHparams`` of every ``epochs``-long phase: the DPF sweep's (:func:`dpf_runs.recipe`)."""
    return dpf_runs.recipe(ctx.recipe)


def _layer_counts(model: nn.Module, sparsity: float) -> dict[str, int]:
    """``floor((1 - s) n)`` kept weights of every convolution (the per-layer methods' k)."""
    return {t: kept_count(model.get_parameter(t).numel(), 1.0 - sparsity) for t in conv_weight_targets(model)}


def _layer_seed(seed: int, index: int) -> int:
    """An independent seed per layer for the random mask (so layers of one shape get different masks)."""
    return (Seeds.from_run_seed(seed).model + index) % 2**63


def attach(ctx: BenchmarkContext, method: str, model: nn.Module, sparsity: float, seed: int) -> list[Callback]:
    """Put ``method`` on ``model`` (fresh, dense) at ``sparsity``; return the training callbacks.

    For the DPF-phase methods this is their *sparse* phase as :func:`run_phases` attaches it (SNIP, One-shot
    P + FT and the lottery ticket: a fixed magnitude mask, which costs what theirs cost per step); the
    benchmark's step timing reads it (:mod:`rewire.experiments.benchmark.timing`)."""
    point = ctx.recipe
    if method == "dense":
        return []
    if method in FIXED_MASK_METHODS:
        return attach_fixed_mask(model, magnitude_masks(sparsity)).callbacks
    if method in ("dpf", "incremental"):
        schedule = dpf_runs.sparsity_schedule(point, sparsity)
        return get_method(method).attach(model, schedule=schedule, update_every=point.update_every).callbacks
    if method in ("sm", "dsr"):
        return get_method(method).attach(model, sparsity, seed=seed).callbacks
    counts = _layer_counts(model, sparsity)
    if method in ("random", "dnw"):
        for index, (target, k) in enumerate(counts.items()):
            name = "rg" if method == "random" else "dnw"
            apply_method(model, name, k=k, seed=_layer_seed(seed, index), targets=(target,))
        return []
    if method in EDGE_POPUP_INITS:
        weights, scores = EDGE_POPUP_INITS[method]
        keep = {target: 1.0 - sparsity for target in counts}
        apply_edge_popup(model, keep=keep, weight_init=weights, score_init=scores, seed=seed, targets=tuple(counts))
        return []
    if method == "td":
        seeds = Seeds.from_run_seed(seed)
        apply_targeted_dropout(model, k=counts, rho=ctx.td_rho, seed=seeds.model, targets=tuple(counts))
        return []
    if method == "l1_anneal":
        ramp = dpf_runs.sparsity_schedule(point, sparsity)
        schedule = AnnealSchedule(end=ramp.end, frequency=point.sparsity_frequency)
        attached = attach_l1_anneal(
            model,
            k=counts,
            schedule=schedule,
            targets=tuple(counts),
            l1=ctx.l1_coefficient,
            update_every=point.update_every,
        )
        return attached.callbacks
    raise ValueError(f"unknown benchmark method {method!r}")


def _method_settings(ctx: BenchmarkContext, method: str) -> dict[str, Any]:
    if method == "td":
        return {"td_rho": ctx.td_rho}
    if method == "l1_anneal":
        return {"l1_coefficient": ctx.l1_coefficient}
    if method in EDGE_POPUP_INITS:
        return {"weight_init": EDGE_POPUP_INITS[method][0], "score_init": EDGE_POPUP_INITS[method][1]}
    return {}


def train_phases(ctx: BenchmarkContext, method: str, sparsity: float, seed: int) -> list[Phase]:
    """Train (or find by hash) every phase of ``method`` at ``sparsity`` for one seed."""
    if method in DPF_PHASE_METHODS:
        return run_phases(ctx, method, sparsity, seed)
    model = ctx.fresh_model(seed)
    callbacks = attach(ctx, method, model, sparsity, seed)
    hparams = recipe(ctx)
    config = {
        **ctx.base_config(seed),
        "method": method,
        "sparsity": sparsity,
        "phase": method,
        **_method_settings(ctx, method),
        "hparams": hparams.as_dict(),
    }
    result = ctx.fit(
        f"{method}-seed{seed}",
        seed=seed,
        config=config,
        model=model,
        hparams=hparams,
        callbacks=callbacks,
        model_spec=ctx.model_spec(),
        run_info={"phase": method},
    )
    records = [dict(r, phase=method) for r in result.records]
    return [Phase(method, model, None, records, callbacks, hparams, result.record["checkpoint"])]


def summarise(method: str, sparsity: float, seed: int, phases: list[Phase], image_shape) -> dict[str, Any]:
    """One run's entry of the outcome: final accuracies, reached sparsity and MACs of the last phase's model,
    every phase's epochs (dense or sparse: what its cost is counted at) and the per-epoch history."""
    last = phases[-1]
    final = last.records[-1]
    last.model.eval()  # targeted dropout draws in training mode; the evaluated network is the pruned one
    macs = flops.count_macs(last.model, (1, *image_shape))
    convs = [layer for layer in macs.layers if layer.kind == "conv"]
    history, offset = [], 0
    for phase in phases:
        for r in phase.records:
            history.append(
                {
                    "phase": phase.name,
                    "epoch": r["epoch"],
                    "epoch_overall": offset + r["epoch"],
                    "train_loss": r["train_loss"],
                    "val_top1": r.get("val_top1"),
                    "test_top1": r.get("test_top1"),
                }
            )
        offset += phase.records[-1]["epoch"]
    return {
        "method": method,
        "sparsity": sparsity,
        "seed": seed,
        "test_top1": final["test_top1"],
        "val_top1": final.get("val_top1"),
        "reached_sparsity": 1.0 - sum(c.nonzero for c in convs) / sum(c.numel for c in convs),
        "macs_dense": macs.dense_macs,
        "macs_sparse": macs.sparse_macs,
        "phases": [{"name": p.name, "epochs": p.records[-1]["epoch"], "dense": p.name == "dense"} for p in phases],
        "checkpoints": [p.checkpoint for p in phases],
        "history": history,
    }


def run_one(ctx: BenchmarkContext, spec: RunSpec) -> dict[str, Any]:
    """Train (or find) the planned run ``spec``; return its summary (:func:`summarise`)."""
    method, sparsity = spec.settings["method"], spec.settings["sparsity"]
    phases = train_phases(ctx, method, sparsity, spec.seed)
    return summarise(method, sparsity, spec.seed, phases, tuple(ctx.data.train_images.shape[1:]))


def make_context(config: Config, context: RunContextSpec, data, validation) -> BenchmarkContext:
    return BenchmarkContext(
        data=data,
        validation=validation,
        device=context.resolved_device(),
        batch_size=config.batch_size,
        checkpoint_root=context.checkpoints("benchmark"),
        progress=context.progress,
        reuse_checkpoints=context.reuse_checkpoints,
        code=(RUNS_MODULE, *dpf_runs.DRIVER_MODULES),
        recipe=config.recipe(),
        width=config.width,
        td_rho=config.td_rho,
        l1_coefficient=config.l1_coefficient,
    )


def run(config: Config, *, context: RunContextSpec, only=None) -> Outcome:
    """Train (or find by hash) the planned runs (``only``: rows), then time every method's training step against
    dense's in this one process (:func:`rewire.experiments.benchmark.timing.step_costs`)."""
    from rewire.experiments.benchmark import timing

    specs = select_rows(plan(config), only)  # an unknown row stops here, before any data is read
    started = time.perf_counter()
    data, validation = dpf_runs.prepare_data(config.recipe(), context.data_root)
    ctx = make_context(config, context, data, validation)
    config.check_mask_updates(len(data.train_labels) // config.batch_size)  # the loaders drop the last batch
    runs = []
    for index, spec in enumerate(specs, 1):
        if context.progress is not False and len(specs) > 1:
            print(f"[{index}/{len(specs)}] {spec.describe()}", flush=True)
        runs.append(run_one(ctx, spec))
    trained = time.perf_counter() - started
    methods = list(dict.fromkeys(["dense", *(spec.settings["method"] for spec in specs)]))  # dense: the reference
    costs = timing.step_costs(ctx, methods, config.sparsities[0], config.timing_steps, config.timing_rounds)
    return Outcome(
        runs,
        data_source=data.source,
        extra={
            "device": ctx.device,
            "dataset": data.describe(),
            "train_examples": len(data.train_labels),
            "validation_examples": len(validation.test_labels),
            "test_examples": len(data.test_labels),
            "step_seconds": costs,
            "train_seconds": trained,
            "run_seconds": time.perf_counter() - started,
        },
    )
