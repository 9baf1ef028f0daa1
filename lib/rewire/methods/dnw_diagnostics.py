"""Training diagnostics of a sparse neural graph (DNW Section 2.2's edge choice, MobileNetV1-DNW of Section 2.4).

Issue 20 (point 3) asks why DNW trails the fixed random graph (RG) on MobileNetV1-DNW at reduced scales. These
are the numbers that answer it, recorded while training by :class:`GraphDiagnostics` (a trainer
:class:`~rewire.train.trainer.Callback`) for every sparsified stage adjacency ``W`` (rows: receiving nodes,
columns: emitting nodes, :class:`rewire.models.mobilenet_dnw.GraphStage`). Definitions, for one stage:

* **feed-forward entries** F: the adjacency entries the forward pass reads (``GraphStage.allowed_edges``).
* **real edges** R: the chosen entries among F (the mask the sparsity method chooses from the current weights,
  restricted to F: a choice outside F never acts). For DNW that is the top-k of |w| (Algorithm 1 line 5).
* **hallucinated edges**: F without R (Section 2.2: they do not act in the forward pass; DNW's update rule
  still sends them the gradient, RG's and No Update's masked training does not).
* :func:`real_edge_magnitudes`: mean and max of |w| over R only.
* :func:`edge_churn`: |R_now \\ R_before| / |R_before|, the fraction of the earlier real edges that are no
  longer real (k is fixed per stage, so it equals the fraction of new edges).
* :func:`live_receivers`: the receiving nodes (the rows: every hidden node and output node of the stage; the
  stage's input nodes are the previous stage's output nodes, or the stem's channels) with at least one incoming
  real edge. A receiver with none gets the constant 0 as input: its batch norm sees zero variance and outputs
  its bias beta, so its gradient into its (hallucinated) incoming edges is scaled by gamma / sqrt(eps).
* :func:`hallucinated_gradient_norm`: the L2 norm of dL/dW_eff over the hallucinated entries, the gradient
  DNW's straight-through rule (Appendix F) writes into them. It is read from the effective weight's own
  gradient, so it is the same quantity for every method (RG's and No Update's masked route discard it).

Per epoch (``on_epoch_end``) the callback adds to the epoch's record (all stages pooled unless ``_per_stage``):
``diag_abs_w_mean``, ``diag_abs_w_max``, ``diag_abs_w_mean_per_stage``, ``diag_churn`` (since the previous
record; the first epoch against the mask at the start of training), ``diag_churn_per_step`` (mean over the
epoch's steps of the churn between consecutive training forwards), ``diag_live_fraction_per_stage``,
``diag_live_nodes_per_stage``, ``diag_receivers_per_stage``, and the gradient norms **averaged over the
epoch's steps** (each step's norm over all stages' hallucinated entries, then the mean):
``diag_hallucinated_grad_norm``, ``diag_hallucinated_grad_max`` (largest |g| of the epoch) and
``diag_real_grad_norm`` (the same over the real edges, for scale). With ``every_steps`` > 0, ``diag_steps``
holds one record per ``every_steps`` optimizer steps (up to ``until_step``; 0 = the whole run) with the same
numbers at that step (its gradient norms are that step's, its churn is since the previous step record).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from rewire.sparse.masks import SparseWeight, current_mask, is_sparse, resolve_tensor
from rewire.train.trainer import Callback

__all__ = [
    "real_edge_magnitudes",
    "edge_churn",
    "live_receivers",
    "hallucinated_gradient_norm",
    "StageProbe",
    "GraphDiagnostics",
]


def _check_masks(**masks: torch.Tensor) -> None:
    shapes = {name: tuple(mask.shape) for name, mask in masks.items()}
    for name, mask in masks.items():
        if mask.dtype != torch.bool:
            raise ValueError(f"{name} must be a bool mask, got dtype {mask.dtype}")
    if len(set(shapes.values())) > 1:
        raise ValueError(f"masks of different shapes: {shapes}")


def real_edge_magnitudes(weight: torch.Tensor, real: torch.Tensor) -> tuple[float, float]:
    """(mean |w|, max |w|) over the real edges ``real`` only; (nan, nan) when there is none."""
    _check_masks(real=real)
    values = weight.detach()[real].abs()
    if values.numel() == 0:
        return math.nan, math.nan
    return float(values.mean()), float(values.max())


def edge_churn(before: torch.Tensor, now: torch.Tensor) -> float:
    """|now \\ before| / |before|: the fraction of the real edges of ``before`` replaced in ``now``."""
    _check_masks(before=before, now=now)
    total = int(before.sum())
    if total == 0:
        raise ValueError("edge_churn needs at least one real edge in 'before'")
    return int((now & ~before).sum()) / total


def live_receivers(real: torch.Tensor) -> torch.Tensor:
    """Bool per receiving node (adjacency row): at least one incoming real edge."""
    _check_masks(real=real)
    return real.any(dim=1)


def hallucinated_gradient_norm(grad: torch.Tensor, real: torch.Tensor, feed_forward: torch.Tensor) -> torch.Tensor:
    """L2 norm of ``grad`` (dL/dW_eff) over the hallucinated entries: feed-forward and not real (a 0-d tensor,
    left on the gradient's device so that no step waits for the host)."""
    _check_masks(real=real, feed_forward=feed_forward)
    hallucinated = feed_forward & ~real
    return torch.where(hallucinated, grad, grad.new_zeros(())).float().norm()


@dataclass
class StageProbe:
    """One sparsified adjacency: its qualified name, module, parametrization and feed-forward entries."""

    target: str
    module: nn.Module
    tensor: str
    parametrization: SparseWeight
    feed_forward: torch.Tensor

    def weight(self) -> torch.Tensor:
        return getattr(self.module.parametrizations, self.tensor).original

    def real(self) -> torch.Tensor:
        """The real edges now: the method's choice from the current weights (held masks as held), within F."""
        return current_mask(self.module, self.tensor, recompute=True) & self.feed_forward.to(self.weight().device)


class GraphDiagnostics(Callback):
    """Records the module docstring's diagnostics of the sparse adjacencies ``targets`` of ``model``.

    ``feed_forward``: ``{target: bool mask}`` of the entries the forward reads (e.g. ``model.allowed_edges()``).
    ``every_steps`` > 0 adds step records every that many optimizer steps up to ``until_step`` (0: always).
    Gradients are captured by a hook on each effective weight during training forwards (those that need a
    gradient); the norms stay on the device until a record is written.
    """

    def __init__(
        self,
        model: nn.Module,
        feed_forward: dict[str, torch.Tensor],
        *,
        every_steps: int = 0,
        until_step: int = 0,
    ) -> None:
        for name, value in (("every_steps", every_steps), ("until_step", until_step)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0 (0 = off / no limit), got {value!r}; e.g. {name}=10")
        self.every_steps, self.until_step = every_steps, until_step
        self.probes: list[StageProbe] = []
        for target, allowed in feed_forward.items():
            module, tensor = resolve_tensor(model, target)
            if not is_sparse(module, tensor):
                raise ValueError(f"{target!r} is not sparse: apply a sparsity method before GraphDiagnostics")
            parametrization = next(p for p in module.parametrizations[tensor] if isinstance(p, SparseWeight))
            self.probes.append(StageProbe(target, module, tensor, parametrization, allowed.detach().bool()))
        self._handles: list[Any] = []
        self._reset_epoch()
        self._previous_record: list[torch.Tensor] | None = None
        self._previous_step_record: list[torch.Tensor] | None = None
        self._last_forward: list[torch.Tensor | None] = [None] * len(self.probes)
        self._step_squares: list[torch.Tensor | None] = [None, None]  # this step's (hallucinated, real) norm^2
        self._step_max: torch.Tensor | None = None
        self._step_churn: torch.Tensor | None = None  # this step's (edges replaced, earlier real edges), pooled

    # ------------------------------------------------------------------ capture
    def _reset_epoch(self) -> None:
        self._epoch = {"hallucinated": [], "real": [], "max": [], "churn": []}

    def _hook(self, index: int):
        probe = self.probes[index]

        def on_forward(module, inputs, output):
            if not output.requires_grad:  # evaluation: nothing to measure
                return
            real = module.mask & probe.feed_forward.to(module.mask.device)
            previous = self._last_forward[index]
            if previous is not None:
                counts = torch.stack(((real & ~previous).sum(), previous.sum()))
                self._step_churn = counts if self._step_churn is None else self._step_churn + counts
            self._last_forward[index] = real

            def on_grad(grad: torch.Tensor) -> None:
                feed_forward = probe.feed_forward.to(grad.device)
                hallucinated = torch.where(feed_forward & ~real, grad, grad.new_zeros(())).float()
                real_grad = torch.where(real, grad, grad.new_zeros(())).float()
                squares = (hallucinated.square().sum(), real_grad.square().sum())
                for slot, value in enumerate(squares):
                    stored = self._step_squares[slot]
                    self._step_squares[slot] = value if stored is None else stored + value
                largest = hallucinated.abs().max()
                self._step_max = largest if self._step_max is None else torch.maximum(self._step_max, largest)

            output.register_hook(on_grad)

        return on_forward

    def on_fit_start(self, trainer) -> None:
        for handle in self._handles:
            handle.remove()
        for probe in self.probes:  # once, not a host-to-device copy per forward
            probe.feed_forward = probe.feed_forward.to(probe.weight().device)
        self._handles = [p.parametrization.register_forward_hook(self._hook(i)) for i, p in enumerate(self.probes)]
        masks = [probe.real() for probe in self.probes]
        self._previous_record = masks
        if self.every_steps and trainer.global_step == 0:
            self._previous_step_record = masks
            self._steps = [self._snapshot(0, masks, None)]
        else:
            self._steps = []

    def on_epoch_start(self, trainer) -> None:
        self._reset_epoch()
        if not hasattr(self, "_steps"):
            self._steps = []

    def on_batch_end(self, trainer, loss) -> None:
        squares, self._step_squares = self._step_squares, [None, None]
        largest, self._step_max = self._step_max, None
        churn, self._step_churn = self._step_churn, None
        if churn is not None:
            self._epoch["churn"].append(churn[0].float() / churn[1].clamp(min=1).float())
        if squares[0] is None:
            return
        self._epoch["hallucinated"].append(squares[0].sqrt())
        self._epoch["real"].append(squares[1].sqrt())
        self._epoch["max"].append(largest)
        step = trainer.global_step
        due = self.every_steps and step % self.every_steps == 0 and (not self.until_step or step <= self.until_step)
        if due:
            masks = [probe.real() for probe in self.probes]
            self._steps.append(self._snapshot(step, masks, (squares[0].sqrt(), squares[1].sqrt(), largest)))
            self._previous_step_record = masks

    # ------------------------------------------------------------------ records
    def _masks_summary(self, masks: list[torch.Tensor], before: list[torch.Tensor] | None) -> dict[str, Any]:
        weights = [probe.weight().detach() for probe in self.probes]
        values = torch.cat([w[m].abs().float().reshape(-1) for w, m in zip(weights, masks)])
        per_stage = [real_edge_magnitudes(w, m)[0] for w, m in zip(weights, masks)]
        live = [live_receivers(m) for m in masks]
        out = {
            "diag_abs_w_mean": float(values.mean()) if values.numel() else math.nan,
            "diag_abs_w_max": float(values.max()) if values.numel() else math.nan,
            "diag_abs_w_mean_per_stage": per_stage,
            "diag_live_fraction_per_stage": [float(x.float().mean()) for x in live],
            "diag_live_nodes_per_stage": [int(x.sum()) for x in live],
            "diag_receivers_per_stage": [int(x.numel()) for x in live],
            "diag_real_edges": int(sum(int(m.sum()) for m in masks)),
        }
        if before is not None:
            changed = sum(int((m & ~b).sum()) for m, b in zip(masks, before))
            out["diag_churn"] = changed / max(1, sum(int(b.sum()) for b in before))
        else:
            out["diag_churn"] = None
        return out

    def _snapshot(self, step: int, masks, grads) -> dict[str, Any]:
        record = {"step": step, **self._masks_summary(masks, self._previous_step_record if step else None)}
        hallucinated, real, largest = grads if grads is not None else (None, None, None)
        record["diag_hallucinated_grad_norm"] = None if hallucinated is None else float(hallucinated)
        record["diag_real_grad_norm"] = None if real is None else float(real)
        record["diag_hallucinated_grad_max"] = None if largest is None else float(largest)
        return record

    def on_epoch_end(self, trainer, record: dict[str, Any]) -> None:
        masks = [probe.real() for probe in self.probes]
        record.update(self._masks_summary(masks, self._previous_record))
        self._previous_record = masks
        epoch = self._epoch

        def mean(values: list[torch.Tensor]) -> float | None:
            return float(torch.stack(values).mean()) if values else None

        record["diag_churn_per_step"] = mean(epoch["churn"])
        record["diag_hallucinated_grad_norm"] = mean(epoch["hallucinated"])
        record["diag_real_grad_norm"] = mean(epoch["real"])
        record["diag_hallucinated_grad_max"] = float(torch.stack(epoch["max"]).max()) if epoch["max"] else None
        if self.every_steps:
            record["diag_steps"] = self._steps
            self._steps = []
        self._reset_epoch()
