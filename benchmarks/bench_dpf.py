"""Cost of DPF on this machine: per-iteration overhead over dense SGD, and one global mask update.

1. ResNet-20, batch 128, random inputs: seconds per training iteration of dense SGD and of
   DPF (``rewire.dpf.GradualPruning`` on every conv weight, straight-through route, global
   magnitude mask recomputed every p = 16 iterations at 90% sparsity, so mask updates are
   amortised as in training). Dense and DPF alternate in blocks of 16 iterations so that
   drift of the machine's speed hits both alike; the overhead is the ratio of the medians
   of the block means. DPF Figure 10 calls the overhead "trivial"; the issue's target is at most 5%.
2. WideResNet-28-8 (23.3M conv weights): wall time of one global magnitude mask update over
   all convolutional weights (``MaskGroup.apply(PruningRule("weight", "global"), 0.9)``).

Writes ``benchmarks/results/dpf.json``. Run it on an otherwise idle machine.

    python benchmarks/bench_dpf.py [--blocks 6] [--updates 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from rewire.io import write_json
from rewire.methods.dpf import DPF_UPDATE_EVERY, GradualPruning, SparsitySchedule
from rewire.models import build_model
from rewire.sparse.groups import MaskGroup, PruningRule
from rewire.train.runtime import describe_device, pick_device


class _Clock:
    """The two trainer attributes GradualPruning reads (global step, epoch); no data, no evaluation."""

    def __init__(self, optimizer):
        self.optimizer, self.global_step, self.epoch, self.batches_per_epoch = optimizer, 0, 0, 10**9


def _block(model, optimizer, x, y, steps, callback=None, clock=None, device=None) -> float:
    """Mean seconds per iteration over ``steps`` iterations (mask update before the step when due)."""
    started = time.perf_counter()
    for _ in range(steps):
        if callback is not None:
            callback.on_batch_start(clock, x, y)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if clock is not None:
            clock.global_step += 1
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / steps


def iteration_overhead(device, batch_size: int, blocks: int, sparsity: float) -> dict:
    torch.manual_seed(0)
    x = torch.randn(batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch_size,), device=device)
    dense = build_model("resnet20").to(device)
    torch.manual_seed(0)
    pruned = build_model("resnet20").to(device)
    group = MaskGroup(pruned)  # DPF: straight-through route, global magnitude
    dense_opt = torch.optim.SGD(dense.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    dpf_opt = torch.optim.SGD(pruned.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    callback = GradualPruning(
        group,
        PruningRule("weight", "global"),
        SparsitySchedule(final=sparsity, end=1e-9, frequency=0.0),
        update_every=DPF_UPDATE_EVERY,
    )
    clock = _Clock(dpf_opt)
    _block(dense, dense_opt, x, y, 3, device=device)  # warm-up
    _block(pruned, dpf_opt, x, y, 3, callback, clock, device)
    clock.global_step = 0
    dense_blocks, dpf_blocks = [], []
    for _ in range(blocks):
        dense_blocks.append(_block(dense, dense_opt, x, y, DPF_UPDATE_EVERY, device=device))
        dpf_blocks.append(_block(pruned, dpf_opt, x, y, DPF_UPDATE_EVERY, callback, clock, device))
    dense_s, dpf_s = statistics.median(dense_blocks), statistics.median(dpf_blocks)
    return {
        "model": "resnet20",
        "batch_size": batch_size,
        "sparsity": sparsity,
        "update_every": DPF_UPDATE_EVERY,
        "blocks": blocks,
        "dense_seconds_per_iteration": dense_s,
        "dpf_seconds_per_iteration": dpf_s,
        "overhead_pct": 100.0 * (dpf_s / dense_s - 1.0),
        "mask_updates": callback.epoch_updates,
        "dense_block_means": dense_blocks,
        "dpf_block_means": dpf_blocks,
        "target_overhead_pct": 5.0,
    }


def mask_update_time(device, updates: int, sparsity: float) -> dict:
    torch.manual_seed(0)
    model = build_model("wrn28_8").to(device)
    group = MaskGroup(model)
    rule = PruningRule("weight", "global")
    if device.type == "cuda":  # the copy to the GPU and the group's setup must not land in the first timing
        torch.cuda.synchronize()
    times = []
    for _ in range(updates):
        started = time.perf_counter()
        group.apply(rule, sparsity)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return {
        "model": "wrn28_8",
        "conv_weights": group.numel(),
        "sparsity": sparsity,
        "updates": updates,
        "median_seconds": statistics.median(times),
        "seconds": times,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--blocks", type=int, default=6, help="alternating blocks of 16 iterations per variant")
    parser.add_argument("--updates", type=int, default=5, help="timed WRN-28-8 mask updates")
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "dpf.json"))
    args = parser.parse_args()
    device = pick_device()
    overhead = iteration_overhead(device, args.batch_size, args.blocks, args.sparsity)
    update = mask_update_time(device, args.updates, args.sparsity)
    result = {
        "benchmark": "dpf",
        "iteration": overhead,
        "mask_update": update,
        "device": describe_device(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    write_json(args.out, result)
    print(
        f"ResNet-20, batch {args.batch_size}, {result['device']}: dense {overhead['dense_seconds_per_iteration']:.3f} s/it, "
        f"DPF {overhead['dpf_seconds_per_iteration']:.3f} s/it (mask every {DPF_UPDATE_EVERY}): "
        f"overhead {overhead['overhead_pct']:+.1f}% (target <= 5%)"
    )
    print(
        f"WRN-28-8 global magnitude mask over {update['conv_weights']:,} conv weights: "
        f"{update['median_seconds']:.3f} s median of {args.updates}"
    )


if __name__ == "__main__":
    main()
