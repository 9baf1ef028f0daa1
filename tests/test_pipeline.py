"""Executing a notebook as a stage: params injected, artefacts moved in only on success."""

import json
import os

import nbformat
import pytest
from test_params import PARAMETERS, write_notebook, write_params

from rewire.pipeline import stage as pipeline

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
