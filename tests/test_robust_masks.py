"""Masks of a pruned network, Liu et al. 2022 Section 4.3 and Figures 3, 5 (rewire.experiments.robust_binary.masks).

Hand-built asymmetric masks whose grid cells, empty channels and overlaps are written out below;
a small edge-popup cResNet-18 for the model-level functions; the figures are drawn with Agg.
"""

from __future__ import annotations

import math

import matplotlib
import pytest
import torch

from rewire.experiments.robust_binary import masks as rm
from rewire.methods.edge_popup import apply_edge_popup, default_targets, kept_counts
from rewire.models.resnet_robust import cresnet18, cresnet50
from rewire.sparse.allocation import adaptive_allocation

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

# (o, c, i, j) kept in a (2, 3, 3, 3) mask, and where each lands in the grid and in the transposed grid
KEPT = [(0, 0, 0, 0), (0, 2, 1, 2), (1, 1, 2, 0), (1, 2, 0, 1)]
GRID_CELLS = [(0, 0), (1, 8), (5, 3), (3, 7)]  # (o*3 + i, c*3 + j)
TRANSPOSED_CELLS = [(0, 0), (8, 1), (3, 5), (7, 3)]  # (c*3 + j, o*3 + i)


def _mask(shape, kept) -> torch.Tensor:
    mask = torch.zeros(shape, dtype=torch.bool)
    for index in kept:
        mask[index] = True
    return mask


def _cells(shape, cells) -> torch.Tensor:
    grid = torch.zeros(shape, dtype=torch.bool)
    for r, c in cells:
        grid[r, c] = True
    return grid


@pytest.fixture(scope="module")
def small_resnet():
    model = cresnet18(widths=[4, 8, 8, 8])
    apply_edge_popup(model, keep=0.1, p=0.5, seed=3)
    return model


# ------------------------------------------------------------------------ kernel_grid


def test_kernel_grid_places_each_kept_weight_in_its_cell():
    mask = _mask((2, 3, 3, 3), KEPT)
    grid = rm.kernel_grid(mask)
    assert grid.dtype == torch.bool and grid.shape == (6, 9)
    assert torch.equal(grid, _cells((6, 9), GRID_CELLS))
    # 0/1 float masks give the same grid
    assert torch.equal(rm.kernel_grid(mask.float()), grid)


def test_kernel_grid_transpose_convention():
    mask = _mask((2, 3, 3, 3), KEPT)
    grid_t = rm.kernel_grid(mask, transpose=True)
    assert grid_t.shape == (9, 6)  # (r_in * 3, r_out * 3)
    assert torch.equal(grid_t, _cells((9, 6), TRANSPOSED_CELLS))
    assert torch.equal(grid_t, rm.kernel_grid(mask).T)


def test_kernel_grid_non_square_kernel():
    # (r_out, r_in, kh, kw) = (2, 3, 1, 2): grid[o, c*2 + j]; transposed grid[c*2 + j, o]
    mask = _mask((2, 3, 1, 2), [(0, 2, 0, 1), (1, 0, 0, 0)])
    assert torch.equal(rm.kernel_grid(mask), _cells((2, 6), [(0, 5), (1, 0)]))
    assert torch.equal(rm.kernel_grid(mask, transpose=True), _cells((6, 2), [(5, 0), (0, 1)]))


@pytest.mark.parametrize("shape", [(6, 9), (2, 3, 9), (1, 2, 3, 3, 1)])
def test_kernel_grid_refuses_non_4d(shape):
    with pytest.raises(ValueError, match="r_out, r_in, kh, kw"):
        rm.kernel_grid(torch.ones(shape, dtype=torch.bool))


def test_kernel_grid_refuses_non_binary():
    with pytest.raises(ValueError, match="0 or 1"):
        rm.kernel_grid(torch.full((2, 3, 3, 3), 0.5))


# ---------------------------------------------------------------------- empty_channels


def test_empty_channels_asymmetric():
    # 4 outputs, 5 inputs; kept: (0,1), (0,3), (2,1), (3,4) -> output 1 empty, inputs 0 and 2 empty
    mask = _mask((4, 5, 3, 3), [(0, 1, 0, 2), (0, 3, 1, 1), (2, 1, 2, 2), (3, 4, 0, 0)])
    empty_out, empty_in = rm.empty_channels(mask)
    assert empty_out.tolist() == [False, True, False, False]
    assert empty_in.tolist() == [True, False, True, False, False]
    # a linear mask (out, in) works the same way
    out_l, in_l = rm.empty_channels(_mask((3, 2), [(0, 1), (2, 1)]))
    assert out_l.tolist() == [False, True, False] and in_l.tolist() == [True, False]
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        rm.empty_channels(torch.ones(5, dtype=torch.bool))


# ---------------------------------------------------------------------- random_mask_like


def test_random_mask_like_exact_count_and_determinism():
    mask = _mask((4, 5, 3, 3), [(0, 1, 0, 2), (0, 3, 1, 1), (2, 1, 2, 2), (3, 4, 0, 0), (3, 4, 0, 1)])
    first = rm.random_mask_like(mask, torch.Generator().manual_seed(7))
    again = rm.random_mask_like(mask, torch.Generator().manual_seed(7))
    other = rm.random_mask_like(mask, torch.Generator().manual_seed(8))
    assert first.dtype == torch.bool and first.shape == mask.shape
    assert int(first.sum()) == 5 == int(other.sum())
    assert torch.equal(first, again)
    assert not torch.equal(first, mask)
    assert not torch.equal(first, other)
    # the extremes
    assert not rm.random_mask_like(torch.zeros(2, 3, 3, 3)).any()
    assert rm.random_mask_like(torch.ones(2, 3, 3, 3)).all()


def test_random_mask_like_is_uniform_over_positions():
    # exact-count law: every position is kept with probability k/n (5/54 here)
    mask = _mask((2, 3, 3, 3), KEPT + [(1, 0, 1, 1)])
    generator = torch.Generator().manual_seed(0)
    draws = 2000
    frequency = torch.stack([rm.random_mask_like(mask, generator) for _ in range(draws)]).float().mean(0)
    assert (frequency - 5 / 54).abs().max() < 0.03  # 4.6 standard errors
    assert float(frequency.sum()) == pytest.approx(5.0)


# ---------------------------------------------------------------------- channel_alignment


def _aligned_pair() -> tuple[torch.Tensor, torch.Tensor]:
    """C = 5 channels between the layers; layer 1 outputs {0, 2} empty; layer 2 inputs {0, 2, 3} empty."""
    mask1 = _mask((5, 2, 3, 3), [(1, 0, 0, 0), (3, 1, 2, 2), (4, 0, 1, 1), (4, 1, 0, 2)])
    mask2 = _mask((3, 5, 3, 3), [(0, 1, 0, 0), (2, 4, 1, 2), (1, 4, 2, 0)])
    return mask1, mask2


def test_channel_alignment_counts():
    result = rm.channel_alignment(*_aligned_pair(), generator=torch.Generator().manual_seed(0), samples=5)
    assert result.channels == 5
    assert (result.empty_out1, result.empty_in2, result.overlap) == (2, 3, 2)
    assert result.empty_out1_channels == (0, 2)
    assert result.empty_in2_channels == (0, 2, 3)
    assert result.expected_overlap == pytest.approx(2 * 3 / 5)
    assert result.enrichment == pytest.approx(2 / 1.2)
    assert result.samples == 5
    assert 0 <= result.random_overlap <= min(result.random_empty_out1, result.random_empty_in2) <= 5


def test_channel_alignment_random_baseline_matches_the_exact_count_law():
    # layer 1: 90 weights, 9 kept, 18 per output channel: E[empty outputs] = 5 C(72, 9) / C(90, 9)
    # layer 2: 135 weights, 3 kept, 27 per input channel: E[empty inputs] = 5 C(108, 3) / C(135, 3)
    mask1, mask2 = torch.zeros(5, 2, 3, 3, dtype=torch.bool), torch.zeros(3, 5, 3, 3, dtype=torch.bool)
    mask1.view(-1)[:9] = True
    mask2.view(-1)[-3:] = True
    samples = 400
    result = rm.channel_alignment(mask1, mask2, generator=torch.Generator().manual_seed(1), samples=samples)
    expect_a = 5 * math.comb(72, 9) / math.comb(90, 9)
    expect_b = 5 * math.comb(108, 3) / math.comb(135, 3)
    assert result.random_empty_out1 == pytest.approx(expect_a, abs=0.15)
    assert result.random_empty_in2 == pytest.approx(expect_b, abs=0.15)
    # independent random masks: the overlap is a*b/C on average
    assert result.random_overlap == pytest.approx(expect_a * expect_b / 5, abs=0.15)
    # deterministic under the generator
    again = rm.channel_alignment(mask1, mask2, generator=torch.Generator().manual_seed(1), samples=samples)
    assert again == result


def test_channel_alignment_refuses_non_consecutive_layers():
    mask1, mask2 = _aligned_pair()
    with pytest.raises(ValueError, match="not consecutive"):
        rm.channel_alignment(mask2, mask1)  # 3 outputs, 2 inputs
    with pytest.raises(ValueError, match="not consecutive"):
        rm.channel_alignment(mask1, torch.ones(3, 4, 3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="samples"):
        rm.channel_alignment(mask1, mask2, samples=0)


# ---------------------------------------------------------------------- model-level


def test_block_conv_pairs_resnet18(small_resnet):
    pairs = rm.block_conv_pairs(small_resnet)
    assert len(pairs) == 8  # one per BasicBlock, [2, 2, 2, 2]
    masks = rm.layer_masks(small_resnet)
    for name1, name2 in pairs:
        block1, _, tail1 = name1.rpartition(".conv1.")
        block2, _, tail2 = name2.rpartition(".conv2.")
        assert block1 == block2 and tail1 == tail2 == "weight"
        assert masks[name1].shape[0] == masks[name2].shape[1]
    assert pairs[0] == ("layer1.0.conv1.weight", "layer1.0.conv2.weight")
    assert pairs[-1] == ("layer4.1.conv1.weight", "layer4.1.conv2.weight")
    assert all("shortcut" not in a + b for a, b in pairs)


def test_block_conv_pairs_only_sparse_tensors():
    assert rm.block_conv_pairs(cresnet18(widths=[4, 8, 8, 8])) == []  # dense: no sparse pair
    model = cresnet18(widths=[4, 8, 8, 8])
    targets = [t for t in default_targets(model) if t != "layer2.0.conv2.weight"]
    apply_edge_popup(model, keep=0.2, seed=0, targets=targets)
    pairs = rm.block_conv_pairs(model)
    assert len(pairs) == 7 and ("layer2.0.conv1.weight", "layer2.0.conv2.weight") not in pairs


def test_block_conv_pairs_bottleneck_has_two_pairs_per_block():
    model = cresnet50(widths=[2, 2, 2, 2])
    apply_edge_popup(model, keep=0.5, seed=0)
    pairs = rm.block_conv_pairs(model)
    assert len(pairs) == 2 * 16
    assert pairs[:2] == [
        ("layer1.0.conv1.weight", "layer1.0.conv2.weight"),
        ("layer1.0.conv2.weight", "layer1.0.conv3.weight"),
    ]


def test_kept_fractions(small_resnet):
    rows = rm.kept_fractions(small_resnet)
    counts = kept_counts(small_resnet)
    assert [row["name"] for row in rows] == list(counts)  # model order
    assert [row["index"] for row in rows] == list(range(len(counts)))
    assert sum(row["kept"] for row in rows) == sum(counts.values())
    for row in rows:
        assert row["kept"] == counts[row["name"]]
        assert row["size"] == math.prod(row["shape"])
        assert row["fraction"] == row["kept"] / row["size"]
    # beside the allocation's plan: an edge-popup network keeps exactly the planned counts
    allocation = adaptive_allocation({row["name"]: row["size"] for row in rows}, 0.1, 0.5)
    planned = rm.kept_fractions(small_resnet, planned=allocation.counts("floor"))
    assert all(row["planned"] == row["kept"] for row in planned)
    assert len({row["fraction"] for row in rows}) > 1  # p = 0.5: the rates differ between layers


# ---------------------------------------------------------------------- figures


def test_plot_layer_mask():
    mask = _mask((4, 5, 3, 3), [(0, 1, 0, 2), (0, 3, 1, 1), (2, 1, 2, 2), (3, 4, 0, 0)])
    fig = rm.plot_layer_mask(mask, title="hand-made")
    try:
        assert len(fig.axes) == 2  # grid + top bar
        grid_ax, bar_ax = fig.axes
        image = grid_ax.images[0].get_array()
        assert image.shape == (12, 15)
        assert image[0 * 3 + 0, 1 * 3 + 2] == 2  # a kept weight is blue
        assert (image[:, 0:3] == 1).all() and (image[:, 6:9] == 1).all()  # empty inputs 0, 2 are orange
        assert image[1, 4] == 0  # pruned, in a non-empty channel: white
        assert bar_ax.images[0].get_array().tolist() == [[0, 1, 0, 1, 1]]  # white = empty input channel
        assert "hand-made" in bar_ax.get_title()
    finally:
        plt.close(fig)
    fig, ax = plt.subplots()
    try:
        assert rm.plot_layer_mask(mask, ax=ax) is fig and len(fig.axes) == 2
    finally:
        plt.close(fig)
    with pytest.raises(ValueError):
        rm.plot_layer_mask(torch.ones(4, 5, dtype=torch.bool))


def test_plot_consecutive_masks():
    mask1, mask2 = _aligned_pair()
    fig = rm.plot_consecutive_masks(mask1, mask2, titles=("conv1", "conv2"))
    try:
        assert len(fig.axes) == 4  # two grids, two side bars
        left, right = fig.axes[0], fig.axes[1]
        assert left.images[0].get_array().shape == (15, 6)  # (C * 3, r_in1 * 3)
        assert right.images[0].get_array().shape == (15, 9)  # (C * 3, r_out2 * 3): layer 2 transposed
        bars = [ax.images[0].get_array().ravel().tolist() for ax in fig.axes[2:]]
        assert bars == [[0, 1, 0, 1, 1], [0, 1, 0, 0, 1]]  # layer 1 outputs, layer 2 inputs (white = empty)
        assert "2 of 5 channels" in fig.get_suptitle()
    finally:
        plt.close(fig)
    generator = torch.Generator().manual_seed(0)
    random_pair = (rm.random_mask_like(mask1, generator), rm.random_mask_like(mask2, generator))
    fig = rm.plot_consecutive_masks(mask1, mask2, random_pair=random_pair)
    try:
        assert len(fig.axes) == 8
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="not consecutive"):
        rm.plot_consecutive_masks(mask2, mask1)
    with pytest.raises(ValueError, match="random_pair"):
        rm.plot_consecutive_masks(mask1, mask2, random_pair=(mask2, mask1))
