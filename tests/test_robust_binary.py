"""The robust-binary driver: rows, loaders with indices, the adversarial-training callbacks, one run end to end,
the claims."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from synthetic import tiny_dataset

from rewire.experiments import robust_binary as rb
from rewire.experiments.engine import RunContext
from rewire.pipeline.claims import claims_frame

pytestmark = pytest.mark.usefixtures("one_thread")

BASE = dict(model="cresnet18", widths=(2, 2, 4, 4), keep=0.3, epochs=1, steps=2, validation_images=3, test_images=6)


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
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 3))

    class Trainer:
        pass

    trainer = Trainer()
    trainer.model = model
    x = torch.rand(5, 3, 16, 16)
    y = torch.tensor([0, 1, 2, 0, 1])
    adversarial, targets = rb.PGDTraining(setup, seed=0).on_batch_start(trainer, x, y)
    assert targets is y and adversarial.shape == x.shape
    assert (adversarial - x).abs().max() <= setup.eps + 1e-7 and adversarial.min() >= 0 and adversarial.max() <= 1
    assert (adversarial - x).abs().max() > 0


@pytest.mark.parametrize("training", ["pgd", "fast"])
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
    assert len(verdicts) == 5


def test_the_attacked_images_are_a_fixed_random_subset_not_the_first_ones():
    a, b = rb.evaluation_subset(10_000, 2_000), rb.evaluation_subset(10_000, 2_000)
    assert torch.equal(a, b) and a.numel() == 2_000 and a.unique().numel() == 2_000
    labels = torch.arange(10).repeat_interleave(1_000)  # a test split ordered by class
    counts = torch.bincount(labels[a], minlength=10)
    assert counts.min() > 150  # every class is attacked (the first 2,000 would be two classes)
    assert rb.evaluation_subset(50, 2_000).numel() == 50
