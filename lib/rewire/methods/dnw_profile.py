"""Parameters and multiply-adds of MobileNetV1-DNW as DNW's Table 3 counts them, and its compact inference model.

DNW (Section 2.4, Table 3) counts "FLOPs" as multiply-adds (footnote 1) of the network as it would run with
its real edges only, after skipping the work of dead neurons ("neurons often *die* (have no output) and we may
then skip the depthwise convolution during inference"). The authors' profiler (github.com/allenai/dnw,
``genutil/model_profiling.py``) counts, for an input of ``image_size`` pixels (224 for Table 3):

* **edges**: every real edge of a stage is one multiply-add per pixel of the stage's output resolution S
  (the 1x1 aggregation runs after the input nodes' strided depthwise convolution): k * S^2;
* **depthwise convolutions**: 9 * S^2 for each *live* node of the stage, i.e. each input or hidden node
  with at least one outgoing real edge. Deadness is local, not transitive (a node fed only by dead nodes is
  live when it emits), and output nodes have no operation of their own (they are the next stage's inputs);
* **stem**: in_channels * 9 per pixel of its output for each stem channel whose stage-0 input node is live;
* **pooling**: S^2 per final output node with at least one incoming real edge (its profiler counts the
  7x7 average pool; 1024 * 49 = 50,176 at most, below Table 3's rounding); reported as ``pool_macs`` and
  included in ``macs`` (``macs_without_pool`` leaves it out);
* **classifier**: (final outputs with an incoming real edge) x classes; for MobileNetV1-DNW-Small, its real
  edges k_fc. A final output without incoming edges holds a constant, which folds into the classifier bias.

Batch norm, ReLU and biases are not counted as multiply-adds. **Parameters** are counted the same way: real
edges + 9 per live node + the live stem channels' weights + the classifier (live outputs x classes plus the
bias, or k_fc for Small). Batch-norm parameters (2 per live node and per live final output) are reported as
``norm_params`` and not included: Table 3's MobileNetV1 x0.25 row (0.5M, Howard et al.) counts weights only,
and including them moves x0.225 by about 0.01M, below the table's rounding either way.

:func:`mobilenet_v1_cost` is the closed-form count of the dense MobileNetV1 x d (convolutions + classifier;
Howard et al. 2017 report 41M multiply-adds and 0.5M parameters for x0.25 at 224 px).

:func:`compact` builds the physical inference model the count describes at the node level: dead nodes'
channels are dropped (their depthwise convolution, batch-norm entries, adjacency columns and the rows that
compute their inputs; a stage-0 dead input also drops its stem channel), and final outputs without incoming
edges are folded into the classifier bias. Its edges are still evaluated as dense GEMMs over the kept nodes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from rewire.models.mobilenet_dnw import (
    MOBILENET_V1_LAYERS,
    STEM_CHANNELS,
    GraphStage,
    MobileNetV1DNW,
)
from rewire.sparse import masks

__all__ = [
    "StageWiring",
    "StageCost",
    "GraphProfile",
    "DenseCost",
    "stage_wiring",
    "profile_graph",
    "mobilenet_v1_cost",
    "CompactMobileNetV1DNW",
    "compact",
]

# every node operation and the stem are 3x3 convolutions (Section 2.4, Table 4)
KERNEL_TAPS = 9


def _conv_out(size: int, stride: int) -> int:
    """Output size of a 3x3 convolution with padding 1."""
    return (size + 2 - 3) // stride + 1


# ------------------------------------------------------------------------------------------------- wiring


@dataclass(frozen=True)
class StageWiring:
    """The real edges of one stage and which of its nodes they leave alive (all bool tensors on the CPU)."""

    mask: torch.Tensor  # [rows, columns]: real edges among the feed-forward entries (the ones the forward reads)
    live_inputs: torch.Tensor  # [input nodes]: at least one outgoing real edge
    live_hidden: tuple[torch.Tensor, ...]  # per hidden block, [block size]: at least one outgoing real edge
    fed_outputs: torch.Tensor  # [output nodes]: at least one incoming real edge

    @property
    def real_edges(self) -> int:
        return int(self.mask.sum())

    @property
    def live_nodes(self) -> int:
        return int(self.live_inputs.sum()) + sum(int(h.sum()) for h in self.live_hidden)


@torch.no_grad()
def stage_wiring(stage: GraphStage) -> StageWiring:
    """Real edges and live nodes of ``stage`` now: the mask its sparsity method chooses from the current
    weights (every feed-forward entry for a dense stage), restricted to the entries the forward reads."""
    allowed = stage.allowed_edges().cpu()
    if masks.is_sparse(stage.graph, "weight"):
        mask = masks.current_mask(stage.graph, "weight", recompute=True).cpu() & allowed
    else:
        mask = allowed
    emits = mask.any(0)
    starts = stage.column_starts
    hidden = tuple(emits[starts[j + 1] : starts[j + 2]] for j in range(len(stage.block_sizes) - 1))
    fed = mask[stage.row_starts[-2] :].any(1)
    return StageWiring(mask, emits[: stage.input_nodes], hidden, fed)


def _classifier_edges(model: MobileNetV1DNW) -> int:
    if masks.is_sparse(model.classifier, "weight"):
        return int(masks.current_mask(model.classifier, "weight", recompute=True).sum())
    return model.classifier.weight.numel()


# ------------------------------------------------------------------------------------------------ counting


@dataclass(frozen=True)
class StageCost:
    """Multiply-adds and parameters of one stage (module docstring)."""

    resolution: int  # S: the stage's output height = width
    real_edges: int
    nodes: int  # input + hidden nodes (the ones with a depthwise convolution)
    live_nodes: int
    edge_macs: int  # real_edges * S^2
    depthwise_macs: int  # 9 * S^2 * live_nodes
    depthwise_params: int  # 9 * live_nodes


@dataclass(frozen=True)
class GraphProfile:
    """DNW Table 3's count of one MobileNetV1-DNW (module docstring); ``macs`` and ``params`` are the totals."""

    image_size: int
    stages: tuple[StageCost, ...]
    stem_channels: int
    stem_live_channels: int
    stem_macs: int
    stem_params: int
    final_outputs: int
    final_live_outputs: int
    pool_macs: int
    classifier_macs: int
    classifier_params: int
    norm_params: int  # batch-norm weights and biases of live nodes and live final outputs (not in params)

    @property
    def edge_macs(self) -> int:
        return sum(s.edge_macs for s in self.stages)

    @property
    def depthwise_macs(self) -> int:
        return sum(s.depthwise_macs for s in self.stages)

    @property
    def real_edges(self) -> int:
        return sum(s.real_edges for s in self.stages)

    @property
    def macs_without_pool(self) -> int:
        return self.edge_macs + self.depthwise_macs + self.stem_macs + self.classifier_macs

    @property
    def macs(self) -> int:
        """The authors' profiler's total, the "FLOPs" of Table 3 (pooling included)."""
        return self.macs_without_pool + self.pool_macs

    @property
    def params(self) -> int:
        """Table 3's "Params": real edges, live nodes' depthwise weights, live stem channels, classifier."""
        depthwise = sum(s.depthwise_params for s in self.stages)
        return self.real_edges + depthwise + self.stem_params + self.classifier_params

    def as_dict(self) -> dict:
        out = asdict(self)
        for name in ("edge_macs", "depthwise_macs", "real_edges", "macs_without_pool", "macs", "params"):
            out[name] = getattr(self, name)
        return out


def profile_graph(model: MobileNetV1DNW, image_size: int = 224) -> GraphProfile:
    """Count ``model``'s multiply-adds and parameters as DNW Table 3 does, for one ``image_size`` x
    ``image_size`` input (module docstring). Reads the current masks; runs no forward pass."""
    if not isinstance(model, MobileNetV1DNW):
        raise TypeError(f"profile_graph counts a MobileNetV1DNW, got {type(model).__name__}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    resolution = _conv_out(image_size, model.stem.stride[0])
    stem_resolution = resolution
    wirings = [stage_wiring(stage) for stage in model.stages]
    stages = []
    norm_params = 0
    for stage, wiring in zip(model.stages, wirings):
        resolution = _conv_out(resolution, stage.stride)
        live = wiring.live_nodes
        stages.append(
            StageCost(
                resolution=resolution,
                real_edges=wiring.real_edges,
                nodes=stage.input_nodes + sum(stage.block_sizes[:-1]),
                live_nodes=live,
                edge_macs=wiring.real_edges * resolution**2,
                depthwise_macs=KERNEL_TAPS * resolution**2 * live,
                depthwise_params=KERNEL_TAPS * live,
            )
        )
        norm_params += 2 * live
    stem_live = int(wirings[0].live_inputs.sum())
    stem_taps = model.stem.in_channels * KERNEL_TAPS
    final_live = int(wirings[-1].fed_outputs.sum())
    norm_params += 2 * final_live
    classes = model.num_classes
    if model.small:
        classifier_macs = classifier_params = _classifier_edges(model)
    else:
        classifier_macs = final_live * classes
        classifier_params = classifier_macs + (classes if model.classifier.bias is not None else 0)
    return GraphProfile(
        image_size=image_size,
        stages=tuple(stages),
        stem_channels=model.stem.out_channels,
        stem_live_channels=stem_live,
        stem_macs=stem_taps * stem_resolution**2 * stem_live,
        stem_params=stem_taps * stem_live,
        final_outputs=model.stages[-1].output_nodes,
        final_live_outputs=final_live,
        pool_macs=resolution**2 * final_live,
        classifier_macs=classifier_macs,
        classifier_params=classifier_params,
        norm_params=norm_params,
    )


@dataclass(frozen=True)
class DenseCost:
    """Multiply-adds (convolutions + classifier) and weights + classifier bias of a dense MobileNetV1 x d."""

    macs: int
    params: int


def mobilenet_v1_cost(
    width_mult: float = 0.25, image_size: int = 224, num_classes: int = 1000, stem_stride: int = 2, in_channels: int = 3
) -> DenseCost:
    """Closed-form count of :class:`rewire.models.mobilenet_dnw.MobileNetV1` x d (Howard et al. 2017, Table 1):
    stem 9 * in * c0 * S^2; per depthwise-separable layer 9 * c_in * S_out^2 (depthwise, stride on it) +
    c_in * c_out * S_out^2 (pointwise); classifier c_last * classes (+ classes biases in the parameters).
    Batch norm is not counted. x0.25 at 224 px: 41.0M multiply-adds, 0.46M parameters."""
    channels = int(STEM_CHANNELS * width_mult)
    size = _conv_out(image_size, stem_stride)
    params = KERNEL_TAPS * in_channels * channels
    macs = params * size * size
    for out, stride in MOBILENET_V1_LAYERS:
        size = _conv_out(size, stride)
        out = int(out * width_mult)
        layer = KERNEL_TAPS * channels + channels * out
        macs += layer * size * size
        params += layer
        channels = out
    macs += channels * num_classes
    params += channels * num_classes + num_classes
    return DenseCost(macs, params)


# ------------------------------------------------------------------------------------------------- compact


class CompactMobileNetV1DNW(nn.Module):
    """A MobileNetV1-DNW without its dead nodes (built by :func:`compact`): plain dense weights, eval only.

    Same computation as :class:`MobileNetV1DNW`: stem, :class:`GraphStage` s (with fewer nodes per block),
    batch norm, ReLU, global average pooling, classifier (with the folded constants in its bias).
    """

    def __init__(self, stem: nn.Conv2d, stages: list[GraphStage], final_norm: nn.BatchNorm2d, classifier: nn.Linear):
        super().__init__()
        self.stem, self.stages, self.final_norm, self.classifier = stem, nn.ModuleList(stages), final_norm, classifier

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.stem(images.contiguous(memory_format=torch.channels_last))
        for stage in self.stages:
            x = stage(x)
        return self.classifier(F.relu(self.final_norm(x)).mean((2, 3)))


def _kept(live: torch.Tensor) -> torch.Tensor:
    """Indices of the live nodes; the first node when none is live (a block needs one channel to exist: a kept
    dead node has no outgoing edge, so it changes nothing)."""
    index = live.nonzero().squeeze(1)
    return index if index.numel() else torch.zeros(1, dtype=torch.long)


def _sliced_norm(norm: nn.BatchNorm2d, index: torch.Tensor) -> nn.BatchNorm2d:
    sliced = nn.BatchNorm2d(len(index), eps=norm.eps, momentum=norm.momentum).to(norm.weight)
    sliced.weight.copy_(norm.weight[index])
    sliced.bias.copy_(norm.bias[index])
    sliced.running_mean.copy_(norm.running_mean[index])
    sliced.running_var.copy_(norm.running_var[index])
    sliced.num_batches_tracked.copy_(norm.num_batches_tracked)
    return sliced


def _sliced_depthwise(conv: nn.Conv2d, index: torch.Tensor) -> nn.Conv2d:
    sliced = nn.Conv2d(len(index), len(index), 3, stride=conv.stride, padding=1, groups=len(index), bias=False)
    sliced = sliced.to(conv.weight)
    sliced.weight.copy_(conv.weight[index])
    return sliced


def _check_compactable(model: MobileNetV1DNW) -> None:
    if not isinstance(model, MobileNetV1DNW):
        raise TypeError(f"compact takes a MobileNetV1DNW, got {type(model).__name__}")
    norms = [model.final_norm] + [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if any(not n.affine or n.running_mean is None for n in norms):
        raise ValueError("compact needs affine batch norms with running statistics (it folds eval-mode norms)")


@torch.no_grad()
def compact(model: MobileNetV1DNW) -> CompactMobileNetV1DNW:
    """The eval-mode model without dead nodes, equal to ``model.eval()`` on every input (up to float rounding).

    Per stage, input and hidden nodes with no outgoing real edge are dropped with their batch-norm entries,
    depthwise convolutions and adjacency columns; the rows computing their inputs are dropped from the stage
    that feeds them (stage-0 inputs: their stem channels). Final outputs with no incoming real edge hold the
    constant ReLU(BN(0)) under the running statistics, so their classifier columns fold into the bias. The
    effective (masked) adjacencies are read once, with the masks their sparsity methods choose now.
    ``model`` is not changed.
    """
    _check_compactable(model)
    device = model.stem.weight.device
    wirings = [stage_wiring(stage) for stage in model.stages]
    kept_inputs = [_kept(w.live_inputs).to(device) for w in wirings]
    kept_hidden = [[_kept(h).to(device) for h in w.live_hidden] for w in wirings]
    kept_final = _kept(wirings[-1].fed_outputs).to(device)
    kept_outputs = kept_inputs[1:] + [kept_final]

    stem = nn.Conv2d(model.stem.in_channels, len(kept_inputs[0]), 3, stride=model.stem.stride, padding=1, bias=False)
    stem = stem.to(model.stem.weight)
    stem.weight.copy_(model.stem.weight[kept_inputs[0]])

    stages = []
    for stage, inputs, hidden, outputs in zip(model.stages, kept_inputs, kept_hidden, kept_outputs):
        adjacency = stage.graph.weight.detach()  # effective: zero off the real edges
        rows = torch.cat([stage.row_starts[j] + h for j, h in enumerate(hidden)] + [stage.row_starts[-2] + outputs])
        columns = torch.cat([inputs] + [stage.column_starts[j + 1] + h for j, h in enumerate(hidden)])
        small = GraphStage(len(inputs), [len(h) for h in hidden] + [len(outputs)], stage.stride).to(adjacency)
        small.graph.weight.copy_(adjacency[rows][:, columns])
        small.input_norm = _sliced_norm(stage.input_norm, inputs)
        small.input_conv = _sliced_depthwise(stage.input_conv, inputs)
        for j, h in enumerate(hidden):
            small.hidden_norms[j] = _sliced_norm(stage.hidden_norms[j], h)
            small.hidden_convs[j] = _sliced_depthwise(stage.hidden_convs[j], h)
        stages.append(small)

    norm = model.final_norm
    constant = F.relu(norm.bias - norm.running_mean * norm.weight / torch.sqrt(norm.running_var + norm.eps))
    folded = torch.ones(norm.num_features, dtype=torch.bool, device=device)
    folded[kept_final] = False
    weight = model.classifier.weight.detach()  # effective (masked for Small)
    bias = model.classifier.bias.detach() if model.classifier.bias is not None else weight.new_zeros(weight.shape[0])
    classifier = nn.Linear(len(kept_final), weight.shape[0]).to(weight)
    classifier.weight.copy_(weight[:, kept_final])
    classifier.bias.copy_(bias + weight[:, folded] @ constant[folded])
    return CompactMobileNetV1DNW(stem, stages, _sliced_norm(norm, kept_final), classifier).eval()
