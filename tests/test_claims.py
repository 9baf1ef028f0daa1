"""Claims tables: the paired interval and the verdict rules (rewire.reporting.claims), hand-computed."""

import math

import pandas as pd
import pytest

from rewire.experiments.dpf_sweeps import claims as dpf_report
from rewire.reporting import claims


def test_interval_is_the_student_t_interval_of_the_mean():
    # differences 1, 2, 6: mean 3, sd = sqrt(((-2)^2 + (-1)^2 + 3^2) / 2) = sqrt(7); t_{0.975, 2} = 4.302653
    mean, low, high = claims.interval([1.0, 2.0, 6.0])
    half = 4.302652729749464 * math.sqrt(7.0) / math.sqrt(3.0)
    assert mean == pytest.approx(3.0)
    assert low == pytest.approx(3.0 - half, abs=1e-9)
    assert high == pytest.approx(3.0 + half, abs=1e-9)


def test_interval_needs_two_seeds():
    with pytest.raises(ValueError, match="at least 2 seeds"):
        claims.interval([1.0])


@pytest.mark.parametrize(
    ("kind", "low", "high", "verdict"),
    [
        ("greater", 0.1, 2.0, "holds"),
        ("greater", -2.0, -0.1, "reversed"),
        ("greater", -0.1, 2.0, "inconclusive at this scale"),
        ("at_least", -0.9, 0.5, "holds"),  # not worse than 1 point
        ("at_least", -1.1, 0.5, "inconclusive at this scale"),
        ("at_least", -0.5, -0.1, "reversed"),  # b clearly better, however little
        ("below", -3.0, -0.5, "holds"),
        ("below", 0.5, 3.0, "reversed"),
        ("below", -0.5, 0.5, "inconclusive at this scale"),
        ("equivalent", -0.9, 0.9, "holds"),
        ("equivalent", 1.0, 2.0, "reversed"),
        ("equivalent", -0.5, 1.5, "inconclusive at this scale"),
    ],
)
def test_verdicts(kind, low, high, verdict):
    assert claims.judge(kind, low, high, margin=1.0) == verdict


def test_a_claim_pairs_the_sides_by_seed_and_keeps_the_sign():
    # a is better on every seed by 2, 3 and 4 points; b's seed 9 has no partner and is left out
    claim = claims.Claim("P", "a beats b", "a", {0: 12.0, 1: 13.0, 2: 14.0}, "b", {0: 10.0, 1: 10.0, 2: 10.0, 9: 99.0})
    row = claims.evaluate(claim)
    assert row["seeds"] == 3
    assert row["difference"] == pytest.approx(3.0)
    assert row["a_mean"] == pytest.approx(13.0) and row["b_mean"] == pytest.approx(10.0)
    assert row["verdict"] == "holds"
    swapped = claims.evaluate(claims.Claim("P", "b beats a", "b", claim.b, "a", claim.a))
    assert swapped["difference"] == pytest.approx(-3.0) and swapped["verdict"] == "reversed"


def test_below_compares_with_the_threshold():
    row = claims.evaluate(claims.Claim("P", "small", "x", {0: 1.0, 1: 2.0, 2: 1.5}, kind="below", threshold=5.0))
    assert row["difference"] == pytest.approx(1.5 - 5.0)
    assert row["verdict"] == "holds"


def test_bad_claims_are_refused():
    with pytest.raises(ValueError, match="kind"):
        claims.Claim("P", "x", "a", {0: 1.0}, "b", {0: 1.0}, kind="bigger")
    with pytest.raises(ValueError, match="give b"):
        claims.Claim("P", "x", "a", {0: 1.0})


def test_the_markdown_table_shows_the_interval_and_the_verdict():
    frame = claims.claims_frame([claims.Claim("P", "a beats b", "a", {0: 2.0, 1: 3.0}, "b", {0: 1.0, 1: 1.0})])
    text = claims.claims_markdown(frame, title="T")
    assert "+1.50 [" in text and "**inconclusive at this scale**" in text  # two seeds: t_{0.975,1} = 12.7
    equivalence = claims.claims_frame(
        [claims.Claim("P", "same", "a", {0: 1.0, 1: 2.0}, "b", {0: 1.0, 1: 2.0}, kind="equivalent")]
    )
    row = claims.claims_markdown(equivalence, title="T").splitlines()[-1]
    assert row.count(" | ") == 6 and "\\|a - b\\|" in row  # the test column keeps its pipes escaped


def _runs(rows):
    base = {"structured": False, "seconds_per_iteration": 1.0, "tag": "", "model": "resnet20"}
    return pd.DataFrame([{**base, **r} for r in rows])


def test_dpf_claims_compare_the_right_methods_in_the_right_direction():
    rows = []
    for seed in range(3):
        rows += [
            {"method": "dense", "target": 0.0, "seed": seed, "test_top1": 80.0, "seconds_per_iteration": 1.0},
            {"method": "dpf", "target": 0.9, "seed": seed, "test_top1": 70.0 + seed, "seconds_per_iteration": 1.01},
            {"method": "snip", "target": 0.9, "seed": seed, "test_top1": 60.0 + 2 * seed},
            {"method": "dpf_rewind", "target": 0.9, "seed": seed, "test_top1": 75.0},
            {"method": "dpf_structured", "target": 0.3, "seed": seed, "test_top1": 65.0, "structured": True},
            {"method": "sfp", "target": 0.3, "seed": seed, "test_top1": 64.0 + 0.1 * seed, "structured": True},
        ]
    found = {c.source + ":" + c.a_label.split(" ")[0]: claims.evaluate(c) for c in dpf_report.claims(_runs(rows))}
    assert found["Table 1:dpf"]["difference"] == pytest.approx(10.0 - 1.0)  # dpf - snip: 10, 9, 8
    assert found["Table 1:dpf"]["verdict"] == "holds"
    assert found["Figure 5:dpf"]["verdict"] == "reversed"  # the rewound mask does better here
    assert found["Table 5:dpf_structured"]["verdict"] == "holds"
    assert found["Figure 10:overhead"]["difference"] == pytest.approx(1.0 - dpf_report.OVERHEAD_PCT)
    assert "Table 2:dpf" not in found  # no incremental / one-shot runs: no claim


def test_dpf_claims_are_made_model_by_model_and_leave_figure_variants_aside():
    rows = []
    for seed in range(3):
        # a Figure 9 variant of DPF (another period), listed first: it must not enter the claims
        rows.append(
            {"model": "resnet20", "method": "dpf", "target": 0.9, "seed": seed, "test_top1": 0.0, "tag": "fig9-p4"}
        )
        for model, gap in (("resnet20", 5.0), ("wrn28_2", -5.0)):
            rows += [
                {"model": model, "method": "dpf", "target": 0.9, "seed": seed, "test_top1": 70.0 + gap + seed},
                {"model": model, "method": "snip", "target": 0.9, "seed": seed, "test_top1": 70.0},
            ]
    found = {c.claim: claims.evaluate(c) for c in dpf_report.claims(_runs(rows))}
    assert found["DPF beats SNIP at 0.9 [resnet20]"]["verdict"] == "holds"
    assert found["DPF beats SNIP at 0.9 [resnet20]"]["difference"] == pytest.approx(6.0)  # 5 + mean seed 1
    assert found["DPF beats SNIP at 0.9 [wrn28_2]"]["verdict"] == "reversed"
    assert len(dpf_report.table_runs(_runs(rows))) == 12
