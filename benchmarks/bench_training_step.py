"""Training throughput of the quickstart model and the share of a step spent on data.

Measures, on the prepared CIFAR-10 cache and this machine's device, the wall time
of ``next(batch)`` (indexing, random crop, flip, normalisation: everything the
loader does) and of forward + backward + optimizer step, over ``--steps`` steps
after ``--warmup`` steps. Writes ``benchmarks/results/training_step.json``.

    python benchmarks/bench_training_step.py [--width 16] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from rewire import data as rdata
from rewire.io import write_json
from rewire.models import SmallConvNet
from rewire.train.runtime import describe_device, pick_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--data-root", default="data")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "training_step.json"))
    args = parser.parse_args()

    device = pick_device()
    dataset = rdata.load("cifar10", root=args.data_root)
    mean, std = rdata.normalisation_for("cifar10")
    loader = rdata.BatchLoader(
        dataset.train_images,
        dataset.train_labels,
        args.batch_size,
        shuffle=True,
        augment=True,
        mean=mean,
        std=std,
        device=device,
        drop_last=True,
    )
    torch.manual_seed(0)
    model = SmallConvNet(width=args.width).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    batches = iter(loader)
    data_seconds = compute_seconds = 0.0
    images = 0
    for step in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        x, y = next(batches)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t1 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        if step >= args.warmup:
            data_seconds += t1 - t0
            compute_seconds += t2 - t1
            images += y.numel()
    total = data_seconds + compute_seconds
    result = {
        "benchmark": "training_step",
        "model": f"SmallConvNet(width={args.width})",
        "batch_size": args.batch_size,
        "steps": args.steps,
        "images_per_second": images / total,
        "data_share_pct": 100 * data_seconds / total,
        "data_ms_per_batch": 1000 * data_seconds / args.steps,
        "compute_ms_per_batch": 1000 * compute_seconds / args.steps,
        "device": describe_device(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "data_source": dataset.source.get("kind"),
    }
    write_json(args.out, result)
    print(
        f"{result['model']}, batch {args.batch_size}, {result['device']}: "
        f"{result['images_per_second']:.0f} images/s, data {result['data_share_pct']:.1f}% of a step "
        f"({result['data_ms_per_batch']:.1f} ms data, {result['compute_ms_per_batch']:.1f} ms compute per batch)"
    )


if __name__ == "__main__":
    main()
