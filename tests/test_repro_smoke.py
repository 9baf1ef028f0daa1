"""The DVC pipeline at smoke scale, stage by stage: every declared output is produced (issue 18, point 7).

Every stage's command of ``dvc.yaml`` runs, in the pipeline's order, in a temporary copy of the
pipeline (``dvc.yaml``, ``params.yaml`` switched to ``scale: smoke``, ``notebooks/``, the prepared
data linked in), so nothing here touches ``results/`` or ``checkpoints/``; then each stage's
declared ``outs``, ``metrics`` and ``plots`` must exist. It is what ``make repro-smoke`` runs
(``dvc exp run --temp -S scale=smoke``) without DVC's bookkeeping; it costs about as much as the
notebooks' own ``pytest --nbval`` at smoke scale (marked ``pipeline``: ``-m "not pipeline"`` skips it).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_dvc_views import HEADLINE_KEYS

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.pipeline


def stage_outputs(stage: dict) -> list[str]:
    """Every path a stage declares: ``outs``, ``metrics`` and ``plots`` (plain or with options)."""
    paths = []
    for kind in ("outs", "metrics", "plots"):
        for entry in stage.get(kind, []):
            paths.append(entry if isinstance(entry, str) else next(iter(entry)))
    return paths


def smoke_copy(target: Path) -> Path:
    """The pipeline's files in ``target`` at smoke scale; the data linked, the library imported as installed."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "dvc.yaml", target / "dvc.yaml")
    text = (ROOT / "params.yaml").read_text(encoding="utf-8")
    smoke, count = re.subn(r"(?m)^scale: \w+", "scale: smoke", text, count=1)
    assert count == 1, "params.yaml has no top-level `scale:` line"
    (target / "params.yaml").write_text(smoke, encoding="utf-8")
    if (ROOT / "scales.yaml").exists():  # the scales' blocks, beside params.yaml
        shutil.copy(ROOT / "scales.yaml", target / "scales.yaml")
    shutil.copytree(ROOT / "notebooks", target / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    (target / "data").symlink_to(ROOT / "data", target_is_directory=True)
    return target


def declared_metrics(stage: dict) -> list[str]:
    return [next(iter(item)) if isinstance(item, dict) else item for item in stage.get("metrics", [])]


def test_every_stage_writes_its_declared_outputs_at_smoke_scale(tmp_path):
    if not (ROOT / "data" / "cifar10" / "meta.json").exists():
        pytest.skip("no prepared CIFAR-10 in data/cifar10 (`make data`)")
    work = smoke_copy(tmp_path / "pipeline")
    stages = yaml.safe_load((work / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONWARNINGS": "ignore"}
    missing, seconds = {}, {}
    for name, stage in stages.items():  # dvc.yaml lists the stages in an order that respects their deps
        words = shlex.split(stage["cmd"])
        if words[0] == "python":
            words[0] = sys.executable
        started = time.perf_counter()
        result = subprocess.run(words, cwd=work, env=env, capture_output=True, text=True)
        seconds[name] = round(time.perf_counter() - started, 1)
        assert result.returncode == 0, f"stage '{name}' failed at smoke scale:\n{result.stderr[-3000:]}"
        absent = [path for path in stage_outputs(stage) if not (work / path).exists()]
        if absent:
            missing[name] = absent
        for path in declared_metrics(stage):  # what a rerun writes keeps `dvc metrics show` narrow
            extra = set(json.loads((work / path).read_text(encoding="utf-8"))) - HEADLINE_KEYS
            assert not extra, f"stage '{name}' writes {sorted(extra)} into {path}; they belong in details.json"
    print(f"seconds by stage at smoke scale: {seconds}")
    assert not missing, f"stages that did not write every declared output at smoke scale: {missing}"
