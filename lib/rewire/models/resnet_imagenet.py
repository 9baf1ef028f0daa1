"""ResNet-50 for ImageNet (He et al. 2016a), the model of DPF Table 3 and Figure 10 (Lin et al., ICLR 2020).

The network is torchvision's ``resnet50`` built with ``weights=None``: randomly initialised, nothing is
downloaded. It is the standard ImageNet ResNet-50 ("v1.5", stride 2 in the 3x3 convolution of each
downsampling bottleneck, as in the PyTorch ImageNet example that Goyal et al.'s recipe is usually run with):
a 7x7 stride-2 stem, 3 + 4 + 6 + 3 bottleneck blocks, global average pooling and the classifier ``fc``, an
``nn.Linear(2048, num_classes)``, its last module. With 1000 classes it has 25,557,032 parameters, DPF
Table 3's "The # of parameters for the full model is 25.56 M".

The model is dense; DPF and its baselines are attached from outside (:mod:`rewire.methods`), pruning every
``nn.Conv2d`` weight (:func:`rewire.sparse.groups.conv_weight_targets`) and leaving ``fc``, the batch norms and
the biases dense.
"""

from __future__ import annotations

import torch.nn as nn
import torchvision

__all__ = ["resnet50"]


def resnet50(num_classes: int = 1000) -> nn.Module:
    """torchvision's ResNet-50 with ``num_classes`` outputs, random initialisation (``weights=None``, no download).

    The initialisation is torchvision's (Kaiming-normal fan-out convolutions, unit batch-norm scales); DPF
    does not state one. ``zero_init_residual`` stays ``False`` (torchvision's default; not stated in DPF).
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    return torchvision.models.resnet50(weights=None, num_classes=num_classes)
