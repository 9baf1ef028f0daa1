"""From a notebook to a DVC stage and back into the README.

- :mod:`rewire.pipeline.params`    the ``params.yaml`` scales and their validation
- :mod:`rewire.pipeline.stage`     executing a notebook as a stage through papermill
  (``python -m rewire.pipeline NOTEBOOK --stage NAME --out DIR``)
- :mod:`rewire.pipeline.validate`  every experiment's block checked against its schema before any work
  (the first DVC stage); each stage's resolved block written for DVC to track
- :mod:`rewire.pipeline.status`    what ``make repro`` will run, or that the results are current
- :mod:`rewire.pipeline.report`    the README's results section from the committed artefacts

Nothing here changes what a run computes, so it is left out of the runs' code
fingerprint (:mod:`rewire.experiments.engine`).
"""
