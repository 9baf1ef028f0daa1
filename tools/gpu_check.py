#!/usr/bin/env python
"""Check the repository on a machine with one CUDA GPU, in one command, in under 8 minutes.

    python tools/gpu_check.py [--out reports/gpu_check.json] [--skip-notebooks] [--skip-benchmarks]

Steps, each a subprocess with its own timeout inside one overall time budget (``--budget``,
default 450 s; a step never gets more than what is left of it, and a step that would start
with less than 20 s left is recorded as skipped), with a progress line when a step starts and
one when it ends:

1. **CUDA tests**: ``python -m pytest -m cuda tests`` (the tests of ``tests/test_cuda.py``:
   masks, gradient routes, data loader and a short ``Trainer`` run on the GPU, compared
   with the CPU). It passes only if pytest exits 0, at least one test ran and *none* was
   skipped: on a GPU machine a skipped CUDA test means the GPU was not seen.
2. **Data**: ``python -m rewire.data prepare --dataset cifar10 --root data --no-download``
   (verifies an existing cache, or builds it from ``--data-archive`` / ``$REWIRE_DATA_ARCHIVE``
   / ``../shared/datasets/cifar10-jpeg.tar.gz``). Only run when a later step needs the data;
   without data those steps are recorded as skipped and the check is "incomplete".
3. **Notebooks**: every ``notebooks/*.ipynb`` executed with papermill, kernel ``python3``,
   working directory ``notebooks/`` (their relative ``data_root = "../data"`` resolves as in
   JupyterLab), into the work directory; the committed notebooks carry the smoke parameter
   values, so nothing is injected (except ``data_root`` when ``--data-root`` is not the default).
4. **Benchmarks**: every ``benchmarks/bench_*.py`` with its default arguments and
   ``--out`` pointing into the work directory (so the committed CPU measurements in
   ``benchmarks/results/`` are not overwritten; ``--bench-results-dir benchmarks/results``
   to replace them on purpose). Each JSON result is copied into the report; a benchmark
   whose result does not name a CUDA device fails the check.

Why papermill rather than ``pytest --nbval notebooks``: the committed notebooks hold no
outputs, so nbval's output comparison would check nothing more than "every cell ran", which
is exactly what papermill checks; papermill additionally gives one step (and one timeout,
one wall time, one return code) per notebook, writes the executed copy with its outputs and
the failing cell's traceback for inspection, and a per-cell ``--execution-timeout``. nbval
remains what ``make test`` runs on the CPU.

The report (``--out``) is one JSON file: the device name, torch and CUDA versions, the driver
version (``nvidia-smi``, else ``pynvml``, else the CUDA driver API version from torch), and per
step the command, return code, wall seconds, pass/fail and the last lines of output (full logs,
executed notebooks and benchmark JSON files stay in ``--work-dir``).

Exit status: 0 when every step passed, or when there is no CUDA GPU (then nothing is run: the
CUDA tests skip cleanly on such a machine); 1 when a step failed or timed out; 3 when nothing
failed but a step was skipped for lack of data or time.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
BENCHMARKS = REPO / "benchmarks"
DEFAULT_DATA_ROOT = "data"
# Where `make data` finds the offline JPEG copy: beside the repository, or inside it on a machine
# that received the repository together with shared/.
ARCHIVE_CANDIDATES = tuple(base / "shared" / "datasets" / "cifar10-jpeg.tar.gz" for base in (REPO.parent, REPO))
NO_CUDA_MESSAGE = (
    "no CUDA GPU present: nothing to check (CUDA tests skip cleanly; run `make gpu-check` on a GPU machine)"
)
MIN_STEP_SECONDS = 20.0

EXIT_PASS, EXIT_FAIL, EXIT_INCOMPLETE = 0, 1, 3


# ----------------------------------------------------------------------------- environment


def _run_quiet(cmd: list[str], timeout: float = 15.0) -> str | None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_commit() -> str:
    commit = _run_quiet(["git", "rev-parse", "--short", "HEAD"])
    if commit is None:
        return "unknown"
    dirty = _run_quiet(["git", "status", "--porcelain", "--untracked-files=no"])
    return commit + ("-dirty" if dirty else "")


def driver_version(torch) -> dict:
    """NVIDIA driver version from nvidia-smi, else pynvml; always the CUDA driver API version torch sees."""
    info: dict = {"driver_version": None, "driver_version_source": None}
    if shutil.which("nvidia-smi"):
        out = _run_quiet(["nvidia-smi", "--query-gpu=driver_version,name,memory.total", "--format=csv,noheader"])
        if out:
            first = [part.strip() for part in out.splitlines()[0].split(",")]
            info.update(
                driver_version=first[0], driver_version_source="nvidia-smi", nvidia_smi_gpu=", ".join(first[1:])
            )
    if info["driver_version"] is None:
        try:
            import pynvml  # type: ignore

            pynvml.nvmlInit()
            version = pynvml.nvmlSystemGetDriverVersion()
            info.update(
                driver_version=version.decode() if isinstance(version, bytes) else str(version),
                driver_version_source="pynvml",
            )
        except Exception:  # noqa: BLE001 - optional: any failure only means "unknown"
            pass
    try:
        api = int(torch._C._cuda_getDriverVersion())  # e.g. 12080: the newest CUDA the driver supports
        info["cuda_driver_api_version"] = f"{api // 1000}.{(api % 1000) // 10}"
        if info["driver_version"] is None:
            info["driver_version_source"] = "unavailable (no nvidia-smi or pynvml); see cuda_driver_api_version"
    except Exception:  # noqa: BLE001
        info["cuda_driver_api_version"] = None
    return info


def describe_environment() -> dict:
    import torch

    env = {
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_cuda_build": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    if env["cuda_available"]:
        props = torch.cuda.get_device_properties(0)
        env.update(
            device_count=torch.cuda.device_count(),
            device=torch.cuda.get_device_name(0),
            compute_capability=".".join(map(str, torch.cuda.get_device_capability(0))),
            device_memory_gib=round(props.total_memory / 2**30, 1),
            cudnn=torch.backends.cudnn.version(),
            **driver_version(torch),
        )
    return env


# ----------------------------------------------------------------------------- steps


class Runner:
    """Runs the steps one after the other within the overall time budget and keeps their records."""

    def __init__(self, args: argparse.Namespace, work_dir: Path) -> None:
        self.args = args
        self.work_dir = work_dir
        self.logs = work_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.started = time.monotonic()
        self.steps: list[dict] = []
        self.env = dict(os.environ, TQDM_DISABLE="1", PYTHONUNBUFFERED="1")

    def left(self) -> float:
        return self.args.budget - (time.monotonic() - self.started)

    def skip(self, name: str, kind: str, reason: str, command: list[str] | None = None) -> dict:
        record = {
            "name": name,
            "kind": kind,
            "command": shlex.join(command) if command else None,
            "returncode": None,
            "wall_seconds": 0.0,
            "status": "skipped",
            "passed": None,
            "reason": reason,
            "output_tail": [],
        }
        self.steps.append(record)
        print(f"[{len(self.steps):2d}] {name}: SKIPPED ({reason})", flush=True)
        return record

    def run(self, name: str, kind: str, command: list[str], timeout: float, cwd: Path = REPO) -> dict:
        if self.left() < MIN_STEP_SECONDS:
            return self.skip(name, kind, f"time budget exhausted ({self.args.budget:.0f} s)", command)
        timeout = min(timeout, self.left())
        index = len(self.steps) + 1
        log_path = self.logs / f"{index:02d}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.log"
        print(
            f"[{index:2d}] {name}: {shlex.join(command)}  (timeout {timeout:.0f} s, "
            f"{self.left():.0f} s of budget left)",
            flush=True,
        )
        started = time.monotonic()
        timed_out = False
        with open(log_path, "w", encoding="utf-8", errors="replace") as log:
            # Own session: on a timeout the whole group goes (papermill's kernel, pytest's children).
            proc = subprocess.Popen(
                command,
                cwd=cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                returncode = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc)
                returncode = proc.returncode
            except KeyboardInterrupt:
                _kill_group(proc)
                raise
        wall = time.monotonic() - started
        record = {
            "name": name,
            "kind": kind,
            "command": shlex.join(command),
            "cwd": os.path.relpath(cwd, REPO),
            "timeout_seconds": round(timeout, 1),
            "returncode": returncode,
            "wall_seconds": round(wall, 2),
            "timed_out": timed_out,
            "status": "timeout" if timed_out else ("pass" if returncode == 0 else "fail"),
            "log": str(log_path),
            "output_tail": _tail(log_path, self.args.tail),
        }
        record["passed"] = record["status"] == "pass"
        if timed_out:
            record["reason"] = f"killed after {timeout:.0f} s (step timeout or what was left of the budget)"
        self.steps.append(record)
        return record

    def finish(self, record: dict, ok: bool | None = None, reason: str | None = None) -> dict:
        """Apply a step-specific verdict on top of the return code, then print the step's result line."""
        if ok is False and record["status"] == "pass":
            record["status"], record["passed"] = "fail", False
        if reason:
            record["reason"] = f"{record['reason']}; {reason}" if record.get("reason") else reason
        if record["status"] != "skipped":
            print(
                f"[{len(self.steps):2d}] {record['name']}: {record['status'].upper()} in {record['wall_seconds']:.1f} s"
                + (f" ({record['reason']})" if record.get("reason") else "")
                + f" (rc {record['returncode']})",
                flush=True,
            )
            if record["status"] != "pass":
                for line in record["output_tail"][-8:]:
                    print(f"       | {line}", flush=True)
        return record


def _kill_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(path: Path, lines: int) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)  # colour codes
    out = [line.rstrip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
    return out[-lines:]


# ----------------------------------------------------------------------------- the check's parts


def check_tests(runner: Runner) -> None:
    junit = runner.work_dir / "cuda_tests.xml"
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        "cuda",
        "tests",
        "-q",
        "-rs",
        "-p",
        "no:cacheprovider",
        f"--junitxml={junit}",
        "--continue-on-collection-errors",  # a broken unrelated test module must not hide the CUDA results
    ]
    record = runner.run("pytest -m cuda", "tests", command, runner.args.test_timeout)
    if record["status"] == "skipped":
        return
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    if junit.exists():
        try:
            root = ET.parse(junit).getroot()
            for suite in [root] if root.tag == "testsuite" else root.iter("testsuite"):
                for key in counts:
                    counts[key] += int(suite.get(key, 0))
        except (ET.ParseError, ValueError):
            pass
    record["counts"] = counts
    if record["status"] != "pass":
        runner.finish(record, reason=f"{counts['failures']} failed, {counts['errors']} errors of {counts['tests']}")
    elif counts["tests"] == 0:
        runner.finish(record, ok=False, reason="no CUDA-marked test was collected")
    elif counts["skipped"]:
        runner.finish(
            record, ok=False, reason=f"{counts['skipped']} of {counts['tests']} CUDA tests skipped on a GPU machine"
        )
    else:
        runner.finish(record, reason=f"{counts['tests']} CUDA tests passed")


def check_data(runner: Runner) -> bool:
    """Verify (or build) the CIFAR-10 cache; True when it is usable."""
    args = runner.args
    command = [sys.executable, "-m", "rewire.data", "prepare", "--dataset", "cifar10", "--root", str(args.data_dir)]
    archive = (
        args.data_archive
        or os.environ.get("REWIRE_DATA_ARCHIVE")
        or next((str(path) for path in ARCHIVE_CANDIDATES if path.exists()), None)
    )
    if archive:
        command += ["--archive", archive]
    if not args.allow_download:
        command.append("--no-download")
    if not (args.data_dir / "cifar10" / "meta.json").exists() and not archive and not args.allow_download:
        runner.skip(
            "data: cifar10 cache",
            "data",
            f"no cache in {args.data_dir / 'cifar10'} and no archive to build it from: run `make data`, pass "
            "--data-archive or set REWIRE_DATA_ARCHIVE (or --allow-download)",
            command,
        )
        return False
    record = runner.run("data: cifar10 cache", "data", command, args.data_timeout)
    if record["status"] == "skipped":
        return False
    ok = record["status"] == "pass"
    runner.finish(
        record,
        reason=None
        if ok
        else (
            f"no usable cache in {args.data_dir}; prepare it (`make data`) or pass --data-archive / set REWIRE_DATA_ARCHIVE"
        ),
    )
    return ok


def _parameters_source(notebook: Path) -> str:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    for cell in cells:
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            return "".join(cell["source"])
    return ""


def _mentions_cuda(executed: Path) -> bool:
    try:
        nb = json.loads(executed.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return any("cuda" in json.dumps(output) for cell in nb.get("cells", []) for output in cell.get("outputs", []))


def check_notebooks(runner: Runner, have_data: bool) -> None:
    args = runner.args
    out_dir = runner.work_dir / "notebooks"
    out_dir.mkdir(exist_ok=True)
    for notebook in sorted(NOTEBOOKS.glob("*.ipynb")):
        params = _parameters_source(notebook)
        scale = re.search(r"^scale\b[^=\n]*=\s*[\"'](\w+)[\"']", params, re.M)
        needs_data = re.search(r"^data_root\b", params, re.M) is not None
        name = f"notebook {notebook.name}"
        executed = out_dir / notebook.name
        command = [
            sys.executable,
            "-m",
            "papermill",
            str(notebook),
            str(executed),
            "-k",
            args.kernel,
            "--cwd",
            str(NOTEBOOKS),
            "--execution-timeout",
            str(int(args.notebook_timeout)),
            "--no-progress-bar",
            "--log-output",
        ]
        if needs_data and args.data_root != DEFAULT_DATA_ROOT:
            command += ["-p", "data_root", str(args.data_dir)]
        if needs_data and not have_data:
            runner.skip(name, "notebook", "needs the CIFAR-10 cache, which is missing", command)
            continue
        record = runner.run(name, "notebook", command, args.notebook_timeout)
        if record["status"] == "skipped":
            continue
        record.update(
            scale=scale.group(1) if scale else None,
            executed_notebook=str(executed),
            output_mentions_cuda=_mentions_cuda(executed),
        )
        warn = None if record["scale"] == "smoke" else f"parameters cell says scale={record['scale']!r}, not 'smoke'"
        runner.finish(record, reason=warn)


def check_benchmarks(runner: Runner, have_data: bool) -> None:
    args = runner.args
    results_dir = args.bench_results_dir or runner.work_dir / "benchmarks"
    results_dir.mkdir(parents=True, exist_ok=True)
    for bench in sorted(BENCHMARKS.glob("bench_*.py")):
        source = bench.read_text(encoding="utf-8")
        needs_data = "--data-root" in source
        out = results_dir / f"{bench.stem.removeprefix('bench_')}.json"
        command = [sys.executable, str(bench.relative_to(REPO)), "--out", str(out)]
        if needs_data:
            command += ["--data-root", str(args.data_dir)]
        name = f"benchmark {bench.name}"
        if needs_data and not have_data:
            runner.skip(name, "benchmark", "needs the CIFAR-10 cache, which is missing", command)
            continue
        if out.exists():
            out.unlink()  # a stale result must not pass for this run's
        record = runner.run(name, "benchmark", command, args.bench_timeout)
        if record["status"] == "skipped":
            continue
        record["result_file"] = str(out)
        if record["status"] != "pass":
            runner.finish(record)
            continue
        try:
            result = json.loads(out.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            runner.finish(record, ok=False, reason=f"no readable JSON result at {out}: {error}")
            continue
        record["result"] = result
        device = str(result.get("device", ""))
        if not device.startswith("cuda"):
            runner.finish(record, ok=False, reason=f"ran on {device or 'an unrecorded device'}, not on the GPU")
        else:
            runner.finish(record, reason=f"device {device}")


# ----------------------------------------------------------------------------- main


def write_report(path: Path, report: dict, work_dir: Path | None = None) -> None:
    """Write ``report`` as JSON, atomically, with this machine's paths replaced (the repository by ``.``,
    the work directory by ``<work-dir>``), so a committed report names no machine path."""
    text = json.dumps(report, indent=2, default=str)
    if work_dir is not None:
        text = text.replace(str(work_dir), "<work-dir>")
    text = text.replace(str(REPO) + "/", "").replace(str(REPO), ".")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    tmp.replace(path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python tools/gpu_check.py",
        description="Run the CUDA tests, every notebook at smoke scale and every benchmark on this machine's CUDA "
        "GPU within a time budget, and write one JSON report. Without a CUDA GPU: says so and exits 0.",
        epilog="Exit status: 0 all passed (or no CUDA GPU), 1 a step failed or timed out, "
        "3 nothing failed but a step was skipped (no data, or the time budget ran out).",
    )
    parser.add_argument("--out", default="reports/gpu_check.json", help="the JSON report (default: %(default)s)")
    parser.add_argument(
        "--work-dir",
        default=None,
        help="logs, executed notebooks, benchmark JSON and the junit file (default: a new temporary directory)",
    )
    parser.add_argument("--skip-tests", action="store_true", help="do not run `pytest -m cuda tests`")
    parser.add_argument("--skip-notebooks", action="store_true", help="do not execute notebooks/*.ipynb")
    parser.add_argument("--skip-benchmarks", action="store_true", help="do not run benchmarks/bench_*.py")
    parser.add_argument(
        "--budget",
        type=float,
        default=450.0,
        help="overall time budget in seconds for all steps (default: %(default)s, under 8 minutes)",
    )
    parser.add_argument(
        "--test-timeout", type=float, default=150.0, help="seconds for the CUDA tests (default: %(default)s)"
    )
    parser.add_argument(
        "--data-timeout",
        type=float,
        default=120.0,
        help="seconds to verify or build the data cache (default: %(default)s)",
    )
    parser.add_argument(
        "--notebook-timeout",
        type=float,
        default=120.0,
        help="seconds per notebook, also papermill's per-cell limit (default: %(default)s)",
    )
    parser.add_argument(
        "--bench-timeout", type=float, default=90.0, help="seconds per benchmark (default: %(default)s)"
    )
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel for the notebooks (default: %(default)s)")
    parser.add_argument(
        "--data-root",
        default=DEFAULT_DATA_ROOT,
        help="folder holding the prepared caches, relative to the repository (default: %(default)s)",
    )
    parser.add_argument(
        "--data-archive",
        default=None,
        help="CIFAR-10 archive to build a missing cache from (default: $REWIRE_DATA_ARCHIVE, "
        "else ../shared/datasets/cifar10-jpeg.tar.gz when present)",
    )
    parser.add_argument(
        "--allow-download",
        action="store_true",
        help="let `rewire.data prepare` download CIFAR-10 when no cache or archive exists",
    )
    parser.add_argument(
        "--bench-results-dir",
        default=None,
        help="where the benchmarks write their JSON (default: WORK_DIR/benchmarks; "
        "benchmarks/results replaces the committed measurements)",
    )
    parser.add_argument(
        "--tail", type=int, default=30, help="output lines kept per step in the report (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    args.data_dir = (REPO / args.data_root).resolve()
    if args.bench_results_dir:
        args.bench_results_dir = (REPO / args.bench_results_dir).resolve()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out = out if out.is_absolute() else (Path.cwd() / out)
    began = time.monotonic()
    report: dict = {
        "tool": "tools/gpu_check.py",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "repository": {"root": str(REPO), "commit": git_commit()},
        "environment": describe_environment(),
        "budget_seconds": args.budget,
    }
    if not report["environment"]["cuda_available"]:
        print(NO_CUDA_MESSAGE, flush=True)
        report.update(
            status="no_cuda", message=NO_CUDA_MESSAGE, steps=[], total_seconds=round(time.monotonic() - began, 2)
        )
        write_report(out, report)
        print(f"report: {out}", flush=True)
        return EXIT_PASS

    env = report["environment"]
    print(
        f"GPU: {env['device']} (compute {env['compute_capability']}, {env['device_memory_gib']} GiB); torch {env['torch']}, "
        f"CUDA {env['torch_cuda_build']}, driver {env.get('driver_version') or env.get('cuda_driver_api_version')}",
        flush=True,
    )
    if env.get("device_count", 1) > 1:
        print(f"note: {env['device_count']} GPUs visible; everything runs on the default device cuda:0", flush=True)
    work_dir = Path(args.work_dir).resolve() if args.work_dir else Path(tempfile.mkdtemp(prefix="gpu-check-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    print(f"work directory (logs, executed notebooks, benchmark JSON): {work_dir}", flush=True)
    report.update(
        work_dir=str(work_dir),
        skipped_by_option=[
            part
            for part, skipped in (
                ("tests", args.skip_tests),
                ("notebooks", args.skip_notebooks),
                ("benchmarks", args.skip_benchmarks),
            )
            if skipped
        ],
    )
    runner = Runner(args, work_dir)
    report["steps"] = runner.steps
    interrupted = False
    try:
        if not args.skip_tests:
            check_tests(runner)
        have_data = False
        if not (args.skip_notebooks and args.skip_benchmarks):
            have_data = check_data(runner)
        if not args.skip_notebooks:
            check_notebooks(runner, have_data)
        if not args.skip_benchmarks:
            check_benchmarks(runner, have_data)
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted: writing the report of the steps done so far", flush=True)

    statuses = [s["status"] for s in runner.steps]
    summary = {key: statuses.count(key) for key in ("pass", "fail", "timeout", "skipped")}
    if summary["fail"] or summary["timeout"]:
        status, code = "fail", EXIT_FAIL
    elif summary["skipped"] or interrupted or not runner.steps:
        status, code = "incomplete", EXIT_INCOMPLETE
    else:
        status, code = "pass", EXIT_PASS
    report.update(
        status=status, summary=summary, interrupted=interrupted, total_seconds=round(time.monotonic() - began, 2)
    )
    write_report(out, report, work_dir)
    print(
        f"gpu check: {status.upper()} ({summary['pass']} passed, {summary['fail']} failed, {summary['timeout']} timed out, "
        f"{summary['skipped']} skipped) in {report['total_seconds']:.0f} s; report: {out}",
        flush=True,
    )
    return 130 if interrupted else code


if __name__ == "__main__":
    sys.exit(main())
