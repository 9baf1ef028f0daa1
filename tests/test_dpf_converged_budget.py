"""benchmarks/dpf_converged_budget.py: the budget entry it trains, and its paired difference and verdicts."""

import math
from pathlib import Path

import pytest
from scripts import load_script

from rewire.experiments import scales as params_module
from rewire.experiments.dpf_sweeps.config import Recipe

ROOT = Path(__file__).resolve().parents[1]
bench = load_script("benchmarks/dpf_converged_budget.py")


def test_the_cpu_blocks_40_epoch_entry_is_cut_out_and_trained_on_the_seeds_asked():
    _, values = params_module.stage_values("dpf_sweeps", str(ROOT / "params.yaml"), "cpu")
    cut = bench.budget_values(values, [0, 1, 2])
    (entry,) = cut["grid"]
    assert entry["tag"] == bench.TAG and entry["overrides"]["seeds"] == [0, 1, 2]
    assert entry["overrides"]["epochs"] == 40 and set(entry["methods"]) == set(bench.METHODS)
    assert [e for e in values["grid"] if e.get("tag") == bench.TAG][0]["overrides"]["seeds"] == [0]  # not mutated
    with pytest.raises(ValueError, match="no grid entry tagged"):
        bench.budget_values({**values, "grid": []}, [0])


def _point(method, top1_by_seed, losses):
    runs = []
    for seed, top1 in top1_by_seed.items():
        history = [
            {"epoch": e + 1, "phase": method, "train_loss": loss, "val_top1": 50.0} for e, loss in enumerate(losses)
        ]
        runs.append({"seed": seed, "test_top1": top1, "history": history})
    _, values = params_module.stage_values("dpf_sweeps", str(ROOT / "params.yaml"), "cpu")
    recipe = Recipe.from_params({**values, "epochs": len(losses)}).as_dict()  # the cpu recipe, 10 epochs
    return {"method": method, "sparsity": 0.9, "model": "resnet20", "recipe": recipe, "runs": runs}


def test_the_paired_difference_is_dpf_minus_incremental_by_seed_with_a_t_interval():
    flat, falling = (
        [2.0, 1.5, 1.2, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
        [2.0, 1.8, 1.6, 1.4, 1.2, 1.1, 1.0, 0.9, 0.8, 0.7],
    )
    dpf = _point("dpf", {0: 60.0, 1: 62.0, 2: 57.0}, flat)
    inc = _point("incremental", {0: 64.0, 1: 63.0, 2: 61.0}, falling)
    summary = bench.summarise([dpf, inc])
    d = summary["dpf_minus_incremental"]
    assert d["per_seed"] == [-4.0, -1.0, -4.0] and d["mean"] == pytest.approx(-3.0)
    half = 4.302652729911275 * math.sqrt(3.0) / math.sqrt(3)  # t(0.975, 2) x sd / sqrt(n); sd of (-4, -1, -4) = sqrt 3
    assert (d["ci_low"], d["ci_high"]) == (pytest.approx(-3.0 - half), pytest.approx(-3.0 + half))
    verdicts = {(r["method"], r["seed"]): r["converged"] for r in summary["runs"]}
    assert all(verdicts[("dpf", s)] for s in (0, 1, 2)) and not any(verdicts[("incremental", s)] for s in (0, 1, 2))
    assert summary["all_converged"] is False and summary["paired_seeds"] == [0, 1, 2]
