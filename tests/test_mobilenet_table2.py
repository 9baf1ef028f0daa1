"""DNW Table 2's driver: rows, budgets, the complete graph behind the lottery-ticket and fine-tune rows,
choices on validation, and the claims."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from synthetic import tiny_dataset

from rewire.experiments import mobilenet_table2 as table2
from rewire.experiments.engine import RunContext
from rewire.models.mobilenet_dnw import STAGES, edge_budgets, mobilenet_v1_dnw, scaled_stages
from rewire.sparse.masks import current_mask, topk_mask

pytestmark = pytest.mark.usefixtures("one_thread")

# nodes x 1/16: stages of 2..64 nodes, a few hundred edges; one step per epoch on 27 images
SETUP = table2.Setup(node_width=0.0625, epochs=1, finetune_epochs=1, anneal_update_every=1)


def context(root, validation=True) -> RunContext:
    data = tiny_dataset()
    train, held_out = data.train_validation_split(0.1, seed=0)
    return RunContext(
        train,
        torch.device("cpu"),
        batch_size=9,
        checkpoint_root=root,
        progress=False,
        code=(table2.DRIVER_MODULE,),
        validation=held_out if validation else None,
    )


# ----------------------------------------------------------------------------------------- rows


def test_paper_numbers_are_the_papers_fourteen_rows_and_table5():
    assert len(table2.PAPER_TABLE2) == 14
    assert table2.PAPER_TABLE2["dnw"] == (89.7, 0.2)
    assert table2.PAPER_TABLE2["l1_anneal"] == (84.3, 0.6)
    assert table2.PAPER_TABLE2["finetune-0.01"] == (89.7, 0.1)
    assert table2.PAPER_TABLE2["mobilenet_v1"] == (86.3, 0.2)
    assert table2.PAPER_TABLE5["td_regular-0.9"] == (87.9, 0.5)
    assert all(table2.PAPER_TABLE5[k] == table2.PAPER_TABLE2[k] for k in table2.PAPER_TABLE5 if k.startswith("td-"))


@pytest.mark.parametrize("key", ["dnw", "td-0.95", "td-gamma", "td_regular-0.9", "finetune-0.01", "l1_anneal-1e-05"])
def test_row_keys_round_trip(key):
    assert table2.Row.parse(key).key == key


def test_every_paper_row_parses_and_l1_anneal_shares_one_paper_row():
    for key in table2.PAPER_TABLE2:
        row = table2.Row.parse(key) if key != "l1_anneal" else table2.Row("l1_anneal", l1=0.0)
        assert row.paper_key == key
    assert table2.Row("l1_anneal", l1=1e-4).paper_key == "l1_anneal"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: table2.Row.parse("td-1.5"), "rho"),
        (lambda: table2.Row.parse("td--0.1"), "rho"),
        (lambda: table2.Row.parse("td-often"), "not a number"),
        (lambda: table2.Row("td"), "needs rho"),
        (lambda: table2.Row.parse("finetune-0"), "alpha > 0"),
        (lambda: table2.Row.parse("l1_anneal--1"), ">= 0"),
        (lambda: table2.Row.parse("dnw-3"), "takes no value"),
        (lambda: table2.Row.parse("magic"), "unknown Table 2 method"),
        (lambda: table2.Plan(rows=("dnw", "dnw")), "listed twice"),
        (lambda: table2.Plan(td_rhos=(), td_regular_rhos=("chosen",)), "nothing to choose"),
        (lambda: table2.Plan(td_regular_rhos=(2.0,)), "rho"),
    ],
)
def test_bad_rows_and_plans_stop_with_a_message(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("width", [1.5, 0.0, -0.2])
def test_an_impossible_width_stops_before_any_work(width):
    with pytest.raises(ValueError, match="d"):
        table2.Setup(width=width).check()


def test_node_width_keeps_each_stages_edges_the_same_fraction():
    """k = ceil(d^2 E) of the *scaled* stage: x0.25 nodes, d = 0.225 -> 7; 78; 312; 4,562; 4,977 (by hand:
    E = 8*16 = 128; 16*32 + 32^2 = 1,536; 32*64 + 64^2 = 6,144; 64*128 + 5*128^2 = 90,112; 128*256 + 256^2 = 98,304)."""
    stages = scaled_stages(0.25)
    assert [(s.inputs, s.outputs, s.blocks) for s in stages] == [
        (8, 16, 1),
        (16, 32, 2),
        (32, 64, 2),
        (64, 128, 6),
        (128, 256, 2),
    ]
    model = mobilenet_v1_dnw(10, node_width=0.25)
    ks = [b.k for b in edge_budgets(model, 0.225)]
    edges = [128, 1536, 6144, 90112, 98304]
    assert ks == [math.ceil(0.225**2 * e - 1e-9) for e in edges] == [7, 78, 312, 4562, 4977]
    assert [s.mobilenet_edges for s in stages] == edges
    assert scaled_stages(1.0) == STAGES
    with pytest.raises(ValueError, match="node_width"):
        scaled_stages(1.5)


# ----------------------------------------------------------------------------------------- runs


def test_lottery_and_finetune_prune_the_complete_graph_found_by_its_hash(tmp_path):
    ctx = context(tmp_path)
    complete = table2.run_row(ctx, table2.Row("complete"), 0, SETUP, subset={})
    assert complete.trained_now
    lottery = table2.run_row(ctx, table2.Row("lottery"), 0, SETUP, subset={})
    finetune = table2.run_row(ctx, table2.Row("finetune", alpha=0.01), 0, SETUP, subset={})
    for result in (lottery, finetune):
        assert result.record["config"]["complete_run"] == complete.run_dir.name
    again = table2.run_row(ctx, table2.Row("complete"), 0, SETUP, subset={})
    assert not again.trained_now and again.run_dir == complete.run_dir  # trained once
    # the fixed masks are the top-k |w| of the trained complete graph among the feed-forward entries, k per stage
    for budget in edge_budgets(complete.model, SETUP.width):
        expected = topk_mask(complete.model.get_parameter(budget.target).detach().abs(), budget.k, budget.allowed)
        module_name, _, tensor = budget.target.rpartition(".")
        for result in (lottery, finetune):
            mask = current_mask(result.model.get_submodule(module_name), tensor)
            assert int(mask.sum()) == budget.k
            assert torch.equal(mask, expected)
    assert finetune.record["hparams"]["lr"] == 0.01
    assert lottery.record["hparams"]["lr"] == table2.LOTTERY_LR


def test_the_lottery_ticket_starts_from_the_complete_graphs_initialisation(tmp_path, monkeypatch):
    """Rewinding: the ticket's weights at the start of training equal the complete graph's initial weights,
    while fine-tuning starts from the complete graph's trained weights."""
    ctx = context(tmp_path)
    complete = table2.run_row(ctx, table2.Row("complete"), 0, SETUP, subset={})
    initial = ctx.build(SETUP.graph_spec(3), 0).state_dict()
    trained = complete.model.state_dict()
    seen = {}
    real_fit = ctx.fit

    def spy(name, **kwargs):
        seen[name] = {k: v.detach().clone() for k, v in kwargs["model"].state_dict().items()}
        return real_fit(name, **kwargs)

    monkeypatch.setattr(ctx, "fit", spy)
    table2.run_row(ctx, table2.Row("lottery"), 0, SETUP, subset={})
    table2.run_row(ctx, table2.Row("finetune", alpha=0.01), 0, SETUP, subset={})
    stem = "stem.weight"
    assert torch.equal(seen["lottery-seed0"][stem], initial[stem])
    assert torch.equal(seen["finetune-0.01-seed0"][stem], trained[stem])
    assert not torch.equal(initial[stem], trained[stem])
    original = "stages.1.graph.parametrizations.weight.original"
    assert torch.equal(seen["lottery-seed0"][original], initial["stages.1.graph.weight"])
    assert torch.equal(seen["finetune-0.01-seed0"][original], trained["stages.1.graph.weight"])


def test_the_dense_baseline_has_the_scaled_width(tmp_path):
    ctx = context(tmp_path)
    setup = table2.Setup(node_width=0.125, epochs=1)
    result = table2.run_row(ctx, table2.Row("mobilenet_v1"), 0, setup, subset={})
    assert result.record["model"]["kwargs"]["width_mult"] == pytest.approx(0.25 * 0.125)
    assert result.model.classifier.in_features == int(1024 * 0.25 * 0.125) == 32
    with pytest.raises(ValueError, match="leaves a layer of 32 channels with none"):
        SETUP.check()  # x 0.25 * 1/16 leaves the stem without a channel: refused before any work


def test_run_table2_chooses_on_validation_and_runs_only_the_choice_on_later_seeds(tmp_path):
    ctx = context(tmp_path)
    plan = table2.Plan(
        rows=("dnw",),
        td_rhos=(0.9, "gamma"),
        td_regular_rhos=("chosen",),
        finetune_alphas=(),
        l1_coefficients=(0.0,),
        select_on_first_seed=True,
    )
    runs = table2.run_table2(ctx, SETUP, plan, [0, 1], subset={}, log=lambda *_: None)
    keys = {(r["row"], r["seed"]) for r in runs.per_run}
    first = {k: runs.results[(k, 0)].final["val_top1"] for k in ("td-0.9", "td-gamma")}
    chosen = max(first, key=first.get)  # ties: the first candidate, as max does
    assert runs.chosen["td"] == chosen
    other = ({"td-0.9", "td-gamma"} - {chosen}).pop()
    assert (chosen, 1) in keys and (other, 0) in keys and (other, 1) not in keys
    twin = "td_regular-" + chosen.partition("-")[2]
    assert {(twin, 0), (twin, 1), ("dnw", 0), ("dnw", 1), ("l1_anneal-0", 1)} <= keys
    flags = {r["row"]: r["chosen_on_validation"] for r in runs.per_run}
    assert flags[chosen] is True and flags[other] is False and flags["dnw"] is None


def test_choosing_without_a_validation_split_is_refused():
    class Result:
        final = {"test_top1": 50.0}

    with pytest.raises(ValueError, match="validation split"):
        table2.choose_on_validation({"td-0.9": Result()})


# --------------------------------------------------------------------------------------- claims


def test_claims_pair_seeds_and_judge_each_direction():
    rows = []
    base = {0: 40.0, 1: 43.0, 2: 41.5}
    offsets = {
        "dnw": 3.0,
        "rg": 1.0,
        "mobilenet_v1": -2.0,
        "dnw_no_update": 3.5,  # DNW below No Update: reversed
        "td-0.95": 3.0,
        "td_regular-0.95": 1.0,
        "lottery": 2.9,
        "finetune-0.01": 3.1,
        "l1_anneal-0": 0.0,
    }
    jitter = {0: 0.0, 1: 0.1, 2: -0.1}
    for key, offset in offsets.items():
        for seed, value in base.items():
            rows.append({"row": key, "seed": seed, "test_top1": value + offset + (jitter[seed] if key == "dnw" else 0)})
    found = table2.table2_claims(
        pd.DataFrame(rows),
        best_td="td-0.95",
        regular_td="td_regular-0.95",
        finetune="finetune-0.01",
        l1_anneal="l1_anneal-0",
    )
    verdicts = {claim.claim: claim for claim in found}
    assert len(found) == 8
    from rewire.reporting.claims import claims_frame

    frame = claims_frame(found).set_index("claim")

    def verdict(words):
        return frame.loc[words, "verdict"]

    assert verdict("DNW beats the random graph of the same size") == "holds"
    assert verdict("the random graph beats dense MobileNetV1 x 0.25") == "holds"
    assert verdict("DNW beats the same top-k without the update rule") == "reversed"
    assert verdict("L1 + Anneal is below DNW") == "holds"
    assert verdict("fine-tuning the pruned complete graph (α = 0.01) matches DNW") == "holds"
    assert verdict("unconstrained targeted dropout >= regular") == "holds"
    assert verdicts["DNW beats the random graph of the same size"].differences() == pytest.approx(
        {0: 2.0, 1: 2.1, 2: 1.9}
    )
