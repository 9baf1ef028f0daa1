"""Pruning baselines of the DPF paper: SNIP, One-shot P+FT and the lottery ticket.

All three end in training with a *fixed* mask: ordinary sparse training, the ``masked``
route of :mod:`rewire.sparse.masks` with the pruned weights set to zero. They differ in
where the mask comes from:

=============  =======================================================================
method         mask
=============  =======================================================================
``snip``       connection sensitivity |g ⊙ w| on one minibatch at initialisation
               (Lee et al. 2019, Algorithm 1 and Eq. 6), global
``oneshot_ft`` global magnitude |w| of the trained dense model, then fine-tuning
               (Han et al. 2015; DPF Table 2, "One-shot P+FT")
``lottery``    global magnitude of the trained model, rewound to initialisation and
               retrained; with R rounds, round r prunes to s_r = 1 - (1 - s)^(r/R)
               of the previous round's survivors (Frankle & Carbin 2019)
=============  =======================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn as nn

from rewire.methods.registry import Attached, Method, register
from rewire.sparse import stats as mask_stats
from rewire.sparse.groups import MaskGroup, PruningRule, check_sparsity, snip_scores
from rewire.train.trainer import Callback

__all__ = [
    "FixedMaskMonitor",
    "attach_fixed_mask",
    "magnitude_masks",
    "snip_masks",
    "lottery_round_sparsity",
    "attach_snip",
]


class FixedMaskMonitor(Callback):
    """Adds the mask statistics of a fixed-mask phase to every epoch record (the keys of GradualPruning)."""

    def __init__(self, group: MaskGroup) -> None:
        self.group = group

    def on_epoch_end(self, trainer, record):
        masks = self.group.masks()
        sparsity = mask_stats.reached_sparsity(masks)
        record.update(
            {
                "target_sparsity": sparsity,
                "sparsity": sparsity,
                "delta": mask_stats.pruning_error(self.group.dense_weights(), masks),
                "mask_updates": 0,
                "mask_flips": 0,
                "mask_iou": 1.0,
            }
        )


def attach_fixed_mask(
    model: nn.Module, masks_from: Callable[[MaskGroup], list[torch.Tensor]], targets: Sequence[str] | None = None
) -> Attached:
    """Sparse training with a fixed mask: ``masked`` route, pruned weights (and their state) zero."""
    group = MaskGroup(model, targets, route="masked")
    group.assign(masks_from(group))
    group.zero_pruned()
    return Attached(group, [FixedMaskMonitor(group)])


def magnitude_masks(sparsity: float) -> Callable[[MaskGroup], list[torch.Tensor]]:
    """Global magnitude masks of a group's current dense weights at ``sparsity`` (One-shot P+FT, LT)."""
    check_sparsity(sparsity)
    return lambda group: PruningRule("weight", "global").masks(group.dense_weights(), sparsity)


def snip_masks(model: nn.Module, sparsity: float, inputs: torch.Tensor, targets: torch.Tensor) -> list[torch.Tensor]:
    """SNIP's masks of ``model`` (at initialisation) from one minibatch; the model is left unchanged."""
    import copy

    probe = copy.deepcopy(model)
    group = MaskGroup(probe, route="masked")
    scores = snip_scores(probe, group, inputs, targets)
    return PruningRule("weight", "global").masks(group.dense_weights(), check_sparsity(sparsity), scores)


def attach_snip(model: nn.Module, sparsity: float, batch: tuple[torch.Tensor, torch.Tensor]) -> Attached:
    """SNIP on ``model`` at initialisation with one minibatch ``batch = (inputs, targets)``."""
    masks = snip_masks(model, sparsity, *batch)
    return attach_fixed_mask(model, lambda group: masks)


def lottery_round_sparsity(sparsity: float, round_index: int, rounds: int) -> float:
    """Target sparsity after round r of R: s_r = 1 - (1 - s)^(r/R), so each round prunes the same share."""
    if not 1 <= round_index <= rounds:
        raise ValueError(f"round must be in [1, {rounds}], got {round_index}")
    return 1.0 - (1.0 - sparsity) ** (round_index / rounds)


register(
    Method(
        "snip",
        family="pruning",
        kind="group",
        paper="Lee et al. 2019 (DPF Table 1)",
        summary="connection-sensitivity mask from one minibatch at initialisation, then sparse training.",
        attach=attach_snip,
    )
)
register(
    Method(
        "oneshot_ft",
        family="pruning",
        kind="procedure",
        paper="Han et al. 2015 (DPF Table 2)",
        summary="train dense, prune the smallest weights globally once, fine-tune with the mask fixed.",
    )
)
register(
    Method(
        "lottery",
        family="pruning",
        kind="procedure",
        paper="Frankle & Carbin 2019 (DPF Table 1)",
        summary="train, prune by magnitude, rewind the survivors to initialisation, retrain (R rounds).",
    )
)
