"""Networks of Liu et al. 2022 (rewire.models.resnet_robust) and the BinaryConnect parametrization."""

import pytest
import torch
import torch.nn as nn

from rewire.models.binary_connect import attach_latent_clip, binarize_, binarized_modules, clip_latent_weights_
from rewire.models.resnet_robust import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    RobustResNet,
    build_robust_model,
    cresnet18,
    cresnet34,
    cresnet50,
    resnet34_imagenet,
    small_cresnet34,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def conv_weights(model: nn.Module) -> int:
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Conv2d))


def cresnet34_weights_by_hand(widths=(64, 128, 256, 512), stem=None, num_classes=10, blocks=(3, 4, 6, 3)) -> int:
    """3x3 stem, basic blocks (two 3x3 convs), a 1x1 shortcut where the shape changes, 1x1-conv classifier."""
    stem = widths[0] if stem is None else stem
    total = 3 * stem * 9
    c_in = stem
    for stage, (n, w) in enumerate(zip(blocks, widths)):
        for j in range(n):
            total += c_in * w * 9 + w * w * 9
            stride = 2 if (j == 0 and stage > 0) else 1
            if stride != 1 or c_in != w:
                total += c_in * w
            c_in = w
    return total + c_in * num_classes


def test_cresnet34_parameter_count_matches_paper_and_hand_count():
    model = cresnet34()
    params = sum(p.numel() for p in model.parameters())
    assert params == conv_weights(model) == cresnet34_weights_by_hand()
    # paper App. C: "it has 21265088 trainable parameters"
    assert params == 21_265_088
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 37  # stem, 32 3x3, 3 shortcuts, fc
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
    assert all(not m.affine and m.track_running_stats for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def test_narrow_cresnet34_hand_count():
    model = cresnet34(widths=(16, 32, 64, 128), num_classes=100)
    assert conv_weights(model) == cresnet34_weights_by_hand((16, 32, 64, 128), num_classes=100)
    # a stem narrower than the first stage needs a 1x1 shortcut in the first (stride-1) block
    odd = cresnet34(widths=(8, 16, 16, 32), stem_width=4)
    assert conv_weights(odd) == cresnet34_weights_by_hand((8, 16, 16, 32), stem=4)
    assert isinstance(odd.layer1[0].shortcut, nn.Sequential) and isinstance(odd.layer1[1].shortcut, nn.Identity)


@pytest.mark.parametrize("p,expected", [(0.1, 201_078), (1.0, 216_360)])
def test_small_rn34_matches_table7(p, expected):
    # Table 7 counts the conv weights plus the affine BN parameters (the dense baselines' BN), without LBN
    model = small_cresnet34(p, affine_bn=True, last_bn=False)
    assert sum(q.numel() for q in model.parameters()) == expected
    widths = {0.1: (23, 25, 27, 29), 1.0: (6, 13, 26, 51)}[p]
    assert conv_weights(model) == cresnet34_weights_by_hand(widths)


def test_small_rn34_rejects_unknown_p():
    with pytest.raises(ValueError, match="known p"):
        small_cresnet34(0.3)


def test_lbn_presence_and_classifier():
    with_lbn = cresnet34(widths=(8, 8, 8, 8))
    without = cresnet34(widths=(8, 8, 8, 8), last_bn=False)
    assert with_lbn.has_last_bn and isinstance(with_lbn.last, nn.BatchNorm2d) and with_lbn.last.num_features == 10
    assert not with_lbn.last.affine
    assert not without.has_last_bn and isinstance(without.last, nn.Identity)
    assert list(with_lbn.children())[-1] is with_lbn.last and list(with_lbn.children())[-2] is with_lbn.fc
    assert with_lbn.classifier is with_lbn.fc and with_lbn.fc.kernel_size == (1, 1) and with_lbn.fc.bias is None
    affine = cresnet34(widths=(8, 8, 8, 8), affine_bn=True)
    assert affine.last.affine and all(m.affine for m in affine.modules() if isinstance(m, nn.BatchNorm2d))
    # in train mode LBN standardises each logit over the batch
    out = with_lbn.train()(torch.rand(16, 3, 32, 32))
    assert torch.allclose(out.mean(0), torch.zeros(10), atol=1e-5)


def test_normalisation_inside_the_model():
    torch.manual_seed(0)
    model = cresnet34(widths=(8, 8, 8, 8)).eval()
    bare = cresnet34(widths=(8, 8, 8, 8), mean=None, std=None).eval()
    bare.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("normalize.")})
    x = torch.rand(4, 3, 32, 32)
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(model(x), bare((x - mean) / std), atol=1e-5)
        assert not torch.allclose(model(x), bare(x), atol=1e-3)
    assert "normalize.mean" in model.state_dict() and not any(
        k.startswith("normalize") for k, _ in model.named_parameters()
    )


def test_variants_shapes_and_stems():
    x = torch.rand(2, 3, 32, 32)
    for model in (cresnet18(widths=(4, 4, 4, 4)), cresnet50(widths=(4, 4, 4, 4)), cresnet34(widths=(16, 32, 64, 128))):
        assert model.eval()(x).shape == (2, 10)
    assert sum(isinstance(m, nn.Conv2d) for m in cresnet18().modules()) == 21
    assert cresnet50().fc.in_channels == 2048
    imnet = resnet34_imagenet(widths=(4, 4, 4, 4))
    assert imnet.conv1.kernel_size == (7, 7) and imnet.conv1.stride == (2, 2)
    assert isinstance(imnet.maxpool, nn.MaxPool2d)
    assert imnet.eval()(torch.rand(2, 3, 64, 64)).shape == (2, 100)
    assert cresnet34().conv1.kernel_size == (3, 3) and isinstance(cresnet34().maxpool, nn.Identity)
    assert isinstance(build_robust_model("cresnet34", widths=(4, 4, 4, 4)), RobustResNet)
    with pytest.raises(ValueError, match="unknown robust model"):
        build_robust_model("resnet35")


def test_binaryconnect_forward_is_pm1_and_latent_stays_clipped():
    torch.manual_seed(0)
    model = cresnet34(widths=(4, 4, 4, 4), affine_bn=True)
    names = binarize_(model)
    assert len(names) == 37 and len(binarized_modules(model)) == 37
    for _, m in binarized_modules(model):
        assert set(m.weight.unique().tolist()) <= {-1.0, 1.0}
    optimizer = torch.optim.SGD(model.parameters(), lr=50.0)  # a huge step pushes latents far outside [-1, 1]
    attach_latent_clip(optimizer, model)
    loss = nn.functional.cross_entropy(model.train()(torch.rand(8, 3, 32, 32)), torch.randint(0, 10, (8,)))
    loss.backward()
    latent = model.conv1.parametrizations.weight.original
    assert latent.grad is not None and latent.grad.abs().sum() > 0  # straight-through gradient reaches the latent
    optimizer.step()
    for _, m in binarized_modules(model):
        original = m.parametrizations.weight.original
        assert original.abs().max() <= 1.0
        assert set(m.weight.unique().tolist()) <= {-1.0, 1.0}
    assert (latent.abs() == 1).any()  # the clip was active
    assert clip_latent_weights_(model) == 37


def test_sign_ste_gradient_is_identity():
    lin = nn.Linear(4, 1, bias=False)
    binarize_(lin)
    x = torch.randn(3, 4)
    lin(x).sum().backward()
    assert torch.equal(lin.parametrizations.weight.original.grad, x.sum(0, keepdim=True))
    with torch.no_grad():
        lin.parametrizations.weight.original.zero_()
    assert torch.equal(lin.weight, torch.ones(1, 4))  # sign(0) -> +1, never 0
