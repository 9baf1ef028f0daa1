"""The papers' experiments: one contract, one run engine, one subpackage per experiment.

The shared parts:

- :mod:`rewire.experiments.engine`    a run = config -> hashed directory (settings *and* the code it
  executes) -> train / resume / skip -> record; ``load_run`` brings a trained sparse model back
- :mod:`rewire.experiments.schema`    typed configs: the only schema of each experiment
- :mod:`rewire.experiments.base`      the contract (``Config``, ``plan``, ``run``, ``report``) and ``RunSpec``
- :mod:`rewire.experiments.registry`  every experiment by name (== DVC stage == params.yaml block)

The experiments, each ``config.py`` / ``plan.py`` / ``runs.py`` / ``report.py`` / ``paper.yaml``:

- :mod:`rewire.experiments.quickstart`     the end-to-end check (no paper number)
- :mod:`rewire.experiments.tiny_graphs`    DNW Table 1 and the swap claim of Section 2.2
- :mod:`rewire.experiments.mobilenet_dnw`  DNW Table 2: MobileNetV1-DNW on CIFAR-10, every baseline
- :mod:`rewire.experiments.imagenet`       DNW Table 3 and DPF Table 3 / Figure 10 on ImageNet
- :mod:`rewire.experiments.dpf_sweeps`     DPF Tables 1, 2, 5 and Figures 4, 5, 10 on CIFAR-10
- :mod:`rewire.experiments.dpf_theory`     DPF Theorem 4.1 on a strongly convex toy
- :mod:`rewire.experiments.robust_binary`  robust binary subnetworks (Tables 6-11, Figures 3-5, the appendix)
"""
