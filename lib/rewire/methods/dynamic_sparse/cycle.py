"""The prune-redistribute-regrow cycle SM and DSR share: exact counting of kept weights
(initial masks, largest-remainder apportioning) and the callback machinery (validation, the initial
mask, applying an update, epoch statistics, state). The package docstring describes both methods.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import torch

from rewire.sparse import stats as mask_stats
from rewire.sparse.groups import MaskGroup, check_sparsity, pruned_count
from rewire.sparse.masks import topk_mask
from rewire.train.trainer import Callback


def apportion(total: int, weights: Sequence[float], capacity: Sequence[int]) -> list[int]:
    """Split ``total`` into integers proportional to ``weights``, each at most its ``capacity``; exact sum.

    Largest-remainder (Hamilton) rounding in exact rational arithmetic, ties to the lower index.
    A share above its capacity is capped and the overflow re-apportioned among the entries
    with room, again in proportion to their weights (water-filling). Entries of zero (or
    non-finite) weight receive something only once every entry of positive weight is full
    (then in proportion to their remaining room). Raises if ``total`` exceeds the total capacity.
    """
    n = len(weights)
    if len(capacity) != n:
        raise ValueError(f"{n} weights but {len(capacity)} capacities")
    capacity = [int(c) for c in capacity]
    if total < 0 or any(c < 0 for c in capacity):
        raise ValueError(f"apportion needs total >= 0 and capacities >= 0, got {total}, {capacity}")
    if total > sum(capacity):
        raise ValueError(f"cannot place {total} entries in a total capacity of {sum(capacity)}")
    clean = [Fraction(w) if (math.isfinite(w) and w > 0) else Fraction(0) for w in map(float, weights)]
    allocation = [0] * n
    remaining = int(total)
    while remaining > 0:
        room = [c - a for c, a in zip(capacity, allocation)]
        active = [i for i in range(n) if room[i] > 0 and clean[i] > 0]
        share = {i: clean[i] for i in active}
        if not active:  # every layer of positive weight is full: fill by remaining room
            active = [i for i in range(n) if room[i] > 0]
            share = {i: Fraction(room[i]) for i in active}
        norm = sum(share.values())
        exact = [remaining * share[i] / norm for i in active]
        base = [math.floor(e) for e in exact]
        order = sorted(range(len(active)), key=lambda j: (-(exact[j] - base[j]), active[j]))
        for j in order[: remaining - sum(base)]:
            base[j] += 1
        for j, i in enumerate(active):
            grant = min(base[j], room[i])
            allocation[i] += grant
            remaining -= grant
    return allocation


def kept_counts(masks: Sequence[torch.Tensor]) -> list[int]:
    return [int(m.sum()) for m in masks]


@torch.no_grad()
def initial_masks(group: MaskGroup, sparsity: float, generator: torch.Generator) -> list[torch.Tensor]:
    """A uniformly random mask with exactly ``round(sparsity * N)`` pruned entries over the group.

    The pruned count is spread over the layers in proportion to their sizes (every layer at
    the target sparsity up to one entry, largest remainders fixing the rounding so the total
    is exact), and every layer keeps at least one weight. Within a layer the pruned positions
    are uniformly random: the kept entries are the largest of ``torch.rand`` scores drawn from
    ``generator`` (a CPU generator; same seed, same masks on every device). Returns the masks
    (on the masks' devices) without assigning them.
    """
    check_sparsity(sparsity)
    sizes = [m.numel() for m in group.masks()]
    total_pruned = pruned_count(sum(sizes), sparsity)
    if total_pruned > sum(sizes) - len(sizes):
        raise ValueError(
            f"sparsity {sparsity} prunes {total_pruned} of {sum(sizes)} entries: "
            f"every one of the {len(sizes)} layers must keep at least one weight"
        )
    per_layer = apportion(total_pruned, sizes, [s - 1 for s in sizes])
    masks = []
    for mask, pruned in zip(group.masks(), per_layer):
        scores = torch.rand(mask.shape, generator=generator)
        masks.append(topk_mask(scores, mask.numel() - pruned).to(mask.device))
    return masks


def is_int_at_least(value, minimum: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= minimum


# --------------------------------------------------------------------------- common machinery


class PruneRegrow(Callback):
    """Shared parts: validation, the initial mask, applying an update, epoch statistics, state."""

    def __init__(self, group: MaskGroup, sparsity: float, seed: int) -> None:
        if not isinstance(group, MaskGroup):
            raise TypeError(f"group must be a rewire.pruning.MaskGroup, got {type(group).__name__}")
        if group.route != "masked":
            raise ValueError(
                f"{type(self).__name__} trains a sparse network: build the MaskGroup with "
                f"route='masked' (pruned weights get no gradient), got route={group.route!r}"
            )
        if not is_int_at_least(seed, 0):
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.group = group
        self.sparsity = check_sparsity(sparsity)
        self.seed = seed
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        sizes = [m.numel() for m in group.masks()]
        self.kept_total = sum(sizes) - pruned_count(sum(sizes), self.sparsity)
        if pruned_count(sum(sizes), self.sparsity) > sum(sizes) - len(sizes):
            raise ValueError(f"sparsity {sparsity} would leave a layer of the group without weights")
        self.started = False
        self.updates = 0  # updates over the whole run
        self._reset_epoch()

    def _reset_epoch(self) -> None:
        self.epoch_updates, self.epoch_flips, self.epoch_iou_sum, self.epoch_regrown = 0, 0, 0.0, 0

    # -------------------------------------------------------------- hooks
    def on_fit_start(self, trainer) -> None:
        if not self.started:  # a resumed run has its masks in the model state_dict already
            self.start(trainer.optimizer)

    @torch.no_grad()
    def start(self, optimizer: torch.optim.Optimizer | None = None) -> list[torch.Tensor]:
        """Draw and assign the initial random mask; pruned weights (and their optimizer state) become zero."""
        masks = initial_masks(self.group, self.sparsity, self.generator)
        self.group.assign(masks)
        self.group.zero_pruned(optimizer)
        self.started = True
        return masks

    @torch.no_grad()
    def _commit(
        self,
        optimizer,
        previous: list[torch.Tensor],
        after_prune: list[torch.Tensor],
        final: list[torch.Tensor],
        regrown: int,
    ) -> list[torch.Tensor]:
        """Assign ``final``; entries pruned now, and entries regrown now, end with value and state zero."""
        if sum(kept_counts(final)) != sum(kept_counts(previous)):  # pragma: no cover - guarded by construction
            raise RuntimeError(
                f"{type(self).__name__} changed the kept count: "
                f"{sum(kept_counts(previous))} -> {sum(kept_counts(final))}"
            )
        self.group.assign(after_prune)
        self.group.zero_pruned(optimizer)  # removed and (to be) regrown entries: zero value, zero momentum
        self.group.assign(final)
        self.updates += 1
        self.epoch_updates += 1
        self.epoch_regrown += regrown
        self.epoch_flips += mask_stats.mask_flips(previous, final)
        self.epoch_iou_sum += mask_stats.mask_iou(previous, final)
        return final

    def _record(self, record: dict[str, Any]) -> None:
        record.update(
            {
                "sparsity": mask_stats.reached_sparsity(self.group.masks()),
                "mask_updates": self.epoch_updates,
                "mask_flips": self.epoch_flips,
                "mask_iou": self.epoch_iou_sum / self.epoch_updates if self.epoch_updates else 1.0,
                "regrown": self.epoch_regrown,
            }
        )
        self._reset_epoch()

    # -------------------------------------------------------------- state
    def _config(self) -> dict[str, Any]:
        return {"sparsity": self.sparsity, "seed": self.seed, "layers": list(self.group.names)}

    def state_dict(self) -> dict[str, Any]:
        return {
            "config": self._config(),
            "started": self.started,
            "generator": self.generator.get_state(),
            "updates": self.updates,
            "epoch_updates": self.epoch_updates,
            "epoch_flips": self.epoch_flips,
            "epoch_iou_sum": self.epoch_iou_sum,
            "epoch_regrown": self.epoch_regrown,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mine = self._config()
        for key in sorted(set(mine) | set(state["config"])):
            if state["config"].get(key) != mine.get(key):
                raise ValueError(
                    f"checkpoint was written with {key}={state['config'].get(key)!r}, this run has "
                    f"{mine.get(key)!r}; use a new run directory"
                )
        self.started = bool(state["started"])
        self.generator.set_state(state["generator"].cpu())
        self.updates = int(state["updates"])
        self.epoch_updates, self.epoch_flips = int(state["epoch_updates"]), int(state["epoch_flips"])
        self.epoch_iou_sum, self.epoch_regrown = float(state["epoch_iou_sum"]), int(state["epoch_regrown"])


def optimizer_group_of(optimizer: torch.optim.Optimizer, weight: torch.Tensor) -> dict | None:
    for group in optimizer.param_groups:
        if any(p is weight for p in group["params"]):
            return group
    return None
