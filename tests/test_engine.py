"""The run engine: runs hashed on settings *and* code, train/resume/skip, records, load_run, the registry.

Run identity (issue 18, point 3): the driver's code is always in the hash (``code=`` is required), the
reporting code and the papers' quoted numbers never are, a run reused across a code change is linked
under the new code, and a run resumed under other code records it."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch
from synthetic import tiny_dataset

from rewire import methods
from rewire.experiments import engine
from rewire.experiments.engine import ModelSpec, RunContext, RunRequest, fit_run, load_run
from rewire.experiments.engine import identity as engine_identity
from rewire.methods.pruning import attach_fixed_mask
from rewire.sparse.masks import current_mask
from rewire.train import checkpoint
from rewire.train.trainer import Callback, TrainingHparams

pytestmark = pytest.mark.usefixtures("one_thread")
SPEC = ModelSpec("small_convnet", num_classes=3, kwargs={"width": 4})
DRIVER = __name__  # this test module drives the runs below: it is part of their code hash
TOY_DRIVER = "rewire.experiments.toy_exp.runs"  # the runs module of the `toy_experiment` fixture's package


def context(root: Path, **kwargs) -> RunContext:
    return RunContext(
        tiny_dataset(),
        torch.device("cpu"),
        batch_size=10,
        checkpoint_root=root,
        progress=False,
        **{"code": (DRIVER,), **kwargs},
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
    original = engine_identity._module_file
    source = original(module).read_text()
    assert old in source
    copy = tmp_path / f"edited_{module.replace('.', '_')}.py"
    copy.write_text(source.replace(old, new, 1))
    monkeypatch.setattr(engine_identity, "_module_file", lambda name: copy if name == module else original(name))


@pytest.fixture
def toy_experiment(tmp_path, monkeypatch):
    """An experiment package ``rewire.experiments.toy_exp`` in ``tmp_path``: runs, report and paper modules."""
    from rewire import experiments

    package = tmp_path / "packages" / "toy_exp"
    package.mkdir(parents=True)
    files = {
        "__init__.py": "from rewire.experiments.toy_exp.report import report\nfrom rewire.experiments.toy_exp.runs import run\n",
        "runs.py": "from rewire.experiments.toy_exp import paper\nfrom rewire.reporting import claims\n\ndef run():\n    return 1\n",
        "report.py": "from rewire.experiments.toy_exp import paper\n\ndef report():\n    return 'table'\n",
        "paper.py": "QUOTED_TOP1 = 71.2\n",
        "net.py": (
            "import torch.nn as nn\n\n\nclass TinyNet(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
            "        self.conv = nn.Conv2d(3, 4, 3)\n        self.head = nn.Linear(4, 3)\n\n"
            "    def forward(self, x):\n        return self.head(self.conv(x).mean((2, 3)))\n"
        ),
    }
    for name, text in files.items():
        (package / name).write_text(text)
    monkeypatch.setattr(experiments, "__path__", [*experiments.__path__, str(package.parent)])
    yield package
    for name in [m for m in sys.modules if m.startswith("rewire.experiments.toy_exp")]:
        del sys.modules[name]


def rewrite(path: Path, old: str, new: str) -> None:
    """Edit a file and move its modification time on (the engine caches digests by path and time)."""
    path.write_text(path.read_text().replace(old, new))
    later = path.stat().st_mtime_ns + 10**9
    os.utime(path, ns=(later, later))


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


EDIT_OF_THE_METHOD = ("rewire.methods.pruning", '"mask_iou": 1.0', '"mask_iou": 1.0, "edited": 1')


def test_a_change_of_the_code_a_run_executes_trains_again(tmp_path, monkeypatch):
    monkeypatch.delenv(engine.REUSE_ENV, raising=False)
    first = fit(context(tmp_path))
    # a behaviour change in the method's code (the fixed-mask monitor's module): a new directory, trained anew,
    # with a warning that names the old run, both code hashes and the flag that would reuse it
    edited_module(monkeypatch, tmp_path, *EDIT_OF_THE_METHOD)
    with pytest.warns(UserWarning, match=rf"{first.run_dir.name}.*other code.*--reuse-checkpoints"):
        second = fit(context(tmp_path))
    assert second.trained_now and second.run_dir != first.run_dir
    assert second.run_dir.name.rsplit("-", 1)[0] == first.run_dir.name.rsplit("-", 1)[0]  # same settings
    assert second.record["code_history"] == [second.record["code"]] and not second.record["resumed_under_other_code"]


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


def test_code_outside_a_runs_closure_does_not_change_it(tmp_path, monkeypatch, toy_experiment):
    # A dense run driven by a driver that imports no method never imports the DNW family (this test module
    # imports every family through `rewire.methods`: as a driver, it would put them all in the hash).
    toy = context(tmp_path, code=(TOY_DRIVER,))
    first = fit(toy, sparse=False)
    edited_module(
        monkeypatch,
        tmp_path,
        "rewire.methods.dnw",
        "return TopKMagnitude(k, allowed)",
        "return TopKMagnitude(k + 0, allowed)",
    )
    again = fit(context(tmp_path, code=(TOY_DRIVER,)), sparse=False)
    assert not again.trained_now and again.run_dir == first.run_dir


# ------------------------------------------------------------------ the driver is always in the hash


def test_a_run_needs_its_driver_before_any_work(tmp_path):
    with pytest.raises(TypeError, match=r"RunContext needs code=.*code=\(__name__,\)"):
        RunContext(tiny_dataset(), torch.device("cpu"), batch_size=10, checkpoint_root=tmp_path)
    with pytest.raises(TypeError, match=r"got code=\(\)"):
        context(tmp_path, code=())
    with pytest.raises(ValueError, match=r"'rewire.experiments.no_such_runs', not an importable Python module"):
        context(tmp_path, code=("rewire.experiments.no_such_runs",))
    model = SPEC.build()
    with pytest.raises(TypeError, match=r"RunRequest 'toy' needs code="):
        RunRequest(name="toy", config={}, model=model, hparams=HPARAMS, train_loader=None, eval_loader=None)
    with pytest.raises(TypeError, match=r"fit_run takes a RunRequest and RunOptions"):
        fit_run("toy", {"method": "dense"})
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize(
    "module, old, new",
    [
        (
            "rewire.experiments.engine.run_dirs",
            "return RunPlace(identity_dir, identity_dir)\n",
            "return RunPlace(identity_dir, identity_dir, None)\n",
        ),  # the engine's closure
        ("rewire.train.trainer", "self.epochs_trained_in_last_fit = 0", "self.epochs_trained_in_last_fit = 0 * 1"),
        (DRIVER, "DRIVER = __name__", "DRIVER = str(__name__)"),  # the driver named in code=
    ],
    ids=["engine", "training loop", "driver"],
)
def test_the_engine_and_the_driver_are_in_a_runs_code_hash(tmp_path, monkeypatch, module, old, new):
    """A dense model without callbacks: the model's own modules, the engine and the driver define its code."""
    first = fit(context(tmp_path), sparse=False)
    # torch.nn's own modules are not hashed; the model's rewire module is
    model_modules = {type(m).__module__ for m in first.model.modules() if type(m).__module__.startswith("rewire.")}
    assert model_modules == {"rewire.models.convnet"}
    roots = {"rewire.experiments.engine", DRIVER, *model_modules}
    assert first.record["code"] == engine.code_fingerprint(roots) == first.run_dir.name.rsplit("-", 1)[1]
    assert module in engine.module_closure(roots)
    edited_module(monkeypatch, tmp_path, module, old, new)
    with pytest.warns(UserWarning, match="trains again"):
        second = fit(context(tmp_path), sparse=False)
    assert second.trained_now and second.run_dir != first.run_dir


def test_the_models_own_modules_are_in_a_runs_code_hash(tmp_path, toy_experiment):
    """A model whose module neither the engine nor the driver imports: fit_run adds it to the hash itself."""
    import importlib

    net = importlib.import_module("rewire.experiments.toy_exp.net")
    assert "rewire.experiments.toy_exp.net" not in engine.module_closure({"rewire.experiments.engine", TOY_DRIVER})
    toy = context(tmp_path / "runs", code=(TOY_DRIVER,))
    first = toy.fit("toy", seed=0, config={"method": "dense"}, model=net.TinyNet(), hparams=HPARAMS)
    roots = {"rewire.experiments.engine", TOY_DRIVER, "rewire.experiments.toy_exp.net"}
    assert first.record["code"] == engine.code_fingerprint(roots)
    rewrite(toy_experiment / "net.py", "mean((2, 3))", "mean((2, 3)) * 1")  # a behaviour change of the model only
    with pytest.warns(UserWarning, match="trains again"):
        second = toy.fit("toy", seed=0, config={"method": "dense"}, model=net.TinyNet(), hparams=HPARAMS)
    assert second.trained_now and second.run_dir != first.run_dir


# ------------------------------------------------------------------ reporting code and quoted numbers are not


def test_report_and_paper_modules_never_change_a_runs_identity_and_the_driver_does(tmp_path, toy_experiment):
    driver = TOY_DRIVER
    closure = engine.module_closure({driver})
    assert driver in closure and "rewire.experiments.toy_exp" in closure  # the package's __init__ runs first
    assert not any(m.endswith((".report", ".paper")) or m.startswith("rewire.reporting") for m in closure)
    assert engine.left_out_of_code_hash("rewire.pipeline.params") and engine.left_out_of_code_hash("rewire.reporting")
    assert engine.left_out_of_code_hash("rewire.experiments.robust_binary.paper")
    assert not engine.left_out_of_code_hash("rewire.experiments.engine")  # "report" only inside an experiment package

    first = fit(context(tmp_path / "runs", code=(driver,)), sparse=False)
    rewrite(toy_experiment / "paper.py", "71.2", "71.3")  # a number quoted from a paper
    rewrite(toy_experiment / "report.py", "'table'", "'another table'")  # the reporting code
    again = fit(context(tmp_path / "runs", code=(driver,)), sparse=False)
    assert not again.trained_now and again.run_dir == first.run_dir
    rewrite(toy_experiment / "runs.py", "return 1", "return 2")  # the driver
    with pytest.warns(UserWarning, match="trains again"):
        changed = fit(context(tmp_path / "runs", code=(driver,)), sparse=False)
    assert changed.trained_now and changed.run_dir != first.run_dir


# ------------------------------------------------------------------ reuse across a code change, resume under other code


def test_reusing_a_checkpoint_across_a_code_change_is_explicit_recorded_and_linked(tmp_path, monkeypatch):
    monkeypatch.delenv(engine.REUSE_ENV, raising=False)
    first = fit(context(tmp_path))
    edited_module(monkeypatch, tmp_path, *EDIT_OF_THE_METHOD)
    with pytest.warns(UserWarning, match="reusing"):
        reused = fit(context(tmp_path, reuse_checkpoints=True))
    assert not reused.trained_now and reused.run_dir == first.run_dir
    assert reused.record["reused_across_code_change"] is True
    assert reused.record["code"] != reused.record["code_of_this_call"]
    link_dir = tmp_path / reused.record["reused_under"]
    assert link_dir.name == f"{first.run_dir.name.rsplit('-', 1)[0]}-{reused.record['code_of_this_call']}"
    link = json.loads((link_dir / engine.LINK_FILE).read_text())
    assert link["reused_run"] == first.run_dir.name and link["its_code"] == first.record["code"]
    # Before issue 18 the reuse was not linked, and this plain rerun (no flag) trained the run again, which the
    # test above accepted as intended: the reuse trap. The link makes the new code find the reused run.
    again = fit(context(tmp_path))
    assert not again.trained_now and again.run_dir == first.run_dir
    assert again.final["test_top1"] == first.final["test_top1"]
    assert not (link_dir / "checkpoint.pt").exists()  # the link holds no second copy of the run
    assert load_run(link_dir).record["name"] == "toy"  # loading follows the link too


def test_a_link_to_a_vanished_run_is_refused_with_advice(tmp_path, monkeypatch):
    first = fit(context(tmp_path))
    edited_module(monkeypatch, tmp_path, *EDIT_OF_THE_METHOD)
    with pytest.warns(UserWarning, match="reusing"):
        reused = fit(context(tmp_path, reuse_checkpoints=True))
    (first.run_dir / "checkpoint.pt").unlink()
    with pytest.raises(checkpoint.CheckpointError, match=rf"links to the reused run .*{first.run_dir.name}.*delete"):
        fit(context(tmp_path))
    assert reused.record["reused_under"]


class StopAfterEpochs(Callback):
    """Interrupts training after ``epochs`` epochs (a killed run); ``None`` never interrupts."""

    def __init__(self, epochs: int | None) -> None:
        self.epochs = epochs

    def on_epoch_start(self, trainer) -> None:
        if self.epochs is not None and trainer.epoch >= self.epochs:
            raise KeyboardInterrupt("killed")


def test_a_run_resumed_under_other_code_records_every_code_it_ran_under(tmp_path, monkeypatch):
    ctx = context(tmp_path)
    config = {"method": "dense", "sparsity": 0.0}
    with pytest.raises(KeyboardInterrupt):  # killed after its first epoch under the first code
        ctx.fit("toy", seed=0, config=config, model=ctx.build(SPEC, 0), hparams=HPARAMS, callbacks=[StopAfterEpochs(1)])
    (unfinished,) = tmp_path.iterdir()
    first_code = unfinished.name.rsplit("-", 1)[1]
    edited_module(
        monkeypatch, tmp_path, "rewire.models.convnet", "return self.classifier(", "return 1 * self.classifier("
    )
    with pytest.warns(UserWarning, match="reusing"):
        resumed = context(tmp_path, reuse_checkpoints=True).fit(
            "toy", seed=0, config=config, model=ctx.build(SPEC, 0), hparams=HPARAMS, callbacks=[StopAfterEpochs(None)]
        )
    assert resumed.trained_now and resumed.run_dir == unfinished and len(resumed.records) == 2
    record = resumed.record
    assert record["code"] == first_code and record["code_of_this_call"] != first_code
    assert record["code_history"] == [first_code, record["code_of_this_call"]]
    assert record["resumed_under_other_code"] is True
    assert json.loads((unfinished / "history.json").read_text())["run"]["code_history"] == record["code_history"]


def test_a_run_directory_of_other_code_is_refused_with_advice(tmp_path, monkeypatch):
    first = fit(context(tmp_path))
    edited_module(monkeypatch, tmp_path, *EDIT_OF_THE_METHOD)
    roots = {
        "rewire.experiments.engine",
        DRIVER,
        "rewire.methods.pruning",
        "rewire.models.convnet",
        "rewire.sparse.masks",
    }
    new_code = engine.code_fingerprint(roots)
    imposter = first.run_dir.with_name(first.run_dir.name.rsplit("-", 1)[0] + "-" + new_code)
    first.run_dir.rename(imposter)  # copied by hand under the new code's name
    old_code = first.record["code"]
    with pytest.raises(checkpoint.CheckpointError, match="holds a run of other code") as refused:
        fit(context(tmp_path))
    message = str(refused.value)
    assert str(imposter) in message and old_code in message and new_code in message
    assert "--reuse-checkpoints" in message and f"delete {imposter}" in message
    assert str(first.run_dir) in message  # where to move it back


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
        "dpf_frozen",
        "dpf_structured",
        "incremental",
        "sfp",
        "sfp_bn",
        "dpf_structured_bn",
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
