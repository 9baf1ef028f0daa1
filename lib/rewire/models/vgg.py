"""VGG16-D adapted to CIFAR (Simonyan & Zisserman 2015, Table 1, configuration D; DPF Table 1 "VGG16-D").

Configuration D: thirteen 3x3 convs in five groups (64, 64 | 128, 128 | 256 x 3 |
512 x 3 | 512 x 3), each group followed by a 2x2 max-pool. As in the CIFAR
adaptations used by the pruning literature, every conv is followed by BN and
ReLU (BN postdates VGG; Ioffe & Szegedy 2015), and convs have no bias (BN's
shift makes it redundant).

Classifier: the five max-pools reduce a 32x32 input to 1x1, so the features are
512 numbers; they go to a single ``nn.Linear(512, num_classes)``. The three
4096-wide FC layers of the ImageNet VGG were designed for 7x7x512 features and would
add ~20M parameters the CIFAR models in the literature do not have; a single linear
classifier is the common CIFAR choice (e.g. kuangliu/pytorch-cifar ``models/vgg.py``;
the DPF unofficial code, INCHEON-CHO/Dynamic_Model_Pruning_with_Feedback, has no
VGG). It is also the only
``nn.Linear`` of the model, so "all convs pruned, last FC dense" covers every
weight matrix but one.

Measured here (10 classes): 14,724,042 parameters, 313,201,664 MACs
(32x32, conv + linear, see :mod:`rewire.flops`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from rewire.models.init import kaiming_conv_unit_batchnorm

__all__ = ["VGG", "VGG16_D", "vgg16"]

# Simonyan & Zisserman 2015, Table 1, column D: conv widths, "M" = 2x2 max-pool.
VGG16_D: tuple[int | str, ...] = (
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    "M",
)


class VGG(nn.Module):
    """A VGG feature extractor (``config``: conv widths and ``"M"`` max-pools) with BN after each
    conv, global average pooling and one linear classifier ``fc`` (the last module).

    The average pool is the identity for config D on 32x32 inputs (the features are
    already 1x1); it makes other input sizes work. Convs use Kaiming-normal init
    (``mode="fan_out"``, He et al. 2015); BN starts at weight 1, bias 0; the classifier
    keeps PyTorch's default init.
    """

    def __init__(self, config: Sequence[int | str] = VGG16_D, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"need num_classes >= 2, got {num_classes}")
        layers: list[nn.Module] = []
        previous = in_channels
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            elif isinstance(item, int) and item > 0:
                layers += [
                    nn.Conv2d(previous, item, kernel_size=3, padding=1, bias=False),
                    nn.BatchNorm2d(item),
                    nn.ReLU(inplace=True),
                ]
                previous = item
            else:
                raise ValueError(f"config entries must be positive ints or 'M', got {item!r}")
        if not any(isinstance(layer, nn.Conv2d) for layer in layers):
            raise ValueError("config has no conv layer")
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(previous, num_classes)
        kaiming_conv_unit_batchnorm(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def vgg16(num_classes: int = 10, **kwargs) -> VGG:
    """VGG16-D with BN for CIFAR: 14,724,042 parameters, 313,201,664 MACs for 10 classes."""
    return VGG(VGG16_D, num_classes, **kwargs)
