"""The benchmark (issue 20, point 6): its plan at every scale, the refusal of a method that does not apply, the
ranking with its intervals and the cost ratios, on hand-made numbers (exact)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch.nn as nn
from scipy import stats

from rewire.experiments import scales
from rewire.experiments.base import Outcome
from rewire.experiments.benchmark import Config, plan
from rewire.experiments.benchmark.applicability import reasons
from rewire.experiments.benchmark.config import METHODS
from rewire.experiments.benchmark.report import convergence_frame, cost_table, ranking, with_convergence
from rewire.experiments.benchmark.timing import cost_ratios, interleaved
from rewire.experiments.schema import ConfigError

ROOT = Path(__file__).resolve().parents[1]
T2 = float(stats.t.ppf(0.975, 2))  # Student-t quantile of a 95 % interval over 3 values


def block(scale: str) -> Config:
    _, values = scales.stage_values("benchmark", ROOT / "params.yaml", scale)
    return Config.from_values(values, where=f"scales.yaml '{scale}.benchmark'")


# ------------------------------------------------------------------------------------------------ the plan


@pytest.mark.parametrize(
    "scale, seeds, sparsities, runs",
    [("smoke", 1, 1, 1 * (1 + 13 * 1)), ("cpu", 3, 1, 3 * (1 + 13 * 1)), ("paper", 3, 2, 3 * (1 + 13 * 2))],
)
def test_the_plan_is_dense_once_per_seed_then_every_method_at_every_sparsity(scale, seeds, sparsities, runs):
    config = block(scale)
    specs = plan(config)
    assert len(config.methods) == 14 and set(config.methods) == set(METHODS)
    assert (len(config.seeds), len(config.sparsities), len(specs)) == (seeds, sparsities, runs)
    assert [s.row for s in specs[:seeds]] == ["dense"] * seeds  # the procedures' dense runs come first
    assert len({(s.row, s.seed) for s in specs}) == runs  # no run twice
    assert sum(s.row == "dense" for s in specs) == seeds
    assert {s.settings["sparsity"] for s in specs if s.row != "dense"} == set(config.sparsities)


def test_the_paper_block_is_wrn28_2_for_200_epochs_with_dpfs_wideresnet_recipe():
    config = block("paper")
    assert (config.model, config.epochs, config.lr, config.weight_decay, config.gamma) == (
        "wrn28_2",
        200,
        0.1,
        5e-4,
        0.2,
    )
    assert list(config.milestones) == [0.3, 0.6, 0.8] and list(config.sparsities) == [0.9, 0.95]


# ------------------------------------------------------------------------------------------ applicability


def test_a_network_that_is_not_convolutional_is_refused_naming_each_method_and_why():
    with pytest.raises(ConfigError) as error:
        Config.from_values({"model": "tiny_static", "width": 0, "methods": ["dense", "dnw", "dpf"]})
    message = str(error.value)
    assert "'dnw', 'dpf' do not apply to tiny_static at sparsity 0.9: the benchmark prunes nn.Conv2d" in message
    assert "not a convolutional network" in message
    assert "'dense'" not in message  # the dense network always applies


def test_a_per_layer_method_is_refused_where_a_layer_would_keep_no_weight_and_a_global_one_is_not():
    with pytest.raises(ConfigError) as error:
        Config.from_values({"sparsities": [0.999], "methods": ["dense", "dpf", "dnw", "snip"]})
    message = str(error.value)
    assert "'dnw' does not apply to resnet20 at sparsity 0.999" in message
    assert "conv1.weight (108 weights) keeps none" in message  # 3 x 4 x 3 x 3 at width 4: floor(0.108) = 0
    assert "'dpf'" not in message and "'snip'" not in message  # global masks choose where to keep
    Config.from_values({"sparsities": [0.999], "methods": ["dense", "dpf", "snip"]})  # these apply


def test_methods_that_keep_the_first_convolution_dense_need_a_second_one():
    one_conv = nn.Sequential(nn.Conv2d(3, 64, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
    found = reasons(one_conv, ["dense", "sm", "dsr", "dpf", "dnw"], 0.9, "one_conv")
    assert sorted(found) == ["dsr", "sm"]
    assert "one_conv has no other convolution" in found["sm"]
    two_convs = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.Conv2d(8, 64, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)
    )
    assert reasons(two_convs, ["sm", "dsr"], 0.9) == {}


@pytest.mark.parametrize(
    "values, message",
    [
        ({"methods": ["dense", "sfp"]}, "'sfp' is not a row of the benchmark: structured"),
        ({"methods": ["dense", "rg"]}, "it is the row 'random'"),
        ({"methods": ["dense", "dnse"]}, "unknown method 'dnse'"),
        ({"methods": ["dnw"]}, "has no 'dense'"),
        ({"epochs": 1}, "'epochs': 1 is not >= 2"),
        ({"model": "wrn28_2", "width": 8}, "'width': 8: wrn28_2 takes no width"),
        ({"td_rho": 1.5}, "'td_rho': rho must be a probability"),
    ],
)
def test_bad_input_is_refused_with_the_field_before_any_work(values, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Config.from_values(values)


def test_a_budget_whose_last_mask_update_precedes_the_ramps_end_is_refused():
    config = Config.from_values({"epochs": 4, "update_every": 16})  # ramps end at epoch 3 (0.75 x 4)
    config.check_mask_updates(16)  # 64 steps: the last update, step 48, is epoch 3: the target is reached
    with pytest.raises(ConfigError, match=r"last mask update of dpf, incremental, l1_anneal comes at epoch 2,"):
        config.check_mask_updates(8)  # 32 steps: the last update, step 16, is epoch 2
    Config.from_values({"epochs": 4, "update_every": 16, "methods": ["dense", "dnw", "sm"]}).check_mask_updates(8)


# ------------------------------------------------------------------------------------------------ ranking


def frame() -> pd.DataFrame:
    """Hand-made top-1 per seed, rows shuffled (pairing must go by seed, not by position)."""
    values = {
        ("dense", 0.0): {0: 90.0, 1: 91.0, 2: 92.0},
        ("a", 0.9): {0: 80.0, 1: 83.0, 2: 86.0},  # mean 83
        ("b", 0.9): {0: 85.0, 1: 84.0, 2: 86.0},  # mean 85: the best
    }
    rows = [
        {"method": m, "sparsity": s, "seed": seed, "test_top1": v}
        for (m, s), d in values.items()
        for seed, v in d.items()
    ]
    order = [4, 0, 8, 2, 6, 1, 7, 3, 5]
    return pd.DataFrame([rows[i] for i in order])


def test_the_ranking_orders_by_mean_with_intervals_and_paired_differences_exact():
    table = ranking(frame()).set_index("method")
    assert list(table.index) == ["dense", "b", "a"]
    assert table.loc["b", "rank"] == 1 and table.loc["a", "rank"] == 2 and math.isnan(table.loc["dense", "rank"])
    a = table.loc["a"]
    assert a["top1_mean"] == pytest.approx(83.0)
    assert (a["top1_low"], a["top1_high"]) == pytest.approx((83 - T2 * 3 / math.sqrt(3), 83 + T2 * 3 / math.sqrt(3)))
    # a - dense per seed: -10, -8, -6 (mean -8, sd 2)
    assert a["vs_dense"] == pytest.approx(-8.0)
    assert (a["vs_dense_low"], a["vs_dense_high"]) == pytest.approx(
        (-8 - T2 * 2 / math.sqrt(3), -8 + T2 * 2 / math.sqrt(3))
    )
    # a - b per seed: -5, -1, 0 (mean -2, sd sqrt(7))
    half = T2 * math.sqrt(7) / math.sqrt(3)
    assert (a["vs_best"], a["vs_best_low"], a["vs_best_high"]) == pytest.approx((-2.0, -2 - half, -2 + half))
    b = table.loc["b"]
    assert (b["vs_best"], b["vs_best_low"], b["vs_best_high"]) == (0.0, 0.0, 0.0)
    assert b["vs_dense"] == pytest.approx(-6.0)  # -5, -7, -6
    assert table.loc["dense", "vs_best"] == pytest.approx(6.0)


def test_ties_keep_the_earlier_row_and_one_seed_gives_no_interval():
    one = pd.DataFrame(
        [
            {"method": "dense", "sparsity": 0.0, "seed": 0, "test_top1": 50.0},
            {"method": "x", "sparsity": 0.9, "seed": 0, "test_top1": 40.0},
            {"method": "y", "sparsity": 0.9, "seed": 0, "test_top1": 40.0},
        ]
    )
    table = ranking(one)
    assert list(table.method) == ["dense", "x", "y"]
    assert table.top1_low.isna().all() and table.vs_dense.tolist() == [0.0, -10.0, -10.0]


# --------------------------------------------------------------------------------------------------- cost


def test_cost_ratios_are_the_mean_of_paired_per_round_ratios_exact():
    table = cost_ratios({"dense": [1.0, 2.0, 1.0], "dnw": [1.5, 3.0, 2.0]}).set_index("method")
    # per round 1.5, 1.5, 2.0: mean 5/3, sd sqrt(1/12), half-width t * sqrt(1/12) / sqrt(3) = t / 6
    assert table.loc["dnw", "cost_ratio"] == pytest.approx(5 / 3)
    assert (table.loc["dnw", "cost_low"], table.loc["dnw", "cost_high"]) == pytest.approx(
        (5 / 3 - T2 / 6, 5 / 3 + T2 / 6)
    )
    assert table.loc["dnw", "cost_median"] == pytest.approx(1.5)
    assert table.loc["dense", "cost_ratio"] == 1.0
    with pytest.raises(ValueError, match="they are paired"):
        cost_ratios({"dense": [1.0, 2.0], "dnw": [1.0]})
    with pytest.raises(ValueError, match="reference 'dense'"):
        cost_ratios({"dnw": [1.0, 2.0]})


def test_interleaved_rounds_rotate_the_order_and_leave_the_warmup_out():
    calls, now = [], [0.0]
    cost = {"dense": 1.0, "dpf": 3.0, "sm": 5.0}

    def worker(name):
        def call():
            calls.append(name)
            now[0] += cost[name]

        return call

    seconds = interleaved({name: worker(name) for name in cost}, rounds=2, warmup=1, clock=lambda: now[0])
    assert calls == ["dense", "dpf", "sm", "dpf", "sm", "dense", "sm", "dense", "dpf"]
    assert seconds == {"dense": [1.0, 1.0], "dpf": [3.0, 3.0], "sm": [5.0, 5.0]}


def test_training_cost_counts_dense_phases_at_one_and_sparse_phases_at_the_ratio():
    def run(method, phases, macs):
        return {"method": method, "sparsity": 0.0 if method == "dense" else 0.9, "seed": 0, "phases": phases,
                "macs_sparse": macs, "macs_dense": 1000, "reached_sparsity": 0.0 if method == "dense" else 0.9}  # fmt: skip

    outcome = Outcome(
        runs=[
            run("dense", [{"name": "dense", "epochs": 2}], 1000),
            run("lottery", [{"name": "dense", "epochs": 2}, {"name": "lottery_round1", "epochs": 2}], 100),
            run("dnw", [{"name": "dnw", "epochs": 2}], 120),
        ]
    )
    ratios = pd.DataFrame(
        [
            {"method": "dense", "cost_ratio": 1.0, "cost_low": 1.0, "cost_high": 1.0},
            {"method": "lottery", "cost_ratio": 1.5, "cost_low": 1.2, "cost_high": 1.8},
            {"method": "dnw", "cost_ratio": 2.5, "cost_low": 2.0, "cost_high": 3.0},
        ]
    )
    table = cost_table(ratios, outcome, 0.9).set_index("method")
    assert table.loc["lottery", "training_cost_dense_epochs"] == pytest.approx(2 + 2 * 1.5)
    assert table.loc["lottery", "epochs_total"] == 4
    assert table.loc["dnw", "training_cost_dense_epochs"] == pytest.approx(2 * 2.5)
    assert table.loc["dense", "training_cost_dense_epochs"] == pytest.approx(2.0)
    assert table.loc["dnw", "macs_vs_dense"] == pytest.approx(0.12)


def test_the_ranking_says_how_many_runs_of_each_row_converged_reading_the_last_phase_only():
    """Flat loss and validation at its best: converged; a loss still falling 10 % in the last fifth: not; the
    lottery's dense phase (flat) is not read, its falling last phase is; a run at 10.2 % on 10,000 images is at chance."""
    flat = [{"phase": "x", "epoch": e, "train_loss": 1.0, "val_top1": 60.0, "test_top1": 60.0} for e in range(1, 6)]
    falling = [dict(r, train_loss=2.0 * 0.9**e) for e, r in enumerate(flat)]
    chance = [dict(r, val_top1=10.0, test_top1=10.2) for r in flat]

    def run(method, seed, history, sparsity=0.9):
        return {"method": method, "sparsity": 0.0 if method == "dense" else sparsity, "seed": seed, "history": history}

    lottery = [dict(r, phase="dense") for r in flat] + [dict(r, phase="lottery_round1") for r in falling]
    outcome = Outcome(
        runs=[run("dense", 0, flat), run("dense", 1, flat), run("dnw", 0, flat), run("dnw", 1, falling),
              run("lottery", 0, lottery), run("lottery", 1, lottery), run("sm", 0, chance), run("sm", 1, flat)],
        extra={"test_examples": 10_000},
    )  # fmt: skip
    frame = convergence_frame(outcome).set_index(["method", "seed"])
    assert frame.loc[("dnw", 0), "converged"] and not frame.loc[("dnw", 1), "converged"]
    assert not frame.loc[("lottery", 0), "converged"]  # its last phase, not the flat dense one
    assert frame.loc[("sm", 0), "at_chance"] and not frame.loc[("sm", 1), "at_chance"]
    table = pd.DataFrame(
        [{"method": m, "sparsity": 0.0 if m == "dense" else 0.9} for m in ("dense", "dnw", "lottery", "sm")]
    )
    counted = with_convergence(table, convergence_frame(outcome)).set_index("method")
    assert counted.loc["dense", "converged"] == "2/2" and counted.loc["dnw", "converged"] == "1/2"
    assert counted.loc["lottery", "converged"] == "0/2" and counted.loc["sm", "at_chance"] == "1/2"


# ------------------------------------------------------------------------------------------- attachment


@pytest.mark.parametrize("method", ["random", "dnw", "edge_popup_binary", "edge_popup_skc", "td"])
def test_per_layer_methods_keep_floor_of_the_keep_share_in_every_convolution_and_nothing_else(method):
    """Every conv of ResNet-20 (width 4) keeps exactly floor(0.1 n) weights in the evaluated network; the
    classifier stays dense; edge-popup's conv weights are frozen and its binary weights are ±1."""
    import math as m
    from types import SimpleNamespace

    import torch

    from rewire.experiments.benchmark.runs import attach
    from rewire.models import build_model

    torch.manual_seed(0)
    model = build_model("resnet20", 10, width=4)
    context = SimpleNamespace(recipe=Config.from_values({}).recipe(), td_rho="gamma", l1_coefficient=1e-6)
    assert attach(context, method, model, 0.9, seed=3) == []
    model.eval()
    convs = [mod for mod in model.modules() if isinstance(mod, nn.Conv2d)]
    assert len(convs) == 21
    for conv in convs:
        weight = conv.weight
        assert int(torch.count_nonzero(weight)) == m.floor(0.1 * weight.numel()), (method, weight.shape)
    assert int(torch.count_nonzero(model.fc.weight)) == model.fc.weight.numel()
    originals = [conv.parametrizations.weight.original for conv in convs]
    assert all(o.requires_grad for o in originals) == (not method.startswith("edge_popup"))
    if method == "random":  # one seed per layer: two layers of one shape get different masks
        first, second = (model.get_submodule(n).weight != 0 for n in ("layer1.0.conv2", "layer1.1.conv1"))
        assert first.shape == second.shape and not torch.equal(first, second)
    if method == "edge_popup_binary":
        assert all(set(o.unique().tolist()) == {-1.0, 1.0} for o in originals)
