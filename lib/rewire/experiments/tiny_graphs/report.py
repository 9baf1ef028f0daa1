"""DNW Table 1's outputs from an :class:`~rewire.experiments.base.Outcome` (presentation only).

Writes every file the ``tiny_graphs`` stage of ``dvc.yaml`` declares, at every scale: ``table1.csv/.md``
(beside the paper's numbers, ``paper.yaml``), ``claims.csv/.md`` (DNW beats RG in each setting, paired
by seed; one line saying why when a scale has too few seeds), ``curves.csv``, the plot data
``plot_accuracy.csv`` (evaluated epochs only, one row per series and epoch, no empty cells), the figures (``accuracy.png``,
``swaps.png``, ``adjacency.png``, ``swap_claim.png`` via :mod:`.figures`), the Section 2.2 swap claim
(``swap_claim.csv``), ``metrics.json`` (headline numbers only), ``label.json`` and ``details.json``.

Each claim's verdict needs converged runs (issue 20, point 1): every run is judged by
:data:`CONVERGENCE` (:mod:`rewire.reporting.convergence`) on its per-epoch records -- training loss, and
test top-1 since these runs hold out no validation split -- and checked against chance (10 or 100
classes, a margin of three binomial standard deviations on the run's test images). The claims table shows
each side's convergence; a side with a run at chance or not converged makes the claim "not decided".
With one seed (smoke) there is no claim, and ``claims.md`` lists each side's convergence under its line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from rewire.data.sources import OFFICIAL_RELEASES
from rewire.experiments.base import Outcome
from rewire.experiments.tiny_graphs import figures, paper, swap_claim
from rewire.experiments.tiny_graphs.config import Config
from rewire.io import write_json, write_text
from rewire.models.tiny_graphs import GraphConfig, build_graph, count_parameters
from rewire.reporting import claims, results
from rewire.reporting.convergence import (
    DEFAULT_CHANCE_MARGIN_PTS,
    Convergence,
    ConvergenceTest,
    chance_margin,
    held_out_examples,
)

__all__ = [
    "report",
    "runs_table",
    "per_run_table",
    "curves_table",
    "table1",
    "table1_claims",
    "run_convergence",
    "convergence_table",
    "CONVERGENCE",
    "swap_claim_table",
    "plot_table",
]

SWAP_CLAIM_SEED = 0  # the seed of the swap-claim trials at every scale
CONVERGENCE = ConvergenceTest()  # the stated test: its defaults (rewire.reporting.convergence)
RunKey = tuple[str, str, int]  # (setting, method, seed)
HEADLINE = {"top1": "static_dnw_top1_mean", "baseline_top1": "static_rg_top1_mean"}  # metrics.json key -> details key


def runs_table(outcome: Outcome) -> pd.DataFrame:
    """Each run: setting, method, seed, directory and whether it trained now or was found by its hash."""
    return pd.DataFrame(
        [
            {
                "setting": r.setting,
                "method": r.method,
                "seed": r.seed,
                "run": r.result.run_dir.name,
                "trained now": r.result.trained_now,
            }
            for r in outcome.runs
        ]
    )


def per_run_table(outcome: Outcome) -> pd.DataFrame:
    """One row per (setting, method, seed): final test top-1, throughput, training size and epochs."""
    return pd.DataFrame(
        [
            {
                "setting": run.setting,
                "method": run.method,
                "seed": run.seed,
                "test_top1": run.result.final["test_top1"],
                "images_per_s": run.result.final["images_per_second"],
                "train_examples": run.result.record["config"]["data"]["train_examples"],
                "epochs": run.result.record["hparams"]["epochs"],
            }
            for run in outcome.runs
        ]
    )


def curves_table(outcome: Outcome) -> pd.DataFrame:
    """Every epoch's record of every run (test columns empty on epochs that were not evaluated)."""
    return pd.DataFrame(
        [
            {"setting": run.setting, "method": run.method, "seed": run.seed, **record}
            for run in outcome.runs
            for record in run.result.records
        ]
    )


def table1(per_run: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """DNW Table 1 at this scale: mean and std of the final epoch's top-1, the best epoch's, the paper's."""
    quoted = paper.table1()
    grouped = per_run.groupby(["setting", "method"], sort=False)
    table = grouped["test_top1"].agg(["mean", "std", "count"]).reset_index()
    table["std"] = table["std"].fillna(0.0)
    missing = (float("nan"), float("nan"))
    table["paper_mean"] = [quoted.get((s, m), missing)[0] for s, m in zip(table.setting, table.method)]
    table["paper_std"] = [quoted.get((s, m), missing)[1] for s, m in zip(table.setting, table.method)]
    table["train_examples"] = grouped["train_examples"].first().values
    table["epochs"] = grouped["epochs"].first().values
    table = table.rename(columns={"mean": "top1_mean", "std": "top1_std", "count": "runs"})
    # The DNW authors' code reports the best test epoch; the headline here is the final epoch. Best epoch, labelled:
    best = curves.groupby(["setting", "method", "seed"], sort=False).test_top1.max()
    table.insert(
        table.columns.get_loc("top1_std") + 1,
        "best_epoch_top1_mean",
        best.groupby(["setting", "method"], sort=False).mean().values,
    )
    return table


def run_convergence(config: Config, outcome: Outcome, test: ConvergenceTest = CONVERGENCE) -> dict[RunKey, Convergence]:
    """Each run's convergence by ``test`` on its per-epoch records, with the chance check of its final test top-1.

    The chance margin is :func:`~rewire.reporting.convergence.chance_margin` of the run's test images
    (the record's ``config.data.test_examples``), else :data:`DEFAULT_CHANCE_MARGIN_PTS`.
    """
    classes = len(OFFICIAL_RELEASES[config.dataset]["classes"])
    found = {}
    for run in outcome.runs:
        data = run.result.record.get("config", {}).get("data", {})
        test_examples = data.get("test_examples")
        margin = chance_margin(classes, int(test_examples)) if test_examples else DEFAULT_CHANCE_MARGIN_PTS
        found[(run.setting, run.method, run.seed)] = test.judge(
            run.result.records,
            num_classes=classes,
            chance_margin_pts=margin,
            accuracy_examples=held_out_examples(data),
        )
    return found


def convergence_table(convergence: dict[RunKey, Convergence]) -> pd.DataFrame:
    """One row per run: converged, at chance, the reason and the measured numbers."""
    rows = [
        {"setting": setting, "method": method, "seed": seed, **result.as_dict()}
        for (setting, method, seed), result in convergence.items()
    ]
    return pd.DataFrame(rows).drop(columns="test", errors="ignore")


def table1_claims(per_run: pd.DataFrame, convergence: dict[RunKey, Convergence] | None = None) -> list[claims.Claim]:
    """DNW Table 1's claim in each setting, "DNW beats RG", paired by seed (:mod:`rewire.reporting.claims`).

    ``per_run`` has one row per (setting, method, seed) with ``test_top1``; settings where either
    side has fewer than two seeds are left out (an interval needs two). ``convergence`` (from
    :func:`run_convergence`) gives each side's runs, which gate the verdict; without it the table says
    "not checked".
    """
    found = []
    for setting in dict.fromkeys(per_run.setting):
        rows = per_run[per_run.setting == setting]
        sides = {m: dict(zip(rows[rows.method == m].seed, rows[rows.method == m].test_top1)) for m in ("dnw", "rg")}
        if len(set(sides["dnw"]) & set(sides["rg"])) >= claims.MIN_SEEDS:
            runs = (
                {m: {seed: convergence[(setting, m, seed)] for seed in sides[m]} for m in sides}
                if convergence is not None
                else {"dnw": None, "rg": None}
            )
            found.append(
                claims.Claim(
                    "DNW",
                    f"DNW beats a random graph of the same size ({setting.replace('_', '-')})",
                    "DNW",
                    sides["dnw"],
                    "RG",
                    sides["rg"],
                    kind="greater",
                    source="Table 1",
                    a_runs=runs["dnw"],
                    b_runs=runs["rg"],
                )
            )
    return found


def plot_table(curves: pd.DataFrame) -> pd.DataFrame:
    """The plot data: mean test top-1 over seeds per (setting, method, evaluated epoch), one row each.

    Long, not one column per series: the settings train for different numbers of epochs and are
    evaluated every ``eval_every`` epochs, so a wide table would hold empty cells; this one has none."""
    columns = ["setting", "method", "epoch", "seeds", "test_top1_mean"]
    if not len(curves):
        return pd.DataFrame(columns=columns)
    evaluated = curves.dropna(subset=["test_top1"])
    grouped = evaluated.groupby(["setting", "method", "epoch"], sort=False).test_top1
    table = grouped.agg(seeds="count", test_top1_mean="mean").reset_index()
    return table[columns]


def swap_claim_table(config: Config) -> pd.DataFrame:
    """DNW Section 2.2 checked numerically at every ``swap_alphas`` (:mod:`.swap_claim`)."""
    table = pd.DataFrame(
        [
            swap_claim.swap_trials(a, trials=config.swap_trials, seed=SWAP_CLAIM_SEED).as_dict()
            for a in config.swap_alphas
        ]
    )
    table["fraction_aligned"] = table["aligned"] / table["single_swaps"]
    return table


def _convergence_lines(convergence: dict[RunKey, Convergence]) -> str:
    """Each side's convergence as Markdown (the claims page of a scale with too few seeds for a claim)."""
    lines = [
        "Convergence of each side (a verdict needs converged runs): " + CONVERGENCE.describe() + ".",
        "",
        "| setting | method | seed | converged | at chance | reason |",
        "|:--|:--|--:|:--|:--|:--|",
    ]
    for (setting, method, seed), result in convergence.items():
        chance = "not checked" if result.at_chance is None else ("yes" if result.at_chance else "no")
        converged = "yes" if result.converged else "no"
        lines.append(
            f"| {setting} | {method} | {seed} | {converged} | {chance} | {claims.markdown_cell(result.reason)} |"
        )
    return "\n".join(lines) + "\n"


def _write_claims(
    config: Config, per_run: pd.DataFrame, convergence: dict[RunKey, Convergence], out: Path, label: dict
) -> pd.DataFrame:
    title = f"DNW Table 1 claims at the {label['scale']} scale"
    found = table1_claims(per_run, convergence)
    if not found:  # one seed (smoke) decides nothing: say so instead of a table, and show each side's convergence
        why = f"{len(config.seeds)} seed(s); an interval needs at least {claims.MIN_SEEDS}"
        text = results.write_not_computed(out, "claims", why, title=title)
        write_text(out / "claims.md", text + "\n" + _convergence_lines(convergence))
        return pd.DataFrame()
    table = claims.claims_frame(found)
    table.to_csv(out / "claims.csv", index=False)
    text = claims.claims_markdown(
        table, title=f"{title} ({len(config.seeds)} seeds, final epoch)", caption=results.label_line(label)
    )
    write_text(out / "claims.md", text)
    return table


def _metrics(config: Config, per_run, claims_table, swap, outcome: Outcome, convergence) -> tuple[dict, dict]:
    """(headline for metrics.json, every number for details.json)."""
    means = per_run.groupby(["setting", "method"], sort=False)["test_top1"].mean()
    details: dict[str, Any] = {f"{s}_{m}_top1_mean": float(v) for (s, m), v in means.items()}
    compared = [s for s in config.settings if {"dnw", "rg"} <= set(config.methods)]
    details.update(
        {f"{s}_dnw_minus_rg": details[f"{s}_dnw_top1_mean"] - details[f"{s}_rg_top1_mean"] for s in compared}
    )
    verdicts = list(claims_table["verdict"]) if len(claims_table) else []
    counts = {
        "claims_held": verdicts.count("holds"),
        "claims_reversed": verdicts.count("reversed"),
        "claims_not_decided": len(compared) - verdicts.count("holds") - verdicts.count("reversed"),
    }
    details.update(counts)
    if len(claims_table):
        columns = ["claim", "difference", "ci_low", "ci_high", "verdict", "interval_verdict"]
        details["claims"] = claims_table[[*columns, "a_convergence", "b_convergence"]].to_dict("records")
        for row in details["claims"]:
            setting = next(s for s in config.settings if s.replace("_", "-") in row["claim"])
            details[f"{setting}_dnw_minus_rg_ci_low"] = float(row["ci_low"])
            details[f"{setting}_dnw_minus_rg_ci_high"] = float(row["ci_high"])
    details["convergence_test"] = CONVERGENCE.describe()
    details["convergence"] = convergence_table(convergence).to_dict("records") if convergence else []
    details["swap_claim_fraction_holds"] = {str(a): float(f) for a, f in zip(swap["alpha"], swap["fraction_holds"])}
    details["budget_parameters"] = count_parameters(build_graph("static"), GraphConfig().k)
    details["run_seconds"] = outcome.extra.get("run_seconds")  # wall time of run(): short when runs were found again
    # training time of every run as its records hold it, found-again runs included
    details["train_seconds"] = sum(r.get("train_seconds", 0.0) for run in outcome.runs for r in run.result.records)
    # metrics.json: the keys every stage shares (tools/headline_metrics.py): the verdict counts, DNW's
    # accuracy and its baseline RG's on the static graph (the setting every scale trains)
    headline = {**counts, **{key: details[source] for key, source in HEADLINE.items() if source in details}}
    details.update(headline)
    return headline, details


def report(config: Config, outcome: Outcome, out_dir, label: dict[str, Any]) -> dict[str, float]:
    """Write the stage's outputs into ``out_dir``; return the headline metrics (``metrics.json``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    per_run, curves = per_run_table(outcome), curves_table(outcome)
    title = "DNW Table 1: test top-1 (%) of tiny graphs, RG vs DNW"
    results.write_table(table1(per_run, curves), out, "table1", label, title=title)
    convergence = run_convergence(config, outcome)
    claims_table = _write_claims(config, per_run, convergence, out, label)

    curves.to_csv(out / "curves.csv", index=False)
    plot_table(curves).to_csv(out / "plot_accuracy.csv", index=False)
    figures.per_epoch(curves, "test_top1", "test top-1 (%)", "Test accuracy per epoch", label, out / "accuracy.png")
    figures.per_epoch(curves, "swaps", "edges swapped in", "Swaps per epoch (RG never swaps)", label, out / "swaps.png")
    first_seed = [run for run in outcome.runs if run.seed == config.seeds[0]]
    figures.adjacency(first_seed, label, out / "adjacency.png")

    swap = swap_claim_table(config)
    swap.to_csv(out / "swap_claim.csv", index=False)
    figures.swap_claim(swap, config.swap_trials, out / "swap_claim.png")

    headline, details = _metrics(config, per_run, claims_table, swap, outcome, convergence)
    results.write_metrics(out / "metrics.json", headline, label)
    write_json(out / "details.json", details)
    return headline
