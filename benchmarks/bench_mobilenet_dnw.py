"""Throughput of MobileNetV1-DNW (DNW Section 2.4) on this machine: training on CIFAR-size batches, and
inference of the masked model against its compact form at 224 px.

1. Training images/s on random 3x32x32 inputs (batch 128, the CIFAR-10 recipe's batch; DNW Section 3.3) with
   the recipe's optimizer (SGD, lr 0.1, momentum 0.9, weight decay 1e-4), for MobileNetV1-DNW x0.225 under
   the ``dnw`` method (top-k per stage, re-chosen every forward pass; Table 2's model) and for the dense
   MobileNetV1 x0.25 (Table 2's baseline), each in float32 and in bf16 autocast with channels-last memory.
   The data pipeline is not part of the measurement. Ratios dense / DNW are reported.
2. Inference images/s at 224 px (batch 32, eval mode, no gradient) of MobileNetV1-RG x0.225 (the random
   graph, 1000 classes, stem stride 2) as a masked model and as ``rewire.sparse.graph_profile.compact(model)``,
   which drops dead nodes; its edges stay dense GEMMs, so the gain is bounded by the few nodes a random graph
   leaves dead. Table 3's multiply-add counts of both (``profile_graph``) are recorded next to the speeds.

The machine may be shared: the four training runs alternate step by step, the load average before and after
is recorded, and the median and the best step are reported. With 2 threads, another busy process makes every
parallel region wait for a descheduled thread (steps several times slower); ``--threads 1`` stays stable then.
Writes ``benchmarks/results/mobilenet_dnw.json``.

    python benchmarks/bench_mobilenet_dnw.py [--steps 5] [--inference-steps 4] [--threads N]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from rewire.io import write_json
from rewire.methods import apply_method
from rewire.methods.dnw_profile import compact, profile_graph
from rewire.models.mobilenet_dnw import edge_budgets, mobilenet_v1, mobilenet_v1_dnw
from rewire.train.runtime import describe_device, pick_device

# DNW Table 2's CIFAR-10 models: MobileNetV1-DNW x0.225 against the dense MobileNetV1 x0.25
DNW_WIDTH = 0.225
DENSE_WIDTH = 0.25


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def sparsify(model, method: str, width_mult: float, seed: int = 0) -> None:
    """``method`` on every stage with its own edge budget (top-k per stage, DNW Section 2.4)."""
    for budget in edge_budgets(model, width_mult):
        apply_method(
            model, method, k=budget.k, allowed=budget.allowed, targets=(budget.target,), seed=seed + budget.index
        )


def build(kind: str, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "dnw":
        model = mobilenet_v1_dnw(num_classes=10, stem_stride=1)
        sparsify(model, "dnw", DNW_WIDTH)
        return model.to(device)
    return mobilenet_v1(width_mult=DENSE_WIDTH, num_classes=10, stem_stride=1).to(device)


class TrainingRun:
    """One model in one precision, with its optimizer and a fixed random batch."""

    def __init__(self, kind: str, low_precision: bool, args, device: torch.device) -> None:
        self.model = build(kind, device).train()
        self.images = torch.randn(args.batch_size, 3, 32, 32, device=device)
        self.labels = torch.randint(0, 10, (args.batch_size,), device=device)
        if low_precision:
            self.model = self.model.to(memory_format=torch.channels_last)
            self.images = self.images.contiguous(memory_format=torch.channels_last)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        self.low_precision, self.device, self.seconds, self.loss = low_precision, device, [], None

    def step(self, timed: bool) -> None:
        """One training step (forward, backward, SGD step); its wall time is recorded when ``timed``."""
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.low_precision else None
        sync(self.device)
        started = time.perf_counter()
        with autocast or contextlib.nullcontext():
            loss = F.cross_entropy(self.model(self.images), self.labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        sync(self.device)
        if timed:
            self.seconds.append(time.perf_counter() - started)
        self.loss = loss.detach()

    def summary(self, batch_size: int) -> dict:
        median = statistics.median(self.seconds)
        return {
            "step_s": median,
            "best_step_s": min(self.seconds),
            "images_per_second": batch_size / median,
            "images_per_second_best_step": batch_size / min(self.seconds),
            "steps": self.seconds,
            "loss_finite": bool(torch.isfinite(self.loss).item()),
        }


def training(args, device: torch.device) -> dict:
    """Median and best seconds per training step of the four runs, interleaved step by step (round robin)
    after ``args.warmup`` untimed steps each, so that a load change on a shared machine hits all alike."""
    runs = {
        f"{kind}_{precision}": TrainingRun(kind, low, args, device)
        for kind in ("dnw", "dense")
        for precision, low in (("fp32", False), ("bf16_channels_last", True))
    }
    for round_ in range(args.warmup + args.steps):
        for run in runs.values():
            run.step(timed=round_ >= args.warmup)
    return {name: run.summary(args.batch_size) for name, run in runs.items()}


@torch.no_grad()
def inference_speed(model, images, args, device: torch.device) -> dict:
    seconds = []
    for step in range(1 + args.inference_steps):
        sync(device)
        started = time.perf_counter()
        model(images)
        sync(device)
        if step >= 1:
            seconds.append(time.perf_counter() - started)
    median = statistics.median(seconds)
    return {"step_s": median, "images_per_second": images.shape[0] / median, "steps": seconds}


def inference(args, device: torch.device) -> dict:
    torch.manual_seed(0)
    model = mobilenet_v1_dnw(num_classes=1000, stem_stride=2)
    sparsify(model, "rg", DNW_WIDTH)
    model = model.to(device).eval()
    light = compact(model)
    images = torch.randn(args.inference_batch_size, 3, 224, 224, device=device)
    with torch.no_grad():
        difference = (light(images[:2]) - model(images[:2])).abs().max().item()
    profile = profile_graph(model, image_size=224)
    masked = inference_speed(model, images, args, device)
    compacted = inference_speed(light, images, args, device)
    return {
        "model": f"MobileNetV1-RG x{DNW_WIDTH}, 1000 classes, 224 px",
        "batch_size": args.inference_batch_size,
        "masked": masked,
        "compact": compacted,
        "compact_speedup": compacted["images_per_second"] / masked["images_per_second"],
        "max_abs_output_difference": difference,
        "table3_macs": profile.macs,
        "table3_params": profile.params,
        "live_nodes": sum(s.live_nodes for s in profile.stages),
        "nodes": sum(s.nodes for s in profile.stages),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per model and precision")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--inference-batch-size", type=int, default=32)
    parser.add_argument("--inference-steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "mobilenet_dnw.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = pick_device()
    load_before = os.getloadavg()
    runs = training(args, device)
    infer = inference(args, device)
    load_after = os.getloadavg()
    rate = {name: run["images_per_second"] for name, run in runs.items()}
    result = {
        "benchmark": "mobilenet_dnw",
        "training": {
            "batch_size": args.batch_size,
            "image_size": 32,
            "warmup": args.warmup,
            "models": {"dnw": f"MobileNetV1-DNW x{DNW_WIDTH} (dnw method)", "dense": f"MobileNetV1 x{DENSE_WIDTH}"},
            **runs,
            "dense_over_dnw_fp32": rate["dense_fp32"] / rate["dnw_fp32"],
            "dense_over_dnw_bf16": rate["dense_bf16_channels_last"] / rate["dnw_bf16_channels_last"],
            "bf16_over_fp32_dnw": rate["dnw_bf16_channels_last"] / rate["dnw_fp32"],
            "bf16_over_fp32_dense": rate["dense_bf16_channels_last"] / rate["dense_fp32"],
        },
        "inference": infer,
        "device": describe_device(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average_before": load_before,
        "load_average_after": load_after,
    }
    write_json(args.out, result)
    for name, run in runs.items():
        print(
            f"train {name:<26} {run['images_per_second']:8.1f} images/s ({run['step_s']:.3f} s/step median, "
            f"best {run['images_per_second_best_step']:.1f} images/s)"
        )
    print(
        f"dense/DNW: fp32 x{result['training']['dense_over_dnw_fp32']:.1f}, "
        f"bf16 x{result['training']['dense_over_dnw_bf16']:.1f}"
    )
    print(
        f"inference 224 px batch {args.inference_batch_size}: masked {infer['masked']['images_per_second']:.1f}, "
        f"compact {infer['compact']['images_per_second']:.1f} images/s (x{infer['compact_speedup']:.2f}; "
        f"{infer['live_nodes']}/{infer['nodes']} nodes live; Table 3 count {infer['table3_macs'] / 1e6:.1f}M MACs)"
    )
    print(f"{result['device']}, torch {torch.__version__}, load {load_before[0]:.2f} -> {load_after[0]:.2f}")


if __name__ == "__main__":
    main()
