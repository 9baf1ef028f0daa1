"""Figure 10's overhead from one paired benchmark (issue 20, point 5): the paired ratio and its interval,
one number for the claim and the report's metric, and bad input refused before any work."""

import importlib
import math

import pytest

from rewire.experiments.dpf_sweeps import overhead as overhead_module
from rewire.experiments.dpf_sweeps.claims import OVERHEAD_PCT, overhead_claim
from rewire.experiments.dpf_sweeps.config import Config, Recipe
from rewire.experiments.dpf_sweeps.overhead import OverheadBenchmark, benchmark_overhead, paired_ratio
from rewire.experiments.schema import ConfigError
from rewire.reporting import claims as claims_module

T_975_2 = 4.302652729749462  # Student t, 0.975 quantile, 2 degrees of freedom (tables: 4.303)
# Hand-made timings (seconds per step), pair by pair: ratios 1.1, 1.2, 1.0. Their mean (1.1) differs from the
# ratio of the means (7.5 / 7.0) and from the inverse ratio (dense / DPF), so neither can pass for it.
DENSE = (1.0, 2.0, 4.0)
DPF = (1.1, 2.4, 4.0)
HALF = T_975_2 * 0.1 / math.sqrt(3)  # sd of (1.1, 1.2, 1.0) is 0.1


def _benchmark(dense=DENSE, dpf=DPF) -> OverheadBenchmark:
    return OverheadBenchmark(
        model="resnet20",
        batch_size=128,
        sparsity=0.9,
        update_every=16,
        precision="fp32",
        device="cpu",
        warmup_pairs=1,
        dense_seconds=tuple(dense),
        dpf_seconds=tuple(dpf),
        ratio=paired_ratio(dense, dpf),
    )


def test_the_paired_ratio_is_the_mean_of_per_pair_ratios_with_a_student_t_interval():
    ratio = paired_ratio(DENSE, DPF)
    assert ratio.ratios == pytest.approx((1.1, 1.2, 1.0))
    assert ratio.mean == pytest.approx(1.1)  # not 7.5 / 7.0 = 1.0714, not mean(dense / dpf) = 0.914
    assert (ratio.low, ratio.high) == pytest.approx((1.1 - HALF, 1.1 + HALF))
    assert HALF == pytest.approx(0.248414, abs=1e-6)
    assert ratio.overhead_pct() == pytest.approx((10.0, 100 * (0.1 - HALF), 100 * (0.1 + HALF)))
    # identical per-pair ratios: an interval of width zero around the ratio
    flat = paired_ratio([1.0, 2.0], [0.5, 1.0])
    assert (flat.mean, flat.low, flat.high) == pytest.approx((0.5, 0.5, 0.5))


def test_the_claim_and_the_metric_read_the_same_number():
    bench = _benchmark()
    assert bench.overhead_pct == pytest.approx(10.0)
    assert bench.per_pair_overhead_pct() == pytest.approx({0: 10.0, 1: 20.0, 2: 0.0})
    row = claims_module.evaluate(overhead_claim(bench))
    assert row["a_mean"] == pytest.approx(bench.overhead_pct)
    assert row["seeds"] == 3  # the claims table's count is the number of pairs
    low, high = bench.interval_pct()
    assert (row["ci_low"] + OVERHEAD_PCT, row["ci_high"] + OVERHEAD_PCT) == pytest.approx((low, high))
    assert row["verdict"] == claims_module.INCONCLUSIVE  # 10 % [-14.8, +34.8] against 5 %
    cheap = _benchmark(dpf=(1.01, 2.02, 4.08))  # 1 %, 1 %, 2 %: clearly below 5 %
    assert claims_module.evaluate(overhead_claim(cheap))["verdict"] == "holds"


def test_the_report_writes_the_benchmarks_number_in_the_claim_and_in_details(tmp_path, monkeypatch):
    import json

    import pandas as pd
    from test_dpf_grid import _synthetic_points

    from rewire.experiments.base import Outcome

    report_module = importlib.import_module("rewire.experiments.dpf_sweeps.report")  # the package exports `report`

    asked = {}

    def fake_benchmark(model, **settings):
        asked.update(settings, model=model)
        return _benchmark()

    monkeypatch.setattr(report_module, "benchmark_overhead", fake_benchmark)
    grid = [{"methods": ["dense", "dpf", "snip"], "sparsities": [0.9]}]
    config = Config.from_values(
        {"epochs": 2, "model": "small_convnet", "seeds": [0, 1, 2], "grid": grid, "overhead_pairs": 7}
    )
    points = [p for p in _synthetic_points() if p["method"] in ("dense", "dpf", "snip")]
    label = {"scale": "cpu", "seeds": [0, 1, 2], "data_source": "synthetic", "data_source_description": "",
             "device": "cpu", "torch": "", "rewire": "", "commit": ""}  # fmt: skip
    report_module.report(config, Outcome(runs=points, data_source={"kind": "synthetic"}), tmp_path, label)
    assert asked["pairs"] == 7 and asked["sparsity"] == 0.9 and asked["model"] == "small_convnet"
    assert asked["batch_size"] == 128 and asked["update_every"] == 16  # the DPF point's recipe
    details = json.loads((tmp_path / "details.json").read_text())
    table = pd.read_csv(tmp_path / "claims.csv")
    (row,) = table[table.claim.str.contains("overhead")].itertuples()
    assert details["dpf_overhead_pct"] == pytest.approx(10.0) == pytest.approx(row.a_mean)
    assert details["dpf_overhead_ci_pct"] == pytest.approx([row.ci_low + OVERHEAD_PCT, row.ci_high + OVERHEAD_PCT])
    assert details["dpf_overhead_benchmark"]["dense_seconds"] == list(DENSE)


def test_a_small_benchmark_times_every_pair_after_the_warm_up():
    hparams = Recipe(epochs=1, lr=0.1).hparams()
    bench = benchmark_overhead(
        "small_convnet", hparams=hparams, batch_size=2, sparsity=0.9, pairs=2, update_every=1, image_size=8
    )
    assert bench.pairs == 2 and len(bench.dense_seconds) == len(bench.dpf_seconds) == 2
    assert bench.warmup_pairs == overhead_module.WARMUP_PAIRS and bench.model == "small_convnet"
    assert all(t > 0 for t in bench.dense_seconds + bench.dpf_seconds)
    assert bench.ratio.ratios == pytest.approx([b / a for a, b in zip(bench.dense_seconds, bench.dpf_seconds)])
    assert bench.as_dict()["overhead_pct"] == pytest.approx(100 * (bench.ratio.mean - 1))


@pytest.mark.parametrize("pairs", [1, 0, -3, 2.5, True, "20"])
def test_fewer_than_two_pairs_are_refused_before_any_work(pairs, monkeypatch):
    import rewire.models

    def no_model(*args, **kwargs):
        raise AssertionError("a model was built before the input was checked")

    monkeypatch.setattr(rewire.models, "build_model", no_model)
    with pytest.raises(ValueError, match=r"'overhead_pairs': .* integer >= 2 .*e\.g\. overhead_pairs: 20"):
        benchmark_overhead(
            "resnet20", hparams=Recipe(epochs=1).hparams(), batch_size=8, sparsity=0.9, pairs=pairs, update_every=2
        )


def test_the_config_refuses_fewer_than_two_pairs_naming_the_field():
    grid = [{"methods": ["dense", "dpf"], "sparsities": [0.9]}]
    assert Config.from_values({"epochs": 2, "grid": grid}).overhead_pairs == 20
    with pytest.raises(ConfigError, match="overhead_pairs"):
        Config.from_values({"epochs": 2, "grid": grid, "overhead_pairs": 1})


def test_paired_timings_must_match_and_be_positive():
    with pytest.raises(ValueError, match="as many dense as DPF values, got 3 and 2"):
        paired_ratio(DENSE, DPF[:2])
    with pytest.raises(ValueError, match="'pairs': 1 .* >= 2"):
        paired_ratio([1.0], [1.1])
    with pytest.raises(ValueError, match="positive seconds, got 0.0"):
        paired_ratio([1.0, 0.0], [1.0, 1.0])
    assert overhead_module.MIN_PAIRS == 2
