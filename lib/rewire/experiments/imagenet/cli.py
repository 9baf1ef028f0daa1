"""What the ImageNet command lines share: the folder options and one run-and-report routine (torchrun-aware).

Used by ``python -m rewire.experiments.imagenet.dnw`` (one DNW Table 3 row) and
``python -m rewire.experiments.imagenet.dpf`` (one DPF Table 3 point).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rewire.data.imagefolder import DNW_IMAGENET_CROP, DNW_IMAGENET_RESIZE, ImageFolderLayoutError

__all__ = ["add_folder_arguments", "folder_options", "run_cli"]


def add_folder_arguments(parser: argparse.ArgumentParser, checkpoints: str) -> None:
    """The options every ImageNet-folder CLI shares."""
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
    from rewire.train.distributed import init_from_env, shutdown

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
