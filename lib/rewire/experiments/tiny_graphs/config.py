"""DNW Table 1's parameters: the one schema of ``params.yaml``'s ``tiny_graphs`` blocks (every scale)
and of the notebook's parameters cell (``notebooks/01_tiny_graphs.ipynb``).

The defaults are the smoke scale's values. The pipeline's reserved keys (``scale``, ``out_dir``,
``checkpoint_dir``, ``data_root``) say where a run reads and writes, not what it computes: they are
accepted and dropped (``IGNORED``); the notebook passes them to :class:`~rewire.experiments.base.RunContextSpec`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rewire.experiments.schema import ConfigError, ExperimentConfig, check
from rewire.models.tiny_graphs import ADAPTIVE_SOLVERS, FIXED_STEP_SOLVERS, GRAPH_VARIANTS
from rewire.train.trainer import PRECISIONS

__all__ = ["Config", "SETTINGS", "METHODS", "SCHEDULES", "DATASETS", "RESERVED_KEYS"]

SETTINGS = ("static", "discrete_time", "continuous_time")  # DNW Section 3.1, Table 1's rows
# RG and DNW are Table 1's columns; dnw_no_update (DNW Section 3.3) and dense (the complete graph) also attach
METHODS = ("rg", "dnw", "dnw_no_update", "dense")
# cosine: decay per iteration (smoke, cpu); multistep: x0.1 per epoch at `milestones` (the paper: 80, 120 of 160)
SCHEDULES = ("cosine", "multistep")
DATASETS = ("cifar10", "cifar100")  # the 32x32 official releases rewire.data prepares; the graphs' stem is 32x32
RESERVED_KEYS = ("scale", "out_dir", "checkpoint_dir", "data_root")


def _distinct(name: str, values: tuple, example: str) -> None:
    """A list field holds at least one value and no value twice."""
    if not values:
        raise ConfigError(f"'{name}': [] is empty; give at least one, e.g. {name}: {example}")
    repeated = sorted({str(v) for v in values if values.count(v) > 1})
    if repeated:
        raise ConfigError(
            f"'{name}': {list(values)} repeats {', '.join(repeated)}; list each once, e.g. {name}: {example}"
        )


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """Tiny neural graphs (static, discrete-time, continuous-time) x (RG, DNW) x seeds, and the
    numerical check of DNW Section 2.2's swap claim."""

    IGNORED = RESERVED_KEYS

    dataset: str = field(default="cifar10", metadata=check(choices=DATASETS, example="cifar10"))
    settings: list[str] = field(default=SETTINGS, metadata=check(choices=SETTINGS, example=list(SETTINGS)))
    methods: list[str] = field(default=("rg", "dnw"), metadata=check(choices=METHODS, example=["rg", "dnw"]))
    static_train_per_class: int = field(
        default=20, metadata=check(at_least=0, example=2000, help="training images per class; 0: the whole set")
    )
    dynamic_train_per_class: int = field(
        default=10,
        metadata=check(at_least=0, example=1000, help="the same for discrete and continuous time (10-50x dearer)"),
    )
    test_per_class: int = field(
        default=10, metadata=check(at_least=0, example=0, help="test images per class; 0: the whole test set")
    )
    static_epochs: int = field(default=1, metadata=check(at_least=1, example=160))
    dynamic_epochs: int = field(default=1, metadata=check(at_least=1, example=160))
    batch_size: int = field(default=64, metadata=check(at_least=1, example=128))
    lr: float = field(default=0.1, metadata=check(above=0, example=0.1))
    weight_decay: float = field(default=0.0001, metadata=check(at_least=0, example=0.0001))
    schedule: str = field(default="cosine", metadata=check(choices=SCHEDULES, example="multistep"))
    milestones: list[int | float] = field(  # ints stay ints: the recipe, and so the run's hash, as in the YAML
        default=(), metadata=check(above=0, example=[80, 120], help="epochs of the x0.1 steps (schedule multistep)")
    )
    ode_solver: str = field(
        default="rk4",
        metadata=check(
            choices=FIXED_STEP_SOLVERS + ADAPTIVE_SOLVERS,
            example="dopri5",
            help="continuous time: the paper uses dopri5 (adaptive); rk4/midpoint with a fixed step are cheaper",
        ),
    )
    ode_step: float = field(
        default=0.5, metadata=check(above=0, at_most=1, example=0.25, help="step of a fixed-step solver")
    )
    precision: str = field(default="fp32", metadata=check(choices=PRECISIONS, example="bf16"))
    graph_variant: str = field(
        default="paper",
        metadata=check(
            choices=GRAPH_VARIANTS,
            example="authors_code",
            help="paper (the paper's text) or authors_code (the DNW authors' code, behind Table 1)",
        ),
    )
    eval_every: int = field(
        default=1, metadata=check(at_least=1, example=2, help="evaluate after every n-th epoch and the last")
    )
    seeds: list[int] = field(default=(0,), metadata=check(at_least=0, example=[0, 1, 2]))
    swap_alphas: list[float] = field(
        default=(0.0001, 0.001, 0.01, 0.03, 0.1), metadata=check(above=0, example=[0.001, 0.01, 0.1])
    )
    swap_trials: int = field(default=2000, metadata=check(at_least=1, example=20000))

    def validate(self) -> None:
        _distinct("seeds", self.seeds, "[0, 1, 2]")
        _distinct("settings", self.settings, "['static', 'discrete_time', 'continuous_time']")
        _distinct("methods", self.methods, "['rg', 'dnw']")
        _distinct("swap_alphas", self.swap_alphas, "[0.001, 0.01, 0.1]")
        if self.schedule != "multistep" and self.milestones:
            raise ConfigError(
                f"'milestones': {list(self.milestones)} is read only by schedule 'multistep' (schedule is "
                f"{self.schedule!r}); set milestones: [] or schedule: 'multistep', e.g. milestones: [80, 120]"
            )
        if self.schedule == "multistep":
            if not self.milestones or list(self.milestones) != sorted(set(self.milestones)):
                raise ConfigError(
                    f"'milestones': {list(self.milestones)} must be increasing epochs for schedule 'multistep'; "
                    f"e.g. milestones: [80, 120]"
                )
            shortest = min(self.epochs(setting) for setting in self.settings)
            if self.milestones[-1] >= shortest:
                raise ConfigError(
                    f"'milestones': {list(self.milestones)} reaches past the {shortest} epochs of a trained setting; "
                    f"each milestone must be < the epochs, e.g. milestones: [80, 120] with 160 epochs"
                )

    def epochs(self, setting: str) -> int:
        """Epochs of ``setting``: static graphs and the dynamic (discrete/continuous-time) ones differ."""
        return self.static_epochs if setting == "static" else self.dynamic_epochs

    def train_per_class(self, setting: str) -> int:
        """Training images per class of ``setting`` (0: the whole training set)."""
        return self.static_train_per_class if setting == "static" else self.dynamic_train_per_class
