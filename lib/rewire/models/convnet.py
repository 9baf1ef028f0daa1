"""A small dense CNN for the quickstart: the end-to-end check of data -> library -> pipeline."""

from __future__ import annotations

import torch
import torch.nn as nn


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SmallConvNet(nn.Module):
    """Three stages of two 3x3 conv-BN-ReLU layers (widths w, 2w, 4w), max-pool between stages,
    global average pooling and a linear classifier. ``width=32`` has about 0.29M parameters."""

    def __init__(self, num_classes: int = 10, width: int = 32, in_channels: int = 3) -> None:
        super().__init__()
        if width < 1 or num_classes < 2:
            raise ValueError(f"need width >= 1 and num_classes >= 2, got width={width}, num_classes={num_classes}")
        widths = (width, 2 * width, 4 * width)
        layers: list[nn.Module] = []
        previous = in_channels
        for stage, channels in enumerate(widths):
            if stage > 0:
                layers.append(nn.MaxPool2d(2))
            layers += [conv_bn_relu(previous, channels), conv_bn_relu(channels, channels)]
            previous = channels
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(previous, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))
