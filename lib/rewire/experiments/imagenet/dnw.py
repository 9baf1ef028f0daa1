"""DNW Table 3 (Wortsman et al., NeurIPS 2019, Section 3.2): MobileNetV1-DNW, -RG and MobileNetV1 on ImageNet.

* The rows with the paper's Params, FLOPs (multiply-adds) and top-1 are data
  (:data:`rewire.experiments.imagenet.paper.TABLE3_ROWS`, from ``paper.yaml``); :func:`row_by_key` finds one.
* :func:`table3_counts`: Params and FLOPs at 224 px from :mod:`rewire.methods.dnw_profile` for the rows that
  need no training (dense MobileNetV1 x d in closed form; RG, whose fixed random edges leave nearly every
  node live), beside the paper's columns. A DNW row's count depends on which nodes die during training:
  :func:`profile_trained` counts a trained model.
* :func:`train_table3_row`: one row trained on an ImageNet-style folder (:mod:`rewire.data.imagefolder`)
  through the run engine (:func:`rewire.experiments.engine.fit_run`: hashed, resumable, skipped when done),
  with :data:`TABLE3_HPARAMS` (Section 3.2: 250 epochs, cosine annealing from lr 0.1; the rest from the
  authors' ImageNet configs, ``apps/large_scale/*.yml``). The CLI (also under ``torchrun``)::

      python -m rewire.experiments.imagenet.dnw --data /path/to/imagenet --row dnw_x225
      python -m rewire.experiments.imagenet.dnw --counts        # the counter's table, no data needed

MobileNetV1-DNW is built with stem stride 2 (224-px input, DNW Appendix Table 4 caption) and one edge budget
per stage (:func:`rewire.models.mobilenet_dnw.edge_budgets`, Section 2.4); the DNW-Small classifier gets its
own budget (d * 1024 * classes edges).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn as nn

from rewire.data.imagefolder import DNW_IMAGENET_CROP, DNW_IMAGENET_RESIZE, scan_image_folder
from rewire.experiments.engine import ModelSpec, RunOptions, RunRequest, RunResult, fit_run
from rewire.experiments.imagenet.folders import data_config, make_loaders, subset_index
from rewire.experiments.imagenet.paper import TABLE3_ROWS, Table3Row, quoted_rows, trainable_rows
from rewire.methods.dnw import apply_method
from rewire.methods.dnw_profile import DenseCost, GraphProfile, mobilenet_v1_cost, profile_graph
from rewire.models.mobilenet_dnw import MobileNetV1, MobileNetV1DNW, edge_budgets, mobilenet_v1, mobilenet_v1_dnw
from rewire.train.distributed import DistContext
from rewire.train.runtime import Seeds, pick_device, seed_model_init
from rewire.train.trainer import TrainingHparams

__all__ = [
    "RUNS_MODULE",
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
    "main",
]

# The module the run engine hashes into every ImageNet run (it imports this one): the driver is in the identity.
RUNS_MODULE = "rewire.experiments.imagenet.runs"
# Table 3 counts FLOPs for 224 x 224 input (the authors' profiler hard-codes 224; DNW Section 3.2, ImageNet)
TABLE3_IMAGE_SIZE = 224
# DNW Appendix Table 4 caption: the first convolution has stride 2 on ImageNet (stride 1 only on CIFAR-10)
TABLE3_STEM_STRIDE = 2
# the authors' ImageNet configs (github.com/allenai/dnw, apps/large_scale/*.yml): batch 512 on 4 GPUs
TABLE3_BATCH_SIZE = 512
IMAGENET_CLASSES = 1000


def row_by_key(key: str | Table3Row) -> Table3Row:
    """The row ``key`` (a :class:`Table3Row` is returned as is); an unknown key raises ``ValueError`` listing them."""
    if isinstance(key, Table3Row):
        return key
    found = {row.key: row for row in TABLE3_ROWS}
    if key not in found:
        raise ValueError(
            f"unknown Table 3 row {key!r}; trainable rows: {', '.join(trainable_rows())}; quoted only: "
            f"{', '.join(quoted_rows())}"
        )
    return found[key]


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
    a missing or malformed folder :class:`~rewire.data.imagefolder.ImageFolderLayoutError` showing the expected layout.
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
    request = RunRequest(
        name=f"table3-{row.key}-seed{seed}",
        config=config,
        model=model,
        hparams=hparams,
        train_loader=train,
        eval_loader=val,
        code=(RUNS_MODULE,),
        model_spec=spec,
        run_info={"seed": seed, "row": row.key},
        description=f"{row.name} seed {seed}",
    )
    options = RunOptions(
        root=checkpoint_root, reuse_checkpoints=reuse_checkpoints, progress=progress, distributed=parallel
    )
    result = fit_run(request, options)
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


def main(argv: list[str] | None = None) -> int:
    from rewire.experiments.imagenet.cli import add_folder_arguments, folder_options, run_cli

    parser = argparse.ArgumentParser(
        prog="python -m rewire.experiments.imagenet.dnw", description=__doc__.split("\n\n")[0]
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
