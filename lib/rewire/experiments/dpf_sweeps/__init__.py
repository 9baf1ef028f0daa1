"""DPF on CIFAR-10 (Lin et al., *Dynamic Model Pruning with Feedback*, ICLR 2020): Tables 1, 2, 4, 5 and
Figures 3-14, as far as a scale's grid reaches. The experiment contract of :mod:`rewire.experiments.base`:

``Config`` (:mod:`.config`)
    a ``dpf_sweeps`` block of ``params.yaml``: the recipe of every point and the ``grid`` (entries of
    methods x target sparsities, or ``paper``: the paper's grid, ``paper_grid.yaml``), checked before any work;
``plan(config)`` (:mod:`.plan`)
    every grid point x seed as a :class:`~rewire.experiments.base.RunSpec` (row = the point's name);
``run(config, context=..., only=None)`` (:mod:`.runs`, :mod:`.procedures`)
    trains every point's phases through the run engine (``recipe`` builds the hparams, ``run_one``
    trains one seed of one point); the DVC stage ``dpf_runs`` runs the same through
    ``python -m rewire.experiments.dpf_sweeps --grid --out results/dpf_runs`` (:mod:`.cli`);
``report(config, outcome, out_dir, label)`` (:mod:`.report`, :mod:`.claims`, :mod:`.figures`)
    the tables beside the paper's numbers (``paper.yaml``, :mod:`.paper`), the claims, the figures.

The paper's recipes per model family are :mod:`.presets` (Appendix A.2, with sources).
"""

from rewire.experiments.dpf_sweeps.config import (
    METHODS,
    STRUCTURED_METHODS,
    Config,
    GridEntry,
    GridPoint,
    Recipe,
    grid_points,
)
from rewire.experiments.dpf_sweeps.plan import plan
from rewire.experiments.dpf_sweeps.report import report
from rewire.experiments.dpf_sweeps.runs import recipe, run, run_one

__all__ = [
    "Config",
    "plan",
    "run",
    "report",
    "Recipe",
    "GridEntry",
    "GridPoint",
    "METHODS",
    "STRUCTURED_METHODS",
    "grid_points",
    "recipe",
    "run_one",
]
