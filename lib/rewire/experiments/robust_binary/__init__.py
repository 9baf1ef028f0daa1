"""Robust binary subnetworks (Liu et al., NeurIPS 2022, *Robust Binary Models by Pruning Randomly-initialized
Networks*): everything of the paper that is not a reusable primitive, in one place.

==============  ==================================================================================================
``driver``      one run = one network, one way of training (edge-popup / dense AT / BinaryConnect / lottery-style
                fine-tune or retrain; PGD, TRADES, fast FGSM + ATTA or vanilla), rows, claims, the paper's cells
``analysis``    the appendix checked exactly, without training: Theorems A.1-A.2, Table 6, A.3, A.4
``masks``       the learned masks: Figures 3 and 5, Section 4.3's channel alignment, per-layer kept fractions
``paper``       the paper's numbers (Tables 6-11, the appendix's stated values)
==============  ==================================================================================================

The primitives live in the library: edge-popup in :mod:`rewire.methods.edge_popup`, the adaptive allocation in
:mod:`rewire.sparse.allocation`, the networks in :mod:`rewire.models.resnet_robust` and
:mod:`rewire.models.binary_connect`, the attacks in :mod:`rewire.attacks`. The driver's names are re-exported
here (``from rewire.experiments import robust_binary as rb; rb.run_robust(...)``).
"""

from rewire.experiments.robust_binary.driver import *  # noqa: F403
from rewire.experiments.robust_binary.driver import __all__  # noqa: F401
