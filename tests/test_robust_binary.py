"""The robust-binary experiment on the contract: rows checked by the schema, loaders with indices, the
adversarial-training callbacks, one run end to end through RunContext.fit, the claims (runs, callbacks, report)."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
import yaml
from synthetic import tiny_dataset

from rewire.attacks.trades import trades_loss
from rewire.experiments.engine import RunContext, settings_digest
from rewire.experiments.robust_binary.config import Config, Row
from rewire.experiments.robust_binary.paper import paper_cells
from rewire.experiments.scales import load as params_load
from rewire.experiments.schema import ConfigError
from rewire.reporting.claims import claims_frame
from rewire.sparse.masks import current_mask, sparse_modules

# the package exports the functions plan / run / report under the modules' names: the modules by their full names
runs = importlib.import_module("rewire.experiments.robust_binary.runs")
callbacks = importlib.import_module("rewire.experiments.robust_binary.callbacks")
plan_module = importlib.import_module("rewire.experiments.robust_binary.plan")
report_module = importlib.import_module("rewire.experiments.robust_binary.report")

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
BASE = dict(model="cresnet18", widths=[2, 2, 4, 4], keep=0.3, epochs=1, steps=2, validation_images=3, test_images=6,
            batch_size=6)  # fmt: skip


def config_of(*rows: dict, **values) -> Config:
    """A config of the tiny scale above with ``rows`` (default: one edge-popup row named x)."""
    return Config.from_values({**BASE, **values, "rows": list(rows) or [{"name": "x"}]}, where="test")


def row_of(**fields) -> Row:
    """The resolved row ``x`` with ``fields`` over the tiny scale."""
    return config_of({"name": "x", **fields}).row("x")


def linear_model_and_trainer():
    """A linear classifier of 16x16 images and the one attribute of a trainer the attack callbacks read."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 3))
    return model, SimpleNamespace(model=model)


def context(root) -> RunContext:
    train, held_out = tiny_dataset().train_validation_split(0.2, seed=0)
    return RunContext(train, torch.device("cpu"), 6, root, eval_batch_size=6, progress=False, validation=held_out,
                      code=(runs.RUNS_MODULE,))  # fmt: skip


@pytest.mark.parametrize(
    ("row", "path", "message"),
    [
        ({"p": 0.1}, "'rows[0].name'", "is required"),
        ({"name": "x", "prune": 0.9}, "'rows[0].prune' (row 'x')", "is not a field of Row"),
        ({"name": "x", "eps": 8.0}, "'rows[0].eps' (row 'x')", "/255"),
        ({"name": "x", "keep": 0.0}, "'rows[0].keep' (row 'x')", r"in \(0, 1\]"),
        ({"name": "x", "keep": 1.5}, "'rows[0].keep' (row 'x')", r"in \(0, 1\]"),
        ({"name": "x", "p": -0.5}, "'rows[0].p' (row 'x')", ">= 0"),
        ({"name": "x", "training": "magic"}, "'rows[0].training' (row 'x')", "'magic' is not one of 'pgd'"),
        ({"name": "x", "method": "hydra"}, "'rows[0].method' (row 'x')", "'hydra' is not one of 'edge_popup'"),
        ({"name": "x", "method": "finetune"}, "'rows[0].mask_from' (row 'x')", "mask_from names the edge-popup row"),
        ({"name": "x", "mask_from": "ours"}, "'rows[0].mask_from' (row 'x')", "only those methods take it"),
        ({"name": "x", "training": "trades", "trades_beta": -1.0}, "'rows[0].trades_beta' (row 'x')", "trades_beta"),
    ],
)
def test_bad_rows_stop_before_any_work(row, path, message):
    with pytest.raises(ConfigError, match=message) as caught:
        config_of(row)
    assert path in str(caught.value)


BAD_VALUES = [
    # (values over the tiny scale, the field's path, the value and range as the message says them, the example)
    ({"eps_255": 0.0314}, "'eps_255'", "0.0314 is not in [0.25, 64] /255", "eps_255: 8"),
    ({"eps_255": 100}, "'eps_255'", "100 is not in [0.25, 64] /255", "eps_255: 8"),
    ({"step_255": 0.0078}, "'step_255'", "0.0078 is not in [0.25, 64] /255", "step_255: 2"),
    ({"rows": [{"name": "a", "eps_255": 0.0314}]}, "'rows[0].eps_255' (row 'a')", "0.0314 is not in [0.25, 64]",
     "eps_255: 8"),
    ({"rows": [{"name": "a", "eps": 0.0314}]}, "'rows[0].eps' (row 'a')", "0.0314 is not a field: budgets are in /255",
     "eps_255: 8 (for 8/255)"),
    ({"rows": [{"name": "a", "step_size": 0.0078}]}, "'rows[0].step_size'", "/255 units, 0.25 to 64", "step_255: 2"),
    ({"rows": [{"name": "a", "fast_step": 0.0039}]}, "'rows[0].fast_step'", "/255 units", "fast_step_255: 4"),
    ({"rows": [{"name": "a", "fast_step_255": 100}]}, "'rows[0].fast_step_255' (row 'a')", "100 is not in [0.25, 64]",
     "fast_step_255: 4"),
    ({"rows": [{"name": "a"}, {"name": "b", "keep": 1.5}]}, "'rows[1].keep' (row 'b')", "1.5 is not in (0, 1]",
     "keep: 0.01"),
    ({"keep": 0}, "'keep'", "0 is not in (0, 1]", "keep: 0.01"),
    ({"rows": [{"name": "a", "p": -1}]}, "'rows[0].p' (row 'a')", "-1 is not >= 0", "p: 0.1"),
    ({"epochs": -3}, "'epochs'", "-3 is not >= 1", "epochs: 400"),
    ({"rows": [{"name": "a", "epochs": 0}]}, "'rows[0].epochs' (row 'a')", "0 is not >= 1", "epochs: 400"),
    ({"steps": 0}, "'steps'", "0 is not >= 1", "steps: 10"),
    ({"rows": [{"name": "a", "method": "hydra"}]}, "'rows[0].method' (row 'a')", "'hydra' is not one of", "method: "),
    ({"rows": [{"name": "a", "training": "fgsm"}]}, "'rows[0].training' (row 'a')", "'fgsm' is not one of", "training: "),
    ({"attack_bn_mode": "both"}, "'attack_bn_mode'", "'both' is not one of 'eval', 'train'", "attack_bn_mode: "),
    ({"autoattack": "plus"}, "'autoattack'", "'plus' is not one of 'apgd-ce', 'standard'", "autoattack: "),
    ({"dataset": "svhn"}, "'dataset'", "'svhn' is not one of 'cifar10', 'cifar100', 'imagenet100'", "dataset: "),
    ({"model": "resnet1000"}, "'model'", "'resnet1000' is not one of", "model: "),
    ({"rows": [{"name": "a"}, {"name": "a", "p": 1.0}]}, "'rows[1].name' (row 'a')", "row names must be unique",
     "name: a_2"),
    ({"rows": [{"name": "d", "method": "dense"}, {"name": "f", "method": "finetune", "mask_from": "d"}]},
     "'rows[1].mask_from' (row 'f')", "'d' must name an earlier edge_popup row", "mask_from: "),
    ({"rows": [{"name": "f", "method": "retrain", "mask_from": "a"}, {"name": "a"}]},
     "'rows[0].mask_from' (row 'f')", "earlier edge_popup rows: none", "mask_from: ours_p01"),
    ({"rows": [{"name": "a", "optimizer": "lamb"}]}, "'rows[0].optimizer' (row 'a')", "'lamb' is not one of 'sgd'",
     "optimizer: "),
    ({"rows": [{"name": "a", "schedule": "onecycle"}]}, "'rows[0].schedule' (row 'a')", "'onecycle' is not one of",
     "schedule: "),
    ({"rows": [{"name": "a", "schedule": "multistep", "milestones": [300, 200]}]}, "'rows[0].milestones' (row 'a')",
     "[300, 200] must be increasing", "milestones: [200, 300]"),
    ({"rows": [{"name": "a", "milestones": [-1]}]}, "'rows[0].milestones' (row 'a')", "-1 is not >= 0",
     "milestones: [200, 300]"),
    ({"rows": [{"name": "a", "momentum": 1.5}]}, "'rows[0].momentum' (row 'a')", "1.5 is not in [0, 1)", "momentum: "),
    ({"rows": [{"name": "a", "label_smoothing": 1.0}]}, "'rows[0].label_smoothing' (row 'a')", "1.0 is not in [0, 1)",
     "label_smoothing: 0.1"),
    ({"rows": [{"name": "a", "batch_size": -4}]}, "'rows[0].batch_size' (row 'a')", "-4 is not >= 1", "batch_size: "),
    ({"rows": [{"name": "a", "seeds": [5]}]}, "'rows[0].seeds' (row 'a')", "[5] must be a non-empty list among",
     "seeds: [0]"),
    ({"seeds": [0, 0]}, "'seeds'", "[0, 0] must be distinct", "seeds: [0, 1, 2]"),
    ({"validation_fraction": 1.0}, "'validation_fraction'", "1.0 is not in (0, 1)", "validation_fraction: 0.02"),
]  # fmt: skip


@pytest.mark.parametrize(("values", "path", "value_and_range", "example"), BAD_VALUES)
def test_every_bad_value_stops_with_its_path_value_range_and_an_example(values, path, value_and_range, example):
    values = dict(values)
    rows = values.pop("rows", [])
    with pytest.raises(ConfigError) as caught:
        config_of(*rows, **values)
    message = str(caught.value)
    assert message.startswith("test: ") and path in message and value_and_range in message and example in message


def test_a_fraction_where_255ths_are_expected_suggests_8_not_8_over_255():
    with pytest.raises(ConfigError) as caught:
        config_of(eps_255=0.0314)
    assert "e.g. eps_255: 8" in str(caught.value) and "8/255" not in str(caught.value).split("e.g.")[1]


def test_a_row_overrides_the_scales_values():
    row = config_of({"name": "ours_p1", "p": 1.0, "widths": [8, 8, 8, 8]}).row("ours_p1")
    assert row.name == "ours_p1" and row.p == 1.0 and row.widths == (8, 8, 8, 8) and row.keep == 0.3
    assert row.eps == 8 / 255 and row.step_size == 2 / 255 and row.fast_step == 4 / 255  # pixel fractions


def test_the_indexed_loader_names_the_images_it_yielded():
    data = tiny_dataset()
    loader = callbacks.IndexedBatchLoader(
        data.train_images, data.train_labels, 7, shuffle=True, augment=False, mean=(0, 0, 0), std=(1, 1, 1)
    )
    for images, labels in loader:
        assert torch.equal(labels, data.train_labels[loader.last_index])
        assert torch.equal(images, data.train_images[loader.last_index].float() / 255)
    with pytest.raises(ValueError, match="augment=False"):
        callbacks.IndexedBatchLoader(
            data.train_images, data.train_labels, 7, shuffle=True, augment=True, mean=(0,) * 3, std=(1,) * 3
        )


def test_pgd_training_replaces_each_batch_inside_the_eps_ball():
    setup = row_of()
    model, trainer = linear_model_and_trainer()
    x = torch.rand(5, 3, 16, 16)
    y = torch.tensor([0, 1, 2, 0, 1])
    adversarial, targets = callbacks.PGDTraining(setup, seed=0).on_batch_start(trainer, x, y)
    assert targets is y and adversarial.shape == x.shape
    assert (adversarial - x).abs().max() <= setup.eps + 1e-7 and adversarial.min() >= 0 and adversarial.max() <= 1
    assert (adversarial - x).abs().max() > 0


@pytest.mark.parametrize("training", ["pgd", "fast", "trades"])
def test_one_run_trains_scores_only_records_robust_accuracy_and_is_found_again(tmp_path, training):
    ctx = context(tmp_path)
    setup = row_of(training=training)
    model, _, info = runs.build_model(ctx, setup, 0)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(p.requires_grad for n, p in model.named_parameters() if "popup_scores" in n)
    first = runs.run_one(ctx, setup, 0, name=f"ours-{training}", subset={})
    assert first.trained_now
    final = first.final
    assert {"test_pgd_top1", "test_clean_top1", "val_pgd_top1", "best_epoch", "best_test_pgd_top1"} <= set(final)
    assert final["test_pgd_top1"] <= final["test_clean_top1"] and final["test_images_attacked"] == 6
    assert first.record["config"]["setup"]["training"] == training
    again = runs.run_one(ctx, setup, 0, name=f"ours-{training}", subset={})
    assert not again.trained_now and again.run_dir == first.run_dir
    assert info["kept_total"] == sum(info["kept_per_layer"].values())


def test_a_run_goes_through_run_context_fit_with_the_contexts_code_and_distributed(tmp_path, monkeypatch):
    """The driver's module and the context's own ``code`` enter the run's code hash; ``distributed`` is passed on;
    the pixel loaders are the ones the attack callbacks read, and the data block is the engine's own."""
    seen = {}

    def fit(self, name, **kwargs):
        seen.update(context=self, name=name, **kwargs)
        return "the engine's result"

    monkeypatch.setattr(RunContext, "fit", fit)
    ctx = context(tmp_path)
    ctx.code = ("rewire.experiments.robust_binary.masks",)  # another driver module: the runs module is added
    ctx.distributed = SimpleNamespace(distributed=False, world_size=1)  # a one-process DistContext
    assert (
        runs.run_one(ctx, row_of(training="fast", batch_size=4), 0, name="x-seed0", subset={}) == "the engine's result"
    )
    run_ctx = seen["context"]
    assert isinstance(run_ctx, runs.PixelRunContext) and run_ctx.distributed is ctx.distributed
    assert run_ctx.code == ("rewire.experiments.robust_binary.runs", "rewire.experiments.robust_binary.masks")
    assert run_ctx.batch_size == 4 and run_ctx.validation is None and run_ctx.held_out is ctx.validation
    fast = next(c for c in seen["callbacks"] if isinstance(c, callbacks.FastATTATraining))
    assert fast.loader is run_ctx.loaders(0)[0] and isinstance(fast.loader, callbacks.IndexedBatchLoader)
    assert "data" not in seen["config"] and seen["config"]["setup"] == plan_module.identity(row_of(training="fast"))


def test_claims_pair_rows_by_seed():
    rows = []
    values = {
        "ours_p01": [30.0, 32.0, 31.0],
        "ours_p1": [25.0, 26.5, 26.0],  # p = 0.1 better: holds
        "ours_nolbn": [33.0, 35.0, 34.5],  # LBN hurts here: reversed
        "ours_skc": [30.2, 31.9, 31.1],  # equivalent within a point
        "binary_connect_small": [31.0, 31.5, 30.0],  # inconclusive
        "ours_pgd": [30.5, 32.2, 31.0],
    }
    for row, accuracies in values.items():
        rows += [{"row": row, "seed": s, "test_pgd_top1": a} for s, a in enumerate(accuracies)]
    frame = claims_frame(report_module.robust_claims(pd.DataFrame(rows))).set_index("a")
    verdicts = dict(zip(frame["b"], frame["verdict"]))
    assert verdicts["ours_p1"] == "holds"
    assert verdicts["ours_nolbn"] == "reversed"
    assert verdicts["ours_skc"] == "holds"
    assert verdicts["binary_connect_small"] == "inconclusive at this scale"
    assert verdicts["ours_pgd"] == "holds"  # within the paper's own fast-vs-PGD gap
    assert len(verdicts) == 5
    claims = report_module.robust_claims(pd.DataFrame(rows))
    assert [c.margin for c in claims if c.b_label == "ours_pgd"] == [report_module.FAST_MARGIN]
    # at paper scale the fast row has its own name and the main row trains with PGD
    renamed = pd.DataFrame(rows).replace({"row": {"ours_p01": "ours_fast", "ours_pgd": "ours_p01"}})
    fast = [c for c in report_module.robust_claims(renamed) if c.a_label == "ours_fast"]
    assert len(fast) == 1 and fast[0].b_label == "ours_p01" and fast[0].kind == "at_least"


def test_the_attacked_images_are_a_fixed_random_subset_not_the_first_ones():
    a, b = callbacks.evaluation_subset(10_000, 2_000), callbacks.evaluation_subset(10_000, 2_000)
    assert torch.equal(a, b) and a.numel() == 2_000 and a.unique().numel() == 2_000
    labels = torch.arange(10).repeat_interleave(1_000)  # a test split ordered by class
    counts = torch.bincount(labels[a], minlength=10)
    assert counts.min() > 150  # every class is attacked (the first 2,000 would be two classes)
    assert callbacks.evaluation_subset(50, 2_000).numel() == 50


def test_trades_training_back_propagates_the_trades_loss_with_its_own_generator():
    setup = row_of(training="trades", trades_beta=3.0)
    torch.manual_seed(0)
    model, trainer = linear_model_and_trainer()
    x = torch.rand(5, 3, 16, 16)
    y = torch.tensor([0, 1, 2, 0, 2])
    loss = callbacks.TRADESTraining(setup, seed=4).training_loss(trainer, x, y)
    expected, _ = trades_loss(
        model, x, y, beta=3.0, eps=setup.eps, step_size=setup.step_size, steps=setup.steps,
        generator=torch.Generator().manual_seed(4),
    )  # fmt: skip
    assert torch.equal(loss, expected)
    clean = torch.nn.functional.cross_entropy(model(x), y)
    assert loss > clean  # beta > 0 and the adversary moved the prediction: the KL term is positive


@pytest.mark.parametrize(("method", "weights"), [("finetune", "found"), ("retrain", "reinit")])
def test_finetune_and_retrain_hold_the_found_mask_of_the_same_seed(tmp_path, method, weights):
    ctx = context(tmp_path)
    config = config_of({"name": "ours", "training": "clean"},
                       {"name": method, "training": "clean", "method": method, "mask_from": "ours", "lr": 0.01})  # fmt: skip
    found = runs.run_one(ctx, config.row("ours"), 0, name="ours", subset={})
    setup = config.row(method)
    model, _, info = runs.build_model(ctx, setup, 0, found.model)
    found_masks = {n: current_mask(m, "weight", recompute=True) for n, m, _ in sparse_modules(found.model)}
    held = {n: p.mask for n, _, p in sparse_modules(model)}
    assert held.keys() == found_masks.keys() and all(torch.equal(held[n], found_masks[n]) for n in held)
    assert info["kept_total"] == sum(int(m.sum()) for m in found_masks.values())
    name = next(iter(held))
    module, found_module = (
        model.get_submodule(name[: -len(".weight")]),
        found.model.get_submodule(name[: -len(".weight")]),
    )
    same = torch.equal(module.parametrizations.weight.original, found_module.parametrizations.weight.original)
    assert same == (weights == "found")
    assert module.parametrizations.weight.original.requires_grad  # the weights train now
    result = runs.run_one(ctx, setup, 0, name=method, subset={}, found=found)
    assert result.record["config"]["mask_from_run"] == found.run_dir.name
    trained = {n: p.mask for n, _, p in sparse_modules(result.model)}
    assert all(torch.equal(trained[n], found_masks[n]) for n in trained)  # the mask never moved
    with pytest.raises(ValueError, match="found="):
        runs.build_model(ctx, setup, 0)


def test_a_plan_refuses_a_mask_source_that_is_not_an_earlier_edge_popup_row():
    ours, ft = {"name": "ours"}, {"name": "ft", "method": "finetune", "mask_from": "ours"}
    dense = {"name": "dense", "method": "dense"}
    config_of(ours, ft)
    with pytest.raises(ConfigError, match="earlier edge_popup row; earlier edge_popup rows: ours"):
        config_of(ours, dense, {"name": "ft", "method": "finetune", "mask_from": "dense"})
    with pytest.raises(ConfigError, match="earlier edge_popup row"):
        config_of(ft, ours)
    with pytest.raises(ConfigError, match="unique"):
        config_of(ours, ours)
    wider = {"name": "ft", "method": "retrain", "mask_from": "ours", "widths": [4, 4, 4, 4]}
    with pytest.raises(ConfigError, match="differs"):
        config_of(ours, wider)


@pytest.mark.parametrize(
    ("fields", "dataset", "robust", "clean", "row"),
    [
        ({"training": "pgd", "p": 0.1}, "cifar10", 45.06, 76.59, "Ours, RN34-LBN, p = 0.1"),
        ({"training": "fast", "p": 1.0}, "cifar10", 29.68, None, "Ours (fast), RN34-LBN, p = 1"),
        ({"training": "pgd", "p": 0.1, "eps_255": 4, "step_255": 1}, "cifar100", 34.83, 60.16, "Ours, RN34-LBN"),
        ({"method": "dense", "training": "pgd"}, "cifar10", 42.39, 80.96, "AT, RN34-LBN, FP"),
        (
            {"method": "binary_connect", "training": "pgd", "last_bn": False},
            "cifar10",
            40.34,
            74.37,
            "AT, RN34, binary",
        ),
        ({"method": "dense", "training": "trades", "widths": [23, 25, 27, 29]}, "cifar10", 42.60, None, "TRADES"),
        (
            {"method": "dense", "training": "pgd", "widths": [23, 25, 27, 29]},
            "cifar10",
            42.01,
            74.76,
            "Small RN34-p0.1",
        ),
        (
            {"training": "clean", "p": 0.5, "weight_init": "signed_kaiming_constant", "last_bn": False},
            "cifar10",
            None,
            93.44,
            "Table 8: p = 0.5, signed_kc, no LBN",
        ),  # fmt: skip
        ({"method": "dense", "training": "clean"}, "cifar100", None, 76.85, "Table 11: AT, RN34-LBN"),
        ({"training": "pgd", "last_bn": False}, "cifar10", None, None, ""),
        ({"training": "pgd"}, "svhn", None, None, ""),
        ({"method": "binary_connect", "training": "pgd", "widths": [1, 2, 2, 3]}, "cifar10", 32.54, 58.69, "Small"),
    ],
)
def test_paper_numbers_beside_a_row_come_from_the_matching_cell(fields, dataset, robust, clean, row):
    setup = row_of(**fields)
    cells = paper_cells(setup, dataset, full_widths=tuple(BASE["widths"]))
    for key, expected in (("paper_robust_top1", robust), ("paper_clean_top1", clean)):
        if expected is None:
            assert cells[key] != cells[key]  # NaN: no such cell in the paper
        else:
            assert cells[key] == expected
    assert row in cells["paper_row"]


def test_a_row_may_run_fewer_seeds_but_only_among_the_scales():
    config = config_of({"name": "x"}, {"name": "y", "seeds": [1]}, seeds=[0, 1, 2])
    assert config.row_seeds(config.row("x")) == [0, 1, 2]
    assert config.row_seeds(config.row("y")) == [1]
    assert config.row("y").name == "y"
    with pytest.raises(ConfigError, match="among the scale's"):
        config_of({"name": "x", "seeds": [5]}, seeds=[0, 1, 2])


def test_a_resumed_fast_run_continues_with_the_cached_perturbations(tmp_path):
    data = tiny_dataset()
    loader = callbacks.IndexedBatchLoader(
        data.train_images, data.train_labels, 6, shuffle=False, augment=False, mean=(0,) * 3, std=(1,) * 3
    )
    setup = row_of(training="fast")
    torch.manual_seed(0)
    model, trainer = linear_model_and_trainer()
    batches = iter(loader)
    first = callbacks.FastATTATraining(setup, loader, seed=0)
    x, y = next(batches)
    first.on_batch_start(trainer, x, y)
    torch.save(first.state_dict(), tmp_path / "state.pt")
    resumed = callbacks.FastATTATraining(setup, loader, seed=7)  # another seed: another canvas until loaded
    assert not torch.equal(resumed.cache.canvas, first.cache.canvas)
    resumed.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert torch.equal(resumed.cache.canvas, first.cache.canvas)
    x, y = next(batches)
    a, _ = first.on_batch_start(trainer, x, y)
    b, _ = resumed.on_batch_start(trainer, x, y)
    assert torch.equal(a, b) and torch.equal(resumed.cache.canvas, first.cache.canvas)
    other = callbacks.IndexedBatchLoader(
        data.train_images[:12], data.train_labels[:12], 6, shuffle=False, augment=False, mean=(0,) * 3, std=(1,) * 3
    )
    with pytest.raises(ValueError, match="different training set"):
        callbacks.FastATTATraining(setup, other, seed=0).load_state_dict(first.state_dict())


def test_the_weight_count_is_the_kept_entries_of_sparse_layers_and_every_entry_of_dense_ones(tmp_path):
    ctx = context(tmp_path)
    dense, _, _ = runs.build_model(ctx, row_of(method="dense"), 0)
    total = sum(m.weight.numel() for m in dense.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    assert runs.weight_count(dense) == total
    binary, _, _ = runs.build_model(ctx, row_of(method="binary_connect"), 0)
    assert runs.weight_count(binary) == total  # sign(w) is still one weight per entry
    pruned, _, info = runs.build_model(ctx, row_of(), 0)
    assert runs.weight_count(pruned) == info["kept_total"] < total


def test_a_cifar100_run_normalises_with_its_own_statistics_and_predicts_its_classes(tmp_path):
    from rewire.data import CIFAR100_MEAN, CIFAR100_STD, ImageDataset

    g = torch.Generator().manual_seed(1)
    labels = torch.arange(5).repeat_interleave(6)
    images = torch.randint(0, 256, (30, 3, 16, 16), generator=g, dtype=torch.uint8)
    data = ImageDataset("cifar100", tuple("abcde"), images, labels, images[:10], labels[:10], {"kind": "synthetic"})
    train, held_out = data.train_validation_split(0.2, seed=0)
    ctx = RunContext(train, torch.device("cpu"), 6, tmp_path, eval_batch_size=6, progress=False, validation=held_out,
                     code=(runs.RUNS_MODULE,))  # fmt: skip
    setup = row_of(training="clean")
    assert runs.model_spec(setup, 5, "cifar10").kwargs.get("mean") is None  # the authors' CIFAR-10 constants
    result = runs.run_one(ctx, setup, 0, name="c100", subset={})
    normalize = result.model.normalize
    assert torch.allclose(normalize.mean.flatten(), torch.tensor(CIFAR100_MEAN))
    assert torch.allclose(normalize.std.flatten(), torch.tensor(CIFAR100_STD))
    with torch.no_grad():
        assert result.model.eval()(torch.rand(2, 3, 16, 16)).shape == (2, 5)


def test_a_rows_recipe_knobs_reach_the_trainer_and_leave_existing_identities_alone(tmp_path):
    fp_at = row_of(method="dense", schedule="multistep", milestones=[200, 300], batch_size=512)
    recipe = runs.recipe(fp_at)
    assert (recipe.schedule, recipe.milestones, recipe.optimizer) == ("multistep", (200, 300), "sgd")
    bnn = row_of(method="binary_connect", optimizer="adam", lr=1e-4)
    assert runs.recipe(bnn).optimizer == "adam" and runs.recipe(bnn).lr == 1e-4
    # the recipe knobs live in the recipe (hparams) and the config's batch size, not twice in the row's identity
    assert not set(plan_module.RECIPE_FIELDS) & set(plan_module.identity(fp_at))
    default = runs.recipe(row_of())
    assert (default.optimizer, default.momentum, default.schedule, default.milestones) == ("sgd", 0.9, "cosine", ())
    assert (default.warmup_epochs, default.label_smoothing) == (0.0, 0.0)
    with pytest.raises(ValueError, match="row 'x'.*optimizer"):
        row_of(optimizer="lamb")
    with pytest.raises(ValueError, match="batch_size"):
        row_of(batch_size=-4)
    ctx = context(tmp_path)
    result = runs.run_one(ctx, row_of(training="clean", batch_size=4), 0, name="b4", subset={})
    assert result.record["config"]["batch_size"] == 4 and result.final["step"] == len(ctx.data.train_labels) // 4


# The paper scale's settings as they were when the hashes were pinned (issue 19 moved it to the authors' protocol
# and rounding and to validation every epoch): the pins check that the other fields still hash as recorded
AS_PINNED = {"attack_protocol": "standard", "rounding": "floor"}


@pytest.mark.parametrize(
    ("scale", "block", "row", "as_pinned", "digest"),
    [
        # issue 20's cpu redesign (16 epochs, bf16, validation every 4 epochs; before it: 7b09196636, 94a2e0641f);
        # BinaryConnect with SGD 0.1 cosine there (with the authors' Adam 1e-4 it was 6987f51272, at chance)
        ("cpu", "robust_binary", "ours_p01", {}, "76bb54f662"),
        ("cpu", "robust_binary", "binary_connect_small", {}, "42ddd428d5"),
        # milestones stay the integers they were written as
        ("paper", "robust_binary", "dense_at", {**AS_PINNED, "eval_every": 10}, "4a8440afcc"),
        # fast_step_255: 1 is the recorded 1/255
        ("paper", "robust_binary_imagenet100", "ours_p01", {**AS_PINNED, "eval_every": 5}, "96f268e380"),
    ],
)
def test_a_rows_settings_keep_the_hash_the_runs_recorded_before_the_contract(scale, block, row, as_pinned, digest):
    """Pinned from the driver before the move (RobustSetup.as_dict, hparams, batch size): runs are found again."""
    config = Config.from_values(params_load(ROOT / "params.yaml")[scale][block])
    resolved = dataclasses.replace(config.row(row), **as_pinned)
    settings = {"setup": plan_module.identity(resolved), "hparams": runs.recipe(resolved).as_dict(),
                "batch_size": resolved.batch_size}  # fmt: skip
    assert settings_digest(settings) == digest


def test_an_imagenet100_style_run_resizes_a_folder_and_keeps_its_perturbations_at_an_eighth(tmp_path, monkeypatch):
    """The ImageNet-100 path on a generated image folder: images resized at load, the 7x7-stem ResNet-34,
    fast training at 2/255 with FGSM's step 1/255, the ATTA cache stored at 1/8 resolution (H > 160)."""
    import numpy as np
    from PIL import Image

    from rewire import data as rdata
    from rewire.attacks.fast import ATTACache

    rng = np.random.default_rng(0)
    for split, count in (("train", 5), ("val", 2)):
        for cls in ("n01", "n02", "n03"):
            folder = tmp_path / "raw" / split / cls
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (180, 200, 3), dtype=np.uint8)).save(folder / f"{i}.JPEG")
    data = rdata.load("imagenet100", root=tmp_path / "data", archive=tmp_path / "raw", image_size=168)
    assert tuple(data.train_images.shape[1:]) == (3, 168, 168) and data.num_classes == 3
    train, held_out = data.train_validation_split(0.2, seed=0)
    ctx = RunContext(train, torch.device("cpu"), 4, tmp_path / "ck", eval_batch_size=4, progress=False,
                     validation=held_out, code=(runs.RUNS_MODULE,))  # fmt: skip
    setup = row_of(model="resnet34_imagenet", widths=[2, 2, 2, 2], training="fast", eps_255=2, step_255=0.5,
                   fast_step_255=1, momentum=0.875, warmup_epochs=1.0, batch_size=4)  # fmt: skip
    assert plan_module.identity(setup)["fast_step"] == 1 / 255 and "fast_step" not in plan_module.identity(row_of())
    result = runs.run_one(ctx, setup, 0, name="in100", subset={"image_size": 168})
    assert (
        result.final["test_images_attacked"] == 6 and result.final["test_pgd_top1"] <= result.final["test_clean_top1"]
    )
    assert result.model.eval()(torch.rand(1, 3, 168, 168)).shape == (1, 3)
    loader = callbacks.IndexedBatchLoader(train.train_images, train.train_labels, 4, shuffle=False, augment=False,
                                          mean=(0,) * 3, std=(1,) * 3)  # fmt: skip
    cache = callbacks.FastATTATraining(setup, loader, 0).cache
    assert isinstance(cache, ATTACache) and cache.compress == 8 and tuple(cache.canvas.shape[1:]) == (3, 22, 22)
    callback, asked = callbacks.FastATTATraining(setup, loader, 0), {}
    monkeypatch.setattr(
        callback.cache, "perturb", lambda *args, **kwargs: asked.update(kwargs) or (args[1], None, None)
    )
    batch = next(iter(loader))
    callback.on_batch_start(SimpleNamespace(model=result.model), *batch)
    assert asked["step_size"] == 1 / 255  # FGSM's step is the row's, not the CIFAR default
    cells = paper_cells(row_of(training="fast", eps_255=2, step_255=0.5, fast_step_255=1), "imagenet100")
    assert cells["paper_clean_top1"] == 58.94 and cells["paper_robust_top1"] != cells["paper_robust_top1"]


def test_the_imagenet100_block_holds_valid_rows_for_the_notebook():
    from rewire.pipeline import params as params_module

    block = params_load(ROOT / "params.yaml")["paper"]["robust_binary_imagenet100"]
    params_module.check_values(
        block, params_module.notebook_parameters(ROOT / "notebooks/04_robust_binary.ipynb"), where="imagenet100"
    )
    config = Config.from_values(block, where="paper.robust_binary_imagenet100")
    fast = config.row("ours_p01")
    assert fast.fast_step == pytest.approx(1 / 255) and fast.eps == pytest.approx(2 / 255)


# ------------------------------------------------------------------------------------------ the contract


def smoke_block() -> dict:
    return params_load(ROOT / "params.yaml")["smoke"]["robust_binary"]


def test_the_notebook_parameters_are_config_fields_with_the_smoke_blocks_values_as_defaults():
    from rewire.experiments.schema import config_fields
    from rewire.pipeline import params as params_module

    declared = params_module.notebook_parameters(ROOT / "notebooks/04_robust_binary.ipynb")
    fields = set(config_fields(Config))
    assert set(declared) <= fields | set(Config.IGNORED)
    assert fields <= set(declared)  # every field can be set from the notebook
    defaults = {name: info["default"] for name, info in declared.items() if name in fields}
    assert Config.from_values(defaults) == Config.from_values(smoke_block()) == Config()
    for scale in ("smoke", "cpu", "paper"):  # every scale's block fits the schema and the notebook
        block = params_load(ROOT / "params.yaml")[scale]["robust_binary"]
        params_module.check_values(block, declared, where=scale)
        Config.from_values(block, where=scale)


@pytest.mark.parametrize(
    ("scale", "block", "runs_planned", "rows"),
    [("smoke", "robust_binary", 13, 13), ("cpu", "robust_binary", 19, 9), ("paper", "robust_binary", 105, 59),
     ("paper", "robust_binary_imagenet100", 6, 6)],
)  # fmt: skip
def test_the_plan_lists_every_row_on_its_seeds_mask_sources_first(scale, block, runs_planned, rows):
    from rewire.experiments.robust_binary import plan

    config = Config.from_values(params_load(ROOT / "params.yaml")[scale][block])
    specs = plan(config)
    assert len(specs) == runs_planned and len({spec.row for spec in specs}) == rows
    assert len({spec.name for spec in specs}) == len(specs)
    order = [(spec.row, spec.seed) for spec in specs]
    for spec in specs:
        assert spec.name == f"{spec.row}-seed{spec.seed}" and spec.settings["setup"] == plan_module.identity(
            config.row(spec.row)
        )
        source = config.row(spec.row).mask_from
        if source:
            assert order.index((source, spec.seed)) < order.index((spec.row, spec.seed))


def test_only_a_row_selects_it_and_the_runs_whose_masks_it_holds(tmp_path, monkeypatch):
    trained = []
    monkeypatch.setattr(runs, "run_one", lambda ctx, row, seed, **kw: trained.append((row.name, seed)) or row.name)
    config = config_of({"name": "ours"}, {"name": "p1", "p": 1.0}, {"name": "ft", "method": "finetune",
                       "mask_from": "ours"}, seeds=[0, 1])  # fmt: skip
    from rewire.experiments.robust_binary import run

    run(config, context=None, only=["ft"], run_context=context(tmp_path))
    assert trained == [("ours", 0), ("ours", 1), ("ft", 0), ("ft", 1)]  # the plan's order: row by row
    with pytest.raises(ConfigError, match="not a row of this plan"):
        run(config, context=None, only=["nope"], run_context=context(tmp_path))


def test_the_label_names_eps_and_every_attack_setting():
    config = config_of({"name": "fast", "training": "fast"}, {"name": "pgd", "training": "pgd", "eps_255": 4},
                       {"name": "trades", "training": "trades"}, {"name": "clean", "training": "clean"},
                       autoattack="standard", apgd_steps=100)  # fmt: skip
    label = report_module.attack_label(config)
    assert (label["eps_255"], label["pgd_step_255"], label["pgd_steps"], label["pgd_restarts"]) == (8.0, 2.0, 2, 1)
    assert (label["autoattack"], label["apgd_steps"], label["attack_bn_mode"]) == ("standard", 100, "eval")
    attacks = label["training_attacks"]
    assert attacks["fast"] == {"training": "fast", "eps_255": 8.0, "fgsm_step_255": 4.0, "random_start": True,
                               "atta_cache": True, "bn_mode": "eval", "crop_offsets": "torchvision"}  # fmt: skip
    assert attacks["pgd"]["eps_255"] == 4.0 and attacks["pgd"]["steps"] == 2 and attacks["pgd"]["restarts"] == 1
    assert attacks["pgd"]["worst_iterate"] is False and attacks["pgd"]["bn_mode"] == "eval"
    assert (label["attack_protocol"], label["rounding"]) == ("standard", "floor")
    # the authors' protocol: every training attack says so in the label (trades keeps its attack_bn_mode)
    authors = report_module.attack_label(dataclasses.replace(config, attack_protocol="authors"))
    trained = authors["training_attacks"]
    assert authors["attack_protocol"] == "authors" and "worst iterate" in authors["attack_protocol_words"]
    assert trained["pgd"]["worst_iterate"] is True and trained["pgd"]["bn_mode"] == "train"
    assert trained["fast"]["bn_mode"] == "train" and trained["fast"]["crop_offsets"] == "authors"
    assert trained["trades"]["bn_mode"] == "eval"
    assert attacks["trades"]["trades_beta"] == 6.0 and attacks["clean"] == {"training": "clean"}
    words = report_module.attack_words(config)
    for part in ("ε = 8/255", "PGD-2", "step 2/255", "1 random start", "attack BN eval", "FGSM step 4/255",
                 "AutoAttack (standard", "100 steps", "pgd ε 4/255"):  # fmt: skip
        assert part in words


def test_the_report_writes_every_output_the_stage_declares(tmp_path):
    """One small outcome through ``report``: every file dvc.yaml declares for the stage (but the executed notebook),
    metrics.json headline only, the label with the attacks; a selection without the main row says why."""
    from rewire.experiments import robust_binary as rb
    from rewire.experiments.base import Outcome, RunContextSpec

    config = config_of({"name": "ours_p01", "training": "fast"}, {"name": "ours_pgd", "training": "pgd"},
                       {"name": "vanilla", "training": "clean"}, autoattack_images=6, apgd_steps=2)  # fmt: skip
    outcome = rb.run(config, context=RunContextSpec(), run_context=context(tmp_path / "ck"))
    label = rb.run_label(config, outcome, "smoke")
    metrics = rb.report(config, outcome, tmp_path / "out", label)
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["robust_binary"]
    declared = [Path(next(iter(o))).name for o in stage["outs"] + stage["metrics"]]
    missing = [name for name in declared if not name.endswith(".ipynb") and not (tmp_path / "out" / name).exists()]
    assert not missing
    assert set(metrics) <= set(report_module.HEADLINE) and {"claims_held", "top1"} <= set(metrics)
    written = yaml.safe_load((tmp_path / "out" / "label.json").read_text())
    assert written["attacks"]["eps_255"] == 8.0 and written["scale"] == "smoke"
    assert "ε = 8/255" in (tmp_path / "out" / "table_robust.md").read_text()
    partial = Outcome([run for run in outcome.runs if run.row.name == "vanilla"], outcome.data_source, outcome.extra)
    rb.report(config, partial, tmp_path / "partial", label)
    for name in ("kernels.csv", "cross_check.md", "mask_layer.png"):
        assert (tmp_path / "partial" / name).exists()
    assert "not computed at this scale" in (tmp_path / "partial" / "cross_check.md").read_text()
