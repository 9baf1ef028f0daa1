"""Sparse Momentum and DSR: exact counts, zero pruned/regrown weights, hand-computed updates, exact resume."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from synthetic import separable_loaders

from rewire.methods.dynamic_sparse import DynamicSparseReparameterization, SparseMomentum, apportion, initial_masks
from rewire.sparse.groups import MaskGroup
from rewire.sparse.masks import is_sparse
from rewire.train.trainer import Callback, Trainer, TrainingHparams

NUM_CLASSES = 4
EXPECTED_RECORD_KEYS = {"sparsity", "mask_flips", "mask_updates", "mask_iou", "regrown"}


class TinyNet(nn.Module):
    """Three convolutions (108 + 216 + 432 = 756 weights) and a linear classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.conv3 = nn.Conv2d(6, 8, 3, padding=1, stride=2)
        self.fc = nn.Linear(8, NUM_CLASSES)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.relu(self.conv3(x))
        return self.fc(x.mean(dim=(2, 3)))


class TwoLayers(nn.Module):
    """Two convolutions of 8 weights each, for hand-computed updates (never run forward)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 2, 2, bias=False)
        self.b = nn.Conv2d(2, 1, 2, bias=False)


def loaders():
    return separable_loaders(NUM_CLASSES)  # 6 steps per epoch


HPARAMS = TrainingHparams(epochs=3, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="cosine")


def make_run(method, run_dir=None, extra=(), **kwargs):
    torch.manual_seed(0)
    model = TinyNet()
    group = MaskGroup(model, route="masked")
    callback = method(group, 0.8, **kwargs)
    train, test = loaders()
    trainer = Trainer(model, HPARAMS, train, test, run_dir=run_dir, callbacks=[callback, *extra], progress=False)
    return trainer, group, callback


def kept(group):
    return sum(int(m.sum()) for m in group.masks())


class Invariants(Callback):
    """Checks, after the method's own hooks, every property that must hold at all times."""

    def __init__(self, group, expected_kept):
        self.group, self.expected_kept = group, expected_kept
        self.before = None
        self.checked_regrown = 0

    def check(self, trainer):
        assert kept(self.group) == self.expected_kept
        for weight, mask in zip(self.group.dense_weights(), self.group.masks()):
            assert torch.equal(weight[~mask], torch.zeros_like(weight[~mask]))
            for value in trainer.optimizer.state.get(weight, {}).values():
                if isinstance(value, torch.Tensor) and value.shape == weight.shape:
                    assert not value[~mask].any()
        if self.before is not None:  # entries that came back since the last step start at zero
            for weight, before, now in zip(self.group.dense_weights(), self.before, self.group.masks()):
                regrown = now & ~before
                self.checked_regrown += int(regrown.sum())
                assert not weight[regrown].any()

    def on_fit_start(self, trainer):
        self.check(trainer)

    def on_after_backward(self, trainer):
        for weight, mask in zip(self.group.dense_weights(), self.group.masks()):
            assert not weight.grad[~mask].any()  # route="masked": no gradient for pruned weights
        self.before = [m.clone() for m in self.group.masks()]  # the mask of this step, before any update

    def on_batch_end(self, trainer, loss):
        self.check(trainer)

    def on_epoch_end(self, trainer, record):
        self.check(trainer)
        assert EXPECTED_RECORD_KEYS <= set(record)
        assert record["sparsity"] == pytest.approx(1 - self.expected_kept / 756)


# --------------------------------------------------------------------------- counting


def test_apportion_is_exact_proportional_and_respects_capacity():
    assert apportion(4, [0.75, 0.25], [6, 6]) == [3, 1]
    assert apportion(10, [1, 1, 1], [10, 10, 10]) == [4, 3, 3]  # largest remainder, ties to the lower index
    assert apportion(4, [0.9, 0.1], [3, 10]) == [3, 1]  # 3.6 -> 4 capped at 3, the overflow goes to B
    assert apportion(3, [1.0, 0.0], [1, 5]) == [1, 2]  # zero weight receives only once the others are full
    assert apportion(5, [float("nan"), 2.0], [5, 5]) == [0, 5]
    with pytest.raises(ValueError, match="capacity"):
        apportion(7, [1, 1], [3, 3])


def test_initial_masks_are_exact_uniform_and_reproducible():
    group = MaskGroup(TinyNet(), route="masked")
    masks = initial_masks(group, 0.9, torch.Generator().manual_seed(3))
    assert sum(int((~m).sum()) for m in masks) == round(0.9 * 756) == 680
    for m in masks:
        assert abs(int((~m).sum()) - 0.9 * m.numel()) < 1  # the same sparsity per layer, up to one entry
    again = initial_masks(group, 0.9, torch.Generator().manual_seed(3))
    assert all(torch.equal(a, b) for a, b in zip(masks, again))
    other = initial_masks(group, 0.9, torch.Generator().manual_seed(4))
    assert not all(torch.equal(a, b) for a, b in zip(masks, other))


def test_initial_masks_fix_per_layer_rounding_so_the_total_is_exact():
    class ThreeSmall(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2, self.c3 = (nn.Conv2d(1, 1, (1, 3), bias=False) for _ in range(3))

    group = MaskGroup(ThreeSmall(), route="masked")
    masks = initial_masks(group, 0.5, torch.Generator().manual_seed(0))
    # round(0.5 * 9) = 4 pruned; rounding each layer's 1.5 separately would prune 6
    assert [int((~m).sum()) for m in masks] == [2, 1, 1]


def test_only_masked_route_groups_are_accepted():
    with pytest.raises(ValueError, match="route='masked'"):
        SparseMomentum(MaskGroup(TinyNet()), 0.8)


# --------------------------------------------------------------------------- SM


def hand_group(kept_a, kept_b, values_a, values_b):
    model = TwoLayers()
    group = MaskGroup(model, route="masked")
    masks = []
    for weight, kept_idx, values in zip(group.dense_weights(), (kept_a, kept_b), (values_a, values_b)):
        mask = torch.zeros(8, dtype=torch.bool)
        mask[list(kept_idx)] = True
        with torch.no_grad():
            weight.copy_(torch.tensor(values, dtype=weight.dtype).reshape(weight.shape))
        masks.append(mask.reshape(weight.shape))
    group.assign(masks)
    return model, group


def test_sm_redistributes_by_mean_momentum_and_regrows_where_momentum_is_largest():
    model, group = hand_group(range(4), range(4), [1, 2, 3, 4, 0, 0, 0, 0], [4, 3, 2, 1, 0, 0, 0, 0])
    wa, wb = group.dense_weights()
    optimizer = torch.optim.SGD(group.dense_weights(), lr=0.1, momentum=0.9)
    optimizer.state[wa]["momentum_buffer"] = torch.tensor([3.0, -3, 3, -3, 0, 0, 0, 0]).reshape(wa.shape)
    optimizer.state[wb]["momentum_buffer"] = torch.tensor([1.0, 1, -1, 1, 0, 0, 0, 0]).reshape(wb.shape)
    sm = SparseMomentum(group, 0.5)
    sm.started = True
    sm.dense_momentum[0].copy_(torch.tensor([0.0, 0.5, 0, 0, 9, 1, 8, -7]).reshape(wa.shape))
    sm.dense_momentum[1].copy_(torch.tensor([0.0, 0, -10, 0, 1, 2, 3, 4]).reshape(wb.shape))

    assert sm.momentum_contributions(optimizer) == [0.75, 0.25]
    # prune rate 0.5: each layer drops its 2 smallest |w| -> R = 4, regrown 0.75 * 4 = 3 in A and 1 in B
    a, b = (m.reshape(-1) for m in sm.update(optimizer, 0.5))
    assert a.nonzero().squeeze(1).tolist() == [2, 3, 4, 6, 7]  # A regrows its 3 largest |momentum|: 4, 6, 7
    assert b.nonzero().squeeze(1).tolist() == [0, 1, 2]  # B regrows entry 2 (|m| = 10), pruned a moment ago
    assert kept(group) == 8
    # regrown entries (including B's entry 2, pruned then regrown) start at zero, with zero momentum
    assert wa.detach().reshape(-1).tolist() == [0, 0, 3, 4, 0, 0, 0, 0]
    assert wb.detach().reshape(-1).tolist() == [4, 3, 0, 0, 0, 0, 0, 0]
    assert optimizer.state[wa]["momentum_buffer"].reshape(-1).tolist() == [0, 0, 3, -3, 0, 0, 0, 0]
    assert optimizer.state[wb]["momentum_buffer"].reshape(-1).tolist() == [1, 1, 0, 0, 0, 0, 0, 0]


def test_sm_regrowth_overflow_goes_to_layers_with_room():
    # A keeps 7 of 8 and has all the momentum, B keeps 4 of 8 with almost none
    model, group = hand_group(range(7), range(4), [1, 2, 3, 4, 5, 6, 7, 0], [5, 6, 7, 8, 0, 0, 0, 0])
    wa, wb = group.dense_weights()
    optimizer = torch.optim.SGD(group.dense_weights(), lr=0.1, momentum=0.9)
    optimizer.state[wa]["momentum_buffer"] = torch.full(wa.shape, 1.0)
    optimizer.state[wb]["momentum_buffer"] = torch.full(wb.shape, 1e-9)
    sm = SparseMomentum(group, 5 / 16)
    # p = 0.5: A drops round(3.5) = 4, B drops 2, R = 6; A's share (~6) is capped at its room of 5, B gets 1
    masks = sm.update(optimizer, 0.5)
    assert [int(m.sum()) for m in masks] == [8, 3]
    assert wa.detach().reshape(-1).tolist() == [0, 0, 0, 0, 5, 6, 7, 0]  # A's regrown entries start at zero


def test_sm_prune_rate_decays_with_a_cosine_to_the_authors_floor():
    # CosineAnnealingLR(eta_min=0.005) from 0.5: p_t = 0.005 + 0.495 (1 + cos(pi t / T)) / 2
    sm = SparseMomentum(MaskGroup(TinyNet(), route="masked"), 0.8, prune_rate=0.5)
    assert sm.prune_rate_at(0, 10) == 0.5
    assert sm.prune_rate_at(5, 10) == pytest.approx(0.005 + 0.495 * 0.5)
    assert sm.prune_rate_at(10, 10) == pytest.approx(0.005)  # never 0: regrowth continues to the end
    assert sm.prune_rate_at(2.5, 10) == pytest.approx(0.005 + 0.495 * (1 + 2**-0.5) / 2)


def test_sm_training_keeps_every_invariant_and_the_linear_layer_dense():
    trainer, group, sm = make_run(SparseMomentum)
    checker = Invariants(group, 756 - round(0.8 * 756))
    trainer.callbacks.append(checker)
    history = trainer.fit()
    assert checker.checked_regrown > 0
    assert history.column("mask_updates") == [1, 1, 0]  # no update after the last epoch (nothing trains after it)
    assert all(f > 0 for f in history.column("mask_flips")[:2])
    assert history.column("prune_rate") == pytest.approx([0.005 + 0.495 * 0.75, 0.005 + 0.495 * 0.25, 0.005])
    assert not is_sparse(trainer.model.fc) and bool(trainer.model.fc.weight.ne(0).all())
    assert any(bool(m.any()) for m in sm.dense_momentum)


# --------------------------------------------------------------------------- DSR


def dsr_hand_case(threshold):
    model, group = hand_group(range(4), range(4), [0.1, 0.2, 0.3, 0.9, 0, 0, 0, 0], [0.15, 0.5, 0.6, 0.7, 0, 0, 0, 0])
    dsr = DynamicSparseReparameterization(
        group, 0.5, initial_threshold=threshold, target_pruned_fraction=0.25, tolerance=0.1
    )  # N_p = 4 of 16: adapt below 3.6, above 4.4
    dsr.started = True
    return group, dsr


@pytest.mark.parametrize(
    "threshold, pruned, adapted",
    [
        (0.12, 1, 0.24),  # 1 < 0.9 N_p: H doubles
        (0.35, 4, 0.35),  # within tolerance: H stays
        (0.55, 5, 0.275),  # 5 > 1.1 N_p: H halves
    ],
)
def test_dsr_threshold_doubles_or_halves(threshold, pruned, adapted):
    group, dsr = dsr_hand_case(threshold)
    assert dsr.target_pruned == 4
    dsr.update()
    assert dsr.last_pruned == pruned
    assert dsr.threshold == pytest.approx(adapted)
    assert kept(group) == 8


def test_dsr_reallocates_in_proportion_to_surviving_weights_at_random_zero_positions():
    group, dsr = dsr_hand_case(0.35)
    before = [m.clone() for m in group.masks()]
    masks = dsr.update()
    # H = 0.35 prunes 0.1, 0.2, 0.3 of A and 0.15 of B: survivors 1 and 3, K = 4 -> A gets 1, B gets 3
    assert [int(m.sum()) for m in masks] == [2, 6]
    for weight, old, new in zip(group.dense_weights(), before, masks):
        regrown = new & ~old
        assert not weight[regrown].any()
        assert not weight[~new].any()
    # regrowth is among entries pruned before the update, not the ones pruned by it
    assert (masks[0].reshape(-1)[:3] == 0).all() and masks[0].reshape(-1)[3]
    assert not masks[1].reshape(-1)[0]


def test_dsr_training_keeps_every_invariant_and_reallocates_on_schedule():
    trainer, group, dsr = make_run(
        DynamicSparseReparameterization, update_every=2, initial_threshold=0.02, target_pruned_fraction=0.02
    )
    checker = Invariants(group, 756 - round(0.8 * 756))
    trainer.callbacks.append(checker)
    history = trainer.fit()
    assert history.column("mask_updates") == [3, 3, 3]  # 6 steps per epoch, every 2nd
    assert sum(history.column("mask_flips")) > 0 and checker.checked_regrown > 0
    assert "threshold" in history.final
    assert not is_sparse(trainer.model.fc)
    assert dsr.period_at(0) == 2


def test_dsr_update_schedule_and_stop_epoch():
    group = MaskGroup(TinyNet(), route="masked")
    dsr = DynamicSparseReparameterization(group, 0.8, update_every=((0, 100), (25, 200), (80, 400)), stop_epoch=1)
    assert [dsr.period_at(e) for e in (0, 24, 25, 79, 80, 150)] == [100, 100, 200, 200, 400, 400]
    with pytest.raises(ValueError, match="update_every"):
        DynamicSparseReparameterization(group, 0.8, update_every=((5, 100),))
    trainer = make_run(DynamicSparseReparameterization, update_every=1, stop_epoch=1)[0]
    assert trainer.fit().column("mask_updates") == [6, 0, 0]


# --------------------------------------------------------------------------- resume


class Interrupted(Exception):
    pass


class KillAt(Callback):
    def __init__(self, step):
        self.step = step

    def on_batch_end(self, trainer, loss):
        if trainer.global_step == self.step:
            raise Interrupted


@pytest.mark.parametrize(
    "method, kwargs",
    [
        (SparseMomentum, {}),
        (
            DynamicSparseReparameterization,
            {"update_every": 2, "initial_threshold": 0.05, "target_pruned_fraction": 0.02},
        ),
    ],
)
def test_resume_gives_the_masks_of_an_uninterrupted_run(tmp_path, method, kwargs):
    reference, ref_group, ref_cb = make_run(method, tmp_path / "whole", **kwargs)
    reference.fit()

    first, _, _ = make_run(method, tmp_path / "killed", extra=[KillAt(9)], **kwargs)  # mid epoch 2
    with pytest.raises(Interrupted):
        first.fit()
    resumed, group, callback = make_run(method, tmp_path / "killed", extra=[KillAt(-1)], **kwargs)
    resumed.fit(resume=True)

    assert all(torch.equal(a, b) for a, b in zip(ref_group.masks(), group.masks()))
    assert all(torch.equal(a, b) for a, b in zip(ref_group.dense_weights(), group.dense_weights()))
    for key in ("mask_flips", "mask_updates", "sparsity"):
        assert resumed.history.column(key) == reference.history.column(key)
    state, ref_state = callback.state_dict(), ref_cb.state_dict()
    assert torch.equal(state["generator"], ref_state["generator"])
    assert sum(reference.history.column("mask_flips")) > 0


def test_state_dict_round_trip_and_mismatched_settings_are_refused():
    group = MaskGroup(TinyNet(), route="masked")
    dsr = DynamicSparseReparameterization(group, 0.8, initial_threshold=0.05)
    dsr.start()
    dsr.update()
    copy = DynamicSparseReparameterization(MaskGroup(TinyNet(), route="masked"), 0.8, initial_threshold=0.05)
    copy.load_state_dict(dsr.state_dict())
    assert copy.started and copy.threshold == dsr.threshold
    assert torch.equal(copy.generator.get_state(), dsr.generator.get_state())
    other = DynamicSparseReparameterization(MaskGroup(TinyNet(), route="masked"), 0.9, initial_threshold=0.05)
    with pytest.raises(ValueError, match="sparsity"):
        other.load_state_dict(dsr.state_dict())
