"""Executing a notebook as a stage: params checked against the experiment's schema, injected,
artefacts moved in only on success; a failure keeps its advice and leaves nothing behind."""

import json
import os
import sys
import types
from dataclasses import dataclass, field

import nbformat
import pytest
from test_params import PARAMETERS, write_notebook, write_params

from rewire.experiments import registry
from rewire.experiments.schema import ExperimentConfig, check
from rewire.pipeline import stage as pipeline


@dataclass(frozen=True)
class ToyConfig(ExperimentConfig):
    """The schema of the toy notebook (PARAMETERS): what an experiment's config.py declares."""

    IGNORED = ("scale", "out_dir", "checkpoint_dir", "data_root")
    epochs: int = field(default=1, metadata=check(at_least=1, example=10))
    lr: float = field(default=0.1, metadata=check(above=0, example=0.1))
    seeds: list[int] = field(default=(0,), metadata=check(at_least=0, example=[0, 1, 2]))


@pytest.fixture(autouse=True)
def toy_experiment(monkeypatch):
    """Register the stage 'toy' as an experiment whose package exposes ToyConfig."""
    package = types.ModuleType("toy_experiment")
    package.Config, package.plan, package.run, package.report = ToyConfig, None, None, None
    monkeypatch.setitem(sys.modules, "toy_experiment", package)
    monkeypatch.setitem(registry.EXPERIMENTS, "toy", registry.ExperimentEntry("toy", "toy_experiment", None, "toy"))
    return package


WRITES_ARTEFACT = """
import json, pathlib
pathlib.Path(out_dir, "metrics.json").write_text(json.dumps({"scale": scale, "epochs": epochs, "seeds": seeds}))
"""


def test_success_writes_the_executed_notebook_and_artefacts(tmp_path):
    notebook = write_notebook(tmp_path / "toy.ipynb", PARAMETERS, WRITES_ARTEFACT)
    out = tmp_path / "results" / "toy"
    executed = pipeline.run_notebook(
        notebook,
        "toy",
        out,
        params_path=write_params(tmp_path / "params.yaml"),
        failed_dir=tmp_path / "results" / "failed",
    )
    assert json.loads((out / "metrics.json").read_text()) == {"scale": "cpu", "epochs": 2, "seeds": [0, 1]}
    injected = [
        c for c in nbformat.read(executed, as_version=4).cells if "injected-parameters" in c.metadata.get("tags", [])
    ]
    assert len(injected) == 1 and "epochs = 2" in injected[0].source
    text = executed.read_text()
    assert str(tmp_path) not in text and ".tmp-" not in text  # a committed result names no machine path
    assert 'out_dir = "results/toy"' in injected[0].source  # relative to the notebook's folder, the final name
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["toy"]  # no staging directory left
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # not the private mode of a temporary directory


def test_failure_leaves_no_results_and_keeps_the_failed_notebook(tmp_path):
    notebook = write_notebook(tmp_path / "toy.ipynb", PARAMETERS, WRITES_ARTEFACT + "\nraise RuntimeError('boom')")
    out = tmp_path / "results" / "toy"
    with pytest.raises(Exception, match="boom"):
        pipeline.run_notebook(
            notebook,
            "toy",
            out,
            params_path=write_params(tmp_path / "params.yaml"),
            failed_dir=tmp_path / "results" / "failed",
        )
    assert not out.exists()
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["failed"]
    assert (tmp_path / "results" / "failed" / "toy.ipynb").exists()


def test_type_error_in_params_stops_before_running(tmp_path, capsys):
    notebook = write_notebook(tmp_path / "toy.ipynb", PARAMETERS, WRITES_ARTEFACT)
    params_path = write_params(tmp_path / "params.yaml", epochs="ten")
    out = tmp_path / "results" / "toy"
    code = pipeline.main([str(notebook), "--stage", "toy", "--out", str(out), "--params", str(params_path)])
    assert code == 2
    assert "'epochs' must be int, got str 'ten'" in capsys.readouterr().err
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


def test_paths_under_the_checkout_are_written_relative_to_it(tmp_path, monkeypatch):
    """A warning printed by library code names its file with an absolute path; the committed copy must not."""
    monkeypatch.chdir(tmp_path)  # the stage runs from the checkout's root (here tmp_path, the notebook's folder too)
    prints_path = "import pathlib\nprint(pathlib.Path.cwd().resolve() / 'lib' / 'mod.py', 'line 537')"
    notebook = write_notebook(tmp_path / "toy.ipynb", PARAMETERS, WRITES_ARTEFACT + prints_path)
    executed = pipeline.run_notebook(
        notebook,
        "toy",
        tmp_path / "results" / "toy",
        params_path=write_params(tmp_path / "params.yaml"),
        failed_dir=tmp_path / "results" / "failed",
    )
    text = executed.read_text()
    assert "lib/mod.py line 537" in text and str(tmp_path.resolve()) not in text


def test_a_value_out_of_the_schema_range_stops_before_running(tmp_path, capsys):
    notebook = write_notebook(tmp_path / "toy.ipynb", PARAMETERS, WRITES_ARTEFACT)
    params_path = write_params(tmp_path / "params.yaml", epochs=-3)
    out = tmp_path / "results" / "toy"
    code = pipeline.main([str(notebook), "--stage", "toy", "--out", str(out), "--params", str(params_path)])
    assert code == 2
    assert "'cpu.toy': 'epochs': -3 is not >= 1; e.g. epochs: 10" in capsys.readouterr().err
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


def test_a_notebook_parameter_the_schema_does_not_know_is_refused(tmp_path, capsys):
    notebook = write_notebook(tmp_path / "toy.ipynb", PARAMETERS + "momentum: float = 0.9\n", WRITES_ARTEFACT)
    out = tmp_path / "results" / "toy"
    code = pipeline.main(
        [str(notebook), "--stage", "toy", "--out", str(out), "--params", str(write_params(tmp_path / "params.yaml"))]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "'momentum' is not a field of" in err and "ToyConfig" in err
    assert not out.exists()


NO_DATA = """
import pathlib
pathlib.Path(data_root).mkdir()
from rewire.data import DataNotFoundError
raise DataNotFoundError("no prepared data for 'cifar10' in data/cifar10. Get it in one of three ways:\\n  (a) dvc pull data.dvc\\nTried: torchvision download failed (URLError)")
"""


def test_a_stage_without_data_prints_the_whole_advice_and_leaves_no_empty_folder(tmp_path, capsys, monkeypatch):
    """Issue 18, point 10: the line DVC shows carries the advice of `python -m rewire.data prepare`."""
    monkeypatch.chdir(tmp_path)  # the failed notebook goes to results/failed/ under the working directory
    parameters = PARAMETERS + 'data_root: str = "data"\n'
    notebook = write_notebook(tmp_path / "toy.ipynb", parameters, NO_DATA)
    out = tmp_path / "results" / "toy"
    code = pipeline.main(
        [str(notebook), "--stage", "toy", "--out", str(out), "--params", str(write_params(tmp_path / "params.yaml"))]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "error: stage 'toy' failed: DataNotFoundError: no prepared data for 'cifar10'" in err
    assert "(a) dvc pull data.dvc" in err and "Tried: torchvision download failed" in err
    assert not (tmp_path / "data").exists()  # the folder the failed stage created is gone
    assert not out.exists() and (tmp_path / "results" / "failed" / "toy.ipynb").exists()


def test_the_stage_checks_the_real_advice_of_the_data_package():
    """The advice printed is the data package's own message (what `python -m rewire.data prepare` prints)."""
    from rewire.data.cache import _not_found_message

    text = pipeline.failure_message(
        types.SimpleNamespace(ename="DataNotFoundError", evalue=_not_found_message("cifar10", "data/cifar10", ["x"]))
    )
    assert text.startswith("DataNotFoundError: no prepared data for 'cifar10'") and "dvc pull data.dvc" in text
