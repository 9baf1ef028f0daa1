"""The quickstart experiment on the contract: its schema (every scale, the notebook), its plan, its
report's outputs at every scale, and the end-to-end run through ``python -m rewire run``."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from rewire.experiments import quickstart
from rewire.experiments.base import Outcome, RunSpec
from rewire.experiments.engine import settings_digest
from rewire.experiments.quickstart.config import RESERVED_KEYS, Config
from rewire.experiments.quickstart.runs import QuickstartRun, recipe
from rewire.experiments.schema import ConfigError, config_fields
from rewire.pipeline import params as params_module

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "00_quickstart.ipynb"
SCALES = ("smoke", "cpu", "paper")


def block(scale: str) -> dict:
    return params_module.stage_values("quickstart", ROOT / "params.yaml", scale)[1]


@pytest.mark.parametrize("scale", SCALES)
def test_every_scale_is_a_valid_config(scale):
    config = Config.from_values(block(scale), where=f"{scale}.quickstart")
    assert config.as_dict() == {**Config().as_dict(), **block(scale)}


def test_the_defaults_are_the_smoke_block_and_the_notebook_declares_them():
    assert Config().as_dict() == block("smoke")
    declared = params_module.notebook_parameters(NOTEBOOK)
    assert set(declared) <= set(config_fields(Config)) | set(RESERVED_KEYS)
    assert set(declared) - set(RESERVED_KEYS) == set(config_fields(Config))
    assert {name: declared[name]["default"] for name in config_fields(Config)} == block("smoke")
    assert set(Config.IGNORED) == set(RESERVED_KEYS)


@pytest.mark.parametrize(
    "change, words",
    [
        ({"epochs": -3}, ["'epochs'", "-3", ">= 1", "e.g. epochs"]),
        ({"epochs": "3"}, ["'epochs'", "must be an integer", "'3'"]),
        ({"epochs": True}, ["'epochs'", "must be an integer"]),
        ({"lr": 0}, ["'lr'", "> 0"]),
        ({"weight_decay": -0.1}, ["'weight_decay'", ">= 0"]),
        ({"train_per_class": -1}, ["'train_per_class'", ">= 0"]),
        ({"test_per_class": -5}, ["'test_per_class'", ">= 0"]),
        ({"batch_size": 0}, ["'batch_size'", ">= 1"]),
        ({"width": 0}, ["'width'", ">= 1"]),
        ({"precision": "fp16"}, ["'precision'", "'fp16'", "'bf16'"]),
        ({"compare_precision": "int8"}, ["'compare_precision'", "'int8'"]),
        ({"compare_precision": "fp32"}, ["'compare_precision'", "equals 'precision'"]),
        ({"dataset": "mnist"}, ["'dataset'", "'mnist'", "'cifar10'"]),
        ({"seeds": []}, ["'seeds'", "empty"]),
        ({"seeds": [0, 0]}, ["'seeds'", "repeats 0"]),
        ({"seeds": [-1]}, ["'seeds'", "-1", ">= 0"]),
        ({"seeds": [0.5]}, ["'seeds[0]'", "must be an integer"]),
        ({"seeds": 3}, ["'seeds'", "must be a list"]),
        ({"epoch": 3}, ["'epoch' is not a field", "did you mean 'epochs'"]),
    ],
)
def test_a_bad_value_stops_with_the_field_in_the_message(change, words):
    with pytest.raises(ConfigError) as error:
        Config.from_values({**block("cpu"), **change}, where="params.yaml 'cpu.quickstart'")
    message = str(error.value)
    assert message.startswith("params.yaml 'cpu.quickstart'")
    for word in words:
        assert word in message, message


def test_the_reserved_pipeline_keys_are_accepted_and_dropped():
    config = Config.from_values(
        {**block("smoke"), "scale": "smoke", "out_dir": "x", "checkpoint_dir": "", "data_root": "d"}
    )
    assert config == Config()


def test_plan_sizes_at_smoke_and_cpu():
    smoke = quickstart.plan(Config.from_values(block("smoke")))
    assert [(s.row, s.seed, s.name) for s in smoke] == [("fp32", 0, "seed0")]
    cpu = quickstart.plan(Config.from_values(block("cpu")))
    assert len(cpu) == 20
    assert [s.row for s in cpu] == ["fp32"] * 10 + ["bf16"] * 10
    assert [s.name for s in cpu[:3]] == ["seed0", "seed1", "seed2"]
    assert len(quickstart.plan(Config.from_values(block("paper")))) == 6


def test_the_cpu_runs_keep_the_settings_of_the_committed_runs():
    """The settings hash of seed 0 at both precisions equals the committed runs' (results/quickstart): the
    move onto the contract changed no run's settings, so the committed runs are reused across the code change."""
    config = Config.from_values(block("cpu"))
    found = {}
    for spec in quickstart.plan(config):
        if spec.seed == 0:
            data = {"name": "cifar10", "source": "jpeg-copy", "train_examples": 5000, "test_examples": 10000}
            full = {
                **spec.settings,
                "seed": 0,
                "batch_size": 128,
                "data": data,
                "hparams": recipe(config, spec.row).as_dict(),
            }
            found[spec.row] = settings_digest(full)
    assert found == {"fp32": "6a66be4228", "bf16": "ccd8e0f840"}
    executed = (ROOT / "results" / "quickstart" / "00_quickstart.ipynb").read_text()
    assert all(f"seed0-{digest}-" in executed for digest in found.values())


# ---------------------------------------------------------------------- the report


def fake_run(seed: int, precision: str, top1: float, speed: float = 1000.0, epochs: int = 2) -> QuickstartRun:
    records = [
        {
            "epoch": epoch,
            "test_top1": top1 - (epochs - epoch),
            "test_top5": 90.0,
            "test_loss": 1.0,
            "train_loss": 1.5,
            "lr": 0.1,
            "images_per_second": speed,
            "data_seconds": 0.1,
            "train_seconds": 1.0,
        }
        for epoch in range(1, epochs + 1)
    ]
    result = SimpleNamespace(
        records=records,
        final=records[-1],
        run_dir=Path(f"seed{seed}-x-y"),
        trained_now=True,
        model=torch.nn.Linear(2, 2),
    )
    return QuickstartRun(RunSpec(precision, seed, f"seed{seed}"), result)


def label(scale: str, seeds) -> dict:
    return {
        "scale": scale,
        "seeds": list(seeds),
        "data_source": "official",
        "data_source_description": "test",
        "device": "cpu",
        "commit": "abc1234",
    }


def declared_outputs(stage: str) -> set[str]:
    """The file names ``dvc.yaml`` declares for ``stage`` (outs and metrics), the executed notebook aside."""
    definition = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]
    paths = [next(iter(o)) if isinstance(o, dict) else o for o in definition["outs"] + definition.get("metrics", [])]
    return {Path(p).name for p in paths if not p.endswith(".ipynb")}


def test_smoke_writes_every_declared_output_with_the_precision_check_not_computed(tmp_path):
    config = Config.from_values(block("smoke"))
    outcome = Outcome([fake_run(0, "fp32", 40.0)], {"kind": "official"}, {"train_examples": 1000, "test_examples": 500})
    metrics = quickstart.report(config, outcome, tmp_path, label("smoke", [0]))
    assert {p.name for p in tmp_path.iterdir()} == declared_outputs("quickstart")
    assert "not computed at this scale: compare_precision is ''" in (tmp_path / "precision_check.md").read_text()
    lines = (tmp_path / "precision_check.csv").read_text().splitlines()
    assert len(lines) == 2 and lines[1].startswith("not computed at this scale")
    assert metrics == {"top1": 40.0}  # the keys every stage shares (tools/headline_metrics.py)
    assert yaml.safe_load((tmp_path / "metrics.json").read_text()) == metrics
    details = yaml.safe_load((tmp_path / "details.json").read_text())
    assert details["test_top1_mean"] == 40.0 and details["parameters"] == 6 and details["epochs"] == 1
    assert details["train_seconds"] == 2.0  # what `make repro` reads to say how long retraining takes


def test_one_seed_at_two_precisions_is_not_enough_for_the_precision_check(tmp_path):
    config = Config.from_values({**block("smoke"), "compare_precision": "bf16"})
    outcome = Outcome([fake_run(0, "fp32", 40.0), fake_run(0, "bf16", 40.5)], {}, {})
    quickstart.report(config, outcome, tmp_path, label("smoke", [0]))
    assert (
        "1 seed(s) trained at both precisions; an interval needs at least 2"
        in (tmp_path / "precision_check.md").read_text()
    )


def test_the_precision_check_with_several_seeds(tmp_path):
    config = Config.from_values({**block("cpu"), "seeds": [0, 1, 2]})
    runs = [fake_run(s, "fp32", 70.0 + s, 1000.0) for s in range(3)]
    runs += [fake_run(s, "bf16", 70.1 + s, 2000.0) for s in range(3)]
    metrics = quickstart.report(config, Outcome(runs, {}, {}), tmp_path, label("cpu", range(3)))
    assert {p.name for p in tmp_path.iterdir()} == declared_outputs("quickstart")
    check = (tmp_path / "precision_check.csv").read_text()
    assert "holds" in check and "speedup_mean" in check
    details = yaml.safe_load((tmp_path / "details.json").read_text())
    assert details["bf16_speedup"] == pytest.approx(2.0)
    assert details["bf16_minus_fp32_top1"] == pytest.approx(0.1)
    assert details["precision_verdict"] == "holds"
    assert metrics["top1"] == pytest.approx(71.0)  # the base precision's runs only
    plot = (tmp_path / "plot_accuracy.csv").read_text().splitlines()
    assert plot[0] == "epoch,test_top1_mean,test_top5_mean" and len(plot) == 3 and ",," not in "".join(plot)


# ---------------------------------------------------------------------- end to end


@pytest.mark.skipif(not (ROOT / "data" / "cifar10" / "meta.json").exists(), reason="no prepared CIFAR-10 (`make data`)")
def test_python_m_rewire_run_trains_the_smoke_scale_and_a_second_call_finds_the_run(tmp_path, capsys, monkeypatch):
    from rewire.__main__ import main
    from rewire.experiments.base import RunContextSpec

    monkeypatch.chdir(ROOT)
    assert main(["run", "quickstart", "--scale", "smoke", "--checkpoints", str(tmp_path)]) == 0
    assert "1 runs done at scale 'smoke'" in capsys.readouterr().out
    trained = list((tmp_path / "quickstart").iterdir())
    assert len(trained) == 1 and trained[0].name.startswith("seed0-")
    context = RunContextSpec(data_root=ROOT / "data", checkpoint_root=tmp_path / "quickstart", progress=False)
    again = quickstart.run(Config.from_values(block("smoke")), context=context)
    assert [run.result.trained_now for run in again.runs] == [False]
    assert again.runs[0].result.run_dir == trained[0]
