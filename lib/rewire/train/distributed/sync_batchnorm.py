"""Batch normalisation over the global batch on CPU (gloo): statistics summed over the ranks with
an all-reduce, gradients through it, so R ranks normalise as one process does.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks, differentiable: the gradient of a sum over ranks is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone()
        dist.all_reduce(total)
        return total


class CpuSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch normalisation over the global batch of all ranks, on CPU (Ioffe & Szegedy 2015, Algorithm 1).

    ``torch.nn.SyncBatchNorm`` needs CUDA; this is the same computation for gloo on CPU: per channel,
    the mean ``mu = sum x / N`` and the biased variance ``sigma^2 = sum (x - mu)^2 / N`` over the
    ``N`` values of *every* rank (two all-reduces, the two-pass variance of ``F.batch_norm``), then
    ``y = (x - mu) / sqrt(sigma^2 + eps) * weight + bias``; the running variance takes the unbiased
    ``N / (N - 1)`` estimate, as in ``nn.BatchNorm``. The all-reduces are differentiable (their
    backward sums the ranks' gradients), so autograd gives the global-batch gradient. Evaluation,
    and training without a process group, is plain ``BatchNorm``.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input (batch, channels, ...), got {input.dim()}-D")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average, as nn.BatchNorm
                factor = 1.0 / float(self.num_batches_tracked)
        channels = input.shape[1]
        dims = [0, *range(2, input.dim())]
        shape = [1, channels] + [1] * (input.dim() - 2)
        local_count = input.new_full((1,), input.numel() // channels)
        sums = _AllReduceSum.apply(torch.cat([input.sum(dims), local_count]))
        count = sums[channels].detach()
        mean = sums[:channels] / count
        centred = input - mean.view(shape)
        variance = _AllReduceSum.apply((centred * centred).sum(dims)) / count
        output = centred * torch.rsqrt(variance + self.eps).view(shape)
        if self.affine:
            output = output * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                unbiased = variance * (count / (count - 1).clamp(min=1))
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                self.running_var.mul_(1 - factor).add_(unbiased.detach(), alpha=factor)
        return output

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """Replace every ``BatchNorm*d``/``SyncBatchNorm`` of ``module`` by this class, keeping its parameters
        and buffers (the same tensors); returns ``module`` (or the replacement when ``module`` is one)."""
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, cls):
            converted = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
            if module.affine:
                converted.weight, converted.bias = module.weight, module.bias
            if module.track_running_stats:
                converted.running_mean, converted.running_var = module.running_mean, module.running_var
                converted.num_batches_tracked = module.num_batches_tracked
            converted.train(module.training)
            return converted
        for name, child in module.named_children():
            module.add_module(name, cls.convert(child))
        return module
