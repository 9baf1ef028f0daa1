"""`python -m rewire`: one command line for every experiment (list, plan, run, validate)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rewire.__main__ import main
from rewire.experiments import registry

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def at_the_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def test_list_names_every_experiment_with_its_notebook(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for entry in registry.EXPERIMENTS.values():
        assert entry.name in out and (entry.notebook or "(no notebook)") in out


@pytest.mark.parametrize("experiment", registry.names())
@pytest.mark.parametrize("scale", ["smoke", "cpu", "paper"])
def test_every_experiment_plans_every_scale_through_its_contract(experiment, scale, capsys):
    module = registry.load(experiment)  # Config, plan, run, report: the contract
    assert main(["plan", experiment, "--scale", scale]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    count = int(last.split()[0])
    assert last == f"{count} runs at scale '{scale}'"
    assert module.__name__ == f"rewire.experiments.{experiment}"


def test_only_selects_rows_and_an_unknown_row_is_refused(capsys):
    assert main(["plan", "quickstart", "--scale", "cpu"]) == 0
    everything = capsys.readouterr().out.strip().splitlines()
    row = everything[0].split()[0]
    assert main(["plan", "quickstart", "--scale", "cpu", "--only", row]) == 0
    selected = capsys.readouterr().out.strip().splitlines()
    assert all(line.split()[0] == row for line in selected[:-1]) and len(selected) <= len(everything)
    assert main(["plan", "quickstart", "--scale", "cpu", "--only", "no_such_row"]) == 2
    assert "--only no_such_row: not a row of this plan; rows:" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["plan", "no_such_experiment"], "unknown experiment 'no_such_experiment'; known: quickstart"),
        (["plan", "quickstart", "--scale", "cpu", "--set", "epochs=-3"], "'epochs': -3 is not >= 1"),
        (["plan", "quickstart", "--scale", "cpu", "--set", "epoch=3"], "'epoch' is not a field"),
        (["plan", "quickstart", "--scale", "huge"], "scale 'huge' is not one of"),
        (["run", "robust_binary", "--scale", "smoke", "--set", "eps_255=0.0314"], "'eps_255': 0.0314 is not in"),
    ],
)
def test_bad_input_exits_2_with_the_field_before_any_work(argv, message, capsys, tmp_path):
    runs = ROOT / "checkpoints" / "robust_binary"
    before = sorted(runs.iterdir()) if runs.exists() else None  # a development checkout may hold trained runs
    assert main([*argv, "--params", str(ROOT / "params.yaml")]) == 2
    assert message in capsys.readouterr().err
    assert (sorted(runs.iterdir()) if runs.exists() else None) == before  # nothing written, nothing removed
