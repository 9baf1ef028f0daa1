"""The schema of the ImageNet tables (``params.yaml`` block ``imagenet``): :class:`Config`, with :class:`DpfPoint`.

Every key of the block at every scale is a field, checked (type and range) before any work; the rules
across fields are in :meth:`Config.validate`. The defaults are the smoke scale's values.

* ``data``: an ImageNet-style folder (``train/<class>/*``, ``val/<class>/*``). Empty: nothing is trained (the
  ``cpu`` scale: ImageNet does not fit this machine) and the stage writes Table 3's counts only, saying so.
  ``synthetic``: a small generated folder (the ``smoke`` scale: the whole path, in seconds).
* ``dnw_rows``: DNW Table 3 rows to train (:func:`rewire.experiments.imagenet.paper.trainable_rows`);
  ``dpf_points``: DPF Table 3 ``{method, sparsity}`` points (``dense`` included for Figure 10).
* ``epochs`` / ``batch_size`` / ``update_every`` (DPF's p): ``null`` = each paper's recipe; ``workers``;
  ``crop_size`` / ``resize_size`` (``null``: 224 / 256); ``seeds``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rewire.data.imagefolder import DNW_IMAGENET_CROP, DNW_IMAGENET_RESIZE
from rewire.experiments.imagenet.folders import SYNTHETIC
from rewire.experiments.imagenet.paper import trainable_rows
from rewire.experiments.schema import ConfigError, ExperimentConfig, check

__all__ = ["Config", "DpfPoint", "DPF_METHODS", "RESERVED"]

# The pipeline's keys (the stage passes them on the command line); not part of the experiment.
RESERVED = ("scale", "out_dir", "checkpoint_dir", "data_root")
# DPF Table 3's methods that this repository has (rewire.methods registry), plus the dense baseline
DPF_METHODS = ("dense", "dpf", "incremental", "sm", "dsr")


@dataclass(frozen=True)
class DpfPoint(ExperimentConfig):
    """One point of DPF Table 3: a method and its target sparsity of the convolutions (``dense``: none)."""

    method: str = field(default="dense", metadata=check(choices=DPF_METHODS, example="dpf"))
    sparsity: float = field(default=0.0, metadata=check(at_least=0, below=1, example=0.8))

    @property
    def row(self) -> str:
        """The point's row name (what ``--only`` selects): ``dense``, ``dpf-0.8``, ..."""
        return "dense" if self.method == "dense" else f"{self.method}-{self.sparsity:g}"

    @property
    def target(self) -> float:
        return 0.0 if self.method == "dense" else self.sparsity


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """DNW Table 3 and DPF Table 3 / Figure 10 at one scale: the folder, the rows and points, the overrides."""

    IGNORED = RESERVED

    data: str = field(default=SYNTHETIC, metadata=check(example="data/imagenet", help="'' | synthetic | a folder"))
    dnw_rows: list[str] = field(
        default=("dnw_x225",), metadata=check(choices=trainable_rows(), example=["dnw_x225", "rg_x225"])
    )
    dpf_points: list[DpfPoint] = field(
        default=(DpfPoint("dense"), DpfPoint("dpf", 0.8)),
        metadata=check(example=[{"method": "dpf", "sparsity": 0.8}]),
    )
    epochs: int | None = field(default=2, metadata=check(at_least=1, example=90, help="null: each paper's"))
    batch_size: int | None = field(default=8, metadata=check(at_least=1, example=512, help="null: each paper's"))
    update_every: int | None = field(default=1, metadata=check(at_least=1, example=16, help="DPF's p; null: 16"))
    workers: int = field(default=0, metadata=check(at_least=0, example=8))
    crop_size: int | None = field(default=32, metadata=check(at_least=1, example=DNW_IMAGENET_CROP))
    resize_size: int | None = field(default=36, metadata=check(at_least=1, example=DNW_IMAGENET_RESIZE))
    seeds: list[int] = field(default=(0,), metadata=check(at_least=0, example=[0]))

    def validate(self) -> None:
        for index, point in enumerate(self.dpf_points):
            if point.method != "dense" and point.sparsity == 0.0:
                raise ConfigError(
                    f"'dpf_points[{index}].sparsity': method {point.method!r} needs a target sparsity in (0, 1); "
                    f"e.g. {{method: {point.method}, sparsity: 0.8}} (DPF Table 3: 0.8 and 0.9)"
                )
        rows = [point.row for point in self.dpf_points]
        if len(set(rows)) != len(rows) or len(set(self.dnw_rows)) != len(self.dnw_rows):
            raise ConfigError(f"'dnw_rows' / 'dpf_points' list a row twice: {list(self.dnw_rows)}, {rows}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"'seeds' {list(self.seeds)} must be distinct and not empty; e.g. seeds: [0]")
        if self.crop_size_or_default > self.resize_size_or_default:
            raise ConfigError(
                f"'crop_size' {self.crop_size_or_default} is larger than 'resize_size' {self.resize_size_or_default}: "
                f"validation images are resized, then center-cropped; e.g. crop_size: 224, resize_size: 256"
            )
        self.check_rows()

    def check_rows(self, num_classes: int = 1000) -> None:
        """Every DNW row's width is possible (on meta tensors; ``num_classes`` sizes a Small classifier)."""
        from rewire.experiments.imagenet.dnw import check_row

        for index, key in enumerate(self.dnw_rows):
            try:
                check_row(key, num_classes=num_classes)
            except ValueError as error:
                raise ConfigError(f"'dnw_rows[{index}]': {error}") from None

    @property
    def crop_size_or_default(self) -> int:
        return self.crop_size or DNW_IMAGENET_CROP

    @property
    def resize_size_or_default(self) -> int:
        return self.resize_size or DNW_IMAGENET_RESIZE
