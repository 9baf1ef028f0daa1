"""The parts every tiny neural graph shares (DNW Section 2, Eq. 1): the dense adjacency, the nodes'
fused instance-norm + ReLU and depthwise operations, the stem and the :class:`NeuralGraph` base class.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from rewire.models.tiny_graphs.config import GraphConfig


class Adjacency(nn.Module):
    """The dense adjacency weight ``weight[v, u]`` = w_uv (rows: receiving node, columns: emitting node).

    Initialised uniformly (Algorithm 1 line 2) in +-1/sqrt(N): the PyTorch default
    of the reference's N-channel 1x1 convolution.
    """

    def __init__(self, num_nodes: int) -> None:
        super().__init__()
        self.num_nodes = num_nodes
        self.weight = nn.Parameter(torch.empty(num_nodes, num_nodes))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.num_nodes)
        nn.init.uniform_(self.weight, -bound, bound)

    def extra_repr(self) -> str:
        return f"num_nodes={self.num_nodes}"


class _InstanceNormReLU(torch.autograd.Function):
    """ReLU(InstanceNorm(x)) with affine parameters, on channels-last states ``x`` of shape ``[B, H*W, C]``.

    The same function as ``F.relu(F.instance_norm(x, weight, bias, eps=eps))`` on
    the NCHW view (tested), computed without leaving channels-last memory: per image
    and channel, mean and biased variance over the H*W positions. The backward is
    the usual normalisation gradient, dx = rstd*w*(dz - mean(dz) - x_hat*mean(dz*x_hat))
    with dz the gradient masked by the ReLU. Fewer memory passes than
    ``F.instance_norm``, which would transpose to NCHW and back (about 7% of a static
    graph's training step). ``relu=False`` gives the plain affine instance norm (the
    authors'-code dynamic graphs).

    Mixed precision: statistics and gradients are computed in at least float32
    (a bf16/fp16 input, e.g. a GEMM's output under ``torch.autocast``, is upcast), and
    the output and the input gradient are returned in the input's dtype, so the
    function runs unchanged inside and outside autocast on any device.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps, relu=True):
        dtype = x.dtype
        compute = torch.promote_types(dtype, torch.float32)
        x, weight, bias = x.to(compute), weight.to(compute), bias.to(compute)
        n = x.shape[1]
        centred = x - x.mean(1, keepdim=True)
        rstd = ((centred * centred).sum(1, keepdim=True) / n + eps).rsqrt_()
        scale = rstd * weight
        out = torch.addcmul(bias, centred, scale)
        if relu:
            out = out.relu_()
        ctx.save_for_backward(centred, out if relu else None, rstd, weight)
        ctx.relu, ctx.dtype = relu, dtype
        return out.to(dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        centred, out, rstd, weight = ctx.saved_tensors
        n = centred.shape[1]
        grad_out = grad_out.to(centred.dtype)
        dz = torch.ops.aten.threshold_backward(grad_out, out, 0) if ctx.relu else grad_out  # through the ReLU
        sum_dz = dz.sum(1, keepdim=True)
        sum_dz_xhat = (dz * centred).sum(1, keepdim=True) * rstd
        scale = rstd * weight
        a = -scale * rstd * sum_dz_xhat / n
        c = -scale * sum_dz / n
        grad_x = torch.addcmul(c, centred, a).addcmul_(dz, scale)
        return grad_x.to(ctx.dtype), sum_dz_xhat.sum((0, 1)), sum_dz.sum((0, 1)), None, None


class NodeOps(nn.Module):
    """The node operations f_v of all N nodes: InstanceNorm (affine), ReLU, 3x3 depthwise conv (Section 3.1)."""

    def __init__(self, num_nodes: int) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(num_nodes, affine=True)
        self.conv = nn.Conv2d(num_nodes, num_nodes, kernel_size=3, padding=1, groups=num_nodes, bias=False)

    def forward(self, inputs: torch.Tensor, start: int, stop: int, spatial: tuple[int, int, int]) -> torch.Tensor:
        """Apply f_v for nodes ``start..stop-1`` to ``inputs`` of shape ``[B*H*W, stop-start]`` (channels last);
        ``spatial`` is ``(B, H, W)``. Returns the node states in the same layout."""
        return self.depthwise(self.normalize(inputs, start, stop, spatial, relu=True), start, stop, spatial)

    def normalize(
        self, inputs: torch.Tensor, start: int, stop: int, spatial: tuple[int, int, int], relu: bool
    ) -> torch.Tensor:
        """InstanceNorm (affine) of nodes ``start..stop-1``, followed by a ReLU when ``relu``; same layout."""
        batch, height, width = spatial
        x = _InstanceNormReLU.apply(
            inputs.reshape(batch, height * width, stop - start),
            self.norm.weight[start:stop],
            self.norm.bias[start:stop],
            self.norm.eps,
            relu,
        )
        return x.reshape(batch * height * width, stop - start)

    def depthwise(self, inputs: torch.Tensor, start: int, stop: int, spatial: tuple[int, int, int]) -> torch.Tensor:
        """The 3x3 single-channel convolutions of nodes ``start..stop-1``; same layout."""
        batch, height, width = spatial
        count = stop - start
        x = inputs.reshape(batch, height, width, count).permute(0, 3, 1, 2)  # NCHW view of channels-last memory
        x = F.conv2d(x, self.conv.weight[start:stop], padding=1, groups=count)
        return x.permute(0, 2, 3, 1).reshape(batch * height * width, count)


def make_stem(config: GraphConfig) -> nn.Sequential:
    """g_phi, 32x32 -> 8x8 (footnote 3; layer sizes from the reference's ``downsample()``)."""
    c = config.stem_channels
    return nn.Sequential(
        nn.Conv2d(config.in_channels, c, kernel_size=3, stride=2, padding=1),
        nn.BatchNorm2d(c),
        nn.ReLU(),
        nn.Conv2d(c, c, kernel_size=3, stride=2, padding=1, groups=c),
        nn.Conv2d(c, config.input_nodes, kernel_size=1),
        nn.BatchNorm2d(config.input_nodes),  # no ReLU: the node operations start with a norm
    )


class NeuralGraph(nn.Module):
    """Shared parts of the three graphs: stem, adjacency, node operations, readout, node roles."""

    kind = "graph"

    def __init__(self, config: GraphConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or GraphConfig()
        self.num_nodes = config.num_nodes
        self.input_nodes = range(0, config.input_nodes)
        self.output_nodes = range(config.num_nodes - config.output_nodes, config.num_nodes)
        self.stem = make_stem(config)
        self.graph = Adjacency(config.num_nodes)
        self.nodes = NodeOps(config.num_nodes)
        self.classifier = nn.Linear(config.output_nodes, config.num_classes)

    def allowed_edges(self) -> torch.Tensor:  # pragma: no cover - abstract
        """Bool ``[N, N]``: the entries ``graph.weight[v, u]`` that may become real edges."""
        raise NotImplementedError

    def _stem_states(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        s = self.stem(images.contiguous(memory_format=torch.channels_last))
        batch, channels, height, width = s.shape
        return s.permute(0, 2, 3, 1).reshape(batch * height * width, channels), (batch, height, width)

    def _readout(self, outputs: torch.Tensor, spatial: tuple[int, int, int]) -> torch.Tensor:
        """h_psi on the output nodes' maps ``[B*H*W, outputs]``.

        ``paper``: the spatial mean over the whole H x W map. ``authors_code``: the
        authors' crop ``[h-1 : h+2]`` (rows and columns, h = H // 2 - 1: ``[2:5, 2:5]`` of
        an 8x8 map) followed by ``AvgPool2d(2)`` (stride 2, no padding), which on the
        3x3 crop gives one window: the mean of rows and columns ``H//2 - 2`` and
        ``H//2 - 1`` (pixels ``[2:4, 2:4]`` of 8x8), just above and left of the centre.
        """
        batch, height, width = spatial
        if self.config.graph_variant == "paper":
            features = outputs.view(batch, height * width, -1).mean(1)
        else:
            if height < 4 or width < 4:
                raise ValueError(f"the authors_code readout needs maps of at least 4x4, got {height}x{width}")
            maps = outputs.view(batch, height, width, -1)
            r, c = height // 2 - 2, width // 2 - 2
            features = maps[:, r : r + 2, c : c + 2].mean((1, 2))
        return self.classifier(features)

    def extra_repr(self) -> str:
        c = self.config
        return f"kind={self.kind}, nodes={c.num_nodes}, inputs={c.input_nodes}, outputs={c.output_nodes}"
