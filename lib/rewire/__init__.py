"""rewire: sparse-training primitives and reproductions of DNW, DPF and robust binary subnetworks.

The package tree is the architecture (see README, "Where things live"):

- ``rewire.sparse``       the one mask mechanism (selector + gradient route) and shared primitives:
                          group pruning rules, sparsity schedules, mask statistics, MACs, graph wiring
- ``rewire.methods``      one module per method family, all in one registry (DNW, DPF, pruning
                          baselines, dynamic sparse training)
- ``rewire.models``       architectures, the tiny neural graphs included; they never know about sparsity
- ``rewire.train``        the training loop, checkpoints, learning-rate schedules, runtime
- ``rewire.data``         datasets, the prepared uint8 cache, batched on-device augmentation
- ``rewire.experiments``  the run engine and the papers' experiment drivers
- ``rewire.pipeline``     params and their validation, notebook stages, labels, plots, the README report
- ``rewire.io``           atomic file writes (used by every layer)
"""

__version__ = "0.1.0"
