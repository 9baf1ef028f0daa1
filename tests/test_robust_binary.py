"""The robust-binary driver: rows, loaders with indices, the adversarial-training callbacks, one run end to end,
the claims."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from synthetic import tiny_dataset

from rewire.attacks.trades import trades_loss
from rewire.experiments import robust_binary as rb
from rewire.experiments.engine import RunContext
from rewire.reporting.claims import claims_frame
from rewire.sparse.masks import current_mask, sparse_modules

pytestmark = pytest.mark.usefixtures("one_thread")

BASE = dict(model="cresnet18", widths=(2, 2, 4, 4), keep=0.3, epochs=1, steps=2, validation_images=3, test_images=6)


def linear_model_and_trainer():
    """A linear classifier of 16x16 images and the one attribute of a trainer the attack callbacks read."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 3))
    return model, SimpleNamespace(model=model)


def context(root) -> RunContext:
    train, held_out = tiny_dataset().train_validation_split(0.2, seed=0)
    return RunContext(train, torch.device("cpu"), 6, root, eval_batch_size=6, progress=False, validation=held_out)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"p": 0.1}, "needs a 'name'"),
        ({"name": "x", "prune": 0.9}, "unknown fields"),
        ({"name": "x", "eps": 8.0}, "/255"),
        ({"name": "x", "keep": 0.0}, r"in \(0, 1\]"),
        ({"name": "x", "keep": 1.5}, r"in \(0, 1\]"),
        ({"name": "x", "p": -0.5}, ">= 0"),
        ({"name": "x", "training": "magic"}, "unknown training"),
        ({"name": "x", "method": "hydra"}, "unknown method"),
        ({"name": "x", "method": "finetune"}, "mask_from names the edge-popup row"),
        ({"name": "x", "mask_from": "ours"}, "only those methods take it"),
        ({"name": "x", "training": "trades", "trades_beta": -1.0}, "trades_beta"),
    ],
)
def test_bad_rows_stop_before_any_work(row, message):
    with pytest.raises(ValueError, match=message):
        rb.row_setup(row, BASE)


def test_a_row_overrides_the_scales_values():
    name, setup = rb.row_setup({"name": "ours_p1", "p": 1.0, "widths": [8, 8, 8, 8]}, BASE)
    assert name == "ours_p1" and setup.p == 1.0 and setup.widths == (8, 8, 8, 8) and setup.keep == 0.3


def test_the_indexed_loader_names_the_images_it_yielded():
    data = tiny_dataset()
    loader = rb.IndexedBatchLoader(
        data.train_images, data.train_labels, 7, shuffle=True, augment=False, mean=(0, 0, 0), std=(1, 1, 1)
    )
    for images, labels in loader:
        assert torch.equal(labels, data.train_labels[loader.last_index])
        assert torch.equal(images, data.train_images[loader.last_index].float() / 255)
    with pytest.raises(ValueError, match="augment=False"):
        rb.IndexedBatchLoader(
            data.train_images, data.train_labels, 7, shuffle=True, augment=True, mean=(0,) * 3, std=(1,) * 3
        )


def test_pgd_training_replaces_each_batch_inside_the_eps_ball():
    setup = rb.RobustSetup(**BASE)
    model, trainer = linear_model_and_trainer()
    x = torch.rand(5, 3, 16, 16)
    y = torch.tensor([0, 1, 2, 0, 1])
    adversarial, targets = rb.PGDTraining(setup, seed=0).on_batch_start(trainer, x, y)
    assert targets is y and adversarial.shape == x.shape
    assert (adversarial - x).abs().max() <= setup.eps + 1e-7 and adversarial.min() >= 0 and adversarial.max() <= 1
    assert (adversarial - x).abs().max() > 0


@pytest.mark.parametrize("training", ["pgd", "fast", "trades"])
def test_one_run_trains_scores_only_records_robust_accuracy_and_is_found_again(tmp_path, training):
    ctx = context(tmp_path)
    setup = rb.RobustSetup(**BASE, training=training)
    model, _, info = rb.build_model(ctx, setup, 0)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(p.requires_grad for n, p in model.named_parameters() if "popup_scores" in n)
    first = rb.run_robust(ctx, setup, 0, name=f"ours-{training}", subset={})
    assert first.trained_now
    final = first.final
    assert {"test_pgd_top1", "test_clean_top1", "val_pgd_top1", "best_epoch", "best_test_pgd_top1"} <= set(final)
    assert final["test_pgd_top1"] <= final["test_clean_top1"] and final["test_images_attacked"] == 6
    assert first.record["config"]["setup"]["training"] == training
    again = rb.run_robust(ctx, setup, 0, name=f"ours-{training}", subset={})
    assert not again.trained_now and again.run_dir == first.run_dir
    assert info["kept_total"] == sum(info["kept_per_layer"].values())


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
    frame = claims_frame(rb.robust_claims(pd.DataFrame(rows))).set_index("a")
    verdicts = dict(zip(frame["b"], frame["verdict"]))
    assert verdicts["ours_p1"] == "holds"
    assert verdicts["ours_nolbn"] == "reversed"
    assert verdicts["ours_skc"] == "holds"
    assert verdicts["binary_connect_small"] == "inconclusive at this scale"
    assert verdicts["ours_pgd"] == "holds"  # within the paper's own fast-vs-PGD gap
    assert len(verdicts) == 5
    claims = rb.robust_claims(pd.DataFrame(rows))
    assert [c.margin for c in claims if c.b_label == "ours_pgd"] == [rb.FAST_MARGIN]
    # at paper scale the fast row has its own name and the main row trains with PGD
    renamed = pd.DataFrame(rows).replace({"row": {"ours_p01": "ours_fast", "ours_pgd": "ours_p01"}})
    fast = [c for c in rb.robust_claims(renamed) if c.a_label == "ours_fast"]
    assert len(fast) == 1 and fast[0].b_label == "ours_p01" and fast[0].kind == "at_least"


def test_the_attacked_images_are_a_fixed_random_subset_not_the_first_ones():
    a, b = rb.evaluation_subset(10_000, 2_000), rb.evaluation_subset(10_000, 2_000)
    assert torch.equal(a, b) and a.numel() == 2_000 and a.unique().numel() == 2_000
    labels = torch.arange(10).repeat_interleave(1_000)  # a test split ordered by class
    counts = torch.bincount(labels[a], minlength=10)
    assert counts.min() > 150  # every class is attacked (the first 2,000 would be two classes)
    assert rb.evaluation_subset(50, 2_000).numel() == 50


def test_trades_training_back_propagates_the_trades_loss_with_its_own_generator():
    setup = rb.RobustSetup(**BASE, training="trades", trades_beta=3.0)
    torch.manual_seed(0)
    model, trainer = linear_model_and_trainer()
    x = torch.rand(5, 3, 16, 16)
    y = torch.tensor([0, 1, 2, 0, 2])
    loss = rb.TRADESTraining(setup, seed=4).training_loss(trainer, x, y)
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
    source = rb.RobustSetup(**BASE, training="clean")
    found = rb.run_robust(ctx, source, 0, name="ours", subset={})
    setup = rb.RobustSetup(**{**BASE, "training": "clean", "method": method, "mask_from": "ours", "lr": 0.01})
    model, _, info = rb.build_model(ctx, setup, 0, found.model)
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
    result = rb.run_robust(ctx, setup, 0, name=method, subset={}, found=found)
    assert result.record["config"]["mask_from_run"] == found.run_dir.name
    trained = {n: p.mask for n, _, p in sparse_modules(result.model)}
    assert all(torch.equal(trained[n], found_masks[n]) for n in trained)  # the mask never moved
    with pytest.raises(ValueError, match="found="):
        rb.build_model(ctx, setup, 0)


def test_a_plan_refuses_a_mask_source_that_is_not_an_earlier_edge_popup_row():
    ours = rb.row_setup({"name": "ours"}, BASE)
    ft = rb.row_setup({"name": "ft", "method": "finetune", "mask_from": "ours"}, BASE)
    dense = rb.row_setup({"name": "dense", "method": "dense"}, BASE)
    rb.check_plan([ours, ft])
    with pytest.raises(ValueError, match="earlier edge_popup row; earlier edge_popup rows: ours"):
        rb.check_plan([ours, dense, rb.row_setup({"name": "ft", "method": "finetune", "mask_from": "dense"}, BASE)])
    with pytest.raises(ValueError, match="earlier edge_popup row"):
        rb.check_plan([ft, ours])
    with pytest.raises(ValueError, match="unique"):
        rb.check_plan([ours, ours])
    wider = rb.row_setup({"name": "ft", "method": "retrain", "mask_from": "ours", "widths": [4, 4, 4, 4]}, BASE)
    with pytest.raises(ValueError, match="differs"):
        rb.check_plan([ours, wider])


@pytest.mark.parametrize(
    ("fields", "dataset", "robust", "clean", "row"),
    [
        ({"training": "pgd", "p": 0.1}, "cifar10", 45.06, 76.59, "Ours, RN34-LBN, p = 0.1"),
        ({"training": "fast", "p": 1.0}, "cifar10", 29.68, None, "Ours (fast), RN34-LBN, p = 1"),
        ({"training": "pgd", "p": 0.1}, "cifar100", 34.83, 60.16, "Ours, RN34-LBN"),
        ({"method": "dense", "training": "pgd"}, "cifar10", 42.39, 80.96, "AT, RN34-LBN, FP"),
        (
            {"method": "binary_connect", "training": "pgd", "last_bn": False},
            "cifar10",
            40.34,
            74.37,
            "AT, RN34, binary",
        ),
        ({"method": "dense", "training": "trades", "widths": (23, 25, 27, 29)}, "cifar10", 42.60, None, "TRADES"),
        (
            {"method": "dense", "training": "pgd", "widths": (23, 25, 27, 29)},
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
        ({"method": "binary_connect", "training": "fast", "widths": (1, 2, 2, 3)}, "cifar10", 32.54, 58.69, "Small"),
    ],
)
def test_paper_numbers_beside_a_row_come_from_the_matching_cell(fields, dataset, robust, clean, row):
    setup = rb.RobustSetup(**{**BASE, **fields})
    cells = rb.paper_cells(setup, dataset, full_widths=BASE["widths"])
    for key, expected in (("paper_robust_top1", robust), ("paper_clean_top1", clean)):
        if expected is None:
            assert cells[key] != cells[key]  # NaN: no such cell in the paper
        else:
            assert cells[key] == expected
    assert row in cells["paper_row"]


def test_a_row_may_run_fewer_seeds_but_only_among_the_scales():
    assert rb.row_seeds({"name": "x"}, [0, 1, 2]) == [0, 1, 2]
    assert rb.row_seeds({"name": "x", "seeds": [1]}, [0, 1, 2]) == [1]
    assert rb.row_setup({"name": "x", "seeds": [1]}, BASE)[0] == "x"
    with pytest.raises(ValueError, match="among the scale's"):
        rb.row_seeds({"name": "x", "seeds": [5]}, [0, 1, 2])


def test_a_resumed_fast_run_continues_with_the_cached_perturbations(tmp_path):
    data = tiny_dataset()
    loader = rb.IndexedBatchLoader(
        data.train_images, data.train_labels, 6, shuffle=False, augment=False, mean=(0,) * 3, std=(1,) * 3
    )
    setup = rb.RobustSetup(**BASE, training="fast")
    torch.manual_seed(0)
    model, trainer = linear_model_and_trainer()
    batches = iter(loader)
    first = rb.FastATTATraining(setup, loader, seed=0)
    x, y = next(batches)
    first.on_batch_start(trainer, x, y)
    torch.save(first.state_dict(), tmp_path / "state.pt")
    resumed = rb.FastATTATraining(setup, loader, seed=7)  # another seed: another canvas until loaded
    assert not torch.equal(resumed.cache.canvas, first.cache.canvas)
    resumed.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert torch.equal(resumed.cache.canvas, first.cache.canvas)
    x, y = next(batches)
    a, _ = first.on_batch_start(trainer, x, y)
    b, _ = resumed.on_batch_start(trainer, x, y)
    assert torch.equal(a, b) and torch.equal(resumed.cache.canvas, first.cache.canvas)
    other = rb.IndexedBatchLoader(
        data.train_images[:12], data.train_labels[:12], 6, shuffle=False, augment=False, mean=(0,) * 3, std=(1,) * 3
    )
    with pytest.raises(ValueError, match="different training set"):
        rb.FastATTATraining(setup, other, seed=0).load_state_dict(first.state_dict())


def test_the_weight_count_is_the_kept_entries_of_sparse_layers_and_every_entry_of_dense_ones(tmp_path):
    ctx = context(tmp_path)
    dense, _, _ = rb.build_model(ctx, rb.RobustSetup(**BASE, method="dense"), 0)
    total = sum(m.weight.numel() for m in dense.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    assert rb.weight_count(dense) == total
    binary, _, _ = rb.build_model(ctx, rb.RobustSetup(**BASE, method="binary_connect"), 0)
    assert rb.weight_count(binary) == total  # sign(w) is still one weight per entry
    pruned, _, info = rb.build_model(ctx, rb.RobustSetup(**BASE), 0)
    assert rb.weight_count(pruned) == info["kept_total"] < total


def test_a_cifar100_run_normalises_with_its_own_statistics_and_predicts_its_classes(tmp_path):
    from rewire.data import CIFAR100_MEAN, CIFAR100_STD, ImageDataset

    g = torch.Generator().manual_seed(1)
    labels = torch.arange(5).repeat_interleave(6)
    images = torch.randint(0, 256, (30, 3, 16, 16), generator=g, dtype=torch.uint8)
    data = ImageDataset("cifar100", tuple("abcde"), images, labels, images[:10], labels[:10], {"kind": "synthetic"})
    train, held_out = data.train_validation_split(0.2, seed=0)
    ctx = RunContext(train, torch.device("cpu"), 6, tmp_path, eval_batch_size=6, progress=False, validation=held_out)
    setup = rb.RobustSetup(**{**BASE, "training": "clean"})
    assert setup.spec(5, "cifar10").kwargs.get("mean") is None  # the authors' CIFAR-10 constants, the default
    result = rb.run_robust(ctx, setup, 0, name="c100", subset={})
    normalize = result.model.normalize
    assert torch.allclose(normalize.mean.flatten(), torch.tensor(CIFAR100_MEAN))
    assert torch.allclose(normalize.std.flatten(), torch.tensor(CIFAR100_STD))
    with torch.no_grad():
        assert result.model.eval()(torch.rand(2, 3, 16, 16)).shape == (2, 5)


def test_a_rows_recipe_knobs_reach_the_trainer_and_leave_existing_identities_alone(tmp_path):
    name, fp_at = rb.row_setup(
        {"name": "fp", "method": "dense", "schedule": "multistep", "milestones": [200, 300], "batch_size": 512}, BASE
    )
    recipe = rb.hparams(fp_at)
    assert (recipe.schedule, recipe.milestones, recipe.optimizer) == ("multistep", (200, 300), "sgd")
    _, bnn = rb.row_setup({"name": "bnn", "method": "binary_connect", "optimizer": "adam", "lr": 1e-4}, BASE)
    assert rb.hparams(bnn).optimizer == "adam" and rb.hparams(bnn).lr == 1e-4
    # the recipe knobs live in the recipe (hparams) and the config's batch size, not twice in the setup's fields
    assert not set(rb.RECIPE_FIELDS) & set(fp_at.as_dict())
    default = rb.hparams(rb.RobustSetup(**BASE))
    assert (default.optimizer, default.momentum, default.schedule, default.milestones) == ("sgd", 0.9, "cosine", ())
    assert (default.warmup_epochs, default.label_smoothing) == (0.0, 0.0)
    with pytest.raises(ValueError, match="row 'x'.*optimizer"):
        rb.row_setup({"name": "x", "optimizer": "lamb"}, BASE)
    with pytest.raises(ValueError, match="batch_size"):
        rb.row_setup({"name": "x", "batch_size": -4}, BASE)
    ctx = context(tmp_path)
    result = rb.run_robust(
        ctx, rb.RobustSetup(**{**BASE, "training": "clean", "batch_size": 4}), 0, name="b4", subset={}
    )
    assert result.record["config"]["batch_size"] == 4 and result.final["step"] == len(ctx.data.train_labels) // 4


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
                     validation=held_out)  # fmt: skip
    setup = rb.RobustSetup(
        **{**BASE, "model": "resnet34_imagenet", "widths": (2, 2, 2, 2), "training": "fast", "eps": 2 / 255,
           "step_size": 0.5 / 255, "fast_step": 1 / 255, "momentum": 0.875, "warmup_epochs": 1.0}
    )  # fmt: skip
    assert setup.as_dict()["fast_step"] == 1 / 255 and "fast_step" not in rb.RobustSetup(**BASE).as_dict()
    result = rb.run_robust(ctx, setup, 0, name="in100", subset={"image_size": 168})
    assert (
        result.final["test_images_attacked"] == 6 and result.final["test_pgd_top1"] <= result.final["test_clean_top1"]
    )
    assert result.model.eval()(torch.rand(1, 3, 168, 168)).shape == (1, 3)
    loader = rb.IndexedBatchLoader(train.train_images, train.train_labels, 4, shuffle=False, augment=False,
                                   mean=(0,) * 3, std=(1,) * 3)  # fmt: skip
    cache = rb.FastATTATraining(setup, loader, 0).cache
    assert isinstance(cache, ATTACache) and cache.compress == 8 and tuple(cache.canvas.shape[1:]) == (3, 22, 22)
    callback, asked = rb.FastATTATraining(setup, loader, 0), {}
    monkeypatch.setattr(
        callback.cache, "perturb", lambda *args, **kwargs: asked.update(kwargs) or (args[1], None, None)
    )
    batch = next(iter(loader))
    callback.on_batch_start(SimpleNamespace(model=result.model), *batch)
    assert asked["step_size"] == 1 / 255  # FGSM's step is the row's, not the CIFAR default
    cells = rb.paper_cells(rb.RobustSetup(**{**BASE, "training": "pgd"}), "imagenet100")
    assert cells["paper_clean_top1"] == 58.94 and cells["paper_robust_top1"] != cells["paper_robust_top1"]


def test_the_imagenet100_block_holds_valid_rows_for_the_notebook():
    import yaml

    from rewire.pipeline import params as params_module

    root = Path(__file__).resolve().parents[1]
    block = yaml.safe_load((root / "params.yaml").read_text())["paper"]["robust_binary_imagenet100"]
    params_module.check_values(
        block, params_module.notebook_parameters(root / "notebooks/04_robust_binary.ipynb"), where="imagenet100"
    )
    base = dict(model=block["model"], widths=tuple(block["widths"]), keep=block["keep"], eps=block["eps_255"] / 255,
                step_size=block["step_255"] / 255, epochs=block["epochs"])  # fmt: skip
    plan = [rb.row_setup(row, base) for row in block["rows"]]
    rb.check_plan(plan)
    fast = dict(plan)["ours_p01"]
    assert fast.fast_step == pytest.approx(1 / 255) and fast.eps == pytest.approx(2 / 255)
