"""The central claims and the benchmark at the ``gpu`` scale, on one GPU, beside the cpu results (``make gpu-evidence``).

    python -m rewire.pipeline.gpu_evidence                 # every evidence stage at the gpu scale -> results/gpu/
    python -m rewire.pipeline.gpu_evidence --jobs 3        # three stages share the GPU at a time
    python -m rewire.pipeline.gpu_evidence --scale smoke --out-root /tmp/e   # the plumbing, on a CPU (the test)

It runs the same commands as the DVC stages of :data:`EVIDENCE_STAGES` (read from ``dvc.yaml``), with
``--scale`` set and every ``results/<stage>`` moved under ``--out-root``, so the cpu results that
``dvc repro`` owns are never overwritten, and DVC's lock file is untouched. Stages that read another
stage's output (``dpf_sweeps`` reads ``dpf_runs``) wait for it; the others run ``--jobs`` at a time.
Each stage writes its results atomically (:mod:`rewire.pipeline.stage`), labelled with the device,
and its log to ``<out-root>/logs/<stage>.log``; ``<out-root>/evidence.json`` records the scale, the
device, the commit, and each stage's wall time and exit status.

Before any work: the ``gpu`` scale needs CUDA (a clear message and exit status 2 without it), and
every block at the scale is checked against its experiment's schema.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

import yaml

from rewire.experiments.schema import ConfigError
from rewire.pipeline import validate
from rewire.pipeline.params import ParamsError, load

# The stages that decide the papers' central claims, and the cross-method benchmark (issue 20)
EVIDENCE_STAGES = ("tiny_graphs", "mobilenet_dnw", "robust_binary", "dpf_runs", "dpf_runs_2", "dpf_sweeps", "benchmark")
RESULTS = "results"
NEEDS_CUDA = ("gpu",)  # scales sized for a GPU: refused on a machine without CUDA


class EvidenceError(RuntimeError):
    """The evidence run cannot start: no CUDA for a GPU scale, a bad block, an unknown stage."""


def stage_plan(scale: str, out_root: str, stages=None, dvc_yaml="dvc.yaml", params="params.yaml") -> dict:
    """``{stage: {"cmd": [...], "after": [stages]}}``: each evidence stage's DVC command at ``scale``, its
    outputs under ``out_root`` instead of ``results/``, and the evidence stages whose outputs it reads."""
    dvc_stages = yaml.safe_load(Path(dvc_yaml).read_text(encoding="utf-8"))["stages"]
    blocks = load(params).get(scale) or {}
    wanted = list(stages) if stages else [s for s in EVIDENCE_STAGES if s in dvc_stages]
    unknown = [s for s in wanted if s not in dvc_stages]
    if unknown:
        raise EvidenceError(f"unknown stage {', '.join(unknown)}: choose among {', '.join(EVIDENCE_STAGES)}")
    plan = {}
    for stage in wanted:
        words = shlex.split(dvc_stages[stage]["cmd"])
        block = validate.stage_block(stage, words)
        if block not in blocks:
            raise EvidenceError(f"scales.yaml has no '{scale}.{block}' block for stage {stage}; add one")
        words = [sys.executable if w == "python" else _moved(w, out_root) for w in words]
        words += ["--scale", scale]
        deps = [str(d) for d in dvc_stages[stage].get("deps", [])]
        after = [other for other in wanted if other != stage and f"{RESULTS}/{other}" in deps]
        plan[stage] = {"cmd": words, "after": after}
    return plan


def _moved(word: str, out_root: str) -> str:
    """``results/x`` -> ``<out_root>/x``, also inside ``runs_dir=../results/x`` (a path from notebooks/)."""
    root = out_root.rstrip("/")
    if word.startswith(f"{RESULTS}/"):
        return f"{root}/{word[len(RESULTS) + 1 :]}"
    name, sep, value = word.partition("=")
    if sep and value.startswith(f"../{RESULTS}/"):
        target = Path(root) / value[len(RESULTS) + 4 :]
        return f"{name}={target.resolve() if target.is_absolute() else Path('..') / target}"
    return word


def check_before_work(scale: str, params: str = "params.yaml", dvc_yaml: str = "dvc.yaml") -> str:
    """The device the run will use; refuses a GPU scale without CUDA and a bad block, before any work."""
    import torch

    if scale in NEEDS_CUDA and not torch.cuda.is_available():
        raise EvidenceError(
            f"the '{scale}' scale is sized for a GPU and this machine has no CUDA device (torch {torch.__version__}). "
            f"On a CPU: `make repro` (the cpu scale), or `python -m rewire.pipeline.gpu_evidence --scale smoke "
            f"--out-root /tmp/evidence` to try the plumbing"
        )
    try:
        validate.check_pipeline(params, dvc_yaml, scale=scale)
    except (ParamsError, ConfigError) as error:
        raise EvidenceError(str(error)) from error
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def run_stages(plan: dict, out_root: Path, jobs: int) -> dict:
    """Run ``plan`` with ``jobs`` stages at a time, each after the stages it reads; return each stage's
    ``{"returncode", "wall_s", "log"}``. A stage whose input stage failed is skipped (returncode None)."""
    logs = out_root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    done: dict[str, dict] = {}
    running: dict[Future, str] = {}

    def launch(stage: str) -> dict:
        log = logs / f"{stage}.log"
        start = time.perf_counter()
        with log.open("w", encoding="utf-8") as out:
            returncode = subprocess.run(
                plan[stage]["cmd"], stdout=out, stderr=subprocess.STDOUT, check=False
            ).returncode
        return {"returncode": returncode, "wall_s": round(time.perf_counter() - start, 1), "log": str(log)}

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        while len(done) < len(plan):
            for stage, step in plan.items():
                if stage in done or stage in running.values():
                    continue
                if any(d in done and done[d]["returncode"] != 0 for d in step["after"]):
                    done[stage] = {"returncode": None, "wall_s": 0.0, "log": "", "skipped": "an input stage failed"}
                elif all(d in done for d in step["after"]) and len(running) < jobs:
                    print(f"[gpu-evidence] start {stage}", flush=True)
                    running[pool.submit(launch, stage)] = stage
            if running:
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in finished:
                    stage = running.pop(future)
                    done[stage] = future.result()
                    print(
                        f"[gpu-evidence] {stage}: exit {done[stage]['returncode']} in {done[stage]['wall_s']} s",
                        flush=True,
                    )
    return done


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rewire.pipeline.gpu_evidence", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scale", default="gpu", help="the scale's blocks to run (default gpu; smoke to test on a CPU)"
    )
    parser.add_argument(
        "--out-root", default=f"{RESULTS}/gpu", help="where the stages' results go (default results/gpu)"
    )
    parser.add_argument("--stages", default="", help=f"comma-separated subset of {', '.join(EVIDENCE_STAGES)}")
    parser.add_argument("--jobs", type=int, default=3, help="stages sharing the device at once (default 3)")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--dry-run", action="store_true", help="print the commands and stop")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    try:
        device = None if args.dry_run else check_before_work(args.scale, args.params)
        plan = stage_plan(args.scale, args.out_root, [s for s in args.stages.split(",") if s], params=args.params)
    except (EvidenceError, ParamsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.dry_run:
        for stage, step in plan.items():
            after = f"   (after {', '.join(step['after'])})" if step["after"] else ""
            print(f"{stage}: {shlex.join(step['cmd'])}{after}")
        return 0
    out_root = Path(args.out_root)
    start = time.perf_counter()
    stages = run_stages(plan, out_root, args.jobs)
    record = {
        "scale": args.scale,
        "device": device,
        "commit": _commit(),
        "jobs": args.jobs,
        "wall_s": round(time.perf_counter() - start, 1),
        "stages": {s: {k: v for k, v in r.items() if k != "log"} for s, r in stages.items()},
    }
    tmp = out_root / ".evidence.json.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out_root / "evidence.json")
    failed = [s for s, r in stages.items() if r["returncode"] != 0]
    print(f"[gpu-evidence] {len(stages) - len(failed)}/{len(stages)} stages done in {record['wall_s']} s on {device}")
    if failed:
        print(f"failed or skipped: {', '.join(failed)} (logs in {out_root / 'logs'})", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
