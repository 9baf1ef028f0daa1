"""The DPF sweep's methods as training *phases*: each phase is one run of the run engine.

Every method of :data:`rewire.experiments.dpf_sweeps.config.METHODS` is a sequence of phases
(:func:`run_phases`), each a run of :mod:`rewire.experiments.engine` (a directory hashed on the
settings and on the code) under the checkpoint root: a killed sweep resumes, a code change retrains,
and a phase that several methods share (the dense training behind One-shot P+FT and the lottery
ticket, the DPF run behind DPF + FT and the Figure 5 rewind) is trained once and found again by its hash.

=====================  ======================================================================
method                 phases (paper, algorithm)
=====================  ======================================================================
dense                  dense training (the "baseline on dense model" column)
dpf                    DPF, Algorithm 1: global magnitude mask every 16 iterations, feedback
dpf_frozen             DPF with its mask frozen once the ramp reaches the target (our variant: INCHEON-CHO's code)
dpf_structured         DPF with filters ranked by L2 norm, one global threshold (Section 5.2)
incremental            Zhu & Gupta (2017) gradual magnitude pruning, no feedback (Table 2, ZG)
snip                   SNIP (Lee et al. 2019): saliency mask at initialisation, then training
oneshot_ft             dense training, one-shot global magnitude pruning, fine-tuning (Han et al. 2015)
incremental_ft         incremental, then fine-tuning with its final mask (Table 2)
dpf_ft                 DPF, then fine-tuning with its final mask (Table 2, "DPF + FT")
lottery                dense, prune, rewind to initialisation, retrain (Frankle & Carbin 2019);
                       ``lottery_rounds`` > 1 prunes iteratively, s_r = 1 - (1 - s)^(r/R)
dpf_rewind             DPF's final mask with the initial weights, retrained (Figure 5: not a lottery
                       ticket; ``rewind_epochs`` sets Figure 8's "same computation" budget)
dpf_structured_rewind  structured DPF's final filter mask with the initial weights, retrained (Figure 13)
sm                     Sparse Momentum (Dettmers & Zettlemoyer 2019), sparse from scratch
dsr                    Dynamic Sparse Reparameterization (Mostafa & Wang 2019), sparse from scratch
sfp                    Soft Filter Pruning (He et al. 2018): per-layer filter L2, every epoch
sfp_bn                 SFP, then batch-norm statistics recomputed after the final zeroing (our variant)
dpf_structured_bn      structured DPF, then batch-norm statistics recomputed after the last step (our variant)
=====================  ======================================================================

Learning rates the paper grid-searched (Section 5.1, Appendix A.2) are chosen here on the
validation split (:func:`select_lrs`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from rewire import methods
from rewire.experiments.dpf_sweeps.config import METHODS, REWIND_SOURCES
from rewire.experiments.dpf_sweeps.runs import Context, recipe, sparsity_schedule
from rewire.methods.dpf import GRADUAL_METHODS
from rewire.methods.pruning import attach_fixed_mask, lottery_round_sparsity, magnitude_masks, snip_masks
from rewire.sparse.groups import MaskGroup, PruningRule, conv_weight_targets
from rewire.train.trainer import Callback, TrainingHparams

__all__ = ["Phase", "run_phases", "select_lrs", "TRAIN_LR_METHODS", "FINETUNE_LR_METHODS"]


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
    return _train(ctx, "dense", seed, ctx.base_config(seed), model, None, recipe(ctx.recipe))


def _gradual(ctx: Context, method: str, sparsity: float, seed: int, lr: float | None = None) -> Phase:
    model = ctx.fresh_model(seed)
    attached = methods.get(method).attach(
        model, schedule=sparsity_schedule(ctx.recipe, sparsity), update_every=ctx.recipe.update_every
    )
    config = {**ctx.base_config(seed), "method": method, "sparsity": sparsity}
    return _train(ctx, method, seed, config, model, attached.group, recipe(ctx.recipe, lr=lr), attached.callbacks)


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
    hparams = recipe(ctx.recipe, epochs=epochs, lr=lr, schedule=schedule)
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
    return [_train(ctx, method, seed, config, model, attached.group, recipe(ctx.recipe), attached.callbacks)]


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
