"""rewire: sparse-training primitives and reproductions of DNW, DPF and robust binary subnetworks.

One module per concept (see README "Where things live"):

- ``rewire.data``        datasets, the prepared uint8 cache, batched on-device augmentation
- ``rewire.training``    the training loop with callbacks, checkpoints and exact resume
- ``rewire.schedules``   pure learning-rate schedule functions
- ``rewire.checkpoint``  checkpoint files: atomic save, validated ``weights_only`` load
- ``rewire.runtime``     device choice and seeds
- ``rewire.params``      the ``params.yaml`` scales and their validation
- ``rewire.pipeline``    executing a notebook as a DVC stage through papermill
- ``rewire.results``     metrics JSON and tables labelled with scale, seeds and data source
- ``rewire.plotting``    seaborn figures
- ``rewire.models``      model definitions (they never know how they are sparsified)
"""

__version__ = "0.1.0"
