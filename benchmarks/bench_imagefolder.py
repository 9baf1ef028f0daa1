"""Throughput of the streaming ImageNet-style loader (``rewire.data.imagefolder``): training images per second.

A synthetic folder is written to a temporary directory (default 10 classes x 50 train and 5 val
images of 320x256 JPEG, removed afterwards). Its pixels are smooth random fields (bilinear
upsampling of 8x10 random colours plus mild noise), so the JPEG files are about as hard to decode
as photographs of that size rather than as white noise (our choice). The training loader (DNW
recipe: RandomResizedCrop(224) + flip + normalisation, batch 32, drop_last) is timed for each worker
count: one warm-up epoch (worker start-up, page cache), then ``--epochs`` timed epochs; images/s is
images delivered over wall time, the median epoch reported. The batches go to the training device
(CUDA when present), so a GPU run includes the pinned copies.

The machine may be shared: the load average before and after is recorded.

    python benchmarks/bench_imagefolder.py [--workers 0,2] [--epochs 3] [--out results/imagefolder.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rewire.data.imagefolder import ImageFolderLoader
from rewire.io import write_json
from rewire.train.runtime import describe_device, pick_device

JPEG_QUALITY = 90  # our choice: a common encoder setting for photo collections


def write_synthetic_folder(
    root: Path, classes: int, per_class: int, val_per_class: int, width: int, height: int
) -> int:
    """root/{train,val}/class_XX/*.jpg with smooth random pixels; returns the number of bytes written."""
    rng = np.random.default_rng(0)
    total = 0
    for split, count in (("train", per_class), ("val", val_per_class)):
        for c in range(classes):
            folder = root / split / f"class_{c:02d}"
            folder.mkdir(parents=True)
            for i in range(count):
                coarse = Image.fromarray(rng.integers(0, 256, (8, 10, 3), dtype=np.uint8))
                smooth = np.asarray(coarse.resize((width, height), Image.Resampling.BILINEAR), dtype=np.int16)
                noisy = np.clip(smooth + rng.integers(-12, 13, smooth.shape), 0, 255).astype(np.uint8)
                path = folder / f"{i:04d}.jpg"
                Image.fromarray(noisy).save(path, quality=JPEG_QUALITY)
                total += path.stat().st_size
    return total


def measure(root: Path, workers: int, batch_size: int, epochs: int, device: torch.device) -> dict:
    loader = ImageFolderLoader(root, "train", batch_size, num_workers=workers, device=device)
    epoch_seconds, images = [], 0
    for epoch in range(epochs + 1):
        started = time.perf_counter()
        count = 0
        for x, _ in loader:
            count += x.shape[0]
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - started
        if epoch == 0:
            warmup = elapsed
        else:
            epoch_seconds.append(elapsed)
            images = count
    median = statistics.median(epoch_seconds)
    return {
        "num_workers": workers,
        "images_per_epoch": images,
        "images_per_second": images / median,
        "epoch_seconds": epoch_seconds,
        "warmup_epoch_seconds": warmup,
        "pin_memory": loader.pin_memory,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--per-class", type=int, default=50, help="training images per class")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", default="0,2", help="comma-separated worker counts to time")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per worker count (after one warm-up)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "imagefolder.json"))
    args = parser.parse_args()
    worker_counts = [int(w) for w in args.workers.split(",")]
    device = pick_device()

    with tempfile.TemporaryDirectory(prefix="bench-imagefolder-") as tmp:
        root = Path(tmp) / "synthetic-imagenet"
        started = time.perf_counter()
        size = write_synthetic_folder(root, args.classes, args.per_class, 5, args.width, args.height)
        generation_seconds = time.perf_counter() - started
        load_before = os.getloadavg()
        runs = [measure(root, w, args.batch_size, args.epochs, device) for w in worker_counts]
        load_after = os.getloadavg()

    result = {
        "benchmark": "imagefolder",
        "folder": {
            "classes": args.classes,
            "train_images": args.classes * args.per_class,
            "image_size": f"{args.width}x{args.height}",
            "format": f"JPEG quality {JPEG_QUALITY}",
            "mean_file_kib": size / (args.classes * (args.per_class + 5)) / 1024,
            "generation_seconds": generation_seconds,
        },
        "batch_size": args.batch_size,
        "crop_size": 224,
        "runs": runs,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": {"before": load_before[0], "after": load_after[0]},
        "device": describe_device(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    write_json(args.out, result)
    rates = ", ".join(f"{r['num_workers']} workers {r['images_per_second']:.0f} images/s" for r in runs)
    print(
        f"ImageFolder training loader, batch {args.batch_size}, 224 crops of {args.width}x{args.height} JPEG, "
        f"{result['device']}, {os.cpu_count()} CPUs: {rates}; load {load_before[0]:.1f}->{load_after[0]:.1f}"
    )


if __name__ == "__main__":
    main()
