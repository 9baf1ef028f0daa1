"""DNW Table 3 (Wortsman et al., NeurIPS 2019, Section 3.2): MobileNetV1-DNW, -RG and MobileNetV1 on ImageNet.

Three parts:

* :data:`TABLE3_ROWS`: every row of Table 3 with the paper's Params, FLOPs (multiply-adds) and top-1, as a
  :class:`Table3Row`. The rows this repository can train (MobileNetV1 x0.25 and x0.5, MobileNetV1-RG,
  MobileNetV1-DNW and -DNW-Small) have ``quoted=False``; the other architectures (MobileNetV2, ShuffleNet,
  DenseNet, Xception, MnasNet) are quoted from the paper only (``quoted=True``). Row ``rg_x51`` is the
  paper's "MobileNetV1-RG (x0.49)" as the authors' code trains it: their config
  (github.com/allenai/dnw, ``apps/large_scale/random_graph_x49.yml``) sets ``prune_rate: 0.49``, i.e. keeps
  d = 1 - 0.49 = 0.51; ``rg_x49`` is the width the table names.
* :func:`table3_counts`: Params and FLOPs at 224 px from :mod:`rewire.sparse.graph_profile` for the rows that
  need no training (dense MobileNetV1 x d in closed form; RG, whose fixed random edges leave nearly every
  node live), beside the paper's columns. A DNW row's count depends on which nodes die during training:
  :func:`profile_trained` counts a trained model.
* :func:`train_table3_row`: one row trained on an ImageNet-style folder (:mod:`rewire.data.imagefolder`)
  through the run engine (:func:`rewire.experiments.engine.fit_run`: hashed, resumable, skipped when done),
  with :data:`TABLE3_HPARAMS` (Section 3.2: 250 epochs, cosine annealing from lr 0.1; the rest from the
  authors' ImageNet configs, ``apps/large_scale/*.yml``). The CLI::

      python -m rewire.experiments.mobilenet_imagenet --data /path/to/imagenet --row dnw_x225
      python -m rewire.experiments.mobilenet_imagenet --counts        # the counter's table, no data needed

MobileNetV1-DNW is built with stem stride 2 (224-px input, DNW Appendix Table 4 caption) and one edge budget
per stage (:func:`rewire.models.mobilenet_dnw.edge_budgets`, Section 2.4); the DNW-Small classifier gets its
own budget (d * 1024 * classes edges).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from rewire.data.imagefolder import (
    DNW_IMAGENET_CROP,
    DNW_IMAGENET_RESIZE,
    ImageFolderIndex,
    ImageFolderLayoutError,
    ImageFolderLoader,
    scan_image_folder,
)
from rewire.experiments.engine import ModelSpec, RunResult, fit_run
from rewire.methods.dnw import apply_method
from rewire.models.mobilenet_dnw import MobileNetV1, MobileNetV1DNW, edge_budgets, mobilenet_v1, mobilenet_v1_dnw
from rewire.sparse.graph_profile import DenseCost, GraphProfile, mobilenet_v1_cost, profile_graph
from rewire.train.distributed import DistContext, check_global_batch_size, init_from_env, shutdown
from rewire.train.runtime import Seeds, pick_device, seed_model_init
from rewire.train.trainer import TrainingHparams

__all__ = [
    "DRIVER_MODULE",
    "Table3Row",
    "TABLE3_ROWS",
    "TABLE3_BATCH_SIZE",
    "TABLE3_HPARAMS",
    "TABLE3_IMAGE_SIZE",
    "TABLE3_STEM_STRIDE",
    "Table3Count",
    "Table3Result",
    "row_by_key",
    "trainable_rows",
    "table3_hparams",
    "model_spec",
    "build_row_model",
    "check_row",
    "table3_counts",
    "profile_trained",
    "train_table3_row",
    "subset_index",
    "main",
]

# This module's import name for the run engine's code hash (``__name__`` is "__main__" under ``python -m``).
DRIVER_MODULE = "rewire.experiments.mobilenet_imagenet"
KINDS = ("dense", "rg", "dnw", "other")
# Table 3 counts FLOPs for 224 x 224 input (the authors' profiler hard-codes 224; DNW Section 3.2, ImageNet)
TABLE3_IMAGE_SIZE = 224
# DNW Appendix Table 4 caption: the first convolution has stride 2 on ImageNet (stride 1 only on CIFAR-10)
TABLE3_STEM_STRIDE = 2
# the authors' ImageNet configs (github.com/allenai/dnw, apps/large_scale/*.yml): batch 512 on 4 GPUs
TABLE3_BATCH_SIZE = 512
IMAGENET_CLASSES = 1000


# ----------------------------------------------------------------------------------------------- the rows


@dataclass(frozen=True)
class Table3Row:
    """One row of DNW Table 3.

    ``kind``: ``dense`` (MobileNetV1 x d), ``rg`` (MobileNetV1-RG: MobileNetV1-DNW's graphs with fixed random
    edges), ``dnw`` (MobileNetV1-DNW), ``other`` (another architecture, quoted). ``width`` is the d this
    repository trains (``None`` for quoted architectures); ``small`` marks DNW-Small (sparse classifier).
    ``paper_params`` / ``paper_flops`` are in millions (``None``: "—" in the table), ``paper_top1`` in %.
    ``quoted``: the numbers are only quoted, the repository cannot train the row.
    """

    key: str
    name: str
    kind: str
    width: float | None
    small: bool
    paper_params: float | None
    paper_flops: float
    paper_top1: float
    quoted: bool
    note: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"row {self.key}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not self.quoted and self.width is None:
            raise ValueError(f"row {self.key}: a trainable row needs its width d")
        if self.small and self.kind != "dnw":
            raise ValueError(f"row {self.key}: only MobileNetV1-DNW has a Small variant")

    @property
    def method(self) -> str:
        """The :func:`rewire.methods.dnw.apply_method` method of the row (``dense`` for MobileNetV1 x d)."""
        return {"dense": "dense", "rg": "rg", "dnw": "dnw"}[self.kind]


_X49_NOTE = (
    "the paper's 'MobileNetV1-RG (x0.49)'; the authors' config (github.com/allenai/dnw, "
    "apps/large_scale/random_graph_x49.yml) sets prune_rate 0.49, i.e. d = 0.51"
)

# DNW Table 3, in the paper's order (Params and FLOPs in millions, top-1 in %). Rows marked * / ** / *** in the
# paper use the implementations (and, for several asterisks, other image resolutions) of ShuffleNetV2 [19].
TABLE3_ROWS: tuple[Table3Row, ...] = (
    Table3Row("mobilenet_x25", "MobileNetV1 (x0.25) [10]", "dense", 0.25, False, 0.5, 41, 50.6, False),
    Table3Row("mobilenetv2_x15", "MobileNetV2 (x0.15)* [22]", "other", None, False, None, 39, 44.9, True),
    Table3Row("mobilenetv2_x4", "MobileNetV2 (x0.4)**", "other", None, False, None, 43, 56.6, True),
    Table3Row("densenet_x5", "DenseNet (x0.5)* [11]", "other", None, False, None, 42, 41.1, True),
    Table3Row("xception_x5", "Xception (x0.5)* [3]", "other", None, False, None, 40, 55.1, True),
    Table3Row("shufflenetv1_x5_g3", "ShuffleNetV1 (x0.5, g = 3) [29]", "other", None, False, None, 38, 56.8, True),
    Table3Row("shufflenetv2_x5", "ShuffleNetV2 (x0.5) [19]", "other", None, False, 1.4, 41, 60.3, True),
    Table3Row("rg_x225", "MobileNetV1-RG (x0.225)", "rg", 0.225, False, 1.2, 55.7, 53.3, False),
    Table3Row("dnw_small_x15", "MobileNetV1-DNW-Small (x0.15)", "dnw", 0.15, True, 0.24, 22.1, 50.3, False),
    Table3Row("dnw_small_x225", "MobileNetV1-DNW-Small (x0.225)", "dnw", 0.225, True, 0.4, 41.2, 59.9, False),
    Table3Row("dnw_x225", "MobileNetV1-DNW (x0.225)", "dnw", 0.225, False, 1.1, 42.1, 60.9, False),
    Table3Row("mnasnet_search1", "MnasNet-search1 [24]", "other", None, False, 1.9, 65, 64.9, True),
    Table3Row("dnw_x3", "MobileNetV1-DNW (x0.3)", "dnw", 0.3, False, 1.3, 66.7, 65.0, False),
    Table3Row("mobilenet_x5", "MobileNetV1 (x0.5)", "dense", 0.5, False, 1.3, 149, 63.7, False),
    Table3Row("mobilenetv2_x6", "MobileNetV2 (x0.6)*", "other", None, False, None, 141, 66.6, True),
    Table3Row("mobilenetv2_x75", "MobileNetV2 (x0.75)***", "other", None, False, None, 145, 67.9, True),
    Table3Row("densenet_x1", "DenseNet (x1)*", "other", None, False, None, 142, 54.8, True),
    Table3Row("xception_x1", "Xception (x1)*", "other", None, False, None, 145, 65.9, True),
    Table3Row("shufflenetv1_x1_g3", "ShuffleNetV1 (x1, g = 3)", "other", None, False, None, 140, 67.4, True),
    Table3Row("shufflenetv2_x1", "ShuffleNetV2 (x1)", "other", None, False, 2.3, 146, 69.4, True),
    Table3Row("rg_x49", "MobileNetV1-RG (x0.49)", "rg", 0.49, False, 1.8, 170, 64.1, False),
    Table3Row("rg_x51", "MobileNetV1-RG (x0.49), d = 0.51", "rg", 0.51, False, 1.8, 170, 64.1, False, _X49_NOTE),
    Table3Row("dnw_x49", "MobileNetV1-DNW (x0.49)", "dnw", 0.49, False, 1.8, 154, 70.4, False),
)
_BY_KEY = {row.key: row for row in TABLE3_ROWS}
assert len(_BY_KEY) == len(TABLE3_ROWS), "row keys must be unique"


def trainable_rows() -> list[str]:
    """Keys of the rows this repository trains (``quoted=False``), in the table's order."""
    return [row.key for row in TABLE3_ROWS if not row.quoted]


def row_by_key(key: str | Table3Row) -> Table3Row:
    """The row ``key`` (a :class:`Table3Row` is returned as is); an unknown key raises ``ValueError`` listing them."""
    if isinstance(key, Table3Row):
        return key
    if key not in _BY_KEY:
        raise ValueError(
            f"unknown Table 3 row {key!r}; trainable rows: {', '.join(trainable_rows())}; quoted only: "
            f"{', '.join(r.key for r in TABLE3_ROWS if r.quoted)}"
        )
    return _BY_KEY[key]


# --------------------------------------------------------------------------------------------- the recipe

# DNW Section 3.2: "we train for 250 epochs using Cosine Annealing as the learning rate scheduler with initial
# learning rate 0.1". The authors' ImageNet configs (github.com/allenai/dnw, apps/large_scale/*.yml): SGD with
# momentum 0.9 (no Nesterov), cosine stepped per iteration, no warm-up, weight decay 5e-5 on every parameter,
# plain cross-entropy (no label smoothing).
TABLE3_HPARAMS = TrainingHparams(
    epochs=250,
    optimizer="sgd",
    lr=0.1,
    momentum=0.9,
    nesterov=False,
    weight_decay=5e-5,
    no_weight_decay_on=(),
    schedule="cosine",
    schedule_step="iteration",
    warmup_epochs=0.0,
    label_smoothing=0.0,
)


def table3_hparams(epochs: int | None = None, *, precision: str = "fp32", eval_every: int = 1) -> TrainingHparams:
    """:data:`TABLE3_HPARAMS`, optionally over ``epochs`` epochs (the cosine then spans the shorter run)."""
    changes: dict[str, Any] = {"precision": precision, "eval_every": eval_every}
    if epochs is not None:
        changes["epochs"] = epochs
    fields = {**asdict(TABLE3_HPARAMS), **changes}
    return TrainingHparams(**fields)


# ---------------------------------------------------------------------------------------------- the models


def _registered(name: str) -> bool:
    from rewire.models import MODELS

    return name in MODELS


def model_spec(row: str | Table3Row, num_classes: int = IMAGENET_CLASSES, width: float | None = None) -> ModelSpec:
    """The :class:`ModelSpec` of a trainable row (stem stride 2): ``mobilenet_v1`` (width d) for a dense row,
    ``mobilenet_v1_dnw`` (Small or not) for RG and DNW rows. ``width`` overrides the row's d."""
    row = row_by_key(row)
    if row.quoted:
        raise ValueError(
            f"row {row.key} ({row.name}) is quoted from the paper; this repository trains: {', '.join(trainable_rows())}"
        )
    if row.kind == "dense":
        d = row.width if width is None else width
        return ModelSpec("mobilenet_v1", num_classes, {"width_mult": d, "stem_stride": TABLE3_STEM_STRIDE})
    return ModelSpec("mobilenet_v1_dnw", num_classes, {"stem_stride": TABLE3_STEM_STRIDE, "small": row.small})


_BUILDERS = {"mobilenet_v1": mobilenet_v1, "mobilenet_v1_dnw": mobilenet_v1_dnw}


def _build(spec: ModelSpec) -> nn.Module:
    """``spec.build()`` once the model is registered in ``rewire.models.MODELS``; the module's function until then."""
    if _registered(spec.name):
        return spec.build()
    return _BUILDERS[spec.name](num_classes=spec.num_classes, **spec.kwargs)


def _stage_seed(seed: int, index: int) -> int:
    """The random graph's seed of stage ``index``: the run seed plus the stage index."""
    return seed + index


def build_row_model(
    row: str | Table3Row,
    num_classes: int = IMAGENET_CLASSES,
    *,
    width: float | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> nn.Module:
    """The row's model with its method applied: MobileNetV1 x d (dense), or MobileNetV1-DNW with ``rg`` / ``dnw``
    on every stage with that stage's edge budget (Section 2.4; DNW-Small: the classifier too). The weights are
    initialised from the run seed's model stream (:class:`rewire.train.runtime.Seeds`)."""
    row = row_by_key(row)
    spec = model_spec(row, num_classes, width)
    seed_model_init(Seeds.from_run_seed(seed))
    model = _build(spec).to(device)
    if row.kind != "dense":
        d = row.width if width is None else width
        for budget in edge_budgets(model, d):
            apply_method(
                model,
                row.method,
                k=budget.k,
                allowed=budget.allowed,
                targets=(budget.target,),
                seed=_stage_seed(seed, budget.index),
            )
    return model


def check_row(row: str | Table3Row, width: float | None = None, num_classes: int = IMAGENET_CLASSES) -> Table3Row:
    """Validate a row and its width before any work: unknown or quoted rows and impossible widths raise
    ``ValueError`` (for a graph row the message of :func:`edge_budgets`). Builds nothing (meta tensors)."""
    row = row_by_key(row)
    spec = model_spec(row, num_classes, width)
    d = row.width if width is None else width
    with torch.device("meta"):
        model = _build(spec)  # a dense row checks its width here (every layer keeps a channel)
        if row.kind != "dense":
            edge_budgets(model, d)
    return row


# ------------------------------------------------------------------------------------------------ counting


@dataclass(frozen=True)
class Table3Count:
    """A row's Params and FLOPs (multiply-adds) as counted here, beside the paper's (all in millions).

    ``params`` / ``flops`` are ``None`` where the count needs a trained model (DNW rows: which nodes die)
    or the row is quoted; ``real_edges`` is the row's edge budget (graph rows), known without training."""

    row: Table3Row
    params: float | None
    flops: float | None
    real_edges: int | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "row": self.row.key,
            "name": self.row.name,
            "kind": self.row.kind,
            "width": self.row.width,
            "quoted": self.row.quoted,
            "params_M": self.params,
            "flops_M": self.flops,
            "real_edges": self.real_edges,
            "paper_params_M": self.row.paper_params,
            "paper_flops_M": self.row.paper_flops,
            "paper_top1": self.row.paper_top1,
        }


def profile_trained(
    row: str | Table3Row, model: nn.Module, image_size: int = TABLE3_IMAGE_SIZE, width: float | None = None
) -> GraphProfile | DenseCost:
    """Table 3's count of a (trained) model of ``row`` at ``image_size`` px: :func:`profile_graph` for
    MobileNetV1-DNW / -RG (real edges, live nodes only: a node without outgoing real edges is dead and its
    depthwise convolution skipped, as the paper counts), :func:`mobilenet_v1_cost` for MobileNetV1 x d.
    Both have ``.params`` and ``.macs``."""
    row = row_by_key(row)
    if row.kind == "dense":
        if not isinstance(model, MobileNetV1):
            raise TypeError(f"row {row.key} is a dense MobileNetV1, got {type(model).__name__}")
        d = row.width if width is None else width
        return mobilenet_v1_cost(
            d, image_size, num_classes=model.classifier.out_features, stem_stride=model.stem[0].stride[0]
        )
    if not isinstance(model, MobileNetV1DNW):
        raise TypeError(f"row {row.key} is a MobileNetV1DNW, got {type(model).__name__}")
    return profile_graph(model, image_size)


def table3_counts(image_size: int = TABLE3_IMAGE_SIZE, *, seed: int = 0) -> list[Table3Count]:
    """Every row of Table 3 with the counts that need no training, at ``image_size`` px and 1000 classes.

    Dense rows: :func:`mobilenet_v1_cost` (x0.25: 41.03M multiply-adds, 0.46M parameters). RG rows: the RG
    model of run seed ``seed`` (fixed random edges; nearly every node stays live, so the count hardly depends
    on the seed), :func:`profile_graph`. DNW rows: ``params``/``flops`` ``None`` (they depend on the nodes that
    die in training: :func:`profile_trained`), with their edge budget. Quoted rows: paper numbers only.
    """
    counts = []
    for row in TABLE3_ROWS:
        params = flops = edges = None
        if row.kind == "dense":
            cost = mobilenet_v1_cost(row.width, image_size, IMAGENET_CLASSES, TABLE3_STEM_STRIDE)
            params, flops = cost.params / 1e6, cost.macs / 1e6
        elif row.kind in ("rg", "dnw"):
            with torch.device("meta"):
                budgets = edge_budgets(_build(model_spec(row)), row.width)
            edges = sum(b.k for b in budgets)
            if row.kind == "rg":
                profile = profile_graph(build_row_model(row, seed=seed), image_size)
                params, flops = profile.params / 1e6, profile.macs / 1e6
        counts.append(Table3Count(row, params, flops, edges))
    return counts


# ---------------------------------------------------------------------------------------------- training


def subset_index(
    index: ImageFolderIndex, max_train_images: int | None = None, max_val_images: int | None = None
) -> ImageFolderIndex:
    """A class-balanced, deterministic part of ``index``: per class the first ceil(max / classes) images (in
    file-name order) of each split, at most ``max`` in all (``None``: the whole split). For quick runs."""
    files, labels = dict(index.files), dict(index.labels)
    for split, limit in (("train", max_train_images), ("val", max_val_images)):
        if limit is None:
            continue
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"max_{split}_images must be a positive int or None, got {limit!r}")
        per_class = math.ceil(limit / index.num_classes)
        keep = []
        for label in range(index.num_classes):
            keep.extend(np.flatnonzero(index.labels[split] == label)[:per_class].tolist())
        keep = sorted(keep)[:limit] if len(keep) > limit else sorted(keep)
        files[split] = index.files[split][keep]
        labels[split] = index.labels[split][keep]
    return ImageFolderIndex(index.root, index.classes, files, labels, index.class_list)


def data_config(index: ImageFolderIndex) -> dict[str, Any]:
    """What a run's identity takes from the folder: counts and a digest of the class names (not 1000 names)."""
    source = {k: v for k, v in index.source.items() if k != "classes"}
    source["classes_sha256"] = hashlib.sha256("\n".join(index.classes).encode()).hexdigest()[:16]
    source["num_classes"] = index.num_classes
    return source


def make_loaders(
    index: ImageFolderIndex,
    batch_size: int,
    *,
    seed: int,
    device: torch.device,
    num_workers: int = 0,
    crop_size: int = DNW_IMAGENET_CROP,
    resize_size: int = DNW_IMAGENET_RESIZE,
    eval_batch_size: int | None = None,
    progress: bool | None = False,
    distributed: DistContext | None = None,
) -> tuple[ImageFolderLoader, ImageFolderLoader]:
    """Training and validation loaders of ``index`` (RandomResizedCrop + flip / Resize + CenterCrop), ordered and
    augmented from the run seed's streams (:class:`rewire.train.runtime.Seeds`).

    ``distributed`` (a torchrun job of W processes): ``batch_size`` stays the global batch and each rank's
    training loader decodes only its own part of every epoch (``DistributedSampler``, ``batch_size / W`` images
    per step), so the decoding work is split, not repeated; every rank evaluates the whole validation split."""
    seeds = Seeds.from_run_seed(seed)
    shard = {}
    if distributed is not None and distributed.distributed:
        check_global_batch_size(batch_size, distributed.world_size)
        shard = {"rank": distributed.rank, "world_size": distributed.world_size}
    options = dict(
        num_workers=num_workers,
        crop_size=crop_size,
        resize_size=resize_size,
        device=device,
        progress=progress,
    )
    train = ImageFolderLoader(
        index,
        "train",
        batch_size,
        order_seed=seeds.data_order,
        augmentation_seed=seeds.augmentation,
        **shard,
        **options,
    )
    val = ImageFolderLoader(index, "val", eval_batch_size or batch_size, **options)
    return train, val


@dataclass
class Table3Result:
    """A trained row: the run (model, history, record) and Table 3's count of the trained model."""

    row: Table3Row
    run: RunResult
    profile: GraphProfile | DenseCost

    @property
    def params(self) -> int:
        return self.profile.params

    @property
    def macs(self) -> int:
        return self.profile.macs

    def summary(self) -> dict[str, Any]:
        final = self.run.final
        return {
            "row": self.row.key,
            "name": self.row.name,
            "trained_now": self.run.trained_now,
            "epochs": self.run.record["epochs"],
            "top1": final.get("test_top1"),
            "top5": final.get("test_top5"),
            "params_M": self.params / 1e6,
            "flops_M": self.macs / 1e6,
            "paper_params_M": self.row.paper_params,
            "paper_flops_M": self.row.paper_flops,
            "paper_top1": self.row.paper_top1,
            "run_dir": str(self.run.run_dir),
            "checkpoint": self.run.checkpoint,
        }


def train_table3_row(
    row: str | Table3Row,
    image_root: str | os.PathLike,
    *,
    checkpoint_root: str | os.PathLike = "checkpoints/dnw_imagenet",
    epochs: int | None = None,
    batch_size: int | None = None,
    width: float | None = None,
    device: torch.device | str | None = None,
    seed: int = 0,
    progress: bool | None = None,
    num_workers: int = 0,
    max_train_images: int | None = None,
    max_val_images: int | None = None,
    crop_size: int = DNW_IMAGENET_CROP,
    resize_size: int = DNW_IMAGENET_RESIZE,
    classes=None,
    precision: str = "fp32",
    eval_every: int = 1,
    reuse_checkpoints: bool | None = None,
    distributed: DistContext | None = None,
) -> Table3Result:
    """Train (or resume, or find) one row of DNW Table 3 on the ImageNet-style folder ``image_root``.

    The row's model (stem stride 2, as many classes as the folder: 1000 for ImageNet) gets its method per stage
    with the stage's edge budget (:func:`build_row_model`), and trains with :func:`table3_hparams` at batch
    :data:`TABLE3_BATCH_SIZE` (``epochs`` / ``batch_size`` override them; the learning rate stays 0.1) through
    :func:`rewire.experiments.engine.fit_run` under ``checkpoint_root``. Returns the run and the trained
    model's Table 3 count at 224 px (:func:`profile_trained`: dead nodes skipped, as the paper counts).
    ``distributed``: the torchrun job this process belongs to (:func:`rewire.train.distributed.init_from_env`);
    the run trains data-parallel on every rank, its device is the rank's, rank 0 writes the run directory.

    Every check runs before any work: an unknown or quoted row or an impossible ``width`` raises ``ValueError``,
    a missing or malformed folder :class:`ImageFolderLayoutError` showing the expected layout.
    """
    row = check_row(row, width)
    index = scan_image_folder(image_root, classes)
    if max_train_images is not None or max_val_images is not None:
        index = subset_index(index, max_train_images, max_val_images)
    num_classes = index.num_classes
    check_row(row, width, num_classes)  # a Small classifier's budget depends on the class count
    batch_size = TABLE3_BATCH_SIZE if batch_size is None else batch_size
    hparams = table3_hparams(epochs, precision=precision, eval_every=eval_every)
    parallel = distributed if distributed is not None and distributed.distributed else None
    device = parallel.device if parallel is not None else pick_device(None if device is None else str(device))
    train, val = make_loaders(
        index,
        batch_size,
        seed=seed,
        device=device,
        num_workers=num_workers,
        crop_size=crop_size,
        resize_size=resize_size,
        progress=False,
        distributed=parallel,
    )
    d = row.width if width is None else width
    model = build_row_model(row, num_classes, width=width, seed=seed, device=device)
    spec = model_spec(row, num_classes, width)
    config = {
        "table": "DNW Table 3",
        "row": row.key,
        "method": row.method,
        "width": d,
        "small": row.small,
        "stem_stride": TABLE3_STEM_STRIDE,
        "seed": seed,
        "batch_size": batch_size,
        "crop_size": crop_size,
        "resize_size": resize_size,
        "data": data_config(index),
    }
    result = fit_run(
        f"table3-{row.key}-seed{seed}",
        config,
        model,
        hparams,
        train,
        val,
        root=checkpoint_root,
        model_spec=spec,
        code=(DRIVER_MODULE,),
        reuse_checkpoints=reuse_checkpoints,
        progress=progress,
        description=f"{row.name} seed {seed}",
        run_info={"seed": seed, "row": row.key},
        distributed=parallel,
    )
    return Table3Result(row, result, profile_trained(row, result.model, TABLE3_IMAGE_SIZE, width))


# ---------------------------------------------------------------------------------------------------- CLI


def _format_counts(counts: list[Table3Count]) -> str:
    def number(value, digits):
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [f"{'row':<20} {'params (M)':>11} {'paper':>6} {'FLOPs (M)':>10} {'paper':>6} {'top-1':>6}  note"]
    for c in counts:
        note = "quoted" if c.row.quoted else ("needs a trained model" if c.params is None else "")
        lines.append(
            f"{c.row.key:<20} {number(c.params, 3):>11} {number(c.row.paper_params, 2):>6} "
            f"{number(c.flops, 1):>10} {number(c.row.paper_flops, 1):>6} {c.row.paper_top1:>6.1f}  {note}"
        )
    return "\n".join(lines)


def add_folder_arguments(parser: argparse.ArgumentParser, checkpoints: str) -> None:
    """The options every ImageNet-folder CLI shares (this module's and :mod:`rewire.experiments.dpf_imagenet`'s)."""
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    parser.add_argument("--workers", type=int, default=8, help="DataLoader worker processes")
    parser.add_argument("--checkpoints", default=checkpoints)
    parser.add_argument("--max-train-images", type=int, default=None, help="class-balanced subset, for quick runs")
    parser.add_argument("--max-val-images", type=int, default=None)
    parser.add_argument("--crop-size", type=int, default=DNW_IMAGENET_CROP)
    parser.add_argument("--resize-size", type=int, default=DNW_IMAGENET_RESIZE)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--eval-every", type=int, default=1)
    parser.add_argument("--out", default=None, help="also write the summary JSON here")


def folder_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`add_folder_arguments`' options, as the training functions name them."""
    return {
        "checkpoint_root": args.checkpoints,
        "device": args.device,
        "seed": args.seed,
        "num_workers": args.workers,
        "max_train_images": args.max_train_images,
        "max_val_images": args.max_val_images,
        "crop_size": args.crop_size,
        "resize_size": args.resize_size,
        "precision": args.precision,
        "eval_every": args.eval_every,
    }


def run_cli(train, out: str | None) -> int:
    """Join the torchrun job if any, run ``train(context)`` (returns a JSON-able summary), and on rank 0 print the
    summary (and write it to ``out``). Bad input exits with status 2 and a one-line message, on every rank."""
    try:
        context = init_from_env()  # under torchrun: this process's rank; otherwise one process
        summary = train(context)
    except (ValueError, TypeError, RuntimeError, ImageFolderLayoutError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        shutdown()
        return 2
    shutdown()
    if not context.is_main:
        return 0
    text = json.dumps(summary, indent=2)
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n", encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rewire.experiments.mobilenet_imagenet", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--data", help="ImageNet-style folder: DATA/train/<class>/*, DATA/val/<class>/*")
    parser.add_argument("--row", help=f"the Table 3 row to train: {', '.join(trainable_rows())}")
    parser.add_argument("--counts", action="store_true", help="print the params/FLOPs counter's table and exit")
    parser.add_argument("--width", type=float, default=None, help="override the row's width d")
    parser.add_argument("--epochs", type=int, default=None, help="default 250 (DNW Section 3.2)")
    parser.add_argument("--batch-size", type=int, default=None, help=f"default {TABLE3_BATCH_SIZE}")
    add_folder_arguments(parser, "checkpoints/dnw_imagenet")
    args = parser.parse_args(argv)
    if args.counts:
        print(_format_counts(table3_counts()))
        return 0

    def train(context: DistContext) -> dict[str, Any]:
        if not args.row or not args.data:
            raise ValueError(f"give --data and --row (one of {', '.join(trainable_rows())}), or --counts")
        return train_table3_row(
            args.row,
            args.data,
            epochs=args.epochs,
            batch_size=args.batch_size,
            width=args.width,
            distributed=context,
            **folder_options(args),
        ).summary()

    return run_cli(train, args.out)


if __name__ == "__main__":
    sys.exit(main())
