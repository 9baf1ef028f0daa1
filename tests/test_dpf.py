"""DPF (Lin et al. 2020, Algorithm 1) and the gradual-pruning callback, on tiny synthetic problems."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from rewire.data import BatchLoader
from rewire.experiments.dpf_sweeps import tables as dpf_report
from rewire.experiments.dpf_sweeps.cli import main as sweep_main
from rewire.experiments.dpf_sweeps.runs import Recipe, write_point
from rewire.methods.dpf import GradualPruning, SparsitySchedule, second_decay_epoch
from rewire.models import SmallConvNet
from rewire.sparse.groups import MaskGroup, PruningRule
from rewire.train.trainer import Callback, Trainer, TrainingHparams

NUM_CLASSES = 4


def tiny_model(seed=0) -> nn.Module:
    torch.manual_seed(seed)
    return SmallConvNet(num_classes=NUM_CLASSES, width=4)


def loaders(seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(NUM_CLASSES).repeat_interleave(12)
    images = (torch.randint(0, 200, (labels.numel(), 3, 8, 8), generator=g) + 10 * labels[:, None, None, None]).to(
        torch.uint8
    )
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    train = BatchLoader(
        images,
        labels,
        8,
        shuffle=True,
        augment=True,
        mean=mean,
        std=std,
        order_seed=seed,
        augmentation_seed=seed + 1,
        drop_last=True,
    )
    test = BatchLoader(images, labels, 16, shuffle=False, augment=False, mean=mean, std=std)
    return train, test


def conv_weights(model):
    return [m.weight for m in model.modules() if isinstance(m, nn.Conv2d)]


# ------------------------------------------------------------ Algorithm 1, one step


def test_one_dpf_step_is_sgd_on_dense_weights_with_gradient_at_masked_weights():
    """w_{t+1} = Opt(w_t, g(m ⊙ w_t)): Nesterov momentum and weight decay act on the dense weights."""
    lr, momentum, wd = 0.1, 0.9, 1e-3
    model = tiny_model()
    reference = copy.deepcopy(model)
    group = MaskGroup(model)  # DPF's route: straight_through
    masks = group.apply(PruningRule("weight", "global"), 0.6)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=True, weight_decay=wd)
    x, y = torch.randn(6, 3, 8, 8), torch.tensor([0, 1, 2, 3, 0, 1])

    dense = [w.detach().clone() for w in conv_weights(reference)]
    buffers = [torch.zeros_like(w) for w in dense]
    for step in range(2):
        # hand-written: the gradient taken at the masked weights of a plain model ...
        with torch.no_grad():
            for w, d, m in zip(conv_weights(reference), dense, masks):
                w.copy_(d * m)
        reference.zero_grad()
        F.cross_entropy(reference(x), y).backward()
        # ... applied to the dense weights with SGD + Nesterov momentum + weight decay (torch.optim.SGD's rule)
        for i, (w, d) in enumerate(zip(conv_weights(reference), dense)):
            grad = w.grad + wd * d
            buffers[i] = grad if step == 0 else momentum * buffers[i] + grad
            dense[i] = d - lr * (grad + momentum * buffers[i])
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        # the other parameters follow the same SGD on both models
        with torch.no_grad():
            for (name, p), (_, q) in zip(model.named_parameters(), reference.named_parameters()):
                if "parametrizations" not in name:
                    q.copy_(p)
    for ours, expected in zip(group.dense_weights(), dense):
        torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)
    assert all(bool((w[~m] != 0).any()) for w, m in zip(group.dense_weights(), masks))  # pruned weights moved


def _reentry_setup(route: str, zero_pruned: bool):
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 4, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, 0.1, 2.0, 3.0]).reshape(4, 1, 1, 1))
    model = nn.Sequential(conv)
    group = MaskGroup(model, ["0.weight"], route=route)
    callback = GradualPruning(
        group,
        PruningRule(),
        SparsitySchedule(final=0.25, end=1.0, frequency=0.0),
        update_every=1,
        zero_pruned=zero_pruned,
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    trainer = type("T", (), {"optimizer": optimizer, "epoch": 0})()
    callback.update(trainer, 1.0)  # prune one of four: the 0.1 entry
    assert group.masks()[0].flatten().tolist() == [True, False, True, True]
    push = torch.tensor([0.0, -1.0, 0.0, 0.0]).reshape(4, 1, 1, 1)  # the loss rewards the pruned entry
    for _ in range(4):
        optimizer.zero_grad()
        (model[0].weight * push).sum().backward()
        optimizer.step()
        callback.update(trainer, 1.0)
    return group, callback


def test_a_pruned_weight_with_growing_accumulated_gradient_re_enters_the_mask():
    group, callback = _reentry_setup("straight_through", zero_pruned=False)
    assert bool(group.masks()[0].flatten()[1])  # feedback: the weight grew and came back
    assert int(group.masks()[0].sum()) == 3  # still exactly 25% pruned
    assert int(callback.last_flip_epoch[0].flatten()[1]) == 1


def test_without_feedback_a_pruned_weight_stays_pruned_at_zero():
    group, _ = _reentry_setup("masked", zero_pruned=True)
    assert not bool(group.masks()[0].flatten()[1])
    assert float(group.dense_weights()[0].detach().flatten()[1]) == 0.0


# ------------------------------------------------------------ the callback in a run


def make_trainer(tmp_path, callbacks_of, epochs=3, name="run"):
    model = tiny_model()
    callbacks, group = callbacks_of(model)
    train, test = loaders()
    hparams = TrainingHparams(
        epochs=epochs,
        lr=0.05,
        momentum=0.9,
        nesterov=True,
        weight_decay=1e-4,
        schedule="multistep",
        milestones=(1.0, 2.0),
    )
    trainer = Trainer(
        model, hparams, train, test, run_dir=tmp_path / name if tmp_path else None, callbacks=callbacks, progress=False
    )
    return trainer, group


def dpf_callbacks(model, sparsity=0.8, update_every=2, structured=False):
    group = MaskGroup(model)
    rule = PruningRule("filter" if structured else "weight", "global")
    schedule = SparsitySchedule(final=sparsity, end=second_decay_epoch((1.0, 2.0)), frequency=0.0)
    return [GradualPruning(group, rule, schedule, update_every=update_every)], group


def test_dpf_run_reaches_the_target_exactly_and_records_its_dynamics(tmp_path):
    trainer, group = make_trainer(tmp_path, dpf_callbacks)
    history = trainer.fit()
    final = history.final
    total = group.numel()
    assert final["sparsity"] == round(0.8 * total) / total
    assert final["target_sparsity"] == 0.8
    assert [r["mask_updates"] for r in history.records] == [3, 3, 3]  # 6 steps per epoch, p = 2
    assert 0.0 < final["delta"] < 1.0
    assert history.records[0]["mask_flips"] > 0 and 0.0 < history.records[0]["mask_iou"] <= 1.0
    curve = trainer.callbacks[0].mask_convergence(3)
    assert len(curve) == 3 and curve[0] >= curve[1] >= curve[2] >= 0.0  # shares flipping after 0, 1, 2 epochs
    assert curve[0] >= final["sparsity"]  # every finally pruned entry flipped (kept -> pruned) after epoch 0


def test_structured_dpf_prunes_whole_filters(tmp_path):
    trainer, group = make_trainer(None, lambda m: dpf_callbacks(m, 0.5, structured=True))
    trainer.fit()
    filters = sum(m.shape[0] for m in group.masks())
    assert trainer.history.final["filter_sparsity"] == round(0.5 * filters) / filters
    for m in group.masks():
        per_filter = m.reshape(m.shape[0], -1)
        assert bool((per_filter.all(1) | ~per_filter.any(1)).all())


def test_dpf_resume_reaches_the_same_masks_and_metrics(tmp_path):
    full, full_group = make_trainer(tmp_path, dpf_callbacks, name="full")
    full.fit()
    part, _ = make_trainer(tmp_path, dpf_callbacks, epochs=3, name="part")
    part.hparams = part.hparams  # same hparams, killed after the first epoch:
    part._train_one_epoch()
    part.save_checkpoint(part.run_dir / Trainer.CHECKPOINT_FILE)
    resumed, resumed_group = make_trainer(tmp_path, dpf_callbacks, name="part")
    resumed.fit(resume=True)
    for a, b in zip(full_group.masks(), resumed_group.masks()):
        assert torch.equal(a, b)
    strip = lambda rs: [
        {k: v for k, v in r.items() if k not in ("train_seconds", "data_seconds", "images_per_second")} for r in rs
    ]
    assert strip(resumed.history.records) == strip(full.history.records)


class MaskTrace(Callback):
    """The masks after every optimizer step (global step -> list of masks)."""

    def __init__(self, group):
        self.group, self.after_step = group, {}

    def on_batch_end(self, trainer, loss) -> None:
        self.after_step[trainer.global_step] = [m.clone() for m in self.group.masks()]


def frozen_callbacks(freeze):
    def callbacks_of(model):
        (callback,), group = dpf_callbacks(model)
        callback.freeze_at_final = freeze
        return [callback, MaskTrace(group)], group

    return callbacks_of


def test_dpf_frozen_stops_updating_after_the_first_update_at_the_final_sparsity(tmp_path):
    # ramp over epochs 0..2 (second decay at epoch 2), p = 2 and 6 steps per epoch: updates before steps
    # 0, 2, ..., 16; the one before step 12 (epoch time 2.0) is the first at s_f = 0.8
    runs = {}
    for freeze in (False, True):
        trainer, group = make_trainer(None, frozen_callbacks(freeze))
        trainer.fit()
        runs[freeze] = (trainer.history.records, trainer.callbacks[1].after_step, group)
    (dpf_records, dpf_masks, _), (frozen_records, frozen_masks, frozen_group) = runs[False], runs[True]
    assert [r["mask_updates"] for r in dpf_records] == [3, 3, 3]
    assert [r["mask_updates"] for r in frozen_records] == [3, 3, 1]
    for step in range(1, 14):  # identical training up to and including the update at the final sparsity
        assert all(torch.equal(a, b) for a, b in zip(dpf_masks[step], frozen_masks[step])), step
    for a, b in zip(dpf_records[:2], frozen_records[:2]):
        assert (a["train_loss"], a["mask_flips"], a["sparsity"]) == (b["train_loss"], b["mask_flips"], b["sparsity"])
    for step in range(14, 19):  # frozen: the mask of step 13 to the end
        assert all(torch.equal(a, b) for a, b in zip(frozen_masks[13], frozen_masks[step])), step
    assert any(not torch.equal(a, b) for a, b in zip(dpf_masks[13], dpf_masks[18]))  # DPF kept re-selecting
    assert frozen_records[-1]["target_sparsity"] == 0.8
    total = frozen_group.numel()
    assert frozen_records[-1]["sparsity"] == round(0.8 * total) / total


def test_a_checkpoint_of_the_other_freeze_setting_is_refused():
    group = MaskGroup(tiny_model())
    schedule = SparsitySchedule(final=0.5, end=1.0)
    frozen = GradualPruning(group, PruningRule(), schedule, freeze_at_final=True)
    plain = GradualPruning(group, PruningRule(), schedule)
    state = plain.state_dict()
    with pytest.raises(ValueError, match="freeze_at_final"):
        frozen.load_state_dict(state)
    del state["freeze_at_final"]  # a checkpoint from before the setting existed: plain DPF
    plain.load_state_dict(state)


def test_a_ramp_that_ends_after_the_last_update_is_refused():
    def late(model):
        group = MaskGroup(model)
        return [
            GradualPruning(group, PruningRule(), SparsitySchedule(final=0.9, end=2.9, frequency=1.0), update_every=None)
        ], group

    trainer, _ = make_trainer(None, late)
    with pytest.raises(ValueError, match="never be reached"):
        trainer.fit()


def test_bad_update_period_is_refused():
    group = MaskGroup(tiny_model())
    with pytest.raises(ValueError, match="update_every"):
        GradualPruning(group, PruningRule(), SparsitySchedule(final=0.5, end=1.0), update_every=0)


# ------------------------------------------------------------ sweeps


def test_recipe_validates_and_ends_the_ramp_at_the_epoch_of_the_second_decay():
    recipe = Recipe(epochs=300)
    assert recipe.hparams().milestones == (150.0, 225.0)
    assert recipe.sparsity_schedule(0.9).end == 225.0
    assert Recipe(epochs=4).sparsity_schedule(0.9).end == 3.0
    with pytest.raises(ValueError, match="milestones"):
        Recipe(epochs=4, milestones=(0.5,))
    assert Recipe.from_params({"epochs": 2, "seeds": [0, 1], "runs_dir": "x"}).seeds == (0, 1)


def test_sweep_cli_stops_on_bad_input_and_writes_nothing(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text("scale: smoke\nsmoke:\n  dpf_sweeps:\n    epochs: 1\n")
    out = tmp_path / "point"
    assert sweep_main(["--method", "magic", "--sparsity", "0.9", "--out", str(out), "--params", str(params)]) == 2
    assert "known methods" in capsys.readouterr().err
    assert sweep_main(["--method", "dpf", "--sparsity", "1.0", "--out", str(out), "--params", str(params)]) == 2
    assert "sparsity must be" in capsys.readouterr().err
    assert (
        sweep_main(
            [
                "--method",
                "dpf",
                "--sparsity",
                "0.9",
                "--out",
                str(out),
                "--params",
                str(params),
                "--data-root",
                str(tmp_path / "nowhere"),
            ]
        )
        == 2
    )
    assert not out.exists()
    assert not list(tmp_path.glob(".tmp-*"))


def test_report_refuses_points_of_another_scale_or_recipe(tmp_path):
    from rewire.experiments.dpf_sweeps.config import GridPoint

    recipe = Recipe(epochs=2)
    point = {"method": "dpf", "sparsity": 0.9, "structured": False, "recipe": recipe.as_dict(), "runs": []}
    write_point(dpf_report.point_dir(tmp_path, "dpf", 0.9), point, {"scale": "cpu"})
    with pytest.raises(ValueError, match="scale 'cpu'"):
        dpf_report.load_runs(tmp_path, [GridPoint("dpf", 0.9, recipe)], scale="smoke")
    with pytest.raises(ValueError, match="differing: epochs"):
        dpf_report.load_runs(tmp_path, [GridPoint("dpf", 0.9, Recipe(epochs=3))], scale="cpu")
    with pytest.raises(FileNotFoundError, match="dvc repro"):
        dpf_report.load_runs(tmp_path, [GridPoint("snip", 0.9, recipe)], scale="cpu")
    assert json.loads((tmp_path / "dpf-0.9" / "run.json").read_text())["label"] == {"scale": "cpu"}


def test_paper_table_puts_the_papers_numbers_beside_ours():
    import pandas as pd

    runs = pd.DataFrame(
        [
            {"method": "dense", "target": 0.0, "seed": 0, "test_top1": 50.0},
            {"method": "dpf", "target": 0.9, "seed": 0, "test_top1": 40.0},
            {"method": "dpf", "target": 0.9, "seed": 1, "test_top1": 42.0},
        ]
    ).assign(structured=False, model="resnet20")
    table = dpf_report.paper_table(runs, dpf_report.TABLES["table1"], [0.9])
    rows = {r.method: r for r in table.itertuples()}
    assert rows["dpf"].top1_mean == 41.0 and rows["dpf"].runs == 2
    assert rows["dpf"].paper_mean == 90.88 and rows["dense"].paper_mean == 92.48  # DPF Table 1, ResNet-20
