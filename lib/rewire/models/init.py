"""Weight initialisation shared by the CIFAR models (He et al. 2015, "Delving deep into rectifiers")."""

from __future__ import annotations

import torch.nn as nn


def kaiming_conv_unit_batchnorm(model: nn.Module) -> None:
    """Kaiming-normal convolutions (fan_out, ReLU gain), batch-norm scale 1 and shift 0, in module order,
    as torchvision's ResNets and the CIFAR ResNet/WRN/VGG references do."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
