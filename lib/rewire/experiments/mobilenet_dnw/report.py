"""DNW Table 2's outputs from an :class:`~rewire.experiments.base.Outcome` (presentation only, not in any run's hash).

Writes every file the ``mobilenet_dnw`` stage of ``dvc.yaml`` declares, at every scale (a one-line "not
computed at this scale: <why>" where a scale lacks the runs): ``per_run.csv``, ``table2`` and ``table5``
(CSV + Markdown, beside the paper's numbers, :mod:`~rewire.experiments.mobilenet_dnw.paper`), ``claims``
(paired by seed, :mod:`rewire.reporting.claims`), ``table2.png``, ``live_nodes.csv`` + ``wiring.png`` (live
nodes per stage), ``table3_counts`` (DNW Table 3's counts at 224 px from the counter), ``compact_timing``
(:mod:`~rewire.experiments.mobilenet_dnw.timing`), ``metrics.json`` (headline numbers only: the claims'
verdict counts, ``top1`` = DNW's and ``baseline_top1`` = RG's mean test top-1), ``label.json`` and ``details.json``
(every number).

Every table and the label name the ``graph_variant`` (``paper`` or ``authors_code``). Table 2 reads the final
phase's runs (with ``final_on_all_images`` the candidates trained to choose ρ and λ are in ``per_run.csv`` and
``details.json`` only). ``top1_mean`` is the final epoch's; ``best_epoch_top1_mean`` (the best test epoch, as the
authors' code tracks it) is test-set selection, reported beside it and never used by a claim. A λ = 0 row is
called Anneal (no L1 term) and gets no paper number: the paper's L1 + Anneal row has the L1 term.

Each claim's verdict needs converged runs (issue 20, point 1): every reported run is judged by
:data:`CONVERGENCE` (:mod:`rewire.reporting.convergence`) on its per-epoch records -- training loss, and
validation top-1 where the run held a validation split, else test top-1 (the ``final_on_all_images`` runs hold
none out) -- and its final test top-1 is checked against chance (the dataset's classes, a margin of three binomial
standard deviations on the run's test images). The claims table shows each side's convergence; a side with a run
at chance or not converged makes the claim "not decided". ``claims_not_decided`` counts every verdict that is
neither "holds" nor "reversed". With one seed (smoke) there is no claim, and ``claims.md`` lists each run's
convergence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from rewire.data.sources import OFFICIAL_RELEASES
from rewire.experiments.base import Outcome
from rewire.experiments.mobilenet_dnw.config import Config
from rewire.experiments.mobilenet_dnw.diagnostics_figure import (
    diagnostics_summary,
    diagnostics_table,
    plot_diagnostics,
    write_diagnostics_csv,
)
from rewire.experiments.mobilenet_dnw.paper import PAPER_TABLE2, PAPER_TABLE5
from rewire.experiments.mobilenet_dnw.rows import Row
from rewire.io import write_json, write_text
from rewire.reporting import claims as claims_module
from rewire.reporting import plotting, results
from rewire.reporting.convergence import (
    DEFAULT_CHANCE_MARGIN_PTS,
    Convergence,
    ConvergenceTest,
    chance_margin,
    held_out_examples,
)

__all__ = [
    "report",
    "table2_frame",
    "table5_frame",
    "table2_claims",
    "claims_of",
    "run_convergence",
    "convergence_table",
    "CONVERGENCE",
    "HEADLINE",
    "FINETUNE_CLAIM_ALPHA",
]

# metrics.json (what `dvc metrics show` prints; the keys every stage shares): the claims' verdict counts, DNW's
# mean test top-1 as ``top1`` and the random graph's (the same k edges, fixed) as ``baseline_top1``
HEADLINE = {"top1": "dnw_top1_mean", "baseline_top1": "rg_top1_mean"}  # metrics.json key -> details.json key
# the fine-tune row Table 2's claim compares with DNW: α = 0.01, the paper's best fine-tune (89.7 %)
FINETUNE_CLAIM_ALPHA = 0.01
# the rows whose live nodes are drawn (the chosen ρ of targeted dropout is added)
LIVE_NODE_ROWS = ("rg", "dnw_no_update", "dnw", "lottery")
CIFAR_IMAGE_SIZE = 32  # the multiply-adds of the live-node profile are counted at CIFAR-10's 32 x 32 px
CONVERGENCE = ConvergenceTest()  # the stated test: its defaults (rewire.reporting.convergence)
RunKey = tuple[str, int]  # (row key, seed)


# ------------------------------------------------------------------------------------------ tables


def _paper_number(key: str) -> tuple[float, float]:
    """The paper's (mean, std) for a row key; none for the anneal without L1 (λ = 0), not the paper's row."""
    row = Row.parse(key)
    nan = (float("nan"),) * 2
    return PAPER_TABLE2.get(row.paper_key, nan) if row.has_l1_term else nan


def _paper_columns(table: pd.DataFrame) -> pd.DataFrame:
    table["paper_mean"] = [_paper_number(k)[0] for k in table.row]
    table["paper_std"] = [_paper_number(k)[1] for k in table.row]
    return table


def reported_runs(per_run: pd.DataFrame) -> pd.DataFrame:
    """The runs Table 2 reports: the ``final`` phase (all runs when there is no ``phase`` column)."""
    if "phase" not in per_run:
        return per_run
    return per_run[per_run.phase == "final"].reset_index(drop=True)


def table2_frame(per_run: pd.DataFrame) -> pd.DataFrame:
    """Mean and std of the final epoch's test top-1 per row (with runs, the best test epoch's mean beside it,
    validation top-1, the choice), beside the paper, in its order."""
    order = {key: i for i, key in enumerate(PAPER_TABLE2)}
    per_run = per_run.copy()
    if "best_epoch_test_top1" not in per_run:
        per_run["best_epoch_test_top1"] = float("nan")
    grouped = per_run.groupby(["row", "label"], sort=False)
    table = grouped.agg(
        top1_mean=("test_top1", "mean"),
        top1_std=("test_top1", "std"),
        best_epoch_top1_mean=("best_epoch_test_top1", "mean"),
        runs=("seed", "count"),
        val_top1_mean=("val_top1", "mean"),
        chosen_on_validation=("chosen_on_validation", "first"),
    ).reset_index()
    table["top1_std"] = table["top1_std"].fillna(0.0)
    table = _paper_columns(table)
    table["order"] = [order.get(Row.parse(k).paper_key, -1) for k in table.row]
    return table.sort_values(["order", "row"]).drop(columns="order").reset_index(drop=True)


def table5_frame(table: pd.DataFrame) -> pd.DataFrame:
    """Appendix Table 5: per ρ, unconstrained against regular targeted dropout, beside the paper."""
    tds = table[table.row.str.startswith("td")].copy()
    tds["variant"] = ["regular" if k.startswith("td_regular") else "unconstrained" for k in tds.row]
    tds["rho"] = [k.partition("-")[2] for k in tds.row]
    table5 = tds.pivot_table(index="rho", columns="variant", values=["top1_mean", "top1_std", "runs"], aggfunc="first")
    table5.columns = [f"{variant}_{stat}" for stat, variant in table5.columns]
    table5 = table5.reset_index()
    for variant, prefix in (("unconstrained", "td"), ("regular", "td_regular")):
        table5[f"{variant}_paper"] = [PAPER_TABLE5.get(f"{prefix}-{rho}", (float("nan"),))[0] for rho in table5.rho]
    return table5


# ------------------------------------------------------------------------------------------ claims


def _by_seed(per_run, key: str) -> dict[int, float]:
    rows = per_run[per_run.row == key]
    return dict(zip(rows.seed.astype(int), rows.test_top1.astype(float)))


def table2_claims(
    per_run,
    *,
    best_td: str,
    regular_td: str | None,
    finetune: str,
    l1_anneal: str,
    convergence: dict[RunKey, Convergence] | None = None,
) -> list:
    """DNW Table 2's claims, paired by seed (:mod:`rewire.reporting.claims`); those lacking 2 seeds are left out.

    ``per_run``: one row per run with ``row`` (a :attr:`Row.key`), ``seed`` and ``test_top1``. ``best_td``
    the TD row chosen on validation, ``regular_td`` its regular twin (Table 5), ``finetune`` the α = 0.01
    row, ``l1_anneal`` the chosen L1 + Anneal row. ``convergence`` (:func:`run_convergence`, by (row, seed))
    gives each side's runs, which gate the verdict; without it every side reads "not checked".
    """
    from rewire.reporting.claims import Claim

    specs = [
        ("dnw", "rg", "greater", "DNW beats the random graph of the same size", "Table 2"),
        ("rg", "mobilenet_v1", "greater", "the random graph beats dense MobileNetV1 x 0.25", "Table 2"),
        ("dnw", "dnw_no_update", "greater", "DNW beats the same top-k without the update rule", "Table 2"),
        ("dnw", best_td, "at_least", "DNW is at least as good as targeted dropout (best ρ)", "Table 2"),
        ("dnw", "lottery", "at_least", "DNW is at least as good as the one-shot lottery ticket", "Table 2"),
        (finetune, "dnw", "equivalent", "fine-tuning the pruned complete graph (α = 0.01) matches DNW", "Table 2"),
        ("dnw", l1_anneal, "greater", _anneal_words(l1_anneal), "Table 2"),
    ]
    if regular_td is not None:
        specs.append((best_td, regular_td, "at_least", "unconstrained targeted dropout >= regular", "Table 5"))
    labels = {key: Row.parse(key).label for key in set(per_run.row)}
    found = []
    for a, b, kind, words, source in specs:
        sides = _by_seed(per_run, a), _by_seed(per_run, b)
        if len(set(sides[0]) & set(sides[1])) >= 2:
            runs = [_side_runs(convergence, key, side) for key, side in ((a, sides[0]), (b, sides[1]))]
            found.append(
                Claim(
                    "DNW",
                    words,
                    labels.get(a, a),
                    sides[0],
                    labels.get(b, b),
                    sides[1],
                    kind=kind,
                    source=source,
                    a_runs=runs[0],
                    b_runs=runs[1],
                )
            )
    return found


def _side_runs(convergence: dict[RunKey, Convergence] | None, key: str, side: dict[int, float]):
    """One side's convergence by seed, or None (not checked) without ``convergence``; a run missing from it stops."""
    if convergence is None:
        return None
    missing = [seed for seed in side if (key, seed) not in convergence]
    if missing:
        raise ValueError(f"row {key!r}: no convergence result for seed(s) {missing}; judge every reported run")
    return {seed: convergence[(key, seed)] for seed in side}


def _anneal_words(key: str) -> str:
    """The L1 + Anneal claim, said of the anneal alone when λ = 0 was chosen (then it is not the paper's row)."""
    if key.startswith("l1_anneal-") and not Row.parse(key).has_l1_term:
        return "Anneal (λ = 0 chosen on validation: no L1 term, not the paper's L1 + Anneal) is below DNW"
    return "L1 + Anneal is below DNW"


def claims_of(
    per_run: pd.DataFrame, chosen: dict[str, str], convergence: dict[RunKey, Convergence] | None = None
) -> list:
    """Table 2's claims for these runs, with the validation choices of ρ and λ (``convergence``: see
    :func:`table2_claims`)."""
    td_choice = chosen.get("td")
    regular_twin = f"td_regular-{td_choice.partition('-')[2]}" if td_choice else None
    return table2_claims(
        per_run,
        best_td=td_choice or "td",
        regular_td=regular_twin if regular_twin in set(per_run.row) else None,
        finetune=Row("finetune", alpha=FINETUNE_CLAIM_ALPHA).key,
        l1_anneal=chosen.get("l1_anneal", "l1_anneal"),
        convergence=convergence,
    )


def _num_classes(config: Config, outcome: Outcome) -> int:
    """The classes of the data the runs were tested on (the outcome's training split), else of ``config.dataset``."""
    data = outcome.extra.get("data")
    return len(data.classes) if data is not None else len(OFFICIAL_RELEASES[config.dataset]["classes"])


def run_convergence(config: Config, outcome: Outcome, test: ConvergenceTest = CONVERGENCE) -> dict[RunKey, Convergence]:
    """Each reported run's convergence by ``test`` on its per-epoch records (``outcome.extra["results"]``), with the
    chance check of its final test top-1; the margin is :func:`~rewire.reporting.convergence.chance_margin` of the
    run's test images (its record's ``config.data.test_examples``), else :data:`DEFAULT_CHANCE_MARGIN_PTS`."""
    classes = _num_classes(config, outcome)
    found = {}
    for (key, seed), result in outcome.extra.get("results", {}).items():
        data = result.record.get("config", {}).get("data", {})
        test_examples = data.get("test_examples")
        margin = chance_margin(classes, int(test_examples)) if test_examples else DEFAULT_CHANCE_MARGIN_PTS
        found[(key, seed)] = test.judge(
            result.records, num_classes=classes, chance_margin_pts=margin, accuracy_examples=held_out_examples(data)
        )
    return found


def convergence_table(convergence: dict[RunKey, Convergence]) -> pd.DataFrame:
    """One row per run: row, seed, converged, at chance, the reason and the measured numbers."""
    rows = [{"row": key, "seed": seed, **result.as_dict()} for (key, seed), result in convergence.items()]
    return pd.DataFrame(rows).drop(columns="test", errors="ignore")


def _convergence_lines(convergence: dict[RunKey, Convergence]) -> str:
    """Each run's convergence as Markdown (the claims page of a scale with too few seeds for a claim)."""
    lines = [f"Convergence of each run (a verdict needs converged runs): {CONVERGENCE.describe()}.", "",
             "| row | seed | converged | at chance | reason |", "|:--|--:|:--|:--|:--|"]  # fmt: skip
    for (key, seed), result in convergence.items():
        chance = "not checked" if result.at_chance is None else ("yes" if result.at_chance else "no")
        converged = "yes" if result.converged else "no"
        lines.append(f"| {key} | {seed} | {converged} | {chance} | {claims_module.markdown_cell(result.reason)} |")
    return "\n".join(lines) + "\n"


def _write_claims(out: Path, found: list, label: dict[str, Any], convergence: dict[RunKey, Convergence]):
    scale, seeds = label["scale"], label["seeds"]
    if found:
        table = claims_module.claims_frame(found)
        table.to_csv(out / "claims.csv", index=False)
        text = claims_module.claims_markdown(
            table,
            title=f"DNW Table 2 claims at the {scale} scale ({len(seeds)} seeds, final epoch, "
            f"graph_variant {label.get('graph_variant', 'paper')})",
            caption=results.label_line(label),
        )
    else:  # one seed (smoke) decides nothing: say so instead of a table
        table = pd.DataFrame()
        pd.DataFrame(columns=["claim", "verdict"]).to_csv(out / "claims.csv", index=False)
        text = (
            f"### DNW Table 2 claims at the {scale} scale\n\n"
            f"Not decided: {len(seeds)} seed(s); an interval needs at least 2.\n"
        )
        text += "\n" + _convergence_lines(convergence) if convergence else ""
    write_text(out / "claims.md", text)
    return table


# ------------------------------------------------------------------------------------------ figures


def _table2_figure(table: pd.DataFrame, per_run: pd.DataFrame, label: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid")
    shown = table.row.tolist()
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.42 * len(shown) + 1.6), sharey=True)
    sns.stripplot(data=per_run, y="label", x="test_top1", order=table.label.tolist(), ax=axes[0], color="0.4", size=5)
    axes[0].errorbar(table.top1_mean, range(len(table)), xerr=table.top1_std, fmt="D", color="C0", label="mean ± std")
    axes[0].set(xlabel="test top-1 (%)", ylabel="", title=f"this run ({label['scale']} scale)")
    axes[0].legend(loc="lower right", fontsize=8)
    paper = table.dropna(subset=["paper_mean"])
    axes[1].errorbar(paper.paper_mean, [shown.index(k) for k in paper.row], xerr=paper.paper_std, fmt="s", color="C3")
    axes[1].set(xlabel="test top-1 (%)", title="paper (160 epochs, 5 runs)")
    fig.suptitle("DNW Table 2: finding the k edges of MobileNetV1-DNW x 0.225 on CIFAR-10", y=1.0)
    fig.text(0.5, -0.02, plotting.caption(label), ha="center", fontsize=8, color="0.35")
    fig.tight_layout()
    plotting.save_figure(fig, path)
    plt.close(fig)


def _live_nodes(outcome: Outcome, first_seed: int) -> pd.DataFrame:
    """Live nodes per stage of the first seed's graph models (``rewire.methods.dnw_profile``)."""
    from rewire.methods.dnw_profile import profile_graph

    live = []
    keys = (*LIVE_NODE_ROWS[:3], outcome.extra.get("chosen", {}).get("td"), LIVE_NODE_ROWS[3])
    for key in keys:
        result = outcome.extra.get("results", {}).get((key, first_seed))
        if result is None:
            continue
        profile = profile_graph(result.model, image_size=CIFAR_IMAGE_SIZE)
        for index, stage in enumerate(profile.stages):
            live.append(
                {"row": key, "stage": index, "live_fraction": stage.live_nodes / stage.nodes, "macs": profile.macs}
            )
    return pd.DataFrame(live, columns=["row", "stage", "live_fraction", "macs"])


def _wiring_figure(live: pd.DataFrame, label: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt
    import seaborn as sns

    grid = sns.catplot(data=live, x="stage", y="live_fraction", hue="row", kind="bar", height=3.2, aspect=2.0)
    grid.set_axis_labels("graph stage (resolution 32, 16, 8, 4, 2 px)", "live nodes (share)")
    grid.figure.suptitle("Live nodes per stage (first seed)", y=1.03)
    grid.figure.text(0.5, -0.04, plotting.caption(label), ha="center", fontsize=8, color="0.35")
    plotting.save_figure(grid.figure, path)
    plt.close(grid.figure)


# ------------------------------------------------------------------------------------------ the stage


def report(config: Config, outcome: Outcome, out_dir, label: dict[str, Any]) -> dict[str, float]:
    """Write every output of the stage into ``out_dir``; return the headline metrics (``metrics.json``)."""
    import matplotlib

    matplotlib.use("Agg")
    from rewire.experiments.imagenet.dnw import table3_counts
    from rewire.experiments.mobilenet_dnw.timing import compact_timing

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    variant = config.graph_variant
    label = {**label, "graph_variant": variant, "final_on_all_images": config.final_on_all_images}
    all_runs = pd.DataFrame(outcome.runs)
    all_runs.insert(0, "graph_variant", variant)
    all_runs.to_csv(out / "per_run.csv", index=False)
    per_run = reported_runs(all_runs)
    chosen = dict(outcome.extra.get("chosen", {}))
    table = table2_frame(per_run)
    main_rows = table[~table.row.str.startswith("td_regular")]
    title = (
        f"DNW Table 2 (graph_variant {variant}): CIFAR-10 test top-1 (%) at the final epoch, MobileNetV1-DNW x 0.225 "
        f"found in other ways; best_epoch_top1_mean = best test epoch (the authors' best_val): test-set selection, "
        f"beside, never used for claims"
    )
    results.write_table(main_rows, out, "table2", label, title=title)
    if table.row.str.startswith("td").any():
        title = (
            f"DNW Appendix Table 5 (graph_variant {variant}): unconstrained vs regular targeted dropout, test top-1 (%)"
        )
        results.write_table(table5_frame(table), out, "table5", label, title=title)
    else:
        results.write_not_computed(out, "table5", "no targeted-dropout row ran")
    convergence = run_convergence(config, outcome)  # empty when the outcome holds no run records (hand-made)
    claims_table = _write_claims(out, claims_of(per_run, chosen, convergence or None), label, convergence)
    _table2_figure(table, per_run, label, out / "table2.png")

    first = config.seeds[0]
    live = _live_nodes(outcome, first)
    live.to_csv(out / "live_nodes.csv", index=False)
    if live.empty:
        results.write_not_computed(out, "wiring.png", "no graph row ran on the first seed")
    else:
        _wiring_figure(live, label, out / "wiring.png")

    # The graph diagnostics of every DNW-family and RG run (rewire.methods.dnw_diagnostics; issue 20, point 3)
    diagnosed = diagnostics_table(outcome)
    write_diagnostics_csv(diagnosed, out / "diagnostics.csv")
    pd.DataFrame(diagnostics_summary(diagnosed), columns=None).to_csv(out / "diagnostics_summary.csv", index=False)
    if diagnosed:
        title = f"MobileNetV1-DNW: DNW against RG ({label.get('scale', '?')} scale)"
        plot_diagnostics(diagnosed, out / "diagnostics.png", title=title)
    else:
        results.write_not_computed(out, "diagnostics.png", "no DNW-family or RG run recorded graph diagnostics")

    counts = pd.DataFrame([count.as_dict() for count in table3_counts()])
    title = "DNW Table 3: parameters and multiply-adds at 224 px, counter vs paper"
    results.write_table(counts, out, "table3_counts", label, title=title)

    details: dict[str, Any] = {
        "graph_variant": variant,
        "chosen_td": chosen.get("td"),
        "chosen_l1_anneal": chosen.get("l1_anneal"),
        "splits": outcome.extra.get("splits"),
        "run_seconds": outcome.extra.get("seconds"),
    }
    if "phase" in all_runs and (all_runs.phase == "selection").any():
        picked = all_runs[all_runs.phase == "selection"]
        details["selection_val_top1"] = dict(zip(picked.row, picked.val_top1.astype(float)))
    dnw = outcome.extra.get("results", {}).get(("dnw", first))
    if dnw is not None:
        timing, difference = compact_timing(
            dnw.model, outcome.extra["data"], device=outcome.extra["device"], batches=config.timing_batches
        )
        title = "Inference of the trained DNW (first seed): masked vs compact"
        results.write_table(timing, out, "compact_timing", label, title=title)
        details["compact_speedup"] = float(timing.set_index("model").loc["compact", "ratio_to_masked"])
        details["compact_max_abs_difference"] = difference
    else:
        results.write_not_computed(out, "compact_timing", "the dnw row did not run on the first seed")

    means = {f"{key}_top1_mean": float(v) for key, v in per_run.groupby("row").test_top1.mean().items()}
    if per_run.get("best_epoch_test_top1") is not None:
        best = per_run.groupby("row").best_epoch_test_top1.mean().dropna()
        means |= {f"{key}_best_epoch_top1_mean": float(v) for key, v in best.items()}
    verdicts = claims_table["verdict"].tolist() if len(claims_table) else []
    held, reversed_ = verdicts.count(claims_module.VERDICTS[0]), verdicts.count(claims_module.VERDICTS[1])
    metrics = {  # not decided: every other verdict (inconclusive, under-trained, at chance)
        "claims_held": held,
        "claims_reversed": reversed_,
        "claims_not_decided": len(verdicts) - held - reversed_,
        **{name: means[source] for name, source in HEADLINE.items() if source in means},
    }
    details.update(means)
    if len(claims_table):
        columns = ["claim", "difference", "ci_low", "ci_high", "verdict", "interval_verdict"]
        details["claims"] = claims_table[[*columns, "a_convergence", "b_convergence"]].to_dict("records")
    details["convergence_test"] = CONVERGENCE.describe()
    details["convergence"] = convergence_table(convergence).to_dict("records") if convergence else []
    results.write_metrics(out / "metrics.json", metrics, label)
    write_json(out / "details.json", {**details, **metrics, "label": label})  # every number, the headline too
    return metrics
