"""The run engine: runs hashed on settings *and* code, train/resume/skip, records, load_run, the registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from synthetic import tiny_dataset

from rewire import methods
from rewire.experiments import engine
from rewire.experiments.engine import ModelSpec, RunContext, load_run
from rewire.methods.pruning import attach_fixed_mask
from rewire.pipeline import report
from rewire.sparse.masks import current_mask
from rewire.train import checkpoint
from rewire.train.trainer import TrainingHparams

pytestmark = pytest.mark.usefixtures("one_thread")
SPEC = ModelSpec("small_convnet", num_classes=3, kwargs={"width": 4})


def context(root: Path, **kwargs) -> RunContext:
    return RunContext(
        tiny_dataset(), torch.device("cpu"), batch_size=10, checkpoint_root=root, progress=False, **kwargs
    )


HPARAMS = TrainingHparams(epochs=2, lr=0.05, weight_decay=0.0)


def fit(ctx: RunContext, seed: int = 0, sparse: bool = True):
    model = ctx.build(SPEC, seed)
    callbacks = []
    if sparse:  # a fixed, signed and asymmetric pattern: every other entry of each conv weight pruned
        attached = attach_fixed_mask(
            model, lambda group: [torch.arange(w.numel()).reshape(w.shape) % 3 != 0 for w in group.dense_weights()]
        )
        callbacks = attached.callbacks
    return ctx.fit(
        "toy",
        seed=seed,
        config={"method": "fixed" if sparse else "dense", "sparsity": 1 / 3},
        model=model,
        hparams=HPARAMS,
        callbacks=callbacks,
        model_spec=SPEC,
    )


def edited_module(monkeypatch, tmp_path, module: str, old: str, new: str) -> None:
    """Make the engine see ``module`` with ``old`` replaced by ``new`` (as if the file had been edited)."""
    original = engine._module_file
    source = original(module).read_text()
    assert old in source
    copy = tmp_path / f"edited_{module.replace('.', '_')}.py"
    copy.write_text(source.replace(old, new, 1))
    monkeypatch.setattr(engine, "_module_file", lambda name: copy if name == module else original(name))


def test_a_finished_run_is_found_again_and_not_retrained(tmp_path):
    first = fit(context(tmp_path))
    assert first.trained_now and len(first.records) == 2
    again = fit(context(tmp_path))
    assert not again.trained_now and again.run_dir == first.run_dir
    assert again.final["test_top1"] == first.final["test_top1"]
    record = json.loads((first.run_dir / engine.RECORD_FILE).read_text())
    assert record["code"] == first.run_dir.name.rsplit("-", 1)[1]  # the directory names the code
    assert record["commit"] and record["model"] == SPEC.as_dict()
    assert record["checkpoint"].endswith(f"{first.run_dir.name}/checkpoint.pt")
    assert not record["checkpoint"].startswith("/")  # never a machine path


def test_a_change_of_the_code_a_run_executes_trains_again(tmp_path, monkeypatch):
    first = fit(context(tmp_path))
    # a behaviour change in the method's code (the fixed-mask monitor's module): a new directory, trained anew
    edited_module(monkeypatch, tmp_path, "rewire.methods.pruning", '"mask_iou": 1.0', '"mask_iou": 1.0, "edited": 1')
    second = fit(context(tmp_path))
    assert second.trained_now and second.run_dir != first.run_dir
    assert second.run_dir.name.rsplit("-", 1)[0] == first.run_dir.name.rsplit("-", 1)[0]  # same settings


def test_documentation_and_formatting_do_not_change_a_runs_identity(tmp_path, monkeypatch):
    first = fit(context(tmp_path))
    edited_module(
        monkeypatch,
        tmp_path,
        "rewire.methods.pruning",
        '"""Adds the mask statistics',
        '"""(Reworded.)  Adds the mask statistics',
    )
    again = fit(context(tmp_path))
    assert not again.trained_now and again.run_dir == first.run_dir


def test_code_outside_a_runs_closure_does_not_change_it(tmp_path, monkeypatch):
    first = fit(context(tmp_path), sparse=False)  # a dense run never imports the DNW family
    edited_module(
        monkeypatch,
        tmp_path,
        "rewire.methods.dnw",
        "return TopKMagnitude(k, allowed)",
        "return TopKMagnitude(k + 0, allowed)",
    )
    again = fit(context(tmp_path), sparse=False)
    assert not again.trained_now and again.run_dir == first.run_dir


def test_reusing_a_checkpoint_across_a_code_change_is_explicit_and_recorded(tmp_path, monkeypatch):
    first = fit(context(tmp_path))
    edited_module(monkeypatch, tmp_path, "rewire.methods.pruning", '"mask_iou": 1.0', '"mask_iou": 1.0, "edited": 1')
    with pytest.warns(UserWarning, match="reusing"):
        reused = fit(context(tmp_path, reuse_checkpoints=True))
    assert not reused.trained_now and reused.run_dir == first.run_dir
    assert reused.record["reused_across_code_change"] is True
    assert reused.record["code"] != reused.record["code_of_this_call"]


def test_a_run_directory_of_other_code_is_refused_with_advice(tmp_path, monkeypatch):
    first = fit(context(tmp_path))
    edited_module(monkeypatch, tmp_path, "rewire.methods.pruning", '"mask_iou": 1.0', '"mask_iou": 1.0, "edited": 1')
    new_code = engine.code_fingerprint(
        {"rewire.experiments.engine", "rewire.methods.pruning", "rewire.models.convnet", "rewire.sparse.masks"}
    )
    imposter = first.run_dir.with_name(first.run_dir.name.rsplit("-", 1)[0] + "-" + new_code)
    first.run_dir.rename(imposter)  # copied by hand under the new code's name
    with pytest.raises(checkpoint.CheckpointError, match="holds a run of other code"):
        fit(context(tmp_path))


def test_load_run_restores_the_trained_masks_and_outputs(tmp_path):
    result = fit(context(tmp_path))
    loaded = load_run(result.run_dir)
    x = torch.randn(4, 3, 16, 16)
    result.model.eval()
    with torch.no_grad():
        assert torch.equal(loaded.model(x), result.model(x))
    for layer in loaded.layers:
        module = loaded.model.get_submodule(layer["layer"].rpartition(".")[0])
        expected = torch.arange(layer["entries"]).reshape(current_mask(module).shape) % 3 != 0
        assert torch.equal(current_mask(module), expected)
        assert layer["pruned"] == int((~expected).sum())
    summary = loaded.summary()
    assert summary["method"] == "fixed" and summary["target_sparsity"] == pytest.approx(1 / 3)
    total = sum(layer["entries"] for layer in loaded.layers)
    assert summary["reached_sparsity"] == pytest.approx(sum(layer["pruned"] for layer in loaded.layers) / total)
    assert summary["macs_sparse"] < summary["macs_dense"]
    assert summary["test_top1"] == result.final["test_top1"]


def test_load_run_refuses_missing_and_corrupt_runs_with_advice(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a finished run"):
        load_run(tmp_path / "nothing-here")
    result = fit(context(tmp_path))
    (result.run_dir / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(checkpoint.CheckpointError):
        load_run(result.run_dir)


def test_the_registry_knows_every_family_and_refuses_unknown_names():
    assert {"dnw", "dnw_no_update", "rg"} <= set(methods.names(family="dnw"))
    assert set(methods.names(family="dpf")) == {
        "dpf",
        "dpf_structured",
        "incremental",
        "sfp",
        "dpf_ft",
        "incremental_ft",
        "dpf_rewind",
    }
    assert set(methods.names(family="pruning")) == {"snip", "oneshot_ft", "lottery"}
    assert set(methods.names(family="dynamic_sparse")) == {"sm", "dsr"}
    with pytest.raises(ValueError, match=r"unknown method 'dfp'; known methods: .*dpf.*rewire/methods"):
        methods.get("dfp")


def test_a_group_method_attaches_from_the_registry():
    model = SPEC.build()
    attached = methods.get("sm").attach(model, 0.5, seed=0)
    assert attached.group is not None and type(attached.callbacks[0]).__name__ == "SparseMomentum"


def test_the_readme_refuses_results_of_another_scale(tmp_path):
    stage = tmp_path / "results" / "quickstart"
    stage.mkdir(parents=True)
    (stage / "summary.md").write_text("### Quickstart\n\n| a |\n|---|\n| 1 |\n")
    (stage / "label.json").write_text(json.dumps({"scale": "smoke"}))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.START}\nold\n{report.END}\n")
    with pytest.raises(report.ScaleError, match="scale 'smoke'.*--allow-scale smoke"):
        report.update_readme(readme, tmp_path / "results", tmp_path / "figures", tmp_path / "sections")
    assert "old" in readme.read_text()  # nothing written
    assert report.update_readme(
        readme, tmp_path / "results", tmp_path / "figures", tmp_path / "sections", ("cpu", "smoke")
    )


def test_the_training_recipe_is_part_of_a_runs_settings(tmp_path):
    """Two runs that differ only in their hyperparameters live in two directories (never a checkpoint clash)."""
    ctx = context(tmp_path)
    first = fit(ctx, sparse=False)
    model = ctx.build(SPEC, 0)
    other = ctx.fit(
        "toy",
        seed=0,
        config={"method": "dense", "sparsity": 1 / 3},
        model=model,
        hparams=TrainingHparams(epochs=2, lr=0.05, weight_decay=0.0, precision="bf16"),
        model_spec=SPEC,
    )
    assert other.trained_now and other.run_dir != first.run_dir
    assert other.record["config"]["hparams"]["precision"] == "bf16"


def test_model_export_takes_the_newest_run_of_each_settings(tmp_path):
    import os

    from rewire.pipeline import models

    stage = tmp_path / "checkpoints" / "toy"
    for name, age in (("dpf-seed0-aaaa-old", 100), ("dpf-seed0-aaaa-new", 0), ("dpf-seed1-bbbb-c", 0), ("half-x-y", 0)):
        run = stage / name
        run.mkdir(parents=True)
        (run / "record.json").write_text("{}")
        if name != "half-x-y":  # no checkpoint: an unfinished run is never exported
            (run / "checkpoint.pt").write_bytes(b"x")
        os.utime(run / "record.json", (1e9 - age, 1e9 - age))
    assert [p.name for p in models.finished_runs(stage)] == ["dpf-seed0-aaaa-new", "dpf-seed1-bbbb-c"]
    exported = models.export(tmp_path / "checkpoints", tmp_path / "models", track=False)
    assert exported == {"toy": 2} and (tmp_path / "models/toy/dpf-seed0-aaaa-new/checkpoint.pt").exists()
    assert not (tmp_path / "models/toy/dpf-seed0-aaaa-old").exists()
