"""`python -m rewire.pipeline.validate check`: every block against its experiment's schema, before any work
(issue 18, point 6): a bad value exits 2 naming the field's path, the value, the range and an example,
in a few seconds, and writes nothing; a notebook parameter the schema does not know is refused."""

from __future__ import annotations

import ast
import copy
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import yaml

from rewire.experiments import registry
from rewire.pipeline import params, validate

ROOT = Path(__file__).resolve().parents[1]


def write_params(folder: Path, change) -> Path:
    """The repository's params (blocks merged) with ``change(params)`` applied, as one params.yaml in ``folder``."""
    values = copy.deepcopy(params.load(ROOT / "params.yaml"))
    change(values)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    return folder / "params.yaml"


def setter(scale: str, block: str, *path, value=None, append=None):
    def change(values):
        target = values[scale][block]
        for key in path[:-1]:
            target = target[key]
        if append is not None:
            target[path[-1]] = [*target[path[-1]], append]
        else:
            target[path[-1]] = value

    return change


def run_check(params_path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rewire.pipeline.validate", "check", "--params", str(params_path),
         "--dvc-yaml", str(ROOT / "dvc.yaml"), *extra],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip


def test_the_repository_params_are_valid_at_every_scale():
    checked = validate.check_pipeline(ROOT / "params.yaml", ROOT / "dvc.yaml", all_scales=True)
    assert set(checked["checked"]) == {"smoke", "cpu", "gpu", "paper"}
    for scale, blocks in checked["checked"].items():
        assert set(registry.names()) <= set(blocks), scale
        for block, schema in blocks.items():  # every block built by its experiment's own Config
            experiment = validate.experiment_of(block)
            assert schema.startswith(f"{registry.entry(experiment).package}.") and schema.endswith(".Config"), schema


def test_an_experiment_without_a_schema_is_refused(monkeypatch):
    monkeypatch.setitem(registry.EXPERIMENTS, "quickstart", registry.ExperimentEntry("quickstart", "json", None, "x"))
    with pytest.raises(params.ParamsError, match="experiment 'quickstart' exposes no schema"):
        validate.schema("quickstart")


# (experiment, change at the cpu scale, words the message must hold besides the block's path and "e.g.")
BAD_VALUES = [
    ("quickstart", setter("cpu", "quickstart", "epochs", value=-3), ["'epochs'", "-3"]),
    ("tiny_graphs", setter("cpu", "tiny_graphs", "methods", append="nosuch"), ["methods", "'nosuch'"]),
    ("tiny_graphs", setter("cpu", "tiny_graphs", "static_epochs", value=-3), ["static_epochs", "-3"]),
    ("mobilenet_dnw", setter("cpu", "mobilenet_dnw", "rows", append="no_such_row"), ["rows", "'no_such_row'"]),
    ("robust_binary", setter("cpu", "robust_binary", "rows", 0, "keep", value=1.5), ["keep", "1.5"]),
    ("robust_binary", setter("cpu", "robust_binary", "rows", 0, "p", value=-1), ["p", "-1"]),
    ("robust_binary", setter("cpu", "robust_binary", "eps_255", value=0.0314), ["eps_255", "0.0314"]),
    ("dpf_theory", setter("cpu", "dpf_theory", "steps", value=0), ["steps", "0"]),
    ("dpf_sweeps", setter("cpu", "dpf_sweeps", "epochs", value=-3), ["epochs", "-3"]),
    ("imagenet", setter("cpu", "imagenet", "no_such_field", value=1), ["no_such_field"]),
]


@pytest.mark.parametrize(("experiment", "change", "words"), BAD_VALUES, ids=[f"{e}-{w[0]}" for e, _, w in BAD_VALUES])
def test_a_bad_value_exits_2_naming_path_value_and_example_and_writes_nothing(
    tmp_path, capsys, experiment, change, words
):
    bad = write_params(tmp_path / "params", change)
    out, blocks = tmp_path / "params_check.json", tmp_path / "blocks"
    code = validate.main(["check", "--params", str(bad), "--dvc-yaml", str(ROOT / "dvc.yaml"),
                          "--out", str(out), "--blocks", str(blocks)])  # fmt: skip
    message = capsys.readouterr().err
    assert code == 2, message
    lines = [line for line in message.splitlines() if f"'cpu.{experiment}'" in line]
    assert lines, message
    for word in words:
        assert word in message, message
    assert "e.g." in message or "known" in message or "one of" in message, message  # an example or the choices
    assert not out.exists() and not blocks.exists()  # nothing written


def test_the_check_takes_seconds_and_writes_nothing_on_a_bad_value(tmp_path):
    """The first DVC stage, as DVC runs it (a fresh interpreter): a bad value stops it within seconds."""
    bad = write_params(tmp_path / "params", setter("cpu", "quickstart", "epochs", value=-3))
    out = tmp_path / "params_check.json"
    started = time.perf_counter()
    result = run_check(bad, "--out", str(out))
    seconds = time.perf_counter() - started
    assert result.returncode == 2 and "'epochs': -3" in result.stderr
    assert not out.exists()
    assert seconds < 60, f"validation took {seconds:.1f} s"  # about 6 s on an idle 2-core machine


def test_other_scales_are_checked_with_all_scales(tmp_path, capsys):
    bad = write_params(tmp_path, setter("paper", "quickstart", "epochs", value=0))
    argv = ["check", "--params", str(bad), "--dvc-yaml", str(ROOT / "dvc.yaml")]
    assert validate.main(argv) == 0  # the active scale (cpu) is valid
    assert validate.main([*argv, "--all-scales"]) == 2
    err = capsys.readouterr().err
    assert "'paper.quickstart'" in err and "epochs" in err


def test_a_notebook_parameter_the_schema_does_not_know_is_refused(tmp_path):
    notebooks = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", notebooks)
    nb = nbformat.read(ROOT / "notebooks/00_quickstart.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source += "\nmomentum_typo: float = 0.9\n"
    nbformat.write(nb, notebooks / "00_quickstart.ipynb")
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    with pytest.raises(params.ParamsError, match=r"'momentum_typo' is not a field of .*Config"):
        validate.check_pipeline(ROOT / "params.yaml", tmp_path / "dvc.yaml")


def test_the_pipeline_imports_no_experiment_module():
    """pipeline/ reaches an experiment only through the registry (its schema), never by an import line."""
    allowed = {
        "rewire.experiments",
        "rewire.experiments.registry",
        "rewire.experiments.schema",
        "rewire.experiments.scales",
    }
    offenders = []
    for path in sorted((ROOT / "lib/rewire/pipeline").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module
                else [a.name for a in node.names] if isinstance(node, ast.Import) else []
            )  # fmt: skip
            offenders += [f"{path.name}: {n}" for n in names if n.startswith("rewire.experiments") and n not in allowed]
    assert not offenders, offenders


def test_a_variant_block_is_checked_as_its_experiment():
    assert validate.experiment_of("robust_binary_imagenet100") == "robust_binary"
    with pytest.raises(params.ParamsError, match="'nosuch' is not an experiment; known: quickstart"):
        validate.experiment_of("nosuch")


def test_a_notebook_without_the_reserved_parameters_is_refused():
    declared = params.notebook_parameters(ROOT / "notebooks/00_quickstart.ipynb")
    del declared["scale"]
    with pytest.raises(
        params.ParamsError, match="must declare 'scale' in its parameters cell, e.g. scale: str = 'smoke'"
    ):
        validate.check_block("quickstart", {}, "here", "notebooks/00_quickstart.ipynb", declared)


def test_the_parameters_cell_is_read_whatever_its_comments_and_annotations(tmp_path):
    """Papermill's own reader skips `x: int = 0  # 0 = all` and `grid: list | str = ...`; ours reads both."""
    from test_params import write_notebook

    cell = 'scale: str = "smoke"  # a = b\ngrid: list | str = [\n    {"methods": ["dpf"]},  # one entry\n]\nout_dir: str = ""\n'
    declared = params.notebook_parameters(write_notebook(tmp_path / "nb.ipynb", cell))
    assert declared == {
        "scale": {"type": "str", "default": "smoke"},
        "grid": {"type": "list | str", "default": [{"methods": ["dpf"]}]},
        "out_dir": {"type": "str", "default": ""},
    }
    assert params.matches_type("paper", "list | str") and not params.matches_type(3, "list | str")
