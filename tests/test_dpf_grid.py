"""The DPF sweep's grid per scale, its validation split and the learning-rate selection."""

import pytest
import torch
from synthetic import tiny_dataset

from rewire.experiments import dpf_sweep
from rewire.experiments.dpf_sweep import GridPoint, Recipe, grid_points
from rewire.pipeline import params as params_module

BLOCK = {"epochs": 4, "model": "resnet20", "seeds": [0, 1]}


def test_a_grid_expands_methods_by_sparsities_with_dense_once():
    points = grid_points({**BLOCK, "grid": [{"methods": ["dense", "dpf", "snip"], "sparsities": [0.5, 0.9]}]})
    assert [p.name for p in points] == ["dense-0.0", "dpf-0.5", "dpf-0.9", "snip-0.5", "snip-0.9"]
    assert all(p.recipe == Recipe(epochs=4, model="resnet20", seeds=(0, 1)) for p in points)


def test_tags_presets_and_overrides_shape_each_entrys_recipe():
    points = grid_points(
        {
            **BLOCK,
            "grid": [
                {"tag": "fig9-p4", "methods": ["dpf"], "sparsities": [0.9], "overrides": {"update_every": 4}},
                {"tag": "wrn", "model": "wrn28_2", "methods": ["dpf"], "sparsities": [0.9]},
            ],
        }
    )
    assert points[0].name == "fig9-p4/dpf-0.9" and points[0].recipe.update_every == 4
    assert points[1].recipe.model == "wrn28_2" and points[1].recipe.update_every == Recipe(epochs=1).update_every
    assert points[0].directory("runs").as_posix() == "runs/fig9-p4/dpf-0.9"


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ([], "non-empty list"),
        ([{"methods": ["dpff"], "sparsities": [0.9]}], "unknown method 'dpff'"),
        ([{"methods": ["dpf"], "sparsities": [1.5]}], "sparsity"),
        ([{"methods": ["dpf"], "sparsities": [0.0]}], "needs a target sparsity"),
        ([{"methods": ["dpf"], "sparsities": [0.9], "colour": 1}], "unknown keys colour"),
        ([{"methods": ["dpf"], "sparsities": [0.9], "overrides": {"lrr": 1}}], "not recipe fields"),
        ([{"methods": ["dpf"], "sparsities": [0.9], "overrides": {"epochs": 0}}], "epochs"),
        (
            [
                {"methods": ["dpf"], "sparsities": [0.9]},
                {"methods": ["dpf"], "sparsities": [0.9], "overrides": {"lr": 0.5}},
            ],
            "appears twice",
        ),
    ],
)
def test_bad_grids_stop_with_a_message(grid, message):
    with pytest.raises(ValueError, match=message):
        grid_points({**BLOCK, "grid": grid})


def test_every_scale_of_params_yaml_has_a_valid_grid():
    for scale in ("smoke", "cpu", "paper"):
        _, values = params_module.stage_values("dpf_sweeps", "params.yaml", scale)
        points = grid_points(values)
        assert any(p.method == "dpf" for p in points), scale
    _, cpu = params_module.stage_values("dpf_sweeps", "params.yaml", "cpu")
    cpu_recipe = Recipe.from_params(cpu)
    assert cpu_recipe.test_per_class == 0 and len(cpu_recipe.seeds) >= 3  # the full test set, at least 3 seeds


def test_lr_search_needs_a_validation_split():
    with pytest.raises(ValueError, match="validation_fraction"):
        Recipe(epochs=2, finetune_lrs=(0.1, 0.01))


def test_the_validation_split_is_held_out_of_training_and_recorded(tmp_path):
    data = tiny_dataset()
    train_part, validation = data.train_validation_split(0.2, seed=0)
    recipe = Recipe(epochs=2, model="small_convnet", batch_size=8, validation_fraction=0.2)
    ctx = dpf_sweep.make_context(
        recipe, train_part, torch.device("cpu"), tmp_path, progress=False, validation=validation
    )
    phase = dpf_sweep.run_phases(ctx, "dense", 0.0, 0)[0]
    assert len(train_part.train_labels) == 24 and len(validation.test_labels) == 6
    assert all("val_top1" in r and "test_top1" in r for r in phase.records)
    # the validation images are training images that the training part does not hold
    held = {tuple(x.flatten().tolist()) for x in validation.test_images}
    kept = {tuple(x.flatten().tolist()) for x in train_part.train_images}
    assert held and not held & kept


def test_eval_every_skips_evaluations_but_never_the_last_epoch(tmp_path):
    data = tiny_dataset()
    train_part, validation = data.train_validation_split(0.2, seed=0)
    recipe = Recipe(epochs=3, model="small_convnet", batch_size=8, validation_fraction=0.2, eval_every=2)
    assert recipe.hparams().eval_every == 2 and recipe.hparams(epochs=1).eval_every == 2
    ctx = dpf_sweep.make_context(
        recipe, train_part, torch.device("cpu"), tmp_path, progress=False, validation=validation
    )
    records = dpf_sweep.run_phases(ctx, "dense", 0.0, 0)[0].records
    evaluated = [r["epoch"] for r in records if "test_top1" in r]
    validated = [r["epoch"] for r in records if "val_top1" in r]
    assert [r["epoch"] for r in records] == [1, 2, 3] and evaluated == validated == [2, 3]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_eval_every_must_be_a_positive_whole_number(bad):
    with pytest.raises(ValueError, match="eval_every"):
        Recipe(epochs=2, eval_every=bad)


def test_lr_selection_picks_the_best_validation_accuracy_and_never_reads_the_test_set(tmp_path, monkeypatch):
    recipe = Recipe(
        epochs=2, model="small_convnet", batch_size=8, validation_fraction=0.2, finetune_lrs=(0.3, 0.02, 0.001)
    )
    ctx = dpf_sweep.make_context(recipe, tiny_dataset(), torch.device("cpu"), tmp_path, progress=False)
    scores = {0.3: 40.0, 0.02: 55.0, 0.001: 55.0}  # a tie: the earlier candidate wins
    calls = []

    class Fake:
        def __init__(self, lr):
            self.records = [{"val_top1": scores[lr], "test_top1": 100.0 - scores[lr]}]

    def fake_phases(ctx_, method, sparsity, seed, lrs=None):
        calls.append((method, seed, dict(lrs)))
        return [Fake(lrs["finetune"])]

    monkeypatch.setattr(dpf_sweep, "run_phases", fake_phases)
    lrs, log = dpf_sweep.select_lrs(ctx, "oneshot_ft", 0.9)
    assert lrs == {"finetune": 0.02}  # the best validation, not the best test (0.3 would win on test)
    assert [c[2]["finetune"] for c in calls] == [0.3, 0.02, 0.001] and {c[1] for c in calls} == {0}
    assert [row["selected"] for row in log] == [False, True, False]
    assert dpf_sweep.select_lrs(ctx, "dpf", 0.9) == ({}, [])  # DPF itself is not searched


def test_one_point_cli_still_needs_method_and_sparsity(capsys):
    assert dpf_sweep.main(["--out", "x", "--method", "dpf"]) == 2
    assert "--grid" in capsys.readouterr().err


def test_grid_point_names_match_the_report_reader():
    from rewire.experiments import dpf_report

    point = GridPoint("dpf", 0.9, Recipe(epochs=1), tag="t")
    assert dpf_report.point_dir("runs", "dpf", 0.9, "t") == point.directory("runs")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # runpy: the module is already imported
def test_the_sweeps_runs_hash_the_driver_even_when_it_runs_as_a_script(tmp_path):
    # `python -m rewire.experiments.dpf_sweep` (the DVC stage) runs the module as "__main__"; a code hash
    # built from __name__ would leave the driver out, and a change of the driver would reuse old models
    import runpy

    from rewire.experiments import engine

    # the module's code executed under a name that is not its import name, as `python -m` does (a name other
    # than "__main__" itself, so that its command line does not start)
    as_script = runpy.run_module("rewire.experiments.dpf_sweep", run_name="__mp_main__")
    ctx = as_script["make_context"](Recipe(epochs=1), tiny_dataset(), torch.device("cpu"), tmp_path, progress=False)
    assert "rewire.experiments.dpf_sweep" in engine.module_closure(ctx.code)
    assert dpf_sweep.DRIVER_MODULE == dpf_sweep.__name__  # the literal names this very module
