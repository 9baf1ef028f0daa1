"""DNW Table 2's experiment (rewire.experiments.mobilenet_dnw): rows, the config (the one schema), the plan,
the complete graph behind the lottery-ticket and fine-tune rows, choices on validation, and the claims."""

from __future__ import annotations

import math

import nbformat
import pandas as pd
import pytest
import torch
import yaml
from synthetic import tiny_dataset

from rewire.experiments import mobilenet_dnw
from rewire.experiments.engine import RunContext, module_closure
from rewire.experiments.mobilenet_dnw import runs
from rewire.experiments.mobilenet_dnw.config import Config
from rewire.experiments.mobilenet_dnw.paper import PAPER_TABLE2, PAPER_TABLE5
from rewire.experiments.mobilenet_dnw.report import table2_claims
from rewire.experiments.mobilenet_dnw.rows import Row
from rewire.experiments.schema import ConfigError, config_fields
from rewire.models.mobilenet_dnw import STAGES, edge_budgets, mobilenet_v1_dnw, scaled_stages
from rewire.pipeline import params as params_module
from rewire.sparse.masks import current_mask, topk_mask

pytestmark = pytest.mark.usefixtures("one_thread")

PARAMS = params_module.load("params.yaml")  # the scales' blocks (wherever they live) with the overrides
NOTEBOOK = "notebooks/02_mobilenet_dnw.ipynb"
# nodes x 1/16: stages of 2..64 nodes, a few hundred edges; one step per epoch on 27 images (no dense row:
# the dense baseline x 0.25 x 1/16 has no channel left, see test_the_dense_baseline_has_the_scaled_width)
SETUP = Config.from_values(
    {"node_width": 0.0625, "epochs": 1, "finetune_epochs": 1, "anneal_update_every": 1, "rows": ["dnw"]}
)


def context(root, validation=True) -> RunContext:
    data = tiny_dataset()
    train, held_out = data.train_validation_split(0.1, seed=0)
    return RunContext(
        train,
        torch.device("cpu"),
        batch_size=9,
        checkpoint_root=root,
        progress=False,
        code=(runs.RUNS_MODULE,),
        validation=held_out if validation else None,
    )


# ----------------------------------------------------------------------------------------- rows


def test_paper_numbers_are_the_papers_fourteen_rows_and_table5():
    assert len(PAPER_TABLE2) == 14
    assert PAPER_TABLE2["dnw"] == (89.7, 0.2)
    assert PAPER_TABLE2["l1_anneal"] == (84.3, 0.6)
    assert PAPER_TABLE2["finetune-0.01"] == (89.7, 0.1)
    assert PAPER_TABLE2["mobilenet_v1"] == (86.3, 0.2)
    assert PAPER_TABLE5["td_regular-0.9"] == (87.9, 0.5)
    assert all(PAPER_TABLE5[k] == PAPER_TABLE2[k] for k in PAPER_TABLE5 if k.startswith("td-"))


@pytest.mark.parametrize("key", ["dnw", "td-0.95", "td-gamma", "td_regular-0.9", "finetune-0.01", "l1_anneal-1e-05"])
def test_row_keys_round_trip(key):
    assert Row.parse(key).key == key


def test_every_paper_row_parses_and_l1_anneal_shares_one_paper_row():
    for key in PAPER_TABLE2:
        row = Row.parse(key) if key != "l1_anneal" else Row("l1_anneal", l1=0.0)
        assert row.paper_key == key
    assert Row("l1_anneal", l1=1e-4).paper_key == "l1_anneal"


def smoke(**changes):
    return {**PARAMS["smoke"]["mobilenet_dnw"], **changes}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Row.parse("td-1.5"), "rho"),
        (lambda: Row.parse("td--0.1"), "rho"),
        (lambda: Row.parse("td-often"), "not a number"),
        (lambda: Row("td"), "needs rho"),
        (lambda: Row.parse("finetune-0"), "alpha > 0"),
        (lambda: Row.parse("l1_anneal--1"), ">= 0"),
        (lambda: Row.parse("dnw-3"), "takes no value"),
        (lambda: Row.parse("magic"), "unknown Table 2 method"),
        (lambda: Config.from_values(smoke(rows=["dnw", "dnw"])), "listed twice"),
        (lambda: Config.from_values(smoke(td_rhos=[], td_regular_rhos=["chosen"])), "nothing to choose"),
        (lambda: Config.from_values(smoke(td_regular_rhos=[2.0])), "rho"),
    ],
)
def test_bad_rows_and_plans_stop_with_a_message(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("width", [1.5, 0.0, -0.2])
def test_an_impossible_width_stops_before_any_work(width):
    with pytest.raises(ValueError, match="d"):
        Config.from_values(smoke(width=width))


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


# --------------------------------------------------------------------------------------- the config


@pytest.mark.parametrize("scale", ["smoke", "cpu", "paper"])
def test_every_scales_block_is_a_valid_config(scale):
    config = Config.from_values(PARAMS[scale]["mobilenet_dnw"], where=f"params.yaml '{scale}.mobilenet_dnw'")
    assert config.epochs >= 1 and config.seeds


@pytest.mark.parametrize(
    ("changes", "field", "expected"),
    [
        ({"epochs": 0}, "'epochs'", ">= 1"),
        ({"epochs": -3}, "'epochs'", ">= 1"),
        ({"finetune_epochs": 0}, "'finetune_epochs'", ">= 1"),
        ({"epochs": "3"}, "'epochs'", "must be an integer"),
        ({"batch_size": 0}, "'batch_size'", ">= 1"),
        ({"lr": 0}, "'lr'", "> 0"),
        ({"weight_decay": -1e-4}, "'weight_decay'", ">= 0"),
        ({"validation_fraction": 0}, "'validation_fraction'", "in (0, 1)"),
        ({"train_per_class": -1}, "'train_per_class'", ">= 0"),
        ({"width": 1.5}, "'width'", "in (0, 1]"),
        ({"dense_width": 0}, "'dense_width'", "in (0, 1]"),
        ({"node_width": 2}, "'node_width'", "in (0, 1]"),
        ({"anneal_end": 0}, "'anneal_end'", "in (0, 1]"),
        ({"anneal_update_every": 0}, "'anneal_update_every'", ">= 1"),
        ({"eval_every": 0}, "'eval_every'", ">= 1"),
        ({"timing_batches": 0}, "'timing_batches'", ">= 1"),
        ({"precision": "fp16"}, "'precision'", "one of 'fp32', 'bf16'"),
        ({"dataset": "mnist"}, "'dataset'", "one of 'cifar10'"),
        ({"seeds": [-1]}, "'seeds'", ">= 0"),
        ({"seeds": [0, 0]}, "'seeds'", "duplicates"),
        ({"seeds": []}, "'seeds'", "empty"),
        ({"td_rhos": [1.5]}, "'td_rhos[0]'", "[0, 1]"),
        ({"td_rhos": ["often"]}, "'td_rhos[0]'", "'gamma'"),
        ({"td_regular_rhos": [0.9, -0.1]}, "'td_regular_rhos[1]'", "[0, 1]"),
        ({"finetune_alphas": [0.0]}, "'finetune_alphas'", "> 0"),
        ({"l1_coefficients": [-1e-6]}, "'l1_coefficients'", ">= 0"),
        ({"select_on_first_seed": "yes"}, "'select_on_first_seed'", "true or false"),
        ({"epoch": 3}, "'epoch'", "did you mean 'epochs'"),
    ],
)
def test_config_rejects_each_kind_of_bad_value_naming_the_field(changes, field, expected):
    with pytest.raises(ConfigError) as error:
        Config.from_values(smoke(**changes), where="params.yaml 'smoke.mobilenet_dnw'")
    message = str(error.value)
    assert "params.yaml 'smoke.mobilenet_dnw'" in message and field in message and expected in message, message


def test_an_unknown_table2_row_is_refused_with_the_known_ones():
    with pytest.raises(ConfigError) as error:
        Config.from_values(smoke(rows=["dnw", "magic"]))
    message = str(error.value)
    assert "'rows[1]': 'magic' is not a Table 2 row" in message
    assert "known rows: mobilenet_v1, rg, dnw_no_update, complete, lottery, dnw, td-<rho>" in message


def test_notebook_parameters_are_config_fields_with_the_smoke_blocks_values():
    from rewire.pipeline.params import notebook_parameters

    declared = notebook_parameters(NOTEBOOK)
    fields = set(config_fields(Config))
    assert set(declared) <= fields | set(Config.IGNORED)
    assert set(Config.IGNORED) == {"scale", "out_dir", "checkpoint_dir", "data_root"}
    smoke_block = PARAMS["smoke"]["mobilenet_dnw"]
    assert set(smoke_block) == fields  # every field is set at the smoke scale, and nothing else
    assert {name: declared[name]["default"] for name in smoke_block} == smoke_block
    assert Config.from_values(smoke_block) == Config()  # the schema's defaults are the smoke scale too


def test_the_notebook_narrates():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    assert sum(len(source.splitlines()) for source in code) <= 120
    assert not any("for " in line and line.rstrip().endswith(":") for source in code for line in source.splitlines())
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")


# ------------------------------------------------------------------------------------------ the plan


@pytest.mark.parametrize(("scale", "size"), [("smoke", 12), ("cpu", 35), ("paper", 103)])
def test_plan_sizes(scale, size):
    """paper: 8 selection runs (5 ρ + 3 λ, first seed) + 95 final ones (5 seeds x (6 rows + 5 ρ + the chosen λ +
    3 α + 4 regular ρ)); cpu: 5 seeds x (5 rows + the complete graph + one ρ); smoke and cpu have no separate
    selection phase."""
    specs = mobilenet_dnw.plan(Config.from_values(PARAMS[scale]["mobilenet_dnw"]))
    assert len(specs) == size
    assert len({spec.name for spec in specs}) == size  # no run twice
    phases = {(spec.row, spec.seed, spec.settings.get("phase")) for spec in specs}
    assert len(phases) == size


def test_the_plan_trains_candidates_first_and_the_complete_graph_before_its_rows():
    # the issue-19 cpu design's choices (two ρ candidates, regular TD at the chosen one), on 3 seeds
    block = {**PARAMS["cpu"]["mobilenet_dnw"], "td_rhos": [0.95, "gamma"], "td_regular_rhos": ["chosen"],
             "seeds": [0, 1, 2]}  # fmt: skip
    config = Config.from_values(block)
    names = [f"{spec.row}@{spec.seed}" for spec in mobilenet_dnw.plan(config)]
    assert names[:4] == ["td-0.95@0", "td-gamma@0", "td-chosen@1", "td-chosen@2"]
    assert names.index("complete@1") == names.index("lottery@1") - 1
    assert names[-3:] == ["td_regular-chosen@0", "td_regular-chosen@1", "td_regular-chosen@2"]
    paper = [spec.row for spec in mobilenet_dnw.plan(Config.from_values(PARAMS["paper"]["mobilenet_dnw"]))]
    chosen = {row for row in paper if row.endswith("chosen")}
    assert chosen == {"l1_anneal-chosen"}  # every ρ on every seed (Table 2 lists each); one L1 + Anneal row


def test_the_driver_is_in_every_runs_code_hash_and_the_quoted_numbers_are_not():
    closure = module_closure([runs.RUNS_MODULE])
    assert runs.RUNS_MODULE in closure and "rewire.experiments.mobilenet_dnw.config" in closure
    assert "rewire.experiments.mobilenet_dnw.paper" not in closure
    assert "rewire.experiments.mobilenet_dnw.report" not in closure


# ----------------------------------------------------------------------------------------- runs


def test_lottery_and_finetune_prune_the_complete_graph_found_by_its_hash(tmp_path):
    ctx = context(tmp_path)
    complete = runs.run_one(ctx, Row("complete"), 0, SETUP)
    assert complete.trained_now
    lottery = runs.run_one(ctx, Row("lottery"), 0, SETUP)
    finetune = runs.run_one(ctx, Row("finetune", alpha=0.01), 0, SETUP)
    for result in (lottery, finetune):
        assert result.record["config"]["complete_run"] == complete.run_dir.name
    again = runs.run_one(ctx, Row("complete"), 0, SETUP)
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
    assert lottery.record["hparams"]["lr"] == runs.LOTTERY_LR


def test_the_lottery_ticket_starts_from_the_complete_graphs_initialisation(tmp_path, monkeypatch):
    """Rewinding: the ticket's weights at the start of training equal the complete graph's initial weights,
    while fine-tuning starts from the complete graph's trained weights."""
    ctx = context(tmp_path)
    complete = runs.run_one(ctx, Row("complete"), 0, SETUP)
    initial = ctx.build(SETUP.graph_spec(3), 0).state_dict()
    trained = complete.model.state_dict()
    seen = {}
    real_fit = ctx.fit

    def spy(name, **kwargs):
        seen[name] = {k: v.detach().clone() for k, v in kwargs["model"].state_dict().items()}
        return real_fit(name, **kwargs)

    monkeypatch.setattr(ctx, "fit", spy)
    runs.run_one(ctx, Row("lottery"), 0, SETUP)
    runs.run_one(ctx, Row("finetune", alpha=0.01), 0, SETUP)
    stem = "stem.weight"
    assert torch.equal(seen["lottery-seed0"][stem], initial[stem])
    assert torch.equal(seen["finetune-0.01-seed0"][stem], trained[stem])
    assert not torch.equal(initial[stem], trained[stem])
    original = "stages.1.graph.parametrizations.weight.original"
    assert torch.equal(seen["lottery-seed0"][original], initial["stages.1.graph.weight"])
    assert torch.equal(seen["finetune-0.01-seed0"][original], trained["stages.1.graph.weight"])


def test_the_dense_baseline_has_the_scaled_width(tmp_path):
    ctx = context(tmp_path)
    setup = SETUP.replace(node_width=0.125, rows=["mobilenet_v1"])
    result = runs.run_one(ctx, Row("mobilenet_v1"), 0, setup)
    assert result.record["model"]["kwargs"]["width_mult"] == pytest.approx(0.25 * 0.125)
    assert result.model.classifier.in_features == int(1024 * 0.25 * 0.125) == 32
    with pytest.raises(ValueError, match="leaves a layer of 32 channels with none"):
        SETUP.replace(rows=["mobilenet_v1"])  # x 0.25 * 1/16 leaves the stem without a channel: refused before any work


def test_run_table2_chooses_on_validation_and_runs_only_the_choice_on_later_seeds(tmp_path):
    ctx = context(tmp_path)
    config = SETUP.replace(
        rows=["dnw"],
        td_rhos=[0.9, "gamma"],
        td_regular_rhos=["chosen"],
        finetune_alphas=[],
        l1_coefficients=[0.0],
        select_on_first_seed=True,
        seeds=[0, 1],
    )
    done = runs.run_table2(ctx, config, log=lambda *_: None)
    keys = {(r["row"], r["seed"]) for r in done.per_run}
    first = {k: done.results[(k, 0)].final["val_top1"] for k in ("td-0.9", "td-gamma")}
    chosen = max(first, key=first.get)  # ties: the first candidate, as max does
    assert done.chosen["td"] == chosen
    other = ({"td-0.9", "td-gamma"} - {chosen}).pop()
    assert (chosen, 1) in keys and (other, 0) in keys and (other, 1) not in keys
    twin = "td_regular-" + chosen.partition("-")[2]
    assert {(twin, 0), (twin, 1), ("dnw", 0), ("dnw", 1), ("l1_anneal-0", 1)} <= keys
    flags = {r["row"]: r["chosen_on_validation"] for r in done.per_run}
    assert flags[chosen] is True and flags[other] is False and flags["dnw"] is None


def test_choosing_without_a_validation_split_is_refused():
    class Result:
        final = {"test_top1": 50.0}

    with pytest.raises(ValueError, match="validation split"):
        runs.choose_on_validation({"td-0.9": Result()})


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
        "l1_anneal-1e-06": 0.0,
    }
    jitter = {0: 0.0, 1: 0.1, 2: -0.1}
    for key, offset in offsets.items():
        for seed, value in base.items():
            rows.append({"row": key, "seed": seed, "test_top1": value + offset + (jitter[seed] if key == "dnw" else 0)})
    found = table2_claims(
        pd.DataFrame(rows),
        best_td="td-0.95",
        regular_td="td_regular-0.95",
        finetune="finetune-0.01",
        l1_anneal="l1_anneal-1e-06",
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


# --------------------------------------------------------------------------------------- the report


def test_the_report_writes_every_declared_output_with_headline_metrics_only(tmp_path):
    """From run records alone (no model: the live-node figure and the timing say "not computed at this scale")."""
    from rewire.experiments.base import Outcome

    keys = ["mobilenet_v1", "rg", "dnw_no_update", "td-0.95", "td_regular-0.95", "l1_anneal-0", "lottery"]
    keys += ["complete", "finetune-0.01", "dnw"]
    per_run = [
        {
            "row": key,
            "method": Row.parse(key).method,
            "label": Row.parse(key).label,
            "seed": seed,
            "test_top1": 40.0 + index + seed,
            "val_top1": 41.0 + index,
            "images_per_s": 100.0,
            "epochs": 2,
            "chosen_on_validation": True if key in ("td-0.95", "l1_anneal-0") else None,
            "run": f"{key}-seed{seed}-0-0",
        }
        for index, key in enumerate(keys)
        for seed in (0, 1, 2)
    ]
    outcome = Outcome(runs=per_run, extra={"chosen": {"td": "td-0.95", "l1_anneal": "l1_anneal-0"}, "results": {}})
    label = {"scale": "cpu", "seeds": [0, 1, 2], "data_source": "synthetic", "data_source_description": ""}
    label |= {"device": "cpu", "torch": "", "rewire": "", "commit": "test"}
    config = Config.from_values(PARAMS["cpu"]["mobilenet_dnw"])
    metrics = mobilenet_dnw.report(config, outcome, tmp_path, label)
    stage = yaml.safe_load(open("dvc.yaml", encoding="utf-8"))["stages"]["mobilenet_dnw"]
    for entry in stage["outs"] + stage["metrics"]:
        name = next(iter(entry)).removeprefix("results/mobilenet_dnw/")
        assert name.endswith(".ipynb") or (tmp_path / name).exists(), name  # the notebook: the pipeline's copy
    assert set(metrics) == {"claims_held", "claims_reversed", "claims_not_decided", "top1", "baseline_top1"}
    assert metrics["top1"] == pytest.approx(40.0 + 9 + 1) and metrics["baseline_top1"] == pytest.approx(40.0 + 1 + 1)
    assert metrics["claims_held"] + metrics["claims_reversed"] + metrics["claims_not_decided"] == 8
    details = yaml.safe_load((tmp_path / "details.json").read_text())
    assert details["lottery_top1_mean"] == pytest.approx(47.0) and details["top1"] == metrics["top1"]
    assert (tmp_path / "compact_timing.md").read_text().startswith("not computed at this scale")
    assert pd.read_csv(tmp_path / "table2.csv").set_index("row").loc["dnw", "paper_mean"] == 89.7
