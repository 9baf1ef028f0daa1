"""Training throughput of DNW's static neural graph and the share of a step spent choosing edges.

The model of DNW Table 1 (``StaticGraph(GraphConfig())``: 800 nodes in blocks of
32 + 4 x 192, k = 32,000 real edges) with the ``dnw`` method, trained with the
reference recipe's optimizer (SGD, momentum 0.9, weight decay 1e-4) on random
3x32x32 inputs: the data pipeline is not part of this measurement (see
``bench_training_step.py`` for it). For each of ``--steps`` steps after
``--warmup`` steps the wall time of forward, backward and optimizer step is
recorded, and the edge choice (the top-k of |w| over the usable entries, run
inside the forward pass) is timed where it happens. The same loop with the dense
model (no edge choice, no mask) is measured for comparison.

The machine may be shared: the load average before and after is recorded, and
medians are reported (the best step is recorded too).

    python benchmarks/bench_static_graph.py [--batch-size 256] [--steps 20] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from rewire.io import write_json
from rewire.methods import apply_method
from rewire.models.tiny_graphs import GraphConfig, StaticGraph
from rewire.sparse import masks
from rewire.train.runtime import describe_device, pick_device

TARGET_IMAGES_PER_SECOND = 1_000
TARGET_SELECTION_SHARE_PCT = 10.0


class _Timed:
    """Wraps a selector's ``select`` and accumulates its wall time."""

    def __init__(self, select, device):
        self.select, self.device, self.seconds = select, device, 0.0

    def __call__(self, weight):
        if self.device.type == "cuda":  # the stem's queued kernels must not count as edge selection
            torch.cuda.synchronize()
        started = time.perf_counter()
        mask = self.select(weight)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - started
        return mask


def measure(method: str, args, device) -> dict:
    torch.manual_seed(0)
    config = GraphConfig()
    model = StaticGraph(config).to(device)
    apply_method(model, method, k=config.k, allowed=model.allowed_edges(), targets=("graph.weight",))
    timer = None
    for _, _, parametrization in masks.sparse_modules(model):
        timer = _Timed(parametrization.selector.select, device)
        parametrization.selector.select = timer  # instance attribute: SparseWeight.forward calls it
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    g = torch.Generator().manual_seed(0)
    inputs = torch.randn(args.batch_size, 3, 32, 32, generator=g).to(device)
    targets = torch.randint(0, 10, (args.batch_size,), generator=g).to(device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    steps = []
    for step in range(args.warmup + args.steps):
        selection_before = timer.seconds if timer else 0.0
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(inputs), targets)
        sync()
        t1 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        sync()
        t2 = time.perf_counter()
        optimizer.step()
        sync()
        t3 = time.perf_counter()
        if step >= args.warmup:
            selection = (timer.seconds if timer else 0.0) - selection_before
            steps.append(
                {"step": t3 - t0, "forward": t1 - t0, "backward": t2 - t1, "optimizer": t3 - t2, "selection": selection}
            )
    median = {key: statistics.median(s[key] for s in steps) for key in steps[0]}
    best = min(s["step"] for s in steps)
    return {
        "images_per_second": args.batch_size / median["step"],
        "images_per_second_best_step": args.batch_size / best,
        "step_ms": 1000 * median["step"],
        "forward_ms": 1000 * median["forward"],
        "backward_ms": 1000 * median["backward"],
        "optimizer_ms": 1000 * median["optimizer"],
        "edge_selection_ms": 1000 * median["selection"],
        "edge_selection_share_pct": 100 * sum(s["selection"] for s in steps) / sum(s["step"] for s in steps),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "static_graph.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = pick_device()
    load_before = os.getloadavg()
    dnw = measure("dnw", args, device)
    dense = measure("dense", args, device)
    load_after = os.getloadavg()
    config = GraphConfig()
    result = {
        "benchmark": "static_graph",
        "model": f"StaticGraph(nodes={config.num_nodes}, blocks={list(config.block_sizes)}, "
        f"outputs={config.output_nodes})",
        "method": "dnw",
        "k": config.k,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "warmup": args.warmup,
        **dnw,
        "dense_model": dense,
        "targets": {
            "images_per_second": TARGET_IMAGES_PER_SECOND,
            "edge_selection_share_pct": TARGET_SELECTION_SHARE_PCT,
        },
        "meets_targets": {
            "images_per_second": dnw["images_per_second"] >= TARGET_IMAGES_PER_SECOND,
            "edge_selection_share_pct": dnw["edge_selection_share_pct"] <= TARGET_SELECTION_SHARE_PCT,
        },
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": {"before": load_before[0], "after": load_after[0]},
        "device": describe_device(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    write_json(args.out, result)
    print(
        f"static graph DNW, batch {args.batch_size}, {result['device']}: {dnw['images_per_second']:.0f} images/s "
        f"(best step {dnw['images_per_second_best_step']:.0f}; dense model {dense['images_per_second']:.0f}), "
        f"edge selection {dnw['edge_selection_ms']:.1f} ms = {dnw['edge_selection_share_pct']:.1f}% of a step; "
        f"load {load_before[0]:.1f}->{load_after[0]:.1f}"
    )


if __name__ == "__main__":
    main()
