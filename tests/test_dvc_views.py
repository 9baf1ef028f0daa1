"""The results from the terminal (issue 18, points 7 and 9): `dvc metrics show` at 120 columns, plots
that render offline, and what `make repro` / `make retrain` say before they run."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from rewire.pipeline import params, status

ROOT = Path(__file__).resolve().parents[1]
WIDTH = 120  # a terminal's columns the tables must fit
# the keys every metrics.json shares (tools/headline_metrics.py): one column each in `dvc metrics show`
HEADLINE_KEYS = {"claims_held", "claims_reversed", "claims_not_decided", "top1", "baseline_top1"}

needs_dvc = pytest.mark.skipif(shutil.which("dvc") is None, reason="dvc is not installed")


def stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def declared(stage: dict, kind: str) -> list[str]:
    return [entry if isinstance(entry, str) else next(iter(entry)) for entry in stage.get(kind, [])]


def test_every_committed_metrics_file_holds_only_headline_numbers():
    """A stage that has not run yet (a new one: its whole results folder is absent) has no file to check;
    a stage with results has every metrics file it declares."""
    for stage in stages().values():
        for path in declared(stage, "metrics"):
            if not (ROOT / path).parent.exists():
                continue  # never run here: `make repro` lists it
            metrics = json.loads((ROOT / path).read_text(encoding="utf-8"))
            assert set(metrics) <= HEADLINE_KEYS, (
                f"{path}: {sorted(set(metrics) - HEADLINE_KEYS)} belong in details.json"
            )


@needs_dvc
def test_dvc_metrics_show_fits_120_columns():
    result = subprocess.run(["dvc", "metrics", "show"], cwd=ROOT, capture_output=True, text=True, check=True)
    lines = result.stdout.splitlines()
    assert len(lines) >= 2 and lines[0].startswith("Path")
    assert max(len(line) for line in lines) <= WIDTH, result.stdout


def test_exp_show_has_few_param_columns():
    """`dvc exp show` prints every key of params.yaml as a column, tracked or not: it holds few keys."""
    if not (ROOT / params.BLOCKS_FILE).exists():
        pytest.skip("params.yaml still holds the scales' blocks: `python tools/split_params.py` moves them")

    def flat(value, prefix=""):
        if isinstance(value, dict):
            return [k for key, v in value.items() for k in flat(v, f"{prefix}{key}.")]
        return [prefix[:-1]]

    keys = flat(yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8")))
    assert len(keys) <= 5, keys


def test_plots_are_stage_figures_that_render_offline():
    """Image plots only: a data plot makes `dvc plots show` load its vega renderer from a CDN."""
    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    outs = {path for stage in pipeline["stages"].values() for path in declared(stage, "outs")}
    plots = [p if isinstance(p, str) else next(iter(p)) for p in pipeline.get("plots", [])]
    assert plots
    for plot in plots:
        assert plot.endswith(".png"), f"{plot}: declare the stage's figure, not its data"
        assert plot in outs, f"{plot} is not an output of any stage"
    figures = sorted(path for path in outs if path.endswith(".png"))
    assert sorted(plots) == figures, "every figure of a stage is a plot"


def test_make_repro_says_the_results_are_current_and_how_long_a_retrain_takes():
    text = status.describe({}, {"quickstart": 30 * 60, "tiny_graphs": 45 * 60}, "cpu")
    assert "Results are current at scale 'cpu'" in text and "nothing to run" in text
    assert "`make retrain` (= dvc repro -f), about 75 minutes" in text and "quickstart 30.0" in text


def test_make_repro_lists_the_stale_stages_before_running():
    stale = {"tiny_graphs": ["changed deps: results/params/tiny_graphs.yaml (modified)"]}
    text = status.describe(stale, {}, "cpu")
    assert text.splitlines()[0] == "dvc repro will run 1 stage at scale 'cpu' (out of date):"
    assert "tiny_graphs: changed deps: results/params/tiny_graphs.yaml (modified)" in text


def test_the_retrain_estimate_reads_the_committed_results():
    seconds = status.retrain_seconds(ROOT / "results", ROOT / "dvc.yaml")
    assert {"quickstart", "tiny_graphs", "robust_binary"} <= set(seconds)
    assert all(value > 0 for value in seconds.values())


def test_a_time_of_found_again_runs_is_said_to_be_a_lower_bound():
    text = status.describe({}, {"quickstart": 6.0}, "cpu", force=True, lower=("quickstart",))
    assert text.startswith("dvc repro -f retrains every stage at scale 'cpu': at least 1 minute")
    assert "quickstart recorded only the notebook's time" in text


def test_stale_stages_come_with_what_retraining_them_costs():
    stale = {"tiny_graphs": ["changed deps: lib/rewire/models (modified)"], "quickstart": []}
    text = status.describe(stale, {"tiny_graphs": 30 * 60, "quickstart": 12 * 60, "dpf_theory": 60}, "cpu")
    assert "found again by their hash" in text
    assert "about 42 minutes for these stages" in text  # the stale stages only: 30 + 12, not dpf_theory's minute
    assert "at least 42 minutes" in status.describe(stale, {"tiny_graphs": 30 * 60, "quickstart": 12 * 60}, "cpu",
                                                     lower=("quickstart",))  # fmt: skip


def test_repro_names_the_stale_stages_with_no_recorded_time():
    stale = {"benchmark": ["never run"], "tiny_graphs": ["changed deps"]}
    text = status.describe(stale, {"tiny_graphs": 30 * 60}, "cpu")
    assert "about 30 minutes for these stages" in text
    assert "No training time is recorded for benchmark" in text and "tiny_graphs (never" not in text
