"""DNW Table 2 both ways (issue 19, point 6): ``graph_variant`` paper | authors_code, the paper scale's
45,000 -> 50,000 protocol, the anneal without L1 (λ = 0) named Anneal, and the best test epoch beside the final.

``authors_code`` is what the authors' code behind Table 2's numbers computes: targeted dropout returns the
masked |W| (signs dropped) with γ over the whole matrix; DNW, No Update, the lottery ticket and fine-tuning take
the top-k over the whole adjacency matrix, so entries that are not feed-forward can be chosen though they never
act. Every weight here is signed and asymmetric, so a lost sign or a wrong candidate set changes a number.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn as nn
from synthetic import tiny_dataset

from rewire.__main__ import main
from rewire.data import ImageDataset
from rewire.experiments import mobilenet_dnw
from rewire.experiments.base import Outcome
from rewire.experiments.engine import RunContext
from rewire.experiments.mobilenet_dnw import runs
from rewire.experiments.mobilenet_dnw.config import Config
from rewire.experiments.mobilenet_dnw.report import table2_frame
from rewire.experiments.mobilenet_dnw.rows import Row
from rewire.experiments.schema import ConfigError
from rewire.methods import apply_method
from rewire.methods.targeted_dropout import TargetedDropout, apply_targeted_dropout, authors_row_budgets, row_budgets
from rewire.models import tiny_graphs
from rewire.models.mobilenet_dnw import GRAPH_VARIANTS, edge_budgets, mobilenet_v1_dnw, topk_candidates
from rewire.pipeline import params as params_module
from rewire.sparse.masks import SparseWeight, current_mask, sparse_modules, topk_mask

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
PARAMS = params_module.load(str(ROOT / "params.yaml"))
SETUP = Config.from_values(
    {"node_width": 0.0625, "epochs": 1, "finetune_epochs": 1, "anneal_update_every": 1, "rows": ["dnw"]}
)
# signed, asymmetric, all magnitudes distinct: |W| in decreasing order 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, ...
W = torch.tensor([[0.9, -0.8, 0.1, -0.05], [-0.7, 0.3, -0.6, 0.2], [0.15, -0.4, 0.5, -0.25]])
TOP5 = torch.tensor([[1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 1, 0]], dtype=torch.bool)  # the 5 largest |w|


def smoke(**changes):
    return {**PARAMS["smoke"]["mobilenet_dnw"], **changes}


def td_layer(graph_variant: str, variant: str = "unconstrained", k: int = 5) -> nn.Linear:
    layer = nn.Linear(4, 3, bias=False)
    with torch.no_grad():
        layer.weight.copy_(W)
    apply_targeted_dropout(layer, k=k, rho=0.5, variant=variant, graph_variant=graph_variant)
    return layer.eval()


def test_the_variant_names_are_table_1s():
    assert GRAPH_VARIANTS == tiny_graphs.GRAPH_VARIANTS == ("paper", "authors_code")


# ------------------------------------------------------------------------- targeted dropout, authors' code


def test_authors_targeted_dropout_acts_with_the_masked_magnitude_and_the_paper_keeps_the_sign():
    """authors_code: the effective weight is |w| on the kept entries and its gradient sign(w) x the masked one;
    paper: w and the masked gradient. (Breaking ``weight.abs()`` out of ``effective`` fails both checks.)"""
    upstream = torch.tensor([[1.0, 2.0, -3.0, 4.0], [-5.0, 6.0, 7.0, -8.0], [9.0, -10.0, 11.0, 12.0]])
    for variant, expected_weight, expected_grad in (
        ("paper", W * TOP5, upstream * TOP5),
        ("authors_code", W.abs() * TOP5, upstream * W.sign() * TOP5),
    ):
        layer = td_layer(variant)
        assert torch.equal(layer.weight, expected_weight), variant
        (layer.weight * upstream).sum().backward()
        grad = layer.parametrizations.weight.original.grad
        assert torch.equal(grad, expected_grad), variant
    assert torch.equal(td_layer("authors_code").weight[1], torch.tensor([0.7, 0.0, 0.6, 0.0]))  # -0.7 acts as +0.7


def test_authors_regular_targeted_dropout_drops_floor_gamma_of_every_row():
    """3 x 4 matrix, k = 5, γ = 7/12: the authors drop floor(7/12 * 4) = 2 of every row and keep 2 + 2 + 2 = 6
    (about k); the paper splits exactly k by largest remainders: 2, 2, 1."""
    assert authors_row_budgets(torch.tensor([4, 4, 4]), 5).tolist() == [2, 2, 2]
    assert row_budgets(torch.tensor([4, 4, 4]), 5).tolist() == [2, 2, 1]
    assert authors_row_budgets(torch.tensor([10, 3, 7]), 4).tolist() == [2, 1, 2]  # 10 - 16*10//20, 3 - 48//20, ...
    authors = td_layer("authors_code", "regular").weight
    paper = td_layer("paper", "regular").weight
    assert torch.equal(authors != 0, TOP5 | torch.tensor([[0, 0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0]], dtype=torch.bool))
    assert torch.equal(paper != 0, TOP5)
    assert authors[2, 1] == 0.4 and paper[2, 2] == 0.5  # |-0.4| acts, sign dropped


def test_authors_targeted_dropout_takes_gamma_over_the_whole_matrix_in_the_experiment(tmp_path):
    """Through the experiment's run: authors_code gives the selector no allowed set (γ = 1 - k / numel over the
    whole stage), the paper the feed-forward entries (γ = 1 - k / feed-forward entries)."""
    ctx = context(tmp_path)
    for variant in GRAPH_VARIANTS:
        result = runs.run_one(ctx, Row("td", rho="gamma"), 0, SETUP.replace(graph_variant=variant))
        budgets = {b.target: b for b in edge_budgets(mobilenet_v1_dnw(3, node_width=SETUP.node_width), SETUP.width)}
        for name, _module, parametrization in sparse_modules(result.model):
            selector = parametrization.selector
            budget = budgets[name]
            assert isinstance(selector, TargetedDropout) and selector.graph_variant == variant
            n = budget.allowed.numel() if variant == "authors_code" else int(budget.allowed.sum())
            assert selector.gamma == pytest.approx(1 - budget.k / n) and selector.rho == selector.gamma
            assert (selector.allowed is None) == (variant == "authors_code")
        assert ("graph_variant" in result.record["config"]) == (variant == "authors_code")


# ------------------------------------------------------------------ top-k over the whole adjacency matrix


def test_authors_top_k_chooses_entries_that_are_not_feed_forward_at_x0_25_nodes():
    """Stage 3 at x0.25 nodes (768 x 704 = 540,672 entries, 294,912 feed-forward), k = 4,562. authors_code: the
    choice is the top-k of |W| over the whole matrix, and under the uniform initialisation about k (1 - 294,912 /
    540,672) = 2,073.6 +- 33.6 of it lies outside the feed-forward entries (the authors' model: 2,137); the paper
    variant chooses none there."""
    torch.manual_seed(0)
    model = mobilenet_v1_dnw(10, node_width=0.25)
    budget = edge_budgets(model, 0.225)[3]
    weight = model.get_parameter(budget.target).detach().clone()
    assert (budget.k, budget.allowed.numel(), int(budget.allowed.sum())) == (4562, 540_672, 294_912)
    share_outside = 1 - 294_912 / 540_672
    mean, sd = budget.k * share_outside, math.sqrt(budget.k * share_outside * (1 - share_outside))
    unusable = {}
    for variant in GRAPH_VARIANTS:
        candidate = mobilenet_v1_dnw(10, node_width=0.25)
        candidate.load_state_dict(model.state_dict())
        apply_method(candidate, "dnw", k=budget.k, allowed=topk_candidates(budget, variant), targets=(budget.target,))
        mask = current_mask(candidate.stages[3].graph, "weight")
        assert int(mask.sum()) == budget.k
        expected = topk_mask(weight.abs(), budget.k, None if variant == "authors_code" else budget.allowed)
        assert torch.equal(mask, expected), variant
        unusable[variant] = int((mask & ~budget.allowed).sum())
    assert unusable["paper"] == 0
    assert abs(unusable["authors_code"] - mean) < 5 * sd and abs(2137 - mean) < 5 * sd, unusable


def test_chosen_entries_that_are_not_feed_forward_never_act():
    """authors_code DNW on every stage: flipping the sign of every chosen non-feed-forward entry (|w| and so the
    choice unchanged) leaves the output bit for bit and they get no gradient; flipping the chosen feed-forward
    entries of one stage changes it."""
    torch.manual_seed(1)
    model = mobilenet_v1_dnw(10, node_width=0.25)
    budgets = edge_budgets(model, 0.225)
    for budget in budgets:
        apply_method(
            model, "dnw", k=budget.k, allowed=topk_candidates(budget, "authors_code"), targets=(budget.target,)
        )
    model.train()  # batch statistics: every stage's signal reaches the logits (running ones shrink it to ~1e-8)
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    before = model(images)
    before.square().sum().backward()
    outside_total = 0
    for budget, stage in zip(budgets, model.stages):
        original = stage.graph.parametrizations.weight.original
        chosen_outside = current_mask(stage.graph, "weight") & ~budget.allowed
        outside_total += int(chosen_outside.sum())
        assert torch.all(original.grad[chosen_outside] == 0)
        with torch.no_grad():
            original[chosen_outside] *= -1
    assert outside_total > 1000
    after = model(images)
    assert torch.equal(before, after)
    stage = model.stages[2]
    chosen_inside = current_mask(stage.graph, "weight") & budgets[2].allowed
    with torch.no_grad():
        original = stage.graph.parametrizations.weight.original
        original[chosen_inside] *= -1
    assert (model(images) - before).abs().max() > 1e-2


def context(root, validation=True, data=None) -> RunContext:
    data = tiny_dataset() if data is None else data
    train, held_out = data.train_validation_split(0.1, seed=0)
    return RunContext(
        train if validation else data,
        torch.device("cpu"),
        batch_size=9,
        checkpoint_root=root,
        progress=False,
        code=(runs.RUNS_MODULE,),
        validation=held_out if validation else None,
    )


@pytest.mark.parametrize("method", ["dnw", "dnw_no_update", "lottery", "finetune", "rg"])
def test_the_experiment_ranks_the_whole_matrix_only_for_the_authors_rows(tmp_path, method):
    """authors_code: DNW, No Update, the lottery ticket and fine-tuning rank every entry (no allowed set; the
    lottery and fine-tune masks are the top-k of the trained complete graph over the whole matrix); RG's random
    graph stays feed-forward (the authors' RG mask is right). paper: every top-k among the feed-forward entries."""
    row = Row("finetune", alpha=0.01) if method == "finetune" else Row(method)
    ctx = context(tmp_path)
    for variant in GRAPH_VARIANTS:
        config = SETUP.replace(graph_variant=variant)
        result = runs.run_one(ctx, row, 0, config)
        whole = variant == "authors_code" and method != "rg"
        complete = runs.run_one(ctx, Row("complete"), 0, config) if method in ("lottery", "finetune") else None
        for budget in edge_budgets(result.model, config.width):
            module = result.model.get_submodule(budget.target.rpartition(".")[0])
            parametrization: SparseWeight = module.parametrizations.weight[0]
            assert (parametrization.selector.allowed is None) == whole, (variant, budget.target)
            if complete is not None:
                trained = complete.model.get_parameter(budget.target).detach().abs()
                expected = topk_mask(trained, budget.k, None if whole else budget.allowed)
                assert torch.equal(current_mask(module, "weight"), expected)
        assert result.record["config"].get("graph_variant") == ("authors_code" if whole else None)


# --------------------------------------------------------------------------- 45,000 -> 50,000 at paper scale


def test_the_paper_scale_chooses_on_45k_5k_then_trains_every_reported_run_on_50k():
    config = Config.from_values(PARAMS["paper"]["mobilenet_dnw"])
    assert config.final_on_all_images and config.graph_variant == "paper" and config.eval_every == 1
    specs = mobilenet_dnw.plan(config)
    selection = [spec for spec in specs if spec.settings.get("phase") == "selection"]
    final = [spec for spec in specs if spec.settings.get("phase") == "final"]
    assert len(selection) == 8 and len(final) == 95 and len(specs) == 103
    assert {spec.row for spec in selection} == {
        "td-0.75", "td-0.9", "td-0.95", "td-0.99", "td-gamma", "l1_anneal-1e-07", "l1_anneal-1e-06", "l1_anneal-1e-05",
    }  # fmt: skip
    assert {spec.seed for spec in selection} == {0} and all(spec.name.endswith("-selection") for spec in selection)
    assert specs[: len(selection)] == selection  # chosen before anything is reported
    per_row = pd.Series([spec.row for spec in final]).value_counts()
    assert set(per_row) == {5} and per_row["l1_anneal-chosen"] == 5 and per_row["td-0.75"] == 5
    assert not any(row.startswith("l1_anneal-1") for row in per_row.index)  # one L1 + Anneal row: the chosen λ
    # the images: a 50,000 / 10,000 release (3 x 1 x 1 pixels: only the counts matter)
    labels = torch.arange(10).repeat(5000)
    full = ImageDataset(
        "cifar10",
        tuple("abcdefghij"),
        torch.zeros(50_000, 3, 1, 1, dtype=torch.uint8),
        labels,
        torch.zeros(10_000, 3, 1, 1, dtype=torch.uint8),
        labels[:10_000],
        {"kind": "synthetic", "description": "counts only"},
    )
    chosen_on, validation, final_data = runs.data_splits(config, full)
    assert (len(chosen_on.train_labels), len(validation.test_labels)) == (45_000, 5_000)
    assert len(final_data.train_labels) == 50_000 and len(final_data.test_labels) == 10_000
    cpu = Config.from_values(PARAMS["cpu"]["mobilenet_dnw"])
    assert not cpu.final_on_all_images  # cpu and smoke keep their behaviour: every run on the reduced split
    cpu_train, _, cpu_final = runs.data_splits(cpu, full)
    assert len(cpu_final.train_labels) == len(cpu_train.train_labels) == 4_500  # 500 per class less 10 %


def test_final_runs_train_on_every_image_and_the_choice_reads_the_selection_runs(tmp_path):
    config = SETUP.replace(
        rows=["dnw"],
        td_rhos=[0.9, "gamma"],
        td_regular_rhos=[],
        finetune_alphas=[],
        l1_coefficients=[1e-6],
        select_on_first_seed=False,
        final_on_all_images=True,
        seeds=[0, 1],
    )
    data = tiny_dataset()  # 30 training images: 27 + 3 held out to choose, then all 30
    done = runs.run_table2(
        context(tmp_path), config, final_ctx=context(tmp_path, validation=False), log=lambda *_: None
    )
    frame = pd.DataFrame(done.per_run)
    picked = frame[frame.phase == "selection"]
    reported = frame[frame.phase == "final"]
    assert sorted(picked.row) == ["td-0.9", "td-gamma"] and set(picked.train_examples) == {27}
    assert picked.val_top1.notna().all()
    assert len(reported) == 8 and set(reported.train_examples) == {len(data.train_labels)} == {30}
    assert reported.val_top1.isna().all()  # no image of the final runs is held out
    scores = dict(zip(picked.row, picked.val_top1))
    assert done.chosen["td"] == max(scores, key=scores.get)
    assert set(reported.row) == {"td-0.9", "td-gamma", "l1_anneal-1e-06", "dnw"}
    assert all(done.selection[(k, 0)].run_dir != done.results[(k, 0)].run_dir for k in ("td-0.9", "td-gamma"))
    # the report: Table 2 from the final runs only, the selection runs in per_run.csv and details.json
    out = tmp_path / "out"
    label = {"scale": "smoke", "seeds": [0, 1], "data_source": "synthetic", "data_source_description": ""}
    label |= {"device": "cpu", "torch": "", "rewire": "", "commit": "test"}
    outcome = Outcome(runs=done.per_run, extra={"chosen": done.chosen, "results": {}})
    mobilenet_dnw.report(config, outcome, out, label)
    table = pd.read_csv(out / "table2.csv").set_index("row")
    assert set(table.runs) == {2} and table.loc["td-0.9", "top1_mean"] == pytest.approx(
        reported[reported.row == "td-0.9"].test_top1.mean()
    )
    assert sorted(pd.read_csv(out / "per_run.csv").phase) == ["final"] * 8 + ["selection"] * 2
    details = json.loads((out / "details.json").read_text())
    assert details["selection_val_top1"] == pytest.approx(scores)


# ----------------------------------------------------------------------------------- λ = 0 is Anneal


def test_the_paper_grid_has_no_lambda_zero_and_a_zero_row_is_called_anneal():
    assert all(value > 0 for value in PARAMS["paper"]["mobilenet_dnw"]["l1_coefficients"])
    assert Row("l1_anneal", l1=0.0).label == "Anneal (λ = 0, no L1)"
    assert Row("l1_anneal", l1=1e-6).label == "L1 + Anneal (λ = 1e-06)"
    assert not Row("l1_anneal", l1=0.0).has_l1_term and Row("l1_anneal", l1=1e-6).has_l1_term


def test_the_cpu_tables_call_the_chosen_lambda_zero_row_anneal(tmp_path):
    """The cpu grid has λ = 0 and the committed cpu run chose it: the table, the figure's labels and the claim call
    the row Anneal, and the paper's L1 + Anneal number (84.3) is not put beside it."""
    # the issue-19 cpu grid (λ in {0, 1e-4}; the cpu block now runs no L1 + Anneal row, issue 20)
    cpu = Config.from_values({**PARAMS["cpu"]["mobilenet_dnw"], "l1_coefficients": [0.0, 0.0001]})
    assert 0.0 in cpu.l1_coefficients
    keys = ["rg", "l1_anneal-0", "l1_anneal-0.0001", "dnw"]
    per_run = [
        {
            "row": key,
            "method": Row.parse(key).method,
            "label": Row.parse(key).label,
            "seed": seed,
            "phase": "final",
            "test_top1": 40.0 + index + seed,
            "best_epoch_test_top1": 41.0 + index + seed,
            "best_epoch": 1,
            "val_top1": 39.0 + index,
            "chosen_on_validation": key == "l1_anneal-0" if key.startswith("l1") else None,
            "run": f"{key}-{seed}",
        }
        for index, key in enumerate(keys)
        for seed in (0, 1, 2)
    ]
    outcome = Outcome(runs=per_run, extra={"chosen": {"l1_anneal": "l1_anneal-0"}, "results": {}})
    label = {"scale": "cpu", "seeds": [0, 1, 2], "data_source": "synthetic", "data_source_description": ""}
    label |= {"device": "cpu", "torch": "", "rewire": "", "commit": "test"}
    mobilenet_dnw.report(cpu, outcome, tmp_path, label)
    table = pd.read_csv(tmp_path / "table2.csv").set_index("row")
    assert table.loc["l1_anneal-0", "label"] == "Anneal (λ = 0, no L1)"
    assert math.isnan(table.loc["l1_anneal-0", "paper_mean"]) and table.loc["l1_anneal-0.0001", "paper_mean"] == 84.3
    claims = (tmp_path / "claims.md").read_text()
    assert "Anneal (λ = 0 chosen on validation: no L1 term" in claims and "L1 + Anneal is below DNW" not in claims
    text = (tmp_path / "table2.md").read_text()
    assert "graph_variant paper" in text
    assert json.loads((tmp_path / "label.json").read_text())["graph_variant"] == "paper"


# --------------------------------------------------------------------------- the best test epoch, beside


def test_the_best_test_epoch_is_reported_beside_the_final_and_never_decides_a_claim():
    records = [{"epoch": 1, "test_top1": 50.0}, {"epoch": 2, "test_top1": 55.0}, {"epoch": 3, "test_top1": 52.0}]
    assert runs.best_test_epoch(records) == (55.0, 2)
    assert runs.best_test_epoch([{"epoch": 1, "train_loss": 1.0}]) == (None, None)
    from rewire.experiments.mobilenet_dnw.report import claims_of

    rows = []
    for seed, jitter in ((0, 0.0), (1, 0.2), (2, -0.1)):  # DNW below RG at the final epoch, above at its best
        rows.append({"row": "dnw", "seed": seed, "test_top1": 40 + jitter, "best_epoch_test_top1": 60 + jitter})
        rows.append({"row": "rg", "seed": seed, "test_top1": 45.0, "best_epoch_test_top1": 46.0})
    frame = pd.DataFrame(rows).assign(label="x", val_top1=float("nan"), chosen_on_validation=None)
    table = table2_frame(frame).set_index("row")
    assert table.loc["dnw", "top1_mean"] == pytest.approx(40.0 + 0.1 / 3)
    assert table.loc["dnw", "best_epoch_top1_mean"] == pytest.approx(60.0 + 0.1 / 3)
    columns = list(table.columns)
    assert columns.index("best_epoch_top1_mean") == columns.index("top1_std") + 1
    (claim,) = [c for c in claims_of(frame, {}) if c.claim == "DNW beats the random graph of the same size"]
    assert claim.differences() == pytest.approx({0: -5.0, 1: -4.8, 2: -5.1})  # the final epoch's numbers


# ------------------------------------------------------------------------------- bad graph_variant


def test_an_unknown_graph_variant_stops_before_any_work(capsys, monkeypatch, tmp_path):
    with pytest.raises(ConfigError) as error:
        Config.from_values(smoke(graph_variant="authors"), where="params.yaml 'smoke.mobilenet_dnw'")
    message = str(error.value)
    assert "'graph_variant'" in message and "'paper', 'authors_code'" in message and "authors_code" in message
    with pytest.raises(ValueError, match="graph_variant must be one of paper, authors_code"):
        TargetedDropout(5, rho=0.5, graph_variant="author")
    budget = edge_budgets(mobilenet_v1_dnw(10, node_width=0.0625), 0.225)[0]
    with pytest.raises(ValueError, match="graph_variant must be one of"):
        topk_candidates(budget, "Paper")
    monkeypatch.chdir(ROOT)
    argv = ["run", "mobilenet_dnw", "--scale", "smoke", "--set", "graph_variant=authors", "--params", "params.yaml"]
    assert main(argv) == 2
    assert "'graph_variant'" in capsys.readouterr().err
