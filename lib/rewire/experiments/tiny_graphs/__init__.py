"""DNW Table 1 (Wortsman et al., NeurIPS 2019): tiny neural graphs (static, discrete-time,
continuous-time) trained with RG or DNW, and DNW Section 2.2's swap claim checked numerically.

==============  ====================================================================================
``config``      :class:`Config`, the one schema of the ``tiny_graphs`` blocks and the notebook's parameters
``plan``        the runs: (setting, method, seed); the graph of each setting
``runs``        the recipe and the training through the run engine (:func:`run`, :func:`run_one`)
``report``      Table 1 beside the paper, the claims, plot data, ``metrics.json`` / ``details.json``
``figures``     accuracy and swaps per epoch, adjacency before and after, the swap claim
``swap_claim``  DNW Section 2.2 as a seeded numerical experiment (no training)
``paper``       the loader of ``paper.yaml``: Table 1's quoted means and stds
==============  ====================================================================================
"""

from rewire.experiments.tiny_graphs.config import Config
from rewire.experiments.tiny_graphs.plan import plan
from rewire.experiments.tiny_graphs.report import report
from rewire.experiments.tiny_graphs.runs import run

__all__ = ["Config", "plan", "run", "report"]
