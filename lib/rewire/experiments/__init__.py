"""The papers' experiments, each on one run engine (:mod:`rewire.experiments.engine`).

- :mod:`rewire.experiments.engine`       a run = config -> hashed directory (settings *and* code)
  -> train / resume / skip -> record; ``load_run`` brings a trained sparse model back
- :mod:`rewire.experiments.quickstart`   the end-to-end check (no paper number)
- :mod:`rewire.experiments.tiny_graphs`  DNW Table 1: static, discrete- and continuous-time graphs
- :mod:`rewire.experiments.swap_claim`   DNW Section 2.2, the swap claim as a seeded experiment
- :mod:`rewire.experiments.dpf_sweep`    DPF Tables 1, 2, 5 and Figures 4, 5, 10: one sweep point
- :mod:`rewire.experiments.dpf_report`   the DPF tables beside the paper's numbers
- :mod:`rewire.experiments.dpf_theory`   DPF Theorem 4.1 on a strongly convex toy
"""
