"""Sparse-from-scratch baselines of DPF's Table 1: a prune-redistribute-regrow cycle at a fixed sparsity.

Both methods train a network whose overall sparsity over the pruned layers is fixed at the
target from the first iteration (no dense phase). Periodically they remove some kept weights,
decide how many each layer gets back, and regrow that many at pruned positions, so the total
number of kept weights never changes:

=======================================  ===================  ===========================  =======================  ================
method                                   when                 prune                        redistribute             regrow
=======================================  ===================  ===========================  =======================  ================
SM  (Dettmers & Zettlemoyer 2019)        end of every epoch   share p_t of every layer,    mean |momentum| of the   largest |momentum|
                                                              smallest |w|                 layer's kept weights
DSR (Mostafa & Wang 2019)                every U iterations   |w| < H, one global adaptive  surviving weights        uniformly at random
                                                              threshold H                  of the layer
=======================================  ===================  ===========================  =======================  ================

Both callbacks run on a :class:`rewire.pruning.MaskGroup` built with ``route="masked"``: a
pruned weight receives no gradient, and its dense value and optimizer state are set to zero
after every mask change (:meth:`MaskGroup.zero_pruned`), so it stays exactly zero while
pruned. A regrown weight starts at zero (with zero optimizer state), as in both papers.

Layers. Both papers keep some layers out of the cycle: Mostafa & Wang do not reparameterize the
first convolution and the last (fully-connected) layer, and in the ImageNet reference code
(TimDettmers/sparse_learning, imagenet/dynamic-reparameterization/main.py) the first
convolution and the ResNet-50 downsampling convolutions stay dense for both methods. Here, by
default (``dense_first_conv=True`` of the registry's ``attach``), the group holds every convolution
weight except the first (``rewire.sparse.groups.conv_weight_targets(model, dense_first=True)``):
the first convolution stays dense, as in both papers, and the target sparsity is that of the
remaining convolutions. The final linear layer, biases and batch norm stay dense. DPF itself
prunes the first convolution too (DPF Section 5: "our competitors may ignore some layers (e.g.
the first convolution and downsampling layers in DSR)"); ``dense_first_conv=False`` puts SM and
DSR on exactly DPF's layers.

Counting. The initial mask (:func:`initial_masks`) has exactly ``round(s N)`` pruned entries
over the ``N`` entries of the group (the convention of :func:`rewire.pruning.pruned_count`),
spread uniformly: every layer at the same sparsity up to one entry. Regrowth counts are
apportioned by largest remainders and capped at each layer's free capacity, the overflow
going to the layers with room (:func:`apportion`), so no update changes the total.

Resume. The masks live in the model's state_dict (``SparseWeight.mask`` buffers). A callback's
``state_dict`` holds the rest: whether the initial mask was drawn, the private generator's
state, DSR's threshold, SM's dense-gradient momentum, and the epoch counters.
"""

from rewire.methods.dynamic_sparse.cycle import apportion, initial_masks
from rewire.methods.dynamic_sparse.dsr import (
    DSR_INITIAL_THRESHOLD,
    DSR_TARGET_PRUNED_FRACTION,
    DSR_TOLERANCE,
    DSR_UPDATE_EVERY,
    DSR_WRN_EPOCHS,
    DSR_WRN_STOP_EPOCH,
    DSR_WRN_UPDATE_SCHEDULE,
    DynamicSparseReparameterization,
)
from rewire.methods.dynamic_sparse.sparse_momentum import SM_PRUNE_RATE, SM_PRUNE_RATE_FLOOR, SparseMomentum
from rewire.methods.registry import Attached, Method, register
from rewire.sparse.groups import MaskGroup, conv_weight_targets

__all__ = [
    "initial_masks",
    "apportion",
    "SparseMomentum",
    "DynamicSparseReparameterization",
    "SM_PRUNE_RATE",
    "SM_PRUNE_RATE_FLOOR",
    "DSR_INITIAL_THRESHOLD",
    "DSR_TOLERANCE",
    "DSR_UPDATE_EVERY",
    "DSR_WRN_UPDATE_SCHEDULE",
    "DSR_WRN_STOP_EPOCH",
    "DSR_WRN_EPOCHS",
    "DSR_TARGET_PRUNED_FRACTION",
]


def _attach(callback_class, **paper_defaults):
    def attach(model, sparsity: float, *, seed: int = 0, targets=None, dense_first_conv: bool = True, **kwargs):
        if targets is None:
            targets = conv_weight_targets(model, dense_first=dense_first_conv)
        group = MaskGroup(model, targets, route="masked")
        return Attached(group, [callback_class(group, sparsity, seed=seed, **{**paper_defaults, **kwargs})])

    attach.__doc__ = (
        f"A masked MaskGroup over the convolution weights (the first one left dense unless "
        f"``dense_first_conv=False``, or over ``targets``) with a {callback_class.__name__} callback"
        + (f" (defaults {paper_defaults}; keyword arguments override them)." if paper_defaults else ".")
    )
    return attach


register(
    Method(
        "sm",
        family="dynamic_sparse",
        kind="group",
        paper="Dettmers & Zettlemoyer 2019 (DPF Table 1)",
        summary="sparse momentum: prune the smallest weights per layer, regrow by momentum each epoch.",
        attach=_attach(SparseMomentum),
    )
)
register(
    Method(
        "dsr",
        family="dynamic_sparse",
        kind="group",
        paper="Mostafa & Wang 2019 (DPF Table 1)",
        summary="dynamic sparse reparameterization: global adaptive threshold, random regrowth.",
        attach=_attach(
            DynamicSparseReparameterization,
            update_every=DSR_WRN_UPDATE_SCHEDULE,
            stop_epoch=DSR_WRN_STOP_EPOCH,
            schedule_epochs=DSR_WRN_EPOCHS,
        ),
    )
)
