"""Model definitions. Models are dense; sparsification methods are applied to them from outside."""

from rewire.models.convnet import SmallConvNet

__all__ = ["SmallConvNet"]
