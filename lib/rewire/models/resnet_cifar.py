"""CIFAR ResNets (He et al. 2016, "Deep Residual Learning for Image Recognition", Section 4.2).

The CIFAR family has a 3x3 stem conv, three stages of ``n`` basic blocks at
widths 16/32/64 on 32x32/16x16/8x8 feature maps, global average pooling and a
linear classifier; depth = 6n + 2 (ResNet-20/32/56: n = 3/5/9).

Shortcuts are "option B" of He et al. (Section 3.3): identity when the shape is
kept, a strided 1x1 conv + BN when it changes. This follows the DPF unofficial
code (INCHEON-CHO/Dynamic_Model_Pruning_with_Feedback,
``pruning/models/resnet_mask.py``), not the parameter-free "option A" of He et al.'s own CIFAR experiments, so
the counts are slightly above the paper's 0.27M / 0.46M / 0.85M.

Measured here (10 classes, ``width=16``; MACs of the conv and linear layers for one
32x32 input, see :mod:`rewire.flops`):

========== ============ =============
model      parameters   MACs
========== ============ =============
ResNet-20     272,474    40,813,184
ResNet-32     466,906    69,124,736
ResNet-56     855,770   125,747,840
========== ============ =============
"""

from __future__ import annotations

import torch
import torch.nn as nn

from rewire.models.init import kaiming_conv_unit_batchnorm

__all__ = ["BasicBlock", "CifarResNet", "resnet20", "resnet32", "resnet56"]


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """He et al. 2016, Figure 2 (left): conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU.

    The first conv carries the stride; the shortcut is a 1x1 conv + BN (option B)
    whenever the stride or the number of channels changes, else the identity.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-``depth`` for 32x32 inputs (He et al. 2016, Section 4.2): depth = 6n + 2.

    ``width`` is the width of the first stage (16 in the paper); the stages have
    ``width``, ``2 * width``, ``4 * width`` channels, so a narrow model for smoke
    tests is ``CifarResNet(20, width=4)``. Convs use Kaiming-normal init with
    ``mode="fan_out"`` (He et al. 2015, as in the DPF unofficial code); BN starts at
    weight 1, bias 0; the classifier keeps PyTorch's default init. The last module
    is the ``nn.Linear`` classifier ``fc``.
    """

    def __init__(self, depth: int = 20, num_classes: int = 10, width: int = 16, in_channels: int = 3) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n + 2 with n >= 1 (20, 32, 56, ...), got {depth}")
        if width < 1 or num_classes < 2:
            raise ValueError(f"need width >= 1 and num_classes >= 2, got width={width}, num_classes={num_classes}")
        self.depth = depth
        blocks_per_stage = (depth - 2) // 6
        self.conv1 = conv3x3(in_channels, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        stages: list[nn.Module] = []
        previous = width
        for stage in range(3):
            channels = width * 2**stage
            blocks = []
            for index in range(blocks_per_stage):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(BasicBlock(previous, channels, stride))
                previous = channels
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(previous, num_classes)
        kaiming_conv_unit_batchnorm(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def resnet20(num_classes: int = 10, **kwargs) -> CifarResNet:
    """ResNet-20 (n = 3): 272,474 parameters, 40,813,184 MACs for 10 classes."""
    return CifarResNet(20, num_classes, **kwargs)


def resnet32(num_classes: int = 10, **kwargs) -> CifarResNet:
    """ResNet-32 (n = 5): 466,906 parameters, 69,124,736 MACs for 10 classes."""
    return CifarResNet(32, num_classes, **kwargs)


def resnet56(num_classes: int = 10, **kwargs) -> CifarResNet:
    """ResNet-56 (n = 9): 855,770 parameters, 125,747,840 MACs for 10 classes."""
    return CifarResNet(56, num_classes, **kwargs)
