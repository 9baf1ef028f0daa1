"""The DPF paper's CIFAR-10 numbers for every model, and its experiment grid as data (Lin et al., ICLR 2020).

:data:`PAPER_NUMBERS` holds the top-1 test accuracy (%, mean and std over three runs) of every cell
of the paper's CIFAR-10 tables, one dict per (table, model, method, sparsity):

* Table 4 (Appendix A.3.1): unstructured pruning from scratch; Dense, SNIP, SM, DSR, DPF.
* Table 1 (Section 5.2): a subset of Table 4 (every number of Table 1 is also in Table 4, checked
  against the extraction), kept as its own rows so that ``table`` says where a number is printed.
* Table 2 (Section 5.2): Dense, One-shot + FT, Incremental (Zhu & Gupta 2017), Incremental + FT,
  DPF, DPF + FT, for ResNet-20/32/56 at 90 % and 95 %.
* Table 5 (Appendix A.4.1): structured (filter) pruning; Dense, SFP, DPF, "pruning ratio" = share of
  filters (per layer for SFP, across layers for DPF).

The paper's "*" (the method did not converge) is ``top1 = nan`` with ``top1_std = None``; its "-"
(not reported) has no row (:data:`NOT_REPORTED`). Table 3 and Figure 10 are ImageNet and not here.

:data:`PAPER_GRID` is the paper-scale experiment grid (entries of preset, model, methods, target
sparsities and Recipe overrides) that together produce every CIFAR-10 table and figure of the
paper; :func:`grid_yaml` renders it for ``params.yaml``.
"""

from __future__ import annotations

import math
from typing import Any

from rewire.experiments.dpf_presets import MODEL_PRESET, PRESETS

__all__ = [
    "PAPER_NUMBERS",
    "PAPER_MODEL_NAMES",
    "NOT_REPORTED",
    "TABLE1_SPARSITIES",
    "PAPER_GRID",
    "paper_number",
    "paper_rows",
    "grid_entries",
    "same_flops_epochs",
    "grid_yaml",
]

STAR = "*"  # the paper's "*": the method did not converge

# rewire.models name -> the paper's name
PAPER_MODEL_NAMES: dict[str, str] = {
    "vgg16": "VGG16-D",
    "resnet20": "ResNet-20",
    "resnet32": "ResNet-32",
    "resnet56": "ResNet-56",
    "wrn28_2": "WideResNet-28-2",
    "wrn28_4": "WideResNet-28-4",
    "wrn28_8": "WideResNet-28-8",
}

_Cell = tuple[float, float] | str | None

# Table 4 (Appendix A.3.1): model -> (dense, [(sparsity, SNIP, SM, DSR, DPF)]); None = "-" in the paper.
_TABLE4: dict[str, tuple[tuple[float, float], list[tuple[float, _Cell, _Cell, _Cell, _Cell]]]] = {
    "vgg16": ((93.74, 0.13), [(0.95, (93.04, 0.26), (93.59, 0.17), None, (93.87, 0.15))]),
    "resnet20": (
        (92.48, 0.20),
        [
            (0.70, (91.10, 0.22), (91.98, 0.01), (92.00, 0.19), (92.42, 0.14)),
            (0.80, (90.53, 0.27), (91.54, 0.16), (91.78, 0.28), (92.17, 0.21)),
            (0.90, (88.50, 0.13), (89.76, 0.40), (87.88, 0.04), (90.88, 0.07)),
            (0.95, (84.91, 0.25), (83.03, 0.74), STAR, (88.01, 0.30)),
        ],
    ),
    "resnet32": (
        (93.83, 0.12),
        [
            (0.90, (90.40, 0.26), (91.54, 0.18), (91.41, 0.23), (92.42, 0.18)),
            (0.95, (87.23, 0.29), (88.68, 0.22), (84.12, 0.32), (90.94, 0.35)),
        ],
    ),
    "resnet56": (
        (94.51, 0.20),
        [
            (0.90, (91.43, 0.34), (92.73, 0.21), (93.78, 0.20), (93.95, 0.11)),
            (0.95, STAR, (90.96, 0.40), (92.57, 0.09), (92.74, 0.08)),
        ],
    ),
    "wrn28_2": (
        (95.01, 0.04),
        [
            (0.50, (94.67, 0.23), (94.73, 0.16), (94.80, 0.14), (95.11, 0.06)),
            (0.60, (94.47, 0.19), (94.65, 0.16), (94.98, 0.07), (94.90, 0.06)),
            (0.70, (94.29, 0.22), (94.46, 0.11), (94.80, 0.15), (94.86, 0.13)),
            (0.80, (93.56, 0.14), (94.17, 0.12), (94.57, 0.13), (94.76, 0.18)),
            (0.90, (92.58, 0.22), (93.41, 0.22), (93.88, 0.08), (94.36, 0.24)),
            (0.95, (90.80, 0.04), (92.24, 0.14), (92.74, 0.17), (93.62, 0.05)),
            (0.99, (83.45, 0.38), (85.36, 0.80), STAR, (88.92, 0.29)),
        ],
    ),
    "wrn28_4": (
        (95.69, 0.10),
        [
            (0.70, (95.42, 0.05), (95.57, 0.08), (95.67, 0.07), (95.58, 0.21)),
            (0.80, (95.24, 0.07), (95.27, 0.02), (95.49, 0.04), (95.60, 0.08)),
            (0.90, (94.56, 0.11), (95.01, 0.05), (95.30, 0.12), (95.65, 0.14)),
            (0.95, (93.62, 0.17), (94.45, 0.14), (94.63, 0.08), (95.38, 0.04)),
            (0.975, (92.06, 0.38), (93.80, 0.24), (93.92, 0.16), (94.98, 0.08)),
            (0.99, (89.49, 0.20), (92.18, 0.04), (92.50, 0.07), (93.86, 0.20)),
        ],
    ),
    "wrn28_8": (
        (96.06, 0.06),
        [
            (0.70, (95.81, 0.05), (95.92, 0.12), (96.06, 0.09), None),
            (0.80, (95.86, 0.10), (95.97, 0.05), (96.05, 0.12), None),
            (0.90, (95.49, 0.21), (95.67, 0.14), (95.81, 0.10), (96.08, 0.15)),
            (0.95, (94.92, 0.13), (95.64, 0.07), (95.55, 0.12), (95.98, 0.10)),
            (0.975, (94.11, 0.19), (95.31, 0.20), (95.11, 0.07), (95.84, 0.04)),
            (0.99, (92.04, 0.11), (94.38, 0.12), (94.10, 0.12), (95.63, 0.16)),
            (0.999, (74.50, 2.23), STAR, (88.65, 0.36), (91.76, 0.18)),
        ],
    ),
}
_TABLE4_METHODS = ("snip", "sm", "dsr", "dpf")

# Table 1 (Section 5.2): the sparsities of Table 4 it prints per model ("some reasonable pruning ratios").
TABLE1_SPARSITIES: dict[str, tuple[float, ...]] = {
    "vgg16": (0.95,),
    "resnet20": (0.70, 0.80, 0.90, 0.95),
    "resnet32": (0.90, 0.95),
    "resnet56": (0.90, 0.95),
    "wrn28_2": (0.90, 0.95, 0.99),
    "wrn28_4": (0.95, 0.975, 0.99),
    "wrn28_8": (0.90, 0.95, 0.975, 0.99, 0.999),
}

# Table 2 (Section 5.2): model -> (dense, [(sparsity, One-shot + FT, Incremental, Incremental + FT, DPF, DPF + FT)]).
_TABLE2: dict[str, tuple[tuple[float, float], list[tuple[float, ...]]]] = {
    "resnet20": (
        (92.48, 0.20),
        [
            (0.90, (90.18, 0.12), (90.55, 0.38), (90.54, 0.25), (90.88, 0.07), (91.76, 0.12)),
            (0.95, (86.91, 0.16), (89.21, 0.10), (89.24, 0.28), (88.01, 0.30), (90.34, 0.31)),
        ],
    ),
    "resnet32": (
        (93.83, 0.12),
        [
            (0.90, (91.72, 0.15), (91.69, 0.12), (91.76, 0.14), (92.42, 0.18), (92.61, 0.11)),
            (0.95, (89.31, 0.18), (90.86, 0.17), (90.93, 0.18), (90.94, 0.35), (92.18, 0.14)),
        ],
    ),
    "resnet56": (
        (94.51, 0.20),
        [
            (0.90, (93.26, 0.06), (93.14, 0.23), (93.09, 0.16), (93.95, 0.11), (93.95, 0.17)),
            (0.95, (91.61, 0.07), (92.14, 0.10), (92.50, 0.25), (92.74, 0.08), (93.25, 0.15)),
        ],
    ),
}
_TABLE2_METHODS = ("oneshot_ft", "incremental", "incremental_ft", "dpf", "dpf_ft")

# Table 5 (Appendix A.4.1): model -> (dense, [(pruning ratio, SFP, DPF)]).
_TABLE5: dict[str, tuple[tuple[float, float], list[tuple[float, ...]]]] = {
    "resnet20": (
        (92.48, 0.20),
        [
            (0.10, (92.18, 0.31), (92.54, 0.07)),
            (0.20, (91.12, 0.20), (91.90, 0.06)),
            (0.30, (90.32, 0.25), (91.07, 0.40)),
            (0.40, (89.60, 0.46), (90.28, 0.26)),
        ],
    ),
    "resnet32": ((93.52, 0.13), [(0.30, (92.07, 0.22), (92.18, 0.16)), (0.40, (91.14, 0.45), (91.50, 0.21))]),
    "resnet56": ((94.51, 0.20), [(0.30, (93.99, 0.27), (94.53, 0.13)), (0.40, (93.57, 0.16), (94.03, 0.38))]),
    "wrn28_2": (
        (95.01, 0.04),
        [
            (0.40, (94.02, 0.24), (94.52, 0.08)),
            (0.50, (93.34, 0.14), (94.11, 0.12)),
            (0.60, (92.07, 0.09), (93.74, 0.25)),
            (0.70, (90.66, 0.62), (92.89, 0.16)),
            (0.80, (86.00, 1.09), (90.53, 0.17)),
        ],
    ),
    "wrn28_4": (
        (95.69, 0.10),
        [
            (0.40, (95.15, 0.11), (95.50, 0.05)),
            (0.50, (94.86, 0.10), (95.43, 0.16)),
            (0.60, (94.47, 0.10), (95.20, 0.05)),
            (0.70, (93.37, 0.18), (94.67, 0.08)),
            (0.80, (91.88, 0.59), (93.79, 0.09)),
        ],
    ),
    "wrn28_8": (
        (96.06, 0.06),
        [
            (0.40, (95.62, 0.04), (96.06, 0.12)),
            (0.50, (95.59, 0.09), (96.03, 0.02)),
            (0.60, (95.40, 0.14), (95.88, 0.16)),
            (0.70, (94.99, 0.22), (95.71, 0.16)),
            (0.80, (94.22, 0.21), (95.15, 0.03)),
        ],
    ),
}
_TABLE5_METHODS = ("sfp", "dpf_structured")

_NOTES = {
    "dense": "'Baseline on dense model' / 'Dense' column",
    "snip": "SNIP (Lee et al. 2019); the paper adapted the authors' code",
    "sm": "Sparse Momentum (Dettmers & Zettlemoyer 2019); the paper reused its tuned hyper-parameters",
    "dsr": "DSR (Mostafa & Wang 2019); the paper reused its tuned hyper-parameters",
    "dpf": "DPF column",
    "oneshot_ft": "One-shot + FT (Han et al. 2015): dense training, one-shot pruning, 60 fine-tuning epochs",
    "incremental": "Incremental (Zhu & Gupta 2017), no fine-tuning",
    "incremental_ft": "Incremental + FT: Incremental, then 60 fine-tuning epochs",
    "dpf_ft": "DPF + FT: DPF, then 60 fine-tuning epochs",
    "sfp": (
        "SFP (He et al. 2018); approximate: the pruning ratio is the share of filters pruned within every layer, "
        "not of weights"
    ),
    "dpf_structured": (
        "DPF with L2 filter-norm selection; approximate: the pruning ratio is the share of filters pruned across "
        "layers (one global threshold), not of weights"
    ),
}

# (table, model, method, sparsity) printed as "-" in the paper: no number reported.
NOT_REPORTED: tuple[tuple[str, str, str, float], ...] = (
    ("Table 4", "vgg16", "dsr", 0.95),
    ("Table 1", "vgg16", "dsr", 0.95),
    ("Table 4", "wrn28_8", "dpf", 0.70),
    ("Table 4", "wrn28_8", "dpf", 0.80),
)


def _row(
    table: str, model: str, method: str, sparsity: float, structured: bool, cell: _Cell, note: str = ""
) -> dict[str, Any]:
    base = _NOTES[method] + (f"; {note}" if note else "")
    if cell == STAR:
        return {
            "table": table,
            "model": model,
            "method": method,
            "sparsity": sparsity,
            "structured": structured,
            "top1": math.nan,
            "top1_std": None,
            "note": base + "; '*' in the paper: the method did not converge",
        }
    mean, std = cell
    return {
        "table": table,
        "model": model,
        "method": method,
        "sparsity": sparsity,
        "structured": structured,
        "top1": mean,
        "top1_std": std,
        "note": base,
    }


def _build() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for table, keep in (("Table 4", None), ("Table 1", TABLE1_SPARSITIES)):
        for model, (dense, points) in _TABLE4.items():
            rows.append(_row(table, model, "dense", 0.0, False, dense))
            for sparsity, *cells in points:
                if keep is not None and sparsity not in keep[model]:
                    continue
                for method, cell in zip(_TABLE4_METHODS, cells):
                    if cell is not None:
                        rows.append(_row(table, model, method, sparsity, False, cell))
    for model, (dense, points) in _TABLE2.items():
        rows.append(_row("Table 2", model, "dense", 0.0, False, dense))
        for sparsity, *cells in points:
            for method, cell in zip(_TABLE2_METHODS, cells):
                rows.append(_row("Table 2", model, method, sparsity, False, cell))
    for model, (dense, points) in _TABLE5.items():
        note = "as printed in Table 5 (Tables 1, 2 and 4 give 93.83 +- 0.12)" if model == "resnet32" else ""
        rows.append(_row("Table 5", model, "dense", 0.0, True, dense, note))
        for sparsity, *cells in points:
            for method, cell in zip(_TABLE5_METHODS, cells):
                rows.append(_row("Table 5", model, method, sparsity, True, cell))
    return rows


PAPER_NUMBERS: list[dict[str, Any]] = _build()

# Which table answers paper_number first (Tables 1, 2 and 4 agree wherever they overlap).
_TABLE_ORDER = ("Table 4", "Table 1", "Table 2", "Table 5")


def paper_number(model: str, method: str, sparsity: float, structured: bool = False) -> dict[str, Any] | None:
    """The paper's number for (model, method, target sparsity), or ``None`` if no table has it.

    Unstructured numbers come from Table 4 (or Tables 1/2, which agree with it), structured ones
    (``structured=True``) from Table 5. ``dense`` ignores ``sparsity``; with ``structured=True`` it
    is the dense baseline printed in Table 5. Returns a copy of the :data:`PAPER_NUMBERS` row.
    """
    matches = [
        row
        for row in PAPER_NUMBERS
        if row["model"] == model
        and row["method"] == method
        and row["structured"] == structured
        and (method == "dense" or math.isclose(row["sparsity"], sparsity, abs_tol=1e-9))
    ]
    if not matches:
        return None
    return dict(min(matches, key=lambda row: _TABLE_ORDER.index(row["table"])))


def paper_rows(model: str) -> list[dict[str, Any]]:
    """Every :data:`PAPER_NUMBERS` row of ``model`` (copies), in table order; empty for models the paper lacks."""
    return [dict(row) for row in PAPER_NUMBERS if row["model"] == model]


# --------------------------------------------------------------------- the experiment grid

_T4_SPARSITIES = {model: tuple(p[0] for p in points) for model, (_, points) in _TABLE4.items()}
_T5_SPARSITIES = {model: tuple(p[0] for p in points) for model, (_, points) in _TABLE5.items()}
_FIG9_PERIODS = (1, 4, 16, 64, 256)
_FIG9_BATCHES = (64, 256, 512)


def same_flops_epochs(epochs: int, sparsity: float, ramp_end: float) -> int:
    """Epochs of sparse retraining at density 1 - s that cost as many MACs as one DPF run (Figure 8).

    Assumes a training iteration costs in proportion to the density of the mask in use (the MAC
    count of Figures 3c and 6) and the cubic ramp s_t = s (1 - (1 - t / n)^3) of Appendix A.2 up to
    ``ramp_end`` (fraction of training), whose mean density is 1 - 3 s / 4. Rounded up.
    """
    if not 0 < sparsity < 1 or not 0 < ramp_end <= 1:
        raise ValueError(f"need sparsity in (0, 1) and ramp_end in (0, 1], got {sparsity}, {ramp_end}")
    dpf_cost = ramp_end * (1 - 0.75 * sparsity) + (1 - ramp_end) * (1 - sparsity)
    return math.ceil(round(epochs * dpf_cost / (1 - sparsity), 6))


def _entry(
    tag: str,
    figure_or_table: str,
    model: str,
    methods: tuple[str, ...],
    sparsities: tuple[float, ...],
    overrides: dict[str, Any] | None = None,
    note: str = "",
    missing: str | None = None,
) -> dict[str, Any]:
    return {
        "tag": tag,
        "figure_or_table": figure_or_table,
        "preset": MODEL_PRESET[model],
        "model": model,
        "methods": methods,
        "sparsities": sparsities,
        "overrides": dict(overrides or {}),
        "note": note,
        "missing": missing,
    }


def _build_grid() -> list[dict[str, Any]]:
    grid: list[dict[str, Any]] = []
    unstructured = ("dense", "snip", "sm", "dsr", "dpf")
    figures = {
        "wrn28_2": ", Figure 3, Figure 11",
        "wrn28_4": ", Figure 11",
        "wrn28_8": ", Figure 11",
    }
    for model, sparsities in _T4_SPARSITIES.items():
        methods = ("dense", "snip", "sm", "dpf") if model == "vgg16" else unstructured
        note = {
            "vgg16": "DSR is '-' (not reported) for VGG16-D in Tables 1 and 4; add dsr to fill the gap",
            "wrn28_8": "DPF at 70 % and 80 % is '-' (not reported) in Table 4; run anyway",
            "wrn28_2": "Figure 3 (a-c): accuracy vs sparsity, parameters and MACs, 50 % to 99 % (caption)",
        }.get(model, "")
        grid.append(
            _entry(
                f"table4-{model}", "Table 1, Table 4" + figures.get(model, ""), model, methods, sparsities, note=note
            )
        )
    for model, (_, points) in _TABLE2.items():
        grid.append(
            _entry(
                f"table2-{model}",
                "Table 2",
                model,
                ("dense", "oneshot_ft", "incremental", "incremental_ft", "dpf", "dpf_ft"),
                tuple(p[0] for p in points),
                note="fine-tuning: 60 epochs (Table 2 caption), finetune_lr from the preset (tuned in the paper)",
            )
        )
    for model, sparsities in _T5_SPARSITIES.items():
        extra = ", Figure 6, Figure 12" if model.startswith("wrn") else ""
        grid.append(
            _entry(
                f"table5-{model}",
                "Table 5" + extra,
                model,
                ("dense", "sfp", "dpf_structured"),
                sparsities,
                note="sparsity = share of filters pruned (Table 5 'pruning ratio')",
            )
        )
    wrn2 = _T4_SPARSITIES["wrn28_2"]
    grid.append(
        _entry(
            "fig4-fig7-wrn28_2-dynamics",
            "Figure 4, Figure 7",
            "wrn28_2",
            ("dpf",),
            wrn2,
            note=(
                "the captions say 'different target sparsity levels' without listing them (the text quotes 95 %); "
                "our choice: the WRN-28-2 sparsities of Table 4. Figure 4 = run.json mask_convergence, Figure 7 = "
                "per-epoch history mask_iou and delta of the same runs as table4-wrn28_2"
            ),
        )
    )
    grid.append(
        _entry(
            "fig5-wrn28_2-lottery",
            "Figure 5, Figure 8",
            "wrn28_2",
            ("dense", "dpf", "lottery", "dpf_rewind"),
            wrn2,
            note=(
                "unstructured; the caption gives no sparsity list (the text mentions 99 %); our choice: the "
                "WRN-28-2 sparsities of Table 4. dpf_rewind retrains DPF's mask from the initial weights with the "
                "same epoch budget (Figure 5, and the 'same epochs' half of Figure 8); lottery_rounds from the preset"
            ),
        )
    )
    ramp_end = PRESETS["wideresnet_cifar"]["milestones"][1]
    epochs = PRESETS["wideresnet_cifar"]["epochs"]
    for sparsity in wrn2:
        budget = same_flops_epochs(epochs, sparsity, ramp_end)
        grid.append(
            _entry(
                f"fig8-wrn28_2-rewind-same-flops-{sparsity:g}",
                "Figure 8",
                "wrn28_2",
                ("dpf_rewind",),
                (sparsity,),
                {"rewind_epochs": budget},
                note=(
                    "Figure 8 retrains DPF's mask 'for the same amount of computation budget (i.e. flops)'; the "
                    "paper does not say how the budget is counted. Our choice (same_flops_epochs): MACs "
                    f"proportional to mask density, DPF ramp to the second decay: {budget} retraining epochs at "
                    f"{sparsity:g}; the DPF run itself is the one of fig5-wrn28_2-lottery, found by its hash"
                ),
            )
        )
    for p in _FIG9_PERIODS:
        grid.append(
            _entry(
                f"fig9-resnet20-period{p}",
                "Figure 9",
                "resnet20",
                ("dpf",),
                _T4_SPARSITIES["resnet20"],
                {"update_every": p},
                note=(
                    "reparametrisation period p at batch 128 (caption); the p values and sparsities are not legible "
                    "in the text; our choice: p in 1, 4, 16, 64, 256 and the ResNet-20 sparsities of Table 1"
                ),
            )
        )
    for batch in _FIG9_BATCHES:
        for p in _FIG9_PERIODS:
            grid.append(
                _entry(
                    f"fig9-resnet20-batch{batch}-period{p}",
                    "Figure 9",
                    "resnet20",
                    ("dpf",),
                    (0.9,),
                    {"batch_size": batch, "update_every": p},
                    note=(
                        "p = 16 is 'quite consistent over ... different mini-batch sizes' (Appendix A.3.3); the batch "
                        "sizes and sparsity are not stated; our choice: batch 64/256/512 (128 is the period entries), "
                        "90 %, lr unchanged at the preset's 0.2"
                    ),
                )
            )
    grid.append(
        _entry(
            "fig9-resnet20-layerwise",
            "Figure 9",
            "resnet20",
            ("dpf",),
            _T4_SPARSITIES["resnet20"],
            note="global (this entry) vs layer-wise magnitude pruning at batch 128, p = 16 (caption)",
            missing="a layer-wise DPF method (one magnitude threshold per layer); only the global variant exists",
        )
    )
    grid.append(
        _entry(
            "fig13-wrn28_2-structured-rewind",
            "Figure 13",
            "wrn28_2",
            ("dense", "dpf_structured", "dpf_structured_rewind"),
            _T5_SPARSITIES["wrn28_2"],
            note=(
                "structured analogue of Figure 5 'by using the same epoch budget': dpf_structured_rewind retrains "
                "the final dpf_structured filter mask from the initial weights; sparsities not stated; our "
                "choice: the WRN-28-2 ratios of Table 5"
            ),
        )
    )
    grid.append(
        _entry(
            "fig14-wrn28_2-layer-sparsity",
            "Figure 14",
            "wrn28_2",
            ("dpf_structured",),
            _T5_SPARSITIES["wrn28_2"],
            note=(
                "element-wise sparsity of each layer under structured DPF (caption); ratios not stated; our choice: "
                "the WRN-28-2 ratios of Table 5 (same runs as table5-wrn28_2); run.json layer_sparsity"
            ),
            missing=(
                "per-layer sparsity over the course of training (the text speaks of 'transition patterns'); "
                "run.json records it only for the final mask"
            ),
        )
    )
    return grid


PAPER_GRID: list[dict[str, Any]] = _build_grid()


def grid_entries(figure_or_table: str) -> list[dict[str, Any]]:
    """The :data:`PAPER_GRID` entries that produce ``figure_or_table`` (e.g. ``"Table 5"``, ``"Figure 9"``)."""
    return [e for e in PAPER_GRID if figure_or_table in [s.strip() for s in e["figure_or_table"].split(",")]]


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return str(value)


def _flow(values) -> str:
    return "[" + ", ".join(_scalar(v) for v in values) + "]"


def grid_yaml() -> str:
    """:data:`PAPER_GRID` as a YAML list of mappings (tag, preset, model, methods, sparsities, optional
    overrides), each preceded by a comment naming its table/figure and anything missing, for ``params.yaml``."""
    lines = []
    for entry in PAPER_GRID:
        lines.append(f"# {entry['figure_or_table']}")
        if entry["missing"]:
            lines.append(f"# missing: {entry['missing']}")
        lines.append(f"- tag: {entry['tag']}")
        lines.append(f"  preset: {entry['preset']}")
        lines.append(f"  model: {entry['model']}")
        lines.append(f"  methods: {_flow(entry['methods'])}")
        lines.append(f"  sparsities: {_flow(entry['sparsities'])}")
        if entry["overrides"]:
            pairs = ", ".join(f"{k}: {_scalar(v)}" for k, v in entry["overrides"].items())
            lines.append(f"  overrides: {{{pairs}}}")
    return "\n".join(lines) + "\n"
