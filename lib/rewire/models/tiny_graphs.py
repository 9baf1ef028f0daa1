"""The tiny CIFAR-10 neural graphs of DNW Table 1 (Section 3.1, Eq. 1 and 10-13), and wiring diagnostics.

Three dense models share one stem, one set of node operations and one readout,
and differ in how information flows over the adjacency weight ``graph.weight``
(shape ``[N, N]``; rows are receiving nodes v, columns emitting nodes u, so
``graph.weight[v, u]`` is the paper's w_uv):

* :class:`StaticGraph`: a block DAG (5 blocks, Section 3.1; edges only from a
  block to a later block, Section 2.4), evaluated block by block, reading only
  the usable slices of the adjacency;
* :class:`DiscreteTimeGraph`: L = 5 steps of Z <- f(A Z) with one shared
  adjacency (Eq. 11-12), every N x N entry allowed;
* :class:`ContinuousTimeGraph`: dZ/dt = f(A Z) from t = 0 to 1 (Eq. 13) with
  ``torchdiffeq``.

The models are dense and never know how they are sparsified: DNW, the random
graph and the ablation are applied to ``graph.weight`` from outside by
:func:`rewire.methods.apply_method`, with the model's method-independent
:meth:`NeuralGraph.allowed_edges` as the candidate set::

    model = StaticGraph(GraphConfig())
    apply_method(model, "dnw", k=model.config.k, allowed=model.allowed_edges(), targets=("graph.weight",))

Architecture (paper Section 3.1 and footnotes 3-4; sizes from the DNW authors' code,
github.com/allenai/dnw, its CIFAR-10 tiny-graph configuration):

* **Stem** g_phi (32x32 -> 8x8, footnote 3: "two 3x3 strided convolutions, the
  first standard, the second depthwise-separable"): Conv3x3 3->16 stride 2 (+bias),
  BN, ReLU, depthwise Conv3x3 stride 2 (+bias), Conv1x1 16->32 (+bias), BN. Its 32
  output channels are the states of the 32 input nodes.
* **Node operation** f_v (Section 3.1: "At each node we perform Instance
  Normalization, ReLU, and a 3x3 single channel convolution"): InstanceNorm2d
  (affine), ReLU, depthwise 3x3 convolution without bias. Parameters per node: 9
  conv weights and 2 norm parameters, shared over time in the dynamic graphs.
* **Readout** h_psi: the spatial mean of the output nodes' states, then
  Linear(100, 10).

Variants (``GraphConfig.graph_variant``; ``"paper"`` is the default, and its outputs
are unchanged by the option's introduction):

* ``"paper"``: what the paper's text says. Eq. 1 and Section 2.4 (f_v at every
  node, edges only from a block to a later block, u < v) for the static graph;
  Eq. 11-13, "at each time step we send information through the edges using A then
  apply a function at each node", with f_v = IN, ReLU, 3x3 conv (Section 3.1), for
  the dynamic graphs: Z <- dwconv(ReLU(IN(A Z))); the readout is a spatial mean
  (the paper does not describe it). The design decisions below describe it (masking
  DNW to the usable entries and the non-in-place ODE state hold for both variants).
* ``"authors_code"``: what the authors' code computes (github.com/allenai/dnw,
  re-implemented from its description), i.e. the models behind the numbers of the
  paper's Table 1:

  - static: the node operation runs on all nodes of every block, the last block
    included (no sink pruning), and the ``output_nodes`` outputs are raw sums (no
    node operation): their inputs from the earlier blocks plus one more aggregation
    from the states of the whole last block, themselves included (so 5 edge hops
    with the default 5 blocks). ``allowed_edges()`` adds the entries
    [outputs, last block] (264,960 usable entries by default, none of them sinks);
  - dynamic (discrete and continuous): the state update is s <- IN(W dwconv(ReLU(s)))
    (ReLU and convolution of every node, then the aggregation, then the affine
    instance norm without ReLU); the output is the normalised state. The continuous
    graph does *not* reproduce the reference's in-place ReLU on the solver's state;
  - readout (all three graphs): the output maps are cropped to rows and columns
    [h-1 : h+2] with h = H // 2 - 1 (``[2:5, 2:5]`` of an 8x8 map), then
    ``AvgPool2d(2)`` (kernel 2, stride 2, no padding) leaves one window of the 3x3
    crop: the mean of the 2x2 pixels ``[2:4, 2:4]`` (rows/columns H//2 - 2 and
    H//2 - 1, just above-left of the centre; maps must be at least 4x4), then the
    linear classifier.

Both variants have the same parameters (the reference's per-block instance norms
are per-node affine parameters here), so the parameter budget is the same.

Design decisions (where the reference code and the paper differ; see the module
docstrings of the classes for details):

* **Output nodes** are the last ``output_nodes`` = 100 nodes (the reference's
  ``feature_dim``), and the readout takes their states Z_v = f_v(I_v) (Eq. 1:
  the node operation is applied at every node, output nodes included). The
  reference instead reads the raw aggregated inputs of nodes 700-799 after an
  extra aggregation from the whole last block, themselves included, which breaks
  the paper's u < v rule.
* **Static graph sinks.** With the reference block sizes (32, 192, 192, 192, 192)
  and 100 output nodes, the other 92 nodes of the last block (608-699) would have
  no children in a strict block DAG, so nothing they receive can reach the loss.
  ``allowed_edges()`` therefore leaves them out: an entry is allowed when it goes
  from a block to a later block *and* its receiver can reach an output node. This
  keeps the random graph from wasting about a fifth of its edges (55,936 of the
  245,760 block-lower-triangular entries lead into those sinks) and DNW from
  starting with dead edges. The sinks keep their (unused) node parameters so that
  node indices and the parameter split match the reference's 41,458.
* **Input nodes** of the static graph apply their own node operation to the stem
  output before emitting (as in the reference, and as Section 2.4 puts it: f at
  every non-output node). In the dynamic graphs the stem output is the initial
  state Z(0) (Eq. 10) and f acts after every aggregation, so input nodes are not
  clamped (they "may now have parents").
* **Edges are masked to the usable entries** (the reference's static DNW picked
  its top-k over all 640,000 entries, of which only 41% are ever read, so most
  of its initial edges were unusable).
* **No in-place operation on the ODE state** (the reference applied ReLU(inplace)
  to the solver's own state, which clamps it at every accepted step).

Performance: node states are kept channels-last, as matrices of shape
``[batch * height * width, nodes]``, so that aggregation over edges is a plain
GEMM with a slice of the adjacency and the depthwise convolution runs on
channels-last memory (about 2x faster than NCHW for 8x8 maps on the 2-core CPU).
Instance norm and ReLU are one autograd function working on that layout
(``F.instance_norm`` would transpose to NCHW and back; ``group_norm`` on
channels-last memory was measured and is slower).
``benchmarks/bench_static_graph.py`` measures a training step.

Mixed precision: the graphs run under ``torch.autocast(device, dtype=torch.bfloat16)``
(tested against float32): GEMMs and convolutions in bf16, instance-norm statistics
and gradients in float32 inside the fused function, and the continuous graph's ODE
state in float32 (the dynamics are evaluated in bf16 and cast back).
``benchmarks/bench_dynamic_graph.py`` measures the dynamic graphs in fp32 and bf16.
A sparse (CSR) aggregation was measured and not adopted (see that benchmark).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "GraphConfig",
    "Adjacency",
    "NodeOps",
    "NeuralGraph",
    "StaticGraph",
    "DiscreteTimeGraph",
    "ContinuousTimeGraph",
    "build_graph",
    "count_parameters",
]

# torchdiffeq solvers that step on a fixed grid and need ``step_size`` (others are adaptive)
FIXED_STEP_SOLVERS = ("euler", "midpoint", "heun2", "heun3", "rk4", "explicit_adams", "implicit_adams", "fixed_adams")
ADAPTIVE_SOLVERS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
# where the paper's text and the authors' code differ (see the module docstring)
GRAPH_VARIANTS = ("paper", "authors_code")


@dataclass(frozen=True)
class GraphConfig:
    """Sizes and solver options of the tiny neural graphs; the defaults are the paper's (Section 3.1).

    Fields used by one kind of graph only are ignored by the others
    (``block_sizes``: static; ``steps``: discrete time; solver fields: continuous time).
    ``k`` is not used by the dense models; it is the edge budget the methods apply.
    """

    # the authors' configuration: `dim: 800` nodes
    num_nodes: int = 800
    # the stem's output channels, one per input node (reference `downsample_dim: 32`)
    input_nodes: int = 32
    # the last nodes, read out by the classifier (reference `feature_dim: 100`)
    output_nodes: int = 100
    # static graph: Section 3.1 "The static graph uses 5 blocks"; sizes hard-coded in the reference
    block_sizes: tuple[int, ...] = (32, 192, 192, 192, 192)
    # real edges: reference `prune_rate: 0.95`, so k = 800^2 - floor(0.95 * 800^2) = 32,000
    k: int = 32_000
    # discrete time: Section 3.1 "the discrete time graph uses 5 time steps"
    steps: int = 5
    # stem width: reference downsample(), Conv3x3 3 -> 16
    stem_channels: int = 16
    in_channels: int = 3
    num_classes: int = 10
    # continuous time: footnote 4, "a 5th order Runge-Kutta method [...] from t = 0 to 1 with tolerance 0.001"
    solver: str = "dopri5"
    rtol: float = 1e-3
    atol: float = 1e-3
    # fixed-step solvers (rk4, euler, ...): the step size in units of the integration time 1
    step_size: float | None = None
    # integrate the backward pass with the adjoint method (Section 2.3) instead of backprop through the solver
    adjoint: bool = False
    # "paper": the reading of the paper's text (Eq. 1, 11-13); "authors_code": the computation of the
    # authors' code, which produced Table 1 (module docstring, "Variants")
    graph_variant: str = "paper"

    def __post_init__(self) -> None:
        problems = []
        for name in (
            "num_nodes",
            "input_nodes",
            "output_nodes",
            "k",
            "steps",
            "stem_channels",
            "in_channels",
            "num_classes",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name} must be a positive int, got {value!r}")
        if not problems and self.input_nodes + self.output_nodes > self.num_nodes:
            problems.append(
                f"input_nodes + output_nodes ({self.input_nodes} + {self.output_nodes}) exceed num_nodes ({self.num_nodes})"
            )
        if (
            any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in self.block_sizes)
            or len(self.block_sizes) < 2
        ):
            problems.append(f"block_sizes must hold at least two positive ints, got {self.block_sizes!r}")
        if self.solver not in FIXED_STEP_SOLVERS + ADAPTIVE_SOLVERS:
            problems.append(
                f"solver must be one of {', '.join(ADAPTIVE_SOLVERS + FIXED_STEP_SOLVERS)}, got {self.solver!r}"
            )
        elif self.solver in FIXED_STEP_SOLVERS and (self.step_size is None or not 0 < self.step_size <= 1):
            problems.append(f"the fixed-step solver {self.solver!r} needs step_size in (0, 1], got {self.step_size!r}")
        if self.graph_variant not in GRAPH_VARIANTS:
            problems.append(f"graph_variant must be one of {', '.join(GRAPH_VARIANTS)}, got {self.graph_variant!r}")
        if not (self.rtol > 0 and self.atol > 0):
            problems.append(f"rtol and atol must be positive, got {self.rtol!r}, {self.atol!r}")
        if problems:
            raise ValueError("invalid GraphConfig: " + "; ".join(problems))

    def replace(self, **changes: Any) -> GraphConfig:
        return dataclasses.replace(self, **changes)


# ------------------------------------------------------------------------- building blocks


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


# ------------------------------------------------------------------------------ static


class StaticGraph(NeuralGraph):
    """Static neural graph (Sections 2.1 and 3.1): a DAG over blocks of nodes.

    Nodes are split into ``block_sizes`` (default 32 input nodes, then 4 blocks of
    192: N = 800). An edge (u, v) is allowed when u's block precedes v's
    (Section 2.4) and v can reach an output node (see the module docstring on
    sinks). Evaluation is block by block (Eq. 1):

    * the input nodes' states are f_v applied to the stem channels;
    * for each later block j, I_j = sum_{i<j} W[rows of j, columns of block i] . Z_i,
      one GEMM per earlier block with a slice of the effective adjacency (never a
      masked N x N product), and Z_j = f_j(I_j); in the last block only the output
      rows are computed.

    Only ``usable_entries`` (189,824 by default) of the N^2 entries are ever read.
    With ``graph_variant="authors_code"`` every node of the last block is computed,
    and the outputs are their raw inputs plus one more aggregation from the whole
    last block (264,960 usable entries; module docstring, "Variants").
    """

    kind = "static"

    def __init__(self, config: GraphConfig | None = None) -> None:
        super().__init__(config)
        c = self.config
        if sum(c.block_sizes) != c.num_nodes:
            raise ValueError(f"block_sizes {c.block_sizes} sum to {sum(c.block_sizes)}, not num_nodes={c.num_nodes}")
        if c.block_sizes[0] != c.input_nodes:
            raise ValueError(
                f"the first block holds the input nodes: block_sizes[0]={c.block_sizes[0]} "
                f"but input_nodes={c.input_nodes}"
            )
        if c.output_nodes > c.block_sizes[-1]:
            raise ValueError(
                f"the output nodes must lie in the last block: output_nodes={c.output_nodes} "
                f"> block_sizes[-1]={c.block_sizes[-1]}"
            )
        self.block_starts = tuple(int(s) for s in np.cumsum((0,) + tuple(c.block_sizes)))
        self.authors_code = c.graph_variant == "authors_code"
        # receivers of block j (j >= 1): its nodes; in the paper variant only the output nodes of the last block
        self.receivers = tuple(
            (
                self.block_starts[j]
                if j < len(c.block_sizes) - 1 or self.authors_code
                else c.num_nodes - c.output_nodes,
                self.block_starts[j + 1],
            )
            for j in range(1, len(c.block_sizes))
        )
        # authors_code: the last block's non-output nodes feed the outputs' extra aggregation, so none is a sink
        sinks_stop = self.block_starts[-2] if self.authors_code else c.num_nodes - c.output_nodes
        self.sink_nodes = range(self.block_starts[-2], sinks_stop)

    @property
    def usable_entries(self) -> int:
        return int(self.allowed_edges().sum())

    def allowed_edges(self) -> torch.Tensor:
        allowed = torch.zeros(self.num_nodes, self.num_nodes, dtype=torch.bool, device=self.classifier.weight.device)
        for j, (lo, hi) in enumerate(self.receivers, start=1):
            allowed[lo:hi, : self.block_starts[j]] = True
        if self.authors_code:  # the outputs' extra aggregation from the whole last block, themselves included
            allowed[self.output_nodes.start :, self.block_starts[-2] :] = True
        return allowed

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        stem, spatial = self._stem_states(images)
        adjacency = self.graph.weight  # effective weight: its edges are chosen once per forward
        states = [self.nodes(stem, 0, self.config.input_nodes, spatial)]
        for lo, hi in self.receivers:
            # I_v = sum_u w_uv Z_u (Eq. 2), one GEMM per earlier block on the slice W[rows of v, columns of
            # block i]; accumulating with addmm beats concatenating the earlier states (no copies)
            inputs = None
            for i, emitters in enumerate(states):
                block = adjacency[lo:hi, self.block_starts[i] : self.block_starts[i + 1]].t()
                inputs = emitters @ block if inputs is None else torch.addmm(inputs, emitters, block)
            states.append(self.nodes(inputs, lo, hi, spatial))
        if not self.authors_code:
            return self._readout(states[-1], spatial)
        # authors_code: the outputs are raw sums, their inputs from blocks 0..L-2 plus one more aggregation
        # from the states of the whole last block (themselves included), with no node operation
        first_output = self.output_nodes.start
        last = self.block_starts[-2]
        block = adjacency[first_output:, last:].t()
        outputs = torch.addmm(inputs[:, first_output - last :], states[-1], block)
        return self._readout(outputs, spatial)


# ------------------------------------------------------------------------------ dynamic


class _DynamicGraph(NeuralGraph):
    """Dynamic neural graphs (Section 2.3): every N x N entry allowed (cycles and self-loops too)."""

    def allowed_edges(self) -> torch.Tensor:
        return torch.ones(self.num_nodes, self.num_nodes, dtype=torch.bool, device=self.classifier.weight.device)

    def _initial_state(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """Eq. 10: the stem output in the input nodes, zeros elsewhere; layout ``[B*H*W, N]``."""
        stem, spatial = self._stem_states(images)
        rest = stem.new_zeros(stem.shape[0], self.num_nodes - stem.shape[1])
        return torch.cat([stem, rest], dim=1), spatial

    def _step(self, state: torch.Tensor, adjacency: torch.Tensor, spatial) -> torch.Tensor:
        """One update of the state (channels last, ``[B*H*W, N]``).

        ``paper``: f(A Z) = dwconv(ReLU(IN(A Z))), aggregate over the edges, then every
        node's operation (Eq. 12). ``authors_code``: IN(A dwconv(ReLU(s))), every node's
        ReLU and convolution, then the aggregation, then the (affine) instance norm.
        """
        n = self.num_nodes
        if self.config.graph_variant == "paper":
            return self.nodes(state @ adjacency.t(), 0, n, spatial)
        emitted = self.nodes.depthwise(F.relu(state), 0, n, spatial)  # not in place: the state may be the solver's
        return self.nodes.normalize(emitted @ adjacency.t(), 0, n, spatial, relu=False)

    def _outputs(self, state: torch.Tensor) -> torch.Tensor:
        return state[:, self.output_nodes.start : self.output_nodes.stop]


class DiscreteTimeGraph(_DynamicGraph):
    """Discrete-time neural graph (Eq. 11-12): Z(l+1) = f(A Z(l)) for l = 0..L-1, output h(Z_VE(L)).

    One adjacency and one set of node operations shared by all ``steps`` (L = 5).
    The effective adjacency is read once per forward (one edge choice for all steps).
    """

    kind = "discrete_time"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        state, spatial = self._initial_state(images)
        adjacency = self.graph.weight
        for _ in range(self.config.steps):
            state = self._step(state, adjacency, spatial)
        return self._readout(self._outputs(state), spatial)


class ContinuousTimeGraph(_DynamicGraph):
    """Continuous-time neural graph (Eq. 13): dZ/dt = f(A Z), Z(0) from Eq. 10, output h(Z_VE(1)).

    Integrated with ``torchdiffeq.odeint`` (``adjoint=True``: ``odeint_adjoint``),
    by default dopri5 with rtol = atol = 1e-3 (footnote 4); fixed-step solvers
    (``solver="rk4"`` or ``"euler"`` with ``step_size``) keep the CPU cost bounded.
    The state is never modified in place. ``last_nfe`` counts the function
    evaluations since the last forward pass began (adaptive solvers take more as
    training goes on; with ``adjoint`` the backward pass adds its own).
    """

    kind = "continuous_time"
    integration_time = 1.0  # footnote 4: "from t = 0 to 1"

    def __init__(self, config: GraphConfig | None = None) -> None:
        super().__init__(config)
        self.last_nfe = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        import torchdiffeq

        state, spatial = self._initial_state(images)
        if state.dtype in (torch.float16, torch.bfloat16):
            state = state.float()  # under autocast: integrate in float32, evaluate the dynamics in low precision
        adjacency = self.graph.weight  # chosen once; the dynamics close over the effective weight
        self.last_nfe = 0

        def dynamics(t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
            self.last_nfe += 1
            return self._step(z, adjacency, spatial).to(z.dtype)

        c = self.config
        times = torch.tensor([0.0, self.integration_time], dtype=state.dtype, device=state.device)
        options = {"step_size": c.step_size} if c.solver in FIXED_STEP_SOLVERS else None
        kwargs = dict(rtol=c.rtol, atol=c.atol, method=c.solver, options=options)
        if c.adjoint:
            params = tuple(p for p in self.nodes.parameters() if p.requires_grad)
            if adjacency.requires_grad:
                params = params + (adjacency,)
            final = torchdiffeq.odeint_adjoint(dynamics, state, times, adjoint_params=params, **kwargs)[-1]
        else:
            final = torchdiffeq.odeint(dynamics, state, times, **kwargs)[-1]
        return self._readout(self._outputs(final), spatial)


GRAPHS = {"static": StaticGraph, "discrete_time": DiscreteTimeGraph, "continuous_time": ContinuousTimeGraph}


def build_graph(kind: str, config: GraphConfig | None = None) -> NeuralGraph:
    """``"static"``, ``"discrete_time"`` or ``"continuous_time"``."""
    if kind not in GRAPHS:
        raise ValueError(f"unknown graph kind {kind!r}; known kinds: {', '.join(GRAPHS)}")
    return GRAPHS[kind](config)


# -------------------------------------------------------------------------- parameters


def count_parameters(model: NeuralGraph, k: int | None = None) -> dict[str, Any]:
    """The paper's parameter budget ("41k", Table 1) and what is actually stored.

    budget = k edges + node convolutions (N * 9) + stem + classifier, the split of
    the reference (32,000 + 7,200 + 1,248 + 1,010 = 41,458);
    ``budget_with_norm_affine`` adds the 2N InstanceNorm parameters (43,058).
    ``stored_adjacency`` is the dense candidate weight (N^2 entries), which is
    what is stored and trained (with its optimizer state); ``stored_total`` counts
    every parameter tensor of the model as held in memory.
    """
    k = model.config.k if k is None else k
    stem = sum(p.numel() for p in model.stem.parameters())
    classifier = sum(p.numel() for p in model.classifier.parameters())
    node_convs = model.nodes.conv.weight.numel()
    node_norms = model.nodes.norm.weight.numel() + model.nodes.norm.bias.numel()
    budget = k + node_convs + stem + classifier
    result = {
        "edges": k,
        "node_convs": node_convs,
        "stem": stem,
        "classifier": classifier,
        "budget": budget,
        "node_norm_affine": node_norms,
        "budget_with_norm_affine": budget + node_norms,
        "stored_adjacency": model.num_nodes**2,
        "stored_total": sum(p.numel() for p in model.parameters()),
        "note": (
            f"budget = edges + node convs + stem + classifier (the paper's '41k'); the adjacency is stored "
            f"and trained dense ({model.num_nodes}x{model.num_nodes} = {model.num_nodes**2:,} entries, "
            f"plus optimizer state), so stored_total is larger"
        ),
    }
    if isinstance(model, StaticGraph):
        result["usable_adjacency_entries"] = model.usable_entries
        result["sink_nodes"] = len(model.sink_nodes)
    return result
