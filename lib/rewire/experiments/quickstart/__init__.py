"""The quickstart: a small dense CNN on CIFAR-10, one run per seed (no paper number).

It proves the chain data -> library -> run engine -> papermill -> DVC -> figure -> nbval, and at
the cpu scale tests that bf16 training agrees with fp32 within a point (the precision check).

==========  ========================================================================================
``config``  :class:`Config`, the one schema of the ``quickstart`` blocks and the notebook's parameters
``plan``    the runs: every seed at ``precision`` (then at ``compare_precision``)
``runs``    the recipe and the training through the run engine (:func:`run`, :func:`run_one`)
``report``  summary, precision check, curves, figure, ``metrics.json`` / ``details.json``
==========  ========================================================================================

``paper.yaml`` is empty: no paper number is reproduced here.
"""

from rewire.experiments.quickstart.config import Config
from rewire.experiments.quickstart.plan import plan
from rewire.experiments.quickstart.report import report
from rewire.experiments.quickstart.runs import run

__all__ = ["Config", "plan", "run", "report"]
