"""The dense CIFAR models of DPF (rewire.models): shapes, exact parameter counts, the factory.

Parameter counts are checked against closed-form sums over the layers of each
architecture (He et al. 2016 Section 4.2 with option-B shortcuts; Zagoruyko &
Komodakis 2016 Table 1; VGG config D), and against the paper-level figures
(DPF Figure 3: WRN-28-2 has 1.47M parameters).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from rewire.models import CifarResNet, WideResNet, build_model, known_models

pytestmark = pytest.mark.usefixtures("one_thread")


def conv(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k


def bn(c: int) -> int:
    return 2 * c  # weight and bias


def linear(cin: int, cout: int) -> int:
    return cin * cout + cout


def resnet_params(depth: int, width: int = 16, classes: int = 10) -> int:
    """Stem conv-BN, 3 stages of n basic blocks (conv-BN x 2, 1x1 conv-BN shortcut on shape change), fc."""
    n = (depth - 2) // 6
    total, previous = conv(3, width, 3) + bn(width), width
    for stage in range(3):
        c = width * 2**stage
        for _ in range(n):
            total += conv(previous, c, 3) + bn(c) + conv(c, c, 3) + bn(c)
            if previous != c:
                total += conv(previous, c, 1) + bn(c)
            previous = c
    return total + linear(previous, classes)


def wrn_params(depth: int, k: int, classes: int = 10) -> int:
    """Stem conv, 3 stages of N pre-activation blocks (BN-conv-BN-conv, 1x1 conv shortcut), BN, fc."""
    n = (depth - 4) // 6
    total, previous = conv(3, 16, 3), 16
    for stage in range(3):
        c = 16 * k * 2**stage
        for _ in range(n):
            total += bn(previous) + conv(previous, c, 3) + bn(c) + conv(c, c, 3)
            if previous != c:
                total += conv(previous, c, 1)
            previous = c
    return total + bn(previous) + linear(previous, classes)


def vgg16_params(classes: int = 10) -> int:
    widths = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    total, previous = 0, 3
    for c in widths:
        total += conv(previous, c, 3) + bn(c)  # no conv bias: BN follows
        previous = c
    return total + linear(512, classes)


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "name, expected",
    [
        ("resnet20", 272_474),
        ("resnet32", 466_906),
        ("resnet56", 855_770),
        ("wrn28_2", 1_467_610),
        ("wrn28_4", 5_849_050),
        ("vgg16", 14_724_042),
    ],
)
def test_exact_parameter_counts(name, expected):
    model = build_model(name)
    assert count(model) == expected
    if name.startswith("resnet"):
        assert expected == resnet_params(int(name[len("resnet") :]))
    elif name.startswith("wrn"):
        assert expected == wrn_params(28, int(name[-1]))
    else:
        assert expected == vgg16_params()


def test_wrn28_8_parameter_count():
    assert count(build_model("wrn28_8")) == 23_354_842 == wrn_params(28, 8)


def test_paper_level_parameter_counts():
    # DPF Figure 3 caption: WRN-28-2 "has 1.47M parameters"; He et al. 2016 Table 6: ResNet-20 0.27M.
    assert abs(count(build_model("wrn28_2")) / 1e6 - 1.47) < 0.005
    assert abs(count(build_model("resnet20")) / 1e6 - 0.27) < 0.005


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("resnet20", {}),
        ("resnet32", {"width": 4}),
        ("resnet56", {"width": 4}),
        ("wrn28_2", {}),
        ("wrn28_4", {}),
        ("vgg16", {}),
        ("small_convnet", {"width": 4}),
    ],
)
def test_output_shape_and_last_linear(name, kwargs):
    model = build_model(name, num_classes=7, **kwargs)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    last = list(model.modules())[-1]
    assert isinstance(last, nn.Linear) and last.out_features == 7


def test_models_are_dense():
    for name in ("resnet20", "wrn28_2", "vgg16"):
        model = build_model(name)
        assert not any(parametrize.is_parametrized(m) for m in model.modules())


def test_train_mode_backward():
    model = build_model("resnet20", width=4)
    loss = model(torch.randn(4, 3, 32, 32)).logsumexp(1).mean()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_narrow_resnet_widths():
    model = CifarResNet(20, num_classes=10, width=4)
    assert [
        model.layer1[0].conv1.out_channels,
        model.layer2[0].conv1.out_channels,
        model.layer3[0].conv1.out_channels,
    ] == [4, 8, 16]
    assert count(model) == resnet_params(20, width=4)


def test_wrn_dropout_only_in_training():
    model = WideResNet(depth=16, widen_factor=1, dropout=0.5)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        model.train()
        torch.manual_seed(0)
        assert not torch.equal(model(x), model(x))
        model.eval()
        assert torch.equal(model(x), model(x))
    assert WideResNet(depth=16, widen_factor=1).block1[0].dropout == 0.0  # default: no dropout


def test_unknown_model_names_known_ones():
    with pytest.raises(ValueError) as error:
        build_model("resnet18")
    message = str(error.value)
    assert "resnet18" in message
    for name in ("resnet20", "resnet32", "resnet56", "wrn28_2", "wrn28_4", "wrn28_8", "vgg16"):
        assert name in message
        assert name in known_models()


@pytest.mark.parametrize(
    "make",
    [
        lambda: CifarResNet(depth=21),
        lambda: CifarResNet(depth=20, width=0),
        lambda: WideResNet(depth=27),
        lambda: WideResNet(depth=28, widen_factor=0),
        lambda: build_model("vgg16", num_classes=1),
    ],
)
def test_invalid_arguments(make):
    with pytest.raises(ValueError):
        make()
