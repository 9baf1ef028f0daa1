"""Claims tables: the paired interval and the verdict rules (rewire.reporting.claims), hand-computed;
the convergence gate before a verdict (issue 20, point 1)."""

import importlib.util
import math
from pathlib import Path

import pandas as pd
import pytest

from rewire.experiments.dpf_sweeps import claims as dpf_report
from rewire.reporting import claims
from rewire.reporting.convergence import ConvergenceTest

ROOT = Path(__file__).resolve().parents[1]


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
    row = next(line for line in claims.claims_markdown(equivalence, title="T").splitlines() if "same" in line)
    assert row.count(" | ") == 8 and "\\|a - b\\|" in row  # the test column keeps its pipes escaped
    assert "| not checked | not checked |" in row  # no convergence given: the table says so


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
    # Figure 10's overhead claim reads a paired benchmark (dpf_sweeps.overhead), never the runs' wall times
    assert "Figure 10:overhead" not in found
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


# ---------------------------------------------------------------- the convergence gate (issue 20, point 1)

TEST = ConvergenceTest()  # loss change < 2 % over the last fifth, final accuracy within 1 point of its best
FLAT = [2.0, 1.2, 0.9, 0.7, 0.6, 0.55, 0.52, 0.5, 0.497, 0.495]  # -1 % over epochs 8 -> 10
FALLING = [2.0, 1.6, 1.4, 1.3, 1.2, 1.1, 1.05, 1.0, 0.95, 0.9]  # -10 % over epochs 8 -> 10


def judged(losses, final_top1, *, classes=None):
    """One run's convergence: ``losses`` per epoch, test top-1 rising to ``final_top1`` and staying there."""
    records = [
        {"epoch": e, "train_loss": loss, "test_top1": min(final_top1, 10.0 + 10 * e)}
        for e, loss in enumerate(losses, start=1)
    ]
    return TEST.judge(records, num_classes=classes, chance_margin_pts=0.9)


def separated_claim(a_losses, b_losses, *, a_top1=60.0, b_top1=50.0, classes=None):
    """DNW-like claim: a beats b by 10 points on each of 3 seeds (a zero-width interval far above 0)."""
    seeds = (0, 1, 2)
    return claims.Claim(
        "P",
        "a beats b",
        "a",
        {s: a_top1 + 0.1 * s for s in seeds},
        "b",
        {s: b_top1 + 0.1 * s for s in seeds},
        a_runs={s: judged(a_losses, a_top1, classes=classes) for s in seeds},
        b_runs={s: judged(b_losses, b_top1, classes=classes) for s in seeds},
    )


def test_both_sides_converged_the_interval_decides_holds_and_reversed():
    row = claims.evaluate(separated_claim(FLAT, FLAT))
    assert row["difference"] == pytest.approx(10.0)
    assert row["verdict"] == row["interval_verdict"] == "holds"
    assert row["a_converged"] is True and row["b_converged"] is True
    assert row["a_convergence"] == row["b_convergence"] == "yes (3/3 converged)"
    flipped = claims.evaluate(separated_claim(FLAT, FLAT, a_top1=50.0, b_top1=60.0))
    assert flipped["difference"] == pytest.approx(-10.0)
    assert flipped["verdict"] == "reversed"


@pytest.mark.parametrize("a_top1, b_top1", [(60.0, 50.0), (50.0, 60.0)])
@pytest.mark.parametrize("under_trained_side", ["a", "b"])
def test_a_clearly_separated_claim_with_an_under_trained_side_is_not_decided(a_top1, b_top1, under_trained_side):
    losses = {"a": FLAT, "b": FLAT, under_trained_side: FALLING}
    row = claims.evaluate(separated_claim(losses["a"], losses["b"], a_top1=a_top1, b_top1=b_top1))
    assert row["interval_verdict"] in ("holds", "reversed")  # the interval alone would decide
    assert row["verdict"] == "not decided: under-trained"
    assert row[f"{under_trained_side}_converged"] is False
    words = row[f"{under_trained_side}_convergence"]
    assert words.startswith("no (0/3 converged): seeds 0, 1, 2: training loss changed 10.0 %")
    assert row["convergence_test"] == TEST.describe()


def test_a_side_at_chance_is_not_decided_at_chance_before_under_trained():
    # SFP's case: 10.09 % on 10 classes with a flat loss, against a side that beats it by far
    row = claims.evaluate(separated_claim(FLAT, FLAT, a_top1=40.0, b_top1=10.09, classes=10))
    assert row["interval_verdict"] == "holds"
    assert row["verdict"] == "not decided: at chance"
    assert row["b_converged"] is True and "at chance (10 %) on seed(s) 0, 1, 2" in row["b_convergence"]
    both = claims.evaluate(separated_claim(FALLING, FLAT, a_top1=40.0, b_top1=10.09, classes=10))
    assert both["verdict"] == "not decided: at chance"  # at chance says more than under-trained
    learned = claims.evaluate(separated_claim(FLAT, FLAT, a_top1=40.0, b_top1=30.0, classes=10))
    assert learned["verdict"] == "holds"


def test_the_gate_reads_only_the_paired_seeds_and_needs_each_of_them():
    good, bad = judged(FLAT, 60.0), judged(FALLING, 60.0)
    mixed = claims.evaluate(
        claims.Claim(
            "P",
            "x",
            "a",
            {0: 60.0, 1: 61.0, 2: 62.0},
            "b",
            {0: 50.0, 1: 50.0, 2: 50.0},
            a_runs={0: good, 1: bad, 2: judged([1.0, 1.0], 60.0)},
            b_runs={0: good, 1: good, 2: good},
        )
    )
    assert mixed["verdict"] == "not decided: under-trained"
    assert mixed["a_convergence"].startswith("no (1/3 converged): seed 1: training loss changed 10.0 %")
    assert mixed["a_convergence"].endswith("; seed 2: too few epochs (2 recorded, the test needs 3)")
    a, b = {0: 60.0, 1: 61.0, 2: 62.0}, {0: 50.0, 1: 50.0}  # seed 2 of a is unpaired
    row = claims.evaluate(
        claims.Claim("P", "x", "a", a, "b", b, a_runs={0: good, 1: good, 2: bad}, b_runs={0: good, 1: good})
    )
    assert row["verdict"] == "holds" and row["a_convergence"] == "yes (2/2 converged)"
    with pytest.raises(ValueError, match=r"b_runs has no convergence result for paired seed\(s\) \[1\]"):
        claims.Claim("P", "x", "a", a, "b", b, a_runs={0: good, 1: good}, b_runs={0: good})
    with pytest.raises(ValueError, match="b_runs holds float"):
        claims.Claim("P", "x", "a", a, "b", b, b_runs={0: 1.0, 1: 1.0})
    with pytest.raises(ValueError, match="no side b"):
        claims.Claim("P", "x", "a", a, kind="below", threshold=5.0, b_runs={0: good})


def test_the_gate_keeps_the_interval_verdict_when_a_side_is_not_checked():
    assert claims.gate("holds", [(None, False), (True, False)]) == "holds"
    assert claims.gate("reversed", [(None, False), (False, False)]) == "not decided: under-trained"
    assert claims.gate("inconclusive at this scale", [(True, True), (True, False)]) == "not decided: at chance"
    with pytest.raises(ValueError, match="interval verdict"):
        claims.gate("not decided: at chance", [])


def test_the_markdown_table_shows_each_sides_convergence_the_test_and_the_overridden_verdict():
    frame = claims.claims_frame([separated_claim(FLAT, FALLING)])
    text = claims.claims_markdown(frame, title="T")
    row = next(line for line in text.splitlines() if line.startswith("| a beats b"))
    assert "| yes (3/3 converged) | no (0/3 converged): seeds 0, 1, 2: training loss changed 10.0 %" in row
    assert row.endswith("| **not decided: under-trained** |")
    assert TEST.describe() in text
    assert "The interval alone would say: a beats b: holds." in text


def test_the_verdict_names_other_modules_count_stay_and_the_new_ones_count_as_not_decided(tmp_path):
    assert claims.VERDICTS[:3] == ("holds", "reversed", "inconclusive at this scale")  # older reports index these
    assert set(claims.NOT_DECIDED) == {
        "inconclusive at this scale",
        "not decided: under-trained",
        "not decided: at chance",
    }
    spec = importlib.util.spec_from_file_location("headline_metrics", ROOT / "tools" / "headline_metrics.py")
    headline = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(headline)
    stage = tmp_path / "tiny_graphs"
    stage.mkdir()
    found = [
        separated_claim(FLAT, FLAT),  # holds
        separated_claim(FLAT, FLAT, a_top1=50.0, b_top1=60.0),  # reversed
        separated_claim(FLAT, FALLING),  # under-trained
        separated_claim(FLAT, FLAT, a_top1=40.0, b_top1=10.09, classes=10),  # at chance
    ]
    claims.claims_frame(found).to_csv(stage / "claims.csv", index=False)
    counts = headline.claim_counts(stage, {})
    assert counts == {"claims_held": 1, "claims_reversed": 1, "claims_not_decided": 2}
