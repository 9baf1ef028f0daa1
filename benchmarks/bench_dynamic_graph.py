"""Training throughput of DNW's dynamic neural graphs (discrete and continuous time), fp32 and bf16 autocast.

The models of DNW Table 1 (``DiscreteTimeGraph`` with 5 steps, ``ContinuousTimeGraph``
with fixed-step rk4, step 0.5 = 8 function evaluations; 800 nodes, every entry
allowed) with the ``dnw`` method (k = 32,000 real edges of 800 x 800, chosen in
every forward pass), trained with the reference recipe's optimizer (SGD, momentum
0.9, weight decay 1e-4) on random 3x32x32 inputs. For each of ``--steps`` steps
after ``--warmup`` steps the wall time of forward, backward and optimizer step is
recorded. Measured in the same run:

* ``fp32``: today's path (dense aggregation GEMM), the baseline of every ratio;
* ``bf16``: the same model and step under ``torch.autocast(device, bfloat16)``
  (the GEMMs and convolutions in bf16; instance-norm statistics and the ODE state in
  float32);
* for the continuous graph, cheaper fixed-step solvers (a config choice, fp32, speed
  only: their accuracy differs);
* ``solver_error``: how far each fixed-step solver's logits lie from an accurate solution
  (dopri5 at rtol = atol = 1e-6), relative L2 over a batch, same model and mask, fp32 and
  the bf16 of the cpu scale's midpoint solver: "fewer solver evaluations where accuracy allows";
* ``aggregation``: the aggregation product alone, ``[B*H*W, 800] @ W^T`` with the
  masked adjacency, dense fp32 vs a CSR sparse product (``torch.sparse``, with the
  transposes the channels-last layout needs) vs dense bf16; this is why there is no
  sparse aggregation path (the weight gradient would stay a dense GEMM anyway).

The machine may be shared: the load average before and after is recorded, and
medians are reported (the best step is recorded too).

    python benchmarks/bench_dynamic_graph.py [--batch-size 256] [--steps 3] [--threads N] [--smoke]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from rewire.io import write_json
from rewire.methods import apply_method
from rewire.models.tiny_graphs import ContinuousTimeGraph, DiscreteTimeGraph, GraphConfig
from rewire.train.runtime import describe_device, pick_device

# (name, graph class, config changes, autocast); the first of each graph is the baseline of its ratios
CASES = (
    ("discrete_time/fp32", DiscreteTimeGraph, {}, False),
    ("discrete_time/bf16", DiscreteTimeGraph, {}, True),
    ("continuous_time/rk4_h0.5/fp32", ContinuousTimeGraph, {"solver": "rk4", "step_size": 0.5}, False),
    ("continuous_time/rk4_h0.5/bf16", ContinuousTimeGraph, {"solver": "rk4", "step_size": 0.5}, True),
    ("continuous_time/midpoint_h0.5/fp32", ContinuousTimeGraph, {"solver": "midpoint", "step_size": 0.5}, False),
    ("continuous_time/midpoint_h0.5/bf16", ContinuousTimeGraph, {"solver": "midpoint", "step_size": 0.5}, True),
    ("continuous_time/midpoint_h0.25/fp32", ContinuousTimeGraph, {"solver": "midpoint", "step_size": 0.25}, False),
    ("continuous_time/euler_h0.5/fp32", ContinuousTimeGraph, {"solver": "euler", "step_size": 0.5}, False),
    ("continuous_time/euler_h0.25/fp32", ContinuousTimeGraph, {"solver": "euler", "step_size": 0.25}, False),
)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(cls, changes: dict, low_precision: bool, config: GraphConfig, args, device) -> dict:
    torch.manual_seed(0)
    model = cls(config.replace(**changes)).to(device)
    apply_method(model, "dnw", k=config.k, allowed=model.allowed_edges(), targets=("graph.weight",))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    g = torch.Generator().manual_seed(0)
    inputs = torch.randn(args.batch_size, 3, 32, 32, generator=g).to(device)
    targets = torch.randint(0, 10, (args.batch_size,), generator=g).to(device)
    steps = []
    for step in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16) if low_precision else contextlib.nullcontext():
            loss = F.cross_entropy(model(inputs), targets)
        sync(device)
        t1 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        sync(device)
        t2 = time.perf_counter()
        optimizer.step()
        sync(device)
        t3 = time.perf_counter()
        if step >= args.warmup:
            steps.append({"step": t3 - t0, "forward": t1 - t0, "backward": t2 - t1, "optimizer": t3 - t2})
    median = {key: statistics.median(s[key] for s in steps) for key in steps[0]}
    result = {
        "images_per_second": args.batch_size / median["step"],
        "images_per_second_best_step": args.batch_size / min(s["step"] for s in steps),
        "step_ms": 1000 * median["step"],
        "forward_ms": 1000 * median["forward"],
        "backward_ms": 1000 * median["backward"],
        "optimizer_ms": 1000 * median["optimizer"],
        "loss": loss.item(),
    }
    if isinstance(model, ContinuousTimeGraph):
        result["function_evaluations"] = model.last_nfe
    return result


SOLVERS = (("rk4", 0.5), ("midpoint", 0.5), ("midpoint", 0.25), ("euler", 0.5), ("euler", 0.25))


@torch.no_grad()
def solver_errors(config: GraphConfig, args, device) -> dict:
    """Relative L2 distance of each fixed-step solver's logits from dopri5 at rtol = atol = 1e-6."""
    torch.manual_seed(0)
    reference_model = ContinuousTimeGraph(config.replace(solver="dopri5", step_size=None, rtol=1e-6, atol=1e-6))
    reference_model = reference_model.to(device).eval()
    apply_method(reference_model, "dnw", k=config.k, allowed=reference_model.allowed_edges(), targets=("graph.weight",))
    state = reference_model.state_dict()
    inputs = torch.randn(min(args.batch_size, 64), 3, 32, 32, generator=torch.Generator().manual_seed(1)).to(device)
    reference = reference_model(inputs)
    errors = {"reference": "dopri5, rtol = atol = 1e-6", "reference_function_evaluations": reference_model.last_nfe}
    for solver, step in SOLVERS:
        for low in (False, True) if (solver, step) == ("midpoint", 0.5) else (False,):
            model = ContinuousTimeGraph(config.replace(solver=solver, step_size=step)).to(device).eval()
            apply_method(model, "dnw", k=config.k, allowed=model.allowed_edges(), targets=("graph.weight",))
            model.load_state_dict(state)
            with torch.autocast(device.type, dtype=torch.bfloat16) if low else contextlib.nullcontext():
                logits = model(inputs).float()
            name = f"{solver}_h{step}/{'bf16' if low else 'fp32'}"
            errors[name] = float((logits - reference).norm() / reference.norm())
    return errors


def best_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return 1000 * min(times)


def aggregation_products(config: GraphConfig, args, device) -> dict:
    """The aggregation product alone with a DNW-like mask (top-k of |W|): dense fp32, CSR fp32, dense bf16."""
    torch.manual_seed(0)
    n, rows = config.num_nodes, args.batch_size * 64  # 8x8 maps
    weight = torch.empty(n, n, device=device).uniform_(-1, 1)
    threshold = weight.abs().flatten().kthvalue(n * n - config.k).values
    adjacency = torch.where(weight.abs() > threshold, weight, 0.0)
    state = torch.randn(rows, n, device=device)
    state16, adjacency16 = state.bfloat16(), adjacency.bfloat16()
    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state"
        warnings.simplefilter("ignore", UserWarning)
        csr = adjacency.to_sparse_csr()
    repeats = 2 if args.smoke else 5
    dense = best_ms(lambda: state @ adjacency.t(), repeats)
    result = {
        "shape": f"[{rows}, {n}] @ [{n}, {n}] with {int((adjacency != 0).sum())} non-zeros",
        "dense_fp32_ms": dense,
        "csr_fp32_ms": best_ms(lambda: (csr @ state.t()).t().contiguous(), repeats),
        "csr_fp32_without_transposes_ms": best_ms(lambda: csr @ state.t().contiguous(), repeats),
        "to_sparse_csr_ms": best_ms(lambda: adjacency.to_sparse_csr(), repeats),
        "dense_bf16_ms": best_ms(lambda: state16 @ adjacency16.t(), repeats),
        "dense_bf16_with_state_cast_ms": best_ms(lambda: state.bfloat16() @ adjacency16.t(), repeats),
    }
    result["speedup_csr_vs_dense_fp32"] = dense / result["csr_fp32_ms"]
    result["speedup_bf16_vs_dense_fp32"] = dense / result["dense_bf16_ms"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--smoke", action="store_true", help="a seconds-long check for CI: tiny graphs, batch 8")
    parser.add_argument("--out", default=None, help="default: results/dynamic_graph.json (not written by --smoke)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = GraphConfig()
    if args.smoke:
        config = GraphConfig(num_nodes=64, input_nodes=32, output_nodes=16, k=400, steps=2)
        args.batch_size, args.steps, args.warmup = 8, 1, 0
    out = args.out or (None if args.smoke else str(Path(__file__).parent / "results" / "dynamic_graph.json"))

    device = pick_device()
    load_before = os.getloadavg()
    cases = {}
    for name, cls, changes, low in CASES:
        cases[name] = measure(cls, changes, low, config, args, device)
        print(f"{name}: {cases[name]['images_per_second']:.1f} images/s", flush=True)
    aggregation = aggregation_products(config, args, device)
    errors = solver_errors(config, args, device)
    load_after = os.getloadavg()
    for name, case in cases.items():
        baseline = cases["discrete_time/fp32" if name.startswith("discrete") else "continuous_time/rk4_h0.5/fp32"]
        case["ratio_to_fp32_baseline"] = case["images_per_second"] / baseline["images_per_second"]
    result = {
        "benchmark": "dynamic_graph",
        "model": f"nodes={config.num_nodes}, inputs={config.input_nodes}, outputs={config.output_nodes}, "
        f"discrete steps={config.steps}, graph_variant={config.graph_variant}",
        "method": "dnw",
        "k": config.k,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "warmup": args.warmup,
        "smoke": args.smoke,
        "baselines": {
            "discrete_time": "discrete_time/fp32",
            "continuous_time": "continuous_time/rk4_h0.5/fp32",
            "note": "fp32 is today's dense-aggregation path; ratios are images/s over the baseline of the same run",
        },
        "cases": cases,
        "aggregation": aggregation,
        "solver_error": errors,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": {"before": load_before[0], "after": load_after[0]},
        "device": describe_device(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if out:
        write_json(out, result)
    print(
        f"batch {args.batch_size}, {result['device']}: "
        + "; ".join(
            f"{n} {c['images_per_second']:.0f} img/s (x{c['ratio_to_fp32_baseline']:.2f})" for n, c in cases.items()
        )
        + f"; aggregation GEMM dense fp32 {aggregation['dense_fp32_ms']:.1f} ms, CSR {aggregation['csr_fp32_ms']:.1f} ms, "
        f"bf16 {aggregation['dense_bf16_ms']:.1f} ms; load {load_before[0]:.1f}->{load_after[0]:.1f}"
    )


if __name__ == "__main__":
    main()
