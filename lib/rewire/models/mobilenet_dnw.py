"""MobileNetV1-DNW (DNW Section 2.4, Appendix Table 4) and the dense MobileNetV1 baseline it is compared with.

MobileNetV1-DNW replaces the 13 depthwise-separable layers of MobileNetV1 (Howard et al. 2017) by one static
neural graph per spatial resolution; the output of graph G_i is the input of graph G_{i+1} (Section 2.4):

* **Stem** g_phi: a standard 3x3 convolution 3 -> 32 without bias (Table 4, stage 0), stride 2 on 224-px
  ImageNet input and stride 1 on 32-px CIFAR-10 (Table 4 caption: "When training on CIFAR-10 the first
  convolution has stride 1"), passed as ``stem_stride``. It has no norm or ReLU of its own: the input
  nodes' operations start with them.
* **Graph stages** (Table 4, stages 1-5), one :class:`GraphStage` each, with (inputs, outputs, stride, blocks)
  = (32, 64, 1, 1), (64, 128, 2, 2), (128, 256, 2, 2), (256, 512, 2, 6), (512, 1024, 2, 2) (:data:`STAGES`).
  ``blocks`` is the number of pointwise layers of MobileNetV1 at that resolution, so a stage has
  ``inputs + blocks * outputs`` nodes in ``blocks + 1`` node blocks (the paper's |B|), at the full x1 widths:
  sparsity comes only from the edges. The node operation is batch norm, ReLU, 3x3 depthwise convolution
  (Section 2.4, "a batch-norm (2 parameters), ReLU, 3x3 convolution (9 parameters) triplet"); the input
  nodes' convolution carries the stage's stride ("we change the convolutional stride of the input nodes to
  2"); there is no operation at the output nodes, so a stage returns the output nodes' aggregated inputs
  and the next stage's input nodes apply the norm and ReLU.
* **Readout** h_psi: batch norm over the 1024 last outputs, ReLU, global average pooling, a linear classifier
  (Table 4, stage 6: "7 x 7 pool, 1024 x 1000 FC"). In MobileNetV1-DNW-Small (``small=True``, Section 2.4)
  the classifier is a neural graph too: a ``Linear`` without bias whose weight is sparsified to as many edges
  as MobileNetV1 x d's classifier.

Each stage's edges are one adjacency weight ``stages.<i>.graph.weight`` of shape
``[blocks * outputs, inputs + (blocks - 1) * outputs]`` (rows: receiving nodes, columns: emitting nodes; the
column of hidden node c of block j is ``inputs + j * outputs + c``, its row ``j * outputs + c``). Receiver block
j may take inputs from the stage's input nodes and from the hidden blocks before it
(:meth:`GraphStage.allowed_edges`); longest path = number of MobileNetV1 layers (Section 2.4). The model is
dense and never knows how it is sparsified: a method of :mod:`rewire.methods` is applied per stage from
outside, with its own edge budget (:func:`edge_budgets`; top-k runs per stage, not over the whole network)::

    model = mobilenet_v1_dnw(num_classes=10, stem_stride=1)
    for budget in edge_budgets(model, 0.225):
        apply_method(model, "dnw", k=budget.k, allowed=budget.allowed, targets=(budget.target,))

Evaluation is block-sliced (as the static graph of :mod:`rewire.models.tiny_graphs`): the emitted states of
the input nodes are multiplied once by the adjacency columns of the inputs for *all* receiver blocks, then
each hidden block's operation runs on its block's accumulated inputs and its states are added to the later
blocks' inputs with the adjacency slice [later rows, this block's columns]. Only the feed-forward entries are
ever read, and each stage reads its effective (masked) adjacency once per forward pass. States between
operations are channels-last matrices ``[batch * height * width, nodes]``, so the aggregation is a plain GEMM.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "StageSpec",
    "STAGES",
    "MOBILENET_V1_LAYERS",
    "EdgeBudget",
    "StageAdjacency",
    "GraphStage",
    "MobileNetV1DNW",
    "MobileNetV1",
    "mobilenet_v1_dnw",
    "mobilenet_v1",
    "scaled_stages",
    "stage_edge_budget",
    "classifier_edge_budget",
    "edge_budgets",
    "GRAPH_VARIANTS",
    "check_graph_variant",
    "topk_candidates",
]


@dataclass(frozen=True)
class StageSpec:
    """One resolution of MobileNetV1-DNW (Appendix Table 4): ``inputs`` input nodes, ``blocks`` receiver
    blocks of ``outputs`` nodes each (the last block holds the output nodes), input convolution ``stride``."""

    inputs: int
    outputs: int
    stride: int
    blocks: int

    def __post_init__(self) -> None:
        for name in ("inputs", "outputs", "stride", "blocks"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"StageSpec.{name} must be a positive int, got {value!r}")

    @property
    def mobilenet_edges(self) -> int:
        """The 1x1 (pointwise) weights of MobileNetV1 x1 at this resolution: a pointwise conv with c1 inputs
        and c2 outputs is a complete bipartite graph with c1 * c2 edges (Section 2.4); the first layer maps
        ``inputs`` to ``outputs`` channels, the other ``blocks - 1`` map ``outputs`` to ``outputs``."""
        return self.inputs * self.outputs + (self.blocks - 1) * self.outputs**2

    @property
    def feed_forward_entries(self) -> int:
        """Adjacency entries a feed-forward edge may occupy: receiver block j (0-based) takes the inputs and the
        j earlier hidden blocks, so sum_j outputs * (inputs + j * outputs)."""
        return self.blocks * self.outputs * self.inputs + self.outputs**2 * self.blocks * (self.blocks - 1) // 2


# Appendix Table 4 (the resolutions of MobileNetV1's 13 depthwise-separable layers: 1, 2, 2, 6 and 2 of them)
STAGES: tuple[StageSpec, ...] = (
    StageSpec(32, 64, 1, 1),
    StageSpec(64, 128, 2, 2),
    StageSpec(128, 256, 2, 2),
    StageSpec(256, 512, 2, 6),
    StageSpec(512, 1024, 2, 2),
)

# MobileNetV1 (Howard et al. 2017, Table 1): (output channels at x1, stride) of the 13 depthwise-separable layers
MOBILENET_V1_LAYERS: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)
# MobileNetV1's first convolution: 3x3, 32 channels at x1 (Howard et al. 2017, Table 1; DNW Table 4 stage 0)
STEM_CHANNELS = 32


# ---------------------------------------------------------------------------------------------- graph stage


class StageAdjacency(nn.Module):
    """A stage's dense adjacency ``weight[v, u]`` = w_uv (rows: receivers, columns: emitters).

    Initialised uniformly in +-1/sqrt(columns): PyTorch's default for a 1x1 convolution with ``columns`` input
    channels, the layer the authors' code (github.com/allenai/dnw) holds the stage's edges in.
    """

    def __init__(self, rows: int, columns: int) -> None:
        super().__init__()
        self.rows, self.columns = rows, columns
        self.weight = nn.Parameter(torch.empty(rows, columns))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.columns)
        nn.init.uniform_(self.weight, -bound, bound)

    def extra_repr(self) -> str:
        return f"rows={self.rows}, columns={self.columns}"


def _rows(maps: torch.Tensor) -> torch.Tensor:
    """NCHW maps -> channels-last matrix ``[B*H*W, C]`` (a view when the maps are channels-last in memory)."""
    return maps.permute(0, 2, 3, 1).reshape(-1, maps.shape[1])


def _maps(rows: torch.Tensor, spatial: tuple[int, int, int]) -> torch.Tensor:
    """Channels-last matrix ``[B*H*W, C]`` -> NCHW view of the same (channels-last) memory."""
    batch, height, width = spatial
    return rows.reshape(batch, height, width, rows.shape[1]).permute(0, 3, 1, 2)


def _depthwise(channels: int, stride: int) -> nn.Conv2d:
    """A node's 3x3 single-channel convolution (Section 2.4), no bias."""
    return nn.Conv2d(channels, channels, kernel_size=3, stride=stride, padding=1, groups=channels, bias=False)


class GraphStage(nn.Module):
    """One neural graph G_i of MobileNetV1-DNW (Section 2.4, Table 4): input nodes, then receiver blocks.

    ``block_sizes`` are the node counts of the receiver blocks (``[outputs] * blocks`` in the paper's model;
    other sizes are what :func:`rewire.methods.dnw_profile.compact` builds); all but the last are hidden
    blocks with a node operation, the last holds the output nodes. Forward, for NCHW pre-activations ``x`` of
    the input nodes:

    * Z_in = dwconv_stride(ReLU(BN(x))) (the input nodes' operation, which changes the resolution);
    * the inputs of every receiver block from the input nodes: I = Z_in W[:, inputs]^T, one GEMM;
    * for each hidden block j: Z_j = dwconv(ReLU(BN_j(I_j))) and I_later += Z_j W[later rows, columns of j]^T;
    * the output: the last block's aggregated inputs I_last (NCHW, channels-last memory), pre-activation.
    """

    def __init__(self, input_nodes: int, block_sizes: Sequence[int], stride: int) -> None:
        super().__init__()
        block_sizes = tuple(block_sizes)
        if not block_sizes or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in block_sizes):
            raise ValueError(f"block_sizes must be one or more positive ints, got {block_sizes!r}")
        if isinstance(input_nodes, bool) or not isinstance(input_nodes, int) or input_nodes < 1:
            raise ValueError(f"input_nodes must be a positive int, got {input_nodes!r}")
        self.input_nodes = input_nodes
        self.block_sizes = block_sizes
        self.stride = stride
        # row r of block j: row_starts[j] <= r < row_starts[j + 1]; columns: inputs first, then hidden blocks
        self.row_starts = tuple(sum(block_sizes[:j]) for j in range(len(block_sizes) + 1))
        self.column_starts = (0,) + tuple(input_nodes + sum(block_sizes[:j]) for j in range(len(block_sizes)))
        self.input_norm = nn.BatchNorm2d(input_nodes)
        self.input_conv = _depthwise(input_nodes, stride)
        self.hidden_norms = nn.ModuleList(nn.BatchNorm2d(size) for size in block_sizes[:-1])
        self.hidden_convs = nn.ModuleList(_depthwise(size, 1) for size in block_sizes[:-1])
        self.graph = StageAdjacency(self.row_starts[-1], self.column_starts[-1])

    @property
    def output_nodes(self) -> int:
        return self.block_sizes[-1]

    def allowed_edges(self) -> torch.Tensor:
        """Bool ``[rows, columns]``: the feed-forward entries; receiver block j takes the input nodes and the
        hidden blocks before it (Section 2.4, edges from block B_i to B_j only when i < j)."""
        device = self.input_norm.weight.device  # not graph.weight: reading it would run a sparsity method's selector
        allowed = torch.zeros(self.graph.rows, self.graph.columns, dtype=torch.bool, device=device)
        for j in range(len(self.block_sizes)):
            allowed[self.row_starts[j] : self.row_starts[j + 1], : self.column_starts[j + 1]] = True
        return allowed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        adjacency = self.graph.weight  # the effective weight: a sparsity method chooses its edges once per forward
        # one column group per emitting block (inputs, hidden blocks): the backward of a split assembles the
        # adjacency gradient once, where separate 2-d slices would each build (and add) a full-size gradient
        emitters = adjacency.split((self.input_nodes,) + self.block_sizes[:-1], dim=1)
        emitted = self.input_conv(F.relu(self.input_norm(x)))
        spatial = (emitted.shape[0], emitted.shape[2], emitted.shape[3])
        inputs = _rows(emitted) @ emitters[0].t()
        for j, (norm, conv) in enumerate(zip(self.hidden_norms, self.hidden_convs)):
            size = self.block_sizes[j]
            block = _maps(inputs[:, :size].contiguous(), spatial)
            states = _rows(conv(F.relu(norm(block))))
            inputs = torch.addmm(inputs[:, size:], states, emitters[j + 1][self.row_starts[j + 1] :].t())
        return _maps(inputs, spatial)

    def extra_repr(self) -> str:
        return f"input_nodes={self.input_nodes}, block_sizes={list(self.block_sizes)}, stride={self.stride}"


# ----------------------------------------------------------------------------------------------- the model


class MobileNetV1DNW(nn.Module):
    """MobileNetV1-DNW (DNW Section 2.4, Appendix Table 4): stem, one :class:`GraphStage` per resolution,
    batch norm, ReLU, global average pooling, classifier (see the module docstring).

    ``stem_stride``: 2 for 224-px ImageNet input, 1 for 32-px CIFAR-10 (Table 4 caption). ``small``: the
    classifier has no bias and is meant to be sparsified too (MobileNetV1-DNW-Small, Section 2.4).
    ``stages`` defaults to the paper's :data:`STAGES`; smaller ones make quick tests.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        *,
        stem_stride: int = 2,
        small: bool = False,
        stages: Sequence[StageSpec] = STAGES,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        stages = tuple(stages)
        if not stages or not all(isinstance(s, StageSpec) for s in stages):
            raise ValueError("stages must be one or more StageSpec")
        for i in range(1, len(stages)):
            if stages[i].inputs != stages[i - 1].outputs:
                raise ValueError(
                    f"stage {i} has {stages[i].inputs} input nodes but stage {i - 1} has {stages[i - 1].outputs} outputs"
                )
        if stem_stride not in (1, 2):
            raise ValueError(
                f"stem_stride must be 1 (32-px CIFAR input) or 2 (224-px ImageNet input), got {stem_stride!r}"
            )
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        self.specs = stages
        self.small = bool(small)
        self.stem = nn.Conv2d(in_channels, stages[0].inputs, 3, stride=stem_stride, padding=1, bias=False)
        self.stages = nn.ModuleList(GraphStage(s.inputs, [s.outputs] * s.blocks, s.stride) for s in stages)
        self.final_norm = nn.BatchNorm2d(stages[-1].outputs)
        self.classifier = nn.Linear(stages[-1].outputs, num_classes, bias=not small)

    @property
    def num_classes(self) -> int:
        return self.classifier.out_features

    def stage_targets(self) -> tuple[str, ...]:
        """The qualified names of the stages' adjacency weights, ``"stages.<i>.graph.weight"``."""
        return tuple(f"stages.{i}.graph.weight" for i in range(len(self.stages)))

    def allowed_edges(self) -> dict[str, torch.Tensor]:
        """``{target: bool mask}``: each stage's feed-forward entries (:meth:`GraphStage.allowed_edges`)."""
        return {target: stage.allowed_edges() for target, stage in zip(self.stage_targets(), self.stages)}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.stem(images.contiguous(memory_format=torch.channels_last))
        for stage in self.stages:
            x = stage(x)
        features = F.relu(self.final_norm(x)).mean((2, 3))
        return self.classifier(features)


def scaled_stages(node_width: float) -> tuple[StageSpec, ...]:
    """:data:`STAGES` with every node count multiplied by ``node_width`` (rounded down, at least one node).

    ``node_width=1`` is the paper's model (nodes at the x1 widths). A smaller value is this repository's
    reduction for a laptop CPU (the cpu scale of Table 2): fewer nodes per stage, while
    :func:`stage_edge_budget` keeps each stage's edge budget the same fraction d^2 of its (smaller)
    MobileNetV1 edge count, so k / edges is unchanged; the matching dense baseline is MobileNetV1 x
    (d_dense * node_width).
    """
    if isinstance(node_width, bool) or not isinstance(node_width, (int, float)) or not 0 < node_width <= 1:
        raise ValueError(f"node_width must be in (0, 1] (1 = the paper's node counts), got {node_width!r}")
    return tuple(
        StageSpec(max(1, int(s.inputs * node_width)), max(1, int(s.outputs * node_width)), s.stride, s.blocks)
        for s in STAGES
    )


def mobilenet_v1_dnw(
    num_classes: int = 10, stem_stride: int = 1, small: bool = False, node_width: float = 1.0
) -> MobileNetV1DNW:
    """MobileNetV1-DNW (Section 2.4) with the paper's stages; the defaults are the CIFAR-10 model of Table 2
    (stem stride 1 on 32-px input). For ImageNet (Table 3): ``mobilenet_v1_dnw(1000, stem_stride=2)``.
    ``node_width`` < 1 scales the node counts (:func:`scaled_stages`; the cpu scale's reduction)."""
    return MobileNetV1DNW(num_classes, stem_stride=stem_stride, small=small, stages=scaled_stages(node_width))


# ------------------------------------------------------------------------------------------- edge budgets


@dataclass(frozen=True)
class EdgeBudget:
    """What one sparsified tensor gets: its qualified name, k real edges and the candidate entries
    (``None``: every entry). Pass to ``apply_method(model, method, k=b.k, allowed=b.allowed, targets=(b.target,))``."""

    target: str
    k: int
    allowed: torch.Tensor | None
    index: int  # position in the list: 0..4 for the stages, 5 for the Small classifier


def _scaled_count(count: float) -> int:
    """ceil(count), ignoring float noise of 1e-6 (0.225**2 * 2048 = 103.68 -> 104)."""
    return math.ceil(round(count, 6))


def _check_width(width_mult: float) -> float:
    if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)) or not width_mult > 0:
        raise ValueError(f"the width multiplier d must be a positive number, got {width_mult!r}")
    return float(width_mult)


def stage_edge_budget(spec: StageSpec, width_mult: float) -> int:
    """k of one stage (Section 2.4: "the same number of edges for resolution s x s as the corresponding
    MobileNetV1 x d"): k = ceil(d^2 * (inputs * outputs + (blocks - 1) * outputs^2)).

    The pointwise layers of MobileNetV1 x d have d^2 times the edges of x1. The authors' code turns this count
    into a per-stage prune rate p and keeps numel - floor(p * numel) entries, i.e. the count rounded *up*
    (d = 0.225, stage 1: 0.050625 * 24,576 = 1,244.16 -> 1,245, the value their configuration uses).
    """
    return _scaled_count(_check_width(width_mult) ** 2 * spec.mobilenet_edges)


def classifier_edge_budget(width_mult: float, features: int, num_classes: int) -> int:
    """k of MobileNetV1-DNW-Small's classifier: as many edges as MobileNetV1 x d's (d * features) x classes
    classifier (Section 2.4), rounded up like the stages (d = 0.225, 1000 classes: 230,400)."""
    return _scaled_count(_check_width(width_mult) * features * num_classes)


def edge_budgets(model: MobileNetV1DNW, width_mult: float) -> tuple[EdgeBudget, ...]:
    """Per stage (and for a Small model the classifier): target name, k and allowed entries for width ``d``.

    Top-k runs per stage, each with its own budget (:func:`stage_edge_budget`), over that stage's feed-forward
    entries. d = 0.225 gives k = 104; 1,245; 4,977; 72,991; 79,627 (sum 158,944). Raises ``ValueError``
    before any work when a stage's k would exceed its feed-forward entries (or d <= 0), naming the stage and
    the range of d every stage accepts.
    """
    d = _check_width(width_mult)
    # ceil(d^2 E) <= F  <=>  d <= sqrt(F / E) for every stage; the Small classifier needs d <= 1
    limits = [math.sqrt(s.feed_forward_entries / s.mobilenet_edges) for s in model.specs]
    if model.small:
        limits.append(1.0)
    d_max = min(limits)
    budgets = []
    for index, (target, spec, stage) in enumerate(zip(model.stage_targets(), model.specs, model.stages)):
        k = stage_edge_budget(spec, d)
        if not 1 <= k <= spec.feed_forward_entries:
            raise ValueError(
                f"width multiplier d={d} gives stage {index} ({target}) k={k} edges, but it has "
                f"{spec.feed_forward_entries} feed-forward entries; choose d in (0, {d_max:.4f}]"
            )
        budgets.append(EdgeBudget(target, k, stage.allowed_edges(), index))
    if model.small:
        k = classifier_edge_budget(d, model.classifier.in_features, model.num_classes)
        if k > model.classifier.weight.numel():
            raise ValueError(
                f"width multiplier d={d} gives the classifier k={k} edges of {model.classifier.weight.numel()}; "
                f"choose d in (0, {d_max:.4f}]"
            )
        budgets.append(EdgeBudget("classifier.weight", k, None, len(budgets)))
    return tuple(budgets)


# ----------------------------------------------------------------------------------- paper or authors' code

# The names of Table 1's variants (rewire.models.tiny_graphs.GRAPH_VARIANTS): "paper" reads the paper's text,
# "authors_code" computes what the authors' code behind the paper's numbers computes.
GRAPH_VARIANTS = ("paper", "authors_code")


def check_graph_variant(graph_variant: str) -> str:
    """``graph_variant`` if it is one of :data:`GRAPH_VARIANTS`; otherwise ``ValueError`` naming the valid ones."""
    if graph_variant not in GRAPH_VARIANTS:
        raise ValueError(
            f"graph_variant must be one of {', '.join(GRAPH_VARIANTS)}, got {graph_variant!r}; e.g. graph_variant: paper"
        )
    return graph_variant


def topk_candidates(budget: EdgeBudget, graph_variant: str) -> torch.Tensor | None:
    """The entries a top-k choice of ``budget``'s tensor ranks (``allowed`` for a selector or :func:`topk_mask`).

    ``"paper"``: the feed-forward entries (``budget.allowed``; Section 2.4, edges only from a block to a later
    block), so all k chosen edges act. ``"authors_code"``: ``None``, every entry of the adjacency matrix: the
    authors' code takes the top-k over the whole matrix for DNW, No Update, the lottery ticket and fine-tuning
    (and targeted dropout's gamma), so entries that are not feed-forward can be chosen; the model reads only the
    feed-forward entries (:meth:`GraphStage.forward`), so a chosen entry outside them uses up the budget and
    never acts. At x0.25 nodes, stage 3 (768 x 704 entries, 294,912 feed-forward) keeps k = 4,562, and a
    uniform initialisation puts about 45 % of the first choice outside the feed-forward entries (2,137 in the
    authors' model).
    """
    return budget.allowed if check_graph_variant(graph_variant) == "paper" else None


# ------------------------------------------------------------------------------------- dense MobileNetV1


def _conv_bn_relu(cin: int, cout: int, kernel: int, stride: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class MobileNetV1(nn.Module):
    """Dense MobileNetV1 with width multiplier d (Howard et al. 2017, Table 1; DNW Table 4's left column).

    A 3x3 convolution to 32d channels (``stem_stride``: 2 on ImageNet, 1 on CIFAR-10 as in DNW Table 4's
    caption), then the 13 depthwise-separable layers of :data:`MOBILENET_V1_LAYERS` (3x3 depthwise with the
    layer's stride, then 1x1 pointwise), batch norm and ReLU after every convolution ("Batch-norm and ReLU
    follow each convolution in MobileNetV1", Table 4 caption), global average pooling and a linear classifier.
    Channel counts are int(c * d) (exact for d = 0.25, 0.5, 0.75 and 1). PyTorch's default initialisation.
    """

    def __init__(self, width_mult: float = 1.0, num_classes: int = 1000, *, stem_stride: int = 2, in_channels: int = 3):
        super().__init__()
        d = _check_width(width_mult)

        def width(channels: int) -> int:
            if int(channels * d) < 1:
                raise ValueError(f"width multiplier {d} leaves a layer of {channels} channels with none")
            return int(channels * d)

        self.width_mult = d
        channels = width(STEM_CHANNELS)
        self.stem = _conv_bn_relu(in_channels, channels, 3, stem_stride)
        layers = []
        for out, stride in MOBILENET_V1_LAYERS:
            layers.append(_conv_bn_relu(channels, channels, 3, stride, groups=channels))  # depthwise
            layers.append(_conv_bn_relu(channels, width(out), 1, 1))  # pointwise
            channels = width(out)
        self.layers = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.layers(self.stem(images)).mean((2, 3)))


def mobilenet_v1(width_mult: float = 0.25, num_classes: int = 10, stem_stride: int = 1) -> MobileNetV1:
    """Dense MobileNetV1 x d; the defaults are DNW Table 2's CIFAR-10 baseline MobileNetV1 (x0.25)."""
    return MobileNetV1(width_mult, num_classes, stem_stride=stem_stride)
