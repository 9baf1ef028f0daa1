"""Recompute batch-norm running statistics on training batches, the weights untouched.

A model whose weights changed after its last training step (SFP's final zeroing of filters, He et al.
2018; any pruning applied once training is over) evaluates with running statistics that describe the
model before the change: in eval mode every batch norm normalises with a mean and variance its input no
longer has. :func:`recalibrate_batchnorm` replaces them by the statistics of the model as it is now:

* every batch norm with running statistics is reset (mean 0, variance 1, ``num_batches_tracked`` 0) and
  its ``momentum`` set to ``None``, PyTorch's cumulative moving average: after ``k`` batches the running
  mean is the plain average of the ``k`` batch means and the running variance the average of the ``k``
  unbiased batch variances (``torch.nn.BatchNorm2d`` documentation, ``momentum=None``);
* the model runs forward in train mode on the first ``batches`` batches of ``loader`` under
  ``torch.no_grad()``: no gradient, no optimizer, so no parameter changes (dropout, if any, is active
  as in training; the CIFAR ResNets here have none);
* each batch norm's momentum and the model's train/eval mode are restored.

This is the standard "recompute BN statistics after pruning" step (e.g. the batch-norm recalibration
of network-slimming and AdaBN-style pipelines); it is *not* part of SFP, so the DPF sweeps run it only as
a variant of its own (``sfp_bn``, :mod:`rewire.methods.dpf`).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn as nn

from rewire.train.trainer import autocast, to_memory_format

__all__ = ["recalibrate_batchnorm", "batchnorm_layers"]


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every batch norm of ``model`` that keeps running statistics, in module order."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, loader: Iterable, batches: int, *, precision: str = "fp32") -> int:
    """Recompute the running statistics of every batch norm of ``model`` on ``batches`` batches of ``loader``.

    ``loader`` yields ``(inputs, targets)`` on the model's device (targets are ignored); a loader with
    fewer batches is read once to its end. ``precision`` is the trainer's (``"bf16"``: autocast and
    channels-last, as in training). Returns the number of batches read. Weights are never changed.
    """
    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
        raise ValueError(
            f"recalibrate_batchnorm: batches={batches!r} must be an int >= 1 (training batches to recompute "
            f"the batch-norm statistics on), e.g. batches=40"
        )
    if hasattr(loader, "__len__") and len(loader) == 0:
        raise ValueError("recalibrate_batchnorm: the loader yields no batch; give a loader over training images")
    layers = batchnorm_layers(model)
    if not layers:
        return 0
    momenta = [m.momentum for m in layers]
    was_training = model.training
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative average over the recalibration batches
    model.train()
    read = 0
    try:
        for inputs, _ in loader:
            if read == batches:
                break
            with autocast(precision, inputs.device):
                model(to_memory_format(inputs, precision))
            read += 1
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
        model.train(was_training)
    if read == 0:
        raise ValueError("recalibrate_batchnorm: the loader yielded no batch; give a loader over training images")
    return read
