"""The robust-binary outputs from an :class:`~rewire.experiments.base.Outcome` (presentation; not in any run's hash).

Writes every file the ``robust_binary`` stage of ``dvc.yaml`` declares, at every scale (a one-line "not computed at
this scale: <why>" where a scale or ``--only`` leaves one out): ``per_run.csv``, ``curves.csv`` and ``curves.png``
(Figure 4's quantity), ``table_robust`` (clean and PGD accuracy per row, the paper's cells beside: Tables 9-11),
``table8_vanilla`` (Table 8), ``claims``, ``allocation.csv/.png``, ``kept_fractions.csv``, ``analysis`` (the
appendix checked exactly), ``kernels.csv`` (A.4 on a trained mask), ``alignment.csv`` (Section 4.3),
``masks_consecutive.png`` (Figure 3), ``mask_layer.png`` (Figure 5), ``cross_check`` (our PGD against
torchattacks', AutoAttack), ``metrics.json`` (headline numbers only), ``details.json`` and ``label.json``.

Every label names ε and every attack setting (PGD steps, step, restarts, the attack's BN mode, each row's training
attack, the AutoAttack variant and its steps): :func:`attack_label`, written into ``label.json`` and every caption.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch

from rewire.experiments.base import Outcome
from rewire.experiments.robust_binary import evaluation, masks
from rewire.experiments.robust_binary.config import Config, Row
from rewire.experiments.robust_binary.paper import paper_cells
from rewire.io import write_json, write_text
from rewire.reporting import claims as claims_module
from rewire.reporting import plotting, results
from rewire.reporting.claims import DEFAULT_MARGIN

__all__ = [
    "FAST_MARGIN",
    "CLAIMS",
    "HEADLINE",
    "PGD_RESTARTS",
    "robust_claims",
    "attack_label",
    "attack_words",
    "run_label",
    "per_run_table",
    "curves_table",
    "robust_table",
    "vanilla_table",
    "report",
]

PGD_RESTARTS = 1  # PGD with one random start (Algorithm 1, Section 4.1); AutoAttack's attacks with one restart each
# The paper's claims this repository decides, as (a, b, metric, kind, margin, words, source) over row names; a
# claim whose rows are not in the scale's plan is left out. Fast training is the main row at cpu scale (ours_p01
# vs ours_pgd) and a row of its own at paper scale (ours_fast vs ours_p01, trained with PGD).
FAST_MARGIN = 5.0  # "a small accuracy loss": the paper's own gap, 45.06 (PGD) vs 40.77 (fast) AutoAttack, Table 9
_PGD = "test_pgd_top1"
CLAIMS = (
    ("ours_p01", "ours_p1", _PGD, "greater", DEFAULT_MARGIN,
     "adaptive pruning (p = 0.1) beats a fixed rate (p = 1) at a high pruning rate (robust accuracy)",
     "Section 3.2, Table 9"),
    ("ours_p01", "ours_nolbn", _PGD, "greater", DEFAULT_MARGIN,
     "the last batch norm helps the binary network (robust accuracy)", "Section 3.3, Table 8"),
    ("ours_p01", "ours_skc", _PGD, "equivalent", DEFAULT_MARGIN,
     "binary initialisation matches the signed Kaiming constant (robust accuracy)", "Section 3.1, Table 8"),
    ("ours_p01", "binary_connect_small", _PGD, "greater", DEFAULT_MARGIN,
     "ours beats BinaryConnect adversarial training at an equal parameter count (robust accuracy)", "Table 9"),
    ("ours_p01", "ours_pgd", _PGD, "at_least", FAST_MARGIN,
     "fast training (FGSM + ATTA) loses little robust accuracy against PGD training", "Section 4, Algorithm 2, Table 9"),
    ("ours_p1_keep05", "ours_p01_keep05", _PGD, "greater", DEFAULT_MARGIN,
     "at a low pruning rate (r = 0.5) the fixed rate p = 1 beats p = 0.1 (robust accuracy)",
     "Appendix D.2.6, Figure 4 (main paper Table 1)"),
    ("ours_fast", "ours_p01", _PGD, "at_least", FAST_MARGIN,
     "fast training (FGSM + ATTA) loses little robust accuracy against PGD training", "Section 4, Algorithm 2, Table 9"),
)  # fmt: skip
# metrics.json (what `dvc metrics show` prints): the verdict counts and the main row's accuracies
# the keys every stage shares (tools/headline_metrics.py): top1 = the main row's PGD-10 top-1, baseline_top1 = dense AT's
HEADLINE = ("claims_held", "claims_reversed", "claims_not_decided", "top1", "baseline_top1")
BASELINE_ROW = "dense_at"  # the full-precision adversarially trained network (Table 9's FP AT)


def robust_claims(per_run: pd.DataFrame) -> list:
    """The claims of :data:`CLAIMS` whose two rows ran on at least two common seeds (:mod:`rewire.reporting.claims`)."""
    found = []
    for a, b, metric, kind, margin, words, source in CLAIMS:
        sides = []
        for key in (a, b):
            rows = per_run[per_run.row == key]
            sides.append(dict(zip(rows.seed.astype(int), rows[metric].astype(float))))
        if len(set(sides[0]) & set(sides[1])) >= 2:
            found.append(
                claims_module.Claim(
                    "Robust binary", words, a, sides[0], b, sides[1], kind=kind, margin=margin, source=source
                )  # fmt: skip
            )
    return found


# ------------------------------------------------------------------------------------------------- the label


def _row_attack(row: Row) -> dict[str, Any]:
    """The attack a row trains against (Algorithm 1 / TRADES / Algorithm 2 / none) with every setting."""
    pgd = {"eps_255": row.eps_255, "step_255": row.step_255, "steps": row.steps, "restarts": PGD_RESTARTS,
           "bn_mode": row.attack_bn_mode}  # fmt: skip
    if row.training == "pgd":
        return {"training": "pgd", **pgd}
    if row.training == "trades":
        return {"training": "trades", "trades_beta": row.trades_beta, **pgd}
    if row.training == "fast":
        return {"training": "fast", "eps_255": row.eps_255, "fgsm_step_255": row.fast_step_255,
                "random_start": True, "atta_cache": True, "bn_mode": row.attack_bn_mode}  # fmt: skip
    return {"training": "clean"}


def attack_label(config: Config) -> dict[str, Any]:
    """ε and every attack setting: the evaluation's PGD and AutoAttack, and each row's training attack."""
    return {
        "eps_255": config.eps_255,
        "pgd_step_255": config.step_255,
        "pgd_steps": config.steps,
        "pgd_restarts": PGD_RESTARTS,
        "attack_bn_mode": config.attack_bn_mode,
        "test_images_attacked": config.test_images,
        "validation_images_attacked": config.validation_images,
        "autoattack": config.autoattack,
        "apgd_steps": config.apgd_steps,
        "autoattack_restarts": PGD_RESTARTS,
        "autoattack_images": config.autoattack_images,
        "training_attacks": {row.name: _row_attack(row) for row in config.resolved_rows()},
    }


def attack_words(config: Config) -> str:
    """The attack settings in one line, for captions: ε, PGD's steps, step and restarts, BN, AutoAttack."""
    trainings = sorted({row.training for row in config.rows})
    fast = sorted({row.fast_step_255 for row in config.resolved_rows() if row.training == "fast"})
    variant = "APGD-CE" if config.autoattack == "apgd-ce" else "AutoAttack (standard: APGD-CE, APGD-T, FAB-T, Square)"
    own = [
        f"{row.name} ε {row.eps_255:g}/255, PGD-{row.steps} step {row.step_255:g}/255"
        for row in config.resolved_rows()
        if (row.eps_255, row.step_255, row.steps) != (config.eps_255, config.step_255, config.steps)
    ]
    return (
        f"ε = {config.eps_255:g}/255 · PGD-{config.steps}, step {config.step_255:g}/255, {PGD_RESTARTS} random "
        f"start · attack BN {config.attack_bn_mode} · training attacks: {', '.join(trainings)}"
        + (f" (FGSM step {', '.join(f'{s:g}' for s in fast)}/255)" if fast else "")
        + f" · {variant}, {config.apgd_steps} steps, {config.autoattack_images} images"
        + (f" · rows with their own attack: {'; '.join(own)}" if own else "")
    )


def run_label(config: Config, outcome: Outcome, scale: str) -> dict[str, Any]:
    """The provenance of every output (:func:`rewire.reporting.results.run_label`) plus :func:`attack_label`."""
    device = outcome.extra.get("device", torch.device("cpu"))
    label = results.run_label(scale=scale, seeds=config.seeds, data_source=outcome.data_source, device=device)
    return {**label, "attacks": attack_label(config)}


# ------------------------------------------------------------------------------------------------ the tables


def per_run_table(outcome: Outcome) -> pd.DataFrame:
    """One line per run: the row's method and training, the weights that count, final and best-epoch accuracies."""
    from rewire.experiments.robust_binary.runs import weight_count

    keys = ("test_clean_top1", "test_pgd_top1", "best_epoch", "best_test_clean_top1", "best_test_pgd_top1",
            "images_per_second")  # fmt: skip
    lines = []
    for run in outcome.runs:
        row, popup = run.row, run.row.method == "edge_popup"
        lines.append({
            "row": row.name, "seed": run.spec.seed, "method": row.method, "training": row.training,
            "p": row.p if popup else None, "keep": row.keep if popup else None,  # the allocation's, pruned rows only
            "weight_init": row.weight_init, "last_bn": row.last_bn, "weights": weight_count(run.result.model),
            **{key: run.result.final.get(key) for key in keys},
        })  # fmt: skip
    return pd.DataFrame(lines)


def curves_table(outcome: Outcome) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"row": run.row.name, "seed": run.spec.seed, **record}
            for run in outcome.runs
            for record in run.result.records
        ]
    )


def robust_table(config: Config, per_run: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per row, the training attack, and the paper's nearest cell (Tables 9-11, 8)."""
    table = (
        per_run.groupby("row", sort=False)
        .agg(
            method=("method", "first"),
            training=("training", "first"),
            p=("p", "first"),
            keep=("keep", "first"),
            weights=("weights", "first"),
            clean_mean=("test_clean_top1", "mean"),
            clean_std=("test_clean_top1", "std"),
            pgd_mean=("test_pgd_top1", "mean"),
            pgd_std=("test_pgd_top1", "std"),
            best_pgd_mean=("best_test_pgd_top1", "mean"),
            images_per_s=("images_per_second", "mean"),
            runs=("seed", "count"),
        )  # fmt: skip
        .reset_index()
        .fillna({"clean_std": 0.0, "pgd_std": 0.0})
    )
    cells = {
        row.name: paper_cells(row, config.dataset, full_widths=tuple(config.widths)) for row in config.resolved_rows()
    }
    for key, column in (
        ("paper_clean_top1", "paper_clean"),
        ("paper_robust_top1", "paper_pgd"),
        ("paper_row", "paper_row"),
    ):
        table[column] = table.row.map(lambda row, key=key: cells[row][key])
    return table


def vanilla_table(config: Config, per_run: pd.DataFrame) -> pd.DataFrame:
    """The rows trained without an attack (ε = 0) beside Table 8 (or Table 11)."""
    vanilla = per_run[per_run.training == "clean"]
    table = (
        vanilla.groupby("row", sort=False)
        .agg(p=("p", "first"), weight_init=("weight_init", "first"), last_bn=("last_bn", "first"),
             clean_mean=("test_clean_top1", "mean"), clean_std=("test_clean_top1", "std"), runs=("seed", "count"))
        .reset_index()
        .fillna({"clean_std": 0.0})
    )  # fmt: skip
    table["paper_clean"] = [paper_cells(config.row(row), config.dataset, tuple(config.widths))["paper_clean_top1"]
                            for row in table.row]  # fmt: skip
    return table


# ---------------------------------------------------------------------------------------------- the writing


def _write_table(table: pd.DataFrame, out: Path, name: str, label: dict, title: str, config: Config) -> None:
    results.write_table(table, out, name, label, title=f"{title}\n\n{attack_words(config)}")


def _write_claims(config: Config, per_run: pd.DataFrame, out: Path, label: dict, scale: str) -> pd.DataFrame:
    title = f"Robust binary claims at the {scale} scale"
    found = robust_claims(per_run)
    if not found:
        pd.DataFrame(columns=["claim", "verdict"]).to_csv(out / "claims.csv", index=False)
        why = f"{len(config.seeds)} seed(s) in common; an interval needs at least 2"
        write_text(out / "claims.md", f"### {title}\n\nNot decided: {why}.\n\n{attack_words(config)}\n")
        return pd.DataFrame()
    table = claims_module.claims_frame(found)
    table.to_csv(out / "claims.csv", index=False)
    caption = f"{results.label_line(label)} · {attack_words(config)}"
    text = claims_module.claims_markdown(table, title=f"{title} ({len(config.seeds)} seeds)", caption=caption)
    write_text(out / "claims.md", text)
    return table


def _caption(label: dict, config: Config) -> str:
    return f"{plotting.caption(label)}\n{attack_words(config)}"


def _curves_figure(config: Config, per_run, curves, label, path: Path) -> bool:
    """Figure 4's quantity: robust and clean validation accuracy per epoch, per row of edge-popup, per keep."""
    meta = per_run.groupby("row", sort=False)[["keep", "p", "method", "training"]].first()
    popup = curves.join(meta, on="row")
    popup = popup[(popup.method == "edge_popup") & (popup.training != "clean")]
    if "val_pgd_top1" not in popup or not popup.val_pgd_top1.notna().any():
        return False
    sns.set_theme(style="whitegrid")
    long = popup.melt(id_vars=["row", "seed", "epoch", "keep", "p"], value_vars=["val_clean_top1", "val_pgd_top1"],
                      var_name="metric", value_name="top1").dropna(subset=["top1"])  # fmt: skip
    long["metric"] = long.metric.map({"val_clean_top1": "clean", "val_pgd_top1": f"PGD-{config.steps}"})
    long["pruning rate r"] = (1 - long.keep).round(3)
    grid = sns.relplot(data=long, x="epoch", y="top1", hue="row", row="metric", col="pruning rate r", kind="line",
                       marker="o", errorbar="sd", height=2.8, aspect=1.5, facet_kws={"sharey": False})  # fmt: skip
    grid.set_axis_labels("epoch", "validation top-1 (%)")
    grid.figure.suptitle("Learning curves per p and pruning rate (Figure 4's quantity)", y=1.03)
    grid.figure.text(0.5, -0.04, _caption(label, config), ha="center", fontsize=8, color="0.35")
    plotting.save_figure(grid.figure, path)
    return True


def _allocation_figure(allocation: pd.DataFrame, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 3.4))
    sns.lineplot(data=allocation, x="layer", y="fraction", hue="p", marker="o", ax=ax, palette="viridis")
    ax.set(
        yscale="log", xlabel="layer (stem → classifier)", ylabel="kept fraction", title="Adaptive allocation, keep 0.01"
    )
    fig.text(
        0.5, -0.04, "cResNet34, 37 prunable layers; rewire.sparse.allocation", ha="center", fontsize=8, color="0.35"
    )
    plotting.save_figure(fig, path)


def _mask_figures(model, alignment: pd.DataFrame, main_row: str, generator, label, config, out: Path) -> None:
    """Figure 3 (two consecutive convs and random masks of the same densities) and Figure 5 (one layer), on the
    block pair with the most empty channels."""
    layers = masks.layer_masks(model)
    shown = alignment.assign(empty=alignment.empty_out_layer1 + alignment.empty_in_layer2).sort_values("empty").iloc[-1]
    first, second = shown.layer1, shown.layer2
    random_pair = (masks.random_mask_like(layers[first], generator), masks.random_mask_like(layers[second], generator))
    figure = masks.plot_consecutive_masks(layers[first], layers[second], titles=(first, second),
                                          random_pair=random_pair, caption=_caption(label, config))  # fmt: skip
    plotting.save_figure(figure, out / "masks_consecutive.png")
    figure = masks.plot_layer_mask(layers[second], title=f"{main_row}: {second}", caption=_caption(label, config))
    plotting.save_figure(figure, out / "mask_layer.png")


def _main_run(config: Config, outcome: Outcome):
    """The first seed's run of the first row (the main row), or None when ``--only`` left it out."""
    main = config.rows[0]
    seed = config.row_seeds(main)[0]
    return next((run for run in outcome.runs if run.row.name == main.name and run.spec.seed == seed), None)


def report(config: Config, outcome: Outcome, out_dir, label: dict[str, Any], scale: str | None = None) -> dict:
    """Write the stage's outputs into ``out_dir`` (module docstring); return the headline metrics.

    ``label``: :func:`run_label` (its ``attacks`` entry is added here when missing)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    label = {**label, "attacks": label.get("attacks") or attack_label(config)}
    scale = scale or label.get("scale", "?")
    per_run, curves = per_run_table(outcome), curves_table(outcome)
    per_run.to_csv(out / "per_run.csv", index=False)
    curves.to_csv(out / "curves.csv", index=False)
    details: dict[str, Any] = {}
    robust = robust_table(config, per_run)
    _write_table(robust, out, "table_robust", label, f"Clean and PGD-{config.steps} test accuracy (%) per row", config)
    if (per_run.training == "clean").any():
        _write_table(vanilla_table(config, per_run), out, "table8_vanilla", label,
                     "Vanilla training: clean test accuracy (%) per row", config)  # fmt: skip
    else:
        for name in ("table8_vanilla.csv", "table8_vanilla.md"):
            results.write_not_computed(out, name, "no row trains without an attack (training: clean)")
    claims_table = _write_claims(config, per_run, out, label, scale)
    if not _curves_figure(config, per_run, curves, label, out / "curves.png"):
        results.write_not_computed(
            out, "curves.png", "no adversarially trained edge-popup row with a robust validation curve"
        )
    plt.close("all")

    allocation = evaluation.allocation_table()
    allocation.to_csv(out / "allocation.csv", index=False)
    _allocation_figure(allocation, out / "allocation.png")
    fractions = evaluation.kept_fraction_table(outcome.runs)
    if len(fractions):
        fractions.to_csv(out / "kept_fractions.csv", index=False)
        details["trained_vs_planned_kept_mismatches"] = int((fractions.kept != fractions.planned).sum())
    else:
        results.write_not_computed(out, "kept_fractions.csv", "no edge-popup row ran")
    _write_table(evaluation.appendix_checks(), out, "analysis", label, "The robust-binary appendix checked exactly",
                 config)  # fmt: skip
    details.update(_main_row_outputs(config, outcome, label, out))
    plt.close("all")

    headline, more = _metrics(config, per_run, claims_table)
    details = {**headline, **more, **details, "main_row": config.rows[0].name, "attacks": label["attacks"]}
    if "run_seconds" in outcome.extra:
        details["run_seconds"] = outcome.extra["run_seconds"]
    results.write_metrics(out / "metrics.json", headline, label)
    write_json(out / "details.json", details)
    return headline


def _main_row_outputs(config: Config, outcome: Outcome, label: dict, out: Path) -> dict[str, Any]:
    """Kernels, channel alignment, the mask figures and the attack cross-check on the main row's first seed."""
    main = _main_run(config, outcome)
    names = (
        "kernels.csv",
        "alignment.csv",
        "masks_consecutive.png",
        "mask_layer.png",
        "cross_check.csv",
        "cross_check.md",
    )
    if main is None:
        for name in names:
            results.write_not_computed(
                out, name, f"the main row {config.rows[0].name} was not in the selection (--only)"
            )
        return {}
    details: dict[str, Any] = {}
    model = main.result.model
    kernels = evaluation.kernel_counts(model)
    kernels.to_csv(out / "kernels.csv", index=False)
    if len(kernels):
        details["kernels_trained_over_random"] = float(kernels.trained.sum() / kernels.random_expected.sum())
    generator = torch.Generator().manual_seed(0)
    alignment = evaluation.alignment_table(model, generator)
    if len(alignment):
        alignment.to_csv(out / "alignment.csv", index=False)
        _mask_figures(model, alignment, main.row.name, generator, label, config, out)
        details["alignment_both_empty"] = int(alignment.both_empty.sum())
        details["alignment_expected_if_independent"] = float(alignment.expected_if_independent.sum())
        details["alignment_random_masks_both_empty"] = float(alignment.random_masks_both_empty.sum())
    else:
        for name in ("alignment.csv", "masks_consecutive.png", "mask_layer.png"):
            results.write_not_computed(out, name, f"the main row {main.row.name} has no sparse block convolutions")
    data, device = outcome.extra.get("data"), outcome.extra.get("device", torch.device("cpu"))
    if data is None:
        for name in ("cross_check.csv", "cross_check.md"):
            results.write_not_computed(out, name, "the outcome carries no test data to attack")
        return details
    cross = evaluation.cross_check(config, model, data, device)
    table = pd.DataFrame(
        [
            {"attack": "none (clean)", "top1": cross["clean"]},
            {"attack": f"PGD-{config.steps}, ours", "top1": cross["pgd_ours"]},
            {"attack": f"PGD-{config.steps}, torchattacks", "top1": cross["pgd_torchattacks"]},
            {"attack": cross["autoattack_name"], "top1": cross["autoattack"]},
        ]
    ).assign(images=cross["images"])
    title = f"Attacks on the first seed's {main.row.name} ({cross['images']} test images)"
    _write_table(table, out, "cross_check", label, title, config)
    details["pgd_ours_minus_torchattacks"] = cross["pgd_ours"] - cross["pgd_torchattacks"]
    details["apgd_ce_top1" if config.autoattack == "apgd-ce" else "autoattack_top1"] = cross["autoattack"]
    return details


def _metrics(config: Config, per_run: pd.DataFrame, claims_table: pd.DataFrame) -> tuple[dict, dict]:
    """(headline for metrics.json, the per-row means and claims for details.json)."""
    details: dict[str, Any] = {}
    for column, key in (("test_pgd_top1", "pgd_mean"), ("test_clean_top1", "clean_mean")):
        details.update({f"{row}_{key}": float(v) for row, v in per_run.groupby("row")[column].mean().items()})
    if {"ours_p01", "ours_pgd"} <= set(per_run.row):
        speeds = per_run.groupby("row").images_per_second.mean()
        details["fast_over_pgd_speed"] = float(speeds["ours_p01"] / speeds["ours_pgd"])
    planned = [c for c in CLAIMS if {c[0], c[1]} <= {row.name for row in config.rows}]
    verdicts = list(claims_table["verdict"]) if len(claims_table) else []
    held, reversed_ = verdicts.count(claims_module.VERDICTS[0]), verdicts.count("reversed")
    headline: dict[str, Any] = {
        "claims_held": held,
        "claims_reversed": reversed_,
        "claims_not_decided": len(planned) - held - reversed_,
    }
    if len(claims_table):
        details["claims"] = claims_table[["claim", "difference", "ci_low", "ci_high", "verdict"]].to_dict("records")
    main = config.rows[0].name
    if f"{main}_pgd_mean" in details:
        headline["top1"] = details[f"{main}_pgd_mean"]
    if f"{BASELINE_ROW}_pgd_mean" in details:
        headline["baseline_top1"] = details[f"{BASELINE_ROW}_pgd_mean"]
    return headline, details
