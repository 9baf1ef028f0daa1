"""The experiments of the DPF paper: one (method, target sparsity) point of its sweeps, all seeds.

``python -m rewire.dpf_sweep --method dpf --sparsity 0.9 --out results/dpf_runs/dpf-0.9`` is
one DVC matrix stage (``dvc.yaml``: ``dpf_run``); ``notebooks/03_dpf_sweeps.ipynb`` reads the
``run.json`` files of all stages and draws the paper's tables and figures. The recipe is the
``dpf_sweeps`` block of ``params.yaml`` at the active scale (:class:`Recipe`).

Every method (from the registry, :mod:`rewire.methods`) is a sequence of training *phases*, each a
run of the run engine (:mod:`rewire.experiments.engine`: a directory hashed on the settings and on
the code) under ``checkpoints/dpf_runs``: a killed stage resumes, a code change retrains, and a
phase that several methods share
(the dense training behind One-shot P+FT and the lottery ticket, the DPF run behind DPF + FT
and the Figure 5 rewind) is trained once and found again by its hash.

=================  ==========================================================================
method             phases (paper, algorithm)
=================  ==========================================================================
dense              dense training (the "baseline on dense model" column)
dpf                DPF, Algorithm 1: global magnitude mask every 16 iterations, feedback
dpf_structured     DPF with filters ranked by L2 norm, one global threshold (Section 5.2)
incremental        Zhu & Gupta (2017) gradual magnitude pruning, no feedback (Table 2, ZG)
snip               SNIP (Lee et al. 2019): saliency mask at initialisation, then training
oneshot_ft         dense training, one-shot global magnitude pruning, fine-tuning (Han et al. 2015)
incremental_ft     incremental, then fine-tuning with its final mask (Table 2)
dpf_ft             DPF, then fine-tuning with its final mask (Table 2, "DPF + FT")
lottery            dense, prune, rewind to initialisation, retrain (Frankle & Carbin 2019);
                   ``lottery_rounds`` > 1 prunes iteratively, s_r = 1 - (1 - s)^(r/R)
dpf_rewind         DPF's final mask with the initial weights, retrained (Figure 5: not a lottery ticket;
                   ``rewind_epochs`` sets a retraining budget of its own, Figure 8's "same computation")
dpf_structured_rewind  structured DPF's final filter mask with the initial weights, retrained (Figure 13)
sm                 Sparse Momentum (Dettmers & Zettlemoyer 2019), sparse from scratch
dsr                Dynamic Sparse Reparameterization (Mostafa & Wang 2019), sparse from scratch
sfp                Soft Filter Pruning (He et al. 2018): per-layer filter L2, every epoch
=================  ==========================================================================
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from rewire import methods
from rewire.data.datasets import CorruptDataError, DataNotFoundError
from rewire.experiments.engine import ModelSpec, RunContext
from rewire.io import write_json
from rewire.methods.dpf import DPF_UPDATE_EVERY, GRADUAL_METHODS, GradualPruning, SparsitySchedule, second_decay_epoch
from rewire.methods.pruning import attach_fixed_mask, lottery_round_sparsity, magnitude_masks, snip_masks
from rewire.pipeline import params as params_module
from rewire.sparse import flops
from rewire.sparse import stats as mask_stats
from rewire.sparse.groups import MaskGroup, PruningRule, check_sparsity, conv_weight_targets
from rewire.train import checkpoint as checkpoint_module
from rewire.train.runtime import pick_device
from rewire.train.trainer import Callback, TrainingHparams

__all__ = [
    "Recipe",
    "GridPoint",
    "METHODS",
    "STRUCTURED_METHODS",
    "known_methods",
    "grid_points",
    "prepare_data",
    "select_lrs",
    "run_point",
    "main",
]

STAGE = "dpf_sweeps"
RUN_FILE = "run.json"
# This module's import name, for the run engine's code hash. Not ``__name__``: run as
# ``python -m rewire.experiments.dpf_sweep`` (the DVC stage) that is "__main__", which names no
# library module, so the driver's own code would drop out of every run's identity.
DRIVER_MODULE = "rewire.experiments.dpf_sweep"

METHODS = (
    "dense",
    "dpf",
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
    "dpf_structured_rewind",
)
STRUCTURED_METHODS = ("dpf_structured", "sfp", "dpf_structured_rewind")
REWIND_SOURCES = {"dpf_rewind": "dpf", "dpf_structured_rewind": "dpf_structured"}  # rewind method -> its DPF run


def known_methods() -> list[str]:
    return list(METHODS)


@dataclass(frozen=True)
class Recipe:
    """Hyperparameters of a sweep point (open_lth style: every field defines the run).

    Defaults are DPF's CIFAR ResNet recipe (Appendix A.2): batch 128, SGD with Nesterov
    momentum 0.9, lr 0.2 decayed x0.1 at 50% and 75% of training, weight decay 1e-4,
    mask update every 16 iterations, sparsity ramp over whole epochs until the second decay.
    """

    epochs: int
    train_per_class: int = 0  # 0 = the whole training set
    test_per_class: int = 0  # 0 = the whole test set
    dataset: str = "cifar10"
    model: str = "resnet20"
    batch_size: int = 128
    lr: float = 0.2
    momentum: float = 0.9
    weight_decay: float = 1e-4
    milestones: tuple[float, ...] = (0.5, 0.75)  # fractions of `epochs`
    gamma: float = 0.1
    update_every: int = DPF_UPDATE_EVERY
    sparsity_frequency: float = 1.0  # Δt of the cubic ramp in epochs; 0 = at every mask update
    finetune_epochs: int = 1
    finetune_lr: float = 0.01
    lottery_rounds: int = 1
    seeds: tuple[int, ...] = (0,)
    precision: str = "fp32"  # fp32 | bf16 (autocast + channels-last), rewire.train.trainer.PRECISIONS
    # Test and validation sets are evaluated every `eval_every` epochs and always after the last one
    # (a full 10,000-image evaluation of ResNet-20 costs about 4 s on 2 CPU cores).
    eval_every: int = 1
    # Epochs of the rewind methods' retraining (Figures 5, 8, 13); 0 = the DPF run's `epochs` (Figure 5's
    # "same epochs"). Figure 8's "same computation" sets it per sparsity (dpf_paper.same_flops_epochs).
    rewind_epochs: int = 0
    # Held out of the training split (stratified, seeded) and evaluated every epoch as val_*:
    # what learning-rate selection reads. 0 = no validation split (and no selection).
    validation_fraction: float = 0.0
    # Learning-rate candidates, selected on the validation split with the first seed (the paper
    # grid-searched them for P+FT, Incremental and SNIP, Section 5.1 / Appendix A.2); empty = no search.
    finetune_lrs: tuple[float, ...] = ()  # the fine-tuning lr of oneshot_ft, incremental_ft, dpf_ft
    baseline_lrs: tuple[float, ...] = ()  # the training lr of snip and incremental (and incremental_ft)

    @classmethod
    def from_params(cls, values: dict[str, Any]) -> Recipe:
        """Build from a ``params.yaml`` block; keys that are not recipe fields (notebook-only) are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items() if k in names}
        return cls(**kwargs)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.finetune_epochs < 1:
            raise ValueError(f"epochs and finetune_epochs must be >= 1, got {self.epochs} and {self.finetune_epochs}")
        if len(self.milestones) < 2 or not all(0 < m < 1 for m in self.milestones):
            raise ValueError(
                f"milestones are fractions of training in (0, 1), at least two (the sparsity ramp ends "
                f"at the second); got {self.milestones}"
            )
        if not self.seeds:
            raise ValueError("seeds must name at least one seed")
        if self.lottery_rounds < 1:
            raise ValueError(f"lottery_rounds must be >= 1, got {self.lottery_rounds}")
        if isinstance(self.eval_every, bool) or not isinstance(self.eval_every, int) or self.eval_every < 1:
            raise ValueError(f"eval_every must be a whole number of epochs >= 1, got {self.eval_every!r}")
        if isinstance(self.rewind_epochs, bool) or not isinstance(self.rewind_epochs, int) or self.rewind_epochs < 0:
            raise ValueError(
                f"rewind_epochs must be a whole number of epochs >= 0 (0 = the same as epochs), got {self.rewind_epochs!r}"
            )
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must lie in [0, 1), got {self.validation_fraction}")
        if (self.finetune_lrs or self.baseline_lrs) and self.validation_fraction == 0.0:
            raise ValueError(
                "finetune_lrs / baseline_lrs select a learning rate on a validation split; "
                "set validation_fraction > 0 (e.g. 0.1) or leave the candidate lists empty"
            )
        if any(lr <= 0 for lr in (*self.finetune_lrs, *self.baseline_lrs)):
            raise ValueError(f"learning-rate candidates must be > 0, got {self.finetune_lrs} and {self.baseline_lrs}")

    def as_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def hparams(
        self, *, epochs: int | None = None, lr: float | None = None, schedule: str = "multistep"
    ) -> TrainingHparams:
        epochs = self.epochs if epochs is None else epochs
        return TrainingHparams(
            epochs=epochs,
            lr=self.lr if lr is None else lr,
            momentum=self.momentum,
            nesterov=True,
            weight_decay=self.weight_decay,
            schedule=schedule,
            milestones=tuple(m * epochs for m in self.milestones),
            gamma=self.gamma,
            schedule_step="iteration",
            precision=self.precision,
            eval_every=self.eval_every,
        )

    def sparsity_schedule(self, final: float) -> SparsitySchedule:
        """Zhu & Gupta ramp from 0 at epoch 0 to ``final`` at "the epoch (n) when performing the second
        learning rate decay" (Appendix A.2): the whole epoch in which that decay falls, at least 1."""
        end = max(1, math.floor(second_decay_epoch(self.hparams().milestones)))
        return SparsitySchedule(final=final, end=float(end), frequency=self.sparsity_frequency)


# --------------------------------------------------------------------- grid

GRID_KEYS = ("methods", "sparsities", "tag", "model", "preset", "overrides", "figure")


@dataclass(frozen=True)
class GridPoint:
    """One (method, target sparsity) of a scale's grid, with the recipe it runs at.

    ``tag`` names the grid entry (a paper table or figure, e.g. ``table1-wrn28_2``); points of
    the untagged entry live directly under the runs directory, as ``<method>-<sparsity>``.
    """

    method: str
    sparsity: float
    recipe: Recipe
    tag: str = ""
    figure: str = ""

    @property
    def name(self) -> str:
        return f"{self.tag}/{self.method}-{self.sparsity}" if self.tag else f"{self.method}-{self.sparsity}"

    def directory(self, runs_dir: str | os.PathLike) -> Path:
        return Path(runs_dir) / self.name


def _preset_fields(name: str) -> dict[str, Any]:
    from rewire.experiments import dpf_presets

    if name not in dpf_presets.PRESETS:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(sorted(dpf_presets.PRESETS))}")
    return dict(dpf_presets.PRESETS[name])


def grid_points(values: dict[str, Any]) -> list[GridPoint]:
    """Expand a ``dpf_sweeps`` block's ``grid`` into points; every recipe is built (and so checked) here.

    Each grid entry is a mapping: ``methods`` and ``sparsities`` (lists), and optionally ``tag``,
    ``model``, ``preset`` (a named paper recipe of :mod:`rewire.experiments.dpf_presets`, laid
    over the block's values), ``overrides`` (recipe fields, laid over the preset) and
    ``figure`` (which paper table or figure the entry feeds). ``dense`` runs once per entry.
    """
    entries = values.get("grid")
    if not isinstance(entries, list) or not entries:
        raise ValueError("the dpf_sweeps block needs a `grid`: a non-empty list of {methods, sparsities, ...} entries")
    base = {k: v for k, v in values.items() if k != "grid"}
    recipe_fields = {f.name for f in dataclasses.fields(Recipe)}
    points: dict[str, GridPoint] = {}
    for index, entry in enumerate(entries):
        where = f"grid entry {index}" + (
            f" ({entry.get('tag')})" if isinstance(entry, dict) and entry.get("tag") else ""
        )
        if not isinstance(entry, dict):
            raise ValueError(f"{where} must be a mapping with methods and sparsities, got {entry!r}")
        unknown = sorted(set(entry) - set(GRID_KEYS))
        if unknown:
            raise ValueError(f"{where}: unknown keys {', '.join(unknown)}; allowed: {', '.join(GRID_KEYS)}")
        methods_, sparsities = entry.get("methods"), entry.get("sparsities", [])
        if not isinstance(methods_, list) or not methods_:
            raise ValueError(f"{where}: `methods` must be a non-empty list of: {', '.join(METHODS)}")
        if not isinstance(sparsities, list):
            raise ValueError(f"{where}: `sparsities` must be a list of target sparsities in (0, 1)")
        fields = dict(base)
        if entry.get("preset"):
            fields.update(_preset_fields(entry["preset"]))
        if entry.get("model"):
            fields["model"] = entry["model"]
        overrides = entry.get("overrides") or {}
        bad = sorted(set(overrides) - recipe_fields)
        if bad:
            raise ValueError(
                f"{where}: overrides {', '.join(bad)} are not recipe fields ({', '.join(sorted(recipe_fields))})"
            )
        fields.update(overrides)
        try:
            recipe = Recipe.from_params(fields)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{where}: {error}") from error
        for method in methods_:
            if method not in METHODS:
                raise ValueError(f"{where}: unknown method {method!r}; known methods: {', '.join(METHODS)}")
            for sparsity in [0.0] if method == "dense" else sparsities:
                if method != "dense":
                    try:
                        sparsity = check_sparsity(sparsity)
                    except (TypeError, ValueError) as error:
                        raise ValueError(f"{where}: {error}") from error
                    if sparsity == 0.0:
                        raise ValueError(f"{where}: method {method!r} needs a target sparsity in (0, 1), got 0")
                point = GridPoint(
                    method, float(sparsity), recipe, str(entry.get("tag", "")), str(entry.get("figure", ""))
                )
                previous = points.get(point.name)
                if previous is not None and previous.recipe != recipe:
                    raise ValueError(
                        f"{where}: {point.name} appears twice with different recipes; give one entry a distinct tag"
                    )
                points[point.name] = point
    return list(points.values())


def prepare_data(recipe: Recipe, data_root: str | os.PathLike = "data"):
    """The recipe's class-balanced subset and, with ``validation_fraction`` > 0, its validation split.

    Returns ``(data, validation)``: ``data`` trains (its training split without the held-out
    images) and tests; ``validation`` is ``None`` or the held-out part.
    """
    from rewire import data as rdata

    full = rdata.load(recipe.dataset, root=data_root)
    data = full.class_balanced_subset(recipe.train_per_class or None, recipe.test_per_class or None, seed=0)
    if recipe.validation_fraction == 0.0:
        return data, None
    return data.train_validation_split(recipe.validation_fraction, seed=0)


# --------------------------------------------------------------------- context


def make_context(
    recipe: Recipe,
    data,
    device: torch.device,
    checkpoint_root: str | os.PathLike,
    progress: bool | None = None,
    reuse_checkpoints: bool | None = None,
    validation=None,
) -> Context:
    return Context(
        data=data,
        validation=validation,
        device=device,
        batch_size=recipe.batch_size,
        checkpoint_root=Path(checkpoint_root),
        progress=progress,
        reuse_checkpoints=reuse_checkpoints,
        code=(DRIVER_MODULE,),
        recipe=recipe,
    )


@dataclass
class Context(RunContext):
    """The run engine's context plus the sweep's recipe."""

    recipe: Recipe | None = None

    def model_spec(self) -> ModelSpec:
        return ModelSpec(self.recipe.model, num_classes=len(self.data.classes))

    def fresh_model(self, seed: int) -> nn.Module:
        return self.build(self.model_spec(), seed)

    def base_config(self, seed: int) -> dict[str, Any]:
        # seeds: one run per seed; rewind_epochs: only the rewind phase reads it (its hparams record it), so
        # the DPF run behind Figures 5 and 8 is one run, found again by its hash
        recipe = {k: v for k, v in self.recipe.as_dict().items() if k not in ("seeds", "rewind_epochs")}
        return {"recipe": recipe, "seed": seed, "source": self.data.source.get("kind", "unknown")}


@dataclass
class Phase:
    """A finished training phase: the model (with its mask group, if any), its history and callbacks."""

    name: str
    model: nn.Module
    group: MaskGroup | None
    records: list[dict[str, Any]]
    callbacks: list[Callback]
    hparams: TrainingHparams
    checkpoint: str = ""


def _train(
    ctx: Context,
    name: str,
    seed: int,
    config: dict[str, Any],
    model: nn.Module,
    group: MaskGroup | None,
    hparams: TrainingHparams,
    callbacks: Sequence[Callback] = (),
) -> Phase:
    result = ctx.fit(
        f"{name}-seed{seed}",
        seed=seed,
        config={**config, "phase": name, "hparams": hparams.as_dict()},
        model=model,
        hparams=hparams,
        callbacks=callbacks,
        model_spec=ctx.model_spec(),
        run_info={"phase": name},
    )
    return Phase(
        name,
        model,
        group,
        [dict(r, phase=name) for r in result.records],
        list(callbacks),
        hparams,
        result.record["checkpoint"],
    )


def _plain_state(model: nn.Module, group: MaskGroup | None) -> dict[str, torch.Tensor]:
    """The model's state with every pruned weight replaced by w̃ = m ⊙ w under its plain name,
    loadable into a fresh (unsparsified) copy of the model."""
    state = model.state_dict()
    if group is None:
        return state
    plain = {}
    prefixes = [name[: -len(tensor)] + "parametrizations." for name, (_, tensor) in zip(group.names, group.targets)]
    for key, value in state.items():
        if not any(key.startswith(p) for p in prefixes):
            plain[key] = value
    for name, weight, mask in zip(group.names, group.dense_weights(), group.masks()):
        plain[name] = (weight.detach() * mask).clone()
    return plain


# --------------------------------------------------------------------- phases


def _dense(ctx: Context, seed: int) -> Phase:
    model = ctx.fresh_model(seed)
    return _train(ctx, "dense", seed, ctx.base_config(seed), model, None, ctx.recipe.hparams())


def _gradual(ctx: Context, method: str, sparsity: float, seed: int, lr: float | None = None) -> Phase:
    model = ctx.fresh_model(seed)
    attached = methods.get(method).attach(
        model, schedule=ctx.recipe.sparsity_schedule(sparsity), update_every=ctx.recipe.update_every
    )
    config = {**ctx.base_config(seed), "method": method, "sparsity": sparsity}
    return _train(ctx, method, seed, config, model, attached.group, ctx.recipe.hparams(lr=lr), attached.callbacks)


def _fixed_mask(
    ctx: Context,
    name: str,
    seed: int,
    config: dict[str, Any],
    start_state: dict[str, torch.Tensor],
    masks_from: Callable[[MaskGroup], list[torch.Tensor]],
    *,
    epochs: int,
    lr: float,
    schedule: str,
) -> Phase:
    """Train with a fixed mask (masked route, pruned weights zero) from ``start_state``."""
    model = ctx.fresh_model(seed)
    model.load_state_dict(start_state)
    attached = attach_fixed_mask(model, masks_from)
    hparams = ctx.recipe.hparams(epochs=epochs, lr=lr, schedule=schedule)
    return _train(ctx, name, seed, config, model, attached.group, hparams, attached.callbacks)


def _finetune(ctx: Context, source: Phase, method: str, sparsity: float, seed: int, lr: float | None = None) -> Phase:
    """Fine-tune ``source``'s pruned model with its final mask fixed (Table 2, "+ FT")."""
    masks = [m.clone() for m in source.group.masks()]
    config = {**ctx.base_config(seed), "method": method, "sparsity": sparsity}
    return _fixed_mask(
        ctx,
        f"{method}",
        seed,
        config,
        _plain_state(source.model, source.group),
        lambda g: masks,
        epochs=ctx.recipe.finetune_epochs,
        lr=ctx.recipe.finetune_lr if lr is None else lr,
        schedule="cosine",
    )


def _oneshot_ft(ctx: Context, sparsity: float, seed: int, lr: float | None = None) -> list[Phase]:
    dense = _dense(ctx, seed)
    config = {**ctx.base_config(seed), "method": "oneshot_ft", "sparsity": sparsity}
    tuned = _fixed_mask(
        ctx,
        "oneshot_ft",
        seed,
        config,
        dense.model.state_dict(),
        magnitude_masks(sparsity),
        epochs=ctx.recipe.finetune_epochs,
        lr=ctx.recipe.finetune_lr if lr is None else lr,
        schedule="cosine",
    )
    return [dense, tuned]


def _snip(ctx: Context, sparsity: float, seed: int, lr: float | None = None) -> list[Phase]:
    probe = ctx.fresh_model(seed)
    init_state = {k: v.clone() for k, v in probe.state_dict().items()}
    train, _ = ctx.loaders(seed)
    inputs, targets = next(iter(train))  # one minibatch, as in Lee et al. (2019), Algorithm 1
    masks = snip_masks(probe, sparsity, inputs, targets)
    config = {**ctx.base_config(seed), "method": "snip", "sparsity": sparsity}
    return [
        _fixed_mask(
            ctx,
            "snip",
            seed,
            config,
            init_state,
            lambda g: masks,
            epochs=ctx.recipe.epochs,
            lr=ctx.recipe.lr if lr is None else lr,
            schedule="multistep",
        )
    ]


def _lottery(ctx: Context, sparsity: float, seed: int) -> list[Phase]:
    """Frankle & Carbin (2019): train, prune the smallest weights, rewind the rest to initialisation, retrain.
    With R rounds, round r prunes to s_r = 1 - (1 - s)^(r/R) of the previous survivors' magnitudes."""
    init_state = {k: v.clone() for k, v in ctx.fresh_model(seed).state_dict().items()}
    phases = [_dense(ctx, seed)]
    rounds = ctx.recipe.lottery_rounds
    for r in range(1, rounds + 1):
        target = lottery_round_sparsity(sparsity, r, rounds)
        masks = PruningRule("weight", "global").masks(_pruned_weights(phases[-1]), target)
        config = {**ctx.base_config(seed), "method": "lottery", "sparsity": sparsity, "round": r, "rounds": rounds}
        phases.append(
            _fixed_mask(
                ctx,
                f"lottery_round{r}",
                seed,
                config,
                init_state,
                lambda g, m=masks: m,
                epochs=ctx.recipe.epochs,
                lr=ctx.recipe.lr,
                schedule="multistep",
            )
        )
    return phases


def _pruned_weights(phase: Phase) -> list[torch.Tensor]:
    """The conv weights of a finished phase as the model uses them (w̃ = m ⊙ w when it is pruned)."""
    if phase.group is not None:
        return [w.detach() * m for w, m in zip(phase.group.dense_weights(), phase.group.masks())]
    return [
        phase.model.get_submodule(name.rpartition(".")[0]).weight.detach() for name in conv_weight_targets(phase.model)
    ]


def _dpf_rewind(ctx: Context, method: str, sparsity: float, seed: int) -> list[Phase]:
    """Figures 5, 8 and 13: the final mask of a DPF run (unstructured for ``dpf_rewind``, filters for
    ``dpf_structured_rewind``) applied to the initial weights, retrained with the mask fixed for
    ``rewind_epochs`` (0: as many epochs as the DPF run) at the recipe's learning-rate schedule."""
    source = _gradual(ctx, REWIND_SOURCES[method], sparsity, seed)
    masks = [m.clone() for m in source.group.masks()]
    init_state = {k: v.clone() for k, v in ctx.fresh_model(seed).state_dict().items()}
    config = {**ctx.base_config(seed), "method": method, "sparsity": sparsity}
    return [
        source,
        _fixed_mask(
            ctx,
            method,
            seed,
            config,
            init_state,
            lambda g: masks,
            epochs=ctx.recipe.rewind_epochs or ctx.recipe.epochs,
            lr=ctx.recipe.lr,
            schedule="multistep",
        ),
    ]


def _dynamic_sparse(ctx: Context, method: str, sparsity: float, seed: int) -> list[Phase]:
    model = ctx.fresh_model(seed)
    attached = methods.get(method).attach(model, sparsity, seed=seed)
    config = {**ctx.base_config(seed), "method": method, "sparsity": sparsity}
    return [_train(ctx, method, seed, config, model, attached.group, ctx.recipe.hparams(), attached.callbacks)]


def run_phases(
    ctx: Context, method: str, sparsity: float, seed: int, lrs: dict[str, float] | None = None
) -> list[Phase]:
    """Train every phase of ``method`` at ``sparsity`` for one seed (finished phases are found, not retrained).

    ``lrs`` may set ``"train"`` (the training lr of SNIP and Incremental) and ``"finetune"`` (the
    fine-tuning lr of the ``+ FT`` methods), as :func:`select_lrs` chose them; the recipe's otherwise.
    """
    lrs = lrs or {}
    if method == "dense":
        return [_dense(ctx, seed)]
    if method in GRADUAL_METHODS:
        return [_gradual(ctx, method, sparsity, seed, lrs.get("train") if method == "incremental" else None)]
    if method in ("incremental_ft", "dpf_ft"):
        source_method = method[: -len("_ft")]
        source_lr = lrs.get("train") if source_method == "incremental" else None
        source = _gradual(ctx, source_method, sparsity, seed, source_lr)
        return [source, _finetune(ctx, source, method, sparsity, seed, lrs.get("finetune"))]
    if method == "oneshot_ft":
        return _oneshot_ft(ctx, sparsity, seed, lrs.get("finetune"))
    if method == "snip":
        return _snip(ctx, sparsity, seed, lrs.get("train"))
    if method == "lottery":
        return _lottery(ctx, sparsity, seed)
    if method in REWIND_SOURCES:
        return _dpf_rewind(ctx, method, sparsity, seed)
    if method in ("sm", "dsr"):
        return _dynamic_sparse(ctx, method, sparsity, seed)
    raise ValueError(f"unknown method {method!r}; known methods: {', '.join(METHODS)}")


# --------------------------------------------------------------------- learning-rate selection

TRAIN_LR_METHODS = ("snip", "incremental", "incremental_ft")  # their training lr is searched (baseline_lrs)
FINETUNE_LR_METHODS = ("oneshot_ft", "incremental_ft", "dpf_ft")  # their fine-tuning lr is searched (finetune_lrs)


def _pick_lr(
    ctx: Context, method: str, sparsity: float, key: str, candidates: Sequence[float], fixed: dict[str, float]
) -> tuple[float, list[dict[str, Any]]]:
    """Train ``method`` with every candidate lr at the first seed; the best final validation top-1 wins
    (ties: the earlier candidate). The test set is never read."""
    seed = ctx.recipe.seeds[0]
    rows = []
    for lr in candidates:
        final = run_phases(ctx, method, sparsity, seed, {**fixed, key: lr})[-1].records[-1]
        if "val_top1" not in final:
            raise ValueError("learning-rate selection needs a validation split; set validation_fraction > 0")
        rows.append({"method": method, "which": key, "lr": lr, "seed": seed, "val_top1": final["val_top1"]})
    best = max(rows, key=lambda r: r["val_top1"])  # max keeps the first of equal values
    for row in rows:
        row["selected"] = row is best
    return best["lr"], rows


def select_lrs(ctx: Context, method: str, sparsity: float) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """The learning rates of ``method`` chosen on the validation split (DPF Section 5.1: the baselines'
    optimizer and lr were grid-searched), and every candidate's validation top-1."""
    recipe, lrs, log = ctx.recipe, {}, []
    if method in TRAIN_LR_METHODS and recipe.baseline_lrs:
        base = "incremental" if method == "incremental_ft" else method
        lrs["train"], rows = _pick_lr(ctx, base, sparsity, "train", recipe.baseline_lrs, {})
        log += rows
    if method in FINETUNE_LR_METHODS and recipe.finetune_lrs:
        lrs["finetune"], rows = _pick_lr(ctx, method, sparsity, "finetune", recipe.finetune_lrs, dict(lrs))
        log += rows
    return lrs, log


# --------------------------------------------------------------------- one point


def _summarise(phases: list[Phase], seed: int) -> dict[str, Any]:
    last = phases[-1]
    final = last.records[-1]
    macs = flops.count_macs(last.model)
    records, offset = [], 0
    for phase in phases:
        for r in phase.records:
            records.append({**r, "epoch_overall": offset + r["epoch"]})
        offset += phase.records[-1]["epoch"]
    main = phases[-1] if len(phases) == 1 else next((p for p in phases if p.name in GRADUAL_METHODS), phases[-1])
    seconds = sum(r["train_seconds"] for r in main.records)
    steps = main.records[-1]["step"]
    summary = {
        "seed": seed,
        "test_top1": final["test_top1"],
        "test_top5": final["test_top5"],
        "test_loss": final["test_loss"],
        "val_top1": final.get("val_top1"),
        "sparsity": final.get("sparsity", 0.0),
        "filter_sparsity": final.get("filter_sparsity"),
        "delta": final.get("delta", 0.0),
        "macs_dense": macs.dense_macs,
        "macs_sparse": macs.sparse_macs,
        "seconds_per_iteration": seconds / steps,
        "timed_phase": main.name,
        "phases": [p.name for p in phases],
        "checkpoints": {p.name: p.checkpoint for p in phases},
        "history": records,
    }
    if last.group is not None:
        summary["layer_sparsity"] = mask_stats.layer_sparsities(last.group.names, last.group.masks())
    for phase in phases:
        for callback in phase.callbacks:
            if isinstance(callback, GradualPruning):
                summary["mask_convergence"] = callback.mask_convergence(phase.hparams.epochs)
    return summary


def run_point(
    method: str,
    sparsity: float,
    recipe: Recipe,
    *,
    data,
    checkpoint_root: str | os.PathLike,
    device: torch.device | None = None,
    progress: bool | None = None,
    reuse_checkpoints: bool | None = None,
    validation=None,
) -> dict[str, Any]:
    """Run ``method`` at ``sparsity`` for every seed of ``recipe``; return the summary written to ``run.json``.

    ``validation`` is the held-out part of the training split (:func:`prepare_data`), which
    learning-rate selection reads."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known methods: {', '.join(METHODS)}")
    sparsity = 0.0 if method == "dense" else check_sparsity(sparsity)
    if method != "dense" and sparsity == 0.0:
        raise ValueError(f"method {method!r} needs a target sparsity in (0, 1), got 0")
    ctx = make_context(recipe, data, device or pick_device(), checkpoint_root, progress, reuse_checkpoints, validation)
    started = time.perf_counter()
    lrs, selection = select_lrs(ctx, method, sparsity)
    runs = [_summarise(run_phases(ctx, method, sparsity, seed, lrs), seed) for seed in recipe.seeds]
    return {
        "method": method,
        "sparsity": sparsity,
        "structured": method in STRUCTURED_METHODS,
        "recipe": recipe.as_dict(),
        "selected_lrs": lrs,
        "lr_selection": selection,
        "seconds": time.perf_counter() - started,
        "runs": runs,
    }


def write_point(out_dir: str | os.PathLike, point: dict[str, Any], label: dict[str, Any]) -> Path:
    """Write ``run.json`` into ``out_dir`` atomically (the directory appears complete or not at all)."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{out_dir.name}-", dir=out_dir.parent))
    try:
        write_json(staging / RUN_FILE, {"label": label, **point})
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return out_dir / RUN_FILE


def read_point(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; run its sweep stage first (`dvc repro dpf_run`)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); delete it and rerun its stage") from error


# --------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rewire.dpf_sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", action="store_true", help="run every point of the scale's `grid` (the DVC stage)")
    parser.add_argument("--method", help=f"one point: one of {', '.join(METHODS)}")
    parser.add_argument("--sparsity", type=float, help="one point: target sparsity over the pruned layers, e.g. 0.9")
    parser.add_argument(
        "--out",
        required=True,
        help="one point: directory for its run.json; --grid: the runs directory (one sub-directory per point)",
    )
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--stage", default=STAGE, help="the params.yaml block holding the recipe")
    parser.add_argument("--scale", default=None, help="override params.yaml's scale (smoke, cpu, paper)")
    parser.add_argument("--data-root", default="data")
    parser.add_argument("--checkpoints", default="checkpoints/dpf_runs")
    parser.add_argument(
        "--reuse-checkpoints",
        action="store_true",
        help="reuse runs trained by other code (same settings) instead of training again; recorded",
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)  # a killed stage leaves no half-written run.json
    try:
        scale, values = params_module.stage_values(args.stage, args.params, args.scale)
        if args.grid:
            if args.method or args.sparsity is not None:
                raise ValueError("--grid runs the whole grid; leave out --method and --sparsity")
            todo = grid_points(values)
        else:
            if args.method is None or args.sparsity is None:
                raise ValueError("give --method and --sparsity (one point), or --grid (the scale's whole grid)")
            if args.method not in METHODS:
                raise ValueError(f"unknown method {args.method!r}; known methods: {', '.join(METHODS)}")
            sparsity = 0.0 if args.method == "dense" else check_sparsity(args.sparsity)
            todo = [GridPoint(args.method, sparsity, Recipe.from_params(values))]
        from rewire.reporting import results

        device = pick_device()
        prepared: dict[tuple, Any] = {}
        for index, grid_point in enumerate(todo, 1):
            recipe = grid_point.recipe
            key = (recipe.dataset, recipe.train_per_class, recipe.test_per_class, recipe.validation_fraction)
            if key not in prepared:
                prepared[key] = prepare_data(recipe, args.data_root)
            data, validation = prepared[key]
            if len(todo) > 1:
                print(f"[{index}/{len(todo)}] {grid_point.name}", file=sys.stderr, flush=True)
            label = results.run_label(scale=scale, seeds=recipe.seeds, data_source=data.source, device=device)
            point = run_point(
                grid_point.method,
                grid_point.sparsity,
                recipe,
                data=data,
                validation=validation,
                checkpoint_root=args.checkpoints,
                device=device,
                reuse_checkpoints=args.reuse_checkpoints or None,
            )
            point.update(tag=grid_point.tag, figure=grid_point.figure)
            path = write_point(grid_point.directory(args.out) if args.grid else args.out, point, label)
            top1 = ", ".join(f"{r['test_top1']:.2f}" for r in point["runs"])
            print(f"{grid_point.name}: test top-1 {top1} -> {path}")
    except (
        params_module.ParamsError,
        ValueError,
        TypeError,
        FileNotFoundError,
        checkpoint_module.CheckpointError,
        DataNotFoundError,
        CorruptDataError,
    ) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"error: interrupted; nothing was written to {args.out} (finished epochs resume from {args.checkpoints})",
            file=sys.stderr,
        )
        return 130
    return 0


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt(f"received signal {signum}")


if __name__ == "__main__":
    sys.exit(main())
