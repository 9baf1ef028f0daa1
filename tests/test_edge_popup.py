"""Edge-popup (Ramanujan et al. 2020) as Liu et al. 2022 use it: a learned score per weight, top-k of |s| per layer.

The straight-through gradient is checked against the closed form of the authors' code
(IVRL/RobustBinarySubNet, code/arch/conv_type.py: GetSubnet passes the mask's gradient g * w straight
through to |s|, autograd then multiplies by sign(s)) and against a hand-written reference of that code,
on a tiny layer with signed, asymmetric weights and scores, so a lost sign or factor fails.
"""

from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import rewire.methods as methods
from rewire.methods.edge_popup import (
    TopKScores,
    apply_edge_popup,
    binary_weights,
    default_targets,
    fan_in,
    kept_counts,
    score_parameters,
    signed_kaiming_constant,
)
from rewire.sparse.allocation import adaptive_allocation
from rewire.sparse.masks import current_mask, is_sparse, sparsify

pytestmark = pytest.mark.usefixtures("one_thread")

# a 3x4 linear layer: signed, asymmetric weights and scores with distinct |s|
WEIGHT = torch.tensor(
    [
        [0.5, -1.5, 2.0, -0.25],
        [-3.0, 0.75, -0.5, 1.25],
        [1.0, -2.5, 0.3, -0.8],
    ]
)
SCORES = torch.tensor(
    [
        [0.10, -0.90, 0.30, -0.05],
        [-0.70, 0.20, -0.40, 0.60],
        [0.25, -0.35, 0.50, -0.15],
    ]
)
K = 5
# |s| ranks: .90 (0,1) .70 (1,0) .60 (1,3) .50 (2,2) .40 (1,2) | .35 .30 .25 .20 .15 .10 .05
KEPT = torch.tensor(
    [
        [0, 1, 0, 0],
        [1, 0, 1, 1],
        [0, 0, 1, 0],
    ],
    dtype=torch.bool,
)


def popup_linear(weight=WEIGHT, scores=SCORES, k=K, allowed=None) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(weight)
    layer.weight.requires_grad_(False)
    sparsify(layer, selector=TopKScores(k, allowed, scores_init=scores.clone()), route="masked")
    return layer


def selector_of(module: nn.Module, name: str = "weight") -> TopKScores:
    return module.parametrizations[name][0].selector


def small_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16, affine=False),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1, bias=False),
        nn.BatchNorm2d(32, affine=False),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10, bias=False),
    )


class _ReferenceGetSubnet(torch.autograd.Function):
    """Reference of the authors' GetSubnet: sort |s|, zero the n - k smallest, gradient straight through."""

    @staticmethod
    def forward(ctx, abs_scores, k):
        out = torch.ones_like(abs_scores)
        order = abs_scores.flatten().sort().indices
        out.view(-1)[order[: abs_scores.numel() - k]] = 0
        return out

    @staticmethod
    def backward(ctx, grad):
        return grad, None


# ------------------------------------------------------------------ the mask


def test_mask_is_the_top_k_of_absolute_scores():
    layer = popup_linear()
    assert torch.equal(current_mask(layer), KEPT)
    x = torch.randn(2, 4)
    assert torch.allclose(layer(x), x @ (WEIGHT * KEPT).T)
    assert torch.equal(layer.weight, torch.where(KEPT, WEIGHT, 0.0))


def test_exactly_k_even_with_tied_scores():
    scores = torch.tensor([[0.5, -0.5, 0.5, 0.1], [0.5, -0.5, 0.2, 0.5], [0.1, 0.1, -0.5, 0.0]])
    for k in (1, 3, 5, 7, 12):
        layer = popup_linear(scores=scores, k=k)
        assert int(layer.weight.ne(0).sum()) == k
        assert int(current_mask(layer).sum()) == k


def test_mask_follows_the_scores_at_every_forward():
    layer = popup_linear()
    with torch.no_grad():
        selector_of(layer).popup_scores[0, 3] = -5.0  # the smallest |s| becomes the largest
    mask = current_mask(layer, recompute=True)
    assert mask[0, 3] and int(mask.sum()) == K
    assert not mask[1, 2]  # the 5th largest |s| (0.40) drops out
    layer(torch.randn(1, 4))
    assert torch.equal(current_mask(layer), mask)


# ------------------------------------------------------------- the gradient


def test_straight_through_gradient_matches_the_closed_form_and_the_reference():
    x = torch.tensor([[1.0, -2.0, 0.5, 3.0], [-1.5, 0.25, 2.0, -0.5]])
    coefficients = torch.tensor([[1.0, -2.0, 0.5], [-0.75, 1.5, 2.0]])  # loss = Σ c ⊙ y, asymmetric
    layer = popup_linear()
    (layer(x) * coefficients).sum().backward()
    scores_grad = selector_of(layer).popup_scores.grad

    g = coefficients.T @ x  # dL/dW_eff for y = x W_effᵀ
    expected = g * WEIGHT * SCORES.sign()  # through the mask to |s|, then through abs
    assert torch.allclose(scores_grad, expected)
    # every entry receives a gradient, kept or not, and the signs differ from those of g * w where s < 0
    assert bool((scores_grad != 0).all())
    assert not torch.allclose(scores_grad, g * WEIGHT)

    scores = SCORES.clone().requires_grad_(True)
    mask = _ReferenceGetSubnet.apply(scores.abs(), K)
    (F.linear(x, WEIGHT * mask) * coefficients).sum().backward()
    assert torch.allclose(scores_grad, scores.grad)


def test_no_gradient_to_the_frozen_weights_even_if_unfrozen_later():
    layer = popup_linear()
    original = layer.parametrizations.weight.original
    layer(torch.randn(3, 4)).sum().backward()
    assert original.grad is None and not original.requires_grad
    assert selector_of(layer).popup_scores.grad is not None

    # unfreezing the weight gives it the exact gradient of w ⊙ m (route "masked"), and the scores still
    # see w through the detached path: no gradient flows to w through the score path
    original.requires_grad_(True)
    x = torch.randn(3, 4)
    layer(x).sum().backward()
    expected = torch.ones(3, 1) @ x.sum(0, keepdim=True)
    assert torch.allclose(original.grad, torch.where(KEPT, expected, 0.0))


def test_scores_outside_allowed_get_no_gradient_and_are_never_chosen():
    allowed = torch.ones(3, 4, dtype=torch.bool)
    allowed[0, 1] = False  # the largest |s|
    layer = popup_linear(allowed=allowed)
    mask = current_mask(layer)
    assert not mask[0, 1] and int(mask.sum()) == K and bool(mask[2, 1])  # the 6th largest |s| (0.35) moves up
    layer(torch.randn(2, 4)).sum().backward()
    grad = selector_of(layer).popup_scores.grad
    assert grad[0, 1] == 0 and bool((grad[allowed] != 0).all())


def test_an_sgd_step_on_the_scores_pops_an_edge_up():
    layer = popup_linear()
    optimizer = torch.optim.SGD([selector_of(layer).popup_scores], lr=1.0)
    x = torch.zeros(1, 4)
    x[0, 0] = 1.0
    # loss = -y_2: increases |s| of entry (2, 0) (w = 1.0 > 0, s = 0.25 > 0): g * w * sign(s) = -1
    (-layer(x)[0, 2]).backward()
    optimizer.step()
    assert math.isclose(float(selector_of(layer).popup_scores.detach()[2, 0]), 1.25, rel_tol=1e-6)
    mask = current_mask(layer, recompute=True)
    assert mask[2, 0] and int(mask.sum()) == K


# --------------------------------------------------------------- applying


def test_apply_freezes_weights_and_trains_only_scores():
    model = small_net()
    parametrizations = apply_edge_popup(model, keep=0.1, p=0.5, seed=3)
    assert list(parametrizations) == ["0.weight", "3.weight", "8.weight"]
    trainable = [name for name, q in model.named_parameters() if q.requires_grad]
    assert trainable == [f"{i}.parametrizations.weight.0.selector.popup_scores" for i in (0, 3, 8)]
    assert score_parameters(model) == [q for q in model.parameters() if q.requires_grad]
    F.cross_entropy(model(torch.randn(4, 3, 8, 8)), torch.tensor([0, 1, 2, 3])).backward()
    for i in (0, 3, 8):
        assert model[i].parametrizations.weight.original.grad is None
        assert selector_of(model[i]).popup_scores.grad.abs().sum() > 0
    # the weight side's route is "masked": unfrozen, a weight would get the exact gradient of w ⊙ m only
    original = model[8].parametrizations.weight.original.requires_grad_(True)
    model(torch.randn(4, 3, 8, 8)).sum().backward()
    assert bool((original.grad[~current_mask(model[8])] == 0).all())
    assert bool((original.grad[current_mask(model[8])] != 0).any())


def test_apply_keeps_the_allocation_counts_exactly():
    model = small_net()
    sizes = {"0.weight": 432, "3.weight": 4608, "8.weight": 320}
    allocation = adaptive_allocation(sizes, 0.1, 0.5)
    apply_edge_popup(model, keep=0.1, p=0.5)
    assert kept_counts(model) == allocation.kept
    assert sum(allocation.kept.values()) in (allocation.budget - 2, allocation.budget - 1, allocation.budget)

    again = small_net()
    apply_edge_popup(again, keep=allocation, rounding="get_subnet")
    assert kept_counts(again) == allocation.counts("get_subnet")

    per_layer = small_net()
    apply_edge_popup(per_layer, keep={"0.weight": 0.5, "3.weight": 0.01, "8.weight": 0.25})
    assert kept_counts(per_layer) == {"0.weight": 216, "3.weight": 46, "8.weight": 80}


def test_binary_weights_are_exactly_plus_minus_one_and_balanced():
    model = small_net()
    apply_edge_popup(model, keep=0.1, weight_init="binary", seed=7)
    weights = torch.cat([model[i].parametrizations.weight.original.flatten() for i in (0, 3, 8)])
    assert set(weights.unique().tolist()) == {-1.0, 1.0}
    n = weights.numel()
    assert abs(float((weights > 0).float().mean()) - 0.5) < 5 * 0.5 / math.sqrt(n)
    signs = binary_weights(torch.Size([64, 64, 3, 3]), seed=1)
    assert set(signs.unique().tolist()) == {-1.0, 1.0}
    assert abs(float(signs.mean())) < 5 / math.sqrt(signs.numel())


def test_signed_kaiming_constant_magnitude_is_exact():
    model = small_net()
    apply_edge_popup(model, keep=0.1, p=0.5, weight_init="signed_kaiming_constant", seed=2)
    for index, fan in ((0, 27), (3, 144), (8, 32)):
        weight = model[index].parametrizations.weight.original
        assert fan_in(weight) == fan
        magnitude = math.sqrt(2.0) / math.sqrt(fan * 0.1)  # the global keep, not the layer's rate
        assert torch.allclose(weight.abs(), torch.full_like(weight, magnitude), rtol=1e-6, atol=0)
        assert bool((weight > 0).any()) and bool((weight < 0).any())
    assert torch.allclose(
        signed_kaiming_constant(torch.Size([8, 4]), 0.5, seed=0).abs(), torch.full((8, 4), math.sqrt(2 / 2))
    )
    skc = small_net()
    apply_edge_popup(skc, keep=0.1, weight_init="signed_kaiming_constant", skc_keep=0.5)
    assert torch.allclose(skc[8].parametrizations.weight.original.abs(), torch.full((10, 32), math.sqrt(2 / 16)))


def test_score_initialisations():
    model = small_net()
    apply_edge_popup(model, keep=0.1, score_init="uniform", seed=5)
    scores = selector_of(model[3]).popup_scores.detach()
    assert float(scores.abs().max()) <= 0.01 and float(scores.abs().max()) > 0.0095
    assert abs(float(scores.mean())) < 5 * 0.01 / math.sqrt(3 * scores.numel())
    scaled = small_net()
    apply_edge_popup(scaled, keep=0.1, score_init="fan_scaled_uniform", seed=5)
    for index, fan in ((0, 27), (3, 144)):
        bound = 1.0 / math.sqrt(fan)
        values = selector_of(scaled[index]).popup_scores.detach()
        assert float(values.abs().max()) <= bound and float(values.abs().max()) > 0.95 * bound
    custom = small_net()
    apply_edge_popup(custom, keep=0.1, score_init="uniform", score_scale=0.5)
    assert 0.45 < float(selector_of(custom[3]).popup_scores.detach().abs().max()) <= 0.5


def test_seeds_reproduce_and_targets_differ():
    first, second = small_net(), small_net()
    apply_edge_popup(first, keep=0.1, seed=11)
    apply_edge_popup(second, keep=0.1, seed=11)
    for i in (0, 3, 8):
        assert torch.equal(selector_of(first[i]).popup_scores, selector_of(second[i]).popup_scores)
        assert torch.equal(first[i].parametrizations.weight.original, second[i].parametrizations.weight.original)
    third = small_net()
    apply_edge_popup(third, keep=0.1, seed=12)
    assert not torch.equal(selector_of(first[3]).popup_scores, selector_of(third[3]).popup_scores)


def test_state_dict_round_trip_restores_the_mask():
    model = small_net()
    apply_edge_popup(model, keep=0.1, seed=1)
    with torch.no_grad():
        selector_of(model[3]).popup_scores.mul_(-3.0).add_(torch.randn(32, 16, 3, 3))
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    restored = small_net()
    apply_edge_popup(restored, keep=0.1, seed=99)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(current_mask(restored[3], recompute=True), current_mask(model[3], recompute=True))
    x = torch.randn(2, 3, 8, 8)
    model.eval(), restored.eval()
    assert torch.allclose(model(x), restored(x))


def test_default_targets_are_conv_and_linear_weights():
    assert default_targets(small_net()) == ("0.weight", "3.weight", "8.weight")


def test_registered():
    assert "edge_popup" in methods.names()
    assert methods.get("edge_popup").attach is apply_edge_popup


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"keep": 0.1, "weight_init": "kaiming"}, "weight_init"),
        ({"keep": 0.1, "score_init": "normal"}, "scores_init"),
        ({"keep": 0.1, "score_scale": -1.0}, "score_scale"),
        ({"keep": 0.1, "rounding": "round"}, "rounding"),
        ({"keep": 0.0}, "keep"),
        ({"keep": 0.1, "p": 2.0}, "p must"),
        ({"keep": 0.0001}, "'0.weight'"),
        ({"keep": {"0.weight": 0.5}}, "exactly the targets"),
        ({"keep": {"0.weight": 0.5, "3.weight": 1.5, "8.weight": 0.5}}, "3.weight"),
        ({"keep": adaptive_allocation({"0.weight": 432}, 0.5)}, "allocation"),
        ({"keep": 0.1, "targets": ("1.running_mean",)}, "shape"),
        ({"keep": 0.1, "targets": ("9.weight",)}, "not a tensor"),
        ({"keep": 0.1, "skc_keep": 0.0}, "skc_keep"),
        ({"keep": 0.1, "seed": -1}, "seed"),
    ],
)
def test_bad_input_raises_and_leaves_the_model_unchanged(kwargs, message):
    model = small_net()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    with pytest.raises(ValueError, match=message):
        apply_edge_popup(model, **kwargs)
    assert not any(is_sparse(module) for module in model.modules())
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[n], after[n]) for n in before)
    assert all(q.requires_grad for q in model.parameters())


def test_already_sparse_and_bad_selector_input():
    model = small_net()
    apply_edge_popup(model, keep=0.1, targets=("3.weight",))
    with pytest.raises(ValueError, match="already sparse"):
        apply_edge_popup(model, keep=0.1, targets=("3.weight",))
    with pytest.raises(ValueError, match="k must be"):
        popup_linear(k=13)
    with pytest.raises(ValueError, match="initial scores have shape"):
        popup_linear(scores=torch.zeros(4, 3))
    with pytest.raises(ValueError, match="float tensor"):
        TopKScores(2, scores_init=torch.zeros(3, 4, dtype=torch.long))
