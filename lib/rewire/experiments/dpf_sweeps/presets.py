"""The DPF paper's own CIFAR-10 training recipes, one preset per model family (Lin et al., ICLR 2020).

Every preset is a mapping of :class:`rewire.experiments.dpf_sweeps.config.Recipe` field names to the value
the paper uses; :data:`SOURCES` gives, field by field, where the paper states it (section and
sentence) or, where it does not, ``"not stated in the paper; our choice: ..."``. The sources are

* Section 5.1 "Training schedules": ResNet-a 300 epochs, lr /10 at 50 % and 75 %; WideResNet-a-b
  200 epochs (as Zagoruyko & Komodakis 2016), lr /5 at 30 %, 60 % and 80 %; mini-batch SGD with
  Nesterov momentum 0.9; mini-batch 128 for CIFAR-10 "regardless of datasets, models and methods".
* Appendix A.2 "The optimal hyper-parameters for DPF": ResNet-a *and VGG* 300 epochs with the
  ResNet schedule; optimal lr 0.2 / 0.1 / 0.2 and weight decay 1e-4 / 5e-4 / 1e-4 for ResNet-a /
  WideResNet-a-b / VGG.
* Section 5.1 "Implementation of DPF" and Appendix A.1: mask update every p = 16 iterations, "fixed
  for all experiments (independent of the architecture or task)".
* Appendix A.2 "Gradual Pruning Scheme": Zhu & Gupta's cubic ramp from s_i = 0 at epoch 0 to the
  target at the epoch of the second learning-rate decay, pruning frequency Δt = 1 epoch.
* Table 2 caption: extra fine-tuning "considers the same number of training epochs (60 epochs in
  our case) with tuned optimizer and learning rate".
* Section 5.1 "Baselines" table: the lottery ticket needs "10-30 successive rounds of (full
  training + pruning)".

The paper's seeds are not stated; every table says "averaged for three runs" (:data:`PAPER_SEEDS`).

:data:`BASELINE_LR_GRIDS` is the learning-rate grid search of Appendix A.2 ("Hyper-parameters
tuning procedure") for the baselines whose optimizer and learning rate the paper tuned (Section
5.1 "Training schedules": One-shot P+FT, Incremental and SNIP; Table 2: the "+ FT" columns).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "PRESETS",
    "SOURCES",
    "MODEL_PRESET",
    "PAPER_SEEDS",
    "BASELINE_LR_GRIDS",
    "BASELINE_GRID_SOURCES",
    "BASELINE_OPTIMIZERS",
    "GRID_EXTENSION_RULE",
    "preset_for",
    "preset_names",
    "extend_grid",
]

NOT_STATED = "not stated in the paper; our choice: "

_CIFAR10 = {"dataset": "cifar10", "train_per_class": 0, "test_per_class": 0}
_CIFAR10_SOURCES = {
    "dataset": "Section 5.1 'Datasets': CIFAR-10 (50K/10K training/test samples, 10 classes)",
    "train_per_class": "Section 5.1 'Datasets': the whole 50K training set (0 = all)",
    "test_per_class": "Section 5.1 'Datasets': the whole 10K test set (0 = all)",
}

# Shared by every CIFAR-10 preset.
_COMMON = {
    "batch_size": 128,
    "momentum": 0.9,
    "update_every": 16,
    "sparsity_frequency": 1.0,
    "finetune_epochs": 60,
    "finetune_lr": 0.01,
    "lottery_rounds": 10,
}
_COMMON_SOURCES = {
    "batch_size": (
        "Section 5.1 'Training schedules' and Appendix A.2: 'The mini-batch size is fixed to 128 for CIFAR-10 "
        "... regardless of datasets, models and methods'"
    ),
    "momentum": (
        "Section 5.1 'Training schedules': 'mini-batch SGD with Nesterov momentum (factor 0.9)' "
        "(runs.recipe always uses Nesterov)"
    ),
    "update_every": (
        "Section 5.1 'Implementation of DPF' and Appendix A.1: mask update every p = 16 iterations, "
        "fixed for all experiments (Figure 9)"
    ),
    "sparsity_frequency": (
        "Appendix A.2 'Gradual Pruning Scheme': pruning frequency Δt = 1 epoch, from t0 = 0 to the epoch of "
        "the second learning-rate decay"
    ),
    "finetune_epochs": "Table 2 caption: extra fine-tuning for 'the same number of training epochs (60 epochs in our case)'",
    "finetune_lr": (
        NOT_STATED + "0.01 (Table 2 caption and Appendix A.2 only say the fine-tuning optimizer (SGD with Nesterov "
        "or Adam) and learning rate were grid-searched; this repository fine-tunes with SGD and a cosine schedule; "
        "see BASELINE_LR_GRIDS['oneshot_ft'])"
    ),
    "lottery_rounds": (
        NOT_STATED + "10 rounds (Section 5.1 'Baselines' table: the lottery ticket takes '10-30 successive rounds "
        "of (full training + pruning)'; 10 is the low end, and at 90 % target sparsity it prunes "
        "1 - 0.1**(1/10) = 20.6 % of the survivors per round, Frankle & Carbin's (ICLR 2019) 20 % per round for "
        "their CIFAR-10 ResNet-18 and VGG-19; at 99 % it prunes 36.9 % per round)"
    ),
}

PRESETS: dict[str, dict[str, Any]] = {
    # ResNet-20/32/56 (He et al. 2016a CIFAR ResNets)
    "resnet_cifar": {
        **_CIFAR10,
        "epochs": 300,
        "lr": 0.2,
        "weight_decay": 1e-4,
        "milestones": (0.5, 0.75),
        "gamma": 0.1,
        **_COMMON,
    },
    # WideResNet-28-2/4/8 (Zagoruyko & Komodakis 2016)
    "wideresnet_cifar": {
        **_CIFAR10,
        "epochs": 200,
        "lr": 0.1,
        "weight_decay": 5e-4,
        "milestones": (0.3, 0.6, 0.8),
        "gamma": 0.2,
        **_COMMON,
    },
    # VGG16-D (Simonyan & Zisserman 2015, configuration D)
    "vgg_cifar": {
        **_CIFAR10,
        "epochs": 300,
        "lr": 0.2,
        "weight_decay": 1e-4,
        "milestones": (0.5, 0.75),
        "gamma": 0.1,
        **_COMMON,
    },
}

SOURCES: dict[str, dict[str, str]] = {
    "resnet_cifar": {
        **_CIFAR10_SOURCES,
        "epochs": "Section 5.1 'Training schedules' and Appendix A.2: 'we trained ResNet-a for 300 epochs'",
        "lr": "Appendix A.2: 'The optimal learning rate for ResNet-a, WideResNet-a-b and VGG are 0.2, 0.1 and 0.2'",
        "weight_decay": "Appendix A.2: 'the corresponding weight decays are 1e-4, 5e-4 and 1e-4'",
        "milestones": (
            "Section 5.1 and Appendix A.2: lr decayed 'when accessing 50% and 75% of the total training samples' "
            "(epochs 150 and 225)"
        ),
        "gamma": "Section 5.1 and Appendix A.2: 'decayed the learning rate by 10'",
        **_COMMON_SOURCES,
    },
    "wideresnet_cifar": {
        **_CIFAR10_SOURCES,
        "epochs": (
            "Section 5.1 'Training schedules' and Appendix A.2: 'we trained WideResNet-a-b as Zagoruyko & Komodakis "
            "(2016) for 200 epochs'"
        ),
        "lr": "Appendix A.2: 'The optimal learning rate for ResNet-a, WideResNet-a-b and VGG are 0.2, 0.1 and 0.2'",
        "weight_decay": "Appendix A.2: 'the corresponding weight decays are 1e-4, 5e-4 and 1e-4'",
        "milestones": (
            "Section 5.1 and Appendix A.2: lr decayed 'when accessing 30%, 60% and 80% of the total training "
            "samples'; Figure 4 caption: 'We decayed the learning rate at 60, 120, 160 epochs'"
        ),
        "gamma": "Section 5.1 and Appendix A.2: 'decayed the learning rate by 5'",
        **_COMMON_SOURCES,
    },
    "vgg_cifar": {
        **_CIFAR10_SOURCES,
        "epochs": "Appendix A.2: 'we trained ResNet-a and VGG for 300 epochs' (Section 5.1 names only ResNet-a)",
        "lr": "Appendix A.2: 'The optimal learning rate for ResNet-a, WideResNet-a-b and VGG are 0.2, 0.1 and 0.2'",
        "weight_decay": "Appendix A.2: 'the corresponding weight decays are 1e-4, 5e-4 and 1e-4'",
        "milestones": (
            "Appendix A.2: ResNet-a and VGG: lr decayed 'when accessing 50% and 75% of the total training samples'"
        ),
        "gamma": "Appendix A.2: ResNet-a and VGG: 'decayed the learning rate by 10'",
        **_COMMON_SOURCES,
    },
}

# Model name (rewire.models) -> preset name.
MODEL_PRESET: dict[str, str] = {
    "resnet20": "resnet_cifar",
    "resnet32": "resnet_cifar",
    "resnet56": "resnet_cifar",
    "wrn28_2": "wideresnet_cifar",
    "wrn28_4": "wideresnet_cifar",
    "wrn28_8": "wideresnet_cifar",
    "vgg16": "vgg_cifar",
}

# Tables 1, 2, 4, 5: "The results are averaged for three runs"; the seeds themselves are not stated.
PAPER_SEEDS: tuple[int, ...] = (0, 1, 2)

# Appendix A.2 "Hyper-parameters tuning procedure": "We grid-searched the optimal learning rate, starting
# from the range of {0.05, 0.10, 0.15, 0.20}"; Section 5.1: "fine-tuned the optimizer and learning rate for
# One-shot P+FT, Incremental and SNIP"; Table 2 caption: the extra fine-tuning uses a "tuned optimizer and
# learning rate". Keys are Recipe fields; the candidates apply to every model.
_LR_GRID = (0.05, 0.10, 0.15, 0.20)
_FINETUNE_LR_GRID = (0.001, 0.005, 0.01, 0.05)

BASELINE_LR_GRIDS: dict[str, dict[str, tuple[float, ...]]] = {
    "oneshot_ft": {"lr": _LR_GRID, "finetune_lr": _FINETUNE_LR_GRID},
    "incremental": {"lr": _LR_GRID},
    "snip": {"lr": _LR_GRID},
    "incremental_ft": {"finetune_lr": _FINETUNE_LR_GRID},
    "dpf_ft": {"finetune_lr": _FINETUNE_LR_GRID},
}

_LR_GRID_SOURCE = (
    "Appendix A.2 'Hyper-parameters tuning procedure': grid search starting from {0.05, 0.10, 0.15, 0.20}, "
    "a linearly spaced grid extended while the best value is at an end; Section 5.1 'Training schedules': "
    "optimizer and learning rate tuned for One-shot P+FT, Incremental and SNIP"
)
_FINETUNE_GRID_SOURCE = (
    NOT_STATED + "finetune_lr in {0.001, 0.005, 0.01, 0.05} with SGD + Nesterov (Table 2 caption and Appendix A.2 "
    "say the fine-tuning optimizer, SGD with Nesterov momentum or Adam, and its learning rate were grid-searched, "
    "but name no candidates; the grid brackets the last learning rates of the 300-epoch ResNet schedule, 0.02 "
    "and 0.002)"
)

BASELINE_GRID_SOURCES: dict[str, dict[str, str]] = {
    "oneshot_ft": {
        "lr": _LR_GRID_SOURCE + " (lr of the dense training that One-shot P+FT prunes)",
        "finetune_lr": _FINETUNE_GRID_SOURCE,
    },
    "incremental": {"lr": _LR_GRID_SOURCE},
    "snip": {"lr": _LR_GRID_SOURCE},
    "incremental_ft": {"finetune_lr": _FINETUNE_GRID_SOURCE},
    "dpf_ft": {"finetune_lr": _FINETUNE_GRID_SOURCE},
}

# Appendix A.2: "For baselines involved fine-tuning procedure (e.g. Table 2), we grid-searched the optimal
# results by tuning the optimizers (i.e. mini-batch SGD with Nesterov momentum, or Adam)". Not a Recipe
# field: this repository's sweep always uses SGD with Nesterov momentum, so Adam is not searched here.
BASELINE_OPTIMIZERS: dict[str, tuple[str, ...]] = {
    method: ("sgd_nesterov", "adam") for method in ("oneshot_ft", "incremental_ft", "dpf_ft")
}

GRID_EXTENSION_RULE = (
    "Appendix A.2: 'If the best performance was ever at one of the extremes of the grid, we would try new grid "
    "points so that the best performance was contained in the middle of the parameters.'"
)


def preset_names() -> list[str]:
    return sorted(PRESETS)


def preset_for(model: str) -> dict[str, Any]:
    """The paper's recipe (a copy of :data:`PRESETS` ``[MODEL_PRESET[model]]``) for a model of this repository."""
    if model not in MODEL_PRESET:
        raise ValueError(f"no DPF preset for model {model!r}; known models: {', '.join(sorted(MODEL_PRESET))}")
    return dict(PRESETS[MODEL_PRESET[model]])


def extend_grid(grid: tuple[float, ...], best: float) -> tuple[float, ...]:
    """Apply :data:`GRID_EXTENSION_RULE` once: if ``best`` is an end of the linearly spaced ``grid``, add the
    next point beyond it (same spacing; never below zero on the low end); otherwise return ``grid`` unchanged."""
    values = tuple(sorted(grid))
    if len(values) < 2:
        raise ValueError(f"a grid needs at least two points, got {grid}")
    if best not in values:
        raise ValueError(f"best value {best} is not a point of the grid {values}")
    step = values[1] - values[0]
    if best == values[-1]:
        return (*values, round(values[-1] + step, 10))
    if best == values[0] and values[0] - step > 0:
        return (round(values[0] - step, 10), *values)
    if best == values[0]:
        return (round(values[0] / 2, 10), *values)
    return values
