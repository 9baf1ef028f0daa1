"""Training: the loop, its checkpoints, learning-rate schedules and the runtime.

- :mod:`rewire.train.trainer`     ``Trainer`` with callbacks and exact resume, ``evaluate``
- :mod:`rewire.train.checkpoint`  atomic save and validated ``weights_only`` load
- :mod:`rewire.train.schedules`   learning-rate schedules as pure functions of time
- :mod:`rewire.train.runtime`     device choice, seeds, numeric precision, provenance (commit)
"""

from rewire.train.trainer import Callback, History, Trainer, TrainingHparams, evaluate

__all__ = ["Callback", "History", "Trainer", "TrainingHparams", "evaluate"]
