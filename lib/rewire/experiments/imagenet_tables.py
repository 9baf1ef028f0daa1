"""The ImageNet tables as one DVC stage: DNW Table 3 (MobileNetV1-DNW) and DPF Table 3 with Figure 10 (ResNet-50).

``python -m rewire.experiments.imagenet_tables --out results/imagenet`` reads the ``imagenet`` block of
``params.yaml`` at the active scale:

* ``data``: an ImageNet-style folder (``train/<class>/*``, ``val/<class>/*``; e.g. ImageNet-1k or a
  100-class subset with ``classes``). Empty: nothing is trained (the ``cpu`` scale: ImageNet does not fit this
  machine) and the stage writes Table 3's counts from the counter only, saying so. ``synthetic``: a small
  folder of generated images is written under the output's checkpoint directory and every configured row is
  trained on it (the ``smoke`` scale: the whole path, in seconds).
* ``dnw_rows``: keys of :data:`rewire.experiments.mobilenet_imagenet.TABLE3_ROWS` to train;
  ``dpf_points``: ``{method, sparsity}`` entries of DPF Table 3 (``dense`` included for Figure 10);
* ``epochs`` / ``batch_size`` / ``update_every`` (DPF's p; ``null``: the papers' recipes), ``workers``,
  ``seeds``, ``crop_size`` / ``resize_size`` (``null``: 224 / 256).

Every row is a run of the run engine (hashed, resumable, found again), so a killed stage resumes. Under
``torchrun`` every rank trains each run data-parallel and rank 0 writes the results:

    torchrun --standalone --nproc_per_node 4 -m rewire.experiments.imagenet_tables --out results/imagenet

Outputs: ``table3.csv``/``.md`` (DNW: the counter's params and multiply-adds of every row, trained or not,
beside the paper's, with the trained rows' top-1), ``dpf_table3.csv``/``.md`` (top-1 and reached sparsity
beside the paper's), ``figure10.png`` (DPF against dense SGD: top-1 per epoch and seconds per epoch, when both
ran), ``metrics.json`` and ``label.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from rewire.experiments import dpf_imagenet, mobilenet_imagenet
from rewire.io import write_json

__all__ = ["DRIVER_MODULE", "SYNTHETIC", "write_synthetic_folder", "run_stage", "main"]

DRIVER_MODULE = "rewire.experiments.imagenet_tables"
SYNTHETIC = "synthetic"
# The smoke scale's generated folder: 3 classes x 8 training and 2 validation images of 40 x 48 px (our choice:
# enough for two global batches of 8 on two processes, small enough to decode in a blink)
SYNTHETIC_CLASSES, SYNTHETIC_TRAIN, SYNTHETIC_VAL, SYNTHETIC_SIZE = 3, 8, 2, (40, 48)


def write_synthetic_folder(root: str | Path, *, seed: int = 0) -> Path:
    """An ImageNet-style folder of random JPEG images (``train/`` and ``val/``, one folder per class); returns it.

    The pixels are class-dependent colour offsets plus noise, so a model can learn something in a few steps."""
    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(seed)
    height, width = SYNTHETIC_SIZE
    for split, count in (("train", SYNTHETIC_TRAIN), ("val", SYNTHETIC_VAL)):
        for label in range(SYNTHETIC_CLASSES):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                base = np.full((height, width, 3), 60 + 60 * label, dtype=np.float64)
                pixels = np.clip(base + rng.normal(0, 25, (height, width, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"img{i}.jpg", quality=90)
    return root


def _label(scale: str, seeds, source: dict[str, Any], device) -> dict[str, Any]:
    from rewire.reporting.results import run_label

    return run_label(scale=scale, seeds=seeds, data_source=source, device=device)


def run_stage(values: dict[str, Any], scale: str, out: Path, checkpoints: Path, *, distributed=None) -> dict:
    """Train what ``values`` lists (see the module docstring) and write the tables; returns the metrics."""
    import pandas as pd

    from rewire.data.imagefolder import scan_image_folder
    from rewire.reporting import results
    from rewire.train.runtime import pick_device

    data = str(values.get("data") or "")
    seeds = list(values.get("seeds") or [0])
    dnw_rows = [mobilenet_imagenet.check_row(key).key for key in values.get("dnw_rows") or []]
    points = [(p["method"], float(p.get("sparsity", 0.0))) for p in values.get("dpf_points") or []]
    for method, sparsity in points:
        dpf_imagenet._check_method(method, sparsity)
    main_process = distributed is None or distributed.is_main
    options = {
        "epochs": values.get("epochs"),
        "batch_size": values.get("batch_size"),
        "num_workers": int(values.get("workers") or 0),
        "crop_size": values.get("crop_size") or mobilenet_imagenet.DNW_IMAGENET_CROP,
        "resize_size": values.get("resize_size") or mobilenet_imagenet.DNW_IMAGENET_RESIZE,
        "progress": None,
        "distributed": distributed,
    }
    if data == SYNTHETIC:
        folder = checkpoints / "synthetic-folder"
        if main_process and not folder.exists():
            write_synthetic_folder(folder)
        if distributed is not None and distributed.distributed:
            from rewire.train.distributed import barrier

            barrier(distributed)
        data = str(folder)
    trained_dnw, trained_dpf = {}, {}
    if data:
        index = scan_image_folder(data)  # a malformed folder stops here with the expected layout
        source = index.source
        for key in dnw_rows:
            for seed in seeds:
                trained_dnw[(key, seed)] = mobilenet_imagenet.train_table3_row(
                    key, data, checkpoint_root=checkpoints / "dnw", seed=seed, **options
                )
        for method, sparsity in points:
            for seed in seeds:
                trained_dpf[(method, sparsity, seed)] = dpf_imagenet.train_point(
                    method, sparsity, data, checkpoint_root=checkpoints / "dpf", seed=seed,
                    update_every=values.get("update_every"), **options,
                )  # fmt: skip
    else:
        source = {"kind": "none", "description": "no ImageNet folder at this scale (params: imagenet.data)"}
    if not main_process:
        return {}
    device = distributed.device if distributed is not None else pick_device()
    label = _label(scale, seeds, source, device)

    counts = pd.DataFrame([count.as_dict() for count in mobilenet_imagenet.table3_counts()])
    counts["trained_top1_mean"] = np.nan
    counts["trained_flops_M"] = np.nan
    counts["trained_params_M"] = np.nan
    for key in dnw_rows:
        runs = [trained_dnw[(key, seed)].summary() for seed in seeds]
        where = counts.row == key
        counts.loc[where, "trained_top1_mean"] = float(np.mean([r["top1"] for r in runs]))
        counts.loc[where, "trained_flops_M"] = float(np.mean([r["flops_M"] for r in runs]))
        counts.loc[where, "trained_params_M"] = float(np.mean([r["params_M"] for r in runs]))
    note = "trained here: " + (", ".join(dnw_rows) if dnw_rows and data else "none at this scale")
    results.write_table(counts, out, "table3", label, title=f"DNW Table 3 (ImageNet): counter vs paper; {note}")

    dpf_rows = []
    for (method, sparsity, seed), summary in trained_dpf.items():
        paper = summary["paper"][0] if summary["paper"] else {}
        if method == "dense":  # Table 3 prints the dense model's accuracy in every row
            paper = {"top1_pruned": dpf_imagenet.PAPER_TABLE3[0].top1_dense, "reached": 0.0}
        dpf_rows.append(
            {
                "method": method,
                "target": sparsity,
                "seed": seed,
                "top1": summary["top1"],
                "top5": summary["top5"],
                "reached_overall": summary["reached_overall"],
                "remaining_params_M": summary["remaining_params"] / 1e6,
                "paper_top1": paper.get("top1_pruned"),
                "paper_reached": paper.get("reached"),
                "epochs": summary["epochs"],
            }
        )
    dpf_table = pd.DataFrame(
        dpf_rows,
        columns=["method", "target", "seed", "top1", "top5", "reached_overall", "remaining_params_M", "paper_top1"]
        + ["paper_reached", "epochs"],
    )
    results.write_table(dpf_table, out, "dpf_table3", label, title="DPF Table 3 (ResNet-50, ImageNet): trained here")

    curves = []
    for (method, sparsity, seed), summary in trained_dpf.items():
        for record in summary["result"].records:
            curves.append(
                {
                    "method": method,
                    "sparsity": sparsity,
                    "seed": seed,
                    "epoch": record["epoch"],
                    "test_top1": record.get("test_top1"),
                    "train_seconds": record.get("train_seconds"),
                }
            )
    curves = pd.DataFrame(curves, columns=["method", "sparsity", "seed", "epoch", "test_top1", "train_seconds"])
    curves.to_csv(out / "figure10.csv", index=False)
    _figure10(curves, out / "figure10.png", label)
    metrics = {
        "dnw_rows_trained": len(dnw_rows) if data else 0,
        "dpf_points_trained": len(points) if data else 0,
        **{f"dnw_{k}_top1": v for k, v in zip(counts.row, counts.trained_top1_mean) if not np.isnan(v)},
    }
    results.write_metrics(out / "metrics.json", metrics, label)
    write_json(out / "details.json", {"label": label, "curves": curves.to_dict("records")})
    return metrics


def _figure10(curves, path: Path, label: dict[str, Any]) -> None:
    """DPF Figure 10: top-1 per epoch and seconds per epoch, DPF against dense SGD (an empty frame says why)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    from rewire.reporting import plotting

    sns.set_theme(style="whitegrid")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    if curves.empty:
        for ax in axes:
            ax.text(0.5, 0.5, "no ImageNet run at this scale", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
    else:
        curves = curves.assign(run=[f"{m} {s:g}" for m, s in zip(curves.method, curves.sparsity)])
        sns.lineplot(data=curves, x="epoch", y="test_top1", hue="run", marker="o", ax=axes[0])
        axes[0].set(ylabel="validation top-1 (%)", title="learning curves")
        sns.barplot(data=curves, x="run", y="train_seconds", ax=axes[1])
        axes[1].set(ylabel="training seconds per epoch", xlabel="", title="cost per epoch")
    fig.suptitle("DPF Figure 10: ResNet-50 on ImageNet, DPF vs dense SGD", y=1.02)
    fig.tight_layout()
    fig.text(0.5, -0.06, plotting.caption(label), ha="center", fontsize=8, color="0.35")
    plotting.save_figure(fig, path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {DRIVER_MODULE}", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/imagenet")
    parser.add_argument("--checkpoints", default="checkpoints/imagenet")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--scale", default=None, help="default: the active scale of params.yaml")
    args = parser.parse_args(argv)
    from rewire.data.imagefolder import ImageFolderLayoutError
    from rewire.pipeline.params import ParamsError, stage_values
    from rewire.train.distributed import init_from_env, shutdown

    try:
        scale, values = stage_values("imagenet", args.params, args.scale)
        context = init_from_env()
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        run_stage(values, scale, out, Path(args.checkpoints), distributed=context)
    except (ParamsError, ValueError, TypeError, ImageFolderLayoutError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        shutdown()
        return 2
    shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
