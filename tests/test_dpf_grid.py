"""The DPF sweep's grid per scale, its validation split and the learning-rate selection."""

import pytest
import torch
from synthetic import tiny_dataset

from rewire.experiments.dpf_sweeps import cli, procedures, runs
from rewire.experiments.dpf_sweeps.config import GridPoint, Recipe, grid_points
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
        ([{"methods": ["dpf"], "sparsities": [0.9], "colour": 1}], r"'grid\[0\]\.colour' is not a field"),
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
    ctx = runs.make_context(recipe, train_part, torch.device("cpu"), tmp_path, progress=False, validation=validation)
    phase = procedures.run_phases(ctx, "dense", 0.0, 0)[0]
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
    assert runs.recipe(recipe).eval_every == 2 and runs.recipe(recipe, epochs=1).eval_every == 2
    ctx = runs.make_context(recipe, train_part, torch.device("cpu"), tmp_path, progress=False, validation=validation)
    records = procedures.run_phases(ctx, "dense", 0.0, 0)[0].records
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
    ctx = runs.make_context(recipe, tiny_dataset(), torch.device("cpu"), tmp_path, progress=False)
    scores = {0.3: 40.0, 0.02: 55.0, 0.001: 55.0}  # a tie: the earlier candidate wins
    calls = []

    class Fake:
        def __init__(self, lr):
            self.records = [{"val_top1": scores[lr], "test_top1": 100.0 - scores[lr]}]

    def fake_phases(ctx_, method, sparsity, seed, lrs=None):
        calls.append((method, seed, dict(lrs)))
        return [Fake(lrs["finetune"])]

    monkeypatch.setattr(procedures, "run_phases", fake_phases)
    lrs, log = procedures.select_lrs(ctx, "oneshot_ft", 0.9)
    assert lrs == {"finetune": 0.02}  # the best validation, not the best test (0.3 would win on test)
    assert [c[2]["finetune"] for c in calls] == [0.3, 0.02, 0.001] and {c[1] for c in calls} == {0}
    assert [row["selected"] for row in log] == [False, True, False]
    assert procedures.select_lrs(ctx, "dpf", 0.9) == ({}, [])  # DPF itself is not searched


def test_one_point_cli_still_needs_method_and_sparsity(capsys):
    assert cli.main(["--out", "x", "--method", "dpf"]) == 2
    assert "--grid" in capsys.readouterr().err


def test_a_grid_entrys_part_picks_its_stage_and_runs_directory():
    points = grid_points(
        {
            **BLOCK,
            "grid": [
                {"methods": ["dense", "dpf"], "sparsities": [0.9]},
                {"tag": "late", "methods": ["snip"], "sparsities": [0.9], "part": 2},
            ],
        }
    )
    assert [(p.name, p.part) for p in points] == [("dense-0.0", 1), ("dpf-0.9", 1), ("late/snip-0.9", 2)]
    assert [p.directory("results/runs").as_posix() for p in points] == [
        "results/runs/dense-0.0",
        "results/runs/dpf-0.9",
        "results/runs_2/late/snip-0.9",
    ]
    with pytest.raises(ValueError, match="part"):
        grid_points({**BLOCK, "grid": [{"methods": ["dpf"], "sparsities": [0.9], "part": 0}]})
    with pytest.raises(ValueError, match="appears twice"):  # one point, two stages
        grid_points({**BLOCK, "grid": [{"methods": ["dpf"], "sparsities": [0.9]},
                                       {"methods": ["dpf"], "sparsities": [0.9], "part": 2}]})  # fmt: skip


def test_the_cli_runs_one_part_and_lists_it_even_when_empty(tmp_path, capsys):
    import json

    params = tmp_path / "params.yaml"
    params.write_text("scale: smoke\nsmoke:\n  dpf_sweeps:\n    epochs: 2\n    grid:\n"
                      "      - {methods: [dpf], sparsities: [0.9]}\n")  # fmt: skip
    out = tmp_path / "runs"
    assert cli.main(["--grid", "--part", "2", "--out", str(out), "--params", str(params)]) == 0
    assert json.loads((tmp_path / "runs_2" / "part.json").read_text()) == {"part": 2, "scale": "smoke", "points": []}
    assert not out.exists() and sorted(p.name for p in (tmp_path / "runs_2").iterdir()) == ["part.json"]
    assert cli.main(["--part", "2", "--method", "dpf", "--sparsity", "0.9", "--out", str(out)]) == 2
    assert "with --grid" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["--grid", "--part", "two", "--out", str(out)])
    assert "whole number" in capsys.readouterr().err


def test_grid_point_names_match_the_report_reader():
    from rewire.experiments.dpf_sweeps import tables

    point = GridPoint("dpf", 0.9, Recipe(epochs=1), tag="t")
    assert tables.point_dir("runs", "dpf", 0.9, "t") == point.directory("runs")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # runpy: the module is already imported
def test_the_sweeps_runs_hash_the_driver_even_when_it_runs_as_a_script(tmp_path):
    # `python -m rewire.experiments.dpf_sweeps` (the DVC stage) runs a module as "__main__"; a code hash
    # built from __name__ would leave the driver out, and a change of the driver would reuse old models
    import runpy

    from rewire.experiments import engine

    # the module's code executed under a name that is not its import name, as `python -m` does (a name other
    # than "__main__" itself, so that its command line does not start)
    as_script = runpy.run_module("rewire.experiments.dpf_sweeps.runs", run_name="__mp_main__")
    ctx = as_script["make_context"](Recipe(epochs=1), tiny_dataset(), torch.device("cpu"), tmp_path, progress=False)
    closure = engine.module_closure(ctx.code)
    assert "rewire.experiments.dpf_sweeps.runs" in closure and "rewire.experiments.dpf_sweeps.procedures" in closure
    assert runs.DRIVER_MODULES[0] == runs.__name__ and runs.DRIVER_MODULES[1] == procedures.__name__
    # the paper's numbers and the report are not in the identity: editing a quoted number never retrains
    assert not any(name.endswith((".paper", ".report")) for name in closure)


# --------------------------------------------------------------------- the experiment contract


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"grid": [{"methods": ["dpf"], "sparsities": [1.2]}]},
            r"grid\[0\]\.sparsities\[0\]: 1\.2 is not a target sparsity in \(0, 1\)",
        ),
        ({"grid": [{"methods": ["dpf", "magic"], "sparsities": [0.9]}]}, r"grid\[0\]\.methods: unknown method 'magic'"),
        (
            {"grid": [{"preset": "resnet_imagenet", "methods": ["dpf"], "sparsities": [0.9]}]},
            r"grid\[0\]\.preset: unknown preset",
        ),
        ({"epochs": 0}, r"'epochs': 0 is not >= 1; e\.g\. epochs: 300"),
        (
            {"grid": [{"methods": ["dpf"], "sparsities": [0.9], "overrides": {"epochs": 0}}]},
            r"grid\[0\] recipe: 'epochs': 0",
        ),
        ({"milestones": [0.5, 1.5]}, r"'milestones': 1\.5 is not in \(0, 1\)"),
        ({"grid": "table1"}, r"'grid': 'table1' is neither a list of entries nor 'paper'"),
        ({"lr": -0.1}, r"'lr': -0\.1 is not > 0"),
        ({"model": "resnet18"}, r"'model': 'resnet18' is not a known model"),
    ],
)
def test_bad_values_stop_with_the_field_path_before_any_work(change, message):
    from rewire.experiments.dpf_sweeps import Config
    from rewire.experiments.schema import ConfigError

    _, smoke = params_module.stage_values("dpf_sweeps", "params.yaml", "smoke")
    where = "params.yaml 'smoke.dpf_sweeps'"
    with pytest.raises(ConfigError, match=message) as error:
        Config.from_values({**smoke, **change}, where=where)
    assert str(error.value).startswith(where)


def test_notebook_parameters_are_config_fields_with_the_smoke_blocks_values():
    from rewire.experiments.dpf_sweeps import Config
    from rewire.experiments.schema import config_fields

    declared = params_module.notebook_parameters("notebooks/03_dpf_sweeps.ipynb")
    fields = config_fields(Config)
    assert set(declared) <= set(fields) | set(Config.IGNORED)
    assert set(fields) <= set(declared)  # every field can be set from the notebook
    _, smoke = params_module.stage_values("dpf_sweeps", "params.yaml", "smoke")
    defaults = Config.from_values(smoke).as_dict()
    for name in fields:
        expected = smoke[name] if name in smoke else defaults[name]
        assert declared[name]["default"] == expected, name
    # the pipeline passes every block value to the notebook: its annotations accept every scale's block
    for scale in ("smoke", "cpu", "paper"):
        _, values = params_module.stage_values("dpf_sweeps", "params.yaml", scale)
        params_module.check_values(values, declared, where=scale)


def test_plan_sizes_per_scale():
    from rewire.experiments.dpf_sweeps import Config, plan

    sizes = {}
    for scale in ("smoke", "cpu", "paper"):
        _, values = params_module.stage_values("dpf_sweeps", "params.yaml", scale)
        config = Config.from_values(values, where=scale)
        specs = plan(config)
        assert len({(s.row, s.seed) for s in specs}) == len(specs)
        assert {s.row for s in specs} == {p.name for p in config.points()}
        sizes[scale] = (len(config.points()), len(specs))
    # smoke: 15 points x 1 seed; cpu: 4 table points x 5 seeds + 5 x 3 (dpf_frozen included) + 4 budget points x
    # 1 seed; paper: 294 x 3
    assert sizes == {"smoke": (15, 15), "cpu": (13, 39), "paper": (294, 882)}


def test_the_command_line_plans_every_scale(capsys):
    from rewire.__main__ import main

    assert main(["plan", "dpf_sweeps", "--scale", "cpu"]) == 0
    assert "39 runs at scale 'cpu'" in capsys.readouterr().out
    assert main(["plan", "dpf_sweeps", "--scale", "paper", "--only", "table2-resnet56/dpf_ft-0.95"]) == 0
    assert "3 runs at scale 'paper'" in capsys.readouterr().out
    assert main(["plan", "dpf_sweeps", "--scale", "smoke", "--set", "epochs=0"]) == 2
    assert "'epochs': 0 is not >= 1" in capsys.readouterr().err


def _synthetic_points() -> list[dict]:
    """run.json points of a 3-seed grid at 0.9 (unstructured) and 0.3 (structured), made up, no training."""
    recipe = Recipe(epochs=2, model="small_convnet", seeds=(0, 1, 2)).as_dict()
    points = []
    for index, (method, sparsity) in enumerate(
        [("dense", 0.0), ("dpf", 0.9), ("snip", 0.9), ("incremental", 0.9), ("oneshot_ft", 0.9), ("dpf_ft", 0.9),
         ("dpf_rewind", 0.9), ("sfp", 0.3), ("dpf_structured", 0.3)]
    ):  # fmt: skip
        runs_ = [
            {
                "seed": seed,
                "test_top1": 50.0 + index + seed,
                "sparsity": sparsity,
                "filter_sparsity": sparsity if method in ("sfp", "dpf_structured") else None,
                "delta": 0.1,
                "macs_dense": 100,
                "macs_sparse": 100 * (1 - sparsity),
                "seconds_per_iteration": 0.010 * (1 + 0.1 * seed) * (1.05 if method == "dpf" else 1.0),
                "history": [{"epoch": 1, "phase": method, "delta": 0.1, "mask_iou": 0.9}],
                "mask_convergence": [1.0, 0.5, 0.01] if method == "dpf" else [],
                "layer_sparsity": {"conv1.weight": sparsity},
            }
            for seed in (0, 1, 2)
        ]
        points.append({"method": method, "sparsity": sparsity, "structured": method in ("sfp", "dpf_structured"),
                       "recipe": recipe, "runs": runs_, "tag": "", "model": "small_convnet"})  # fmt: skip
    return points


def test_the_report_writes_every_declared_output_and_one_overhead_number(tmp_path, monkeypatch):
    import importlib
    import json

    import pandas as pd
    import yaml
    from test_dpf_overhead import _benchmark

    from rewire.experiments.dpf_sweeps import Config, report
    from rewire.experiments.dpf_sweeps.report import HEADLINE
    from rewire.experiments.dpf_sweeps.runs import write_point
    from rewire.experiments.dpf_sweeps.tables import outcome_from_runs
    from rewire.reporting import claims as claims_module

    unstructured = ["dense", "dpf", "snip", "incremental", "oneshot_ft", "dpf_ft", "dpf_rewind"]
    grid = [{"methods": unstructured, "sparsities": [0.9]}, {"methods": ["sfp", "dpf_structured"], "sparsities": [0.3]}]
    config = Config.from_values({"epochs": 2, "model": "small_convnet", "seeds": [0, 1, 2], "grid": grid})
    label = {"scale": "cpu", "seeds": [0, 1, 2], "data_source": "synthetic", "data_source_description": "", "device": "cpu",
             "torch": "", "rewire": "", "commit": ""}  # fmt: skip
    # the DVC path: the stage dpf_runs writes every point's run.json, the notebook reads them back
    for point in _synthetic_points():
        write_point(tmp_path / "runs" / f"{point['method']}-{point['sparsity']}", point, label)
    outcome = outcome_from_runs(config, tmp_path / "runs", scale="cpu")
    # Figure 10's paired benchmark (tested in test_dpf_overhead.py): hand-made timings, a 10 % overhead
    monkeypatch.setattr(importlib.import_module("rewire.experiments.dpf_sweeps.report"), "benchmark_overhead",
                        lambda model, **settings: _benchmark())  # fmt: skip
    assert outcome.data_source["kind"] == "synthetic" and len(outcome.runs) == 9
    tmp_path = tmp_path / "out"
    metrics = report(config, outcome, tmp_path, outcome.extra["label"])
    assert tuple(metrics) == HEADLINE and json.loads((tmp_path / "metrics.json").read_text()) == metrics
    assert metrics["top1"] == 52.0 and metrics["baseline_top1"] == 51.0  # DPF at 0.9 and dense, means over seeds
    assert metrics["claims_held"] + metrics["claims_reversed"] + metrics["claims_not_decided"] == 8
    stage = yaml.safe_load(open("dvc.yaml", encoding="utf-8"))["stages"]["dpf_sweeps"]
    for out in stage["outs"] + stage["metrics"]:
        name = (next(iter(out)) if isinstance(out, dict) else out).removeprefix("results/dpf_sweeps/")
        if not name.endswith(".ipynb"):
            assert (tmp_path / name).exists(), name
    # Figure 10: details.json's overhead is the claim's number, from the paired benchmark (issue 20: the runs'
    # wall times gave -18.65 % in the claim beside +7.5 % in the metric); the runs' 5 % wall-time gap is not read
    details = json.loads((tmp_path / "details.json").read_text())
    table = pd.read_csv(tmp_path / "claims.csv")
    (overhead,) = table[table.claim.str.contains("overhead")].itertuples()
    assert details["dpf_overhead_pct"] == pytest.approx(10.0) and overhead.a_mean == pytest.approx(
        details["dpf_overhead_pct"]
    )
    assert claims_module.VERDICTS  # the verdict names the counts read
    # the plot data: every sparsity and every series present
    plot = pd.read_csv(tmp_path / "plot_accuracy_vs_sparsity.csv")
    assert plot.sparsity.tolist() == [0.0, 0.3, 0.9]
    present = {p["method"] for p in _synthetic_points()}
    assert present <= set(plot.columns) and all(plot[m].notna().any() for m in present)
