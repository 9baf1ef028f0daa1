"""Appendix numbers of Liu et al., *Robust Binary Models by Pruning Randomly-initialized Networks* (NeurIPS 2022).

Transcribed by hand from a text extraction of the paper's appendix, so that a notebook can put the
paper's number beside every row of its own results. Every number below is as printed; cells printed
"-" are ``None``. All accuracies are top-1 in %, on the test set.

* :data:`TABLE7` -- the small dense RN34 variants (per-stage widths, ``#params``; no accuracies printed).
* :data:`TABLE8` -- vanilla (clean) training on CIFAR10: p x {Signed KC, binary} x {no LBN, LBN}.
* :data:`TABLE9` -- robust accuracy of the baselines and of the method on CIFAR10 / CIFAR100, FP and binary.
* :data:`TABLE10` -- clean accuracy of the adversarially trained models of the paper's Table 4.
* :data:`TABLE11` -- clean accuracy in the non-adversarial case (epsilon = 0).
* :data:`TABLE6_EXAMPLE`, :data:`APPENDIX_A4`, :data:`TEXT_NUMBERS`, :data:`FIGURE4` -- numbers stated in the text.

What the tables do *not* contain (do not look for it here): Table 9 has no clean accuracy, no parameter
count and does not say which attack its "robust accuracy" is (PGD-10 or AutoAttack); Table 7 has no
accuracies. :data:`EXTRACTION_NOTES` lists numbers that look wrong or ambiguous in the extraction.

``quoted=True`` marks the baselines whose code is not the authors' (FlyingBird, FlyingBird+, BCS, RST,
HYDRA, ATMC; :data:`QUOTED_METHODS`). Per Appendix D.1 the authors *ran* these from the baselines' own
public implementations (with a validation set for model selection, BinaryConnect plugged in for binary
FlyingBird(+)/BCS/HYDRA, shortened schedules); the numbers are not copied from the baselines' papers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

__all__ = [
    "Init",
    "Dataset",
    "Table7Row",
    "Table8Row",
    "RobustRow",
    "CleanRow",
    "Table6Example",
    "AppendixA4",
    "Figure4Settings",
    "TABLE6_CAPTION",
    "TABLE7_CAPTION",
    "TABLE8_CAPTION",
    "TABLE9_CAPTION",
    "TABLE10_CAPTION",
    "TABLE11_CAPTION",
    "CAPTIONS",
    "TABLE7",
    "TABLE8",
    "TABLE9",
    "TABLE10",
    "TABLE11",
    "TABLE8_P_VALUES",
    "TABLE9_PRUNING_RATE",
    "TABLE10_PRUNING_RATE",
    "TABLE11_PRUNING_RATE",
    "QUOTED_METHODS",
    "EPSILON_LINF",
    "TEXT_NUMBERS",
    "TABLE6_EXAMPLE",
    "APPENDIX_A4",
    "FIGURE4",
    "EXTRACTION_NOTES",
    "table7",
    "table8",
    "table9_rows",
    "table10_rows",
    "table11_rows",
    "table6_ratios",
    "a4_expected_kernels",
]

Init = Literal["signed_kc", "binary"]
Dataset = Literal["CIFAR10", "CIFAR100", "ImageNet100"]

# --------------------------------------------------------------------------------------------------
# Captions (abridged only where marked "...")
# --------------------------------------------------------------------------------------------------

TABLE6_CAPTION = (
    "Table 6: The complexity in FLOP operations of the sparse 'Convolution-BathNorm-ReLU' block in both "
    "full precision and binary case. The pruning rate is r."
)
TABLE7_CAPTION = (
    "Table 7: RN34 variants that have similar layer sizes as the pruned RN34 obtained by different p values. "
    "3x3x23 means the kernel size is 3x3 and there are 23 output channels."
)
TABLE8_CAPTION = (
    "Table 8: The accuracy (in %) of vanilla trained models on the CIFAR10 test set under various settings, "
    "including Signed Kaiming Constant (Signed KC) and the binary initialization. We include models both with "
    "and without the last batch normalization layer (LBN). The best results are marked in bold."
)
TABLE9_CAPTION = (
    "Table 9: Robust accuracy (in %) on the CIFAR10 and CIFAR100 test sets for AT, TRADES, FlyingBird(+), BCS, "
    "RST, HYDRA, ATMC and our proposed method. 'RN34-LBN' represents RN34 with the last batch normalization "
    "layer. 'Small RN34' here refers to Small RN34-p0.1 in Table 7 of Appendix D.1. ..."
)
TABLE10_CAPTION = (
    "Table 10: The accuracy (in %) on the clean inputs of the methods studied in Section 4.2. 'RN34-LBN' "
    "represents RN34 with the last batch normalization layer. ..."
)
TABLE11_CAPTION = (
    "Table 11: Clean accuracy (in %) on the CIFAR10, CIFAR100 and ImageNet100 test sets for the baselines and "
    "our proposed method in the non-adversarial case, i.e., epsilon = 0. ... 'Small RN34' refers to Small "
    "RN34-p0.1 in Table 7 of Appendix D.1. The pruning rate is set to 0.99 except for the not-pruned methods. ..."
)
CAPTIONS: dict[int, str] = {
    6: TABLE6_CAPTION,
    7: TABLE7_CAPTION,
    8: TABLE8_CAPTION,
    9: TABLE9_CAPTION,
    10: TABLE10_CAPTION,
    11: TABLE11_CAPTION,
}

# --------------------------------------------------------------------------------------------------
# Settings stated in the text (Appendix D.1 unless noted)
# --------------------------------------------------------------------------------------------------

#: l_inf adversarial budget per dataset (D.1). PGD: 10 iterations, step size epsilon / 4.
EPSILON_LINF: dict[str, Fraction] = {
    "CIFAR10": Fraction(8, 255),
    "CIFAR100": Fraction(4, 255),
    "ImageNet100": Fraction(2, 255),
}

#: Other scalars stated in the appendix text, keyed by what they are.
TEXT_NUMBERS: dict[str, float | int] = {
    "rn34_trainable_params": 21265088,  # D.1, the paper's RN34 (1x1 shortcuts, no biases, no BN affine)
    "a11_kept_params_conv3to64_k3_r099": 17,  # A.1.1: 3 in, 64 out, 3x3 kernel, r = 0.99
    "a3_alpha_penultimate512": 16,  # A.3: Kaiming constant -> binary scales the last layer by 16 (512 inputs)
    "pgd_iterations": 10,
    "pgd_step_size_over_epsilon": 0.25,
    "epochs_cifar": 400,
    "epochs_imagenet100": 100,
    "validation_fraction": 0.02,
    "sgd_momentum": 0.9,
    "sgd_weight_decay": 5e-4,
    "sgd_lr": 0.1,
    "adam_lr_binary_at": 1e-4,  # binary networks in adversarial training: Adam, cosine schedule
    "epochs_baselines_flyingbird_bcs_rst": 100,
    "epochs_hydra": 110,  # 50 pretrain + 10 prune + 50 finetune
    "epochs_atmc": 200,  # 4 phases x 50
    "fig5_layer_pruning_rate": 0.99,
}


# --------------------------------------------------------------------------------------------------
# Table 7: small dense RN34 variants
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table7Row:
    """One column of Table 7: a dense RN34 with fewer channels, sized like RN34 pruned at r = 0.99 with this p.

    ``stage_channels`` are the output channels of Block1..Block4 (3x3 kernels, two convs per basic block,
    ``stage_blocks`` blocks per stage); the head is "average pool, 10d-fc, softmax" (CIFAR10).
    """

    variant: str
    p: float
    pruning_rate_r: float
    conv1_channels: int
    stage_channels: tuple[int, int, int, int]
    stage_blocks: tuple[int, int, int, int]
    kernel_size: int
    num_classes: int
    num_params: int


TABLE7: tuple[Table7Row, ...] = (
    Table7Row("Small RN34-p0.1", 0.1, 0.99, 23, (23, 25, 27, 29), (3, 4, 6, 3), 3, 10, 201078),
    Table7Row("Small RN34-p1.0", 1.0, 0.99, 6, (6, 13, 26, 51), (3, 4, 6, 3), 3, 10, 216360),
)


def table7(p: float) -> Table7Row:
    """Table 7 (Appendix D.1): the Small RN34 variant for adaptive-pruning parameter ``p`` (0.1 or 1.0), r = 0.99.

    Dense RN34 topology with fewer channels; widths and ``#params`` only (the table prints no accuracy).
    """
    for row in TABLE7:
        if _same(row.p, p):
            return row
    raise ValueError(f"Table 7 has no variant for p={p!r}; known p: {[r.p for r in TABLE7]}")


# --------------------------------------------------------------------------------------------------
# Table 8: vanilla training ablation, CIFAR10
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table8Row:
    """One cell of Table 8: clean CIFAR10 test accuracy (%) of vanilla (epsilon = 0) pruning of RN34.

    ``init`` is "signed_kc" (Signed Kaiming Constant) or "binary"; ``lbn`` = with the last BN layer;
    ``p`` is the adaptive-pruning parameter (p = 1.0 is the fixed pruning rate).
    """

    p: float
    init: Init
    lbn: bool
    clean_top1: float


TABLE8_P_VALUES: tuple[float, ...] = (0.0, 0.1, 0.2, 0.5, 0.8, 0.9, 1.0)

# p -> (Signed KC no LBN, Signed KC LBN, Binary no LBN, Binary LBN), column order as printed
_TABLE8: dict[float, tuple[float, float, float, float]] = {
    0.0: (93.25, 93.99, 93.64, 94.05),
    0.1: (92.12, 93.98, 93.84, 93.99),
    0.2: (92.96, 94.35, 89.27, 93.87),
    0.5: (93.44, 94.29, 90.85, 94.00),
    0.8: (90.93, 92.57, 90.37, 92.42),
    0.9: (91.31, 92.26, 90.51, 90.12),
    1.0: (89.27, 89.12, 87.58, 89.03),
}
_TABLE8_COLUMNS: tuple[tuple[Init, bool], ...] = (
    ("signed_kc", False),
    ("signed_kc", True),
    ("binary", False),
    ("binary", True),
)

TABLE8: tuple[Table8Row, ...] = tuple(
    Table8Row(p, init, lbn, acc) for p, accs in _TABLE8.items() for (init, lbn), acc in zip(_TABLE8_COLUMNS, accs)
)


def table8(p: float, init: str, lbn: bool) -> Table8Row:
    """Table 8 (Appendix D.2.1): vanilla-trained RN34 on CIFAR10, clean test accuracy; use ``.clean_top1``.

    ``p`` in :data:`TABLE8_P_VALUES`; ``init`` "signed_kc" or "binary"; ``lbn`` with/without the last BN.
    No attack (epsilon = 0). The pruning rate is not restated in the appendix ("other hyper-parameters
    here are the same as in Table 3" of the main paper).
    """
    if init not in ("signed_kc", "binary"):
        raise ValueError(f"Table 8 init must be 'signed_kc' or 'binary', got {init!r}")
    if not isinstance(lbn, bool):
        raise ValueError(f"Table 8 lbn must be a bool, got {lbn!r}")
    for row in TABLE8:
        if _same(row.p, p) and row.init == init and row.lbn == lbn:
            return row
    raise ValueError(f"Table 8 has no row for p={p!r}; known p: {list(TABLE8_P_VALUES)}")


# --------------------------------------------------------------------------------------------------
# Tables 9, 10, 11: method x architecture x pruning strategy, FP and binary, per dataset
# --------------------------------------------------------------------------------------------------

#: Methods not in the authors' code (run from the baselines' public implementations, Appendix D.1).
QUOTED_METHODS: frozenset[str] = frozenset({"FlyingBird", "FlyingBird+", "BCS", "RST", "HYDRA", "ATMC"})

#: Pruning rate of the pruned rows: 0.99 for Table 9 (D.2.2 text) and Table 11 (caption).
TABLE9_PRUNING_RATE = 0.99
TABLE11_PRUNING_RATE = 0.99
#: Table 10 (models of the main paper's Table 4): the pruning rate is not restated in the appendix.
TABLE10_PRUNING_RATE: float | None = None


@dataclass(frozen=True)
class RobustRow:
    """One line x dataset of Table 9: robust test accuracy (%) of full-precision and binary models.

    ``pruning_strategy`` as printed ("Not Pruned", "Dynamic", "Global", "p = 0.1", ...); ``p`` is the
    adaptive-pruning parameter when the strategy is "p = ...", else None. The table does not say which
    attack ("robust accuracy"; the paper evaluates with PGD-10 and AutoAttack). None = "-" in the paper.
    """

    method: str
    architecture: str
    pruning_strategy: str
    p: float | None
    dataset: Dataset
    fp_robust_top1: float | None
    binary_robust_top1: float | None
    quoted: bool


@dataclass(frozen=True)
class CleanRow:
    """One line x dataset of Table 10 or 11: clean test accuracy (%) of full-precision and binary models.

    ``table`` is 10 (adversarially trained models of the main paper's Table 4, evaluated on clean inputs)
    or 11 (vanilla training, epsilon = 0). Other fields as in :class:`RobustRow`; None = "-".
    """

    table: int
    method: str
    architecture: str
    pruning_strategy: str
    p: float | None
    dataset: Dataset
    fp_clean_top1: float | None
    binary_clean_top1: float | None
    quoted: bool


_Acc = float | None
_Line = tuple[str, str, str, tuple[_Acc, ...]]

# (method, architecture, strategy, (C10 FP, C10 Bin, C100 FP, C100 Bin)) as printed
_TABLE9: tuple[_Line, ...] = (
    ("AT", "RN34", "Not Pruned", (43.26, 40.34, 36.63, 26.49)),
    ("AT", "RN34-LBN", "Not Pruned", (42.39, 39.58, 35.15, 32.98)),
    ("TRADES", "RN34", "Not Pruned", (49.07, 30.18, 35.28, 29.64)),
    ("TRADES", "RN34-LBN", "Not Pruned", (48.27, 37.91, 31.23, 31.26)),
    ("FlyingBird", "RN34", "Dynamic", (45.86, 34.37, 35.91, 22.49)),
    ("FlyingBird+", "RN34", "Dynamic", (44.57, 33.33, 34.30, 22.64)),
    ("FlyingBird", "RN34-LBN", "Dynamic", (45.58, 37.18, 35.06, 24.94)),
    ("FlyingBird+", "RN34-LBN", "Dynamic", (44.44, 37.48, 34.03, 24.50)),
    ("BCS", "RN34", "Dynamic", (43.51, 22.61, 31.85, 11.96)),
    ("BCS", "RN34-LBN", "Dynamic", (42.02, 30.67, 31.16, 17.97)),
    ("RST", "RN34", "p = 1.0", (34.95, None, 21.96, None)),
    ("RST", "RN34-LBN", "p = 1.0", (37.23, None, 23.14, None)),
    ("HYDRA", "RN34", "p = 0.1", (42.73, 29.28, 33.00, 23.60)),
    ("HYDRA", "RN34", "p = 1.0", (40.51, 26.40, 31.09, 18.24)),
    ("HYDRA", "RN34-LBN", "p = 0.1", (40.55, 33.99, 13.63, 25.53)),  # 13.63: see EXTRACTION_NOTES
    ("HYDRA", "RN34-LBN", "p = 1.0", (32.93, 26.23, 29.96, 18.91)),
    ("ATMC", "RN34", "Global", (34.14, 25.62, 25.10, 11.09)),
    ("ATMC", "RN34", "p = 0.1", (34.58, 24.65, 25.37, 11.04)),
    ("ATMC", "RN34", "p = 1.0", (30.50, 20.21, 22.28, 2.53)),
    ("ATMC", "RN34-LBN", "Global", (33.55, 19.01, 23.16, 15.73)),
    ("ATMC", "RN34-LBN", "p = 0.1", (31.61, 22.88, 25.16, 17.33)),
    ("ATMC", "RN34-LBN", "p = 1.0", (27.88, 13.22, 22.12, 9.55)),
    ("AT", "Small RN34-p0.1", "Not Pruned", (42.01, 32.54, 28.46, 16.18)),
    ("AT", "Small RN34-p1.0", "Not Pruned", (38.81, 26.03, 27.68, 15.85)),
    ("TRADES", "Small RN34-p0.1", "Not Pruned", (42.60, 29.92, 28.44, 15.25)),
    ("TRADES", "Small RN34-p1.0", "Not Pruned", (38.53, 24.83, 27.63, 13.16)),
    ("Ours", "RN34-LBN", "p = 0.1", (None, 45.06, None, 34.83)),
    ("Ours", "RN34-LBN", "p = 1.0", (None, 34.57, None, 26.32)),
    ("Ours (fast)", "RN34-LBN", "p = 0.1", (None, 40.77, None, 34.45)),
    ("Ours (fast)", "RN34-LBN", "p = 1.0", (None, 29.68, None, 24.97)),
)

# (method, architecture, strategy, (C10 FP, C10 Bin, C100 FP, C100 Bin, IN100 FP, IN100 Bin)) as printed;
# "Small RN34" = Small RN34-p0.1. Table 10 prints "Ours(fast)"; normalised to "Ours (fast)" as in Table 9.
_TABLE10: tuple[_Line, ...] = (
    ("AT", "RN34", "Not Pruned", (80.99, 74.37, 61.48, 47.87, 78.98, 63.76)),
    ("AT", "RN34-LBN", "Not Pruned", (80.96, 74.17, 57.73, 60.08, 77.66, 64.60)),
    ("AT", "Small RN34", "Not Pruned", (74.76, 58.69, 52.77, 28.81, 49.64, 21.12)),
    ("FlyingBird", "RN34", "Dynamic", (79.29, 62.28, 62.12, 43.66, 66.66, 19.74)),
    ("FlyingBird+", "RN34", "Dynamic", (77.01, 62.69, 59.09, 41.69, 66.66, 19.74)),  # IN100: see notes
    ("BCS", "RN34", "Dynamic", (74.75, None, 53.82, None, None, None)),
    ("RST", "RN34", "p = 1.0", (65.93, None, 38.87, None, 42.70, None)),
    ("RST", "RN34-LBN", "p = 1.0", (67.45, None, 42.95, None, 46.22, None)),
    ("HYDRA", "RN34", "p = 0.1", (75.31, 62.09, 55.92, 45.96, 67.76, 33.18)),
    ("ATMC", "RN34", "Global", (81.85, 72.97, 57.15, 36.39, 60.68, 26.80)),
    ("ATMC", "RN34", "p = 0.1", (81.37, 73.34, 59.99, 32.68, 61.88, 16.34)),
    ("Ours", "RN34-LBN", "p = 0.1", (None, 76.59, None, 60.16, None, 58.94)),
    ("Ours (fast)", "RN34-LBN", "p = 0.1", (None, 81.63, None, 63.73, None, None)),
)

_TABLE11: tuple[_Line, ...] = (
    ("AT", "RN34", "Not Pruned", (94.80, 90.11, 76.39, 70.02, 80.26, 68.26)),
    ("AT", "RN34-LBN", "Not Pruned", (94.79, 92.46, 76.85, 73.49, 79.84, 73.88)),
    ("AT", "Small RN34", "Not Pruned", (91.99, 85.61, 65.48, 43.46, 58.14, 29.62)),
    ("FlyingBird", "RN34", "Dynamic", (93.41, 88.96, 71.77, 61.50, 74.06, 26.06)),
    ("FlyingBird+", "RN34", "Dynamic", (92.28, 86.44, 72.03, 58.09, 74.40, 27.52)),
    ("BCS", "RN34", "Dynamic", (90.69, None, 67.39, None, None, None)),
    ("RST", "RN34", "p = 1.0", (88.43, None, 56.65, None, 50.18, None)),
    ("RST", "RN34-LBN", "p = 1.0", (89.14, None, 62.93, None, 61.52, None)),
    ("HYDRA", "RN34", "p = 0.1", (91.13, 88.10, 68.84, 62.10, 76.42, 49.40)),
    ("ATMC", "RN34", "Global", (92.01, 88.40, 67.45, 51.96, 69.36, 35.30)),
    ("ATMC", "RN34", "p = 0.1", (91.32, 79.46, 68.03, 50.94, 70.12, 33.52)),
    ("Ours", "RN34-LBN", "p = 0.1", (None, 93.99, None, 75.37, None, 72.80)),
)


def _strategy_p(strategy: str) -> float | None:
    return float(strategy.split("=")[1]) if strategy.startswith("p =") else None


def _robust_rows(lines: tuple[_Line, ...], datasets: tuple[Dataset, ...]) -> tuple[RobustRow, ...]:
    return tuple(
        RobustRow(m, a, s, _strategy_p(s), ds, accs[2 * i], accs[2 * i + 1], m in QUOTED_METHODS)
        for m, a, s, accs in lines
        for i, ds in enumerate(datasets)
    )


def _clean_rows(table: int, lines: tuple[_Line, ...], datasets: tuple[Dataset, ...]) -> tuple[CleanRow, ...]:
    return tuple(
        CleanRow(table, m, a, s, _strategy_p(s), ds, accs[2 * i], accs[2 * i + 1], m in QUOTED_METHODS)
        for m, a, s, accs in lines
        for i, ds in enumerate(datasets)
    )


#: Table 9, one row per printed line and dataset (30 lines x 2 datasets).
TABLE9: tuple[RobustRow, ...] = _robust_rows(_TABLE9, ("CIFAR10", "CIFAR100"))
#: Table 10, one row per printed line and dataset (13 lines x 3 datasets).
TABLE10: tuple[CleanRow, ...] = _clean_rows(10, _TABLE10, ("CIFAR10", "CIFAR100", "ImageNet100"))
#: Table 11, one row per printed line and dataset (12 lines x 3 datasets).
TABLE11: tuple[CleanRow, ...] = _clean_rows(11, _TABLE11, ("CIFAR10", "CIFAR100", "ImageNet100"))


def _filter(rows, table: int, dataset, method, architecture, p):
    for key, value in (("dataset", dataset), ("method", method), ("architecture", architecture)):
        known = sorted({getattr(r, key) for r in rows})
        if value is not None and value not in known:
            raise ValueError(f"Table {table} has no {key} {value!r}; known: {known}")
    if p is not None and not any(r.p is not None and _same(r.p, p) for r in rows):
        raise ValueError(f"Table {table} has no pruning strategy p = {p!r}")
    return tuple(
        r
        for r in rows
        if (dataset is None or r.dataset == dataset)
        and (method is None or r.method == method)
        and (architecture is None or r.architecture == architecture)
        and (p is None or (r.p is not None and _same(r.p, p)))
    )


def table9_rows(
    dataset: str | None = None, method: str | None = None, architecture: str | None = None, p: float | None = None
) -> tuple[RobustRow, ...]:
    """Table 9 (Appendix D.2.2): robust accuracy, CIFAR10 (eps 8/255) and CIFAR100 (eps 4/255), l_inf.

    RN34 / RN34-LBN / Small RN34 variants, FP and binary, pruning rate r = 0.99 for pruned rows; attack
    not named in the table. Filters are exact; an unknown dataset, method, architecture or p raises
    ValueError, a known but absent combination gives ``()``.
    """
    return _filter(TABLE9, 9, dataset, method, architecture, p)


def table10_rows(
    dataset: str | None = None, method: str | None = None, architecture: str | None = None, p: float | None = None
) -> tuple[CleanRow, ...]:
    """Table 10 (Appendix D.2.3): clean accuracy of the adversarially trained models of Table 4 (Section 4.2).

    CIFAR10, CIFAR100, ImageNet100; RN34 / RN34-LBN / Small RN34 (= p0.1), FP and binary. This is NOT the
    epsilon = 0 setting (that is Table 11). Filters as in :func:`table9_rows`.
    """
    return _filter(TABLE10, 10, dataset, method, architecture, p)


def table11_rows(
    dataset: str | None = None, method: str | None = None, architecture: str | None = None, p: float | None = None
) -> tuple[CleanRow, ...]:
    """Table 11 (Appendix D.2.4): clean accuracy with vanilla training (epsilon = 0), r = 0.99 for pruned rows.

    CIFAR10, CIFAR100, ImageNet100; RN34 / RN34-LBN / Small RN34 (= p0.1), FP and binary. Filters as in
    :func:`table9_rows`.
    """
    return _filter(TABLE11, 11, dataset, method, architecture, p)


# --------------------------------------------------------------------------------------------------
# Numbers stated in the text: Table 6 worked example, Appendix A.4, Figure 4
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table6Example:
    """Appendix A.2 (Table 6): binary / full-precision FLOP ratio of a sparse Conv-BN-ReLU block.

    Setting r = 0.99, kernel c = 3, r_in = r_out = 128, feature map s = 16. Savings as stated: ~34 %
    (forward, training), ~29 % (backward), ~43 % (inference).
    """

    pruning_rate_r: float
    kernel_size_c: int
    in_channels: int
    out_channels: int
    feature_map_size_s: int
    forward_train_ratio: float
    forward_eval_ratio: float
    backward_ratio: float
    forward_train_saving_pct: int
    backward_saving_pct: int
    inference_saving_pct: int


TABLE6_EXAMPLE = Table6Example(0.99, 3, 128, 128, 16, 0.6616, 0.5740, 0.7065, 34, 29, 43)


def table6_ratios(r: float, c: int, r_in: int, s: int) -> tuple[float, float, float]:
    """Appendix A.2 / Table 6: (forward-train, forward-eval, backward) binary over FP FLOP ratios, unrounded."""
    k = (1 - r) * c**2 * r_in
    return (
        (k + 11) / (2 * k + 11),
        (k + 4) / (2 * k + 4),
        (3 * k * s**2 + 4 * s**2) / (4 * k * s**2 + 4 * s**2 + c**2 * r_in),
    )


@dataclass(frozen=True)
class AppendixA4:
    """Appendix A.4: expected kernels with k kept weights in a randomly pruned 3x3x256x256 conv at r = 0.99."""

    num_weights: int
    pruning_rate_r: float
    kernels_with_3_kept: float  # "approx 8.19"
    kernels_with_4_kept: float  # "approx 0.18"


APPENDIX_A4 = AppendixA4(3 * 3 * 256 * 256, 0.99, 8.19, 0.18)


def a4_expected_kernels(k: int, n: int, r: float) -> float:
    """Appendix A.4, Eq. (10) times n/9: expected number of 3x3 kernels with exactly ``k >= 1`` kept weights."""
    if k < 1:
        raise ValueError(f"Eq. (10) is stated for k >= 1, got k={k!r}")
    m = (1 - r) * n
    c = 9 * math.e * (1 - r)
    return n / 9 * math.sqrt(m / (2 * math.pi * k * (m - k))) * (c / k) ** k


@dataclass(frozen=True)
class Figure4Settings:
    """Figure 4 (Appendix D.2.6): learning curves of adaptive pruning for several p.

    Panels (a)-(d) use r = 0.99, (e)-(h) r = 0.5; per the main paper's Table 1 the best p is 0.1 at
    r = 0.99 and 1.0 at r = 0.5. The p values of the panels are not stated in the text.
    """

    panels_a_to_d_pruning_rate: float
    panels_e_to_h_pruning_rate: float
    best_p_at_r099: float
    best_p_at_r05: float


FIGURE4 = Figure4Settings(0.99, 0.5, 0.1, 1.0)


# --------------------------------------------------------------------------------------------------
# What looked wrong or ambiguous in the extraction (numbers kept as printed)
# --------------------------------------------------------------------------------------------------

EXTRACTION_NOTES: tuple[str, ...] = (
    "Bold marks were lost in every table; <u>underline</u> marks survived only in part and look "
    "inconsistent (Table 10 ImageNet100 FP underlines 60.68 but not 61.88; Tables 10/11 underline the "
    "not-pruned Small RN34 row although the captions restrict marks to pruned models) -- not transcribed.",
    "Table 9, HYDRA RN34-LBN p = 0.1, CIFAR100 FP = 13.63: far below its neighbours (29.96-33.00) and "
    "contradicts the D.2.2 text ('p = 0.1 always has better performance than p = 1.0'; p = 1.0 gives "
    "29.96). Kept as printed; likely a typo in the paper or the extraction, true value unknown.",
    "Table 10, FlyingBird and FlyingBird+ ImageNet100 are identical (66.66 FP, 19.74 binary); possibly a "
    "copy error in the paper. Kept as printed.",
    "Table 9 says only 'robust accuracy': it does not name the attack (PGD-10 or AutoAttack) and has no "
    "clean-accuracy or parameter-count columns.",
    "Table 9 caption says 'Small RN34 refers to Small RN34-p0.1', but the table prints both -p0.1 and "
    "-p1.0 rows (kept with their printed names).",
    "Table 8's pruning rate is not restated in the appendix (same hyper-parameters as the main paper's "
    "Table 3). Its text says LBN helps both inits, yet Signed KC p = 1.0 (89.27 vs 89.12) and binary "
    "p = 0.9 (90.51 vs 90.12) are better without LBN; numbers kept as printed.",
    "Table 7 caption writes '3x3x23' while the cells read '3 x 3, 23'; the table has no accuracies. Its "
    "#params (201078, 216360) equal the conv+fc weights of the printed widths (1x1 shortcuts, 10-way fc, "
    "no bias) plus 2 per BN channel.",
    "Table 10 prints 'Ours(fast)', Table 9 'Ours (fast)'; normalised to 'Ours (fast)'. Table 10's "
    "Ours (fast) ImageNet100 cell is '-'.",
    "Table 10 is the clean accuracy of the adversarially trained models of Table 4 (Section 4.2), not "
    "epsilon = 0; only Table 11 is epsilon = 0.",
    "Appendix A.4 text: 'P(X_j = 0) approx e^{9(1-r_i)}' lacks the minus sign, and 'k = m_i / a' has a "
    "garbled denominator (likely r_in); neither is transcribed as a number.",
)


def _same(a: float, b: float) -> bool:
    return isinstance(b, int | float) and not isinstance(b, bool) and math.isclose(a, b, abs_tol=1e-9)
