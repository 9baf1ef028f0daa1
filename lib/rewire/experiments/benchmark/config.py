"""The benchmark's parameters: the one schema of ``scales.yaml``'s ``benchmark`` blocks (every scale) and of the
notebook's parameters cell (``notebooks/05_benchmark.ipynb``).

One network, one recipe, the same epochs for every method (issue 20, point 6). The recipe fields are those of a
DPF sweep point (:class:`rewire.experiments.dpf_sweeps.config.Recipe`: SGD with Nesterov momentum, lr decayed by
``gamma`` at the ``milestones`` fractions of training, the sparsity ramps ending at the second decay), because the
DPF-family methods are trained by that experiment's phases; :meth:`Config.recipe` builds it.

The defaults are the smoke scale's values. The pipeline's reserved keys (``scale``, ``out_dir``,
``checkpoint_dir``, ``data_root``) say where a run reads and writes: accepted and dropped (``IGNORED``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rewire.experiments.quickstart.config import DATASETS, RESERVED_KEYS, check_seeds
from rewire.experiments.schema import ConfigError, ExperimentConfig, check
from rewire.methods.anneal import L1_COEFFICIENT
from rewire.methods.targeted_dropout import check_rho
from rewire.train.trainer import PRECISIONS

__all__ = ["Config", "METHODS", "LABELS", "REGISTRY_NAME", "NOT_IN_BENCHMARK", "RAMPED_METHODS", "MODELS"]

# The benchmark's rows (issue 20, point 6): every registry method that prunes the weights of a convolutional
# network to one unstructured sparsity. Key -> the registry's method (rewire.methods.registry).
REGISTRY_NAME = {
    "dense": "dense",
    "random": "rg",
    "dnw": "dnw",
    "edge_popup_binary": "edge_popup",
    "edge_popup_skc": "edge_popup",
    "dpf": "dpf",
    "snip": "snip",
    "oneshot_ft": "oneshot_ft",
    "lottery": "lottery",
    "incremental": "incremental",
    "sm": "sm",
    "dsr": "dsr",
    "td": "td",
    "l1_anneal": "l1_anneal",
}
METHODS = tuple(REGISTRY_NAME)
LABELS = {
    "dense": "Dense",
    "random": "Random fixed mask (RG)",
    "dnw": "DNW",
    "edge_popup_binary": "Edge-popup, binary weights",
    "edge_popup_skc": "Edge-popup, signed Kaiming constant",
    "dpf": "DPF",
    "snip": "SNIP",
    "oneshot_ft": "One-shot P + FT",
    "lottery": "Lottery ticket (iterative)",
    "incremental": "Incremental (Zhu & Gupta)",
    "sm": "Sparse momentum (SM)",
    "dsr": "DSR",
    "td": "Targeted dropout",
    "l1_anneal": "L1 + Anneal",
}
# Registry methods that are not rows, and why (a config naming one is refused with the reason).
NOT_IN_BENCHMARK = {
    "rg": "it is the row 'random' (DNW's random graph: a fixed random mask)",
    "edge_popup": "it is two rows, 'edge_popup_binary' and 'edge_popup_skc' (its two weight initialisations)",
    "dnw_no_update": "an ablation of DNW (DNW Section 3.3), not a method of its own",
    "td_regular": "a variant of targeted dropout (DNW Appendix B); the row 'td' is Table 2's unconstrained one",
    "sfp": "structured: it prunes whole filters, so it reaches a filter sparsity, not the weight sparsity every "
    "row shares",
    "dpf_structured": "structured: it prunes whole filters, so it reaches a filter sparsity, not the weight "
    "sparsity every row shares",
    "sfp_bn": "structured (a filter sparsity), and a dpf_sweeps variant of SFP with recomputed batch-norm statistics",
    "dpf_structured_bn": "structured (a filter sparsity), and a dpf_sweeps variant with recomputed batch-norm "
    "statistics",
    "dpf_ft": "a DPF procedure (DPF then fine-tuning, DPF Table 2) with more epochs than the shared budget",
    "incremental_ft": "an Incremental procedure (then fine-tuning, DPF Table 2) with more epochs than the budget",
    "dpf_rewind": "a DPF analysis (its mask on the initial weights, DPF Figure 5), not a method",
}
# The networks of rewire.models built for 32x32 CIFAR inputs (rewire.experiments.benchmark.applicability checks
# that the chosen one is convolutional enough for each method).
RAMPED_METHODS = ("dpf", "incremental", "l1_anneal")  # the sparsity follows a ramp (the others start at it)
MODELS = (
    "resnet20",
    "resnet32",
    "resnet56",
    "wrn28_2",
    "wrn28_4",
    "wrn28_8",
    "vgg16",
    "small_convnet",
    "mobilenet_v1",
    "mobilenet_v1_dnw",
    "tiny_static",
)


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """Every method at one (or two) sparsities on one network, one recipe, the same epochs, several seeds."""

    IGNORED = RESERVED_KEYS

    dataset: str = field(default="cifar10", metadata=check(choices=DATASETS, example="cifar10"))
    model: str = field(default="resnet20", metadata=check(choices=MODELS, example="resnet20"))
    width: int = field(
        default=4,
        metadata=check(at_least=0, example=16, help="channels of the first stage of a CIFAR ResNet; 0: the model's"),
    )
    train_per_class: int = field(
        default=4, metadata=check(at_least=0, example=0, help="training images per class; 0: the whole set")
    )
    test_per_class: int = field(
        default=5, metadata=check(at_least=0, example=0, help="test images per class; 0: the whole test set")
    )
    validation_fraction: float = field(
        default=0.2,
        metadata=check(above=0, below=1, example=0.1, help="held out of the training images, evaluated every epoch"),
    )
    epochs: int = field(default=2, metadata=check(at_least=2, example=160, help="epochs of every training phase"))
    batch_size: int = field(default=16, metadata=check(at_least=1, example=128))
    lr: float = field(default=0.1, metadata=check(above=0, example=0.1))
    momentum: float = field(default=0.9, metadata=check(at_least=0, below=1, example=0.9))
    weight_decay: float = field(default=1e-4, metadata=check(at_least=0, example=0.0001))
    milestones: list[float] = field(
        default=(0.5, 0.75),
        metadata=check(
            above=0, below=1, example=[0.5, 0.75], help="lr decays, fractions of epochs; ramps end at the 2nd"
        ),
    )
    gamma: float = field(default=0.1, metadata=check(above=0, at_most=1, example=0.1))
    update_every: int = field(
        default=1, metadata=check(at_least=1, example=16, help="iterations between mask updates (DPF p, L1 + Anneal)")
    )
    sparsity_frequency: float = field(
        default=0.0, metadata=check(at_least=0, example=1.0, help="Δt of the cubic ramps in epochs; 0: every update")
    )
    finetune_epochs: int = field(default=1, metadata=check(at_least=1, example=60, help="One-shot P + FT's tuning"))
    finetune_lr: float = field(default=0.01, metadata=check(above=0, example=0.01))
    lottery_rounds: int = field(default=1, metadata=check(at_least=1, example=10))
    td_rho: float | str = field(
        default="gamma", metadata=check(example="gamma", help="targeted dropout's ρ in [0, 1], or 'gamma' (ρ = γ)")
    )
    l1_coefficient: float = field(default=L1_COEFFICIENT, metadata=check(at_least=0, example=1e-6))
    precision: str = field(default="fp32", metadata=check(choices=PRECISIONS, example="bf16"))
    eval_every: int = field(default=1, metadata=check(at_least=1, example=1))
    sparsities: list[float] = field(
        default=(0.9,), metadata=check(above=0, below=1, example=[0.9, 0.95], help="target weight sparsities")
    )
    methods: list[str] = field(default=METHODS, metadata=check(example=list(METHODS[:3]), help=", ".join(METHODS)))
    seeds: list[int] = field(default=(0,), metadata=check(at_least=0, example=[0, 1, 2]))
    timing_steps: int = field(
        default=1, metadata=check(at_least=1, example=20, help="training steps per timed round of the cost benchmark")
    )
    timing_rounds: int = field(
        default=2, metadata=check(at_least=2, example=10, help="timed rounds, every method once per round")
    )

    def validate(self) -> None:
        check_seeds(self.seeds)
        _check_methods(self.methods)
        if len(set(self.sparsities)) != len(self.sparsities):
            raise ConfigError(f"'sparsities': {list(self.sparsities)} repeats a value; e.g. sparsities: [0.9, 0.95]")
        try:
            check_rho(self.td_rho)
        except ValueError as error:
            raise ConfigError(f"'td_rho': {error}; e.g. td_rho: gamma") from None
        if len(self.milestones) < 2 or list(self.milestones) != sorted(self.milestones):
            raise ConfigError(
                f"'milestones': {list(self.milestones)}: at least two increasing fractions of training in (0, 1) "
                "(the sparsity ramps end at the second); e.g. milestones: [0.5, 0.75]"
            )
        from rewire.experiments.benchmark.applicability import check_applicable

        check_applicable(self)

    def recipe(self):
        """The DPF sweep recipe every phase trains with (:class:`rewire.experiments.dpf_sweeps.config.Recipe`)."""
        from rewire.experiments.dpf_sweeps.config import Recipe

        return Recipe.from_values(
            {
                "epochs": self.epochs,
                "train_per_class": self.train_per_class,
                "test_per_class": self.test_per_class,
                "dataset": self.dataset,
                "model": self.model,
                "batch_size": self.batch_size,
                "lr": self.lr,
                "momentum": self.momentum,
                "weight_decay": self.weight_decay,
                "milestones": list(self.milestones),
                "gamma": self.gamma,
                "update_every": self.update_every,
                "sparsity_frequency": self.sparsity_frequency,
                "finetune_epochs": self.finetune_epochs,
                "finetune_lr": self.finetune_lr,
                "lottery_rounds": self.lottery_rounds,
                "seeds": list(self.seeds),
                "precision": self.precision,
                "eval_every": self.eval_every,
                "validation_fraction": self.validation_fraction,
            },
            where="benchmark recipe",
        )

    @property
    def sparse_methods(self) -> tuple[str, ...]:
        return tuple(m for m in self.methods if m != "dense")

    @property
    def ramp_end(self) -> int:
        """The epoch the sparsity ramps end: the second lr decay, whole epochs, at least 1
        (:func:`rewire.experiments.dpf_sweeps.runs.sparsity_schedule`)."""
        return max(1, int(self.milestones[1] * self.epochs))

    def check_mask_updates(self, steps_per_epoch: int) -> None:
        """Refuse, before any training, a budget whose last mask update comes before the ramps' end: DPF,
        Incremental and L1 + Anneal would never reach the target (their callbacks refuse it only when their run
        starts, after the runs before them have trained). ``steps_per_epoch``: of the prepared training split."""
        ramped = [m for m in self.methods if m in RAMPED_METHODS]
        if not ramped:
            return
        total = self.epochs * steps_per_epoch
        last_update = (total - 1) // self.update_every * self.update_every / steps_per_epoch
        if last_update < self.ramp_end:
            raise ConfigError(
                f"'update_every': {self.update_every} steps: with {steps_per_epoch} steps per epoch the last mask "
                f"update of {', '.join(ramped)} comes at epoch {last_update:g}, before their sparsity ramps end "
                f"(epoch {self.ramp_end}), so they would never reach the target; update more often or train longer, "
                f"e.g. update_every: {max(1, steps_per_epoch // 2)}"
            )


def _check_methods(methods) -> None:
    if not methods:
        raise ConfigError(f"'methods': [] is empty; e.g. methods: {list(METHODS[:3])}")
    for method in methods:
        if method in NOT_IN_BENCHMARK:
            raise ConfigError(
                f"'methods': {method!r} is not a row of the benchmark: {NOT_IN_BENCHMARK[method]}; "
                f"rows: {', '.join(METHODS)}"
            )
        if method not in METHODS:
            raise ConfigError(
                f"'methods': unknown method {method!r}; rows: {', '.join(METHODS)}; e.g. methods: [dense, dnw]"
            )
    repeated = sorted({m for m in methods if list(methods).count(m) > 1})
    if repeated:
        raise ConfigError(f"'methods': {list(methods)} repeats {', '.join(repeated)}; list each method once")
    if "dense" not in methods:
        raise ConfigError(
            f"'methods': {list(methods)} has no 'dense': the ranking compares every method with the dense network "
            "of the same seeds; e.g. methods: [dense, dnw]"
        )
