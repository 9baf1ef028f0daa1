"""rewire: sparse-training primitives and reproductions of DNW, DPF and robust binary subnetworks.

The package tree is the architecture. Imports run downward through these layers, bottom first
(``tests/test_layers.py`` checks every import, and that no module grows past 600 lines):

1. ``rewire.io``           atomic file writes (used by every layer)
2. foundations that know nothing of each other:
   ``rewire.sparse``       the one mask mechanism (selector + gradient route) and shared primitives:
                           group pruning rules, sparsity schedules, mask statistics, MACs
   ``rewire.models``       architectures, the tiny neural graphs included; they never know about sparsity
   ``rewire.data``         datasets, the prepared uint8 cache, batched on-device augmentation, image folders
   ``rewire.attacks``      adversarial attacks (PGD, FGSM-RS, TRADES, AutoAttack)
3. ``rewire.train``        the training loop, checkpoints, learning-rate schedules, runtime, several processes
4. ``rewire.methods``      one module per method family, all in one registry (DNW, DPF, pruning
                           baselines, dynamic sparse training), plugged into the loop; DNW's graph analyses
5. ``rewire.reporting``    claims, result files and plots, read by the experiments' report modules
6. ``rewire.experiments``  the run engine, the config schema, run specs and the registry; above them,
                           one package per experiment (config, plan, runs, report, paper.yaml)
7. ``rewire.pipeline``     params and their validation, notebook stages, labels, the docs report
8. ``python -m rewire``    the command line (``rewire/__main__.py``)
"""

__version__ = "0.1.0"
