"""Sparse-training methods, one module per family, all in one registry (:mod:`rewire.methods.registry`).

=================================  ==============================================================================
module                             methods
=================================  ==============================================================================
``methods/dnw.py``                 ``dnw``, ``dnw_no_update``, ``rg``, ``dense`` (DNW, Wortsman et al. 2019)
``methods/dpf.py``                 ``dpf``, ``dpf_structured``, ``incremental``, ``sfp`` and the procedures
                                   ``dpf_ft``, ``incremental_ft``, ``dpf_rewind`` (DPF, Lin et al. 2020)
``methods/pruning.py``             ``snip``, ``oneshot_ft``, ``lottery`` (pruning baselines of DPF)
``methods/dynamic_sparse/``       ``sm``, ``dsr`` (sparse-from-scratch baselines of DPF)
``methods/targeted_dropout.py``    ``td``, ``td_regular`` (targeted dropout as DNW Table 2 / Appendix B run it)
``methods/anneal.py``              ``l1_anneal`` (DNW Table 2's L1 + Anneal, from the paper's words)
``methods/edge_popup.py``          ``edge_popup`` (learned scores on frozen weights; robust binary subnetworks)
=================================  ==============================================================================

Beside the families, DNW's analyses of the graphs it rewires (they read a concrete model's masks):
``methods/dnw_wiring.py`` (live edges, swaps and dead nodes of a tiny graph, DNW Sections 2-3) and
``methods/dnw_profile.py`` (MobileNetV1-DNW's parameters and multiply-adds as DNW Table 3 counts them).

A method is a plug-in of the training loop (a selector on the mask mechanism of :mod:`rewire.sparse`,
or a :class:`rewire.train.Callback`): methods import ``sparse``, ``train`` and, for the analyses above,
``models``; none of those imports a method.

Add a method: write ``methods/<family>.py`` with its selector or callback and a
``register(Method(...))`` call, and import the module here.
"""

from rewire.methods import anneal, dnw, dpf, dynamic_sparse, edge_popup, pruning, targeted_dropout  # noqa: F401  (each registers its methods)
from rewire.methods.dnw import apply_method
from rewire.methods.registry import Attached, Method, get, names, register, table

__all__ = ["apply_method", "Attached", "Method", "get", "names", "register", "table", "known_methods"]


def known_methods() -> list[str]:
    """Every registered method name."""
    return names()
