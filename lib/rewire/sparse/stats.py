"""What a pruning run measures about its masks (DPF Section 4, Section 5.2 and Appendix A.3.2).

All functions take lists of tensors (one per pruned layer) and count over the pruned
layers only: dense layers (the last fully-connected layer, batch-norm, biases) are not in
the denominator. (The unofficial DPF code divides by every parameter, which under-reports
conv sparsity; reference notes B7.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = [
    "reached_sparsity",
    "filter_sparsity",
    "layer_sparsities",
    "pruning_error",
    "mask_iou",
    "mask_flips",
    "still_changing_after",
]


def reached_sparsity(masks: Sequence[torch.Tensor]) -> float:
    """Share of pruned entries over all entries of the pruned layers."""
    total = sum(m.numel() for m in masks)
    if total == 0:
        raise ValueError("no mask entries to count")
    pruned = sum(int((~m).sum()) for m in masks)
    return pruned / total


def filter_sparsity(masks: Sequence[torch.Tensor]) -> float:
    """Share of output filters (dim 0) whose every entry is pruned, over all pruned layers
    (the pruning ratio of structured pruning, DPF Table 5)."""
    pruned = sum(int((~m.reshape(m.shape[0], -1).any(dim=1)).sum()) for m in masks)
    return pruned / sum(m.shape[0] for m in masks)


def layer_sparsities(names: Sequence[str], masks: Sequence[torch.Tensor]) -> dict[str, float]:
    """Sparsity of each pruned layer, by name."""
    return {name: 1.0 - float(m.float().mean()) for name, m in zip(names, masks)}


@torch.no_grad()
def pruning_error(weights: Sequence[torch.Tensor], masks: Sequence[torch.Tensor]) -> float:
    """δ_t = ||w_t - w̃_t||² / ||w_t||² (DPF Eq. 1) with w̃_t = m_t ⊙ w_t, over the pruned layers."""
    removed = sum(float(w.double().masked_fill(m, 0.0).pow(2).sum()) for w, m in zip(weights, masks))
    total = sum(float(w.double().pow(2).sum()) for w in weights)
    if total == 0.0:
        raise ValueError("δ_t is undefined for all-zero weights")
    return removed / total


def mask_iou(previous: Sequence[torch.Tensor], current: Sequence[torch.Tensor]) -> float:
    """Intersection over union of the kept (non-masked) entries of two masks (DPF Figure 7)."""
    intersection = sum(int((a & b).sum()) for a, b in zip(previous, current))
    union = sum(int((a | b).sum()) for a, b in zip(previous, current))
    return 1.0 if union == 0 else intersection / union


def mask_flips(previous: Sequence[torch.Tensor], current: Sequence[torch.Tensor]) -> int:
    """Number of mask entries that changed (pruned -> kept or kept -> pruned)."""
    return sum(int((a ^ b).sum()) for a, b in zip(previous, current))


def still_changing_after(last_flip_epoch: Sequence[torch.Tensor], epochs: int) -> list[float]:
    """DPF Figure 4: for each epoch e = 0..epochs-1, the share of mask entries (of all pruned-layer
    entries) that flip at least once *after* epoch e, given for every entry the (1-based) epoch of
    its last flip (0 = never flipped)."""
    flat = torch.cat([t.reshape(-1) for t in last_flip_epoch])
    return [float((flat > e).float().mean()) for e in range(epochs)]
