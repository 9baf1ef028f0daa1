"""Cost of DPF on this machine: per-iteration overhead over dense SGD, and one global mask update.

1. The paired benchmark of the DPF sweep's report (``rewire.experiments.dpf_sweeps.overhead``,
   the number behind Figure 10's claim and ``dpf_overhead_pct``), run alone: ResNet-20 (``--model``),
   batch 128, random inputs, the DPF recipe's optimizer (SGD, Nesterov, lr 0.2, weight decay 1e-4);
   dense and DPF training steps interleaved in blocks of p = 16 steps (each DPF block holds one global
   magnitude mask update at 90 % sparsity), ``--pairs`` pairs after one warm-up pair. The overhead is
   100 (mean per-pair ratio - 1) % with its 95 % Student-t interval over the pairs. DPF Figure 10 calls
   the overhead "trivial"; the repository reads that as below 5 %.
2. WideResNet-28-8 (23.3M conv weights): wall time of one global magnitude mask update over
   all convolutional weights (``MaskGroup.apply(PruningRule("weight", "global"), 0.9)``).

Writes ``benchmarks/results/dpf.json``. Run it on an otherwise idle machine.

    python benchmarks/bench_dpf.py [--pairs 20] [--updates 5] [--precision fp32]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

from rewire.experiments.dpf_sweeps.config import Recipe
from rewire.experiments.dpf_sweeps.overhead import benchmark_overhead
from rewire.io import write_json
from rewire.methods.dpf import DPF_UPDATE_EVERY
from rewire.models import build_model
from rewire.sparse.groups import MaskGroup, PruningRule
from rewire.train.runtime import describe_device, pick_device


def iteration_overhead(device, model: str, batch_size: int, pairs: int, sparsity: float, precision: str) -> dict:
    """The report's paired benchmark at the DPF recipe (Appendix A.2), as a dict."""
    hparams = Recipe(epochs=1, model=model, batch_size=batch_size, precision=precision).hparams()
    bench = benchmark_overhead(
        model,
        hparams=hparams,
        batch_size=batch_size,
        sparsity=sparsity,
        pairs=pairs,
        update_every=DPF_UPDATE_EVERY,
        device=device,
    )
    return {**bench.as_dict(), "target_overhead_pct": 5.0, "summary": bench.describe()}


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
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--pairs", type=int, default=20, help="timed pairs of 16 dense + 16 DPF steps (>= 2)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--updates", type=int, default=5, help="timed WRN-28-8 mask updates (0: skip)")
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "dpf.json"))
    args = parser.parse_args()
    device = pick_device()
    overhead = iteration_overhead(device, args.model, args.batch_size, args.pairs, args.sparsity, args.precision)
    update = mask_update_time(device, args.updates, args.sparsity) if args.updates else None
    result = {
        "benchmark": "dpf",
        "iteration": overhead,
        "mask_update": update,
        "device": describe_device(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    write_json(args.out, result)
    print(overhead["summary"] + " (target <= 5 %)")
    if update is not None:
        print(
            f"WRN-28-8 global magnitude mask over {update['conv_weights']:,} conv weights: "
            f"{update['median_seconds']:.3f} s median of {args.updates}"
        )


if __name__ == "__main__":
    main()
