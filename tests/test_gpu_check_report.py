"""The GPU check's JSON report names no path of the machine it ran on (it is committed)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "tools" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_report_replaces_the_repository_and_work_directory_paths(tmp_path):
    gpu_check = load_gpu_check()
    work = tmp_path / "work"
    report = {
        "repository": {"root": str(gpu_check.REPO)},
        "command": f"python -m papermill {gpu_check.REPO}/notebooks/a.ipynb {work}/notebooks/a.ipynb",
    }
    out = tmp_path / "report.json"
    gpu_check.write_report(out, report, work)
    written = json.loads(out.read_text())
    assert written["repository"]["root"] == "."
    assert written["command"] == "python -m papermill notebooks/a.ipynb <work-dir>/notebooks/a.ipynb"
    assert str(tmp_path) not in out.read_text()
