"""Training speed of each cpu-scale DVC stage's main model under the speed options of issue 20 (point 8).

For every stage's main model -- built by the stage's own builders from its ``cpu:`` block of ``scales.yaml``,
with the stage's method attached (the sparsifying parametrizations cost time) and its optimizer recipe -- the
wall time of a training step (the per-step callbacks the stage trains with, forward, loss, backward, optimizer
step; the order of :class:`rewire.train.Trainer`) is measured on real batches of the prepared CIFAR-10 cache
(the stage's training loader, random crop and flip included; fetching the batch is timed apart and not counted)
under these variants, each as a ratio of images/s to the fp32 baseline measured in the same process:

* ``fp32``: float32, channels-first, the block's batch size (the baseline, ratio 1.0);
* ``bf16``: bfloat16 autocast (``rewire.train.trainer.autocast``) with channels-first memory;
* ``bf16_channels_last``: the repository's ``precision: bf16`` (autocast, model and inputs channels-last);
* ``compile_fp32`` / ``compile_best``: ``torch.compile(model)`` (default mode) in fp32 and in the fastest of
  the three eager variants above; the first step (compilation) is timed apart as ``first_step_seconds``,
  images/s are the steady state after the warm-up. A compile error is recorded, not raised;
* ``batch_x2_fp32`` / ``batch_x2_best``: twice the block's batch size, fp32 and the fastest eager variant.
  Throughput only: training at that batch would scale the learning rate linearly (Goyal et al. 2017); nothing
  here says how well it trains.

Images/s = batch size / median step time over ``--steps`` steps after ``--warmup`` steps. The variants run one
after the other; the fp32 baseline runs once more at the end of each model (``fp32_again_at_end``, its ratio
to the first): far from 1, the machine's speed changed meanwhile and the ratios of that model are not to be
trusted. The load average before and after is recorded too. Callbacks that act per epoch (evaluation,
wiring records, graph diagnostics every few steps) are not part of a step. A stage whose builder fails is
reported by name and skipped; the others go on. Writes ``benchmarks/results/stage_speed.json``.

    python benchmarks/bench_stage_speed.py [--stages quickstart dpf_sweeps] [--steps 20] [--warmup 3] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn as nn

from rewire.io import write_json
from rewire.train.runtime import describe_device, pick_device
from rewire.train.trainer import TrainingHparams, autocast, build_optimizer, to_memory_format

# name -> (bf16 autocast, channels-last, torch.compile, batch multiple); "best": the fastest eager variant's
# precision and memory format. The first is the baseline of every ratio.
VARIANTS: dict[str, tuple[bool | str, bool | str, bool, int]] = {
    "fp32": (False, False, False, 1),
    "bf16": (True, False, False, 1),
    "bf16_channels_last": (True, True, False, 1),
    "compile_fp32": (False, False, True, 1),
    "compile_best": ("best", "best", True, 1),
    "batch_x2_fp32": (False, False, False, 2),
    "batch_x2_best": ("best", "best", False, 2),
}
BASELINE = "fp32"
EAGER = ("fp32", "bf16", "bf16_channels_last")  # the candidates for "best"
STAGES = ("quickstart", "tiny_graphs", "mobilenet_dnw", "dpf_sweeps", "robust_binary", "benchmark")
QUICK_STEPS, QUICK_WARMUP = 2, 1
SEED = 0  # the run seed every model is built with (seed 0 of each stage)
DPF_SPARSITY = 0.9  # the DPF sweep's main point (DPF Tables 1, 2), its mask held at the target as after the ramp
ROBUST_ROW = "ours_p01"  # the robust-binary stage's main row: edge-popup, keep 0.05, p = 0.1, fast training


@dataclass
class Prepared:
    """One fresh model of a stage, ready to train: its optimizer recipe, training loader and per-step callbacks."""

    model: nn.Module
    hparams: TrainingHparams
    loader: Any
    callbacks: list = field(default_factory=list)


@dataclass
class Case:
    """A stage's main model: ``build(batch_size)`` returns a fresh :class:`Prepared` (one per variant)."""

    name: str
    stage: str
    model: str
    method: str
    batch_size: int
    stage_precision: str
    build: Callable[[int], Prepared]
    note: str = ""


# ------------------------------------------------------------------------------------------------- measuring


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _endless(loader):
    while True:
        yield from loader


def _step(clock, model, criterion, callbacks, inputs, targets, low_precision: bool, channels_last: bool):
    """One training step in the order of ``Trainer._train_one_epoch`` (no learning-rate schedule)."""
    for callback in callbacks:
        replaced = callback.on_batch_start(clock, inputs, targets)
        if replaced is not None:
            inputs, targets = replaced
    with autocast("bf16" if low_precision else "fp32", inputs.device):
        loss = None
        for callback in callbacks:
            loss = callback.training_loss(clock, inputs, targets)
            if loss is not None:
                break
        if loss is None:
            shaped = to_memory_format(inputs, "bf16") if channels_last else inputs
            loss = criterion(model(shaped), targets)
    clock.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    for callback in callbacks:
        callback.on_after_backward(clock)
    step = clock.optimizer.step
    for callback in reversed(callbacks):
        step = functools.partial(callback.optimizer_step, clock, step)
    step()
    clock.global_step += 1
    for callback in callbacks:
        callback.on_batch_end(clock, loss)
    return loss


def measure(
    prepared: Prepared,
    *,
    low_precision: bool,
    channels_last: bool,
    compiled: bool,
    steps: int,
    warmup: int,
    device: torch.device,
) -> dict[str, Any]:
    """Images/s of ``prepared`` (median step over ``steps`` steps after ``warmup``), with its step times.

    ``channels_last`` converts the model before its optimizer is built, as the trainer does under bf16."""
    model = prepared.model.train()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, prepared.hparams)
    runnable = torch.compile(model) if compiled else model
    criterion = nn.CrossEntropyLoss(label_smoothing=prepared.hparams.label_smoothing)
    clock = SimpleNamespace(  # what the stages' per-step callbacks read of the trainer
        model=runnable,
        optimizer=optimizer,
        hparams=prepared.hparams,
        global_step=0,
        epoch=0,
        batches_per_epoch=len(prepared.loader),
    )
    batches = _endless(prepared.loader)
    step_seconds, data_seconds, first_step = [], [], None
    loss = None
    for index in range(warmup + steps):
        fetch = time.perf_counter()
        inputs, targets = next(batches)
        _sync(device)
        started = time.perf_counter()
        loss = _step(clock, runnable, criterion, prepared.callbacks, inputs, targets, low_precision, channels_last)
        _sync(device)
        seconds = time.perf_counter() - started
        if index == 0:
            first_step = seconds
        if index >= warmup:
            step_seconds.append(seconds)
            data_seconds.append(started - fetch)
    batch = int(targets.numel())
    median = statistics.median(step_seconds)
    return {
        "images_per_second": batch / median,
        "images_per_second_best_step": batch / min(step_seconds),
        "batch_size": batch,
        "step_ms_median": 1000 * median,
        "step_ms": [1000 * s for s in step_seconds],
        "data_ms_per_batch": 1000 * statistics.median(data_seconds),
        "first_step_seconds": first_step,
        "loss_finite": bool(torch.isfinite(loss.detach().float()).item()),
    }


def _error(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= 4000 else text[:4000] + " [...]"


def measure_case(
    case: Case, variants: Sequence[str], *, steps: int, warmup: int, device: torch.device, log=print
) -> dict[str, Any]:
    """Every variant of ``variants`` (the baseline always first) for ``case``; ratios to its fp32 baseline."""
    wanted = [v for v in VARIANTS if v == BASELINE or v in variants]  # "best" needs the eager ones first
    results: dict[str, dict[str, Any]] = {}
    best = BASELINE
    for name in wanted:
        low, last, compiled, multiple = VARIANTS[name]
        if "best" in (low, last):
            low, last = VARIANTS[best][:2]
            twin = name.replace("_best", "_fp32")  # the same settings when fp32 was the fastest
            if best == BASELINE and twin in results:
                results[name] = {**results[twin], "best_eager": best, "same_as": twin}
                continue
        settings = {"bf16_autocast": bool(low), "channels_last": bool(last), "compiled": compiled}
        batch_size = case.batch_size * multiple
        try:
            prepared = case.build(batch_size)
            torch.manual_seed(SEED)
            result = measure(
                prepared, low_precision=low, channels_last=last, compiled=compiled, steps=steps, warmup=warmup,
                device=device,
            )  # fmt: skip
        except Exception as error:  # noqa: BLE001 -- a failing variant (a compile error) is recorded, not raised
            if name == BASELINE:
                raise
            log(f"  {case.name} / {name}: failed ({_error(error).splitlines()[0]})")
            results[name] = {**settings, "batch_size": batch_size, "error": _error(error)}
            continue
        if compiled:
            result["compile_seconds"] = max(0.0, result["first_step_seconds"] - result["step_ms_median"] / 1000)
        if "best" in VARIANTS[name][:2]:
            result["best_eager"] = best
        results[name] = {**settings, **result}
        if name in EAGER and result["images_per_second"] > results[best]["images_per_second"]:
            best = name
        log(f"  {case.name} / {name}: {result['images_per_second']:.1f} images/s (batch {batch_size})")
    baseline = results[BASELINE]["images_per_second"]
    for result in results.values():
        if "images_per_second" in result:
            result["ratio_to_fp32"] = result["images_per_second"] / baseline
    drift = {}
    if len(results) > 1:  # the baseline once more: did the machine's speed change while the variants ran?
        again = measure(case.build(case.batch_size), low_precision=False, channels_last=False, compiled=False,
                        steps=steps, warmup=warmup, device=device)  # fmt: skip
        drift = {
            "images_per_second": again["images_per_second"],
            "ratio_to_first": again["images_per_second"] / baseline,
        }
        log(f"  {case.name} / fp32 again: {again['images_per_second']:.1f} images/s (x{drift['ratio_to_first']:.2f})")
    return {
        "stage": case.stage,
        "model": case.model,
        "method": case.method,
        "batch_size": case.batch_size,
        "stage_precision": case.stage_precision,
        "best_eager": best,
        **({"note": case.note} if case.note else {}),
        "variants": results,
        **({"fp32_again_at_end": drift} if drift else {}),
    }


# ------------------------------------------------------------------------------------- the stages' main models


@dataclass(frozen=True)
class Where:
    """What every stage's builder reads: the CIFAR-10 cache, the device, its root, a never-written checkpoint root."""

    data: Any
    device: torch.device
    data_root: str
    checkpoint_root: str


def _config(stage: str):
    from rewire.__main__ import load_config

    return load_config(stage, "cpu")[1]


def _spec_text(spec, keys: Sequence[str] | None = None) -> str:
    """``name(key=value, ...)`` of a ModelSpec (``keys``: only these); no arguments: the builder's defaults."""
    shown = {k: v for k, v in spec.kwargs.items() if v is not None and (keys is None or k in keys)}
    return f"{spec.name}({', '.join(f'{k}={v}' for k, v in shown.items())})" if shown else f"{spec.name}(defaults)"


def _context(data, device, batch_size: int, code: str, root: str):
    from rewire.experiments.engine import RunContext

    return RunContext(data, device, batch_size, root, code=(code,))


def _train_loader(ctx, batch_size: int):
    return dataclasses.replace(ctx, batch_size=batch_size).loaders(SEED)[0]


def quickstart_cases(where: Where) -> list[Case]:
    full, device, root = where.data, where.device, where.checkpoint_root
    from rewire.experiments.engine import ModelSpec
    from rewire.experiments.quickstart import plan, runs

    config = _config("quickstart")
    spec = ModelSpec.from_dict(next(s for s in plan(config) if s.row == "fp32").settings["model"])
    ctx = _context(full, device, config.batch_size, runs.__name__, root)

    def build(batch_size: int) -> Prepared:
        return Prepared(ctx.build(spec, SEED), runs.recipe(config, "fp32"), _train_loader(ctx, batch_size))

    return [Case("quickstart", "quickstart", _spec_text(spec), "dense", config.batch_size, config.precision, build)]


def tiny_graph_cases(where: Where) -> list[Case]:
    full, device, root = where.data, where.device, where.checkpoint_root
    from rewire.experiments.engine import ModelSpec
    from rewire.experiments.tiny_graphs import plan, runs
    from rewire.methods.dnw import apply_method
    from rewire.train.runtime import Seeds

    config = _config("tiny_graphs")
    ctx = _context(full, device, config.batch_size, runs.__name__, root)
    cases = []
    for setting in ("static", "discrete_time"):
        spec = ModelSpec.from_dict(next(s for s in plan(config) if s.row == f"{setting}_dnw").settings["model"])

        def build(batch_size: int, spec=spec, setting=setting) -> Prepared:
            model = ctx.build(spec, SEED)  # as runs.run_one: DNW on the adjacency, from outside
            apply_method(model, "dnw", k=model.config.k, allowed=model.allowed_edges(),
                         seed=Seeds.from_run_seed(SEED).model, targets=("graph.weight",))  # fmt: skip
            return Prepared(model, runs.recipe(config, setting), _train_loader(ctx, batch_size))

        name = f"tiny_graphs/{setting}"
        text = _spec_text(spec, ("num_nodes", "k", "steps", "graph_variant"))
        cases.append(Case(name, "tiny_graphs", text, "dnw", config.batch_size, config.precision, build))
    return cases


def mobilenet_cases(where: Where) -> list[Case]:
    full, device, root = where.data, where.device, where.checkpoint_root
    from rewire.experiments.mobilenet_dnw import runs
    from rewire.experiments.mobilenet_dnw.runs import _stage_seed  # the stage's per-stage seeds, as run_one
    from rewire.methods.dnw import apply_method
    from rewire.models.mobilenet_dnw import edge_budgets, topk_candidates

    config = _config("mobilenet_dnw")
    spec = config.graph_spec(len(full.classes))
    ctx = _context(full, device, config.batch_size, runs.RUNS_MODULE, root)

    def build(batch_size: int) -> Prepared:
        model = ctx.build(spec, SEED)  # as runs.run_one for the "dnw" row
        for budget in edge_budgets(model, config.width):
            apply_method(model, "dnw", k=budget.k, allowed=topk_candidates(budget, config.graph_variant),
                         seed=_stage_seed(SEED, budget.index), targets=(budget.target,))  # fmt: skip
        return Prepared(model, runs.recipe(config), _train_loader(ctx, batch_size))

    text = f"MobileNetV1-DNW x{config.width} (node_width {config.node_width})"
    note = "the graph diagnostics callback (every few steps over the first 200) is not part of a step"
    return [Case("mobilenet_dnw", "mobilenet_dnw", text, "dnw", config.batch_size, config.precision, build, note)]


def dpf_cases(where: Where) -> list[Case]:
    full, device, root = where.data, where.device, where.checkpoint_root
    from rewire import methods
    from rewire.experiments.dpf_sweeps import runs
    from rewire.methods.dpf import SparsitySchedule

    config = _config("dpf_sweeps")
    point = config.recipe()
    ctx = runs.make_context(point, full, device, root)

    def build(batch_size: int) -> Prepared:
        model = ctx.fresh_model(SEED)  # as the overhead benchmark: the mask at the target sparsity from step 0
        schedule = SparsitySchedule(final=DPF_SPARSITY, initial=DPF_SPARSITY, end=1.0)
        attached = methods.get("dpf").attach(model, schedule=schedule, update_every=point.update_every)
        return Prepared(model, runs.recipe(point), _train_loader(ctx, batch_size), list(attached.callbacks))

    note = f"DPF at sparsity {DPF_SPARSITY}, global magnitude mask every {point.update_every} steps (in the step)"
    text = _spec_text(ctx.model_spec())
    return [Case("dpf_sweeps", "dpf_sweeps", text, "dpf", point.batch_size, point.precision, build, note)]


def robust_cases(where: Where) -> list[Case]:
    full, device, root = where.data, where.device, where.checkpoint_root
    from rewire.experiments.robust_binary import runs

    config = _config("robust_binary")
    row = config.row(ROBUST_ROW)
    data, _, _ = runs.load_data(config, where.data_root)
    base = _context(data, device, row.batch_size, runs.RUNS_MODULE, root)
    cases = []
    for training in ("clean", "fast"):

        def build(batch_size: int, training=training) -> Prepared:
            setup = dataclasses.replace(row, training=training, batch_size=batch_size)
            model, _, _ = runs.build_model(base, setup, SEED)
            train = runs.PixelRunContext.for_row(base, setup).loaders(SEED)[0]
            callbacks = [runs.ProtocolFastATTATraining(setup, train, SEED)] if training == "fast" else []
            return Prepared(model, runs.recipe(setup), train, callbacks)

        spec = runs.model_spec(row, len(full.classes))
        text = f"{spec.name}(widths={list(row.widths)}), edge-popup keep {row.keep}, p {row.p}"
        note = (
            "FGSM with random start from ATTA's cache (Algorithm 2) before the step, outside autocast as in the trainer"
            if training == "fast"
            else "the row's network trained on clean batches (no attack)"
        )
        cases.append(
            Case(f"robust_binary/{training}", "robust_binary", text, "edge_popup", row.batch_size, row.precision,
                 build, note)
        )  # fmt: skip
    return cases


def benchmark_cases(where: Where) -> list[Case]:
    full, device, root = where.data, where.device, where.checkpoint_root
    from rewire.experiments.base import RunContextSpec
    from rewire.experiments.benchmark import runs

    config = _config("benchmark")
    ctx = runs.make_context(config, RunContextSpec(checkpoint_root=root, device=device), full, None)

    def build(batch_size: int) -> Prepared:
        return Prepared(ctx.fresh_model(SEED), runs.recipe(ctx), _train_loader(ctx, batch_size))

    text = _spec_text(ctx.model_spec())
    return [Case("benchmark", "benchmark", text, "dense", config.batch_size, config.precision, build)]


BUILDERS: dict[str, Callable[..., list[Case]]] = {
    "quickstart": quickstart_cases,
    "tiny_graphs": tiny_graph_cases,
    "mobilenet_dnw": mobilenet_cases,
    "dpf_sweeps": dpf_cases,
    "robust_binary": robust_cases,
    "benchmark": benchmark_cases,
}


# -------------------------------------------------------------------------------------------------- the command


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stages", nargs="+", default=list(STAGES), metavar="STAGE", help=f"of {', '.join(STAGES)}")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), metavar="VARIANT",
                        help=f"of {', '.join(VARIANTS)} (fp32, the baseline, is always measured)")  # fmt: skip
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant (>= 1)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (>= 1: the compile step)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_STEPS} steps, {QUICK_WARMUP} warm-up (tests)")
    parser.add_argument("--data-root", default="data")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "stage_speed.json"))
    args = parser.parse_args(argv)
    for option, given, known, example in (("--stages", args.stages, STAGES, "--stages quickstart dpf_sweeps"),
                                          ("--variants", args.variants, VARIANTS, "--variants fp32 bf16")):  # fmt: skip
        unknown = [v for v in given if v not in known]
        if unknown:
            parser.error(f"{option}: {', '.join(unknown)} unknown; choose from {', '.join(known)} (e.g. {example})")
    if args.quick:
        args.steps, args.warmup = QUICK_STEPS, QUICK_WARMUP
    if args.steps < 1 or args.warmup < 1:
        parser.error(f"--steps {args.steps} / --warmup {args.warmup}: both must be >= 1 (e.g. --steps 20 --warmup 3)")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads {args.threads}: must be >= 1 (e.g. --threads 2)")
    return args


def table(stages: dict[str, dict[str, Any]], variants: Sequence[str]) -> str:
    """images/s and (ratio to fp32) per case and variant; 'failed' where a variant or a builder failed."""
    columns = [BASELINE, *(v for v in variants if v != BASELINE)]
    header = f"{'stage / model':<26}" + "".join(f"{v:>22}" for v in columns)
    lines = [header, "-" * len(header)]
    for name, entry in stages.items():
        if "error" in entry:
            lines.append(f"{name:<26}  builder failed: {entry['error'].splitlines()[0][:80]}")
            continue
        cells = []
        for variant in columns:
            result = entry["variants"].get(variant, {})
            cell = (
                f"{result['images_per_second']:.0f} (x{result['ratio_to_fp32']:.2f})"
                if "images_per_second" in result
                else "failed"
            )
            cells.append(f"{cell:>22}")
        lines.append(f"{name:<26}" + "".join(cells))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from rewire import data as rdata

    device = pick_device()
    full = rdata.load("cifar10", root=args.data_root)
    load_before = os.getloadavg()
    started = time.perf_counter()
    stages: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="stage_speed-") as root:  # the contexts' checkpoint root: never written
        for stage in dict.fromkeys(args.stages):
            print(f"{stage}:", flush=True)
            try:
                cases = BUILDERS[stage](Where(full, device, args.data_root, root))
            except Exception as error:  # noqa: BLE001 -- one stage's failure must not stop the others
                print(f"  {stage}: the builder failed, stage skipped: {_error(error)}", file=sys.stderr, flush=True)
                stages[stage] = {"stage": stage, "error": _error(error), "traceback": traceback.format_exc()}
                continue
            for case in cases:
                try:
                    stages[case.name] = measure_case(
                        case, args.variants, steps=args.steps, warmup=args.warmup, device=device,
                        log=lambda text: print(text, flush=True),
                    )  # fmt: skip
                except Exception as error:  # noqa: BLE001 -- the baseline failed: nothing to compare with
                    message = f"building or training the fp32 baseline failed: {_error(error)}"
                    print(f"  {case.name}: {message}; skipped", file=sys.stderr, flush=True)
                    stages[case.name] = {"stage": stage, "error": message, "traceback": traceback.format_exc()}
    load_after = os.getloadavg()
    result = {
        "benchmark": "stage_speed",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": describe_device(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average": {"before": list(load_before), "after": list(load_after), "order": "1, 5, 15 minutes"},
        "data_source": full.source.get("kind"),
        "steps": args.steps,
        "warmup": args.warmup,
        "quick": args.quick,
        "wall_seconds": time.perf_counter() - started,
        "baseline": BASELINE,
        "variants": {
            name: dict(zip(("bf16_autocast", "channels_last", "compiled", "batch_multiple"), flags))
            for name, flags in VARIANTS.items()
            if name in args.variants or name == BASELINE
        },  # fmt: skip
        "learning_rate_note": "batch_x2_*: throughput only; training there would scale the lr linearly",
        "stages": stages,
    }
    write_json(args.out, result)
    print()
    print(table(stages, args.variants))
    print(
        f"{result['device']}, torch {result['torch']}, {result['threads']} threads; load "
        f"{load_before[0]:.1f} -> {load_after[0]:.1f}; {result['wall_seconds']:.0f} s; written to {args.out}"
    )
    return result


if __name__ == "__main__":
    main()
