"""Adaptive layer-wise pruning (Liu et al. 2022, Section 3.2 / Appendix A.1): kept_i = c * n_i^p under one budget.

Golden values: the authors' allocation rule (IVRL/RobustBinarySubNet, code/arch/net_utils.py,
set_model_prune_rate) re-run on cResNet34's 37 prunable convolutions at keep = 0.01, and the sparse
MAC ratios those counts give. The layer list is built here from the architecture (CIFAR ResNet-34:
3x3 stem 3->64, BasicBlocks [3, 4, 6, 3] at widths 64/128/256/512 with 1x1 shortcuts where the
shape changes, classifier as a 1x1 conv 512->10, no biases).
"""

from __future__ import annotations

import math

import pytest

from rewire.sparse.allocation import Allocation, adaptive_allocation, floor_count, get_subnet_count, kept_count

KEEP = 0.01


def cresnet34_layers() -> list[tuple[str, int, int]]:
    """(name, weights, output pixels) of cResNet34's prunable convolutions, in module order, on 32x32 inputs."""
    layers = [("conv1", 3 * 64 * 9, 32 * 32)]
    in_planes, side = 64, 32
    for stage, (width, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3)), start=1):
        for block in range(blocks):
            stride = 2 if stage > 1 and block == 0 else 1
            side //= stride
            name = f"layer{stage}.{block}"
            layers.append((f"{name}.conv1", in_planes * width * 9, side * side))
            layers.append((f"{name}.conv2", width * width * 9, side * side))
            if stride != 1 or in_planes != width:
                layers.append((f"{name}.shortcut.0", in_planes * width, side * side))
            in_planes = width
    layers.append(("fc", 512 * 10, 1))
    return layers


LAYERS = cresnet34_layers()
SIZES = {name: size for name, size, _ in LAYERS}
PIXELS = {name: pixels for name, _, pixels in LAYERS}
LAYER1 = [f"layer1.{b}.conv{j}" for b in range(3) for j in (1, 2)]
LAYER4_3X3 = ["layer4.0.conv2", "layer4.1.conv1", "layer4.1.conv2", "layer4.2.conv1", "layer4.2.conv2"]

# p: (stem, every layer1 conv, layer4.2.conv1, fc, sparse MACs / dense in %) from the authors' rule
GOLDEN = {
    0.0: (1728, 5880, 5881, 5120, 4.92),
    0.1: (1728, 4831, 7324, 3965, 4.29),
    0.5: (390, 1805, 14444, 672, 2.22),
    1.0: (17, 368, 23596, 51, 1.00),
}


def test_cresnet34_layer_list():
    assert len(LAYERS) == 37  # stem, 32 3x3 convs, 3 shortcuts, fc
    assert sum(SIZES.values()) == 21_265_088  # the paper's "21265088 trainable parameters" (Appendix D.1)
    assert SIZES["layer1.0.conv1"] == 36_864 and SIZES["layer4.2.conv1"] == 2_359_296
    assert sum(SIZES[n] * PIXELS[n] for n in SIZES) == 1_159_402_496  # dense MACs


@pytest.mark.parametrize("p", sorted(GOLDEN))
def test_cresnet34_golden_counts(p):
    stem, layer1, layer4, fc, mac_percent = GOLDEN[p]
    allocation = adaptive_allocation([(n, s) for n, s, _ in LAYERS], KEEP, p)
    kept = allocation.kept
    assert list(kept) == list(SIZES)  # model order, not the sorted order
    assert kept["conv1"] == stem
    assert [kept[n] for n in LAYER1] == [layer1] * 6
    assert kept["layer4.2.conv1"] == layer4
    # the equal-size layers differ by the floors only; the later ones in the sort get the leftover weights
    assert {kept[n] for n in LAYER4_3X3} <= {layer4 - 1, layer4, layer4 + 1}
    assert kept["fc"] == fc
    assert allocation.budget == 212_650
    assert allocation.total_kept in (212_649, 212_650)
    macs = sum(kept[n] * PIXELS[n] for n in kept) / sum(SIZES[n] * PIXELS[n] for n in SIZES)
    assert round(100 * macs, 2) == mac_percent
    assert all(1 <= kept[n] <= SIZES[n] for n in kept)
    assert all(kept[n] == floor_count(SIZES[n], allocation.rates[n]) for n in kept)


def test_p_one_is_a_fixed_rate_and_p_zero_a_fixed_count():
    fixed_rate = adaptive_allocation(SIZES, KEEP, 1.0)
    # c is recomputed after every floor, so the rates drift (the last, largest layers by ~1e-4 relative)
    assert all(math.isclose(rate, KEEP, rel_tol=1e-3) for rate in fixed_rate.rates.values())
    fixed_count = adaptive_allocation(SIZES, KEEP, 0.0)
    unclipped = [n for n, rate in fixed_count.rates.items() if rate < 1]
    clipped = [n for n, rate in fixed_count.rates.items() if rate == 1]
    assert set(clipped) == {"conv1", "fc"}  # smaller than the common count: they keep everything
    assert max(fixed_count.kept[n] for n in unclipped) - min(fixed_count.kept[n] for n in unclipped) <= 1


def test_clipping_recomputes_the_budget_over_the_other_layers():
    # sizes 10, 1000, 1000 at keep 0.5, p = 0: budget int(1005.0) = 1005, c = 335 > 10, so the small
    # layer keeps all 10; the other two share 995: c = 497.5 -> 497 (floor), then c = 498 -> 498
    allocation = adaptive_allocation({"big": 1000, "small": 10, "big2": 1000}, 0.5, 0.0)
    assert allocation.rates["small"] == 1.0
    assert allocation.kept == {"big": 497, "small": 10, "big2": 498}
    assert allocation.budget == 1005 and allocation.total_kept == 1005


def test_equal_sizes_are_visited_in_the_given_order():
    # 3 layers of 7 at keep 0.5: budget int(10.5) = 10, c = 10/3 -> 3 (rest 7, c = 3.5) -> 3 (rest 4) -> 4
    allocation = adaptive_allocation([("a", 7), ("b", 7), ("c", 7)], 0.5, 0.0)
    assert allocation.kept == {"a": 3, "b": 3, "c": 4}
    reversed_order = adaptive_allocation([("c", 7), ("b", 7), ("a", 7)], 0.5, 0.0)
    assert reversed_order.kept == {"c": 3, "b": 3, "a": 4}


def test_get_subnet_rounding_is_what_the_authors_forward_pass_keeps():
    assert floor_count(1728, 0.01) == 17
    assert get_subnet_count(1728, 0.01) == 18  # int(0.99 * 1728) = 1710 zeroed
    assert get_subnet_count(100, 1.0) == 100
    allocation = adaptive_allocation(SIZES, KEEP, 0.1)
    subnet = allocation.counts("get_subnet")
    assert all(allocation.kept[n] <= subnet[n] <= allocation.kept[n] + 1 for n in SIZES)
    assert allocation.counts("floor") == allocation.kept
    with pytest.raises(ValueError, match="rounding"):
        kept_count(10, 0.5, "round")


def test_keep_one_keeps_everything_up_to_the_authors_float_floors():
    assert adaptive_allocation(SIZES, 1.0, 1.0).kept == SIZES
    # the rule as the authors compute it: a rate of 1 - 1e-16 floors one weight away (reproduced, not fixed)
    allocation = adaptive_allocation(SIZES, 1.0, 0.1)
    assert isinstance(allocation, Allocation)
    assert all(SIZES[n] - 1 <= allocation.kept[n] <= SIZES[n] for n in SIZES)


@pytest.mark.parametrize("keep", [0.0, -0.1, 1.5, True, float("nan"), "0.1"])
def test_keep_out_of_range(keep):
    with pytest.raises(ValueError, match="keep"):
        adaptive_allocation(SIZES, keep, 0.1)


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan"), None])
def test_bad_p(p):
    with pytest.raises(ValueError, match="p must"):
        adaptive_allocation(SIZES, KEEP, p)


def test_a_layer_rounding_to_zero_is_named():
    with pytest.raises(ValueError, match=r"'conv1' \(1728 weights"):
        adaptive_allocation(SIZES, 0.0001, 1.0)  # 0.0001 * 1728 = 0.17 -> 0 kept


def test_empty_and_malformed_layer_lists():
    with pytest.raises(ValueError, match="empty"):
        adaptive_allocation({}, KEEP, 0.1)
    with pytest.raises(ValueError, match="empty"):
        adaptive_allocation([], KEEP, 0.1)
    with pytest.raises(ValueError, match="positive int"):
        adaptive_allocation({"a": 0}, KEEP, 0.1)
    with pytest.raises(ValueError, match="twice"):
        adaptive_allocation([("a", 10), ("a", 10)], 0.5, 0.1)
