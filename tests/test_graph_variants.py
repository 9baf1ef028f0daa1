"""The two variants of the tiny neural graphs (GraphConfig.graph_variant): each model against a reference
written as explicit loops over nodes and edges, and the graphs under bf16 autocast.

The references never use the model's aggregation code or ``allowed_edges()``: they hard-code which entries
of the (dense, signed, asymmetric) adjacency each node reads, so a wrong edge set or a wrong order of
node operation and aggregation changes the output.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rewire.methods import apply_method
from rewire.models import tiny_graphs as graphs
from rewire.models.tiny_graphs import ContinuousTimeGraph, DiscreteTimeGraph, GraphConfig, StaticGraph

# 10 nodes: inputs 0-1, blocks (0,1) (2,3,4) (5,6) (7,8,9); outputs 8-9
TINY = GraphConfig(
    num_nodes=10, input_nodes=2, output_nodes=2, block_sizes=(2, 3, 2, 3), k=15, steps=3, stem_channels=4, num_classes=3
)
BLOCKS = [[0, 1], [2, 3, 4], [5, 6], [7, 8, 9]]
OUTPUTS = [8, 9]

pytestmark = pytest.mark.usefixtures("one_thread")


def images(n=2, size=32, seed=0, dtype=torch.float64):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def build(cls, variant, seed=0, **changes):
    """A float64 model whose adjacency and node parameters are all signed, asymmetric and non-trivial."""
    torch.manual_seed(seed)
    model = cls(TINY.replace(graph_variant=variant, **changes)).double()
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        model.graph.weight.copy_(torch.randn(10, 10, generator=g, dtype=torch.float64))
        model.nodes.norm.weight.copy_(torch.rand(10, generator=g, dtype=torch.float64) + 0.5)
        model.nodes.norm.bias.copy_(torch.randn(10, generator=g, dtype=torch.float64) * 0.5)
    return model


# ------------------------------------------------------------------ per-node reference operations


def norm(model, v, x, relu):
    """Instance norm (affine) of node v's maps x [B, H, W], by hand; then a ReLU when asked."""
    mean = x.mean((1, 2), keepdim=True)
    var = ((x - mean) ** 2).mean((1, 2), keepdim=True)
    y = (x - mean) / torch.sqrt(var + 1e-5) * model.nodes.norm.weight[v] + model.nodes.norm.bias[v]
    return y.clamp(min=0) if relu else y


def conv(model, v, x):
    """Node v's 3x3 single-channel convolution (zero padding 1) of x [B, H, W]."""
    return F.conv2d(x[:, None], model.nodes.conv.weight[v : v + 1], padding=1)[:, 0]


def node_op(model, v, x):
    """The paper's f_v: IN, ReLU, 3x3 conv."""
    return conv(model, v, norm(model, v, x, relu=True))


def aggregate(model, v, states, emitters):
    """I_v = sum over the listed emitters u of w_uv Z_u (graph.weight[v, u])."""
    w = model.graph.weight
    total = 0
    for u in emitters:
        total = total + w[v, u] * states[u]
    return total


def readout(model, outputs, variant):
    """outputs: {v: [B, H, W]} for the output nodes; the authors' readout crops [h-1:h+2] and
    average-pools 2x2 (stride 2), h = H // 2 - 1."""
    maps = torch.stack([outputs[v] for v in OUTPUTS], dim=1)
    if variant == "paper":
        features = maps.mean((2, 3))
    else:
        h = maps.shape[2] // 2 - 1
        features = F.avg_pool2d(maps[:, :, h - 1 : h + 2, h - 1 : h + 2], 2).flatten(1)
    return model.classifier(features)


def stem_maps(model, x):
    s = model.stem(x)
    return {v: s[:, v] for v in range(s.shape[1])}


# ------------------------------------------------------------------------------- static graph


def reference_static(model, x, variant):
    stem = stem_maps(model, x)
    z = {v: node_op(model, v, stem[v]) for v in BLOCKS[0]}
    inputs = {}
    for j, block in enumerate(BLOCKS[1:], start=1):
        earlier = [u for b in BLOCKS[:j] for u in b]
        for v in block:
            if variant == "paper" and j == len(BLOCKS) - 1 and v not in OUTPUTS:
                continue  # a sink: nothing it receives reaches the outputs
            inputs[v] = aggregate(model, v, z, earlier)
        for v in block:
            if v in inputs:
                z[v] = node_op(model, v, inputs[v])
    if variant == "paper":
        return readout(model, {v: z[v] for v in OUTPUTS}, variant)
    # authors' code: the raw inputs plus one more aggregation from the whole last block, no node operation
    outputs = {v: inputs[v] + aggregate(model, v, z, BLOCKS[-1]) for v in OUTPUTS}
    return readout(model, outputs, variant)


def expected_allowed(variant):
    allowed = torch.zeros(10, 10, dtype=torch.bool)
    for j, block in enumerate(BLOCKS[1:], start=1):
        for v in block:
            if variant == "paper" and j == len(BLOCKS) - 1 and v not in OUTPUTS:
                continue
            for u in (u for b in BLOCKS[:j] for u in b):
                allowed[v, u] = True
    if variant == "authors_code":
        for v in OUTPUTS:
            for u in BLOCKS[-1]:
                allowed[v, u] = True
    return allowed


@pytest.mark.parametrize("variant", ["paper", "authors_code"])
@pytest.mark.parametrize("size", [32, 20])  # 8x8 maps (window [2:4]) and 5x5 maps (window [0:2])
def test_static_graph_matches_the_loop_reference(variant, size):
    model = build(StaticGraph, variant)
    x = images(size=size)
    assert torch.allclose(model(x), reference_static(model, x, variant), atol=1e-10)


@pytest.mark.parametrize("variant", ["paper", "authors_code"])
def test_static_allowed_edges_follow_the_variant_and_are_exactly_the_entries_read(variant):
    model = build(StaticGraph, variant)
    assert torch.equal(model.allowed_edges(), expected_allowed(variant))
    model(images()).sum().backward()
    assert torch.equal(model.graph.weight.grad != 0, expected_allowed(variant))
    assert model.usable_entries == int(expected_allowed(variant).sum())
    assert list(model.sink_nodes) == ([7] if variant == "paper" else [])


def test_static_default_sizes_per_variant():
    assert StaticGraph().usable_entries == 189_824
    authors = StaticGraph(GraphConfig(graph_variant="authors_code"))
    # every block feeds every later node, and nodes 700-799 also read the whole last block (spec: 264,960)
    assert authors.usable_entries == 192 * (32 + 224 + 416) + 92 * 608 + 100 * 800 == 264_960
    assert len(authors.sink_nodes) == 0


def test_static_authors_code_with_dnw_keeps_k_allowed_edges():
    model = build(StaticGraph, "authors_code")
    apply_method(model, "dnw", k=TINY.k, allowed=model.allowed_edges(), targets=("graph.weight",))
    model(images()).sum().backward()
    weight = model.graph.weight  # the effective (masked) adjacency
    assert int((weight != 0).sum()) == TINY.k and not ((weight != 0) & ~model.allowed_edges()).any()


# ------------------------------------------------------------------------------ dynamic graphs


def dynamic_update(model, z, variant):
    """One state update over every node; z: {v: [B, H, W]}."""
    everyone = range(10)
    if variant == "paper":  # Z <- dwconv(ReLU(IN(A Z)))
        return {v: node_op(model, v, aggregate(model, v, z, everyone)) for v in everyone}
    emitted = {u: conv(model, u, z[u].clamp(min=0)) for u in everyone}  # s <- IN(A dwconv(ReLU(s)))
    return {v: norm(model, v, aggregate(model, v, emitted, everyone), relu=False) for v in everyone}


def initial_state(model, x):
    stem = stem_maps(model, x)
    zeros = torch.zeros_like(stem[0])
    return {v: stem[v] if v in stem else zeros for v in range(10)}


@pytest.mark.parametrize("variant", ["paper", "authors_code"])
def test_discrete_time_graph_matches_the_loop_reference(variant):
    model = build(DiscreteTimeGraph, variant)
    x = images()
    z = initial_state(model, x)
    for _ in range(TINY.steps):
        z = dynamic_update(model, z, variant)
    assert torch.allclose(model(x), readout(model, {v: z[v] for v in OUTPUTS}, variant), atol=1e-10)


@pytest.mark.parametrize("variant", ["paper", "authors_code"])
def test_continuous_time_graph_matches_an_explicit_euler_loop(variant):
    model = build(ContinuousTimeGraph, variant, solver="euler", step_size=0.25)
    x = images()
    z = initial_state(model, x)
    for _ in range(4):
        dz = dynamic_update(model, z, variant)
        z = {v: z[v] + 0.25 * dz[v] for v in z}
    assert torch.allclose(model(x), readout(model, {v: z[v] for v in OUTPUTS}, variant), atol=1e-10)
    assert model.last_nfe == 4


def test_unknown_variant_is_rejected_with_the_allowed_values():
    with pytest.raises(ValueError, match="graph_variant must be one of paper, authors_code, got 'author'"):
        GraphConfig(graph_variant="author")


def test_authors_code_readout_needs_4x4_maps():
    model = build(StaticGraph, "authors_code")
    with pytest.raises(ValueError, match="at least 4x4"):
        model(images(size=8))  # 2x2 maps


def test_instance_norm_without_relu_matches_pytorch_and_its_gradient_is_exact():
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(3, 6, 4, generator=g, dtype=torch.float64) * 2 + 1).requires_grad_()  # [B, H*W, C]
    weight = torch.randn(4, generator=g, dtype=torch.float64).requires_grad_()
    bias = torch.randn(4, generator=g, dtype=torch.float64).requires_grad_()
    fused = graphs._InstanceNormReLU.apply(x, weight, bias, 1e-5, False)
    nchw = x.permute(0, 2, 1).reshape(3, 4, 2, 3)
    reference = F.instance_norm(nchw, weight=weight, bias=bias, eps=1e-5).reshape(3, 4, 6).permute(0, 2, 1)
    assert torch.allclose(fused, reference, atol=1e-12)
    assert (fused < 0).any()  # no ReLU
    assert torch.autograd.gradcheck(lambda *a: graphs._InstanceNormReLU.apply(*a, 1e-5, False), (x, weight, bias))


# --------------------------------------------------------------------------------- bf16 autocast


def test_instance_norm_relu_in_bf16_computes_in_float32_and_returns_bf16():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 64, 5, generator=g) * 3 + 2
    weight, bias = torch.rand(5, generator=g) + 0.5, torch.randn(5, generator=g)
    for relu in (True, False):
        exact = graphs._InstanceNormReLU.apply(x, weight, bias, 1e-5, relu)
        low = x.bfloat16().requires_grad_()
        out = graphs._InstanceNormReLU.apply(low, weight, bias, 1e-5, relu)
        assert out.dtype == torch.bfloat16
        assert torch.allclose(out.float(), exact, atol=0.05, rtol=0.02)
        out.sum().backward()
        assert low.grad.dtype == torch.bfloat16 and torch.isfinite(low.grad.float()).all()


@pytest.mark.parametrize("variant", ["paper", "authors_code"])
@pytest.mark.parametrize(
    "cls, changes", [(DiscreteTimeGraph, {}), (ContinuousTimeGraph, {"solver": "rk4", "step_size": 0.5})]
)
def test_dynamic_graphs_under_bf16_autocast_follow_float32(variant, cls, changes):
    torch.manual_seed(0)
    model = cls(TINY.replace(graph_variant=variant, **changes))
    apply_method(model, "dnw", k=40, targets=("graph.weight",))
    x = images(n=4, dtype=torch.float32)
    seen = []  # dtypes of the states the dynamics receive
    step = model._step
    model._step = lambda state, *rest: seen.append(state.dtype) or step(state, *rest)
    results = {}
    for low in (False, True):
        model.zero_grad()
        seen.clear()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=low):
            y = model(x)
        assert y.dtype == (torch.bfloat16 if low else torch.float32)
        if cls is ContinuousTimeGraph:  # the solver integrates in float32 under autocast too
            assert set(seen) == {torch.float32}
        else:  # the discrete graph's state stays in the autocast dtype (the stem's output is bf16 already)
            assert set(seen) == {torch.bfloat16 if low else torch.float32}
        y.float().square().sum().backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results[low] = (y.detach().float(), grads)
    (y32, g32), (y16, g16) = results[False], results[True]
    assert (y16 - y32).norm() < 0.02 * y32.norm()
    assert F.cosine_similarity(g16, g32, dim=0) > 0.98
