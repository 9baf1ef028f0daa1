"""Model definitions. Models are dense; sparsification methods are applied to them from outside.

:func:`build_model` builds a model by name: the CIFAR models of DPF (Lin et al. 2020,
Section 5 "Models" and Table 1): ResNet-20/32/56, WideResNet-28-2/4/8, VGG16-D; the
quickstart's small CNN; DNW Table 1's tiny neural graphs (``tiny_static``,
``tiny_discrete_time``, ``tiny_continuous_time``); DNW Tables 2-3's MobileNetV1-DNW and the dense
MobileNetV1 x d (``mobilenet_v1_dnw``, ``mobilenet_v1``); DPF Table 3's ImageNet ResNet-50 (``resnet50``); the
robust-binary paper's ResNets (``cresnet18``, ``cresnet34``, ``cresnet50``, ``resnet34_imagenet``,
``small_cresnet34``). Every model's classifier is its last weight layer: an ``nn.Linear``, except the robust-binary
ResNets', a 1x1 convolution followed by the optional last batch norm (as the authors build them).
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

from rewire.models.convnet import SmallConvNet
from rewire.models.mobilenet_dnw import MobileNetV1, MobileNetV1DNW, mobilenet_v1, mobilenet_v1_dnw
from rewire.models.resnet_cifar import CifarResNet, resnet20, resnet32, resnet56
from rewire.models.resnet_imagenet import resnet50
from rewire.models.resnet_robust import ROBUST_MODELS, RobustResNet
from rewire.models.tiny_graphs import GraphConfig, build_graph
from rewire.models.vgg import VGG, VGG16_D, vgg16
from rewire.models.wideresnet import WideResNet, wideresnet28, wrn28_2, wrn28_4, wrn28_8

__all__ = [
    "SmallConvNet",
    "CifarResNet",
    "resnet20",
    "resnet32",
    "resnet56",
    "resnet50",
    "RobustResNet",
    "WideResNet",
    "wideresnet28",
    "wrn28_2",
    "wrn28_4",
    "wrn28_8",
    "VGG",
    "VGG16_D",
    "vgg16",
    "MobileNetV1DNW",
    "MobileNetV1",
    "mobilenet_v1_dnw",
    "mobilenet_v1",
    "MODELS",
    "known_models",
    "build_model",
]

MODELS: dict[str, Callable[..., nn.Module]] = {
    "small_convnet": SmallConvNet,
    "resnet20": resnet20,
    "resnet32": resnet32,
    "resnet56": resnet56,
    "wrn28_2": wrn28_2,
    "wrn28_4": wrn28_4,
    "wrn28_8": wrn28_8,
    "vgg16": vgg16,
    # DNW Section 2.4 / Tables 2-3: MobileNetV1-DNW (one neural graph per resolution) and the dense MobileNetV1 x d
    "mobilenet_v1_dnw": mobilenet_v1_dnw,
    "mobilenet_v1": mobilenet_v1,
    # DPF Table 3 / Figure 10: ImageNet ResNet-50 (torchvision's, random initialisation)
    "resnet50": resnet50,
}


def _tiny_graph(kind: str) -> Callable[..., nn.Module]:
    def build(num_classes: int = 10, **fields) -> nn.Module:
        fields = {k: (tuple(v) if isinstance(v, list) else v) for k, v in fields.items()}
        return build_graph(kind, GraphConfig(num_classes=num_classes, **fields))

    build.__doc__ = f"The {kind} tiny neural graph of DNW Table 1; keyword arguments are GraphConfig fields."
    return build


# The robust-binary paper's networks (rewire.models.resnet_robust): cResNet18/34/50, the ImageNet-100 ResNet-34 and
# Table 7's small dense ResNet-34; input normalisation inside, classifier a 1x1 conv, optional last batch norm
MODELS.update(ROBUST_MODELS)

# DNW Table 1's tiny neural graphs (rewire.models.tiny_graphs), built from GraphConfig fields
MODELS.update({f"tiny_{kind}": _tiny_graph(kind) for kind in ("static", "discrete_time", "continuous_time")})


def known_models() -> list[str]:
    """The names :func:`build_model` accepts, sorted."""
    return sorted(MODELS)


def build_model(name: str, num_classes: int = 10, **kwargs) -> nn.Module:
    """Build the dense model ``name`` (see :func:`known_models`) with ``num_classes`` outputs.

    ``kwargs`` go to the model's constructor, e.g. ``width=4`` for a narrow CIFAR
    ResNet or ``dropout=0.3`` for a WideResNet.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(known_models())}")
    return MODELS[name](num_classes=num_classes, **kwargs)
