"""`make gpu-evidence` (python -m rewire.pipeline.gpu_evidence): the gpu scale's stages beside the cpu results.

On this CPU-only machine the gpu scale must stop before any work; the plumbing runs at smoke scale.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from rewire.pipeline import gpu_evidence

ROOT = Path(__file__).resolve().parents[1]


def test_commands_are_the_dvc_stages_moved_under_the_out_root(monkeypatch):
    monkeypatch.chdir(ROOT)
    plan = gpu_evidence.stage_plan("smoke", "results/gpu", ["dpf_runs", "dpf_sweeps", "tiny_graphs"])
    sweeps = plan["dpf_sweeps"]["cmd"]
    assert sweeps[-2:] == ["--scale", "smoke"]
    assert sweeps[sweeps.index("--out") + 1] == "results/gpu/dpf_sweeps"  # never results/dpf_sweeps
    assert "runs_dir=../results/gpu/dpf_runs" in sweeps
    assert plan["dpf_sweeps"]["after"] == ["dpf_runs"] and plan["dpf_runs"]["after"] == []
    assert plan["tiny_graphs"]["after"] == []
    for step in plan.values():
        assert not any(w.startswith("results/") and not w.startswith("results/gpu/") for w in step["cmd"])


def test_unknown_stage_is_refused_with_the_choices(monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(gpu_evidence.EvidenceError, match="unknown stage nope: choose among tiny_graphs"):
        gpu_evidence.stage_plan("smoke", "results/gpu", ["nope"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_the_gpu_scale_without_cuda_stops_before_any_work(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "evidence"
    assert gpu_evidence.main(["--out-root", str(out), "--stages", "tiny_graphs"]) == 2
    err = capsys.readouterr().err
    assert "no CUDA device" in err and "make repro" in err
    assert not out.exists()  # nothing written


@pytest.mark.pipeline
def test_one_stage_at_smoke_scale_writes_its_results_and_the_record(monkeypatch, tmp_path):
    """The plumbing end to end on a CPU: a stage's declared outputs under the out root, evidence.json."""
    monkeypatch.chdir(ROOT)
    out = tmp_path / "evidence"
    assert (
        gpu_evidence.main(["--scale", "smoke", "--out-root", str(out), "--stages", "tiny_graphs", "--jobs", "1"]) == 0
    )
    record = json.loads((out / "evidence.json").read_text())
    assert record["scale"] == "smoke" and record["device"] == "cpu"
    assert record["stages"]["tiny_graphs"]["returncode"] == 0 and record["stages"]["tiny_graphs"]["wall_s"] > 0
    label = json.loads((out / "tiny_graphs" / "label.json").read_text())
    assert label["scale"] == "smoke"
    assert (out / "tiny_graphs" / "metrics.json").exists()
    shutil.rmtree(out)
