"""Fidelity of the structured and dynamic baselines to their papers, against small hand-written references.

* SFP (He et al. 2018): the smallest-L2 filters of every layer are zeroed in the weights at every
  epoch end, and every filter trains in the forward pass until the next epoch end.
* Structured DPF ranks filters by L2 norm / sqrt(filter size) (RMS) under one global threshold.
* SM and DSR keep the first convolution dense (Mostafa & Wang 2019; Dettmers & Zettlemoyer 2019).
* The registry's DSR reallocates on the paper's WRN-28-2 schedule, rescaled to the run's epochs.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from synthetic import separable_loaders

from rewire import methods
from rewire.methods.dpf import GRADUAL_METHODS, SoftFilterPruning, SparsitySchedule
from rewire.methods.dynamic_sparse import (
    DSR_WRN_EPOCHS,
    DSR_WRN_STOP_EPOCH,
    DSR_WRN_UPDATE_SCHEDULE,
    SM_PRUNE_RATE_FLOOR,
    DynamicSparseReparameterization,
    SparseMomentum,
)
from rewire.models.resnet_cifar import resnet20
from rewire.sparse.groups import MaskGroup, PruningRule, conv_weight_targets, filter_norm_scores
from rewire.sparse.masks import is_sparse
from rewire.train.trainer import Callback, Trainer, TrainingHparams, evaluate

NUM_CLASSES = 4


class LeakyNet(nn.Module):
    """Two bias-free convolutions (4 filters of 27 weights, 6 of 36) and a linear classifier; leaky ReLU,
    so a zeroed filter still receives a gradient."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1, stride=2, bias=False)
        self.fc = nn.Linear(6, NUM_CLASSES)

    def forward(self, x):
        x = F.leaky_relu(self.conv1(x), 0.1)
        x = F.leaky_relu(self.conv2(x), 0.1)
        return self.fc(x.mean(dim=(2, 3)))


def loaders():
    return separable_loaders(NUM_CLASSES)  # 6 steps per epoch


def smallest_l2_filters(weight: torch.Tensor, count: int) -> set[int]:
    """Hand reference: the ``count`` filters of smallest sqrt(sum w^2), ties to the lower index."""
    norms = [math.sqrt(sum(float(x) ** 2 for x in weight[j].flatten())) for j in range(weight.shape[0])]
    return set(sorted(range(len(norms)), key=lambda j: (norms[j], j))[:count])


def zero_filters(weight: torch.Tensor) -> set[int]:
    return {j for j in range(weight.shape[0]) if not bool(weight[j].any())}


# --------------------------------------------------------------------------- SFP


class SFPSpy(Callback):
    """Placed before the SFP callback: sees the weights just before the epoch-end zeroing and
    checks, at every training step, that the forward pass reads the dense weights (every filter)."""

    def __init__(self, group, schedule):
        self.group, self.schedule = group, schedule
        self.before, self.zeroed, self.checked_steps, self.regrown_filters = None, [], 0, 0

    def on_batch_start(self, trainer, inputs, targets):
        for (module, name), dense in zip(self.group.targets, self.group.dense_weights()):
            assert torch.equal(getattr(module, name), dense), "a filter is out of the forward pass during training"
        assert all(bool(m.all()) for m in self.group.masks())
        self.checked_steps += 1
        return None

    def on_batch_end(self, trainer, loss):
        if trainer.global_step % trainer.batches_per_epoch == 1 and self.zeroed:  # first step after a zeroing
            for w, gone in zip(self.group.dense_weights(), self.zeroed[-1]):
                self.regrown_filters += sum(bool(w[j].any()) for j in gone)
        if trainer.global_step % trainer.batches_per_epoch == 0:
            self.before = [w.detach().clone() for w in self.group.dense_weights()]

    def on_epoch_end(self, trainer, record):
        target = self.schedule.at(trainer.epoch)
        zeroed = []
        for before, after, mask in zip(self.before, self.group.dense_weights(), self.group.masks()):
            expected = smallest_l2_filters(before, round(target * before.shape[0]))
            assert zero_filters(after) == expected
            kept = [j for j in range(before.shape[0]) if j not in expected]
            assert torch.equal(after[kept], before[kept])  # the other filters are untouched
            assert {j for j in range(mask.shape[0]) if not bool(mask[j].any())} == expected
            zeroed.append(expected)
        self.zeroed.append(zeroed)


def test_sfp_zeroes_the_smallest_filters_of_each_layer_at_epoch_end_and_trains_every_filter():
    torch.manual_seed(0)
    model = LeakyNet()
    schedule = SparsitySchedule(final=0.5, end=2.0)  # s = 0.4375 after epoch 1, 0.5 after epochs 2 and 3
    attached = methods.get("sfp").attach(model, schedule=schedule, update_every=16)
    assert isinstance(attached.callbacks[0], SoftFilterPruning)
    spy = SFPSpy(attached.group, schedule)
    train, test = loaders()
    hparams = TrainingHparams(epochs=3, lr=0.05, momentum=0.9, weight_decay=5e-4, schedule="cosine")
    trainer = Trainer(model, hparams, train, test, callbacks=[spy, *attached.callbacks], progress=False)
    history = trainer.fit()

    assert spy.checked_steps == 18 and len(spy.zeroed) == 3
    assert [sorted(map(len, z)) for z in spy.zeroed] == [[2, 3], [2, 3], [2, 3]]  # round(s * 4), round(s * 6)
    assert spy.regrown_filters > 0  # zeroed filters are updated again (soft pruning)
    # the final model: exactly round(0.5 * n) zero filters per layer, and the last record evaluated it
    weights = attached.group.dense_weights()
    assert [len(zero_filters(w)) for w in weights] == [2, 3]
    final = history.final
    assert final["filter_sparsity"] == 5 / 10
    assert final["sparsity"] == (2 * 27 + 3 * 36) / (4 * 27 + 6 * 36)
    assert final["target_sparsity"] == 0.5 and final["mask_updates"] == 1
    assert evaluate(model, test)["top1"] == final["test_top1"]
    assert history.column("delta")[0] > 0.0  # the share of ||w||^2 the first zeroing removed


def test_sfp_rule_ranks_signed_filters_by_l2_norm_within_each_layer():
    weight = torch.tensor([[[[3.0, -3.0]]], [[[1.0, 1.0]]], [[[-2.0, 0.5]]], [[[0.0, -4.0]]]])  # 4 filters of 2
    other = torch.tensor([[[[-0.1, 0.2]]], [[[5.0, 5.0]]]])
    rule = GRADUAL_METHODS["sfp"][0]
    masks = rule.masks([weight, other], 0.5)
    pruned = [zero_filters(torch.where(m, 1.0, 0.0)) for m in masks]
    assert pruned == [smallest_l2_filters(weight, 2), smallest_l2_filters(other, 1)] == [{1, 2}, {0}]


def test_sfp_with_a_constant_rate_also_zeroes_before_the_first_epoch():
    torch.manual_seed(0)
    model = LeakyNet()
    before = model.conv2.weight.detach().clone()
    attached = methods.get("sfp").attach(model, schedule=SparsitySchedule(final=0.5, initial=0.5, end=1.0))
    train, test = loaders()
    trainer = Trainer(model, TrainingHparams(epochs=1, lr=0.01), train, test, callbacks=attached.callbacks)
    attached.callbacks[0].on_fit_start(trainer)
    assert zero_filters(attached.group.dense_weights()[1]) == smallest_l2_filters(before, 3)


def test_sfp_zeroes_the_weights_only_and_keeps_their_momentum():
    """He et al.'s code (Mask.do_mask) multiplies the weight data by the mask; the optimizer state is untouched."""
    torch.manual_seed(0)
    model = LeakyNet()
    attached = methods.get("sfp").attach(model, schedule=SparsitySchedule(final=0.5, end=1.0))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 3, 8, 8)).square().sum().backward()
    optimizer.step()
    weight = attached.group.dense_weights()[1]
    momentum = optimizer.state[weight]["momentum_buffer"].clone()
    attached.callbacks[0].prune(SimpleNamespace(optimizer=optimizer), 1.0)
    assert len(zero_filters(weight)) == 3 and torch.equal(optimizer.state[weight]["momentum_buffer"], momentum)


def _sfp_trainer(run_dir):
    torch.manual_seed(0)
    model = LeakyNet()
    attached = methods.get("sfp").attach(model, schedule=SparsitySchedule(final=0.5, end=2.0))
    train, test = loaders()
    hparams = TrainingHparams(epochs=3, lr=0.05, momentum=0.9, weight_decay=5e-4, schedule="cosine")
    return Trainer(model, hparams, train, test, run_dir=run_dir, callbacks=attached.callbacks, progress=False)


def test_a_resumed_sfp_run_matches_an_uninterrupted_one(tmp_path):
    full = _sfp_trainer(tmp_path / "full")
    full.fit()
    part = _sfp_trainer(tmp_path / "part")
    part._train_one_epoch()  # killed after the first epoch's checkpoint (its mask is held there)
    part.save_checkpoint(part.run_dir / Trainer.CHECKPOINT_FILE)
    resumed = _sfp_trainer(tmp_path / "part")
    resumed.fit(resume=True)
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
    keys = ("test_top1", "test_loss", "sparsity", "filter_sparsity", "delta", "mask_flips", "mask_iou")
    assert [[r[k] for k in keys] for r in resumed.history.records] == [
        [r[k] for k in keys] for r in full.history.records
    ]


# --------------------------------------------------------------------------- structured DPF


def test_rms_filter_norm_is_the_l2_norm_over_the_square_root_of_the_filter_size():
    small = torch.tensor([[[[2.0, -2.0]]], [[[0.5, 0.0]]]])  # 2 filters of 2 weights
    large = torch.tensor([[[[1.0, -1.0, 1.0, 1.0, -1.0, 1.0, 1.0, 1.0]]]])  # 1 filter of 8 weights
    l2 = filter_norm_scores([small, large], "l2")
    rms = filter_norm_scores([small, large], "rms")
    assert torch.allclose(l2[0], torch.tensor([math.sqrt(8.0), 0.5])) and torch.allclose(l2[1], torch.tensor([8**0.5]))
    assert torch.allclose(rms[0], torch.tensor([2.0, 0.5 / math.sqrt(2)])) and torch.allclose(
        rms[1], torch.tensor([1.0])
    )
    # one global threshold at 2 of 3 filters: raw L2 prunes the 8-weight filter (norm 2.83 = 2.83 ties,
    # lower index wins), RMS keeps it (1.0 > 0.35) and prunes the small filter of RMS 0.35
    raw = PruningRule("filter", "global").masks([small, large], 1 / 3)
    normalised = PruningRule("filter", "global", filter_norm="rms").masks([small, large], 1 / 3)
    assert [bool(m.reshape(m.shape[0], -1).any(1)[j]) for m, j in ((raw[0], 1), (raw[1], 0))] == [False, True]
    assert bool(normalised[0][1].any()) is False and bool(normalised[1].all())
    with pytest.raises(ValueError, match="filter_norm"):
        PruningRule("weight", "global", filter_norm="rms")


def _stem_shortcut_transition(name: str) -> bool:
    return name == "conv1.weight" or ".shortcut." in name or name.endswith(".0.conv1.weight")


def test_structured_dpf_does_not_prune_resnet20s_small_filters_first_by_shape():
    """ResNet-20, seed 0, 30% of the filters, at initialisation: the stem, the 1x1 shortcuts and the
    first convolution of every stage hold 224 of the 784 filters (28.6%). Raw L2 puts 209 of the 235
    pruned filters there (the whole stem); the RMS norm of dpf_structured puts 36 there (15.3%), none in the stem."""
    torch.manual_seed(0)
    model = resnet20()
    names = conv_weight_targets(model)
    weights = [model.get_submodule(n.rsplit(".", 1)[0]).weight for n in names]
    special = [_stem_shortcut_transition(n) for n in names]
    share = sum(w.shape[0] for w, s in zip(weights, special) if s) / sum(w.shape[0] for w in weights)
    assert (sum(special), round(share, 3)) == (6, 0.286)

    def pruned_per_layer(rule):
        return [int((~m.reshape(m.shape[0], -1).any(1)).sum()) for m in rule.masks(weights, 0.3)]

    raw = pruned_per_layer(PruningRule("filter", "global"))
    rms = pruned_per_layer(GRADUAL_METHODS["dpf_structured"][0])
    assert sum(raw) == sum(rms) == 235
    raw_special = sum(p for p, s in zip(raw, special) if s) / sum(raw)
    rms_special = sum(p for p, s in zip(rms, special) if s) / sum(rms)
    assert raw_special > 0.85 and raw[0] == 16  # the problem: shape decides, the whole stem goes
    assert rms_special <= share  # normalised: these layers lose no more than their share of the filters
    assert rms[0] / 16 <= 0.3  # the stem is pruned no more than the target
    attached = methods.get("dpf_structured").attach(resnet20(), schedule=SparsitySchedule(final=0.3, end=1.0))
    assert attached.callbacks[0].rule.filter_norm == "rms"


# --------------------------------------------------------------------------- SM and DSR: dense first conv


class ThreeConvs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)  # 108 weights, dense
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)  # 216
        self.conv3 = nn.Conv2d(6, 8, 3, padding=1, stride=2)  # 432
        self.fc = nn.Linear(8, NUM_CLASSES)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = F.relu(self.conv2(x))
        return self.fc(F.relu(self.conv3(x)).mean(dim=(2, 3)))


@pytest.mark.parametrize("name", ["sm", "dsr"])
def test_sm_and_dsr_keep_the_first_convolution_dense(name):
    torch.manual_seed(0)
    model = ThreeConvs()
    stem = model.stem.weight.detach().clone()
    attached = methods.get(name).attach(model, 0.8, seed=0)
    assert attached.group.names == ["conv2.weight", "conv3.weight"]
    assert not is_sparse(model.stem) and is_sparse(model.conv2)
    train, test = loaders()
    hparams = TrainingHparams(epochs=1, lr=0.05, momentum=0.9)
    trainer = Trainer(model, hparams, train, test, callbacks=attached.callbacks, progress=False)
    record = trainer.fit().final
    assert record["sparsity"] == round(0.8 * 648) / 648  # the target over the remaining 216 + 432 weights
    assert bool(model.stem.weight.ne(0).all()) and not torch.equal(model.stem.weight, stem)  # trained, dense
    everything = methods.get(name).attach(ThreeConvs(), 0.8, seed=0, dense_first_conv=False)
    assert everything.group.names[0] == "stem.weight"


def test_sm_prune_rate_decays_to_its_floor():
    sm = SparseMomentum(MaskGroup(ThreeConvs(), route="masked"), 0.8)
    assert SM_PRUNE_RATE_FLOOR == 0.005
    assert sm.prune_rate_at(0, 10) == 0.5 and sm.prune_rate_at(10, 10) == pytest.approx(0.005)


# --------------------------------------------------------------------------- DSR schedule


def _fake_trainer(epochs, batches_per_epoch):
    return SimpleNamespace(
        hparams=SimpleNamespace(epochs=epochs), batches_per_epoch=batches_per_epoch, optimizer=None, global_step=0
    )


def test_the_registrys_dsr_follows_the_papers_schedule_rescaled_to_the_run():
    attached = methods.get("dsr").attach(ThreeConvs(), 0.8, seed=0)
    dsr = attached.callbacks[0]
    assert isinstance(dsr, DynamicSparseReparameterization)
    assert dsr.update_schedule == tuple((float(e), u) for e, u in DSR_WRN_UPDATE_SCHEDULE)
    assert (dsr.stop_epoch, dsr.schedule_epochs) == (DSR_WRN_STOP_EPOCH, DSR_WRN_EPOCHS) == (190, 200)

    dsr.on_fit_start(_fake_trainer(200, 10))  # the paper's length: unchanged
    assert [dsr.period_at(e) for e in (0, 24.9, 25, 79.9, 80, 139.9, 140)] == [100, 100, 200, 200, 400, 400, 800]
    assert dsr.stops_at() == 190

    # a 20-epoch run of 40 steps per epoch: U = 100 before epoch 2.5, 200 before 8, 400 before 14,
    # 800 before 19, nothing from epoch 19 on (steps 761..800; step 800 would be due under U = 800)
    trainer = _fake_trainer(20, 40)
    dsr.on_fit_start(trainer)
    assert dsr.stops_at() == 19.0
    steps = []
    dsr.update = lambda optimizer=None: steps.append(trainer.global_step)
    for step in range(1, 20 * 40 + 1):
        trainer.global_step = step
        dsr.on_batch_end(trainer, None)
    assert steps == [100, 200, 400]


def test_a_rescaled_dsr_schedule_sets_the_reallocations_of_a_real_run():
    torch.manual_seed(0)
    model = ThreeConvs()
    # given for 8 epochs, run for 4: U = 1 until epoch 1, U = 2 from epoch 1, stop at epoch 3
    attached = methods.get("dsr").attach(
        model, 0.8, seed=0, update_every=((0, 1), (2, 2)), stop_epoch=6, schedule_epochs=8, initial_threshold=0.02
    )
    train, test = loaders()
    hparams = TrainingHparams(epochs=4, lr=0.05, momentum=0.9)
    history = Trainer(model, hparams, train, test, callbacks=attached.callbacks, progress=False).fit()
    assert history.column("mask_updates") == [6, 3, 3, 0]
