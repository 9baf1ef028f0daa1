"""One benchmark none of the papers has: every method at the same budget (issue 20, point 6).

Every method of the registry that prunes a convolutional network to one unstructured sparsity (dense, a random
fixed mask, DNW, edge-popup on frozen binary and signed-Kaiming-constant weights, DPF, SNIP, One-shot P + FT, the
iterative lottery ticket, Incremental, SM, DSR, targeted dropout, L1 + Anneal) trains one network (ResNet-20) with
one recipe for the same epochs per phase, on the same seeds; the report ranks them with 95 % intervals, measures
each one's training cost per step against dense in one process, counts inference MACs, and plots accuracy
against training cost. A method that does not apply to the chosen network stops the config, with the reason.

================  =============================================================================================
``config``        :class:`Config`, the one schema of the ``benchmark`` blocks and the notebook's parameters
``applicability`` which methods apply to the chosen network at the chosen sparsity, and why not
``plan``          the runs: dense per seed, then every sparse method x sparsity x seed
``runs``          the recipe, each method's attachment, the training through the run engine (:func:`run`)
``timing``        the paired, interleaved step-cost benchmark
``report``        ranking, cost, curves, figure, ``metrics.json`` / ``details.json``
================  =============================================================================================

No paper has this table, so there is no ``paper.yaml``.
"""

from rewire.experiments.benchmark.config import Config
from rewire.experiments.benchmark.plan import plan
from rewire.experiments.benchmark.report import report
from rewire.experiments.benchmark.runs import run

__all__ = ["Config", "plan", "run", "report"]
