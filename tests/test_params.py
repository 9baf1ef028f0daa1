"""params.yaml: scales, validation against the notebooks' parameters cells, smoke defaults."""

import re
from pathlib import Path

import nbformat
import pytest
import yaml

from rewire.pipeline import params

ROOT = Path(__file__).resolve().parents[1]


def write_notebook(path: Path, parameters_source: str, body: str = "print('ok')") -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(parameters_source, metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(body),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


PARAMETERS = 'scale: str = "smoke"\nepochs: int = 1\nlr: float = 0.1\nseeds: list[int] = [0]\nout_dir: str = ""\n'


def write_params(path: Path, scale="cpu", **cpu_values) -> Path:
    block = {"epochs": 2, "lr": 0.5, "seeds": [0, 1], **cpu_values}
    path.write_text(
        yaml.safe_dump(
            {"scale": scale, "smoke": {"toy": {"epochs": 1}}, "cpu": {"toy": block}, "paper": {"toy": block}}
        )
    )
    return path


def test_stage_values_follow_the_active_scale(tmp_path):
    path = write_params(tmp_path / "params.yaml")
    assert params.stage_values("toy", path) == ("cpu", {"epochs": 2, "lr": 0.5, "seeds": [0, 1]})
    assert params.stage_values("toy", path, scale="smoke") == ("smoke", {"epochs": 1})


def test_unknown_scale_names_the_valid_ones_and_the_switch(tmp_path):
    path = write_params(tmp_path / "params.yaml", scale="gpu")
    with pytest.raises(params.ParamsError, match=r"'gpu' is not one of smoke, cpu, paper.*dvc exp run -S scale=paper"):
        params.stage_values("toy", path)


def test_missing_stage_block_is_reported(tmp_path):
    path = write_params(tmp_path / "params.yaml")
    with pytest.raises(params.ParamsError, match="'cpu.other' is missing"):
        params.stage_values("other", path)


def test_values_are_checked_against_the_notebook_annotations(tmp_path):
    declared = params.notebook_parameters(write_notebook(tmp_path / "nb.ipynb", PARAMETERS))
    assert declared["epochs"] == {"type": "int", "default": 1}
    assert declared["seeds"] == {"type": "list[int]", "default": [0]}
    params.check_values({"epochs": 3, "lr": 1, "seeds": [1, 2]}, declared, "here")  # int is a valid float
    with pytest.raises(params.ParamsError, match=r"here: 'epochs' must be int, got str '10x'"):
        params.check_values({"epochs": "10x"}, declared, "here")
    with pytest.raises(params.ParamsError, match=r"'seeds' must be list\[int\]"):
        params.check_values({"seeds": [0, "1"]}, declared, "here")
    with pytest.raises(params.ParamsError, match="'epoch' is not a parameter of the notebook"):
        params.check_values({"epoch": 3}, declared, "here")
    with pytest.raises(params.ParamsError, match="'epochs' must be int, got bool"):
        params.check_values({"epochs": True}, declared, "here")


def pipeline_stages():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    found = []
    for name, stage in stages.items():
        match = re.search(r"rewire\.pipeline (\S+) --stage (\S+)", stage["cmd"])
        if match:
            found.append((name, ROOT / match.group(1), match.group(2)))
    return found


def test_dvc_yaml_runs_at_least_the_quickstart_notebook():
    assert ("quickstart", ROOT / "notebooks/00_quickstart.ipynb", "quickstart") in pipeline_stages()


@pytest.mark.parametrize("scale", params.SCALES)
def test_every_stage_has_valid_values_at_every_scale(scale):
    for _, notebook, stage in pipeline_stages():
        _, values = params.stage_values(stage, ROOT / "params.yaml", scale=scale)
        params.check_values(values, params.notebook_parameters(notebook), f"{scale}.{stage}")


def test_committed_notebooks_carry_the_smoke_values_and_no_outputs():
    for _, notebook, stage in pipeline_stages():
        _, smoke = params.stage_values(stage, ROOT / "params.yaml", scale="smoke")
        declared = params.notebook_parameters(notebook)
        assert {k: declared[k]["default"] for k in smoke} == smoke, notebook.name
        assert declared["scale"]["default"] == "smoke"
        nb = nbformat.read(notebook, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{notebook.name} has outputs"


def test_the_default_scale_of_the_pipeline_is_cpu():
    assert params.load(ROOT / "params.yaml")["scale"] == "cpu"


def rewire_imports(source: str) -> set[str]:
    import ast

    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rewire"):
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names if alias.name.startswith("rewire"))
    return modules


def module_file(module: str) -> Path | None:
    base = ROOT / "lib" / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None  # a name imported from a module, not a module


def stage_entry_modules() -> list[tuple[str, set[str]]]:
    """(stage, the rewire modules its command runs): the notebook's imports, or the ``-m`` module."""
    import shlex

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    entries = []
    for name, stage in stages.items():
        words = shlex.split(stage["cmd"])
        modules = {words[2]} if words[:2] == ["python", "-m"] else set()
        if words[:3] == ["python", "-m", "rewire.pipeline"]:
            nb = nbformat.read(ROOT / words[3], as_version=4)
            modules |= set().union(*(rewire_imports(c.source) for c in nb.cells if c.cell_type == "code"))
            modules.add("rewire.pipeline.stage")
        entries.append((name, modules))
    return entries


def test_each_stage_depends_on_every_library_file_it_runs():
    """A library change that can alter a stage's results must make DVC rerun that stage; deps name folders."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, pending in stage_entry_modules():
        deps = [ROOT / d for d in stages[name]["deps"]]
        assert len([d for d in deps if d.suffix == ".py"]) <= 6, f"stage '{name}': name folders, not single files"
        files, seen = set(), set()
        pending = set(pending)
        while pending:
            module = pending.pop()
            seen.add(module)
            path = module_file(module)
            if path is None:
                continue
            files.add(path)
            parent = module.rpartition(".")[0]
            pending |= ({parent} if parent else set()) | (rewire_imports(path.read_text()) - seen)
        files.discard(ROOT / "lib" / "rewire" / "__init__.py")  # version string only
        uncovered = [str(f.relative_to(ROOT)) for f in sorted(files) if not any(f == d or d in f.parents for d in deps)]
        assert not uncovered, f"dvc.yaml stage '{name}' misses deps: {uncovered}"


def test_a_bad_grid_value_stops_the_pipeline_before_any_stage(tmp_path, capsys):
    from rewire.pipeline import validate

    text = (ROOT / "params.yaml").read_text()
    cpu = text.index("\ncpu:\n")  # the active scale's block

    def in_cpu_block(old, new):
        return text[:cpu] + text[cpu:].replace(old, new, 1)

    bad = tmp_path / "params.yaml"
    bad.write_text(in_cpu_block("sparsities: [0.9]", "sparsities: [0.9, -0.8]"))
    assert bad.read_text() != text
    out = tmp_path / "params_check.json"
    assert validate.main(["check", "--params", str(bad), "--dvc-yaml", str(ROOT / "dvc.yaml"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "grid entry 0" in err and "-0.8" in err
    assert not out.exists()  # nothing written
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(in_cpu_block("methods: [dense,", "methods: [dnese,"))
    assert validate.main(["check", "--params", str(unknown), "--dvc-yaml", str(ROOT / "dvc.yaml")]) == 2
    assert "unknown method 'dnese'" in capsys.readouterr().err


def test_the_validation_stage_runs_before_every_other_stage():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        if name != "validate_params":
            assert "results/params_check.json" in stage["deps"], f"stage '{name}' could start before validation"
