"""Theoretical MAC counts (rewire.flops): hand-computed references, dense and sparse.

Convention (see rewire.flops): MACs of conv and linear layers for one input;
sparse MACs = nonzero entries of the effective weight x output positions.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from rewire.models import build_model
from rewire.sparse import masks
from rewire.sparse.flops import count_macs

pytestmark = pytest.mark.usefixtures("one_thread")


def conv_macs(cin: int, cout: int, k: int, side: int) -> int:
    """MACs of a k x k conv producing a side x side map: one MAC per weight per output position."""
    return cin * cout * k * k * side * side


def resnet_macs(depth: int, width: int = 16, classes: int = 10) -> int:
    """CIFAR ResNet (He et al. 2016, Section 4.2): maps 32/16/8, option-B 1x1 shortcuts on shape change."""
    n = (depth - 2) // 6
    total, previous = conv_macs(3, width, 3, 32), width
    for stage, side in enumerate((32, 16, 8)):
        c = width * 2**stage
        for _ in range(n):
            total += conv_macs(previous, c, 3, side) + conv_macs(c, c, 3, side)
            if previous != c:
                total += conv_macs(previous, c, 1, side)
            previous = c
    return total + previous * classes


def wrn_macs(depth: int, k: int, classes: int = 10) -> int:
    """WRN-d-k (Zagoruyko & Komodakis 2016, Table 1): stem 16, stages 16k/32k/64k on maps 32/16/8."""
    n = (depth - 4) // 6
    total, previous = conv_macs(3, 16, 3, 32), 16
    for stage, side in enumerate((32, 16, 8)):
        c = 16 * k * 2**stage
        for _ in range(n):
            total += conv_macs(previous, c, 3, side) + conv_macs(c, c, 3, side)
            if previous != c:
                total += conv_macs(previous, c, 1, side)
            previous = c
    return total + previous * classes


def test_tiny_model_exact():
    # conv 3->4, 3x3, stride 2, pad 1 on 8x8 -> 4x4 output: 4*3*9 weights x 16 positions = 1728.
    # linear 64 -> 5: 320. The batch of 2 is divided out.
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.Flatten(), nn.Linear(64, 5))
    report = count_macs(model, input_shape=(2, 3, 8, 8))
    assert [(r.name, r.kind, r.positions, r.dense_macs) for r in report.layers] == [
        ("0", "conv", 16, 1728),
        ("2", "linear", 1, 320),
    ]
    assert report.dense_macs == report.sparse_macs == 2048
    assert report.numel == report.nonzero == 108 + 320
    assert report.other_ops["bias"] == 4 * 16 + 5  # one add per output element, not a MAC


def test_grouped_conv_exact():
    # groups=2: weight (8, 2, 3, 3) = 144 entries, each used at 6*6 positions.
    model = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1, groups=2, bias=False))
    report = count_macs(model, input_shape=(1, 4, 6, 6))
    assert report.dense_macs == 144 * 36 == 8 * (4 // 2) * 9 * 36


@pytest.mark.parametrize(
    "name, expected", [("resnet20", 40_813_184), ("resnet32", 69_124_736), ("resnet56", 125_747_840)]
)
def test_resnet_macs_exact(name, expected):
    report = count_macs(build_model(name))
    assert report.dense_macs == expected == resnet_macs(int(name[len("resnet") :]))
    assert report.layers[-1].kind == "linear" and report.layers[-1].dense_macs == 64 * 10


def test_resnet20_about_41m():
    # spec part C: "Forward MACs per image: ResNet-20 ~41 M".
    assert round(count_macs(build_model("resnet20")).dense_macs / 1e6) == 41


def test_wrn28_2_macs():
    report = count_macs(build_model("wrn28_2"))
    assert report.dense_macs == 214_353_152 == wrn_macs(28, 2)
    # DPF Figure 3 caption: 216M MACs. Conv + linear alone is 0.8% lower; with BN (2/element),
    # ReLU and pooling counted the ptflops way the total rounds to the paper's number.
    assert abs(report.dense_macs / 216e6 - 1) < 0.01
    assert report.other_ops == {"norm": 950_272, "activation": 475_136, "pool": 8_192, "bias": 10}
    assert round((report.dense_macs + report.other_ops_total) / 1e6) == 216
    # DPF footnote 2: the last FC layer is 0.0006% of the MACs of WRN-28-2.
    assert round(100 * report.layers[-1].dense_macs / 216e6, 4) == 0.0006


@pytest.mark.parametrize("name, paper_millions", [("wrn28_4", 848), ("wrn28_8", 3366)])
def test_wider_wrn_macs(name, paper_millions):
    # DPF Figure 6 caption: WRN-28-4 has 848M MACs, WRN-28-8 has 3366M.
    k = int(name[-1])
    report = count_macs(build_model(name))
    assert report.dense_macs == wrn_macs(28, k)
    assert round((report.dense_macs + report.other_ops_total) / 1e6) == paper_millions


def test_vgg16_macs():
    widths = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    sides = [32, 32, 16, 16, 8, 8, 8, 4, 4, 4, 2, 2, 2]
    previous, expected = 3, 512 * 10
    for c, side in zip(widths, sides):
        expected, previous = expected + conv_macs(previous, c, 3, side), c
    assert count_macs(build_model("vgg16")).dense_macs == expected == 313_201_664


@pytest.mark.parametrize("route", ["masked", "straight_through"])
def test_masked_conv_sparse_macs(route):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)  # 216 weights, 16x16 output on 32x32
    k = 50
    masks.sparsify(conv, selector=masks.FixedRandom(k, seed=0), route=route)
    report = count_macs(nn.Sequential(conv), input_shape=(1, 3, 32, 32))
    row = report.layers[0]
    assert (row.numel, row.nonzero, row.positions) == (216, k, 16 * 16)
    assert row.sparse_macs == k * 16 * 16
    assert row.dense_macs == 216 * 16 * 16


def test_all_convs_sparse_last_fc_dense():
    # DPF's setting: every conv pruned (global magnitude), the last FC dense. Here a per-forward
    # top-k of |w| with half of each conv's weights kept.
    torch.manual_seed(0)
    model = build_model("resnet20", width=4)
    kept = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            kept[name] = module.weight.numel() // 2
            masks.sparsify(module, selector=masks.TopKMagnitude(kept[name]), route="straight_through")
    report = count_macs(model)
    for row in report.layers[:-1]:
        assert row.kind == "conv" and row.nonzero == kept[row.name]
        assert row.sparse_macs == kept[row.name] * row.positions
    fc = report.layers[-1]
    assert fc.kind == "linear" and fc.nonzero == fc.numel == 16 * 10
    assert report.dense_macs == resnet_macs(20, width=4)
    assert report.sparse_macs == sum(r.sparse_macs for r in report.layers)
    assert 0.5 < report.mac_fraction < 0.51  # half of each conv, plus the dense fc


def test_modes_and_statistics_restored():
    model = build_model("resnet20", width=4)
    model.train()
    model.layer2.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_macs(model)
    assert model.training and not model.layer2.training and model.layer3.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN stats untouched


def test_shared_layer_counts_every_call():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4, bias=False)

        def forward(self, x):
            return self.fc(self.fc(x))

    report = count_macs(Twice(), input_shape=(3, 4))
    assert report.layer("fc").dense_macs == 2 * 16


def test_report_table_mentions_totals():
    text = count_macs(build_model("resnet20")).table()
    assert "40,813,184" in text and "fc" in text
