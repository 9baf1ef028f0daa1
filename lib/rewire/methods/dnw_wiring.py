"""Wiring diagnostics of neural graphs (DNW Sections 2-3): real and live edges, swaps, dead nodes.

These read the mask that a sparsity method put on a graph's adjacency (``graph.weight``)
through the one mask mechanism (:mod:`rewire.sparse.masks`); the graph models
themselves (:mod:`rewire.models.tiny_graphs`) never know about sparsity. (Moved from
``rewire.sparse.wiring``: the mask mechanism knows no concrete model and no training loop.)
:class:`WiringMonitor` records them after every epoch of training.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rewire.models.tiny_graphs import NeuralGraph
from rewire.sparse import masks
from rewire.train.trainer import Callback

__all__ = ["graph_mask", "live_edge_mask", "live_edges", "swaps", "dead_nodes", "adjacency_image", "WiringMonitor"]


def graph_mask(model: NeuralGraph) -> torch.Tensor:
    """The real edges of ``model.graph.weight`` now: the mask of its sparsity method, or every
    allowed entry for a dense model. Bool ``[N, N]`` on the CPU."""
    if masks.is_sparse(model.graph, "weight"):
        return masks.current_mask(model.graph, "weight").cpu()
    return model.allowed_edges().cpu()


def _as_node_mask(nodes, num_nodes: int) -> torch.Tensor:
    if isinstance(nodes, torch.Tensor) and nodes.dtype == torch.bool:
        return nodes.cpu()
    selected = torch.zeros(num_nodes, dtype=torch.bool)
    selected[torch.as_tensor(list(nodes), dtype=torch.long)] = True
    return selected


def _closure(mask: torch.Tensor, start: torch.Tensor, forward: bool) -> torch.Tensor:
    """Nodes reachable from ``start`` along real edges (``forward``), or that reach ``start``."""
    reach = start.clone()
    while True:
        if forward:  # v is reached when some real edge (u, v) leaves a reached u
            grown = reach | (mask & reach[None, :]).any(1)
        else:  # u reaches when some real edge (u, v) enters a reaching v
            grown = reach | (mask & reach[:, None]).any(0)
        if torch.equal(grown, reach):
            return reach
        reach = grown


def live_edge_mask(mask: torch.Tensor, inputs, outputs) -> torch.Tensor:
    """Real edges on some path from an input node to an output node (bool ``[N, N]``).

    For a static graph these are exactly the edges that can affect the output; the
    others lead out of a node no input reaches or into a node that reaches no
    output. For dynamic graphs it ignores the number of steps (an upper bound).
    """
    mask = mask.cpu().bool()
    n = mask.shape[0]
    from_inputs = _closure(mask, _as_node_mask(inputs, n), forward=True)
    to_outputs = _closure(mask, _as_node_mask(outputs, n), forward=False)
    return mask & from_inputs[None, :] & to_outputs[:, None]


def live_edges(model_or_mask, inputs=None, outputs=None) -> int:
    """Number of real edges on an input-to-output path (see :func:`live_edge_mask`).

    Pass a model (its current mask and node roles are used) or a mask with ``inputs`` and ``outputs``.
    """
    if isinstance(model_or_mask, NeuralGraph):
        mask = graph_mask(model_or_mask)
        inputs, outputs = model_or_mask.input_nodes, model_or_mask.output_nodes
    else:
        mask = model_or_mask
        if inputs is None or outputs is None:
            raise ValueError("live_edges(mask) needs inputs= and outputs= (node indices)")
    return int(live_edge_mask(mask, inputs, outputs).sum())


def swaps(previous_mask: torch.Tensor, mask: torch.Tensor) -> int:
    """Edges that became real since ``previous_mask`` (each replaced a real edge, so with a fixed k
    this is also the number that became hallucinated)."""
    if previous_mask.shape != mask.shape:
        raise ValueError(f"masks of different shapes: {tuple(previous_mask.shape)} and {tuple(mask.shape)}")
    return int((mask.cpu().bool() & ~previous_mask.cpu().bool()).sum())


def dead_nodes(mask: torch.Tensor, *, inputs, outputs, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """Bool ``[N]``: nodes without a real incoming edge or without a real outgoing edge.

    Input nodes need no incoming edge (the stem feeds them) and output nodes no
    outgoing edge (the readout reads them). With ``allowed``, a node that can have
    no incoming (outgoing) entry at all is not expected to have one either, so the
    sinks of a static graph are not counted. The check is local, as in the
    reference's profiler: a node fed only by dead nodes is not flagged.
    """
    mask = mask.cpu().bool()
    n = mask.shape[0]
    expect_in = ~_as_node_mask(inputs, n)
    expect_out = ~_as_node_mask(outputs, n)
    if allowed is not None:
        allowed = allowed.cpu().bool()
        expect_in &= allowed.any(1)
        expect_out &= allowed.any(0)
    has_in = mask.any(1)
    has_out = mask.any(0)
    return (expect_in & ~has_in) | (expect_out & ~has_out)


def adjacency_image(mask: torch.Tensor) -> np.ndarray:
    """The real edges as a uint8 image for ``imshow`` (255 = real edge; rows receivers v, columns emitters u)."""
    return mask.detach().cpu().bool().numpy().astype(np.uint8) * 255


class WiringMonitor(Callback):
    """Records the wiring of a neural graph after every epoch (a ``rewire.training`` callback).

    Adds to each epoch record: ``real_edges``, ``live_edges`` (on an input-to-output
    path), ``swaps`` (edges that became real since the previous epoch's end, or
    since the start of training for the first epoch) and ``dead_nodes``. The mask
    is read after the epoch's evaluation, i.e. the one chosen from the epoch's final
    weights. Its state (the previous mask) is saved with the checkpoint.
    """

    def __init__(self) -> None:
        self.previous: torch.Tensor | None = None

    def on_fit_start(self, trainer) -> None:
        if self.previous is None:  # not restored from a checkpoint
            self.previous = self._mask(trainer.model, recompute=True)

    def on_epoch_end(self, trainer, record: dict[str, Any]) -> None:
        model = trainer.model
        mask = self._mask(model)
        allowed = model.allowed_edges().cpu()
        record["real_edges"] = int(mask.sum())
        record["live_edges"] = int(live_edge_mask(mask, model.input_nodes, model.output_nodes).sum())
        record["swaps"] = swaps(self.previous, mask) if self.previous is not None else 0
        record["dead_nodes"] = int(
            dead_nodes(mask, inputs=model.input_nodes, outputs=model.output_nodes, allowed=allowed).sum()
        )
        self.previous = mask

    @staticmethod
    def _mask(model, recompute: bool = False) -> torch.Tensor:
        if masks.is_sparse(model.graph, "weight"):
            return masks.current_mask(model.graph, "weight", recompute=recompute).cpu()
        return model.allowed_edges().cpu()

    def state_dict(self) -> dict[str, Any]:
        return {"previous": self.previous}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        previous = state.get("previous")
        self.previous = None if previous is None else previous.cpu().bool()
