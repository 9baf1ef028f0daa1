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

from typing import Any

from rewire.models.tiny_graphs.blocks import Adjacency, NeuralGraph, NodeOps, _InstanceNormReLU, make_stem  # noqa: F401  (_InstanceNormReLU: tests)
from rewire.models.tiny_graphs.config import ADAPTIVE_SOLVERS, FIXED_STEP_SOLVERS, GRAPH_VARIANTS, GraphConfig
from rewire.models.tiny_graphs.dynamic import ContinuousTimeGraph, DiscreteTimeGraph
from rewire.models.tiny_graphs.static import StaticGraph

__all__ = [
    "GraphConfig",
    "FIXED_STEP_SOLVERS",
    "ADAPTIVE_SOLVERS",
    "GRAPH_VARIANTS",
    "make_stem",
    "Adjacency",
    "NodeOps",
    "NeuralGraph",
    "StaticGraph",
    "DiscreteTimeGraph",
    "ContinuousTimeGraph",
    "build_graph",
    "count_parameters",
]

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
