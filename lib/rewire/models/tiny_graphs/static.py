"""The static neural graph of DNW Sections 2.1 and 3.1: a DAG over blocks of nodes, one pass."""

from __future__ import annotations

import numpy as np
import torch

from rewire.models.tiny_graphs.blocks import NeuralGraph
from rewire.models.tiny_graphs.config import GraphConfig


class StaticGraph(NeuralGraph):
    """Static neural graph (Sections 2.1 and 3.1): a DAG over blocks of nodes.

    Nodes are split into ``block_sizes`` (default 32 input nodes, then 4 blocks of
    192: N = 800). An edge (u, v) is allowed when u's block precedes v's
    (Section 2.4) and v can reach an output node (see the package docstring on
    sinks). Evaluation is block by block (Eq. 1):

    * the input nodes' states are f_v applied to the stem channels;
    * for each later block j, I_j = sum_{i<j} W[rows of j, columns of block i] . Z_i,
      one GEMM per earlier block with a slice of the effective adjacency (never a
      masked N x N product), and Z_j = f_j(I_j); in the last block only the output
      rows are computed.

    Only ``usable_entries`` (189,824 by default) of the N^2 entries are ever read.
    With ``graph_variant="authors_code"`` every node of the last block is computed,
    and the outputs are their raw inputs plus one more aggregation from the whole
    last block (264,960 usable entries; package docstring, "Variants").
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
