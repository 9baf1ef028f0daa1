"""The robust-binary outputs from an :class:`~rewire.experiments.base.Outcome` (presentation; not in any run's hash).

Writes every file the ``robust_binary`` stage of ``dvc.yaml`` declares, at every scale (a one-line "not computed at
this scale: <why>" where a scale or ``--only`` leaves one out): ``per_run.csv``, ``curves.csv`` and ``curves.png``
(Figure 4's quantity), ``table_robust`` (clean, PGD and AutoAttack accuracy per row of the selected and the final
model, the paper's cells beside, each naming its table and attack: Tables 9-11),
``table8_vanilla`` (Table 8), ``claims``, ``allocation.csv/.png``, ``kept_fractions.csv``, ``analysis`` (the
appendix checked exactly), ``kernels.csv`` (A.4 on a trained mask), ``alignment.csv`` (Section 4.3),
``masks_consecutive.png`` (Figure 3), ``mask_layer.png`` (Figure 5), ``cross_check`` (our PGD against
torchattacks', AutoAttack), ``metrics.json`` (headline numbers only), ``details.json`` and ``label.json``.

**Which model.** :data:`REPORTED_MODEL`: the paper scale's claims, headline and cross-check read the model chosen on
robust validation (validated every epoch there, as the authors); smoke and cpu read the final epoch, as their
committed results did; every table shows both. **AutoAttack**: ``autoattack: standard`` (the paper scale) attacks
every adversarially trained run's selected model (cached per run); ``apgd-ce`` (smoke, cpu) the main row's first
seed only (``cross_check``). The paper's robust cells are AutoAttack numbers: they stand beside ours only.

Every label names ε and every attack setting (PGD steps, step, restarts, the attack's BN mode, each row's training
attack, the AutoAttack variant and its steps): :func:`attack_label`, written into ``label.json`` and every caption.

**A verdict needs converged runs** (issue 20, point 1; :mod:`~rewire.experiments.robust_binary.claims`): each run's
training loss and the validation counterpart of the claim's metric (``val_pgd_top1`` for a PGD claim), and the
reported model's clean test top-1 against chance (a PGD accuracy near 0 is the attack working, not chance). A side
not converged or at chance makes the claim "not decided"; the claims table shows each side's convergence,
``claims.md`` each run's, and ``details.json`` both with the interval's own verdict.
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
from rewire.experiments.robust_binary.claims import (
    CLAIMS,
    CONVERGENCE,
    FAST_MARGIN,
    convergence_markdown,
    convergence_records,
    robust_claims,
    run_convergence,
)
from rewire.experiments.robust_binary.claims import record_key as _key
from rewire.experiments.robust_binary.config import Config, Row
from rewire.experiments.robust_binary.paper import reference_cells
from rewire.io import write_json, write_text
from rewire.reporting import claims as claims_module
from rewire.reporting import plotting, results

__all__ = [
    "REPORTED_MODEL",
    "reported_model",
    "FAST_MARGIN",
    "CLAIMS",
    "HEADLINE",
    "PGD_RESTARTS",
    "robust_claims",
    "run_convergence",
    "CONVERGENCE",
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
# Which model the claims, the headline and the cross-check read, per scale: the paper scale reads the epoch chosen on
# robust validation, validated every epoch (the authors' protocol, Appendix D.1), with the final epoch beside it;
# smoke and cpu read the final epoch, as their committed results did (a few epochs of cosine decay), the selected
# one beside it. Every table shows both.
REPORTED_MODEL = {"paper": "selected"}


def reported_model(scale: str | None) -> str:
    """ "selected" (the model chosen on robust validation) or "final" (the last epoch): what ``scale`` reports."""
    return REPORTED_MODEL.get(scale or "", "final")


# metrics.json (what `dvc metrics show` prints): the verdict counts and the main row's accuracies
# the keys every stage shares (tools/headline_metrics.py): top1 = the main row's PGD-10 top-1, baseline_top1 = dense AT's
HEADLINE = ("claims_held", "claims_reversed", "claims_not_decided", "top1", "baseline_top1")
BASELINE_ROW = "dense_at"  # the full-precision adversarially trained network (Table 9's FP AT)


# ------------------------------------------------------------------------------------------------- the label


def _row_attack(row: Row) -> dict[str, Any]:
    """The attack a row trains against (Algorithm 1 / TRADES / Algorithm 2 / none) with every setting."""
    pgd = {"eps_255": row.eps_255, "step_255": row.step_255, "steps": row.steps, "restarts": PGD_RESTARTS,
           "bn_mode": row.training_bn_mode}  # fmt: skip
    if row.training == "pgd":
        return {"training": "pgd", "worst_iterate": row.worst_iterate, **pgd}
    if row.training == "trades":
        return {"training": "trades", "trades_beta": row.trades_beta, **pgd, "bn_mode": row.attack_bn_mode}
    if row.training == "fast":
        return {"training": "fast", "eps_255": row.eps_255, "fgsm_step_255": row.fast_step_255,
                "random_start": True, "atta_cache": True, "bn_mode": row.training_bn_mode,
                "crop_offsets": row.atta_offsets}  # fmt: skip
    return {"training": "clean"}


def attack_label(config: Config) -> dict[str, Any]:
    """ε and every attack setting: the evaluation's PGD and AutoAttack, and each row's training attack."""
    return {
        **config.protocol_label(),
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

    keys = ("test_clean_top1", "test_pgd_top1", "best_epoch", "selected_on", "best_test_clean_top1",
            "best_test_pgd_top1", "images_per_second")  # fmt: skip
    lines = []
    for run in outcome.runs:
        row, popup = run.row, run.row.method == "edge_popup"
        lines.append({
            "row": row.name, "seed": run.spec.seed, "method": row.method, "training": row.training,
            "dataset": row.dataset, "attack_protocol": row.attack_protocol, "p": row.p if popup else None, "keep": row.keep if popup else None,  # the allocation's, pruned rows only
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
    """Per row, mean and std over seeds of every number with the model and the attack that produced it: clean and
    PGD of the selected model (``*_selected_*``: the epoch chosen on validation) and of the final one
    (``*_final_*``), AutoAttack where it ran (``autoattack_mean`` on ``autoattack_model``); then the paper's cells
    (:func:`~rewire.experiments.robust_binary.paper.reference_cells`): ``paper_autoattack`` (Table 9, an AutoAttack
    number: beside ``autoattack_mean`` only), ``paper_clean`` (Table 10, or 8 / 11 for ε = 0), ``paper_cells``
    naming table, line, column and attack, and ``paper_none_why`` where a cell is absent."""
    pgd = f"pgd{config.steps}"
    columns = {"method": ("method", "first"), "training": ("training", "first"), "p": ("p", "first"),
               "keep": ("keep", "first"), "weights": ("weights", "first"), "runs": ("seed", "count"),
               "best_epoch": ("best_epoch", "mean")}  # fmt: skip
    for model in ("selected", "final"):
        for metric, name in (("test_clean_top1", "clean"), ("test_pgd_top1", pgd)):
            columns[f"{name}_{model}_mean"] = (_key(metric, model), "mean")
            columns[f"{name}_{model}_std"] = (_key(metric, model), "std")
    if "autoattack_top1" in per_run and per_run.autoattack_top1.notna().any():
        columns.update(autoattack_mean=("autoattack_top1", "mean"), autoattack_std=("autoattack_top1", "std"),
                       autoattack_model=("autoattack_model", "first"))  # fmt: skip
    columns["images_per_s"] = ("images_per_second", "mean")
    numbers = [source for source, how in columns.values() if how != "first" and source != "seed"]
    frame = per_run.assign(**{key: pd.to_numeric(per_run.get(key), errors="coerce") for key in numbers})
    table = frame.groupby("row", sort=False).agg(**columns).reset_index()
    stds = [c for c in table.columns if c.endswith("_std")]
    table[stds] = table[stds].fillna(0.0)
    cells = {row.name: reference_cells(row, config) for row in config.resolved_rows()}
    nan = float("nan")
    table["paper_autoattack"] = [cells[r].robust.value if cells[r].robust else nan for r in table.row]
    table["paper_clean"] = [cells[r].clean.value if cells[r].clean else nan for r in table.row]
    table["paper_cells"] = [cells[r].label for r in table.row]
    table["paper_none_why"] = [cells[r].why for r in table.row]
    return table


def robust_table_title(config: Config, scale: str, autoattack_ran: bool) -> str:
    """The robust table's title: which model and attack each column is, what the claims read, the paper's cells."""
    from rewire.experiments.robust_binary.evaluation import autoattack_name

    stand_in = any(reference_cells(row, config).stand_in for row in config.resolved_rows())
    aa = (f"`autoattack_mean`: {autoattack_name(config)} on every adversarially trained run's selected model, "
          f"{config.autoattack_images} test images" if autoattack_ran else
          f"AutoAttack is not run per row at this scale ({autoattack_name(config)} on the main row's first seed: "
          "cross_check)")  # fmt: skip
    return (
        f"Clean, PGD-{config.steps} and AutoAttack test accuracy (%) per row\n\n"
        f"`selected`: the epoch chosen on robust validation (clean for ε = 0 rows), every {config.eval_every} "
        f"epoch(s); `final`: the last epoch. The claims and the headline read the **{reported_model(scale)}** model at "
        f"the {scale} scale. {aa}. `paper_autoattack` is Table 9's AutoAttack number (the paper's selected model): "
        f"compare it with `autoattack_mean` only; the appendix prints no PGD number. `paper_clean`: Table 10 "
        "(adversarially trained), Table 8 or 11 (ε = 0)."
        + (
            " The paper's cells are its RN34 at r = 0.99: at this scale a reference, not the same setting."
            if stand_in
            else ""
        )
    )


def vanilla_table(config: Config, per_run: pd.DataFrame) -> pd.DataFrame:
    """The rows trained without an attack (ε = 0), clean accuracy of the selected (best clean validation) and the
    final model, beside Table 8 (or Table 11)."""
    vanilla = per_run[per_run.training == "clean"]
    vanilla = vanilla.assign(
        **{k: pd.to_numeric(vanilla[k], errors="coerce") for k in ("test_clean_top1", "best_test_clean_top1")}
    )
    table = (
        vanilla.groupby("row", sort=False)
        .agg(p=("p", "first"), weight_init=("weight_init", "first"), last_bn=("last_bn", "first"),
             clean_selected_mean=("best_test_clean_top1", "mean"), clean_selected_std=("best_test_clean_top1", "std"),
             clean_final_mean=("test_clean_top1", "mean"), clean_final_std=("test_clean_top1", "std"),
             runs=("seed", "count"))
        .reset_index()
        .fillna({"clean_selected_std": 0.0, "clean_final_std": 0.0})
    )  # fmt: skip
    cells = [reference_cells(config.row(row), config) for row in table.row]
    table["paper_clean"] = [cell.clean.value if cell.clean else float("nan") for cell in cells]
    table["paper_cells"] = [cell.label for cell in cells]
    table["paper_none_why"] = [cell.why for cell in cells]
    return table


# ---------------------------------------------------------------------------------------------- the writing


def _write_table(table: pd.DataFrame, out: Path, name: str, label: dict, title: str, config: Config) -> None:
    results.write_table(table, out, name, label, title=f"{title}\n\n{attack_words(config)}")


def _write_claims(config: Config, per_run: pd.DataFrame, out: Path, label: dict, scale: str, reported: str,
                  convergence: dict):  # fmt: skip
    title = f"Robust binary claims at the {scale} scale, read on the {reported} model (PGD-{config.steps})"
    found = robust_claims(per_run, reported, convergence)
    runs = f"\n{convergence_markdown(convergence)}" if convergence else ""
    if not found:
        pd.DataFrame(columns=["claim", "verdict"]).to_csv(out / "claims.csv", index=False)
        why = f"{len(config.seeds)} seed(s) in common; an interval needs at least 2"
        write_text(out / "claims.md", f"### {title}\n\nNot decided: {why}.\n\n{attack_words(config)}\n{runs}")
        return pd.DataFrame()
    table = claims_module.claims_frame(found)
    table.to_csv(out / "claims.csv", index=False)
    caption = f"{results.label_line(label)} · {attack_words(config)}"
    text = claims_module.claims_markdown(table, title=f"{title} ({len(config.seeds)} seeds)", caption=caption)
    write_text(out / "claims.md", text + runs)
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
    reported = reported_model(scale)
    per_run, curves = per_run_table(outcome), curves_table(outcome)
    autoattack = _autoattack_per_run(config, outcome)
    if autoattack is not None:
        per_run = per_run.merge(autoattack.rename(columns={"model": "autoattack_model"})[
            ["row", "seed", "autoattack_model", "autoattack_top1"]], on=["row", "seed"], how="left")  # fmt: skip
    per_run.to_csv(out / "per_run.csv", index=False)
    curves.to_csv(out / "curves.csv", index=False)
    details: dict[str, Any] = {"reported_model": reported}
    robust = robust_table(config, per_run)
    _write_table(robust, out, "table_robust", label, robust_table_title(config, scale, autoattack is not None), config)
    if (per_run.training == "clean").any():
        _write_table(vanilla_table(config, per_run), out, "table8_vanilla", label,
                     "Vanilla training: clean test accuracy (%) per row, the selected (best clean validation) and "
                     "the final model", config)  # fmt: skip
    else:
        for name in ("table8_vanilla.csv", "table8_vanilla.md"):
            results.write_not_computed(out, name, "no row trains without an attack (training: clean)")
    convergence = run_convergence(config, outcome, reported)
    claims_table = _write_claims(config, per_run, out, label, scale, reported, convergence)
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
    details.update(_main_row_outputs(config, outcome, label, out, reported, autoattack))
    plt.close("all")

    headline, more = _metrics(config, per_run, claims_table, reported)
    details["convergence_test"] = CONVERGENCE.describe()
    details["convergence"] = convergence_records(convergence)
    details = {**headline, **more, **details, "main_row": config.rows[0].name, "attacks": label["attacks"]}
    if "run_seconds" in outcome.extra:
        details["run_seconds"] = outcome.extra["run_seconds"]
    results.write_metrics(out / "metrics.json", headline, label)
    write_json(out / "details.json", details)
    return headline


def _autoattack_per_run(config: Config, outcome: Outcome) -> pd.DataFrame | None:
    """The paper's protocol (``autoattack: standard``, the paper scale): AutoAttack on every adversarially trained
    run's selected model (:func:`evaluation.autoattack_per_run`). ``apgd-ce`` (smoke, cpu): None, APGD-CE runs on
    the main row's first seed only (the cross-check)."""
    data = outcome.extra.get("data")
    if config.autoattack != "standard" or data is None:
        return None
    device = outcome.extra.get("device", torch.device("cpu"))
    return evaluation.autoattack_per_run(config, outcome.runs, data, device, "selected")


def _main_row_outputs(
    config: Config,
    outcome: Outcome,
    label: dict,
    out: Path,
    reported: str = "final",
    autoattack: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Kernels, channel alignment, the mask figures and the attack cross-check on the main row's first seed, its
    ``reported`` model (the selected or the final epoch's)."""
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
    model, attacked = evaluation.model_of(main.result, reported)
    details: dict[str, Any] = {"main_row_model": attacked}
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
    known = None
    if autoattack is not None:
        mine = autoattack[(autoattack.row == main.row.name) & (autoattack.seed == main.spec.seed)]
        known = float(mine.autoattack_top1.iloc[0]) if len(mine) and mine.model.iloc[0] == attacked else None
    cross = evaluation.cross_check(config, model, data, device, autoattack=known)
    table = pd.DataFrame(
        [
            {"attack": "none (clean)", "top1": cross["clean"]},
            {"attack": f"PGD-{config.steps}, ours", "top1": cross["pgd_ours"]},
            {"attack": f"PGD-{config.steps}, torchattacks", "top1": cross["pgd_torchattacks"]},
            {"attack": cross["autoattack_name"], "top1": cross["autoattack"]},
        ]
    ).assign(images=cross["images"], model=attacked)
    title = f"Attacks on the first seed's {main.row.name}, its {attacked} model ({cross['images']} test images)"
    _write_table(table, out, "cross_check", label, title, config)
    details["pgd_ours_minus_torchattacks"] = cross["pgd_ours"] - cross["pgd_torchattacks"]
    details["apgd_ce_top1" if config.autoattack == "apgd-ce" else "autoattack_top1"] = cross["autoattack"]
    return details


def _metrics(config: Config, per_run: pd.DataFrame, claims_table: pd.DataFrame, reported: str = "final"):
    """(headline for metrics.json, the per-row means and claims for details.json). ``{row}_pgd_mean`` and
    ``{row}_clean_mean`` are the ``reported`` model's; ``{row}_pgd_selected_mean`` etc. name theirs."""
    details: dict[str, Any] = {}
    for model in ("selected", "final"):
        for metric, key in (("test_pgd_top1", "pgd"), ("test_clean_top1", "clean")):
            values = pd.to_numeric(per_run[_key(metric, model)], errors="coerce").groupby(per_run.row).mean()
            details.update({f"{row}_{key}_{model}_mean": float(v) for row, v in values.items()})
            if model == reported:
                details.update({f"{row}_{key}_mean": float(v) for row, v in values.items()})
    if "autoattack_top1" in per_run:
        values = per_run.groupby("row").autoattack_top1.mean().dropna()
        details.update({f"{row}_autoattack_selected_mean": float(v) for row, v in values.items()})
    if {"ours_p01", "ours_pgd"} <= set(per_run.row):
        speeds = per_run.groupby("row").images_per_second.mean()
        details["fast_over_pgd_speed"] = float(speeds["ours_p01"] / speeds["ours_pgd"])
    planned = [c for c in CLAIMS if {c[0], c[1]} <= {row.name for row in config.rows}]
    verdicts = list(claims_table["verdict"]) if len(claims_table) else []
    held, reversed_ = verdicts.count(claims_module.VERDICTS[0]), verdicts.count(claims_module.VERDICTS[1])
    headline: dict[str, Any] = {
        "claims_held": held,
        "claims_reversed": reversed_,
        "claims_not_decided": len(planned) - held - reversed_,
    }
    if len(claims_table):  # not decided: every verdict but holds and reversed (inconclusive, under-trained, at chance)
        columns = ["claim", "difference", "ci_low", "ci_high", "verdict", "interval_verdict"]
        details["claims"] = claims_table[[*columns, "a_convergence", "b_convergence"]].to_dict("records")
    main = config.rows[0].name
    if f"{main}_pgd_mean" in details:
        headline["top1"] = details[f"{main}_pgd_mean"]
    if f"{BASELINE_ROW}_pgd_mean" in details:
        headline["baseline_top1"] = details[f"{BASELINE_ROW}_pgd_mean"]
    return headline, details
