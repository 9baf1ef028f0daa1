"""The pipeline on top: params, notebook stages, validation, status and the docs' results pages.

- :mod:`rewire.pipeline.params`    the scales' blocks (read by :mod:`rewire.experiments.scales`) and notebook parameters
- :mod:`rewire.pipeline.stage`     executing a notebook as a stage through papermill
  (``python -m rewire.pipeline NOTEBOOK --stage NAME --out DIR``)
- :mod:`rewire.pipeline.validate`  every experiment's block checked against its schema before any work
  (the first DVC stage); each stage's resolved block written for DVC to track
- :mod:`rewire.pipeline.status`    what ``make repro`` will run, or that the results are current
- :mod:`rewire.pipeline.report`    the docs' results pages, the README's status lines and every quoted
  number in docs/, written from the committed results files (``--check`` finds stale ones)

Nothing here changes what a run computes, so it is left out of the runs' code
fingerprint (:mod:`rewire.experiments.engine`).
"""
