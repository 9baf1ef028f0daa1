"""Robust binary subnetworks (Liu et al., NeurIPS 2022, *Robust Binary Models by Pruning Randomly-initialized
Networks*): the experiment on the contract of :mod:`rewire.experiments.base`.

    from rewire.experiments import robust_binary as rb
    config = rb.Config.from_values(block)              # params.yaml's block, checked before any work
    rb.plan(config)                                    # the runs: every row on each of its seeds
    outcome = rb.run(config, context=RunContextSpec()) # trained, or found by hash
    label = rb.run_label(config, outcome, "cpu")       # provenance, ε and every attack setting
    metrics = rb.report(config, outcome, out_dir, label)

or ``python -m rewire plan robust_binary --scale cpu`` / ``python -m rewire run robust_binary --only ours_p01``.

==============  ==================================================================================================
``config``      :class:`Config`, the only schema: every key of the ``params.yaml`` blocks and notebook parameter;
                its ``rows`` are :class:`Row` configs (one network, one way of training it)
``plan``        the runs a config asks for, each with its row's identity
``runs``        one run = one row and seed through the run engine (edge-popup / dense AT / BinaryConnect /
                lottery-style fine-tune or retrain; PGD, TRADES, fast FGSM + ATTA or vanilla); in every run's code hash
``callbacks``   the training attacks and the robust model selection (part of the runs' code)
``report``      tables, claims, figures, the attack cross-checks, metrics (not in the code hash)
``claims``      the paper's claims over rows, each side gated by its runs' convergence (read by the report)
``evaluation``  what the report computes from trained models: attack cross-checks, kernels, channel alignment
``analysis``    the appendix checked exactly, without training: Theorems A.1-A.2, Table 6, A.3, A.4
``masks``       the learned masks: Figures 3 and 5, Section 4.3's channel alignment, per-layer kept fractions
``paper``       the paper's numbers (``paper.yaml``: Tables 6-11, the appendix's stated values) and their lookups
==============  ==================================================================================================

The primitives live in the library: edge-popup in :mod:`rewire.methods.edge_popup`, the adaptive allocation in
:mod:`rewire.sparse.allocation`, the networks in :mod:`rewire.models.resnet_robust` and
:mod:`rewire.models.binary_connect`, the attacks in :mod:`rewire.attacks`.
"""

from rewire.experiments.robust_binary.config import Config, Row
from rewire.experiments.robust_binary.plan import plan
from rewire.experiments.robust_binary.report import report, run_label
from rewire.experiments.robust_binary.runs import run

__all__ = ["Config", "Row", "plan", "run", "report", "run_label"]
