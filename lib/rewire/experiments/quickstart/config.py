"""The quickstart's parameters: the one schema of ``params.yaml``'s ``quickstart`` blocks (every scale)
and of the notebook's parameters cell (``notebooks/00_quickstart.ipynb``).

The defaults are the smoke scale's values. The pipeline's reserved keys (``scale``, ``out_dir``,
``checkpoint_dir``, ``data_root``) say where a run reads and writes, not what it computes: they are
accepted and dropped (``IGNORED``); the notebook passes them to :class:`~rewire.experiments.base.RunContextSpec`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rewire.experiments.schema import ConfigError, ExperimentConfig, check
from rewire.train.trainer import PRECISIONS

__all__ = ["Config", "DATASETS", "RESERVED_KEYS", "check_seeds"]

# The 32x32 official releases rewire.data prepares (SmallConvNet and the tiny graphs are built for 32x32 inputs).
DATASETS = ("cifar10", "cifar100")
RESERVED_KEYS = ("scale", "out_dir", "checkpoint_dir", "data_root")


def check_seeds(seeds: tuple[int, ...], example: str = "[0, 1, 2]") -> None:
    """Seeds are a non-empty list of distinct integers (each >= 0 is checked by the field)."""
    if not seeds:
        raise ConfigError(f"'seeds': [] is empty; give at least one seed, e.g. seeds: {example}")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ConfigError(
            f"'seeds': {list(seeds)} repeats {', '.join(map(str, repeated))}; each seed is one run, "
            f"list it once, e.g. seeds: {example}"
        )


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """A small dense CNN on CIFAR-10, one run per seed (no paper number); optionally every seed again
    at a second precision to test that bf16 and fp32 agree (the precision check)."""

    IGNORED = RESERVED_KEYS

    dataset: str = field(default="cifar10", metadata=check(choices=DATASETS, example="cifar10"))
    train_per_class: int = field(
        default=100, metadata=check(at_least=0, example=2000, help="training images per class; 0: the whole set")
    )
    test_per_class: int = field(
        default=50, metadata=check(at_least=0, example=0, help="test images per class; 0: the whole test set")
    )
    epochs: int = field(default=1, metadata=check(at_least=1, example=10))
    batch_size: int = field(default=128, metadata=check(at_least=1, example=128))
    width: int = field(
        default=16, metadata=check(at_least=1, example=16, help="channels of the first stage (then 2x, 4x)")
    )
    lr: float = field(default=0.05, metadata=check(above=0, example=0.1, help="peak learning rate (cosine decay)"))
    weight_decay: float = field(default=0.0005, metadata=check(at_least=0, example=0.0005))
    precision: str = field(
        default="fp32", metadata=check(choices=PRECISIONS, example="fp32", help="bf16: autocast + channels-last")
    )
    compare_precision: str = field(
        default="",
        metadata=check(
            choices=("", *PRECISIONS),
            example="bf16",
            help="also train every seed at this precision and test agreement ('' : no comparison)",
        ),
    )
    seeds: list[int] = field(default=(0,), metadata=check(at_least=0, example=[0, 1, 2]))

    def validate(self) -> None:
        check_seeds(self.seeds)
        if self.compare_precision == self.precision:
            raise ConfigError(
                f"'compare_precision': {self.compare_precision!r} equals 'precision' and would compare a run with "
                f"itself; set the other precision or '' (no comparison), e.g. compare_precision: 'bf16'"
            )

    @property
    def precisions(self) -> tuple[str, ...]:
        """The precisions every seed trains at: ``precision``, then ``compare_precision`` when set."""
        return (self.precision, self.compare_precision) if self.compare_precision else (self.precision,)
