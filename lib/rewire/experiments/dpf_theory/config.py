"""The schema of DPF's Theorem 4.1 toy experiment: one ``dpf_theory`` block of ``params.yaml``."""

from __future__ import annotations

from dataclasses import dataclass, field

from rewire.experiments.schema import ConfigError, ExperimentConfig, check

__all__ = ["Config"]


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """ℓ2-regularised logistic regression on synthetic data (:func:`.problem.make_problem`), DPF vs SGD → prune.

    The step size is Theorem 4.1's γ_t = 4/(μ(t+2+shift)); ``shift = 0`` is the theorem's own rate
    (its explicit bound is evaluated only there).
    """

    IGNORED = ("scale", "out_dir", "checkpoint_dir", "data_root")

    n_samples: int = field(default=300, metadata=check(at_least=2, example=1000, help="n, synthetic training examples"))
    dim: int = field(default=40, metadata=check(at_least=2, example=100, help="d, number of weights"))
    sparse_truth: float = field(
        default=0.1, metadata=check(above=0, at_most=1, example=0.1, help="share of large coordinates of w_true")
    )
    tail: float = field(
        default=0.3, metadata=check(at_least=0, below=1, example=0.3, help="share of ||w_true|| in a dense tail")
    )
    signal: float = field(default=3.0, metadata=check(above=0, example=3.0, help="||w_true||: the labels' signal"))
    reg: float = field(default=0.05, metadata=check(above=0, example=0.05, help="μ: the ℓ2 strength"))
    problem_seed: int = field(default=0, metadata=check(at_least=0, example=0, help="the data set"))
    sparsities: tuple[float, ...] = field(
        default=(0.5, 0.9), metadata=check(above=0, below=1, example=[0.5, 0.9], help="share of weights pruned")
    )
    steps: int = field(default=600, metadata=check(at_least=1, example=4000, help="T, SGD steps"))
    batch_size: int = field(default=16, metadata=check(at_least=1, example=16, help="minibatch, with replacement"))
    update_every: int = field(default=1, metadata=check(at_least=1, example=1, help="mask refresh period"))
    shift: float = field(default=0.0, metadata=check(at_least=0, example=0.0, help="γ_t = 4/(μ(t+2+shift))"))
    dense_decay_variant: bool = field(default=True, metadata=check(example=True, help="also DPF + dense weight decay"))
    seeds: tuple[int, ...] = field(default=(0,), metadata=check(at_least=0, example=[0, 1, 2], help="minibatch seeds"))
    curve_points: int = field(default=200, metadata=check(at_least=2, example=200, help="rows per run in curves.csv"))

    def validate(self) -> None:
        if not self.sparsities:
            raise ConfigError("'sparsities': name at least one sparsity; e.g. sparsities: [0.5, 0.9]")
        if not self.seeds:
            raise ConfigError("'seeds': name at least one seed; e.g. seeds: [0, 1, 2]")
