"""Robust binary subnetworks (Liu et al., NeurIPS 2022) on the run engine: one run = one network, one way of training.

A run is a :class:`RobustSetup`: the network (:mod:`rewire.models.resnet_robust`, widths shrinkable for a CPU),
how it is made sparse or binary (``method``), and how it is trained (``training``):

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
``retrain``         the same mask, the weights re-initialised and trained
==================  ==========================================================================================

``training``: ``pgd`` (Algorithm 1: PGD-10 at ε = 8/255, step 2/255, random start, trained on the final
iterate), ``trades`` (TRADES, β = ``trades_beta``: clean cross-entropy plus β·KL to the adversarial prediction,
:func:`rewire.attacks.trades.trades_loss`), ``fast`` (Algorithm 2: FGSM with random start, step ``fast_step``,
from ATTA's per-sample perturbation cache, the augmentation moved into the attacker,
:class:`rewire.attacks.fast.ATTACache`), or ``clean`` (the paper's "vanilla training", Table 8). The attack runs
with batch norm in eval mode by default (``attack_bn_mode``); ``"train"`` is the authors' choice, which also
updates the running statistics.

The recipe is the authors' pruning recipe (SGD momentum 0.9, cosine per epoch) unless a row sets its own
(:data:`RECIPE_FIELDS`: the paper scale's FP AT and BinaryConnect rows use the authors' recipes for them).

Model selection as the authors: a seeded validation split of the training set, robust (PGD-10) validation
accuracy after every ``eval_every`` epochs; the best epoch's state is kept and evaluated on the test set at the
end beside the final epoch's (``best_*`` and ``test_*`` keys of the record).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from rewire.attacks.fast import ATTACache
from rewire.attacks.pgd import pgd_linf, robust_accuracy
from rewire.attacks.trades import trades_loss
from rewire.data.datasets import normalisation_for
from rewire.data.loader import BatchLoader
from rewire.experiments.engine import ModelSpec, RunContext, RunResult
from rewire.experiments.robust_binary.masks import layer_masks
from rewire.methods.edge_popup import apply_edge_popup, default_targets, hold_found_mask, kept_counts
from rewire.models.binary_connect import attach_latent_clip, binarize_
from rewire.reporting.claims import DEFAULT_MARGIN
from rewire.sparse.masks import resolve_tensor
from rewire.train.trainer import Callback, TrainingHparams

__all__ = [
    "DRIVER_MODULE",
    "METHODS",
    "TRAININGS",
    "FOUND_MASK_METHODS",
    "TRADES_BETA",
    "RECIPE_FIELDS",
    "IDENTITY_DEFAULTS",
    "FAST_MARGIN",
    "RobustSetup",
    "IndexedBatchLoader",
    "PGDTraining",
    "TRADESTraining",
    "FastATTATraining",
    "RobustSelection",
    "build_model",
    "weight_count",
    "hparams",
    "run_robust",
    "row_setup",
    "check_plan",
    "row_seeds",
    "paper_cells",
    "evaluation_subset",
    "CLAIMS",
    "robust_claims",
]

DRIVER_MODULE = "rewire.experiments.robust_binary.driver"
METHODS = ("edge_popup", "dense", "binary_connect", "finetune", "retrain")
TRAININGS = ("pgd", "trades", "fast", "clean")
FOUND_MASK_METHODS = {"finetune": "found", "retrain": "reinit"}  # method -> hold_found_mask's weights
# The authors' CIFAR-10 recipe (configs/advprune/cifar10/resnet34/resnet34-binary-weights.yaml): SGD lr 0.1,
# momentum 0.9, weight decay 5e-4 (on the scores), cosine per epoch, batch 256; FGSM's step 4/255 in the fast
# configuration (Algorithm 2), PGD-10 at 2/255 (Section 4.1); TRADES β = 6 (Table 9's TRADES rows)
PAPER_LR, PAPER_WEIGHT_DECAY, PAPER_BATCH = 0.1, 5e-4, 256
FAST_STEP = 4 / 255
TRADES_BETA = 6.0
# RobustSetup fields that only shape the training recipe (TrainingHparams, checked there) or the batch size
IDENTITY_DEFAULTS = {"fast_step": FAST_STEP}
RECIPE_FIELDS = ("optimizer", "momentum", "schedule", "milestones", "warmup_epochs", "label_smoothing", "batch_size")


@dataclass(frozen=True)
class RobustSetup:
    """One run's network and training (module docstring); every field enters the run's settings hash."""

    model: str = "cresnet34"
    widths: tuple[int, ...] = (64, 128, 256, 512)
    method: str = "edge_popup"
    keep: float = 0.01  # fraction of the weights kept (edge_popup); the paper's 99 % pruning
    p: float = 0.1  # exponent of the adaptive allocation (1 = a fixed rate per layer, 0 = a fixed count)
    weight_init: str = "binary"  # binary | signed_kaiming_constant
    score_init: str = "uniform"
    last_bn: bool = True
    training: str = "pgd"
    trades_beta: float = TRADES_BETA
    mask_from: str = ""  # finetune/retrain: the edge-popup row whose found mask (same seed) is held
    eps: float = 8 / 255
    step_size: float = 2 / 255
    steps: int = 10
    attack_bn_mode: str = "eval"
    epochs: int = 400
    lr: float = PAPER_LR
    weight_decay: float = PAPER_WEIGHT_DECAY
    precision: str = "fp32"
    eval_every: int = 1
    validation_images: int = 1000  # robust validation per evaluation (the authors: 1,000 held-out images)
    test_images: int = 10000  # PGD-10 on this many test images at the end
    # The recipe's other knobs (RECIPE_FIELDS): they enter the run's identity through its recipe (hparams), and
    # the batch size through the run's config, so they are not repeated in as_dict
    optimizer: str = "sgd"
    momentum: float = 0.9
    schedule: str = "cosine"
    milestones: tuple[float, ...] = ()
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    batch_size: int = 0  # 0: the scale's batch size
    # Added after the first runs were recorded: part of a run's identity only when it differs from its default
    # (IDENTITY_DEFAULTS), so the runs recorded before keep their directories. Never change these defaults.
    fast_step: float = FAST_STEP  # FGSM's step in fast training (ImageNet-100: 1/255)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; known: {', '.join(METHODS)}")
        if self.training not in TRAININGS:
            raise ValueError(f"unknown training {self.training!r}; known: {', '.join(TRAININGS)}")
        if not 0 < self.keep <= 1:
            raise ValueError(f"keep is the fraction of weights kept, in (0, 1]; got {self.keep!r}")
        if self.p < 0:
            raise ValueError(f"the allocation exponent p must be >= 0, got {self.p!r}")
        for name in ("eps", "step_size", "fast_step"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(
                    f"{name}={value!r} is not a pixel fraction in [0, 1]: give budgets in /255 units, e.g. 8/255"
                )
        if self.attack_bn_mode not in ("eval", "train"):
            raise ValueError(f"attack_bn_mode must be 'eval' or 'train', got {self.attack_bn_mode!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 0:
            raise ValueError(f"batch_size must be a positive int, or 0 for the scale's, got {self.batch_size!r}")
        if self.trades_beta < 0:
            raise ValueError(f"trades_beta must be >= 0, got {self.trades_beta!r}")
        if (self.method in FOUND_MASK_METHODS) != bool(self.mask_from):
            raise ValueError(
                f"method {self.method!r}: mask_from names the edge-popup row whose found mask finetune/retrain hold, "
                f"and only those methods take it (got mask_from={self.mask_from!r})"
            )

    def as_dict(self) -> dict[str, Any]:
        """The setup's fields for the run's config, without :data:`RECIPE_FIELDS` (recorded in the recipe)."""
        return {
            k: (list(v) if isinstance(v, tuple) else v)
            for k, v in dataclasses.asdict(self).items()
            if k not in RECIPE_FIELDS and not (k in IDENTITY_DEFAULTS and v == IDENTITY_DEFAULTS[k])
        }

    def spec(self, num_classes: int, dataset: str = "cifar10") -> ModelSpec:
        """The network; the FP and BNN baselines train affine BN (the authors' configs), the pruned networks and
        the lottery-style rows (the found network's architecture) non-affine BN. Input normalisation inside the
        model: the authors' CIFAR-10 constants (the model's default), another dataset's own statistics."""
        affine = self.method in ("dense", "binary_connect")
        kwargs: dict[str, Any] = {"widths": list(self.widths), "last_bn": self.last_bn, "affine_bn": affine}
        if dataset != "cifar10":
            mean, std = normalisation_for(dataset)
            kwargs.update(mean=list(mean), std=list(std))
        return ModelSpec(self.model, num_classes=num_classes, kwargs=kwargs)


def hparams(setup: RobustSetup) -> TrainingHparams:
    """The recipe, per epoch: by default the authors' pruning recipe (SGD momentum 0.9, cosine from ``lr``, weight
    decay on every trainable tensor); the baselines' own recipes set ``optimizer``, ``schedule``/``milestones`` and
    the rest (the paper scale's rows). The trainer's clean pass over the whole test set runs once, at the end (model
    selection reads the robust validation of :class:`RobustSelection`, every ``eval_every`` epochs)."""
    return TrainingHparams(
        precision=setup.precision,
        eval_every=setup.epochs,
        epochs=setup.epochs,
        optimizer=setup.optimizer,
        lr=setup.lr,
        momentum=setup.momentum,
        weight_decay=setup.weight_decay,
        schedule=setup.schedule,
        milestones=tuple(setup.milestones),
        schedule_step="epoch",
        warmup_epochs=setup.warmup_epochs,
        label_smoothing=setup.label_smoothing,
    )


def build_model(
    ctx: RunContext, setup: RobustSetup, seed: int, found: nn.Module | None = None
) -> tuple[nn.Module, ModelSpec, dict[str, Any]]:
    """The run's network with its method attached; returns (model, spec, what to record: kept counts).
    ``found``: for finetune/retrain, the trained edge-popup network of row ``setup.mask_from`` (same seed)."""
    if (setup.method in FOUND_MASK_METHODS) != (found is not None):
        raise ValueError(
            f"method {setup.method!r}: pass the trained network of row {setup.mask_from!r} as found= "
            "for finetune/retrain, and only for them"
        )
    spec = setup.spec(len(ctx.data.classes), getattr(ctx.data, "name", "cifar10"))
    model = ctx.build(spec, seed)
    info: dict[str, Any] = {}
    if found is not None:
        held = hold_found_mask(model, found, weights=FOUND_MASK_METHODS[setup.method])
        info = {"kept_total": sum(int(p.mask.sum()) for p in held.values())}
    elif setup.method == "edge_popup":
        apply_edge_popup(
            model, keep=setup.keep, p=setup.p, weight_init=setup.weight_init, score_init=setup.score_init, seed=seed
        )
        counts = kept_counts(model)
        info = {"kept_total": sum(counts.values()), "kept_per_layer": counts}
    elif setup.method == "binary_connect":
        binarize_(model)
    return model, spec, info


def weight_count(model: nn.Module) -> int:
    """The convolution and linear weights that count (Table 9's "equal parameter count"): the kept entries of
    a sparse tensor, every entry of a dense one (batch-norm statistics and scores not counted)."""
    kept = sum(int(mask.sum()) for mask in layer_masks(model).values())
    dense = (getattr(*resolve_tensor(model, target)).numel() for target in default_targets(model))
    return kept + sum(dense)


# ----------------------------------------------------------------------------------------- data with indices


class IndexedBatchLoader(BatchLoader):
    """A :class:`rewire.data.BatchLoader` for ATTA's per-sample cache: ``last_index`` (set by every BatchLoader)
    names the dataset indices of the batch it yielded last. Pixels stay in [0, 1] (normalisation is inside the
    model). It never augments (ATTA augments inside the attacker), so ``augment=True`` is refused."""

    def __init__(self, *args, **kwargs) -> None:
        if kwargs.get("augment"):
            raise ValueError(
                "IndexedBatchLoader yields un-augmented images (ATTA augments in the attacker): augment=False"
            )
        super().__init__(*args, **kwargs)


# ------------------------------------------------------------------------------------------------ callbacks


class _SeededAttack(Callback):
    """A training attack with its own seeded generator (its random starts), saved in the checkpoint."""

    def __init__(self, setup: RobustSetup, seed: int) -> None:
        self.setup = setup
        self.generator = torch.Generator().manual_seed(seed)

    def attack_options(self) -> dict[str, Any]:
        s = self.setup
        return {"eps": s.eps, "step_size": s.step_size, "steps": s.steps, "bn_mode": s.attack_bn_mode}

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


class PGDTraining(_SeededAttack):
    """Algorithm 1's inner maximisation: each training batch is replaced by its PGD adversarial examples."""

    def on_batch_start(self, trainer, inputs, targets):
        adversarial = pgd_linf(trainer.model, inputs, targets, generator=self.generator, **self.attack_options())
        return adversarial, targets


class TRADESTraining(_SeededAttack):
    """TRADES (Zhang et al. 2019) as the training loss: CE(f(x), y) + β·KL(f(x) ‖ f(x_adv)), x_adv the inner
    maximiser of the KL term (:func:`rewire.attacks.trades.trades_loss`)."""

    def training_loss(self, trainer, inputs, targets):
        loss, _ = trades_loss(
            trainer.model,
            inputs,
            targets,
            beta=self.setup.trades_beta,
            generator=self.generator,
            **self.attack_options(),
        )
        return loss


class FastATTATraining(Callback):
    """Algorithm 2: FGSM with random start from ATTA's cached perturbation, augmentation done by the attacker.

    The loader must be an :class:`IndexedBatchLoader` without augmentation; the cache is the training run's
    memory and part of its checkpoint (a resumed run continues with the perturbations it had)."""

    def __init__(self, setup: RobustSetup, loader: IndexedBatchLoader, seed: int) -> None:
        if loader.augment:
            raise ValueError("fast training augments inside the attacker: build the loader with augment=False")
        self.setup, self.loader = setup, loader
        images = loader.images
        self.cache = ATTACache(
            loader.num_examples,
            tuple(images.shape[1:]),
            eps=setup.eps,
            device=images.device,
            generator=torch.Generator().manual_seed(seed),
        )

    def on_batch_start(self, trainer, inputs, targets):
        adversarial, _, _ = self.cache.perturb(
            trainer.model,
            inputs,
            targets,
            self.loader.last_index,
            step_size=self.setup.fast_step,
            bn_mode=self.setup.attack_bn_mode,
        )
        return adversarial, targets

    def state_dict(self) -> dict[str, Any]:
        return {"cache": self.cache.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.cache.load_state_dict(state["cache"])


class RobustSelection(Callback):
    """Robust validation accuracy (PGD-10) after evaluated epochs; the best epoch's state is kept, and at the end
    both the final and the best state are evaluated on ``test_images`` test images (clean and PGD-10)."""

    def __init__(self, setup: RobustSetup, validation, test) -> None:
        self.setup, self.validation, self.test = setup, validation, test
        self.best_robust = -1.0
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None

    def _attack(self) -> dict[str, Any]:
        s = self.setup
        return {"eps": s.eps, "step_size": s.step_size, "steps": s.steps, "bn_mode": "eval"}

    def on_epoch_end(self, trainer, record: dict[str, Any]) -> None:
        epoch = record["epoch"]
        last = epoch == trainer.hparams.epochs
        model = trainer.model
        if self.validation is not None and (epoch % self.setup.eval_every == 0 or last):
            accuracy = robust_accuracy(model, self.validation, n=self.setup.validation_images, **self._attack())
            record["val_clean_top1"] = 100 * accuracy.clean
            record["val_pgd_top1"] = 100 * accuracy.robust
            if accuracy.robust > self.best_robust:
                self.best_robust, self.best_epoch = accuracy.robust, epoch
                self.best_state = copy.deepcopy(model.state_dict())
        if last:
            final = robust_accuracy(model, self.test, n=self.setup.test_images, **self._attack())
            record.update({"test_clean_top1": 100 * final.clean, "test_pgd_top1": 100 * final.robust})
            record["test_images_attacked"] = final.n
            if self.best_state is not None and self.best_epoch == epoch:  # the final state is the best one
                best = final
            elif self.best_state is not None:
                current = copy.deepcopy(model.state_dict())
                model.load_state_dict(self.best_state)
                best = robust_accuracy(model, self.test, n=self.setup.test_images, **self._attack())
                model.load_state_dict(current)
            if self.best_state is not None:
                record.update(
                    {
                        "best_epoch": self.best_epoch,
                        "best_test_clean_top1": 100 * best.clean,
                        "best_test_pgd_top1": 100 * best.robust,
                    }
                )

    def state_dict(self) -> dict[str, Any]:
        return {"best_robust": self.best_robust, "best_epoch": self.best_epoch, "best_state": self.best_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_robust, self.best_epoch = state["best_robust"], state["best_epoch"]
        self.best_state = state["best_state"]


class _LatentClip(Callback):
    """BinaryConnect: latent weights back into [-1, 1] after every optimizer step."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.attached = False

    def on_fit_start(self, trainer) -> None:
        if not self.attached:
            attach_latent_clip(trainer.optimizer, self.model)
            self.attached = True


# ------------------------------------------------------------------------------------------------------ runs


EVALUATION_SEED = 0  # one fixed draw of the attacked images for every run, seed and row (our choice)


def evaluation_subset(size: int, n: int) -> torch.Tensor:
    """The indices of the ``n`` images (all if fewer) that robust evaluation attacks: a fixed, seeded random subset."""
    order = torch.randperm(size, generator=torch.Generator().manual_seed(EVALUATION_SEED))
    return order[: min(n, size)].sort().values


def _pixel_loader(data, images, labels, batch_size, *, shuffle, augment, device, seeds=None, indexed=False):
    cls = IndexedBatchLoader if indexed else BatchLoader
    extra = {}
    if seeds is not None:
        extra = {"order_seed": seeds.data_order, "augmentation_seed": seeds.augmentation, "drop_last": True}
    return cls(
        images,
        labels,
        batch_size,
        shuffle=shuffle,
        augment=augment,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        device=device,
        **extra,
    )


def run_robust(
    ctx: RunContext,
    setup: RobustSetup,
    seed: int,
    *,
    name: str,
    subset: dict[str, Any],
    found: RunResult | None = None,
) -> RunResult:
    """Train (or find by its hash) one run of ``setup`` with run seed ``seed``; returns the engine's result.

    ``ctx.data`` is the training part and test set, ``ctx.validation`` the held-out part (its test split);
    the loaders here yield pixels in [0, 1]. ``found``: for finetune/retrain, the run of row ``setup.mask_from``
    with the same seed (its directory enters this run's identity)."""
    from rewire.experiments.engine import fit_run
    from rewire.train.runtime import Seeds

    model, spec, info = build_model(ctx, setup, seed, None if found is None else found.model)
    seeds = Seeds.from_run_seed(seed)
    fast = setup.training == "fast"
    train = _pixel_loader(
        ctx.data,
        ctx.data.train_images,
        ctx.data.train_labels,
        setup.batch_size or ctx.batch_size,
        shuffle=True,
        augment=not fast,
        device=ctx.device,
        seeds=seeds,
        indexed=fast,
    )
    test = _pixel_loader(
        ctx.data, ctx.data.test_images, ctx.data.test_labels, ctx.eval_batch_size, shuffle=False, augment=False,
        device=ctx.device,
    )  # fmt: skip
    # The attacked images: a fixed random subset (the splits are ordered by class, so "the first n" would be a
    # few classes only), the same for every run
    index = evaluation_subset(len(ctx.data.test_labels), setup.test_images)
    attacked_test = _pixel_loader(
        ctx.data, ctx.data.test_images[index], ctx.data.test_labels[index], ctx.eval_batch_size, shuffle=False,
        augment=False, device=ctx.device,
    )  # fmt: skip
    validation = None
    if ctx.validation is not None:
        index = evaluation_subset(len(ctx.validation.test_labels), setup.validation_images)
        validation = _pixel_loader(
            ctx.validation, ctx.validation.test_images[index], ctx.validation.test_labels[index], ctx.eval_batch_size,
            shuffle=False, augment=False, device=ctx.device,
        )  # fmt: skip
    callbacks: list[Callback] = []
    if setup.training == "pgd":
        callbacks.append(PGDTraining(setup, seed))
    elif setup.training == "trades":
        callbacks.append(TRADESTraining(setup, seed))
    elif fast:
        callbacks.append(FastATTATraining(setup, train, seed))
    if setup.method == "binary_connect":
        callbacks.append(_LatentClip(model))
    callbacks.append(RobustSelection(setup, validation, attacked_test))
    recipe = hparams(setup)
    config = {
        "experiment": "robust_binary",
        "setup": setup.as_dict(),
        "model": spec.as_dict(),
        "seed": seed,
        "batch_size": setup.batch_size or ctx.batch_size,
        "data": {
            "name": getattr(ctx.data, "name", None),
            "source": ctx.data.source.get("kind", "unknown"),
            "train_examples": len(ctx.data.train_labels),
            "test_examples": len(ctx.data.test_labels),
        },
        **subset,
    }
    if found is not None:
        config["mask_from_run"] = found.run_dir.name
    return fit_run(
        name,
        config,
        model,
        recipe,
        train,
        test,
        root=ctx.checkpoint_root,
        callbacks=callbacks,
        model_spec=spec,
        code=(DRIVER_MODULE,),
        reuse_checkpoints=ctx.reuse_checkpoints,
        progress=ctx.progress,
        description=name,
        run_info={"seed": seed, **{k: v for k, v in info.items() if k == "kept_total"}},
    )


# --------------------------------------------------------------------------------------------- rows and claims


def row_setup(row: dict[str, Any], base: dict[str, Any]) -> tuple[str, RobustSetup]:
    """``(name, setup)`` of one row of the notebook's ``rows`` list: its ``name`` and the fields of
    :class:`RobustSetup` it overrides over ``base`` (the scale's common values); a row's own ``seeds`` are read
    by :func:`row_seeds`. Unknown fields stop here."""
    row = dict(row)
    row.pop("seeds", None)
    name = row.pop("name", None)
    if not name or not isinstance(name, str):
        raise ValueError(f"every row needs a 'name', got {row!r}")
    fields = {f.name for f in dataclasses.fields(RobustSetup)}
    unknown = sorted(set(row) - fields)
    if unknown:
        raise ValueError(f"row {name!r}: unknown fields {unknown}; known: {', '.join(sorted(fields))}")
    values = {**base, **row}
    for key in ("widths", "milestones"):
        if key in values:
            values[key] = tuple(values[key])
    setup = RobustSetup(**values)
    try:
        hparams(setup)  # the recipe's own checks (optimizer, schedule, ...), before any work
    except ValueError as error:
        raise ValueError(f"row {name!r}: {error}") from None
    return name, setup


def row_seeds(row: dict[str, Any], seeds: list[int]) -> list[int]:
    """The seeds a row runs: its own ``seeds`` (e.g. one seed for a costly row outside the claims), else the
    scale's. A row's seeds must be among the scale's, so that every run pairs with the other rows' runs."""
    own = row.get("seeds")
    if own is None:
        return list(seeds)
    if not isinstance(own, list) or not own or not set(own) <= set(seeds):
        raise ValueError(f"row {row.get('name')!r}: seeds {own!r} must be a non-empty list among the scale's {seeds}")
    return list(own)


def paper_cells(
    setup: RobustSetup, dataset: str = "cifar10", full_widths: tuple[int, ...] = (64, 128, 256, 512)
) -> dict[str, Any]:
    """The paper's numbers for the row nearest to ``setup`` (:mod:`rewire.experiments.robust_binary.paper`): robust
    accuracy from Table 9 and clean accuracy from Table 10 (adversarial training) or Table 8 / Table 11 (vanilla,
    ε = 0), with the paper's row named in ``paper_row``. The paper trains RN34 at 99 % pruning with its own
    recipe: these are the reference, not the same setting at a reduced scale. No matching row: NaN.

    A dense or BinaryConnect row narrower than the scale's ``full_widths`` is the paper's "small" network at an
    equal parameter budget: Table 7's small RN34 for its p when the widths are Table 7's, else Small RN34-p0.1
    (the budget of the main row, p = 0.1)."""
    from rewire.experiments.robust_binary import paper
    from rewire.models.resnet_robust import SMALL_RN34_WIDTHS

    column = {"cifar10": "CIFAR10", "cifar100": "CIFAR100", "imagenet100": "ImageNet100"}.get(dataset)
    nan = float("nan")
    cells: dict[str, Any] = {"paper_row": "", "paper_robust_top1": nan, "paper_clean_top1": nan}
    if column is None:
        return cells
    binary = setup.method in ("edge_popup", "binary_connect")
    small = {tuple(w): p for p, w in SMALL_RN34_WIDTHS.items()}.get(tuple(setup.widths))
    if small is None and setup.method in ("dense", "binary_connect") and tuple(setup.widths) != tuple(full_widths):
        small = 0.1
    architecture = f"Small RN34-p{small:.1f}" if small is not None else ("RN34-LBN" if setup.last_bn else "RN34")
    if setup.training == "clean":
        if setup.method == "edge_popup" and setup.last_bn is not None and dataset == "cifar10":
            init = "signed_kc" if setup.weight_init == "signed_kaiming_constant" else "binary"
            try:
                cell = paper.table8(setup.p, init, setup.last_bn)
            except ValueError:
                return cells
            lbn = "LBN" if setup.last_bn else "no LBN"
            return {
                **cells,
                "paper_row": f"Table 8: p = {setup.p:g}, {init}, {lbn}",
                "paper_clean_top1": cell.clean_top1,
            }
        method, table = "AT", paper.table11_rows
    elif setup.method == "edge_popup":
        if not setup.last_bn or setup.weight_init != "binary" or setup.p not in (0.1, 1.0):
            return cells
        method, table = ("Ours (fast)" if setup.training == "fast" else "Ours"), None
        architecture = "RN34-LBN"
    elif setup.method in ("dense", "binary_connect"):
        method, table = ("TRADES" if setup.training == "trades" else "AT"), None
    else:
        return cells
    strategy_p = setup.p if method.startswith("Ours") else None
    if table is paper.table11_rows:
        architecture = "Small RN34" if small is not None else architecture
        rows = [r for r in table(column) if r.method == method and r.architecture == architecture]
        if rows:
            value = rows[0].binary_clean_top1 if binary else rows[0].fp_clean_top1
            return {**cells, "paper_row": f"Table 11: {method}, {architecture}", "paper_clean_top1": value}
        return cells
    try:
        table9 = paper.table9_rows(column)
    except ValueError:  # Table 9 has CIFAR-10 and CIFAR-100 only; ImageNet-100 rows have Table 10's clean cell
        table9 = ()
    rows9 = [
        r for r in table9 if r.method == method and r.architecture == architecture
        and (strategy_p is None or (r.p is not None and abs(r.p - strategy_p) < 1e-9))
    ]  # fmt: skip
    robust = (rows9[0].binary_robust_top1 if binary else rows9[0].fp_robust_top1) if rows9 else None
    clean_architecture = "Small RN34" if small == 0.1 else architecture
    rows10 = [
        r for r in paper.table10_rows(column) if r.method == method and r.architecture == clean_architecture
        and (strategy_p is None or (r.p is not None and abs(r.p - strategy_p) < 1e-9))
    ]  # fmt: skip
    if not rows9 and not rows10:
        return cells
    clean = (rows10[0].binary_clean_top1 if binary else rows10[0].fp_clean_top1) if rows10 else nan
    kind = "binary" if binary else "FP"
    label = f"Table 9/10: {method}, {architecture}{f', p = {strategy_p:g}' if strategy_p is not None else ''}, {kind}"
    return {
        **cells,
        "paper_row": label,
        "paper_robust_top1": nan if robust is None else robust,
        "paper_clean_top1": nan if clean is None else clean,
    }


def check_plan(plan: list[tuple[str, RobustSetup]]) -> None:
    """Row names are unique, and every finetune/retrain row's ``mask_from`` names an earlier edge-popup row of
    the plan (its runs must exist first); stops before any work."""
    seen: dict[str, RobustSetup] = {}
    for name, setup in plan:
        if name in seen:
            raise ValueError(f"two rows are named {name!r}: row names must be unique")
        if setup.mask_from:
            source = seen.get(setup.mask_from)
            if source is None or source.method != "edge_popup":
                earlier = [n for n, s in seen.items() if s.method == "edge_popup"]
                raise ValueError(
                    f"row {name!r}: mask_from={setup.mask_from!r} must name an earlier edge_popup row; "
                    f"earlier edge_popup rows: {', '.join(earlier) or 'none'}"
                )
            if source.model != setup.model or source.widths != setup.widths:
                raise ValueError(f"row {name!r}: the found mask's network ({source.model}, {source.widths}) differs")
        seen[name] = setup


# The paper's claims this repository decides, as (a, b, metric, kind, margin, words, source) over row names; a
# claim whose rows are not in the scale's plan is left out. Fast training is the main row at cpu scale (ours_p01
# vs ours_pgd) and a row of its own at paper scale (ours_fast vs ours_p01, trained with PGD).
FAST_MARGIN = 5.0  # "a small accuracy loss": the paper's own gap, 45.06 (PGD) vs 40.77 (fast) AutoAttack, Table 9
CLAIMS = (
    (
        "ours_p01",
        "ours_p1",
        "test_pgd_top1",
        "greater",
        DEFAULT_MARGIN,
        "adaptive pruning (p = 0.1) beats a fixed rate (p = 1) at a high pruning rate (robust accuracy)",
        "Section 3.2, Table 9",
    ),
    (
        "ours_p01",
        "ours_nolbn",
        "test_pgd_top1",
        "greater",
        DEFAULT_MARGIN,
        "the last batch norm helps the binary network (robust accuracy)",
        "Section 3.3, Table 8",
    ),
    (
        "ours_p01",
        "ours_skc",
        "test_pgd_top1",
        "equivalent",
        DEFAULT_MARGIN,
        "binary initialisation matches the signed Kaiming constant (robust accuracy)",
        "Section 3.1, Table 8",
    ),
    (
        "ours_p01",
        "binary_connect_small",
        "test_pgd_top1",
        "greater",
        DEFAULT_MARGIN,
        "ours beats BinaryConnect adversarial training at an equal parameter count (robust accuracy)",
        "Table 9",
    ),
    (
        "ours_p01",
        "ours_pgd",
        "test_pgd_top1",
        "at_least",
        FAST_MARGIN,
        "fast training (FGSM + ATTA) loses little robust accuracy against PGD training",
        "Section 4, Algorithm 2, Table 9",
    ),
    (
        "ours_p1_keep05",
        "ours_p01_keep05",
        "test_pgd_top1",
        "greater",
        DEFAULT_MARGIN,
        "at a low pruning rate (r = 0.5) the fixed rate p = 1 beats p = 0.1 (robust accuracy)",
        "Appendix D.2.6, Figure 4 (main paper Table 1)",
    ),
    (
        "ours_fast",
        "ours_p01",
        "test_pgd_top1",
        "at_least",
        FAST_MARGIN,
        "fast training (FGSM + ATTA) loses little robust accuracy against PGD training",
        "Section 4, Algorithm 2, Table 9",
    ),
)


def robust_claims(per_run) -> list:
    """The claims of :data:`CLAIMS` whose two rows ran on at least two common seeds (:mod:`rewire.reporting.claims`)."""
    from rewire.reporting.claims import Claim

    found = []
    for a, b, metric, kind, margin, words, source in CLAIMS:
        sides = []
        for key in (a, b):
            rows = per_run[per_run.row == key]
            sides.append(dict(zip(rows.seed.astype(int), rows[metric].astype(float))))
        if len(set(sides[0]) & set(sides[1])) >= 2:
            found.append(
                Claim("Robust binary", words, a, sides[0], b, sides[1], kind=kind, margin=margin, source=source)
            )
    return found
