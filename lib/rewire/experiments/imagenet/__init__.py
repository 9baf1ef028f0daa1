"""DNW Table 3 (MobileNetV1-DNW, -RG and MobileNetV1) and DPF Table 3 / Figure 10 (ResNet-50) on ImageNet.

Trained at the paper scale only (an ImageNet folder, ``params: imagenet.data``); the cpu scale writes DNW
Table 3's counts from the counter without training; the smoke scale trains every configured row on a
generated folder. DVC stage and ``params.yaml`` block ``imagenet``; no notebook. Command lines::

    python -m rewire.experiments.imagenet --out results/imagenet          # the stage (also under torchrun)
    python -m rewire run imagenet --scale smoke                            # the runs only
    python -m rewire.experiments.imagenet.dnw --data DIR --row dnw_x225    # one DNW Table 3 row
    python -m rewire.experiments.imagenet.dpf --data DIR --method dpf --sparsity 0.8   # one DPF point

==========  ========================================================================================
``config``  :class:`Config` (with :class:`~.config.DpfPoint`), the one schema of the ``imagenet`` blocks
``plan``    the runs: every DNW row, then every DPF point, on every seed (none without a folder)
``runs``    each run through the run engine (:func:`~.runs.run_one`, :func:`~.runs.recipe`)
``dnw``     DNW Table 3: recipe, models, the params / multiply-adds counter, one row's training
``dpf``     DPF Table 3: the ResNet-50 preset with its sources, one point's training
``folders`` ImageNet-style folders: loaders (sharded under torchrun), subsets, a generated folder
``report``  Table 3 (counts and trained rows), DPF Table 3, Figure 10, ``metrics.json``
``stage``   the DVC stage's command line; ``cli``: the options the per-row command lines share
``paper``   DNW Table 3's and DPF Table 3's numbers (``paper.yaml``)
==========  ========================================================================================
"""

from rewire.experiments.imagenet.config import Config
from rewire.experiments.imagenet.plan import plan
from rewire.experiments.imagenet.report import report
from rewire.experiments.imagenet.runs import run

__all__ = ["Config", "plan", "run", "report"]
