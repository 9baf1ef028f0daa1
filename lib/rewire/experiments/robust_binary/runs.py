"""Robust binary subnetworks (Liu et al., NeurIPS 2022) on the run engine: one run = one row's network, one seed.

A row (:class:`~rewire.experiments.robust_binary.config.Row`, resolved against its scale) says how the network is
made sparse or binary (``method``) and how it is trained (``training``):

==================  ==========================================================================================
``method``          what is trained
==================  ==========================================================================================
``edge_popup``      the paper's method: scores on frozen random weights (binary ±1 or signed Kaiming constant),
                    keep the top-k |s| per layer, k from the adaptive allocation kept_i = c n_i^p
                    (:mod:`rewire.methods.edge_popup`, :mod:`rewire.sparse.allocation`); non-affine BN
``dense``           full-precision adversarial training (affine BN), the paper's "AT" baseline
``binary_connect``  BinaryConnect AT: sign(w) forward, straight-through backward, latent weights clipped to
                    [-1, 1] (:mod:`rewire.models.binary_connect`); affine BN
``finetune``        the authors' lottery-style baseline: the mask edge-popup found in the row ``mask_from`` (same
                    seed) held fixed, its random weights trained in full precision
                    (:func:`rewire.methods.edge_popup.hold_found_mask`)
``retrain``         the same mask on fresh ±1 weights (the authors' ``lottery_binary``), trained
==================  ==========================================================================================

``training``: ``pgd`` (Algorithm 1: PGD at ε, random start, trained on the final iterate), ``trades`` (TRADES,
β = ``trades_beta``), ``fast`` (Algorithm 2: FGSM with random start, step ``fast_step_255``, from ATTA's
per-sample cache, the augmentation moved into the attacker), or ``clean`` (the paper's "vanilla training",
Table 8); the callbacks are in :mod:`rewire.experiments.robust_binary.callbacks`. The row's ``attack_protocol``
``authors`` runs PGD and FGSM as the authors' code does (:class:`ProtocolPGDTraining`,
:class:`ProtocolFastATTATraining`: PGD's worst iterate, BN in train mode, ATTA crop offsets 0-7); its ``rounding``
sets the kept count per layer. Rows of another dataset than the block's (``dataset: cifar100``) load their own.

Every run goes through :meth:`rewire.experiments.engine.RunContext.fit` with a :class:`PixelRunContext`: its
loaders yield pixels in [0, 1] (normalisation is inside the model), the fast rows' loader is indexed and
un-augmented, and the held-out split is the robust model selection's (:class:`RobustSelection`), not the engine's
per-epoch validation. ImageNet-100 (``image_size`` 256, ``crop_size`` 224) follows the authors' ImageNet transforms:
test and held-out images ``Resize(256)`` + ``CenterCrop(224)``, training ``RandomResizedCrop(224)`` + flip, in the
loader or, for the fast rows, in ATTA's attacker with the perturbation cropped alongside
(:mod:`rewire.data.imagefolder.in_memory`, :class:`ResizedCropATTACache`). This module is in every run's code hash
(``code=``), with the context's own ``code`` and its ``distributed`` setting passed on.

Model selection as the authors: a seeded validation split of the training set, robust (PGD) validation accuracy
every ``eval_every`` epochs; the best epoch's state is evaluated on the test images at the end beside the final
epoch's (``best_*`` and ``test_*`` keys of the record).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

from rewire.data.datasets import normalisation_for
from rewire.data.imagefolder.in_memory import RandomResizedCropLoader, centre_crop_test
from rewire.data.loader import BatchLoader
from rewire.experiments.base import Outcome, RunContextSpec, RunSpec, select_rows
from rewire.experiments.engine import ModelSpec, RunContext, RunResult
from rewire.experiments.robust_binary.callbacks import (
    FastATTATraining,
    IndexedBatchLoader,
    LatentClip,
    PGDTraining,
    RobustSelection,
    TRADESTraining,
    evaluation_subset,
)
from rewire.experiments.robust_binary.config import FOUND_MASK_METHODS, Config, Row
from rewire.experiments.robust_binary.masks import layer_masks
from rewire.experiments.robust_binary.plan import identity, plan
from rewire.methods.edge_popup import apply_edge_popup, default_targets, hold_found_mask, kept_counts
from rewire.models.binary_connect import binarize_
from rewire.sparse.masks import resolve_tensor
from rewire.train.runtime import Seeds
from rewire.train.trainer import Callback, TrainingHparams

__all__ = [
    "RUNS_MODULE",
    "EXPERIMENT",
    "EVAL_BATCH_SIZE",
    "FinishedRun",
    "PixelRunContext",
    "model_spec",
    "build_model",
    "weight_count",
    "recipe",
    "run_one",
    "load_data",
    "subset_settings",
    "run",
]

RUNS_MODULE = __name__
EXPERIMENT = "robust_binary"
EVAL_BATCH_SIZE = 250  # evaluation batches (clean and attacked); no effect on a result


@dataclass
class FinishedRun:
    """One planned run, done: its spec, its resolved row and the engine's result (model, records, record)."""

    spec: RunSpec
    row: Row
    result: RunResult


def recipe(row: Row) -> TrainingHparams:
    """The recipe, per epoch: by default the authors' pruning recipe (SGD momentum 0.9, cosine from ``lr``, weight
    decay on every trainable tensor); the baselines' own recipes set ``optimizer``, ``schedule``/``milestones`` and
    the rest (the paper scale's rows). The trainer's clean pass over the whole test set runs once, at the end (model
    selection reads the robust validation of :class:`RobustSelection`, every ``eval_every`` epochs)."""
    return TrainingHparams(
        precision=row.precision,
        eval_every=row.epochs,
        epochs=row.epochs,
        optimizer=row.optimizer,
        lr=row.lr,
        momentum=row.momentum,
        weight_decay=row.weight_decay,
        schedule=row.schedule,
        milestones=tuple(row.milestones),
        schedule_step="epoch",
        warmup_epochs=row.warmup_epochs,
        label_smoothing=row.label_smoothing,
    )


def model_spec(row: Row, num_classes: int, dataset: str = "cifar10") -> ModelSpec:
    """The network; the FP and BNN baselines train affine BN (the authors' configs), the pruned networks and the
    lottery-style rows (the found network's architecture) non-affine BN. Input normalisation inside the model: the
    authors' CIFAR-10 constants (the model's default), another dataset's own statistics."""
    affine = row.method in ("dense", "binary_connect")
    kwargs: dict[str, Any] = {"widths": list(row.widths), "last_bn": row.last_bn, "affine_bn": affine}
    if dataset != "cifar10":
        mean, std = normalisation_for(dataset)
        kwargs.update(mean=list(mean), std=list(std))
    return ModelSpec(row.model, num_classes=num_classes, kwargs=kwargs)


def build_model(
    ctx: RunContext, row: Row, seed: int, found: nn.Module | None = None
) -> tuple[nn.Module, ModelSpec, dict[str, Any]]:
    """The run's network with its method attached; returns (model, spec, what to record: kept counts).
    ``found``: for finetune/retrain, the trained edge-popup network of row ``row.mask_from`` (same seed)."""
    if (row.method in FOUND_MASK_METHODS) != (found is not None):
        raise ValueError(
            f"method {row.method!r}: pass the trained network of row {row.mask_from!r} as found= "
            "for finetune/retrain, and only for them"
        )
    spec = model_spec(row, len(ctx.data.classes), getattr(ctx.data, "name", "cifar10"))
    model = ctx.build(spec, seed)
    info: dict[str, Any] = {}
    if found is not None:
        held = hold_found_mask(model, found, weights=FOUND_MASK_METHODS[row.method], seed=seed)
        info = {"kept_total": sum(int(p.mask.sum()) for p in held.values())}
    elif row.method == "edge_popup":
        apply_edge_popup(
            model, keep=row.keep, p=row.p, weight_init=row.weight_init, score_init=row.score_init,
            rounding=row.rounding, seed=seed,
        )  # fmt: skip
        counts = kept_counts(model)
        info = {"kept_total": sum(counts.values()), "kept_per_layer": counts}
    elif row.method == "binary_connect":
        binarize_(model)
    return model, spec, info


def weight_count(model: nn.Module) -> int:
    """The convolution and linear weights that count (Table 9's "equal parameter count"): the kept entries of
    a sparse tensor, every entry of a dense one (batch-norm statistics and scores not counted)."""
    kept = sum(int(mask.sum()) for mask in layer_masks(model).values())
    dense = (getattr(*resolve_tensor(model, target)).numel() for target in default_targets(model))
    return kept + sum(dense)


# ------------------------------------------------------------------------------ the training attacks' protocol


class ProtocolPGDTraining(PGDTraining):
    """Algorithm 1's training attack under the row's ``attack_protocol``: ``standard`` = :class:`PGDTraining`
    (final iterate, ``attack_bn_mode``); ``authors`` = the authors' ``util/attack.py::PGD`` in training (the
    per-sample worst iterate among iterates 0..steps-1, BN in train mode). The row's ``train_steps``, where set,
    replaces ``steps`` in training only (a reduced-cost PGD baseline; the evaluation attack keeps ``steps``)."""

    def attack_options(self) -> dict[str, Any]:
        row = self.setup
        steps = row.steps if row.train_steps is None else row.train_steps
        options = {**super().attack_options(), "bn_mode": row.training_bn_mode, "worst_iterate": row.worst_iterate}
        return {**options, "steps": steps}


class ProtocolFastATTATraining(FastATTATraining):
    """Algorithm 2 under the row's ``attack_protocol``: ``standard`` = :class:`FastATTATraining` (crop offsets
    0..8, ``attack_bn_mode``); ``authors`` = crop offsets 0..7 (the authors' ``randint(0, 8)``) and FGSM with BN
    in train mode. The offsets only change which crops are drawn, never the cache's initial draw."""

    def __init__(self, setup: Row, loader: IndexedBatchLoader, seed: int, crop_size: int = 0) -> None:
        setup_bn = dataclasses.replace(setup, attack_bn_mode=setup.training_bn_mode)
        super().__init__(setup_bn, loader, seed, crop_size=crop_size)
        if not crop_size:  # CIFAR's pad-4 crop; ImageNet's RandomResizedCrop has no offsets to draw
            self.cache.offsets = setup.atta_offsets


# ----------------------------------------------------------------------------------------------- the context


def _pixel_loader(
    images, labels, batch_size, *, device, shuffle=False, augment=False, seeds=None, indexed=False, crop_size=0
):
    cls = IndexedBatchLoader if indexed else BatchLoader
    extra: dict[str, Any] = {}
    if augment and crop_size:  # ImageNet-100: RandomResizedCrop(crop_size) + flip instead of CIFAR's pad-4 crop
        cls, extra = RandomResizedCropLoader, {"crop_size": crop_size}
    if seeds is not None:
        extra.update(order_seed=seeds.data_order, augmentation_seed=seeds.augmentation, drop_last=True)
    unit = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)  # pixels in [0, 1]: normalisation is inside the model
    return cls(images, labels, batch_size, shuffle=shuffle, augment=augment, mean=unit[0], std=unit[1], device=device,
               **extra)  # fmt: skip


@dataclass
class PixelRunContext(RunContext):
    """The :class:`RunContext` of one robust run: loaders of pixels in [0, 1], seeded by the run seed (the fast
    rows' indexed and un-augmented: ATTA augments inside the attacker), built once per seed so that the attack
    callbacks and :meth:`RunContext.fit` share them. ``held_out`` is the robust model selection's split; the
    engine's own per-epoch validation stays off (``validation`` None), as in every robust run recorded so far.
    ``crop_size`` (ImageNet-100): training batches are ``RandomResizedCrop(crop_size)`` + flip of the stored images
    (the fast rows': in the attacker); the test and held-out images are centre-cropped already
    (:func:`load_data`)."""

    held_out: Any = None
    fast: bool = False
    crop_size: int = 0
    _built: dict[int, tuple[Any, Any]] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def for_row(cls, ctx: RunContext, row: Row, crop_size: int = 0) -> PixelRunContext:
        """The run context of ``row`` from an experiment's context: its batch size, this module in ``code``."""
        shared = {f.name: getattr(ctx, f.name) for f in dataclasses.fields(RunContext)}
        shared.update(
            batch_size=row.batch_size or ctx.batch_size,
            code=tuple(dict.fromkeys((RUNS_MODULE, *ctx.code))),
            validation=None,
        )
        held_out = ctx.held_out if isinstance(ctx, PixelRunContext) else ctx.validation
        return cls(**shared, held_out=held_out, fast=row.training == "fast", crop_size=crop_size)

    def loaders(self, seed: int):
        if seed not in self._built:
            data = self.data
            train = _pixel_loader(data.train_images, data.train_labels, self.batch_size, device=self.device,
                                  shuffle=True, augment=not self.fast, seeds=Seeds.from_run_seed(seed),
                                  indexed=self.fast, crop_size=self.crop_size)  # fmt: skip
            test = _pixel_loader(data.test_images, data.test_labels, self.eval_batch_size, device=self.device)
            self._built[seed] = (train, test)
        return self._built[seed]

    def attacked(self, split, n: int):
        """A loader of the ``n`` images of ``split``'s test part that robust evaluation attacks (a fixed random
        subset, the same for every run: the splits are ordered by class, so "the first n" would be a few classes)."""
        if split is None:
            return None
        index = evaluation_subset(len(split.test_labels), n)
        return _pixel_loader(split.test_images[index], split.test_labels[index], self.eval_batch_size,
                             device=self.device)  # fmt: skip


# ------------------------------------------------------------------------------------------------------ runs


def run_one(
    ctx: RunContext, row: Row, seed: int, *, name: str, subset: dict[str, Any], found: RunResult | None = None
) -> RunResult:
    """Train (or find by its hash) the run of resolved ``row`` with run seed ``seed``; returns the engine's result.

    ``ctx.data`` is the training part and test set, ``ctx.validation`` the held-out part (its test split).
    ``subset`` names the data subset (part of the settings). ``found``: for finetune/retrain, the run of row
    ``row.mask_from`` with the same seed (its directory enters this run's identity)."""
    model, spec, info = build_model(ctx, row, seed, None if found is None else found.model)
    crop_size = int(subset.get("crop_size", 0))
    run_ctx = PixelRunContext.for_row(ctx, row, crop_size)
    train, _ = run_ctx.loaders(seed)
    callbacks: list[Callback] = []
    if row.training == "pgd":
        callbacks.append(ProtocolPGDTraining(row, seed))
    elif row.training == "trades":
        callbacks.append(TRADESTraining(row, seed))
    elif row.training == "fast":
        callbacks.append(ProtocolFastATTATraining(row, train, seed, crop_size))
    if row.method == "binary_connect":
        callbacks.append(LatentClip(model))
    validation = run_ctx.attacked(run_ctx.held_out, row.validation_images)
    callbacks.append(RobustSelection(row, validation, run_ctx.attacked(run_ctx.data, row.test_images)))
    config = {"experiment": EXPERIMENT, "setup": identity(row), "model": spec.as_dict(), **subset}
    if found is not None:
        config["mask_from_run"] = found.run_dir.name
    return run_ctx.fit(
        name,
        seed=seed,
        config=config,
        model=model,
        hparams=recipe(row),
        callbacks=callbacks,
        model_spec=spec,
        run_info={k: v for k, v in info.items() if k == "kept_total"},
    )


def load_data(config: Config, data_root, dataset: str | None = None) -> tuple[Any, Any, Any]:
    """(training part with the test set, held-out validation part, the whole dataset) of the config's subset of
    ``dataset`` (default: the block's; a row of another dataset, e.g. CIFAR-100 beside CIFAR-10, loads its own with
    the same subset sizes; the archive and image size are the block's dataset's only). With ``crop_size``
    (ImageNet-100: ``image_size`` 256, ``crop_size`` 224) the test and held-out images are centre-cropped to it
    (:func:`centre_crop_test`: the cache's short-side-256 centre square cropped to 224 is ``Resize(256)`` +
    ``CenterCrop(224)``); the training images keep 256 for the training loader's ``RandomResizedCrop(224)``."""
    from rewire import data as rdata

    dataset = dataset or config.dataset
    own = dataset == config.dataset
    full = rdata.load(
        dataset,
        root=data_root,
        archive=(config.data_archive or None) if own else None,
        image_size=(config.image_size or None) if own else None,
    )
    subset = full.class_balanced_subset(config.train_per_class or None, config.test_per_class or None, seed=0)
    data, validation = subset.train_validation_split(config.validation_fraction, seed=0)
    if config.crop_size and own:  # Resize(image_size) + CenterCrop(crop_size) for the test and held-out images
        data, validation = centre_crop_test(data, config.crop_size), centre_crop_test(validation, config.crop_size)
    return data, validation, full


def subset_settings(config: Config, dataset: str | None = None) -> dict[str, Any]:
    """The data subset as every run's settings name it (``image_size`` only when resized, ``crop_size`` only when
    cropped: the CIFAR runs keep their identities); ``dataset``: a row's own dataset (default: the block's)."""
    own = dataset in (None, config.dataset)
    return {
        "dataset": config.dataset if own else dataset,
        "train_per_class": config.train_per_class,
        "test_per_class": config.test_per_class,
        "validation_fraction": config.validation_fraction,
        **({"image_size": config.image_size} if config.image_size and own else {}),
        **({"crop_size": config.crop_size} if config.crop_size and own else {}),
    }


def _with_mask_sources(config: Config, specs: list[RunSpec], chosen: list[RunSpec]) -> list[RunSpec]:
    """``chosen`` plus the runs whose found masks they hold (``--only finetune`` trains or finds ``ours_p01`` first)."""
    needed = {(spec.row, spec.seed) for spec in chosen}
    for spec in reversed(specs):
        if (spec.row, spec.seed) in needed and config.row(spec.row).mask_from:
            needed.add((config.row(spec.row).mask_from, spec.seed))
    return [spec for spec in specs if (spec.row, spec.seed) in needed]


def run(
    config: Config, *, context: RunContextSpec, only=None, distributed=None, run_context: RunContext | None = None
) -> Outcome:
    """Train (or find by hash) the planned runs of ``config`` (``only``: those rows, and their mask sources).

    Unknown rows stop before the data is loaded. Rows of another dataset than the block's (``dataset:
    cifar100``) train on that dataset's data, loaded once when its first row runs. ``distributed``
    (``init_from_env()`` under torchrun) trains every run data-parallel. ``run_context`` (tests): a ready
    :class:`RunContext` of the block's dataset instead of loading the data. The :class:`Outcome` holds a
    :class:`FinishedRun` per run; ``extra`` the block's data split and device the report's cross-checks attack."""
    started = time.perf_counter()
    specs = plan(config)
    specs = _with_mask_sources(config, specs, select_rows(specs, only))
    other = sorted({config.row(spec.row).dataset for spec in specs} - {config.dataset})
    if run_context is not None and other:
        raise ValueError(f"run_context holds {config.dataset} only; rows of {', '.join(other)} need their data loaded")
    source: dict[str, Any] = {}
    contexts: dict[str, RunContext] = {}

    def context_of(dataset: str) -> RunContext:
        nonlocal source
        if dataset not in contexts:
            data, validation, full = load_data(config, context.data_root, dataset)
            source = source or (full.source if dataset == config.dataset else {})
            device = distributed.device if distributed is not None else context.resolved_device()
            contexts[dataset] = RunContext(
                data, device, config.batch_size, context.checkpoints(EXPERIMENT), eval_batch_size=EVAL_BATCH_SIZE,
                progress=context.progress, reuse_checkpoints=context.reuse_checkpoints, code=(RUNS_MODULE,),
                validation=validation, distributed=distributed,
            )  # fmt: skip
        return contexts[dataset]

    if run_context is not None:
        contexts[config.dataset] = run_context
    finished: dict[tuple[str, int], FinishedRun] = {}
    for spec in specs:
        row = config.row(spec.row)
        found = finished[(row.mask_from, spec.seed)].result if row.mask_from else None
        subset = subset_settings(config, row.dataset)
        result = run_one(context_of(row.dataset), row, spec.seed, name=spec.name, subset=subset, found=found)
        finished[(spec.row, spec.seed)] = FinishedRun(spec, row, result)
    main = contexts.get(config.dataset) or next(iter(contexts.values()))
    return Outcome(
        list(finished.values()),
        data_source=source or dict(getattr(main.data, "source", {})),
        extra={"data": main.data, "device": main.device, "run_seconds": time.perf_counter() - started},
    )
