"""DNW Table 1 on the contract: its schema (every scale, the notebook), its plan, the paper's numbers,
and its report (the committed tables recomputed from the committed curves; every declared output at smoke)."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
import yaml

from rewire.experiments import tiny_graphs
from rewire.experiments.base import Outcome
from rewire.experiments.engine import settings_digest
from rewire.experiments.schema import ConfigError, config_fields
from rewire.experiments.tiny_graphs import paper
from rewire.experiments.tiny_graphs.config import RESERVED_KEYS, Config
from rewire.experiments.tiny_graphs.report import CONVERGENCE, plot_table, run_convergence, table1, table1_claims
from rewire.experiments.tiny_graphs.runs import TinyGraphRun, recipe
from rewire.pipeline import params as params_module
from rewire.reporting import claims

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "01_tiny_graphs.ipynb"
RESULTS = ROOT / "results" / "tiny_graphs"
SCALES = ("smoke", "cpu", "paper")


def block(scale: str) -> dict:
    return params_module.stage_values("tiny_graphs", ROOT / "params.yaml", scale)[1]


@pytest.mark.parametrize("scale", SCALES)
def test_every_scale_is_a_valid_config(scale):
    config = Config.from_values(block(scale), where=f"{scale}.tiny_graphs")
    assert config.as_dict() == {**Config().as_dict(), **block(scale)}


def test_the_defaults_are_the_smoke_block_and_the_notebook_declares_them():
    assert Config().as_dict() == block("smoke")
    declared = params_module.notebook_parameters(NOTEBOOK)
    assert set(declared) <= set(config_fields(Config)) | set(RESERVED_KEYS)
    assert set(declared) - set(RESERVED_KEYS) == set(config_fields(Config))
    assert {name: declared[name]["default"] for name in config_fields(Config)} == block("smoke")


@pytest.mark.parametrize(
    "change, words",
    [
        ({"static_epochs": -3}, ["'static_epochs'", "-3", ">= 1", "e.g. static_epochs"]),
        ({"dynamic_epochs": 0}, ["'dynamic_epochs'", ">= 1"]),
        ({"methods": ["rg", "dnw2"]}, ["'methods'", "'dnw2'", "'rg', 'dnw', 'dnw_no_update', 'dense'"]),
        ({"settings": ["static", "dynamic"]}, ["'settings'", "'dynamic'", "'continuous_time'"]),
        ({"batch_size": "64"}, ["'batch_size'", "must be an integer", "'64'"]),
        ({"lr": "fast"}, ["'lr'", "must be a number"]),
        ({"lr": 0}, ["'lr'", "> 0"]),
        ({"weight_decay": -1e-4}, ["'weight_decay'", ">= 0"]),
        ({"static_train_per_class": -1}, ["'static_train_per_class'", ">= 0"]),
        ({"dynamic_train_per_class": -1}, ["'dynamic_train_per_class'", ">= 0"]),
        ({"test_per_class": -1}, ["'test_per_class'", ">= 0"]),
        ({"graph_variant": "mine"}, ["'graph_variant'", "'paper', 'authors_code'"]),
        ({"ode_solver": "rk5"}, ["'ode_solver'", "'rk5'", "'dopri5'"]),
        ({"ode_step": 2.0}, ["'ode_step'", "(0, 1]"]),
        ({"schedule": "linear"}, ["'schedule'", "'cosine', 'multistep'"]),
        ({"precision": "fp16"}, ["'precision'", "'fp16'"]),
        ({"eval_every": 0}, ["'eval_every'", ">= 1"]),
        ({"swap_alphas": [0.1, -0.1]}, ["'swap_alphas'", "-0.1", "> 0"]),
        ({"swap_trials": 0}, ["'swap_trials'", ">= 1"]),
        ({"seeds": []}, ["'seeds'", "empty"]),
        ({"seeds": [0, 1, 1]}, ["'seeds'", "repeats 1"]),
        ({"methods": []}, ["'methods'", "empty"]),
        ({"settings": ["static", "static"]}, ["'settings'", "repeats static"]),
        ({"schedule": "cosine", "milestones": [2]}, ["'milestones'", "only by schedule 'multistep'"]),
        ({"schedule": "multistep", "milestones": []}, ["'milestones'", "increasing"]),
        ({"schedule": "multistep", "milestones": [3, 2]}, ["'milestones'", "increasing"]),
        ({"schedule": "multistep", "milestones": [2, 20]}, ["'milestones'", "20 epochs"]),
        ({"method": ["rg"]}, ["'method' is not a field", "did you mean 'methods'"]),
    ],
)
def test_a_bad_value_stops_with_the_field_in_the_message(change, words):
    with pytest.raises(ConfigError) as error:
        Config.from_values({**block("cpu"), **change}, where="params.yaml 'cpu.tiny_graphs'")
    message = str(error.value)
    assert message.startswith("params.yaml 'cpu.tiny_graphs'")
    for word in words:
        assert word in message, message


def test_plan_sizes_at_smoke_cpu_and_paper():
    smoke = tiny_graphs.plan(Config.from_values(block("smoke")))
    assert [s.name for s in smoke] == [
        f"{setting}-{method}-seed0"
        for setting in ("static", "discrete_time", "continuous_time")
        for method in ("rg", "dnw")
    ]
    cpu = tiny_graphs.plan(Config.from_values(block("cpu")))
    assert len(cpu) == 18 and len({s.row for s in cpu}) == 6
    assert [s.row for s in cpu[:4]] == ["static_rg"] * 3 + ["static_dnw"]
    assert {s.settings["train_per_class"] for s in cpu if s.row.startswith("static")} == {500}
    assert {s.settings["train_per_class"] for s in cpu if not s.row.startswith("static")} == {200}
    assert len(tiny_graphs.plan(Config.from_values(block("paper")))) == 30


def test_the_cpu_runs_keep_the_settings_of_the_committed_runs():
    """Each seed-0 run's settings hash equals the committed run's (results/tiny_graphs): the move onto the
    contract changed no run's settings, so the committed runs are reused across the code change."""
    config = Config.from_values(block("cpu"))
    executed = (RESULTS / "01_tiny_graphs.ipynb").read_text()
    committed = {
        "static-rg-seed0": "0b4f23fe1c",
        "static-dnw-seed0": "c4a1d13170",
        "discrete_time-rg-seed0": "48b3447422",
        "discrete_time-dnw-seed0": "0ab3360db6",
        "continuous_time-rg-seed0": "9aee27a8d1",
        "continuous_time-dnw-seed0": "1d0cadcf35",
    }
    found = {}
    for spec in tiny_graphs.plan(config):
        if spec.seed == 0:
            n = spec.settings["train_per_class"] * 10
            data = {"name": "cifar10", "source": "jpeg-copy", "train_examples": n, "test_examples": 10000}
            hparams = recipe(config, spec.settings["setting"]).as_dict()
            found[spec.name] = settings_digest(
                {**spec.settings, "seed": 0, "batch_size": 128, "data": data, "hparams": hparams}
            )
    assert {name: found[name] for name in committed} == committed
    assert all(f"{name}-{digest}-" in executed for name, digest in committed.items())


def test_the_papers_table1_is_pinned():
    assert paper.table1() == {
        ("static", "rg"): (76.1, 0.5),
        ("static", "dnw"): (80.9, 0.6),
        ("discrete_time", "rg"): (77.3, 0.7),
        ("discrete_time", "dnw"): (82.3, 0.6),
        ("continuous_time", "rg"): (78.5, 1.2),
        ("continuous_time", "dnw"): (83.1, 0.3),
    }


# ---------------------------------------------------------------------- the report


def committed_per_run() -> tuple[pd.DataFrame, pd.DataFrame]:
    curves = pd.read_csv(RESULTS / "curves.csv")
    last = curves.groupby(["setting", "method", "seed"], sort=False).tail(1)  # each run's final epoch, in order
    sizes = pd.read_csv(RESULTS / "table1.csv").set_index(["setting", "method"])["train_examples"]
    per_run = pd.DataFrame(
        {
            "setting": last.setting,
            "method": last.method,
            "seed": last.seed,
            "test_top1": last.test_top1,
            "images_per_s": last.images_per_second,
            "train_examples": [sizes[(s, m)] for s, m in zip(last.setting, last.method)],
            "epochs": last.epoch,
        }
    )
    return per_run.reset_index(drop=True), curves


def committed_outcome(curves: pd.DataFrame) -> Outcome:
    """The committed cpu runs as an Outcome holding their per-epoch records (10,000 test images each)."""
    runs = []
    for (setting, method, seed), group in curves.groupby(["setting", "method", "seed"], sort=False):
        records = group.drop(columns=["setting", "method", "seed"]).to_dict("records")
        record = {"config": {"data": {"test_examples": 10_000}}}
        result = SimpleNamespace(records=records, final=records[-1], record=record)
        runs.append(TinyGraphRun(setting, method, int(seed), result, None, None))
    return Outcome(runs, {}, {})


def test_table1_and_the_claims_of_the_committed_curves_equal_the_committed_tables():
    per_run, curves = committed_per_run()
    mine = table1(per_run, curves)
    committed = pd.read_csv(RESULTS / "table1.csv")
    pd.testing.assert_frame_equal(mine, committed[list(mine.columns)], check_dtype=False)
    found = claims.claims_frame(table1_claims(per_run))
    committed_claims = pd.read_csv(RESULTS / "claims.csv")
    # the interval's columns and verdict as committed (the convergence columns are newer than the results)
    shared = [c for c in found.columns if c in committed_claims.columns and "converg" not in c]
    assert {"difference", "ci_low", "ci_high", "verdict"} <= set(shared)
    pd.testing.assert_frame_equal(found[shared], committed_claims[shared], check_dtype=False)
    assert list(found.interval_verdict) == list(committed_claims.verdict)


def test_the_committed_cpu_runs_converge_so_each_claim_reads_its_interval():
    """The cpu block (20 epochs, x0.1 at 10 and 15; issue 20's redesign) trains every run to a flat loss: by the
    stated test all 18 converge (the 6- / 4-epoch cosine design before it left every run under-trained), and
    each claim's verdict is its interval's."""
    per_run, curves = committed_per_run()
    config = Config.from_values(block("cpu"))
    convergence = run_convergence(config, committed_outcome(curves))
    assert len(convergence) == 18 and all(c.converged for c in convergence.values())
    assert not any(c.at_chance for c in convergence.values())  # 33-49 % on 10 classes: far from chance
    static_dnw = convergence[("static", "dnw", 0)]
    assert static_dnw.window_epochs == 4  # ceil(0.2 * 20)
    assert static_dnw.loss_rel_change < 0.02
    found = claims.claims_frame(table1_claims(per_run, convergence))
    assert list(found.verdict) == list(found.interval_verdict) == list(pd.read_csv(RESULTS / "claims.csv").verdict)
    assert all(found.a_convergence == "yes (3/3 converged)")
    assert set(found.convergence_test) == {CONVERGENCE.describe()}


def test_the_plot_data_holds_only_evaluated_epochs_and_every_series():
    curves = pd.read_csv(RESULTS / "curves.csv")  # cpu: eval_every 10, 20 epochs for every graph
    plot = plot_table(curves)
    assert not plot.isna().any().any()
    assert sorted(plot[plot.setting == "static"].epoch.unique()) == [10, 20]
    assert sorted(plot[plot.setting == "discrete_time"].epoch.unique()) == [10, 20]
    assert len(plot.groupby(["setting", "method"])) == 6
    committed = pd.read_csv(RESULTS / "plot_accuracy.csv").set_index(["setting", "method", "epoch"])
    for row in plot.itertuples():
        assert row.test_top1_mean == pytest.approx(
            committed.loc[(row.setting, row.method, row.epoch), "test_top1_mean"]
        )
    assert set(plot.seeds) == {3}


def fake_run(
    setting: str, method: str, seed: int, epochs: int = 3, eval_every: int = 2, loss_drop: float = 0.0
) -> TinyGraphRun:
    """A run whose training loss falls by ``loss_drop`` (a fraction) per epoch; its test top-1 rises by 1 per epoch
    (final = best), DNW one point above RG."""
    records = []
    for epoch in range(1, epochs + 1):
        evaluated = epoch % eval_every == 0 or epoch == epochs
        top1 = 20.0 + epoch + (1.0 if method == "dnw" else 0.0) + 0.1 * seed
        records.append(
            {
                "epoch": epoch,
                "train_loss": 2.0 * (1.0 - loss_drop) ** epoch,
                "test_top1": top1 if evaluated else math.nan,
                "images_per_second": 100.0,
                "swaps": 3 if method == "dnw" else 0,
            }
        )
    result = SimpleNamespace(
        records=records,
        final=records[-1],
        run_dir=Path(f"{setting}-{method}-seed{seed}-x-y"),
        trained_now=True,
        record={"config": {"data": {"train_examples": 200, "test_examples": 100}}, "hparams": {"epochs": epochs}},
    )
    mask = torch.rand(12, 12) > 0.5
    return TinyGraphRun(setting, method, seed, result, mask, mask)


def declared_outputs(stage: str) -> set[str]:
    definition = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]
    paths = [next(iter(o)) if isinstance(o, dict) else o for o in definition["outs"] + definition.get("metrics", [])]
    return {Path(p).name for p in paths if not p.endswith(".ipynb")}


def label(scale: str, seeds) -> dict:
    return {
        "scale": scale,
        "seeds": list(seeds),
        "data_source": "official",
        "data_source_description": "",
        "device": "cpu",
        "commit": "abc",
    }


@pytest.mark.parametrize("seeds", [[0], [0, 1]])
def test_the_report_writes_every_declared_output_and_headline_metrics_only(tmp_path, seeds):
    config = Config.from_values({**block("smoke"), "seeds": seeds, "swap_trials": 200, "eval_every": 2})
    runs = [
        fake_run(setting, method, seed, epochs=3 if setting == "static" else 4)  # flat loss: converged
        for setting in config.settings
        for method in config.methods
        for seed in seeds
    ]
    metrics = tiny_graphs.report(config, Outcome(runs, {}, {"run_seconds": 1.0}), tmp_path, label("smoke", seeds))
    assert {p.name for p in tmp_path.iterdir()} == declared_outputs("tiny_graphs")
    # the keys every stage's metrics.json shares (tools/headline_metrics.py)
    assert set(metrics) == {"claims_held", "claims_reversed", "claims_not_decided", "top1", "baseline_top1"}
    assert yaml.safe_load((tmp_path / "metrics.json").read_text()) == metrics
    details = yaml.safe_load((tmp_path / "details.json").read_text())
    assert (metrics["top1"], metrics["baseline_top1"]) == (
        details["static_dnw_top1_mean"],
        details["static_rg_top1_mean"],
    )
    assert details["budget_parameters"]["budget"] == 41458  # the paper's "41k"
    assert "train_seconds" in details and "notebook_seconds" not in metrics
    assert set(details["swap_claim_fraction_holds"]) == {str(a) for a in config.swap_alphas}
    plot = pd.read_csv(tmp_path / "plot_accuracy.csv")
    assert not plot.isna().any().any() and sorted(plot[plot.setting == "static"].epoch.unique()) == [2, 3]
    assert len(details["convergence"]) == len(runs) and all(row["converged"] for row in details["convergence"])
    assert details["convergence_test"] == CONVERGENCE.describe()
    if len(seeds) == 1:
        assert metrics["claims_not_decided"] == 3
        text = (tmp_path / "claims.md").read_text()
        assert "not computed at this scale: 1 seed(s)" in text
        assert "| static | dnw | 0 | yes | no | training loss changed 0.0 % over the last 1 epoch(s)" in text
        assert "not computed at this scale" in (tmp_path / "claims.csv").read_text()
    else:  # DNW is 1 point above RG at every seed: an interval of zero width above zero; every run converged
        assert metrics["claims_held"] == 3 and metrics["claims_not_decided"] == 0
        assert details["static_dnw_minus_rg"] == pytest.approx(1.0)
        table = pd.read_csv(tmp_path / "claims.csv")
        assert set(table.a_convergence) == set(table.b_convergence) == {"yes (2/2 converged)"}


def test_at_smoke_scale_the_claims_table_shows_each_sides_convergence_and_withholds_the_verdict(tmp_path):
    """Two seeds at the smoke block: 1 epoch per run is too few to judge, so every claim (DNW one point above
    RG on every seed: the interval holds) reads "not decided: under-trained"; with 5 epochs and DNW's loss
    still falling 10 % per epoch, only DNW's side fails; with a flat loss everything holds."""
    config = Config.from_values({**block("smoke"), "seeds": [0, 1], "swap_trials": 200})
    one_epoch = [fake_run(s, m, seed, epochs=1) for s in config.settings for m in config.methods for seed in (0, 1)]
    metrics = tiny_graphs.report(config, Outcome(one_epoch, {}, {}), tmp_path, label("smoke", [0, 1]))
    assert (metrics["claims_held"], metrics["claims_reversed"], metrics["claims_not_decided"]) == (0, 0, 3)
    table = pd.read_csv(tmp_path / "claims.csv")
    assert set(table.verdict) == {"not decided: under-trained"} and set(table.interval_verdict) == {"holds"}
    assert set(table.a_converged) == set(table.b_converged) == {False}
    assert table.a_convergence[0] == "no (0/2 converged): seeds 0, 1: too few epochs (1 recorded, the test needs 3)"
    text = (tmp_path / "claims.md").read_text()
    assert "| a converged | b converged | verdict |" in text and CONVERGENCE.describe() in text
    assert "**not decided: under-trained**" in text and "The interval alone would say:" in text

    falling = [
        fake_run(s, m, seed, epochs=5, loss_drop=0.1 if m == "dnw" else 0.0)
        for s in config.settings
        for m in config.methods
        for seed in (0, 1)
    ]
    tiny_graphs.report(config, Outcome(falling, {}, {}), tmp_path, label("smoke", [0, 1]))
    table = pd.read_csv(tmp_path / "claims.csv")
    assert set(table.verdict) == {"not decided: under-trained"}
    assert set(table.a_converged) == {False} and set(table.b_converged) == {True}  # a is DNW, b is RG
    assert "training loss changed 10.0 % over the last 1 epoch(s)" in table.a_convergence[0]
