"""Every experiment by name: the DVC stage, the ``params.yaml`` block and the CLI use the same name.

Each entry names the subpackage that implements the contract of :mod:`rewire.experiments.base`
and the notebook that narrates it. Packages are imported only when asked for, so listing the
experiments (``python -m rewire list``) imports no model code.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

__all__ = ["ExperimentEntry", "EXPERIMENTS", "names", "entry", "load", "config_class"]


@dataclass(frozen=True)
class ExperimentEntry:
    name: str  # registry key == DVC stage == params.yaml block
    package: str  # the subpackage implementing Config / plan / run / report
    notebook: str | None  # the notebook that narrates it (None: a stage without one)
    title: str


EXPERIMENTS: dict[str, ExperimentEntry] = {
    e.name: e
    for e in (
        ExperimentEntry("quickstart", "rewire.experiments.quickstart", "notebooks/00_quickstart.ipynb",
                        "the end-to-end check: a small dense CNN (no paper number)"),
        ExperimentEntry("tiny_graphs", "rewire.experiments.tiny_graphs", "notebooks/01_tiny_graphs.ipynb",
                        "DNW Table 1: static, discrete- and continuous-time tiny graphs"),
        ExperimentEntry("mobilenet_dnw", "rewire.experiments.mobilenet_dnw", "notebooks/02_mobilenet_dnw.ipynb",
                        "DNW Table 2: MobileNetV1-DNW on CIFAR-10 with every baseline"),
        ExperimentEntry("imagenet", "rewire.experiments.imagenet", None,
                        "DNW Table 3 and DPF Table 3 / Figure 10 on ImageNet"),
        ExperimentEntry("dpf_sweeps", "rewire.experiments.dpf_sweeps", "notebooks/03_dpf_sweeps.ipynb",
                        "DPF Tables 1, 2, 5 and Figures 4, 5, 10 on CIFAR-10"),
        ExperimentEntry("dpf_theory", "rewire.experiments.dpf_theory", "notebooks/03b_dpf_theory.ipynb",
                        "DPF Theorem 4.1 on a strongly convex toy"),
        ExperimentEntry("robust_binary", "rewire.experiments.robust_binary", "notebooks/04_robust_binary.ipynb",
                        "robust binary subnetworks: edge-popup on frozen binary weights, adversarial training"),
        ExperimentEntry("benchmark", "rewire.experiments.benchmark", "notebooks/05_benchmark.ipynb",
                        "every method at the same budget: one network, one recipe, ranked with intervals and costs"),
    )
}  # fmt: skip


def names() -> list[str]:
    return list(EXPERIMENTS)


def entry(name: str) -> ExperimentEntry:
    if name not in EXPERIMENTS:
        raise KeyError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)} (python -m rewire list)")
    return EXPERIMENTS[name]


def load(name: str) -> ModuleType:
    """The experiment's package, checked to expose the contract (Config, plan, run, report)."""
    module = importlib.import_module(entry(name).package)
    missing = [part for part in ("Config", "plan", "run", "report") if not hasattr(module, part)]
    if missing:
        raise TypeError(f"{module.__name__} does not implement the experiment contract: missing {', '.join(missing)}")
    return module


def config_class(name: str) -> type:
    return load(name).Config
