"""The numbers of Liu et al., *Robust Binary Models by Pruning Randomly-initialized Networks* (NeurIPS 2022).

The numbers are data, in ``paper.yaml`` beside this module (appendix Tables 6-11 and the values stated in its text,
as printed; editing one never retrains a run); this module reads them into frozen rows and looks cells up, so that
the report can put the paper's number beside every row of its own results (:func:`reference_cells`: a
:class:`Cell` names its table, printed line, column, value and attack; a row whose keep, training, dataset, ε,
model, initialisation or last BN has no printed line gets none, and the reason). All accuracies are top-1 in %, on
the test set; cells printed "-" are ``None``.

* :data:`TABLE7` -- the small dense RN34 variants (per-stage widths, ``#params``; no accuracies printed).
* :data:`TABLE8` -- vanilla (clean) training on CIFAR10: p x {Signed KC, binary} x {no LBN, LBN}.
* :data:`TABLE9` -- robust accuracy of the baselines and of the method on CIFAR10 / CIFAR100, FP and binary.
* :data:`TABLE10` -- clean accuracy of the adversarially trained models of the paper's Table 4.
* :data:`TABLE11` -- clean accuracy in the non-adversarial case (epsilon = 0).
* :data:`TABLE6_EXAMPLE`, :data:`APPENDIX_A4`, :data:`TEXT_NUMBERS`, :data:`FIGURE4` -- numbers stated in the text.

What the tables do *not* contain: Table 9 has no clean accuracy and no parameter count, and does not name its
attack; its numbers are AutoAttack (:data:`TABLE_SOURCES`: it complements the main paper's Table 4, compared "under
AutoAttack", and its "Ours" cells are the AutoAttack accuracies of the authors' released checkpoints). No table of the
appendix prints a PGD-10 number. Table 7 has no accuracies. :data:`EXTRACTION_NOTES` lists numbers
that look wrong or ambiguous in the extraction.

``quoted=True`` marks the baselines whose code is not the authors' (:data:`QUOTED_METHODS`). Per Appendix D.1 the
authors *ran* these from the baselines' own public implementations; the numbers are not copied from their papers.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml

__all__ = [
    "PAPER_FILE", "load_numbers", "Init", "Dataset", "Table7Row", "Table8Row", "RobustRow", "CleanRow",
    "Table6Example", "AppendixA4", "Figure4Settings", "TABLE6_CAPTION", "TABLE7_CAPTION", "TABLE8_CAPTION",
    "TABLE9_CAPTION", "TABLE10_CAPTION", "TABLE11_CAPTION", "CAPTIONS", "TABLE7", "TABLE8", "TABLE9", "TABLE10",
    "TABLE11", "TABLE8_P_VALUES", "TABLE9_PRUNING_RATE", "TABLE10_PRUNING_RATE", "TABLE11_PRUNING_RATE",
    "QUOTED_METHODS", "EPSILON_LINF", "TEXT_NUMBERS", "TABLE6_EXAMPLE", "APPENDIX_A4", "FIGURE4", "EXTRACTION_NOTES",
    "table7", "table8", "table9_rows", "table10_rows", "table11_rows", "table6_ratios", "a4_expected_kernels",
    "DATASET_COLUMNS", "PAPER_MODELS", "PAPER_WIDTHS", "PAPER_KEEP", "TABLE_ATTACKS", "TABLE_SOURCES",
    "LINE_TRAINING", "Cell", "Reference", "reference_cells", "paper_cells",
]  # fmt: skip

PAPER_FILE = Path(__file__).with_name("paper.yaml")

Init = Literal["signed_kc", "binary"]
Dataset = Literal["CIFAR10", "CIFAR100", "ImageNet100"]


@cache
def load_numbers(path: str | Path = PAPER_FILE) -> dict[str, Any]:
    """The parsed ``paper.yaml`` (read once)."""
    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


_NUMBERS = load_numbers()

# --------------------------------------------------------------------------------------------------
# Captions (abridged only where marked "...") and settings stated in the text (Appendix D.1 unless noted)
# --------------------------------------------------------------------------------------------------

CAPTIONS: dict[int, str] = {int(k): v for k, v in _NUMBERS["captions"].items()}
TABLE6_CAPTION, TABLE7_CAPTION, TABLE8_CAPTION, TABLE9_CAPTION, TABLE10_CAPTION, TABLE11_CAPTION = (
    CAPTIONS[t] for t in range(6, 12)
)
#: l_inf adversarial budget per dataset (D.1). PGD: 10 iterations, step size epsilon / 4.
EPSILON_LINF: dict[str, Fraction] = {k: Fraction(v, 255) for k, v in _NUMBERS["epsilon_linf_255"].items()}
#: Other scalars stated in the appendix text, keyed by what they are.
TEXT_NUMBERS: dict[str, float | int] = dict(_NUMBERS["text_numbers"])


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


TABLE7: tuple[Table7Row, ...] = tuple(
    Table7Row(**{**row, "stage_channels": tuple(row["stage_channels"]), "stage_blocks": tuple(row["stage_blocks"])})
    for row in _NUMBERS["table7"]
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


_TABLE8_COLUMNS: tuple[tuple[Init, bool], ...] = tuple((init, lbn) for init, lbn in _NUMBERS["table8"]["columns"])
TABLE8_P_VALUES: tuple[float, ...] = tuple(float(p) for p in _NUMBERS["table8"]["rows"])
TABLE8: tuple[Table8Row, ...] = tuple(
    Table8Row(float(p), init, lbn, acc)
    for p, accs in _NUMBERS["table8"]["rows"].items()
    for (init, lbn), acc in zip(_TABLE8_COLUMNS, accs)
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
QUOTED_METHODS: frozenset[str] = frozenset(_NUMBERS["quoted_methods"])
#: Pruning rate of the pruned rows: 0.99 for Table 9 (D.2.2 text) and Table 11 (caption); Table 10 (models of the
#: main paper's Table 4): not restated in the appendix (None).
TABLE9_PRUNING_RATE: float = _NUMBERS["table9"]["pruning_rate"]
TABLE10_PRUNING_RATE: float | None = _NUMBERS["table10"]["pruning_rate"]
TABLE11_PRUNING_RATE: float = _NUMBERS["table11"]["pruning_rate"]


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


def _strategy_p(strategy: str) -> float | None:
    return float(strategy.split("=")[1]) if strategy.startswith("p =") else None


def _robust_rows(lines, datasets) -> tuple[RobustRow, ...]:
    return tuple(
        RobustRow(m, a, s, _strategy_p(s), ds, accs[2 * i], accs[2 * i + 1], m in QUOTED_METHODS)
        for m, a, s, accs in lines
        for i, ds in enumerate(datasets)
    )


def _clean_rows(table: int, lines, datasets) -> tuple[CleanRow, ...]:
    return tuple(
        CleanRow(table, m, a, s, _strategy_p(s), ds, accs[2 * i], accs[2 * i + 1], m in QUOTED_METHODS)
        for m, a, s, accs in lines
        for i, ds in enumerate(datasets)
    )


#: Table 9, one row per printed line and dataset (30 lines x 2 datasets).
TABLE9: tuple[RobustRow, ...] = _robust_rows(_NUMBERS["table9"]["lines"], tuple(_NUMBERS["table9"]["datasets"]))
#: Table 10, one row per printed line and dataset (13 lines x 3 datasets).
TABLE10: tuple[CleanRow, ...] = _clean_rows(10, _NUMBERS["table10"]["lines"], tuple(_NUMBERS["table10"]["datasets"]))
#: Table 11, one row per printed line and dataset (12 lines x 3 datasets).
TABLE11: tuple[CleanRow, ...] = _clean_rows(11, _NUMBERS["table11"]["lines"], tuple(_NUMBERS["table11"]["datasets"]))


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


TABLE6_EXAMPLE = Table6Example(**_NUMBERS["table6_example"])


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


APPENDIX_A4 = AppendixA4(**_NUMBERS["appendix_a4"])


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


FIGURE4 = Figure4Settings(**_NUMBERS["figure4"])

EXTRACTION_NOTES: tuple[str, ...] = tuple(_NUMBERS["extraction_notes"])


# --------------------------------------------------------------------------------------------------
# The paper's cells beside a row of ours
# --------------------------------------------------------------------------------------------------

_REFERENCE = _NUMBERS["reference"]
#: The tables' dataset column per dataset name of a config.
DATASET_COLUMNS: dict[str, str] = {"cifar10": "CIFAR10", "cifar100": "CIFAR100", "imagenet100": "ImageNet100"}
#: The paper's network per dataset column (RN34: cResNet34 on CIFAR, ResNet-34 on ImageNet100), widths and keep.
PAPER_MODELS: dict[str, str] = dict(_REFERENCE["models"])
PAPER_WIDTHS: tuple[int, ...] = tuple(_REFERENCE["widths"])
PAPER_KEEP: float = _REFERENCE["keep"]
#: Per table: the attack behind its numbers ("AutoAttack": Table 9; "clean (no attack)": 8, 10, 11) and the source.
TABLE_ATTACKS: dict[int, str] = {int(t): v["attack"] for t, v in _REFERENCE["tables"].items()}
TABLE_SOURCES: dict[int, str] = {int(t): v["source"] for t, v in _REFERENCE["tables"].items()}
#: How each printed method trained, per dataset column (pgd: Algorithm 1, fast: Algorithm 2, trades).
LINE_TRAINING: dict[str, dict[str, str]] = {k: dict(v) for k, v in _REFERENCE["training"].items()}
_OURS_INIT, _OURS_LBN = _REFERENCE["ours"]["weight_init"], _REFERENCE["ours"]["last_bn"]


@dataclass(frozen=True)
class Cell:
    """One number of the paper to stand beside one of ours: its table, printed line (method, architecture,
    strategy, FP or binary), dataset column, value, and what produced it (``attack``: "AutoAttack" or "clean (no attack)", :data:`TABLE_ATTACKS`)."""

    table: int
    line: str
    column: str
    value: float
    attack: str

    @property
    def label(self) -> str:
        return f"Table {self.table}: {self.line}, {self.column} · {self.attack}"


@dataclass(frozen=True)
class Reference:
    """The paper's cells for one row of ours: ``robust`` (Table 9, AutoAttack) and ``clean`` (Table 8, 10 or 11),
    each None where the paper prints no number for the row's setting; ``why`` says why (empty when both exist).
    ``stand_in``: the scale's network is a reduced stand-in for the paper's RN34 (its keep for r = 0.99)."""

    robust: Cell | None
    clean: Cell | None
    why: str
    stand_in: bool

    @property
    def label(self) -> str:
        return "; ".join(cell.label for cell in (self.robust, self.clean) if cell is not None)


def reference_cells(row: Any, scale: Any) -> Reference:
    """The paper's cells for the resolved row ``row`` of the scale ``scale`` (a config: ``dataset``, ``model``,
    ``widths``, ``keep``), or none, with the reason, where the row's dataset, ε, model, keep, method, training,
    initialisation or last BN has no printed line.

    At the paper's network (RN34 at full widths) a pruned row needs keep 0.01 (r = 0.99, Tables 8-11); at a scale
    whose network is smaller, the scale's own model, widths and keep stand in for RN34 at r = 0.99 (``stand_in``:
    a reference, not the same setting), and a dense or BinaryConnect row narrower than the scale's is Small
    RN34-p0.1. Robust cells are AutoAttack numbers (Table 9); no table of the appendix prints a PGD-10 number."""
    dataset = getattr(row, "dataset", None) or scale.dataset  # a row may train another dataset than its block's
    column = DATASET_COLUMNS.get(dataset)
    paper_network = column is not None and scale.model == PAPER_MODELS[column] and tuple(scale.widths) == PAPER_WIDTHS
    stand_in = not paper_network
    problem = (
        _setting_problem(row, scale, column, paper_network) if column else f"dataset {dataset!r} is not in the paper"
    )
    architecture = None
    if not problem:
        architecture, problem = _architecture(row, scale, stand_in)
    if problem:
        return Reference(None, None, problem, stand_in)
    if row.training == "clean":
        clean, why = _vanilla_cell(row, column, architecture)
        return Reference(None, clean, "; ".join(w for w in ("robust: vanilla training (ε = 0)", why) if w), stand_in)
    method, problem = _adversarial_method(row, column)
    if problem:
        return Reference(None, None, problem, stand_in)
    robust, robust_why = _table_cell(9, row, column, method, architecture)
    clean, clean_why = _table_cell(10, row, column, method, architecture)
    why = "; ".join(f"{kind}: {w}" for kind, w in (("robust", robust_why), ("clean", clean_why)) if w)
    return Reference(robust, clean, why, stand_in)


def _setting_problem(row: Any, scale: Any, column: str, paper_network: bool) -> str:
    """Why no table can hold the row (ε, model, method, keep), or ""."""
    budget = _NUMBERS["epsilon_linf_255"][column]
    if row.training != "clean" and not _same(float(row.eps_255), budget):
        return f"ε {row.eps_255:g}/255: the paper's {column} budget is {budget}/255"
    if row.model != scale.model:
        return f"model {row.model}: the paper prints RN34 numbers only (this scale's network: {scale.model})"
    if row.method in ("finetune", "retrain"):
        return "the appendix prints no fine-tune / retrain line"
    pruned_keep = PAPER_KEEP if paper_network else scale.keep
    if row.method == "edge_popup" and not _same(float(row.keep), float(pruned_keep)):
        stood = "" if paper_network else f"; this scale's keep {scale.keep:g} stands in for it"
        return f"keep {row.keep:g} (r = {1 - row.keep:g}): the appendix prints pruned lines at r = 0.99 only{stood}"
    return ""


def _architecture(row: Any, scale: Any, stand_in: bool) -> tuple[str | None, str]:
    """The printed architecture of the row: RN34 / RN34-LBN, or a Small RN34 of Table 7 (dense and BinaryConnect)."""
    if tuple(row.widths) == tuple(scale.widths):
        return ("RN34-LBN" if row.last_bn else "RN34"), ""
    if row.method == "edge_popup":
        return None, f"widths {list(row.widths)}: a pruned network other than the scale's RN34 stand-in"
    for small in TABLE7:
        if tuple(row.widths) == small.stage_channels:
            return small.variant, ""
    if stand_in and sum(row.widths) < sum(scale.widths):
        return "Small RN34-p0.1", ""
    return None, f"widths {list(row.widths)}: neither RN34 nor one of Table 7's small networks"


def _adversarial_method(row: Any, column: str) -> tuple[str, str]:
    """The printed method an adversarially trained row is ("Ours", "Ours (fast)", "AT", "TRADES"), or why none."""
    if row.method == "edge_popup":
        if row.weight_init != _OURS_INIT:
            return "", f"weight init {row.weight_init}: the 'Ours' lines use binary weights (Signed KC: Table 8 only)"
        if bool(row.last_bn) != _OURS_LBN:
            return "", "no last BN: the 'Ours' lines are RN34-LBN"
        names = ("Ours", "Ours (fast)")
    else:
        names = ("AT", "TRADES")
    trained = {name: how for name, how in LINE_TRAINING[column].items() if name in names}
    for name, how in trained.items():
        if how == row.training:
            return name, ""
    lines = ", ".join(f"{name} trains with {how}" for name, how in trained.items())
    return "", f"training {row.training}: no {column} line trains so ({lines})"


def _table_cell(table: int, row: Any, column: str, method: str, architecture: str) -> tuple[Cell | None, str]:
    """The cell of Table 9 (robust), 10 (clean, adversarially trained) or 11 (clean, ε = 0) for the row, or why none."""
    lines = {9: TABLE9, 10: TABLE10, 11: TABLE11}[table]
    if column not in {r.dataset for r in lines}:
        return None, f"Table {table} has no {column} column"
    if table != 9 and architecture.startswith("Small RN34"):  # Tables 10-11's "Small RN34" is Small RN34-p0.1
        if architecture != TABLE7[0].variant:
            return None, f"Table {table} prints {TABLE7[0].variant} only"
        architecture = "Small RN34"
    ours = method.startswith("Ours")
    printed = sorted({f"{r.p:.1f}" for r in lines if r.method == method and r.p is not None})
    if ours and f"{row.p:.1f}" not in printed:
        return None, f"Table {table} prints {method} at p = {', '.join(printed)} only"
    found = [
        r for r in lines if r.dataset == column and r.method == method and r.architecture == architecture
        and (not ours or _same(r.p, row.p))
    ]  # fmt: skip
    if not found:
        return None, f"Table {table} has no line {method}, {architecture}"
    kind = "binary" if row.method in ("edge_popup", "binary_connect") else "FP"
    measure = "robust" if table == 9 else "clean"
    value = getattr(found[0], f"{'binary' if kind == 'binary' else 'fp'}_{measure}_top1")
    line = ", ".join([method, found[0].architecture, *([found[0].pruning_strategy] if ours else []), kind])
    if value is None:
        return None, f"Table {table} prints '-' for {line}, {column}"
    return Cell(table, line, column, value, TABLE_ATTACKS[table]), ""


def _vanilla_cell(row: Any, column: str, architecture: str) -> tuple[Cell | None, str]:
    """The clean cell of a row trained without an attack: Table 8 (edge-popup on CIFAR10) or Table 11, or why none."""
    if row.method == "edge_popup" and column == "CIFAR10":
        init = {"signed_kaiming_constant": "signed_kc", "binary": "binary"}.get(row.weight_init)
        if init is None or not any(_same(row.p, p) for p in TABLE8_P_VALUES):
            return None, f"clean: Table 8 prints p in {list(TABLE8_P_VALUES)}, Signed KC or binary init only"
        cell = table8(row.p, init, bool(row.last_bn))
        line = f"p = {row.p:.1f}, {init}, {'LBN' if row.last_bn else 'no LBN'}"
        return Cell(8, line, "CIFAR10", cell.clean_top1, TABLE_ATTACKS[8]), ""
    if row.method == "edge_popup":
        if row.weight_init != _OURS_INIT or bool(row.last_bn) != _OURS_LBN:
            return None, "clean: Table 11's 'Ours' line is binary init with LBN"
        method = "Ours"
    else:
        method = "AT"
    found, why = _table_cell(11, row, column, method, architecture)
    return found, why and f"clean: {why}"


def paper_cells(
    setup: Any, dataset: str = "cifar10", full_widths: tuple[int, ...] = (64, 128, 256, 512)
) -> dict[str, Any]:
    """:func:`reference_cells` as a flat dict (``paper_row``, ``paper_robust_top1``, ``paper_clean_top1`` with NaN
    where there is no cell, ``paper_why_none``), the scale taken as the row's own model, keep and widths (``full_widths`` for a dense or
    BinaryConnect row: narrower is a small network)."""
    from types import SimpleNamespace

    widths = tuple(full_widths) if setup.method in ("dense", "binary_connect") else tuple(setup.widths)
    scale = SimpleNamespace(dataset=dataset, model=setup.model, widths=widths, keep=setup.keep)
    row = dataclasses.replace(setup, dataset=dataset) if hasattr(setup, "dataset") else setup  # the one named here
    found = reference_cells(row, scale)
    nan = float("nan")
    return {
        "paper_row": found.label,
        "paper_robust_top1": found.robust.value if found.robust else nan,
        "paper_clean_top1": found.clean.value if found.clean else nan,
        "paper_why_none": found.why,
    }


def _same(a: float, b: float) -> bool:
    return isinstance(b, int | float) and not isinstance(b, bool) and math.isclose(a, b, abs_tol=1e-9)
