"""The tiny neural graphs of DNW Table 1 (rewire.graphs): forward passes against independent NCHW
references, the ODE against an explicit Euler integration, the parameter budget, diagnostics,
and the wiring monitor under the Trainer's checkpoints."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rewire.data import BatchLoader
from rewire.methods import apply_method
from rewire.methods.dnw_wiring import (
    WiringMonitor,
    adjacency_image,
    dead_nodes,
    live_edge_mask,
    live_edges,
    swaps,
)
from rewire.models import tiny_graphs as graphs
from rewire.models.tiny_graphs import (
    ContinuousTimeGraph,
    DiscreteTimeGraph,
    GraphConfig,
    StaticGraph,
    count_parameters,
)
from rewire.sparse.masks import current_mask
from rewire.train.trainer import Callback, Trainer, TrainingHparams

# 10 nodes: inputs 0-1, blocks (0,1) (2,3,4) (5,6) (7,8,9); outputs 8-9, so node 7 is a sink of the static graph
TINY = GraphConfig(
    num_nodes=10, input_nodes=2, output_nodes=2, block_sizes=(2, 3, 2, 3), k=15, steps=3, stem_channels=4, num_classes=3
)
BLOCK_OF = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 3, 3])


pytestmark = pytest.mark.usefixtures("one_thread")


def images(n=4, seed=0, size=8):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def build(cls, config=TINY, seed=0):
    torch.manual_seed(seed)
    return cls(config).double()


def node_op_nchw(model, x, nodes):
    """f_v computed independently, in NCHW: InstanceNorm(affine) -> ReLU -> depthwise 3x3."""
    nodes = torch.as_tensor(list(nodes))
    x = F.instance_norm(x, weight=model.nodes.norm.weight[nodes], bias=model.nodes.norm.bias[nodes], eps=1e-5)
    return F.conv2d(F.relu(x), model.nodes.conv.weight[nodes], padding=1, groups=len(nodes))


def mix(adjacency, z):
    """I_v = sum_u w_uv Z_u over every entry (the masked-dense formulation)."""
    return torch.einsum("vu,buhw->bvhw", adjacency, z)


def effective_adjacency(model):
    if hasattr(model.graph, "parametrizations"):
        original = model.graph.parametrizations.weight.original
        return torch.where(current_mask(model.graph, recompute=True), original, 0.0).detach()
    return model.graph.weight.detach()


def readout(model, z):
    return model.classifier(z[:, list(model.output_nodes)].mean((2, 3)))


def reference_static(model, x):
    """Masked dense reference: all N x N entries times the allowed mask, nodes evaluated block by block."""
    a = effective_adjacency(model) * model.allowed_edges()
    s = model.stem(x)
    z = torch.zeros(s.shape[0], model.num_nodes, *s.shape[2:], dtype=s.dtype)
    z[:, : s.shape[1]] = node_op_nchw(model, s, model.input_nodes)
    for block in range(1, int(BLOCK_OF.max()) + 1):
        nodes = (BLOCK_OF == block).nonzero().squeeze(1).tolist()
        z[:, nodes] = node_op_nchw(model, mix(a, z)[:, nodes], nodes)
    return readout(model, z)


def initial_state(model, x):
    s = model.stem(x)
    z = torch.zeros(s.shape[0], model.num_nodes, *s.shape[2:], dtype=s.dtype)
    z[:, : s.shape[1]] = s
    return z


def reference_dynamics(model, a, z):
    return node_op_nchw(model, mix(a, z), range(model.num_nodes))


# ---------------------------------------------------------------------------- structure


def test_static_allowed_edges_are_block_lower_triangular_without_sinks():
    model = StaticGraph(TINY)
    allowed = model.allowed_edges()
    receivers = torch.tensor([v not in model.sink_nodes for v in range(10)])
    expected = (BLOCK_OF[None, :] < BLOCK_OF[:, None]) & receivers[:, None]
    assert torch.equal(allowed, expected)
    assert list(model.sink_nodes) == [7] and list(model.output_nodes) == [8, 9]
    assert model.usable_entries == int(allowed.sum())
    assert torch.equal(DiscreteTimeGraph(TINY).allowed_edges(), torch.ones(10, 10, dtype=torch.bool))
    default = StaticGraph()
    assert default.usable_entries == 192 * (32 + 224 + 416) + 100 * 608 == int(default.allowed_edges().sum())


def test_static_forward_with_block_slices_equals_masked_dense_reference():
    x = images()
    for method in ("dense", "dnw", "rg"):
        model = build(StaticGraph)
        apply_method(model, method, k=TINY.k, allowed=model.allowed_edges(), targets=("graph.weight",))
        assert torch.allclose(model(x), reference_static(model, x), atol=1e-10), method


def test_static_forward_reads_only_usable_entries():
    model = build(StaticGraph)
    model(images()).sum().backward()
    touched = model.graph.weight.grad != 0
    assert torch.equal(touched, model.allowed_edges())


def test_discrete_time_graph_equals_explicit_unrolled_reference():
    x = images()
    model = build(DiscreteTimeGraph)
    apply_method(model, "dnw", k=40, targets=("graph.weight",))
    a = effective_adjacency(model)
    z = initial_state(model, x)
    for _ in range(TINY.steps):
        z = reference_dynamics(model, a, z)
    assert torch.allclose(model(x), readout(model, z), atol=1e-10)


def euler_reference(model, x, steps):
    a = effective_adjacency(model)
    z = initial_state(model, x)
    for _ in range(steps):
        z = z + reference_dynamics(model, a, z) / steps
    return readout(model, z)


# (model seed, random-graph seed): the original graph and graphs whose Euler error constant is larger
# (1, 2 gives 3.4e-4 at h = 1/200) or whose coarse steps are further from the asymptotic regime (7, 8; 10, 11)
@pytest.mark.parametrize("model_seed, graph_seed", [(0, 1), (1, 2), (7, 8), (10, 11)])
def test_continuous_time_graph_agrees_with_explicit_euler_integration(model_seed, graph_seed):
    x = images(n=2)
    accurate = build(ContinuousTimeGraph, TINY.replace(rtol=1e-8, atol=1e-8), seed=model_seed)  # dopri5, ~1e-8
    apply_method(accurate, "rg", k=40, targets=("graph.weight",), seed=graph_seed)
    with torch.no_grad():
        exact = accurate(x)
        euler = {n: euler_reference(accurate, x, n) for n in (100, 200, 400)}
    errors = {n: (y - exact).norm().item() for n, y in euler.items()}
    # Euler is first order: y_h = y + h c + O(h^2), with a constant c that depends on the graph. So,
    # whatever the graph, (1) halving h halves the error (observed order log2(e_h / e_{h/2}) = 1 +- 1/4),
    # which only holds if the explicit loop and the solver integrate the same ODE (otherwise the error
    # would stall at their difference), and (2) the first-order term cancels in Richardson's
    # extrapolation 2 y_{h/2} - y_h, which must be far closer to the solution than y_{h/2} itself.
    for coarse, fine in ((100, 200), (200, 400)):
        order = math.log2(errors[coarse] / errors[fine])
        assert 0.75 < order < 1.25, (coarse, fine, errors)
    extrapolated = (2 * euler[400] - euler[200] - exact).norm().item()
    assert extrapolated < 0.25 * errors[400], (extrapolated, errors)
    assert errors[400] > 1e3 * 1e-8 * exact.norm().item()  # far above dopri5's tolerance: the ratios are Euler's
    # the model's own fixed-step Euler follows exactly the grid of the test's loop
    fixed = build(ContinuousTimeGraph, TINY.replace(solver="euler", step_size=1 / 100), seed=model_seed)
    apply_method(fixed, "rg", k=40, targets=("graph.weight",), seed=graph_seed)
    assert torch.allclose(fixed(x), euler_reference(fixed, x, 100), atol=1e-10)
    assert fixed.last_nfe == 100


def test_continuous_time_adjoint_gradients_follow_backprop_through_the_solver():
    """The adjoint method reconstructs the state backward in time, which is inexact for these
    dynamics (the instance norm of near-zero states around t = 0 has a large gain), so its
    gradients match backprop in direction (cosine > 0.99), not to many digits. The check catches
    missing plumbing: no gradient for the adjacency (through the straight-through estimator), the
    node operations or the stem (through the initial state)."""
    x = images(n=2)
    grads = {}
    for adjoint in (False, True):
        model = build(ContinuousTimeGraph, TINY.replace(solver="rk4", step_size=1 / 16, adjoint=adjoint))
        apply_method(model, "dnw", k=40, targets=("graph.weight",))
        model(x).square().sum().backward()
        grads[adjoint] = {n: p.grad.flatten().clone() for n, p in model.named_parameters()}
    for name, g in grads[False].items():
        if name in ("stem.0.bias", "stem.3.bias", "stem.4.bias", "stem.5.bias"):
            continue  # biases followed by a batch norm: their true gradient is zero
        assert F.cosine_similarity(grads[True][name], g, dim=0) > 0.99, name
    assert grads[True]["graph.parametrizations.weight.original"].abs().sum() > 0


def test_continuous_time_graph_does_not_modify_the_solver_state_in_place():
    model = build(ContinuousTimeGraph, TINY.replace(solver="rk4", step_size=0.25))
    z, spatial = model._initial_state(images(n=2))
    z = z + 0.3 * torch.randn_like(z)
    before = z.clone()
    model._step(z, model.graph.weight, spatial)
    assert torch.equal(z, before)


def test_fused_instance_norm_relu_matches_pytorch_and_its_gradient_is_exact():
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(3, 6, 4, generator=g, dtype=torch.float64) * 2 + 1).requires_grad_()  # [B, H*W, C]
    weight = torch.rand(4, generator=g, dtype=torch.float64).add(0.5).requires_grad_()
    bias = torch.randn(4, generator=g, dtype=torch.float64).requires_grad_()
    fused = graphs._InstanceNormReLU.apply(x, weight, bias, 1e-5)
    nchw = x.permute(0, 2, 1).reshape(3, 4, 2, 3)
    reference = F.relu(F.instance_norm(nchw, weight=weight, bias=bias, eps=1e-5)).reshape(3, 4, 6).permute(0, 2, 1)
    assert torch.allclose(fused, reference, atol=1e-12)
    assert torch.autograd.gradcheck(lambda *a: graphs._InstanceNormReLU.apply(*a, 1e-5), (x, weight, bias))


# ----------------------------------------------------------------------------- budget


def test_parameter_count_matches_the_papers_41k_budget():
    counts = count_parameters(StaticGraph(), k=32_000)
    stem = (3 * 16 * 9 + 16) + 2 * 16 + (16 * 9 + 16) + (16 * 32 + 32) + 2 * 32  # conv, BN, dw conv, 1x1 conv, BN
    classifier = 100 * 10 + 10
    assert stem == 1_248 and classifier == 1_010
    assert counts["budget"] == 32_000 + 800 * 9 + stem + classifier == 41_458
    assert counts["budget_with_norm_affine"] == 41_458 + 2 * 800 == 43_058
    assert counts["stored_adjacency"] == 800 * 800
    assert counts["stored_total"] == 640_000 + 800 * 9 + 2 * 800 + stem + classifier
    assert counts["sink_nodes"] == 92 and counts["usable_adjacency_entries"] == 189_824
    for cls in (DiscreteTimeGraph, ContinuousTimeGraph):
        assert count_parameters(cls())["budget"] == 41_458


def test_graph_config_validates():
    with pytest.raises(ValueError, match="needs step_size"):
        GraphConfig(solver="rk4")
    with pytest.raises(ValueError, match="solver must be one of"):
        GraphConfig(solver="dopri")
    with pytest.raises(ValueError, match="sum to"):
        StaticGraph(TINY.replace(block_sizes=(2, 3, 3)))
    with pytest.raises(ValueError, match="unknown graph kind"):
        graphs.build_graph("cyclic", TINY)


# -------------------------------------------------------------------- training and state


def test_dnw_on_the_static_graph_keeps_k_allowed_edges_and_rewires():
    model = build(StaticGraph)
    allowed = model.allowed_edges()
    apply_method(model, "dnw", k=TINY.k, allowed=allowed, targets=("graph.weight",))
    opt = torch.optim.SGD(model.parameters(), lr=2.0, momentum=0.9)
    seen = []
    for step in range(8):
        loss = F.cross_entropy(model(images(seed=step)), torch.tensor([0, 1, 2, 0]))
        seen.append(current_mask(model.graph))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(int(m.sum()) == TINY.k and not (m & ~allowed).any() for m in seen)
    assert sum(swaps(a, b) for a, b in zip(seen, seen[1:])) > 0


@pytest.mark.parametrize("method", ["dnw", "rg"])
def test_graph_masks_survive_state_dict_through_weights_only_load(method):
    model = build(StaticGraph)
    apply_method(model, method, k=TINY.k, allowed=model.allowed_edges(), targets=("graph.weight",), seed=4)
    with torch.no_grad():
        model.graph.parametrizations.weight.original.mul_(torch.linspace(0.5, 2, 100).reshape(10, 10))
    x = images()
    expected = model(x)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    other = build(StaticGraph, seed=9)
    apply_method(other, method, k=TINY.k, allowed=other.allowed_edges(), targets=("graph.weight",), seed=5)
    other.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(current_mask(other.graph), current_mask(model.graph))
    assert torch.allclose(other(x), expected, atol=1e-12)


# ------------------------------------------------------------------------- diagnostics


def test_diagnostics_on_a_hand_made_graph():
    # 5 nodes, input 0, output 4; edges (u -> v): 0->1, 1->4 (an input-output path), 0->3 (3 leads
    # nowhere), 2->4 (2 has no incoming edge)
    mask = torch.zeros(5, 5, dtype=torch.bool)
    for u, v in [(0, 1), (1, 4), (0, 3), (2, 4)]:
        mask[v, u] = True
    live = live_edge_mask(mask, inputs=[0], outputs=[4])
    assert sorted((u, v) for v, u in live.nonzero().tolist()) == [(0, 1), (1, 4)]
    assert live_edges(mask, inputs=[0], outputs=[4]) == 2
    assert dead_nodes(mask, inputs=[0], outputs=[4]).nonzero().squeeze(1).tolist() == [2, 3]
    # a node that may not receive (per allowed) is not dead for lacking incoming edges
    allowed = torch.ones(5, 5, dtype=torch.bool)
    allowed[2] = False
    assert dead_nodes(mask, inputs=[0], outputs=[4], allowed=allowed).nonzero().squeeze(1).tolist() == [3]
    moved = mask.clone()
    moved[3, 0], moved[3, 1] = False, True  # one edge swapped
    assert swaps(mask, moved) == 1 and swaps(mask, mask) == 0
    image = adjacency_image(mask)
    assert image.dtype == np.uint8 and image.shape == (5, 5) and set(np.unique(image)) == {0, 255}
    assert image[1, 0] == 255 and image[0, 1] == 0  # row = receiver, column = emitter


def test_live_edges_of_a_model_follow_its_mask():
    model = build(StaticGraph)
    assert live_edges(model) == model.usable_entries  # dense: every usable entry is on a path
    apply_method(model, "rg", k=TINY.k, allowed=model.allowed_edges(), targets=("graph.weight",))
    mask = current_mask(model.graph)
    assert live_edges(model) == int(live_edge_mask(mask, model.input_nodes, model.output_nodes).sum()) <= TINY.k


class StopAtStep(Callback):
    """Simulates a killed run."""

    def __init__(self, step=None):
        self.step = step

    def on_batch_end(self, trainer, loss):
        if self.step is not None and trainer.global_step == self.step:
            raise KeyboardInterrupt


def make_trainer(tmp_path, name, kill_at=None):
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat_interleave(8)
    pixels = (torch.randint(0, 200, (24, 3, 8, 8), generator=g) + 20 * labels[:, None, None, None]).to(torch.uint8)
    torch.manual_seed(0)
    model = StaticGraph(TINY)
    apply_method(model, "dnw", k=TINY.k, allowed=model.allowed_edges(), targets=("graph.weight",))
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    train = BatchLoader(
        pixels,
        labels,
        6,
        shuffle=True,
        augment=True,
        mean=mean,
        std=std,
        order_seed=1,
        augmentation_seed=2,
        drop_last=True,
    )
    test = BatchLoader(pixels, labels, 12, shuffle=False, augment=False, mean=mean, std=std)
    hparams = TrainingHparams(epochs=3, lr=2.0, momentum=0.9, weight_decay=1e-4, schedule="constant")
    return Trainer(
        model,
        hparams,
        train,
        test,
        run_dir=tmp_path / name,
        callbacks=[WiringMonitor(), StopAtStep(kill_at)],
        progress=False,
    )


def test_wiring_monitor_records_and_resumes_from_a_weights_only_checkpoint(tmp_path):
    wiring_keys = ("real_edges", "live_edges", "swaps", "dead_nodes")
    uninterrupted = make_trainer(tmp_path, "a").fit()
    records = [{k: r[k] for k in wiring_keys} for r in uninterrupted.records]
    assert all(r["real_edges"] == TINY.k for r in records)
    assert all(0 <= r["live_edges"] <= TINY.k and 0 <= r["dead_nodes"] <= 10 for r in records)
    assert sum(r["swaps"] for r in records) > 0

    with pytest.raises(KeyboardInterrupt):
        make_trainer(tmp_path, "b", kill_at=6).fit()  # 4 steps per epoch: killed during epoch 2
    resumed = make_trainer(tmp_path, "b").fit(resume=True)  # loads checkpoint.pt with weights_only=True
    assert [{k: r[k] for k in wiring_keys} for r in resumed.records] == records
