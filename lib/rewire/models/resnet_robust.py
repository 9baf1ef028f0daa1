"""The networks of Liu et al. 2022, *Robust Binary Models by Pruning Randomly-initialized Networks*.

All models here are **dense**; the binary random weights, the per-layer keep rates
and the learned masks are applied from outside (``rewire.sparse.masks``,
``rewire.methods``), so a model never knows it is sparse.

Choices and their sources ("paper" = the NeurIPS 2022 paper and its appendix,
"code" = the authors' repository IVRL/RobustBinarySubNet, ``code/arch/``):

* **cResNet34 (CIFAR)** -- paper App. C "General": "the same [RN34] as in [51, 54]",
  21,265,088 trainable parameters, no biases ("bias terms ... are disabled"), BN
  without affine parameters. Code ``resnet_cifar.py``: 3x3 stride-1 stem with 64
  channels and no max-pool, basic blocks [3, 4, 6, 3] at widths 64/128/256/512,
  a 1x1 conv + BN shortcut whenever the stride or the width changes, average
  pooling of the 4x4 map, classifier as a 1x1 conv. With 10 classes the conv
  weights sum to exactly 21,265,088 (checked in ``tests/test_robust_models.py``).
* **Pooling** -- the code uses ``avg_pool2d(out, 4)``; we use a global average
  pool, which is identical on 32x32 inputs (the last map is 4x4) and also works
  for other input sizes.
* **LBN** -- paper App. A.3 / Tables 3, 8: a batch norm on the logits ("last batch
  normalization layer"). Code: ``BatchNorm(num_classes)`` applied to the N x C x 1 x 1
  output of the 1x1-conv classifier, then flatten. It is non-affine for the pruned
  networks and affine for the dense FP/BNN baselines (paper App. C "Baselines":
  "the batch normalization layers ... have affine operations" in the baselines).
* **BN** -- non-affine (``affine_bn=False``) by default, as in the pruned networks
  (paper App. C "General"); ``affine_bn=True`` for the dense baselines. Running
  statistics are always tracked.
* **Input normalisation inside the model** -- code: a ``DataNormalizeLayer`` with the
  CIFAR mean (0.4914, 0.4822, 0.4465) and std (0.2023, 0.1994, 0.2010) is prepended,
  so inputs and attacks live in pixel space [0, 1] (the eps-ball of paper App. C is
  defined there).
* **ResNet-18 / ResNet-50** -- paper Table 5 / README results for RN18 and RN50 on
  CIFAR-10; code ``resnet_cifar.py`` with blocks [2, 2, 2, 2] (basic) and [3, 4, 6, 3]
  (bottleneck, expansion 4).
* **ImageNet-100 ResNet-34** -- code ``arch/resnet.py``: 7x7 stride-2 stem + 3x3
  stride-2 max-pool (He et al. 2016), the same blocks and classifier; ImageNet
  mean/std normalisation; 100 classes.
* **Small RN34 (paper App. D.1, Table 7)** -- same topology with fewer channels,
  stem width = first-stage width: p = 0.1 -> 23/25/27/29, p = 1.0 -> 6/13/26/51
  (Table 7: 201,078 and 216,360 parameters). The authors' code also defines
  ``ResNet34_001_p05`` (14/20/29/40) and ``ResNet34_001_p0`` (26/26/26/26), which
  Table 7 does not list; they are included as ``p=0.5`` and ``p=0.0``.

The classifier is the 1x1 conv ``model.fc`` (also ``model.classifier``); it is the
last layer with weights. With LBN the last *module* is ``model.last`` (the BN on
the logits), otherwise ``model.last`` is an ``nn.Identity``.

Weights keep PyTorch's default initialisation; the paper's binary initialisation
(sign of the default init) and the signed Kaiming constant are applied from outside.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SMALL_RN34_WIDTHS",
    "NormalizeInput",
    "RobustBasicBlock",
    "RobustBottleneck",
    "RobustResNet",
    "cresnet18",
    "cresnet34",
    "cresnet50",
    "resnet34_imagenet",
    "small_cresnet34",
    "ROBUST_MODELS",
    "build_robust_model",
]

# Authors' code (DataNormalizeLayer for CIFAR-10/100); note std (0.2023, 0.1994, 0.2010),
# the widely copied values, not the exact per-pixel std of CIFAR-10.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Paper App. D.1, Table 7 (p = 0.1, 1.0) and the authors' ResNet34_001_p{05,0} (p = 0.5, 0.0):
# per-stage widths of the dense RN34 with about the parameter count of cResNet34 at 99% pruning.
SMALL_RN34_WIDTHS: dict[float, tuple[int, int, int, int]] = {
    0.0: (26, 26, 26, 26),
    0.1: (23, 25, 27, 29),
    0.5: (14, 20, 29, 40),
    1.0: (6, 13, 26, 51),
}


class NormalizeInput(nn.Module):
    """(x - mean) / std per channel, with mean and std as (non-trainable) buffers."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean and std must have the same length, got {len(mean)} and {len(std)}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={tuple(self.mean.flatten().tolist())}, std={tuple(self.std.flatten().tolist())}"


def _bn(channels: int, affine: bool) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, affine=affine)


def _conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False)


class RobustBasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN + shortcut, ReLU (He et al. 2016, Fig. 2 left; authors' ``BasicBlock``)."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1, affine_bn: bool = False) -> None:
        super().__init__()
        self.conv1 = _conv(in_channels, channels, 3, stride)
        self.bn1 = _bn(channels, affine_bn)
        self.conv2 = _conv(channels, channels, 3)
        self.bn2 = _bn(channels, affine_bn)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != channels * self.expansion:
            self.shortcut = nn.Sequential(_conv(in_channels, channels, 1, stride), _bn(channels, affine_bn))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class RobustBottleneck(nn.Module):
    """1x1-3x3-1x1 bottleneck, expansion 4, stride on the 3x3 (authors' CIFAR ``Bottleneck``)."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1, affine_bn: bool = False) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = _conv(in_channels, channels, 1)
        self.bn1 = _bn(channels, affine_bn)
        self.conv2 = _conv(channels, channels, 3, stride)
        self.bn2 = _bn(channels, affine_bn)
        self.conv3 = _conv(channels, out_channels, 1)
        self.bn3 = _bn(out_channels, affine_bn)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(_conv(in_channels, out_channels, 1, stride), _bn(out_channels, affine_bn))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


_BLOCKS = {"basic": RobustBasicBlock, "bottleneck": RobustBottleneck}


class RobustResNet(nn.Module):
    """A ResNet in the authors' form: normalisation inside, no biases, 1x1-conv classifier, optional LBN.

    Arguments:
        num_blocks: blocks per stage, e.g. ``(3, 4, 6, 3)`` for ResNet-34.
        block: ``"basic"`` or ``"bottleneck"``.
        widths: channels of the four stages (before the bottleneck expansion);
            ``(64, 128, 256, 512)`` in the paper, e.g. ``(16, 32, 64, 128)`` for CPU runs.
        stem_width: channels of the stem conv; defaults to ``widths[0]``.
        stem: ``"cifar"`` (3x3 stride 1, no max-pool) or ``"imagenet"`` (7x7 stride 2 + max-pool).
        last_bn: add the LBN on the logits.
        affine_bn: learnable BN scale and shift (dense baselines); ``False`` for the pruned networks.
        last_bn_affine: affine LBN; defaults to ``affine_bn``.
        mean, std: input normalisation applied inside; ``None`` for both disables it.
    """

    def __init__(
        self,
        num_blocks: Sequence[int] = (3, 4, 6, 3),
        *,
        block: str = "basic",
        widths: Sequence[int] = (64, 128, 256, 512),
        stem_width: int | None = None,
        num_classes: int = 10,
        in_channels: int = 3,
        stem: str = "cifar",
        last_bn: bool = True,
        affine_bn: bool = False,
        last_bn_affine: bool | None = None,
        mean: Sequence[float] | None = CIFAR10_MEAN,
        std: Sequence[float] | None = CIFAR10_STD,
    ) -> None:
        super().__init__()
        if block not in _BLOCKS:
            raise ValueError(f"unknown block {block!r}; choose one of {sorted(_BLOCKS)}")
        if stem not in ("cifar", "imagenet"):
            raise ValueError(f"unknown stem {stem!r}; choose 'cifar' or 'imagenet'")
        if len(num_blocks) != 4 or len(widths) != 4:
            raise ValueError(f"need four stages: got num_blocks {tuple(num_blocks)} and widths {tuple(widths)}")
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        block_cls = _BLOCKS[block]
        stem_width = widths[0] if stem_width is None else stem_width
        self.normalize: nn.Module = nn.Identity() if mean is None else NormalizeInput(mean, std)  # type: ignore[arg-type]
        if stem == "cifar":
            self.conv1 = _conv(in_channels, stem_width, 3)
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, stem_width, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn1 = _bn(stem_width, affine_bn)
        stages = []
        channels_in = stem_width
        for i, (n, width) in enumerate(zip(num_blocks, widths, strict=True)):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block_cls(channels_in, width, stride, affine_bn))
                channels_in = width * block_cls.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.num_features = channels_in
        self.num_classes = num_classes
        self.fc = nn.Conv2d(channels_in, num_classes, kernel_size=1, bias=False)
        lbn_affine = affine_bn if last_bn_affine is None else last_bn_affine
        self.last: nn.Module = _bn(num_classes, lbn_affine) if last_bn else nn.Identity()

    @property
    def classifier(self) -> nn.Conv2d:
        """The 1x1-conv classifier (``self.fc``)."""
        return self.fc

    @property
    def has_last_bn(self) -> bool:
        return isinstance(self.last, nn.BatchNorm2d)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features, N x C x 1 x 1, from pixels in [0, 1]."""
        out = self.normalize(x)
        out = self.maxpool(F.relu(self.bn1(self.conv1(out))))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return F.adaptive_avg_pool2d(out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.last(self.fc(self.features(x))), 1)


def cresnet18(num_classes: int = 10, **kwargs) -> RobustResNet:
    """CIFAR ResNet-18: basic blocks [2, 2, 2, 2]."""
    return RobustResNet((2, 2, 2, 2), num_classes=num_classes, **kwargs)


def cresnet34(num_classes: int = 10, **kwargs) -> RobustResNet:
    """CIFAR ResNet-34 of the paper ("cResNet34"): basic blocks [3, 4, 6, 3], 21,265,088 weights at 10 classes."""
    return RobustResNet((3, 4, 6, 3), num_classes=num_classes, **kwargs)


def cresnet50(num_classes: int = 10, **kwargs) -> RobustResNet:
    """CIFAR ResNet-50: bottleneck blocks [3, 4, 6, 3] (expansion 4)."""
    return RobustResNet((3, 4, 6, 3), block="bottleneck", num_classes=num_classes, **kwargs)


def resnet34_imagenet(num_classes: int = 100, **kwargs) -> RobustResNet:
    """ImageNet-100 ResNet-34: 7x7 stride-2 stem + max-pool, ImageNet normalisation."""
    kwargs.setdefault("mean", IMAGENET_MEAN)
    kwargs.setdefault("std", IMAGENET_STD)
    return RobustResNet((3, 4, 6, 3), num_classes=num_classes, stem="imagenet", **kwargs)


def small_cresnet34(p: float = 0.1, num_classes: int = 10, **kwargs) -> RobustResNet:
    """Dense "Small RN34-p" of paper Table 7 (p = 0.1: the "Small RN34" of Tables 4, 9-11)."""
    key = float(p)
    if key not in SMALL_RN34_WIDTHS:
        raise ValueError(f"no small RN34 for p={p}; known p: {sorted(SMALL_RN34_WIDTHS)}")
    if "widths" in kwargs:
        raise ValueError("small_cresnet34 fixes the widths; use cresnet34(widths=...) for other widths")
    return RobustResNet((3, 4, 6, 3), widths=SMALL_RN34_WIDTHS[key], num_classes=num_classes, **kwargs)


ROBUST_MODELS = {
    "cresnet18": cresnet18,
    "cresnet34": cresnet34,
    "cresnet50": cresnet50,
    "resnet34_imagenet": resnet34_imagenet,
    "small_cresnet34": small_cresnet34,
}


def build_robust_model(name: str, num_classes: int = 10, **kwargs) -> RobustResNet:
    """Build one of :data:`ROBUST_MODELS` by name."""
    if name not in ROBUST_MODELS:
        raise ValueError(f"unknown robust model {name!r}; known: {', '.join(sorted(ROBUST_MODELS))}")
    return ROBUST_MODELS[name](num_classes=num_classes, **kwargs)
