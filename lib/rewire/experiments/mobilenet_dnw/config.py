"""The schema of DNW Table 2 (``params.yaml`` block ``mobilenet_dnw``, notebook 02's parameters): :class:`Config`.

Every key of the block at every scale is a field, checked (type and range) before any work; the rules
across fields (known rows, ρ candidates, possible widths) are in :meth:`Config.validate`. The defaults are
the smoke scale's values (notebook 02's parameters cell).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from rewire.experiments.engine import ModelSpec
from rewire.experiments.mobilenet_dnw.rows import ROW_FORMS, candidates, expand_rows
from rewire.experiments.schema import ConfigError, ExperimentConfig, check
from rewire.methods.anneal import ANNEAL_UPDATE_EVERY
from rewire.methods.targeted_dropout import check_rho
from rewire.models.mobilenet_dnw import GRAPH_VARIANTS, edge_budgets

__all__ = ["Config", "RESERVED"]

# The pipeline's keys (rewire.pipeline.stage injects them into the notebook); not part of the experiment.
RESERVED = ("scale", "out_dir", "checkpoint_dir", "data_root")
# the CIFAR releases rewire.data reads
DATASETS = ("cifar10", "cifar100")


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """DNW Table 2 at one scale: data subset, recipe (DNW Section 3.3), widths, rows and how ρ / λ are chosen.

    ``rows`` run on every seed; ``td_rhos`` are unconstrained targeted dropout's ρ candidates;
    ``td_regular_rhos`` regular targeted dropout's ρ (Table 5; ``"chosen"`` = the ρ chosen for the
    unconstrained variant); ``finetune_alphas`` the fine-tune rows' α; ``l1_coefficients`` L1 + Anneal's λ
    candidates. With ``select_on_first_seed`` the ρ and λ candidates run on the first seed only and the one
    with the best validation top-1 on every seed (the cpu scale's saving); otherwise every candidate runs on
    every seed (the paper reports every ρ) and the choice still reads the first seed's validation accuracy.
    The L1 + Anneal row chosen with λ = 0 has no L1 term: it is labelled Anneal (:attr:`Row.label`).

    ``final_on_all_images`` (the paper scale) separates choosing from reporting: the ρ and λ candidates run
    on the first seed on the training images less the held-out ``validation_fraction`` (45,000 / 5,000 at
    paper scale) and are chosen there; then every reported run (the rows, every ρ -- or only the chosen one
    with ``select_on_first_seed`` --, the chosen λ only, fine-tuning, regular TD) trains on all the training
    images (50,000, as the paper) and is evaluated on the test set. Off (smoke, cpu): every run trains on the
    reduced split and the candidates are reported runs too.

    ``graph_variant``: ``paper`` (the paper's text: every top-k among the feed-forward entries, targeted
    dropout keeps the signs) or ``authors_code`` (the authors' code behind Table 2's numbers: the top-k of
    DNW, No Update, the lottery ticket and fine-tuning over the whole adjacency matrix, targeted dropout on
    the masked |W| with γ over the whole matrix; :func:`rewire.models.mobilenet_dnw.topk_candidates`).
    RG, the complete graph and L1 + Anneal (not in the authors' code) are the same in both.
    """

    IGNORED = RESERVED

    dataset: str = field(default="cifar10", metadata=check(choices=DATASETS, help="the CIFAR release"))
    train_per_class: int = field(default=20, metadata=check(at_least=0, example=3000, help="0: every image"))
    test_per_class: int = field(default=10, metadata=check(at_least=0, example=0, help="0: every image"))
    validation_fraction: float = field(
        default=0.2, metadata=check(above=0, below=1, example=0.1, help="held out of training: chooses ρ and λ")
    )
    epochs: int = field(default=1, metadata=check(at_least=1, example=160))
    finetune_epochs: int = field(default=1, metadata=check(at_least=1, example=160))
    batch_size: int = field(default=32, metadata=check(at_least=1, example=128))
    lr: float = field(default=0.1, metadata=check(above=0, example=0.1))
    weight_decay: float = field(default=1e-4, metadata=check(at_least=0, example=1e-4))
    precision: str = field(default="fp32", metadata=check(choices=("fp32", "bf16")))
    width: float = field(default=0.225, metadata=check(above=0, at_most=1, example=0.225, help="d of DNW x d"))
    dense_width: float = field(default=0.25, metadata=check(above=0, at_most=1, example=0.25))
    node_width: float = field(
        default=0.125, metadata=check(above=0, at_most=1, example=0.25, help="node counts x this; 1 = the paper")
    )
    rows: list[str] = field(
        default=("mobilenet_v1", "rg", "dnw_no_update", "lottery", "dnw"),
        metadata=check(example=["mobilenet_v1", "rg", "dnw"], help="rows run on every seed"),
    )
    td_rhos: list[float | str] = field(default=(0.95, "gamma"), metadata=check(example=[0.9, "gamma"]))
    td_regular_rhos: list[float | str] = field(default=("chosen",), metadata=check(example=["chosen"]))
    finetune_alphas: list[float] = field(default=(0.01,), metadata=check(above=0, example=[0.01]))
    l1_coefficients: list[float] = field(default=(0.0, 1e-4), metadata=check(at_least=0, example=[0.0, 1e-4]))
    anneal_end: float = field(
        default=0.5, metadata=check(above=0, at_most=1, example=0.5, help="L1 + Anneal reaches k at this fraction")
    )
    anneal_update_every: int = field(default=1, metadata=check(at_least=1, example=ANNEAL_UPDATE_EVERY))
    select_on_first_seed: bool = True
    final_on_all_images: bool = False
    graph_variant: str = field(
        default="paper",
        metadata=check(
            choices=GRAPH_VARIANTS,
            example="authors_code",
            help="paper (the paper's text) or authors_code (the DNW authors' code, behind Table 2)",
        ),
    )
    eval_every: int = field(default=1, metadata=check(at_least=1, example=10))
    diagnostics_every_steps: int = field(
        default=0,
        metadata=check(
            at_least=0,
            example=10,
            help="graph diagnostics (rewire.methods.dnw_diagnostics) every this many steps too; 0: per epoch only",
        ),
    )
    diagnostics_until_step: int = field(
        default=0, metadata=check(at_least=0, example=200, help="the step records stop after this step; 0: never")
    )
    timing_batches: int = field(default=2, metadata=check(at_least=1, example=10))
    seeds: list[int] = field(default=(0,), metadata=check(at_least=0, example=[0, 1, 2]))

    # ------------------------------------------------------------------ rules across fields

    def validate(self) -> None:
        for index, key in enumerate(self.rows):
            try:
                expand_rows([key])
            except ValueError as error:
                raise ConfigError(
                    f"'rows[{index}]': {key!r} is not a Table 2 row ({error}); known rows: {', '.join(ROW_FORMS)}; "
                    f"e.g. rows: [mobilenet_v1, rg, dnw]"
                ) from None
        try:
            expand_rows(self.rows)
        except ValueError as error:
            raise ConfigError(f"'rows': {error}; e.g. rows: [mobilenet_v1, rg, dnw]") from None
        for name in ("td_rhos", "td_regular_rhos"):
            for index, rho in enumerate(getattr(self, name)):
                if name == "td_regular_rhos" and rho == "chosen":
                    continue
                try:
                    check_rho(rho)
                except ValueError as error:
                    raise ConfigError(f"'{name}[{index}]': {error}; e.g. {name}: [0.9, gamma]") from None
        if "chosen" in self.td_regular_rhos and not self.td_rhos:
            raise ConfigError(
                "'td_regular_rhos' has 'chosen' but 'td_rhos' is empty: nothing to choose from; "
                "e.g. td_rhos: [0.95, gamma]"
            )
        for name, method, param in (("finetune_alphas", "finetune", "alpha"), ("l1_coefficients", "l1_anneal", "l1")):
            try:
                candidates(getattr(self, name), method, param)
            except ValueError as error:
                raise ConfigError(f"'{name}': {error}") from None
        if not self.seeds:
            raise ConfigError("'seeds' is empty; e.g. seeds: [0, 1, 2]")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"'seeds' {list(self.seeds)} has duplicates; e.g. seeds: [0, 1, 2]")
        self.check_widths()

    def check_widths(self, num_classes: int = 10) -> None:
        """Every width is possible (each stage keeps an edge, each dense layer a channel), checked on meta tensors."""
        with torch.device("meta"):
            try:
                edge_budgets(self.graph_spec(num_classes).build(), self.width)
            except ValueError as error:
                raise ConfigError(f"'width' {self.width} with 'node_width' {self.node_width}: {error}") from None
            if "mobilenet_v1" in self.rows:
                try:
                    self.dense_spec(num_classes).build()
                except ValueError as error:
                    raise ConfigError(
                        f"'dense_width' {self.dense_width} x 'node_width' {self.node_width} (the dense baseline "
                        f"mobilenet_v1): {error}"
                    ) from None

    # ------------------------------------------------------------------ derived

    def graph_spec(self, num_classes: int) -> ModelSpec:
        """MobileNetV1-DNW on 32-px input (stem stride 1), node counts x ``node_width``."""
        return ModelSpec(
            "mobilenet_v1_dnw", num_classes=num_classes, kwargs={"stem_stride": 1, "node_width": self.node_width}
        )

    def dense_spec(self, num_classes: int) -> ModelSpec:
        """Table 2's dense baseline MobileNetV1 x ``dense_width`` (x ``node_width`` at a reduced scale)."""
        return ModelSpec(
            "mobilenet_v1",
            num_classes=num_classes,
            kwargs={"width_mult": self.dense_width * self.node_width, "stem_stride": 1},
        )

    def parameter_counts(self, num_classes: int = 10) -> dict[str, int]:
        """Trainable parameters of the two models Table 2 compares: ``graph`` = MobileNetV1-DNW's real edges (the
        per-stage budgets k) + every other weight (stem, depthwise, batch norm, classifier); ``dense`` = the dense
        baseline's. At the paper scale (node_width 1) 226,666 against MobileNetV1 x0.25's 215,642; the cpu block's
        ``dense_width`` is chosen so the two match within a few per cent (issue 20, point 3)."""
        with torch.device("meta"):
            graph = self.graph_spec(num_classes).build()
            edges = sum(budget.k for budget in edge_budgets(graph, self.width))
            others = sum(p.numel() for name, p in graph.named_parameters() if not name.endswith("graph.weight"))
            dense = sum(p.numel() for p in self.dense_spec(num_classes).build().parameters())
        return {"graph": edges + others, "dense": dense}

    def subset(self) -> dict[str, object]:
        """What of the data enters every run's settings (the subset of the CIFAR release)."""
        return {
            "dataset": self.dataset,
            "train_per_class": self.train_per_class,
            "test_per_class": self.test_per_class,
            "validation_fraction": self.validation_fraction,
        }
