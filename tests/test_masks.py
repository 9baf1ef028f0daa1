"""The mask mechanism (rewire.masks) and the methods registry (rewire.methods).

The central property (DNW Section 2.2, Figure 3): the gradient flows *to*
hallucinated edges but not *through* them. It is checked against references
computed by hand with autograd on a tiny 6-node graph, in float64.
"""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize

from rewire import methods as rewire_methods
from rewire.methods.dnw import apply_method, known_methods
from rewire.sparse import masks
from rewire.sparse.masks import TopKMagnitude, TopKSelector, current_mask, sparsify, topk_mask, update_masks

N = 6  # nodes of the tiny graph


pytestmark = pytest.mark.usefixtures("one_thread")


class TinyGraph(nn.Module):
    """x -> earlier layer -> node states Z -> I = W Z (the graph) -> tanh -> readout.

    ``weight[v, u]`` is the edge u -> v. ``pre`` stands for everything before the
    graph (the stem), so its gradient is "the gradient reaching earlier parameters".
    """

    def __init__(self) -> None:
        super().__init__()
        self.pre = nn.Linear(3, N)
        self.weight = nn.Parameter(torch.empty(N, N).uniform_(-1, 1))
        self.readout = nn.Linear(N, 2)

    def forward(self, x, weight=None):
        z = torch.tanh(self.pre(x))
        z.retain_grad()
        self.node_states = z  # dL/dZ is read from here after backward
        w = self.weight if weight is None else weight
        return self.readout(torch.tanh(z @ w.t()))


def dag_allowed(n: int = N) -> torch.Tensor:
    return torch.ones(n, n, dtype=torch.bool).tril(-1)  # edges u -> v only for u < v


def make_tiny(seed: int = 0) -> TinyGraph:
    torch.manual_seed(seed)
    return TinyGraph().double()


def batch(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(8, 3, generator=g, dtype=torch.float64), torch.randint(0, 2, (8,), generator=g)


def dense_reference(model: TinyGraph, mask: torch.Tensor):
    """Gradients computed by hand: W_eff = where(mask, W, 0) as a *leaf* (so dL/dW_eff is the full dense
    gradient) and the rest of the network through that constant-mask weight."""
    x, y = batch()
    dense = model.parametrizations.weight.original if parametrize.is_parametrized(model) else model.weight
    w_eff = torch.where(mask, dense.detach(), torch.zeros((), dtype=torch.float64)).requires_grad_(True)
    loss = F.cross_entropy(model(x, weight=w_eff), y)
    grads = torch.autograd.grad(loss, [w_eff, model.node_states, *model.pre.parameters()])
    return grads[0], grads[1:]  # dL/dW_eff, then dL/dZ and the earlier parameters' gradients


def train_grads(model: TinyGraph):
    x, y = batch()
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    original = model.parametrizations.weight.original
    return original.grad.clone(), [model.node_states.grad.clone()] + [p.grad.clone() for p in model.pre.parameters()]


# ------------------------------------------------------------------------------ top-k


def reference_topk(scores: torch.Tensor, k: int, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """Brute force: stable sort by decreasing score, so ties go to the lowest flat index."""
    flat = scores.reshape(-1).clone()
    candidates = torch.arange(flat.numel()) if allowed is None else allowed.reshape(-1).nonzero().squeeze(1)
    order = torch.sort(-flat[candidates], stable=True).indices
    mask = torch.zeros(flat.numel(), dtype=torch.bool)
    mask[candidates[order[:k]]] = True
    return mask.reshape(scores.shape)


@pytest.mark.parametrize("k", [1, 4, 7, 13, 24])
def test_topk_mask_is_exactly_k_with_ties_broken_by_index(k):
    g = torch.Generator().manual_seed(k)
    scores = torch.randint(0, 4, (6, 8), generator=g).float()  # 4 distinct values: many ties
    allowed = torch.rand(6, 8, generator=g) < 0.7
    for a in (None, allowed):
        if a is not None and k > int(a.sum()):
            continue
        mask = topk_mask(scores, k, a)
        assert int(mask.sum()) == k
        assert torch.equal(mask, reference_topk(scores, k, a))
        if a is not None:
            assert not (mask & ~a).any()


def test_topk_mask_ranks_nan_last_and_rejects_impossible_k():
    scores = torch.tensor([0.5, float("nan"), 0.1, 0.9])
    assert topk_mask(scores, 3).tolist() == [True, False, True, True]
    with pytest.raises(ValueError, match=r"k must be in \[1, 4\]"):
        topk_mask(scores, 5)


# -------------------------------------------------------------- gradient *to*, not *through*


def test_dnw_gradient_flows_to_hallucinated_edges_but_not_through_them():
    model = make_tiny()
    allowed = dag_allowed()
    apply_method(model, "dnw", k=5, allowed=allowed)
    mask = current_mask(model, recompute=True)
    assert int(mask.sum()) == 5 and not (mask & ~allowed).any()

    weight_grad, pre_grads = train_grads(model)
    ref_weight_grad, ref_pre_grads = dense_reference(model, mask)

    hallucinated = allowed & ~mask
    # to: every allowed entry, hallucinated ones included, gets the full dense dL/dW_eff ...
    assert torch.allclose(weight_grad[allowed], ref_weight_grad[allowed], atol=1e-12)
    assert weight_grad[hallucinated].abs().sum() > 0  # ... which is not zero there
    # ... and entries outside the allowed set get nothing
    assert torch.all(weight_grad[~allowed] == 0)
    # not through: node states and earlier parameters see only the real edges (W * mask as a constant mask)
    for got, want in zip(pre_grads, ref_pre_grads):
        assert torch.allclose(got, want, atol=1e-12)
    # (the test has teeth: using every allowed edge would give another gradient upstream)
    _, all_edges_pre_grads = dense_reference(model, allowed)
    assert not torch.allclose(pre_grads[0], all_edges_pre_grads[0], atol=1e-6)  # dL/dZ
    assert not torch.allclose(pre_grads[1], all_edges_pre_grads[1], atol=1e-6)  # the earlier layer's weight


def test_no_update_route_gives_hallucinated_edges_exactly_zero_gradient():
    model = make_tiny()
    allowed = dag_allowed()
    apply_method(model, "dnw_no_update", k=5, allowed=allowed)
    mask = current_mask(model, recompute=True)
    weight_grad, pre_grads = train_grads(model)
    ref_weight_grad, ref_pre_grads = dense_reference(model, mask)
    assert torch.all(weight_grad[~mask] == 0)
    assert torch.allclose(weight_grad[mask], ref_weight_grad[mask], atol=1e-12)
    for got, want in zip(pre_grads, ref_pre_grads):
        assert torch.allclose(got, want, atol=1e-12)


def test_routes_are_nan_safe():
    weight = torch.tensor([1.0, float("inf"), float("nan"), 2.0], requires_grad=True)
    mask = torch.tensor([True, False, False, True])
    allowed = torch.tensor([True, True, False, True])
    for route in (masks.straight_through, masks.masked):
        out = route(weight, mask, allowed)
        assert out.tolist() == [1.0, 0.0, 0.0, 2.0]  # w * mask would give nan for inf * 0 and nan * 0
        (grad,) = torch.autograd.grad(out, weight, torch.tensor([1.0, float("nan"), float("nan"), 3.0]))
        expected = [1.0, float("nan"), 0.0, 3.0] if route is masks.straight_through else [1.0, 0.0, 0.0, 3.0]
        assert torch.equal(torch.nan_to_num(grad, nan=-7.0), torch.nan_to_num(torch.tensor(expected), nan=-7.0))


# ------------------------------------------------------------------------ training


def sgd_steps(model, steps=4, lr=0.5):
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    seen = []
    for step in range(steps):
        x, y = batch(seed=10 + step)
        loss = F.cross_entropy(model(x), y)
        seen.append(current_mask(model))  # the mask of this forward pass
        opt.zero_grad()
        loss.backward()
        opt.step()
    return seen


def test_exactly_k_allowed_real_edges_at_every_step_even_with_ties():
    model = make_tiny()
    with torch.no_grad():  # weights on a coarse grid: many |w| ties
        model.weight.copy_(torch.randint(-2, 3, (N, N)).double() / 4)
    allowed = dag_allowed()
    apply_method(model, "dnw", k=7, allowed=allowed)
    seen = sgd_steps(model)
    for mask in seen:
        assert int(mask.sum()) == 7
        assert not (mask & ~allowed).any()
    assert any(not torch.equal(a, b) for a, b in zip(seen, seen[1:]))  # DNW rewires


def test_random_graph_mask_is_fixed_during_training_and_through_a_checkpoint():
    model = make_tiny()
    allowed = dag_allowed()
    apply_method(model, "rg", k=6, allowed=allowed, seed=3)
    first = current_mask(model)
    seen = sgd_steps(model)
    assert all(torch.equal(m, first) for m in seen)
    assert update_masks(model) == 1 and torch.equal(current_mask(model), first)  # re-choosing reproduces it

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    other = make_tiny(seed=5)
    apply_method(other, "rg", k=6, allowed=allowed, seed=99)  # another graph until the state is loaded
    assert not torch.equal(current_mask(other), first)
    other.load_state_dict(state)
    assert torch.equal(current_mask(other), first)
    x, _ = batch()
    assert torch.equal(other(x), model(x))
    assert torch.equal(current_mask(other), first)


def test_random_graph_is_seeded_and_uniform_over_allowed_entries():
    allowed = dag_allowed(40)
    draws = []
    for seed in range(3):
        layer = nn.Linear(40, 40)
        apply_method(layer, "rg", k=100, allowed=allowed, seed=seed)
        draws.append(current_mask(layer))
    again = nn.Linear(40, 40)
    apply_method(again, "rg", k=100, allowed=allowed, seed=0)
    assert torch.equal(draws[0], again.parametrizations.weight[0].mask)
    assert not torch.equal(draws[0], draws[1])
    assert all(not (d & ~allowed).any() and int(d.sum()) == 100 for d in draws)


def test_hallucinated_edge_pushed_above_a_real_edge_swaps_in_only_with_the_update_rule():
    x = torch.tensor([[0.0, 1.0]])  # only input 1 is active: dL/dw[0, 1] = -1, dL/dw[0, 0] = 0
    results = {}
    for method in ("dnw", "dnw_no_update"):
        layer = nn.Linear(2, 1, bias=False)
        with torch.no_grad():
            layer.weight.copy_(torch.tensor([[0.5, 0.4]]))  # real: entry 0; hallucinated: entry 1
        apply_method(layer, method, k=1)
        assert current_mask(layer).tolist() == [[True, False]]
        opt = torch.optim.SGD(layer.parameters(), lr=0.5)
        loss = -layer(x).sum()
        loss.backward()
        opt.step()
        layer(x)  # the next forward pass re-chooses the edges
        results[method] = current_mask(layer).tolist()
    assert results["dnw"] == [[False, True]]  # 0.4 + 0.5 = 0.9 > 0.5: swapped in
    assert results["dnw_no_update"] == [[True, False]]  # no gradient to the hallucinated edge


# ------------------------------------------------------------------- state and helpers


def test_dnw_masks_and_outputs_survive_state_dict_through_weights_only_load():
    model = make_tiny()
    apply_method(model, "dnw", k=8, allowed=dag_allowed())
    sgd_steps(model, steps=2)
    x, _ = batch()
    expected = model(x)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    other = make_tiny(seed=7)
    apply_method(other, "dnw", k=8, allowed=dag_allowed())
    other.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(current_mask(other), current_mask(model))
    assert torch.equal(other(x), expected)
    assert "weight.parametrizations.weight.0.mask" not in other.state_dict()
    assert "parametrizations.weight.0.mask" in other.state_dict()


def test_helpers_sparse_modules_remove_and_errors():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    apply_method(model, "dnw", k=3, targets=("0.weight", "2.weight"))
    found = [(name, type(p).__name__) for name, _, p in masks.sparse_modules(model)]
    assert found == [("0.weight", "SparseWeight"), ("2.weight", "SparseWeight")]
    assert masks.is_sparse(model[0]) and masks.is_sparse(model[0], "weight") and not masks.is_sparse(model[1])
    with pytest.raises(ValueError, match="already sparse"):
        sparsify(model[0], selector=TopKMagnitude(2))

    dense = model[2].parametrizations.weight.original.detach().clone()
    mask = current_mask(model[2], recompute=True)
    masks.remove(model[2], leave_sparse=True)
    assert not parametrize.is_parametrized(model[2])
    assert torch.equal(model[2].weight.detach(), torch.where(mask, dense, 0.0))
    masks.remove(model[0], leave_sparse=False)
    assert not parametrize.is_parametrized(model[0]) and int((model[0].weight != 0).sum()) == 16
    with pytest.raises(ValueError, match="not sparse"):
        current_mask(model[0])


def test_apply_method_errors_are_helpful():
    with pytest.raises(ValueError, match=r"unknown method 'dwn'; known methods: dense, dnw, dnw_no_update, rg"):
        apply_method(nn.Linear(3, 3), "dwn", k=2)
    for k in (0, 10, 7):
        with pytest.raises(ValueError, match=r"k must be in \[1, 6\]"):
            apply_method(nn.Linear(3, 3), "dnw", k=k, allowed=dag_allowed(3) | torch.eye(3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"k must be in \[1, 9\]"):
        apply_method(nn.Linear(3, 3), "rg", k=10)
    with pytest.raises(ValueError, match="needs the number of real edges k"):
        apply_method(nn.Linear(3, 3), "rg")
    with pytest.raises(ValueError, match="is not a tensor"):
        apply_method(nn.Linear(3, 3), "dnw", k=2, targets=("graph.weight",))
    with pytest.raises(ValueError, match="allowed for 'weight' has shape"):
        apply_method(nn.Linear(3, 3), "dnw", k=2, allowed=dag_allowed(4))
    layer = nn.Linear(3, 3)
    assert apply_method(layer, "dense") == {} and not masks.is_sparse(layer)
    assert known_methods() == ["dense", "dnw", "dnw_no_update", "rg"]
    assert set(rewire_methods.names(family="dnw")) == {"dense", "dnw", "dnw_no_update", "rg"}


# -------------------------------------------------- the base class fits the later selectors


class HeldMagnitude(TopKSelector):
    """DPF-style: magnitude top-k, held between explicit updates."""

    recompute_every_forward = False

    def scores(self, weight):
        return weight.detach().abs()


class _ScoreSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores, mask):
        return mask.to(scores.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class LearnedScores(TopKSelector):
    """Edge-popup-style: top-k of learned scores (an nn.Parameter inside the selector)."""

    def __init__(self, k, shape):
        super().__init__(k)
        self.score = nn.Parameter(torch.rand(shape))

    def scores(self, weight):
        return self.score.detach().abs()

    def effective(self, weight, mask, route):
        return route(weight, mask, self.allowed) * _ScoreSTE.apply(self.score, mask)


def test_held_selector_keeps_its_mask_until_told_to_update():
    layer = nn.Linear(4, 4)
    sparsify(layer, selector=HeldMagnitude(5), route="masked")
    before = current_mask(layer)
    with torch.no_grad():
        original = layer.parametrizations.weight.original
        original.copy_(torch.arange(16.0).reshape(4, 4))  # the top-5 by magnitude is now the last 5 entries
    layer(torch.randn(2, 4))
    assert torch.equal(current_mask(layer), before)
    assert update_masks(layer) == 1
    assert current_mask(layer).reshape(-1).tolist() == [False] * 11 + [True] * 5


def test_a_learned_score_selector_fits_the_mechanism():
    layer = nn.Linear(4, 4)
    selector = LearnedScores(6, (4, 4))
    sparsify(layer, selector=selector, route="masked")
    assert any(p is selector.score for p in layer.parameters())  # the optimizer will see the scores
    layer(torch.randn(3, 4)).sum().backward()
    assert selector.score.grad is not None and selector.score.grad.abs().sum() > 0
