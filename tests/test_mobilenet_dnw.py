"""MobileNetV1-DNW (DNW Section 2.4, Tables 3-4): edge budgets, feed-forward entries, the block-sliced forward
against a per-node loop, the paper's parameter/multiply-add counts, the compact inference model, and where the
gradient goes under DNW and the no-update ablation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from rewire.methods import apply_method
from rewire.methods.dnw_profile import compact, mobilenet_v1_cost, profile_graph
from rewire.models.mobilenet_dnw import (
    STAGES,
    GraphStage,
    MobileNetV1DNW,
    StageSpec,
    edge_budgets,
    mobilenet_v1,
    mobilenet_v1_dnw,
)
from rewire.sparse import masks
from rewire.sparse.flops import count_macs

# a quick model for gradient and precision checks: 2 resolutions, a hidden block in the second
TINY_STAGES = (StageSpec(4, 6, 1, 1), StageSpec(6, 8, 2, 3))


def sparsify(model: MobileNetV1DNW, method: str, width_mult: float, seed: int = 0) -> None:
    """Apply ``method`` to every stage (and a Small classifier) with its own budget; stage i seeded seed + i."""
    for budget in edge_budgets(model, width_mult):
        apply_method(
            model, method, k=budget.k, allowed=budget.allowed, targets=(budget.target,), seed=seed + budget.index
        )


def randomize_norms(model: torch.nn.Module, seed: int = 0) -> None:
    """Signed affine parameters and non-trivial running statistics, so eval-mode norms are not identities."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(torch.randn(n, generator=generator))
                module.bias.copy_(torch.randn(n, generator=generator))
                module.running_mean.copy_(torch.randn(n, generator=generator))
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)


# ------------------------------------------------------------------------------------------ edge budgets


def test_edge_budgets_of_x0_225_are_the_authors_per_stage_counts():
    model = mobilenet_v1_dnw(num_classes=1000, stem_stride=2, small=True)
    budgets = edge_budgets(model, 0.225)
    assert [b.target for b in budgets] == [f"stages.{i}.graph.weight" for i in range(5)] + ["classifier.weight"]
    assert [b.k for b in budgets[:5]] == [104, 1_245, 4_977, 72_991, 79_627]
    assert sum(b.k for b in budgets[:5]) == 158_944
    assert budgets[5].k == 230_400 and budgets[5].allowed is None  # 0.225 * 1024 * 1000: MobileNetV1 x0.225's FC
    assert len(edge_budgets(mobilenet_v1_dnw(1000, stem_stride=2), 0.225)) == 5  # no classifier budget without Small


def test_feed_forward_entries_per_stage_follow_the_block_structure():
    model = mobilenet_v1_dnw(num_classes=1000, stem_stride=2)
    # receiver block j takes the inputs and the j earlier hidden blocks: sum_j oup * (inp + j * oup)
    by_hand = [
        64 * 32,  # (32, 64, 1 block)
        128 * 64 + 128 * (64 + 128),  # (64, 128, 2 blocks)
        256 * 128 + 256 * (128 + 256),  # (128, 256, 2 blocks)
        sum(512 * (256 + j * 512) for j in range(6)),  # (256, 512, 6 blocks)
        1024 * 512 + 1024 * (512 + 1024),  # (512, 1024, 2 blocks)
    ]
    assert by_hand == [2_048, 32_768, 131_072, 4_718_592, 2_097_152]
    allowed = model.allowed_edges()
    shapes = [(64, 32), (256, 192), (512, 384), (3072, 2816), (2048, 1536)]  # [b * oup, inp + (b - 1) * oup]
    for i, mask in enumerate(allowed.values()):
        assert tuple(mask.shape) == shapes[i]
        assert int(mask.sum()) == by_hand[i] == STAGES[i].feed_forward_entries
    fractions = [round(100 * int(m.sum()) / m.numel(), 1) for m in allowed.values()]
    assert fractions == [100.0, 66.7, 66.7, 54.5, 66.7]


def test_allowed_entries_of_a_small_stage_entry_by_entry():
    stage = GraphStage(3, [2, 4, 2], stride=1)  # rows: blocks 0-1, 2-5, 6-7; columns: inputs 0-2, hidden 3-4, 5-8
    allowed = stage.allowed_edges()
    columns_open = {0: 3, 1: 3, 2: 5, 3: 5, 4: 5, 5: 5, 6: 9, 7: 9}  # row -> number of columns it may read
    for row in range(8):
        for column in range(9):
            assert bool(allowed[row, column]) == (column < columns_open[row]), (row, column)


@pytest.mark.parametrize("width", [1.01, 0.0, -0.2, True])
def test_impossible_width_multipliers_are_refused_with_the_valid_range(width):
    model = mobilenet_v1_dnw(num_classes=10)
    with pytest.raises(ValueError) as error:
        edge_budgets(model, width)
    if width == 1.01:  # stage 0 has 2,048 entries, all feed-forward: ceil(1.0201 * 2048) = 2,090 > 2,048
        assert "stage 0 (stages.0.graph.weight) k=2090" in str(error.value)
        assert "(0, 1.0000]" in str(error.value)
    else:
        assert "positive number" in str(error.value)
    assert not any(masks.is_sparse(m) for m in model.modules())


# ------------------------------------------------------------------------------------------------ forward


def node_operation(x, gamma, beta, eps, kernel, stride):
    """One node's f_v on its map x [B, H, W]: BN with the batch's statistics (training mode), ReLU, 3x3 conv."""
    mean = x.mean()
    var = ((x - mean) ** 2).mean()  # biased, as batch norm normalises
    y = torch.relu((x - mean) / torch.sqrt(var + eps) * gamma + beta)
    return F.conv2d(y[:, None], kernel[None, None], stride=stride, padding=1)[:, 0]


def reference_stage(stage, x, adjacency):
    """Node by node: Z of every input and hidden node, I_v = sum over the allowed u of w[v, u] Z_u."""
    inputs, sizes = stage.input_nodes, stage.block_sizes
    norm, conv = stage.input_norm, stage.input_conv
    emitted = [  # column order: inputs, then hidden blocks
        node_operation(x[:, u], norm.weight[u], norm.bias[u], norm.eps, conv.weight[u, 0], stage.stride)
        for u in range(inputs)
    ]
    pre = []
    for j, size in enumerate(sizes):
        first_row, columns = sum(sizes[:j]), inputs + sum(sizes[:j])  # block j reads inputs + earlier hidden blocks
        pre += [sum(adjacency[first_row + c, u] * emitted[u] for u in range(columns)) for c in range(size)]
        if j < len(sizes) - 1:
            norm, conv = stage.hidden_norms[j], stage.hidden_convs[j]
            emitted += [
                node_operation(pre[first_row + c], norm.weight[c], norm.bias[c], norm.eps, conv.weight[c, 0], 1)
                for c in range(size)
            ]
    return torch.stack(pre[-sizes[-1] :], 1)


@pytest.mark.parametrize("sparse", [False, True])
def test_stage_forward_equals_a_node_by_node_loop(sparse):
    torch.manual_seed(0)
    stage = GraphStage(3, [4, 3, 5], stride=2).double()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        # asymmetric, signed weights; large values off the feed-forward entries, which must never be read
        weight = torch.randn(12, 10, generator=generator, dtype=torch.float64) + 0.3
        weight[~stage.allowed_edges()] = 1e6
        stage.graph.weight.copy_(weight)
        for module in stage.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.copy_(torch.randn(module.num_features, generator=generator) + 1)
                module.bias.copy_(torch.randn(module.num_features, generator=generator))
    if sparse:
        apply_method(stage, "rg", k=20, allowed=stage.allowed_edges(), targets=("graph.weight",))
    effective = stage.graph.weight.detach() * stage.allowed_edges()
    x = torch.randn(2, 3, 7, 6, generator=generator, dtype=torch.float64) - 0.2
    out = stage(x)
    assert out.shape == (2, 5, 4, 3)  # stride 2 at the input nodes: 7x6 -> 4x3
    torch.testing.assert_close(out, reference_stage(stage, x, effective), rtol=1e-10, atol=1e-10)


def final_map_size(model, images):
    sizes = []
    handle = model.final_norm.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[1:])))
    with torch.no_grad():
        logits = model.eval()(images)
    handle.remove()
    return logits.shape, sizes[0]


def test_output_shapes_on_cifar_and_imagenet_inputs():
    torch.manual_seed(0)
    cifar = mobilenet_v1_dnw(num_classes=10, stem_stride=1)
    assert final_map_size(cifar, torch.randn(2, 3, 32, 32)) == ((2, 10), (1024, 2, 2))  # 32 -> 32/16/8/4/2
    imagenet = mobilenet_v1_dnw(num_classes=1000, stem_stride=2)
    assert final_map_size(imagenet, torch.randn(1, 3, 224, 224)) == ((1, 1000), (1024, 7, 7))  # 112/56/28/14/7
    dense = mobilenet_v1(width_mult=0.25, num_classes=10, stem_stride=1)
    assert dense(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_bf16_autocast_forward_follows_float32():
    torch.manual_seed(0)
    model = MobileNetV1DNW(5, stem_stride=1, stages=TINY_STAGES).eval()
    randomize_norms(model)
    images = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        reference = model(images)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(images)
    torch.testing.assert_close(low.float(), reference, rtol=0.05, atol=0.05 * reference.abs().max().item())


# ----------------------------------------------------------------------------------------------- gradients


def test_hallucinated_edges_get_the_gradient_under_dnw_and_none_under_no_update():
    grads = {}
    for method in ("dnw", "dnw_no_update"):
        torch.manual_seed(0)
        model = MobileNetV1DNW(5, stem_stride=1, stages=TINY_STAGES)
        stage = model.stages[1]
        allowed = stage.allowed_edges()
        apply_method(model, method, k=120, allowed=allowed, targets=("stages.1.graph.weight",))  # of 336 entries
        images = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
        F.cross_entropy(model(images), torch.tensor([0, 1, 2, 3])).backward()
        mask = masks.current_mask(stage.graph)
        grad = stage.graph.parametrizations.weight.original.grad
        grads[method] = grad
        assert int(mask.sum()) == 120 and not (mask & ~allowed).any()
        assert (grad[~allowed] == 0).all()  # never an entry outside the feed-forward ones
        assert (grad[mask] != 0).sum() > 0.9 * 120  # real edges learn (a few lead into nodes that emit nothing)
        hallucinated = allowed & ~mask
        if method == "dnw":  # Algorithm 1 line 10: every candidate edge gets <Z_u, dL/dI_v>
            # <Z_u, dL/dI_v> vanishes only when v emits nothing or u has no input (Z_u = dwconv(ReLU(beta = 0)));
            # from the input nodes (columns 0-5) to the output nodes (rows 16-23) it never does
            assert (grad[hallucinated] != 0).sum() > 0.75 * hallucinated.sum()
            assert (grad[16:, :6][hallucinated[16:, :6]] != 0).all()
        else:
            assert (grad[hallucinated] == 0).all()
    # same weights, same edges: the real edges' gradients agree between the two routes
    mask = grads["dnw_no_update"] != 0
    torch.testing.assert_close(grads["dnw"][mask], grads["dnw_no_update"][mask])


# ------------------------------------------------------------------------------------------------ counting


def test_dense_mobilenet_v1_x0_25_count_by_hand():
    # 224 px, stem stride 2: 3x3 conv 3 -> 8 at 112; then (c_in, c_out, output size) of the 13 layers at x0.25
    layers = [(8, 16, 112), (16, 32, 56), (32, 32, 56), (32, 64, 28), (64, 64, 28), (64, 128, 14)]
    layers += [(128, 128, 14)] * 5 + [(128, 256, 7), (256, 256, 7)]
    macs = 9 * 3 * 8 * 112**2 + sum((9 * cin + cin * cout) * s * s for cin, cout, s in layers) + 256 * 1000
    params = 9 * 3 * 8 + sum(9 * cin + cin * cout for cin, cout, _ in layers) + 256 * 1000 + 1000
    assert (macs, params) == (41_030_272, 464_600)  # Table 3: "MobileNetV1 (x0.25) 0.5M 41M"
    cost = mobilenet_v1_cost(0.25, image_size=224, num_classes=1000, stem_stride=2)
    assert (cost.macs, cost.params) == (macs, params)
    model = mobilenet_v1(width_mult=0.25, num_classes=1000, stem_stride=2)
    assert count_macs(model, (1, 3, 224, 224)).dense_macs == macs
    weights = sum(p.numel() for n, p in model.named_parameters() if p.dim() > 1 or n.startswith("classifier"))
    assert weights == params


def test_profile_of_a_hand_made_graph():
    """Stem 3 -> 2 (8 px, stride 2 -> 4 px), stage 0: 2 -> 3 (1 block, stride 1, 4 px), stage 1: 3 -> 3
    (2 blocks of 3, stride 2, 2 px), 5 classes; masks set by hand."""
    model = MobileNetV1DNW(5, stem_stride=2, stages=(StageSpec(2, 3, 1, 1), StageSpec(3, 3, 2, 2)))
    stage0 = torch.zeros(3, 2, dtype=torch.bool)
    stage0[[0, 1, 2], 0] = True  # input 1 emits nothing: dead, its stem channel too
    stage1 = torch.zeros(6, 6, dtype=torch.bool)  # rows: hidden 0-2, outputs 3-5; columns: inputs 0-2, hidden 3-5
    stage1[1, 1] = True  # input 1 -> hidden 1 (inputs 0 and 2 dead)
    stage1[3, 3] = True  # hidden 0 (no incoming edge, but it emits: live, deadness is local) -> output 0
    stage1[4, 4] = True  # hidden 1 -> output 1; hidden 2 emits nothing (dead), output 2 receives nothing
    for stage, mask in zip(model.stages, (stage0, stage1)):
        masks.sparsify(stage.graph, selector=masks.AssignedMask(), route="masked").assign_mask(mask)
    p = profile_graph(model, image_size=8)
    assert [s.resolution for s in p.stages] == [4, 2] and [s.nodes for s in p.stages] == [2, 6]
    assert [s.live_nodes for s in p.stages] == [1, 3] and p.stem_live_channels == 1 and p.final_live_outputs == 2
    stem = 3 * 9 * 16 * 1
    stage0_macs = 3 * 16 + 9 * 16 * 1  # 3 edges, 1 live node at 4x4
    stage1_macs = 3 * 4 + 9 * 4 * 3  # 3 edges, 3 live nodes at 2x2
    pool, classifier = 4 * 2, 2 * 5  # 2 fed outputs at 2x2; 2 fed outputs x 5 classes
    assert p.macs == stem + stage0_macs + stage1_macs + pool + classifier == 762
    assert p.macs_without_pool == 762 - 8
    assert p.params == (3 + 3) + 9 * (1 + 3) + 27 * 1 + (2 * 5 + 5) == 84


def random_graph_cost(width_mult, seed):
    torch.manual_seed(seed)
    model = mobilenet_v1_dnw(num_classes=1000, stem_stride=2)
    sparsify(model, "rg", width_mult, seed=seed)
    return profile_graph(model, image_size=224)


def test_random_graph_costs_match_table_3():
    """Table 3: MobileNetV1-RG x0.225 1.2M params, 55.7M FLOPs; RG "x0.49" 1.8M, 170M (the authors' configuration
    sets prune rate 0.49, i.e. d = 0.51); d = 0.49 itself gives about 159M.

    With every node live, x0.225 costs 56.62M; random graphs lose mostly stage-0 input nodes (104 edges among
    32 x 64 entries leave an input without an outgoing edge with probability ~0.037), each worth 27 + 9
    multiply-adds at 112 x 112 = 0.45M. Over seeds 0-7 we measured 55.69-56.62M (mean 56.26M; 0-2 dead inputs),
    so we allow 2% (the all-live count is 1.65% above 55.7M). At d = 0.49 and 0.51 no node died in 8 seeds
    (169.63M and 158.84M every time): 1%."""
    p = random_graph_cost(0.225, seed=0)
    assert p.real_edges == 158_944
    assert math.isclose(p.macs, 55.7e6, rel_tol=0.02), p.macs
    assert round(p.params / 1e5) == 12, p.params  # "1.2M"
    dead_inputs = 32 - p.stem_live_channels
    all_live = 27_318_823 + 17_385_984 + 10_838_016 + 1_024_000 + 50_176  # edges, depthwise, stem, FC, pool
    assert (
        p.macs
        == all_live
        - dead_inputs * (27 + 9) * 112** 2
        - 9
        * sum(  # dead hidden nodes of later stages
            s.resolution**2 * (s.nodes - s.live_nodes) for s in p.stages[1:]
        )
    )
    wide = random_graph_cost(0.51, seed=0)
    assert math.isclose(wide.macs, 170e6, rel_tol=0.01), wide.macs
    narrow = random_graph_cost(0.49, seed=0)
    assert math.isclose(narrow.macs, 159e6, rel_tol=0.01), narrow.macs
    # "1.8M" params: d = 0.49 rounds to it (1.82M); d = 0.51 has 1.89M, i.e. 1.8M only when truncated
    assert round(narrow.params / 1e5) == 18 and 1.8e6 <= wide.params < 1.9e6, (narrow.params, wide.params)


# ------------------------------------------------------------------------------------------------- compact


def test_compact_model_equals_the_masked_model_in_eval_mode():
    torch.manual_seed(0)
    model = mobilenet_v1_dnw(num_classes=10, stem_stride=1)
    sparsify(model, "rg", 0.06, seed=3)  # sparse enough for dead inputs, hidden nodes and unfed final outputs
    randomize_norms(model)
    model.eval()
    light = compact(model)
    p = profile_graph(model, image_size=32)
    assert light.stem.out_channels == p.stem_live_channels < 32
    assert light.final_norm.num_features == p.final_live_outputs < 1024
    for stage, cost in zip(light.stages, p.stages):
        assert stage.input_nodes + sum(stage.block_sizes[:-1]) == cost.live_nodes < cost.nodes
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model(images)
        torch.testing.assert_close(light(images), expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
    # what runs in the compact model is what the counter counts (the GEMMs over edges are not modules)
    assert count_macs(light, (1, 3, 32, 32)).dense_macs == p.stem_macs + p.depthwise_macs + p.classifier_macs


def test_compact_small_model_folds_unfed_outputs_through_a_sparse_classifier():
    torch.manual_seed(0)
    model = MobileNetV1DNW(7, stem_stride=1, small=True, stages=TINY_STAGES).double()
    sparsify(model, "rg", 0.4, seed=0)  # k = 4 of 24 (stage 0), 29 of 336 (stage 1), 23 of 56 (classifier)
    randomize_norms(model)
    model.eval()
    p = profile_graph(model, image_size=8)
    assert p.stem_live_channels < 4 and p.final_live_outputs < 8 and p.classifier_macs == 23
    light = compact(model)
    assert light.final_norm.num_features == p.final_live_outputs
    images = torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(light(images), model(images), rtol=1e-10, atol=1e-10)
