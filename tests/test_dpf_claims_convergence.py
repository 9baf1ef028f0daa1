"""The DPF claims pass the convergence gate (issue 20, point 1): hand-made ``run.json`` histories, no training.

A side at chance (SFP at 10.09 %, the cpu scale's number) reads "not decided: at chance"; a side whose
training loss still falls reads "not decided: under-trained"; where both sides converged the verdict is the
interval's (holds, reversed). The records judged are those of the phase whose accuracy the claim reads.
"""

from __future__ import annotations

import importlib
import json

import pandas as pd
import pytest

from rewire.experiments.base import Outcome
from rewire.experiments.dpf_sweeps.claims import claims, phase_records, run_convergence
from rewire.experiments.dpf_sweeps.config import Recipe
from rewire.experiments.dpf_sweeps.tables import per_seed
from rewire.reporting import claims as claims_module

SEEDS = (0, 1, 2)
CONVERGED_LOSS = [2.0, 1.5, 1.2, 1.0, 1.005]  # 0.5 % over the last fifth (the test's limit: 2 %)
FALLING_LOSS = [2.0, 1.6, 1.3, 1.1, 0.9]  # 18 % over the last fifth: still learning


def _history(phase: str, final: float, losses=CONVERGED_LOSS, start: float = 30.0) -> list[dict]:
    """Five epochs of ``phase``: the accuracy climbs to ``final`` and stays (within 0.2 points of its best)."""
    start = min(start, final - 0.5)  # an at-chance run climbs from below chance
    accuracies = [start, (start + final) / 2, final - 0.2, final, final]
    return [
        {"epoch": e + 1, "phase": phase, "train_loss": loss, "test_top1": acc}
        for e, (loss, acc) in enumerate(zip(losses, accuracies))
    ]


def _point(method: str, sparsity: float, finals: dict[int, float], *, losses=CONVERGED_LOSS, before=None) -> dict:
    """One grid point: each seed's final top-1 ``finals[seed]``; ``before`` (phase, history) precedes it."""
    recipe = Recipe(epochs=5, model="small_convnet", seeds=SEEDS).as_dict()
    structured = method in ("sfp", "sfp_bn", "dpf_structured", "dpf_structured_bn")
    runs = []
    for seed, final in finals.items():
        history = _history(method, final, losses)
        phases = [method]
        if before is not None:
            phases = [before[0], method]
            history = before[1] + history
        runs.append(
            {
                "seed": seed,
                "test_top1": final,
                "sparsity": sparsity,
                "filter_sparsity": sparsity if structured else None,
                "delta": 0.1,
                "macs_dense": 100,
                "macs_sparse": 100 * (1 - sparsity),
                "seconds_per_iteration": 0.01,
                "phases": phases,
                "history": history,
                "mask_convergence": [1.0, 0.5, 0.01, 0.0, 0.0] if method == "dpf" else [],
            }
        )
    return {"method": method, "sparsity": sparsity, "structured": structured, "recipe": recipe, "runs": runs,
            "tag": "", "model": "small_convnet"}  # fmt: skip


def _points() -> list[dict]:
    # the dense phase behind One-shot P+FT: it peaked at 80 % and its loss still fell (unconverged on its own)
    dense_phase = ("dense", _history("dense", 80.0, FALLING_LOSS))
    return [
        _point("dense", 0.0, {s: 70.0 + s for s in SEEDS}),
        _point("dpf", 0.9, {0: 60.0, 1: 61.5, 2: 60.6}),
        _point("snip", 0.9, {0: 55.0, 1: 56.1, 2: 55.3}),  # converged, 5 points below DPF: holds
        _point("dpf_rewind", 0.9, {0: 64.0, 1: 65.2, 2: 64.9}),  # converged, 4 points above DPF: reversed
        _point("incremental", 0.9, {0: 50.0, 1: 51.0, 2: 50.5}, losses=FALLING_LOSS),  # under-trained
        _point("oneshot_ft", 0.9, {0: 58.0, 1: 58.8, 2: 58.1}, before=dense_phase),  # its fine-tune converged
        _point("dpf_structured", 0.3, {0: 57.0, 1: 58.0, 2: 57.4}),
        _point("sfp", 0.3, {0: 10.09, 1: 10.05, 2: 10.12}),  # at chance (the cpu scale's SFP)
        _point("sfp_bn", 0.3, {0: 50.0, 1: 51.2, 2: 50.3}),  # converged: the working baseline
        _point("dpf_structured_bn", 0.3, {0: 47.0, 1: 48.5, 2: 47.2}),  # converged, 3 points below sfp_bn
    ]


def _verdicts(points) -> dict[str, dict]:
    table = claims_module.claims_frame(claims(per_seed(points), points, None, run_convergence(points)))
    return {row["claim"]: row for row in table.to_dict("records")}


def test_each_claim_reads_the_gated_verdict_of_its_sides():
    rows = _verdicts(_points())
    sfp = rows["structured DPF is at least as good as SFP at 0.3"]
    assert sfp["verdict"] == claims_module.AT_CHANCE and sfp["interval_verdict"] == "holds"
    assert sfp["b_convergence"].endswith("at chance (10 %) on seed(s) 0, 1, 2") and sfp["b_converged"]
    working = rows["structured DPF is at least as good as SFP with recomputed batch-norm statistics at 0.3"]
    assert working["verdict"] == "holds" and working["a_converged"] and working["b_converged"]
    both = rows["structured DPF is at least as good as SFP, both with recomputed batch-norm statistics at 0.3"]
    assert both["a"] == "dpf_structured_bn at 0.3" and both["verdict"] == "reversed"
    incremental = rows["DPF is at least as good as Incremental (no feedback) at 0.9"]
    assert incremental["verdict"] == claims_module.UNDER_TRAINED and incremental["interval_verdict"] == "holds"
    assert incremental["b_convergence"].startswith("no (0/3 converged): seeds 0, 1, 2: training loss changed 18.2 %")
    assert incremental["a_convergence"] == "yes (3/3 converged)"
    assert rows["DPF beats SNIP at 0.9"]["verdict"] == "holds"
    assert rows["DPF's mask retrained from initialisation is worse than DPF at 0.9"]["verdict"] == "reversed"
    # One-shot P+FT is judged on its fine-tuning phase only (the dense phase before it never settled)
    oneshot = rows["DPF is at least as good as One-shot P+FT at 0.9"]
    assert oneshot["b_converged"] and oneshot["verdict"] == "holds"
    # Figure 4 carries DPF's convergence; nothing is "not checked" where convergence was given
    (figure4,) = [row for claim, row in rows.items() if claim.startswith("DPF's mask has converged")]
    assert figure4["a_convergence"] == "yes (3/3 converged)"
    assert not any(row["a_convergence"] == "not checked" for row in rows.values())


def test_the_judged_records_are_those_of_the_last_phase():
    (run,) = [p for p in _points() if p["method"] == "oneshot_ft"][0]["runs"][:1]
    records = phase_records(run)
    assert len(run["history"]) == 10 and len(records) == 5 and {r["phase"] for r in records} == {"oneshot_ft"}
    assert phase_records({"history": [{"epoch": 1}]}) == [{"epoch": 1}]  # an entry without phases: every record
    judged = run_convergence(_points())
    assert judged[("small_convnet", "oneshot_ft", 0.9, 0)].converged
    assert judged[("small_convnet", "sfp", 0.3, 0)].at_chance
    assert not judged[("small_convnet", "incremental", 0.9, 1)].converged


def test_without_convergence_results_the_sides_read_not_checked():
    points = _points()
    table = claims_module.claims_frame(claims(per_seed(points), points))
    assert set(table.a_convergence) == {"not checked"}
    assert table.verdict.tolist() == table.interval_verdict.tolist()


def test_the_report_counts_every_not_decided_verdict_and_writes_the_per_side_words(tmp_path, monkeypatch):
    from test_dpf_overhead import _benchmark

    from rewire.experiments.dpf_sweeps import Config, report

    methods = ["dense", "dpf", "snip", "dpf_rewind", "incremental", "oneshot_ft"]
    grid = [
        {"methods": methods, "sparsities": [0.9]},
        {"methods": ["dpf_structured", "sfp", "sfp_bn", "dpf_structured_bn"], "sparsities": [0.3]},
    ]
    config = Config.from_values({"epochs": 5, "model": "small_convnet", "seeds": list(SEEDS), "grid": grid})
    label = {"scale": "cpu", "seeds": list(SEEDS), "data_source": "synthetic", "data_source_description": "",
             "device": "cpu", "torch": "", "rewire": "", "commit": ""}  # fmt: skip
    monkeypatch.setattr(importlib.import_module("rewire.experiments.dpf_sweeps.report"), "benchmark_overhead",
                        lambda model, **settings: _benchmark())  # fmt: skip
    outcome = Outcome(runs=_points(), data_source={"kind": "synthetic"}, extra={"label": label})
    metrics = report(config, outcome, tmp_path, label)
    table = pd.read_csv(tmp_path / "claims.csv")
    verdicts = table.verdict.tolist()
    assert claims_module.AT_CHANCE in verdicts and claims_module.UNDER_TRAINED in verdicts
    assert metrics["claims_held"] == verdicts.count("holds") and metrics["claims_reversed"] == verdicts.count(
        "reversed"
    )
    assert metrics["claims_not_decided"] == len(verdicts) - verdicts.count("holds") - verdicts.count("reversed")
    assert metrics["claims_not_decided"] >= 2  # at chance and under-trained both counted
    details = json.loads((tmp_path / "details.json").read_text())
    by_claim = {row["claim"]: row for row in details["claims"]}
    sfp = by_claim["structured DPF is at least as good as SFP at 0.3"]
    assert sfp["verdict"] == claims_module.AT_CHANCE and sfp["interval_verdict"] == "holds"
    assert "at chance" in sfp["b_convergence"] and sfp["a_convergence"] == "yes (3/3 converged)"
    judged = {(r["method"], r["seed"]): r for r in details["convergence"]}
    assert judged[("sfp", 0)]["at_chance"] and not judged[("incremental", 0)]["converged"]
    markdown = (tmp_path / "claims.md").read_text()
    assert "| a converged | b converged |" in markdown and "The interval alone would say" in markdown


@pytest.mark.parametrize("missing", ["sfp"])
def test_a_convergence_map_without_a_sides_run_is_refused(missing):
    points = _points()
    judged = {k: v for k, v in run_convergence(points).items() if k[1] != missing}
    with pytest.raises(ValueError, match=f"no convergence result for {missing} at 0.3, seed 0"):
        claims(per_seed(points), points, None, judged)
