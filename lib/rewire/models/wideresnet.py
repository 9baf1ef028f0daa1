"""Wide residual networks (Zagoruyko & Komodakis 2016, "Wide Residual Networks").

WRN-d-k for 32x32 inputs (their Table 1): a 3x3 stem conv to 16 channels, three
stages of N = (d - 4) / 6 pre-activation "wide basic" blocks B(3,3) at widths 16k,
32k, 64k (stride 2 entering stages 2 and 3), then BN-ReLU, global average pooling
and a linear classifier. WRN-28-k has N = 4.

The block follows the authors' code (and the DPF unofficial code,
``models/wideresnet.py`` of INCHEON-CHO/Dynamic_Model_Pruning_with_Feedback):
BN-ReLU-conv3x3-BN-ReLU-[dropout]-conv3x3; when the shape changes, the shortcut is
a strided 1x1 conv applied to the *pre-activated* input, else it is the identity
on the raw input. Dropout is 0 by default: the DPF unofficial WRN has none and the
DPF paper does not mention dropout.

Measured here (10 classes). DPF (Lin et al. 2020) quotes "1.47M parameters with
216M MACs" for WRN-28-2 (Figure 3 caption) and 216M / 848M / 3366M MACs for
WRN-28-2/4/8 (Figure 6 caption). The conv + linear MACs below are 0.2-0.8% lower;
adding BN (2 ops per element), ReLU and pooling as the ptflops counter does
(``other ops``, see :mod:`rewire.flops`) reproduces all three numbers within the
paper's rounding.

========= ============ =============== ================
model     parameters   MACs            MACs + other ops
========= ============ =============== ================
WRN-28-2    1,467,610     214,353,152     215,786,762
WRN-28-4    5,849,050     845,597,184     848,415,242
WRN-28-8   23,354,842   3,360,084,992   3,365,671,946
========= ============ =============== ================
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from rewire.models.init import kaiming_conv_unit_batchnorm

__all__ = ["WideBasicBlock", "WideResNet", "wideresnet28", "wrn28_2", "wrn28_4", "wrn28_8"]


class WideBasicBlock(nn.Module):
    """Zagoruyko & Komodakis 2016, Figure 1(d) with B(3,3): BN-ReLU-conv3x3-BN-ReLU-dropout-conv3x3, plus shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = dropout
        self.shortcut: nn.Conv2d | None = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = self.relu(self.bn1(x))
        out = self.relu(self.bn2(self.conv1(activated)))
        if self.dropout > 0:
            out = F.dropout(out, p=self.dropout, training=self.training)
        out = self.conv2(out)
        return out + (x if self.shortcut is None else self.shortcut(activated))


class WideResNet(nn.Module):
    """WRN-``depth``-``widen_factor`` for 32x32 inputs (Zagoruyko & Komodakis 2016, Table 1).

    ``depth`` = 6N + 4. Convs use Kaiming-normal init with ``mode="fan_out"`` (He et al.
    2015), as the CIFAR ResNets of :mod:`rewire.models.resnet_cifar` (the DPF unofficial
    WRN keeps PyTorch's default init); BN starts at weight 1, bias 0; the classifier keeps
    PyTorch's default init. The last module is the ``nn.Linear`` classifier ``fc``.
    """

    def __init__(
        self, depth: int = 28, widen_factor: int = 2, num_classes: int = 10, dropout: float = 0.0, in_channels: int = 3
    ) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ValueError(f"WideResNet depth must be 6N + 4 with N >= 1 (16, 22, 28, ...), got {depth}")
        if widen_factor < 1 or num_classes < 2 or not 0.0 <= dropout < 1.0:
            raise ValueError(
                f"need widen_factor >= 1, num_classes >= 2, 0 <= dropout < 1, got "
                f"widen_factor={widen_factor}, num_classes={num_classes}, dropout={dropout}"
            )
        self.depth, self.widen_factor = depth, widen_factor
        blocks_per_stage = (depth - 4) // 6
        stem_width = 16  # Table 1: conv1 has 16 channels, independent of k
        self.conv1 = nn.Conv2d(in_channels, stem_width, kernel_size=3, padding=1, bias=False)
        stages: list[nn.Module] = []
        previous = stem_width
        for stage in range(3):
            channels = stem_width * widen_factor * 2**stage
            blocks = []
            for index in range(blocks_per_stage):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(WideBasicBlock(previous, channels, stride, dropout))
                previous = channels
            stages.append(nn.Sequential(*blocks))
        self.block1, self.block2, self.block3 = stages
        self.bn = nn.BatchNorm2d(previous)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(previous, num_classes)
        kaiming_conv_unit_batchnorm(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        x = self.relu(self.bn(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def wideresnet28(widen_factor: int, num_classes: int = 10, **kwargs) -> WideResNet:
    """WRN-28-``widen_factor`` (N = 4 blocks per stage)."""
    return WideResNet(28, widen_factor, num_classes, **kwargs)


def wrn28_2(num_classes: int = 10, **kwargs) -> WideResNet:
    """WRN-28-2: 1,467,610 parameters, 214,353,152 conv + linear MACs for 10 classes (DPF: 1.47M, 216M)."""
    return wideresnet28(2, num_classes, **kwargs)


def wrn28_4(num_classes: int = 10, **kwargs) -> WideResNet:
    """WRN-28-4: 5,849,050 parameters, 845,597,184 conv + linear MACs for 10 classes (DPF: 848M)."""
    return wideresnet28(4, num_classes, **kwargs)


def wrn28_8(num_classes: int = 10, **kwargs) -> WideResNet:
    """WRN-28-8: 23,354,842 parameters, 3,360,084,992 conv + linear MACs for 10 classes (DPF: 3366M)."""
    return wideresnet28(8, num_classes, **kwargs)
