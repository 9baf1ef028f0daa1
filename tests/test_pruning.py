"""Pruning rules over groups of tensors (rewire.pruning), mask statistics and the cubic schedule."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.utils.prune as torch_prune

from rewire.sparse import stats as mask_stats
from rewire.sparse.groups import MaskGroup, PruningRule, check_sparsity, conv_weight_targets, pruned_count, snip_scores
from rewire.sparse.masks import AssignedMask, SparseWeight, sparse_modules, update_masks
from rewire.sparse.schedules import cubic_sparsity


def tiny_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=True),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 12, 1, bias=False),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(12, 5),
    )


def convs(model):
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize("sparsity", [0.1, 0.5, 0.9, 0.97])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_global_magnitude_matches_torch_global_unstructured(sparsity, seed):
    reference = tiny_net(seed)
    torch_prune.global_unstructured(
        [(c, "weight") for c in convs(reference)], torch_prune.L1Unstructured, amount=sparsity
    )
    expected = [c.weight_mask.bool() for c in convs(reference)]
    ours = PruningRule("weight", "global").masks([c.weight for c in convs(tiny_net(seed))], sparsity)
    for a, b in zip(ours, expected):
        assert torch.equal(a, b)


@pytest.mark.parametrize("sparsity", [0.2, 0.5, 0.95])
def test_layerwise_magnitude_matches_torch_l1_unstructured(sparsity):
    reference = tiny_net(3)
    for c in convs(reference):
        torch_prune.l1_unstructured(c, "weight", amount=sparsity)
    ours = PruningRule("weight", "layer").masks([c.weight for c in convs(tiny_net(3))], sparsity)
    for a, c in zip(ours, convs(reference)):
        assert torch.equal(a, c.weight_mask.bool())


def test_layerwise_filter_norm_matches_torch_ln_structured():
    reference = tiny_net(4)
    for c in convs(reference):
        torch_prune.ln_structured(c, "weight", amount=0.25, n=2, dim=0)
    ours = PruningRule("filter", "layer").masks([c.weight for c in convs(tiny_net(4))], 0.25)
    for a, c in zip(ours, convs(reference)):
        assert torch.equal(a, c.weight_mask.bool())


@pytest.mark.parametrize("sparsity", [0.3, 0.9, 0.99])
def test_reached_sparsity_is_exactly_the_target(sparsity):
    weights = [c.weight for c in convs(tiny_net())]
    total = sum(w.numel() for w in weights)
    masks = PruningRule("weight", "global").masks(weights, sparsity)
    assert sum(int((~m).sum()) for m in masks) == pruned_count(total, sparsity) == round(sparsity * total)
    assert mask_stats.reached_sparsity(masks) == pytest.approx(round(sparsity * total) / total, abs=0)


def test_exact_count_with_ties():
    weights = [torch.ones(4, 2, 1, 1), torch.ones(3, 2, 1, 1)]  # every magnitude tied
    masks = PruningRule("weight", "global").masks(weights, 0.5)
    assert sum(int(m.sum()) for m in masks) == 14 - 7


def test_structured_masks_zero_whole_filters_with_one_global_threshold():
    model = tiny_net(5)
    weights = [c.weight for c in convs(model)]
    masks = PruningRule("filter", "global").masks(weights, 0.4)
    filters = sum(w.shape[0] for w in weights)
    pruned_filters = 0
    norms_kept, norms_pruned = [], []
    for w, m in zip(weights, masks):
        per_filter = m.reshape(m.shape[0], -1)
        assert bool((per_filter.all(dim=1) | (~per_filter).any(dim=1) & ~per_filter.any(dim=1)).all())  # all or nothing
        kept = per_filter.all(dim=1)
        pruned_filters += int((~kept).sum())
        norm = w.detach().reshape(w.shape[0], -1).norm(dim=1)
        norms_kept += norm[kept].tolist()
        norms_pruned += norm[~kept].tolist()
    assert pruned_filters == round(0.4 * filters)
    assert max(norms_pruned) <= min(norms_kept)  # one global threshold
    assert mask_stats.filter_sparsity(masks) == pytest.approx(pruned_filters / filters)


def test_group_prunes_convs_only_biases_bn_and_linear_stay_dense():
    model = tiny_net()
    group = MaskGroup(model)
    assert group.names == conv_weight_targets(model) == ["0.weight", "3.weight", "6.weight"]
    group.apply(PruningRule(), 0.5)
    sparse = {name for name, _, _ in sparse_modules(model)}
    assert sparse == {"0.weight", "3.weight", "6.weight"}
    assert model[0].bias.count_nonzero() == model[0].bias.numel()
    for dense in (model[1], model[4], model[9]):  # batch-norm and the last linear layer
        assert not any(isinstance(p, SparseWeight) for p in dense.modules())
    x = torch.randn(4, 3, 8, 8)
    nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 3])).backward()
    assert model[9].weight.grad.count_nonzero() == model[9].weight.numel()


def test_assigned_masks_are_left_alone_by_update_masks_and_validated():
    model = tiny_net()
    group = MaskGroup(model)
    masks = group.apply(PruningRule(), 0.5)
    with torch.no_grad():
        for w in group.dense_weights():
            w.mul_(-3.0).add_(1.0)  # would change a magnitude mask
    assert update_masks(model) == 0
    assert all(torch.equal(a, b) for a, b in zip(group.masks(), masks))
    with pytest.raises(ValueError, match="bool with shape"):
        group.parametrizations[0].assign_mask(torch.ones(3, dtype=torch.bool))
    assert isinstance(group.parametrizations[0].selector, AssignedMask)


def test_zero_pruned_clears_weights_and_momentum():
    model = tiny_net()
    group = MaskGroup(model, route="masked")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    optimizer.step()
    group.apply(PruningRule(), 0.7)
    group.zero_pruned(optimizer)
    for w, m in zip(group.dense_weights(), group.masks()):
        assert w[~m].abs().sum() == 0
        assert optimizer.state[w]["momentum_buffer"][~m].abs().sum() == 0


@pytest.mark.parametrize("bad", [1.0, 1.5, -0.1, float("nan"), "0.9", True])
def test_impossible_sparsity_is_refused_with_advice(bad):
    with pytest.raises(ValueError, match="sparsity must be"):
        check_sparsity(bad)
    with pytest.raises(ValueError, match="sparsity must be"):
        PruningRule().masks([torch.randn(4, 4)], bad)


def test_unknown_rule_options_are_refused():
    with pytest.raises(ValueError, match="granularity"):
        PruningRule("channel", "global")
    with pytest.raises(ValueError, match="scope"):
        PruningRule("weight", "network")


def test_snip_scores_are_gradient_times_weight_at_initialisation():
    model = tiny_net(6)
    reference = tiny_net(6)
    group = MaskGroup(model)
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    scores = snip_scores(model, group, x, y)
    nn.functional.cross_entropy(reference(x), y).backward()
    for s, c in zip(scores, convs(reference)):
        torch.testing.assert_close(s, (c.weight.grad * c.weight).abs())
    group.apply(PruningRule(), 0.5)
    with pytest.raises(ValueError, match="initialisation"):
        snip_scores(model, group, x, y)


# ------------------------------------------------------------------ statistics


def test_delta_iou_flips_and_convergence_on_hand_examples():
    w = [torch.tensor([3.0, -4.0, 0.0, 1.0])]
    m = [torch.tensor([True, True, False, False])]
    assert mask_stats.pruning_error(w, m) == pytest.approx(1.0 / 26.0)  # ||w - m⊙w||² / ||w||²
    a = [torch.tensor([True, True, False, False])]
    b = [torch.tensor([True, False, True, False])]
    assert mask_stats.mask_iou(a, b) == pytest.approx(1 / 3)
    assert mask_stats.mask_flips(a, b) == 2
    last = [torch.tensor([0, 1, 3, 2], dtype=torch.int32)]
    assert mask_stats.still_changing_after(last, 4) == [0.75, 0.5, 0.25, 0.0]
    assert mask_stats.layer_sparsities(["x"], m) == {"x": 0.5}


# ------------------------------------------------------------------ schedule


def test_cubic_sparsity_endpoints_and_midpoints():
    kwargs = dict(final=0.9, end=150.0, start=0.0)
    assert cubic_sparsity(0.0, **kwargs) == 0.0
    assert cubic_sparsity(150.0, **kwargs) == 0.9
    assert cubic_sparsity(280.0, **kwargs) == 0.9
    assert cubic_sparsity(75.0, **kwargs) == pytest.approx(0.9 * (1 - 0.5**3))  # s_f + (0 - s_f)(1 - 1/2)^3
    assert cubic_sparsity(50.0, **kwargs) == pytest.approx(0.9 - 0.9 * (2 / 3) ** 3)
    with_initial = cubic_sparsity(5.0, final=0.8, end=10.0, start=0.0, initial=0.2)
    assert with_initial == pytest.approx(0.8 + (0.2 - 0.8) * 0.5**3)


def test_cubic_sparsity_steps_once_per_frequency():
    kwargs = dict(final=0.9, end=4.0, frequency=1.0)
    assert cubic_sparsity(0.99, **kwargs) == 0.0
    assert cubic_sparsity(1.0, **kwargs) == cubic_sparsity(1.7, **kwargs) == pytest.approx(0.9 * (1 - 0.75**3))
    assert math.isclose(cubic_sparsity(3.5, **kwargs), 0.9 * (1 - 0.25**3))
    with pytest.raises(ValueError, match="end > start"):
        cubic_sparsity(1.0, final=0.9, end=0.0)
