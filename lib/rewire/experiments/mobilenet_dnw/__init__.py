"""DNW Table 2 (and Appendix Table 5): ways of finding a k-edge MobileNetV1-DNW on CIFAR-10.

Every row trains MobileNetV1-DNW x d (d = 0.225) with each graph stage held to its own edge budget; only
*how the k edges are found* changes (DNW Section 3.3): a random graph, top-k without the update rule, L1 +
Anneal, targeted dropout (unconstrained and regular), a one-shot lottery ticket and fine-tuning of the
pruned complete graph, and DNW itself. Targeted dropout's ρ and L1 + Anneal's λ are chosen on a validation
split held out of the training images, never on the test set. At the paper scale (``final_on_all_images``) they
are chosen on 45,000 + 5,000 images and every reported run then trains on all 50,000. ``graph_variant``: ``paper``
(the paper's text) or ``authors_code`` (the authors' code behind Table 2's numbers: top-k over the whole adjacency
matrix, targeted dropout on |W|). Notebook ``02_mobilenet_dnw.ipynb`` narrates it;
DVC stage and ``params.yaml`` block ``mobilenet_dnw``; ``python -m rewire run mobilenet_dnw --scale cpu``.

==========  ========================================================================================
``config``  :class:`Config`, the one schema of the ``mobilenet_dnw`` blocks and the notebook's parameters
``rows``    the rows of Table 2 (:class:`~rewire.experiments.mobilenet_dnw.rows.Row`, keys like ``td-0.95``)
``plan``    the runs, in training order (candidates on the first seed, then the chosen one)
``runs``    the recipe (:func:`~.runs.recipe`) and each row's training (:func:`~.runs.run_one`)
``report``  Tables 2 and 5 beside the paper, claims, figures, Table 3's counts, ``metrics.json``
``timing``  inference of the trained DNW, masked against compact (dead nodes dropped)
``paper``   the paper's Table 2 and Table 5 (``paper.yaml``)
==========  ========================================================================================
"""

from rewire.experiments.mobilenet_dnw.config import Config
from rewire.experiments.mobilenet_dnw.plan import plan
from rewire.experiments.mobilenet_dnw.report import report
from rewire.experiments.mobilenet_dnw.runs import run

__all__ = ["Config", "plan", "run", "report"]
