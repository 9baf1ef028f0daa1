"""What every experiment's report uses: result labels and tables, paired claims, figures.

Below the experiments and above the library (imports run downward): an experiment's ``report``
module reads its runs and writes with these; :mod:`rewire.pipeline` sits on top of both.

- :mod:`rewire.reporting.results`   labels (scale, seeds, data source, device, commit), tables, metrics files
- :mod:`rewire.reporting.claims`    a paper's claim as a paired difference with its interval and verdict
- :mod:`rewire.reporting.convergence`  did a run converge, is it at chance: the gate before a verdict
- :mod:`rewire.reporting.plotting`  figures with their label as a caption
"""
