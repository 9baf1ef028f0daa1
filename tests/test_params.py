"""params.yaml: scales, validation against the notebooks' parameters cells, smoke defaults."""

import re
from pathlib import Path

import nbformat
import pytest
import yaml

from rewire.experiments import registry
from rewire.pipeline import params, validate

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
    path = write_params(tmp_path / "params.yaml", scale="tpu")
    with pytest.raises(
        params.ParamsError, match=r"'tpu' is not one of smoke, cpu, gpu, paper.*dvc exp run -S scale=paper"
    ):
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
        modules = {words[2], f"{words[2]}.__main__"} if words[:2] == ["python", "-m"] else set()
        if words[:3] == ["python", "-m", "rewire.pipeline"]:
            nb = nbformat.read(ROOT / words[3], as_version=4)
            modules |= set().union(*(rewire_imports(c.source) for c in nb.cells if c.cell_type == "code"))
            modules.add("rewire.pipeline.stage")
            # the stage runner imports the experiment's package by name (registry), not by an import line
            modules.add(registry.entry(validate.experiment_of(words[words.index("--stage") + 1])).package)
        if name == "validate_params":  # it builds every experiment's Config
            modules |= {e.package for e in registry.EXPERIMENTS.values()}
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


def params_variant(folder: Path, old: str, new: str, scale: str = "cpu") -> Path:
    """A copy of the repository's params (``params.yaml``, and ``scales.yaml`` when the blocks live
    there) in ``folder`` with ``old`` replaced by ``new`` once in the ``scale`` block; its params.yaml."""
    folder.mkdir(parents=True, exist_ok=True)
    blocks = Path(params.source(ROOT / "params.yaml"))
    text = blocks.read_text()
    start = text.index(f"\n{scale}:\n")
    changed = text[:start] + text[start:].replace(old, new, 1)
    assert changed != text, f"{old!r} is not in the {scale} block"
    if blocks.name != "params.yaml":
        (folder / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    (folder / blocks.name).write_text(changed)
    return folder / "params.yaml"


def test_a_bad_grid_value_stops_the_pipeline_before_any_stage(tmp_path, capsys):
    bad = params_variant(tmp_path / "bad", "sparsities: [0.9]", "sparsities: [0.9, -0.8]")
    out = tmp_path / "params_check.json"
    assert validate.main(["check", "--params", str(bad), "--dvc-yaml", str(ROOT / "dvc.yaml"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "grid[0]" in err and "-0.8" in err  # the schema's path of grid entry 0, and the value
    assert not out.exists()  # nothing written
    unknown = params_variant(tmp_path / "unknown", "methods: [dense,", "methods: [dnese,")
    assert validate.main(["check", "--params", str(unknown), "--dvc-yaml", str(ROOT / "dvc.yaml")]) == 2
    assert "unknown method 'dnese'" in capsys.readouterr().err


def test_the_validation_stage_runs_before_every_other_stage():
    """Every stage depends on its resolved block, an output of validate_params, written only when all is valid."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    validated = {next(iter(o)) if isinstance(o, dict) else o for o in stages["validate_params"]["outs"]}
    assert "results/params_check.json" in validated
    for name, stage in stages.items():
        if name != "validate_params":
            assert f"results/params/{name}.yaml" in stage["deps"], f"stage '{name}' could start before validation"
            assert f"results/params/{name}.yaml" in validated, f"validate_params does not write {name}'s block"


def test_stages_track_only_the_scale_and_their_own_block():
    """`dvc exp show` lists tracked params: only `scale`; a value reruns a stage through its resolved block file."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        assert stage.get("params", []) == ["scale"], f"stage '{name}' tracks more params than `scale`"
    assert "params.yaml" in stages["validate_params"]["deps"]  # any edit reruns the (seconds-long) validation
    if (ROOT / params.BLOCKS_FILE).exists():
        assert params.BLOCKS_FILE in stages["validate_params"]["deps"]


def test_validation_writes_each_stage_its_own_block_so_a_value_reruns_only_its_stage(tmp_path):
    written = {}
    for label, new in (("before", "lr: "), ("after", "lr: 0.0123 #")):
        text = Path(params.source(ROOT / "params.yaml")).read_text()
        start = re.compile(r"\n  tiny_graphs:.*\n").search(text, text.index("\ncpu:\n")).start()
        old = text[start : text.index("lr: ", start) + 4]  # the cpu tiny_graphs block up to its lr
        path = params_variant(tmp_path / label, old, old[:-4] + new) if label == "after" else ROOT / "params.yaml"
        checked = validate.check_pipeline(path, ROOT / "dvc.yaml", scale="cpu")
        written[label] = {
            p.name: p.read_text() for p in validate.write_blocks(checked["blocks"], tmp_path / label / "blocks")
        }
    differ = sorted(name for name in written["before"] if written["before"][name] != written["after"][name])
    assert differ == ["tiny_graphs.yaml"]
    assert "lr: 0.0123" in written["after"]["tiny_graphs.yaml"]


def test_moving_the_blocks_to_scales_yaml_keeps_every_value(tmp_path):
    """tools/split_params.py: params.yaml keeps `scale` (and overrides), scales.yaml the blocks; nothing changes."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("split_params", ROOT / "tools" / "split_params.py")
    split_params = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(split_params)
    if (ROOT / params.BLOCKS_FILE).exists():
        pytest.skip("the blocks are in scales.yaml already")
    for name in ("params.yaml", "dvc.yaml"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    assert split_params.main(["--root", str(tmp_path)]) == 0
    assert params.load(tmp_path / "params.yaml") == params.load(ROOT / "params.yaml")
    assert set(yaml.safe_load((tmp_path / "params.yaml").read_text())) == {"scale"}
    assert "      - scales.yaml" in (tmp_path / "dvc.yaml").read_text()
    assert split_params.main(["--root", str(tmp_path)]) == 1  # once only
    # an override in params.yaml wins over its block
    (tmp_path / "params.yaml").write_text("scale: cpu\ncpu:\n  quickstart:\n    epochs: 3\n")
    assert params.stage_values("quickstart", tmp_path / "params.yaml")[1]["epochs"] == 3
    assert params.source(tmp_path / "params.yaml") == str(tmp_path / "scales.yaml")
