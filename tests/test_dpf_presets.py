"""The DPF paper's recipes (Appendix A.2), numbers (Tables 1, 2, 4, 5) and experiment grid as data."""

from __future__ import annotations

import dataclasses
import math

import pytest
import yaml

from rewire.experiments.dpf_sweeps import paper as dpf_paper
from rewire.experiments.dpf_sweeps import presets as dpf_presets
from rewire.experiments.dpf_sweeps.config import METHODS, STRUCTURED_METHODS, Config, Recipe
from rewire.experiments.dpf_sweeps.paper import PAPER_RESNET20
from rewire.experiments.dpf_sweeps.plan import plan
from rewire.models import known_models
from rewire.pipeline import params as params_module

RECIPE_FIELDS = {f.name for f in dataclasses.fields(Recipe)}


@pytest.mark.parametrize("name", sorted(dpf_presets.PRESETS))
def test_every_preset_builds_a_recipe_and_names_its_sources(name):
    preset = dpf_presets.PRESETS[name]
    assert set(preset) <= RECIPE_FIELDS - {"model", "seeds", "precision"}
    assert isinstance(preset["milestones"], tuple)
    recipe = Recipe(**preset, seeds=(0,))
    assert recipe.batch_size == 128 and recipe.update_every == 16 and recipe.finetune_epochs == 60
    assert set(dpf_presets.SOURCES[name]) == set(preset)
    assert all(isinstance(s, str) and s for s in dpf_presets.SOURCES[name].values())


def test_presets_hold_the_papers_values():
    """Section 5.1 'Training schedules' and Appendix A.2 'The optimal hyper-parameters for DPF'."""
    resnet, wrn, vgg = (dpf_presets.preset_for(m) for m in ("resnet56", "wrn28_4", "vgg16"))
    assert (resnet["epochs"], resnet["lr"], resnet["weight_decay"]) == (300, 0.2, 1e-4)
    assert (resnet["milestones"], resnet["gamma"]) == ((0.5, 0.75), 0.1)
    assert (wrn["epochs"], wrn["lr"], wrn["weight_decay"]) == (200, 0.1, 5e-4)
    assert (wrn["milestones"], wrn["gamma"]) == ((0.3, 0.6, 0.8), 0.2)
    assert (vgg["epochs"], vgg["lr"], vgg["weight_decay"], vgg["milestones"]) == (300, 0.2, 1e-4, (0.5, 0.75))
    # Figure 4 caption: WideResNet-28-2 decays at epochs 60, 120 and 160
    assert [round(m * wrn["epochs"]) for m in wrn["milestones"]] == [60, 120, 160]
    # what the paper leaves open is marked as our choice
    for name in dpf_presets.PRESETS:
        for field in ("finetune_lr", "lottery_rounds"):
            assert dpf_presets.SOURCES[name][field].startswith(dpf_presets.NOT_STATED)


def test_model_presets_cover_the_papers_models():
    assert set(dpf_presets.MODEL_PRESET) <= set(known_models())
    assert set(dpf_presets.MODEL_PRESET.values()) == set(dpf_presets.PRESETS)
    assert set(dpf_presets.MODEL_PRESET) == set(dpf_paper.PAPER_MODEL_NAMES)
    preset = dpf_presets.preset_for("resnet20")
    preset["lr"] = 99.0  # a copy
    assert dpf_presets.PRESETS["resnet_cifar"]["lr"] == 0.2
    with pytest.raises(ValueError, match="known models: .*resnet20"):
        dpf_presets.preset_for("resnet18")


def test_baseline_grids():
    """Appendix A.2: the learning-rate grid starts at {0.05, 0.10, 0.15, 0.20}."""
    assert dpf_presets.BASELINE_LR_GRIDS["snip"]["lr"] == (0.05, 0.10, 0.15, 0.20)
    assert {"oneshot_ft", "incremental", "snip"} <= set(dpf_presets.BASELINE_LR_GRIDS)
    for method, grids in dpf_presets.BASELINE_LR_GRIDS.items():
        assert method in METHODS
        assert set(grids) <= RECIPE_FIELDS
        assert set(dpf_presets.BASELINE_GRID_SOURCES[method]) == set(grids)
        for field, values in grids.items():
            assert all(v > 0 for v in values) and list(values) == sorted(values)
            Recipe(**{**dpf_presets.PRESETS["resnet_cifar"], field: values[0]}, seeds=(0,))
    grid = dpf_presets.BASELINE_LR_GRIDS["snip"]["lr"]
    assert dpf_presets.extend_grid(grid, 0.20) == (0.05, 0.10, 0.15, 0.20, 0.25)
    assert dpf_presets.extend_grid(grid, 0.05)[0] == 0.025
    assert dpf_presets.extend_grid(grid, 0.10) == grid


# --------------------------------------------------------------------- paper numbers


def test_paper_numbers_use_known_names():
    models, methods = set(known_models()), set(METHODS)
    keys = set()
    for row in dpf_paper.PAPER_NUMBERS:
        assert row["model"] in models and row["method"] in methods
        assert row["table"] in ("Table 1", "Table 2", "Table 4", "Table 5")
        assert row["structured"] == (row["table"] == "Table 5")
        assert row["method"] not in STRUCTURED_METHODS or row["structured"]
        assert (row["sparsity"] == 0.0) == (row["method"] == "dense")
        assert 0 <= row["sparsity"] < 1 and row["note"]
        assert math.isnan(row["top1"]) == (row["top1_std"] is None)
        key = (row["table"], row["model"], row["method"], row["sparsity"])
        assert key not in keys
        keys.add(key)


def test_tables_agree_where_they_overlap():
    """Tables 1 and 2 repeat Table 4's numbers (the extraction agrees number for number)."""
    seen = {}
    for row in dpf_paper.PAPER_NUMBERS:
        if row["structured"]:
            continue
        key = (row["model"], row["method"], row["sparsity"])
        value = (row["top1"], row["top1_std"])
        if key in seen:
            assert value == seen[key] or (math.isnan(value[0]) and math.isnan(seen[key][0])), key
        seen[key] = value


def test_golden_numbers():
    """A handful of cells read off the paper's tables."""

    def top1(model, method, sparsity, structured=False):
        row = dpf_paper.paper_number(model, method, sparsity, structured)
        return row["top1"], row["top1_std"]

    assert top1("resnet20", "dense", 0.0) == (92.48, 0.20)  # Table 1
    assert top1("resnet20", "dpf", 0.9) == (90.88, 0.07)  # Table 1
    assert top1("vgg16", "dpf", 0.95) == (93.87, 0.15)  # Table 1
    assert top1("wrn28_8", "snip", 0.999) == (74.50, 2.23)  # Table 1
    assert top1("wrn28_4", "dsr", 0.975) == (93.92, 0.16)  # Table 4
    assert top1("resnet56", "dpf_ft", 0.95) == (93.25, 0.15)  # Table 2
    assert top1("resnet32", "oneshot_ft", 0.9) == (91.72, 0.15)  # Table 2
    assert top1("wrn28_2", "sfp", 0.8, True) == (86.00, 1.09)  # Table 5
    assert top1("resnet32", "dense", 0.0, True) == (93.52, 0.13)  # Table 5 prints another dense ResNet-32
    assert top1("resnet32", "dense", 0.0) == (93.83, 0.12)
    assert math.isnan(dpf_paper.paper_number("resnet56", "snip", 0.95)["top1"])  # "*"
    assert dpf_paper.paper_number("vgg16", "dsr", 0.95) is None  # "-"
    assert dpf_paper.paper_number("wrn28_8", "dpf", 0.7) is None  # "-"
    assert dpf_paper.paper_number("resnet20", "dpf", 0.9, structured=True) is None
    assert dpf_paper.paper_number("resnet20", "dpf", 0.9)["table"] == "Table 4"
    table1 = [r for r in dpf_paper.paper_rows("wrn28_2") if r["table"] == "Table 1"]
    assert sorted({r["sparsity"] for r in table1 if r["method"] != "dense"}) == [0.9, 0.95, 0.99]
    assert dpf_paper.paper_rows("small_convnet") == []


def test_resnet20_numbers_agree_with_the_report():
    for (method, sparsity), (mean, std) in PAPER_RESNET20.items():
        row = dpf_paper.paper_number("resnet20", method, sparsity, structured=method in STRUCTURED_METHODS)
        assert row is not None, (method, sparsity)
        if math.isnan(mean):
            assert math.isnan(row["top1"]) and row["top1_std"] is None
        else:
            assert (row["top1"], row["top1_std"]) == (mean, std), (method, sparsity)
    paper = {
        (r["method"], r["sparsity"])
        for r in dpf_paper.paper_rows("resnet20")
        if r["method"] != "dense" and r["table"] in ("Table 1", "Table 2", "Table 5")
    }
    assert paper == {k for k in PAPER_RESNET20 if k[0] != "dense"}


def test_paper_covers_every_model_and_table():
    tables = {(r["table"], r["model"]) for r in dpf_paper.PAPER_NUMBERS}
    for model in dpf_paper.PAPER_MODEL_NAMES:
        assert ("Table 4", model) in tables and ("Table 1", model) in tables
    assert {m for t, m in tables if t == "Table 2"} == {"resnet20", "resnet32", "resnet56"}
    assert {m for t, m in tables if t == "Table 5"} == set(dpf_paper.PAPER_MODEL_NAMES) - {"vgg16"}


# --------------------------------------------------------------------- the grid


def test_grid_entries_are_runnable():
    models, tags = set(known_models()), set()
    for entry in dpf_paper.PAPER_GRID:
        assert entry["tag"] not in tags
        tags.add(entry["tag"])
        assert entry["model"] in models
        assert entry["preset"] == dpf_presets.MODEL_PRESET[entry["model"]]
        assert entry["methods"] and set(entry["methods"]) <= set(METHODS)
        assert entry["sparsities"] and all(0 < s < 1 for s in entry["sparsities"])
        assert set(entry["overrides"]) <= RECIPE_FIELDS - {"model", "seeds"}
        Recipe(**{**dpf_presets.PRESETS[entry["preset"]], **entry["overrides"]}, seeds=(0,))


def test_grid_covers_every_cifar_table_and_figure():
    for name in (
        ["Table 1", "Table 2", "Table 4", "Table 5"]
        + [f"Figure {i}" for i in (3, 4, 5, 6, 7, 8, 9)]
        + [f"Figure {i}" for i in (11, 12, 13, 14)]
    ):
        assert dpf_paper.grid_entries(name), name
    # every (model, method, sparsity) of the tables has a grid point
    points = {(e["model"], m, s) for e in dpf_paper.PAPER_GRID for m in e["methods"] for s in e["sparsities"]}
    for row in dpf_paper.PAPER_NUMBERS:
        if row["method"] != "dense":
            assert (row["model"], row["method"], row["sparsity"]) in points, row
    periods = {e["overrides"].get("update_every") for e in dpf_paper.grid_entries("Figure 9")}
    assert 16 in periods and len(periods) > 2
    assert any("batch_size" in e["overrides"] for e in dpf_paper.grid_entries("Figure 9"))
    (fig13,) = dpf_paper.grid_entries("Figure 13")
    assert "dpf_structured_rewind" in fig13["methods"] and not fig13["missing"]
    # Figure 8: one entry per WRN-28-2 sparsity, each retraining for the same MACs as its DPF run
    fig8 = [e for e in dpf_paper.grid_entries("Figure 8") if e["methods"] == ("dpf_rewind",)]
    ramp_end = dpf_presets.PRESETS["wideresnet_cifar"]["milestones"][1]
    assert sorted(s for e in fig8 for s in e["sparsities"]) == sorted(dpf_paper.table_sparsities("table4")["wrn28_2"])
    for entry in fig8:
        (s,) = entry["sparsities"]
        assert entry["overrides"]["rewind_epochs"] == dpf_paper.same_flops_epochs(200, s, ramp_end) > 200


def test_same_flops_epochs():
    # mean density of the cubic ramp is 1 - 3s/4: at s = 0.9 with the ramp over 60 % of 200 epochs,
    # DPF costs 200 * (0.6 * 0.325 + 0.4 * 0.1) = 47 dense epochs = 470 epochs at density 0.1
    assert dpf_paper.same_flops_epochs(200, 0.9, 0.6) == 470
    assert dpf_paper.same_flops_epochs(200, 0.5, 0.6) == 230
    with pytest.raises(ValueError):
        dpf_paper.same_flops_epochs(200, 1.0, 0.6)


def test_grid_data_file_round_trips():
    """paper_grid.yaml is the one source of PAPER_GRID (it was rendered into params.yaml before: grid_yaml)."""
    loaded = yaml.safe_load((dpf_paper.HERE / "paper_grid.yaml").read_text())
    assert len(loaded) == len(dpf_paper.PAPER_GRID) == 48
    for item, entry in zip(loaded, dpf_paper.PAPER_GRID):
        assert set(item) <= {
            "tag",
            "figure",
            "preset",
            "model",
            "methods",
            "sparsities",
            "overrides",
            "note",
            "missing",
            "run",
        }
        assert item["tag"] == entry["tag"] and item["preset"] == entry["preset"] and item["model"] == entry["model"]
        assert tuple(item["methods"]) == entry["methods"]
        assert tuple(item["sparsities"]) == entry["sparsities"]
        assert item.get("overrides", {}) == entry["overrides"]


# --------------------------------------------------------------------- one source for the paper grid


def test_params_yaml_names_the_paper_grid_and_does_not_copy_it():
    text = open("params.yaml", encoding="utf-8").read() + open("scales.yaml", encoding="utf-8").read()
    assert "fig9-resnet20-batch512-period256" not in text and "table4-wrn28_8" not in text
    _, values = params_module.stage_values("dpf_sweeps", "params.yaml", "paper")
    assert values["grid"] == "paper"


def test_the_resolved_paper_grid_equals_the_papers_tables():
    _, values = params_module.stage_values("dpf_sweeps", "params.yaml", "paper")
    config = Config.from_values(values, where="paper.dpf_sweeps")
    points = config.points()
    planned = {(p.recipe.model, p.method, p.sparsity) for p in points}
    # every number of Tables 1, 2, 4 and 5 has its point, at the model's paper recipe
    for row in dpf_paper.PAPER_NUMBERS:
        key = (row["model"], row["method"], 0.0 if row["method"] == "dense" else row["sparsity"])
        assert key in planned, row
    for table, prefix in (("table4", "table4-"), ("table2", "table2-"), ("table5", "table5-")):
        methods = set(dpf_paper.table_methods(table)) | {"dense"}
        for model, sparsities in dpf_paper.table_sparsities(table).items():
            mine = [p for p in points if p.tag == prefix + model]
            assert {p.method for p in mine} == methods - ({"dsr"} if (table, model) == ("table4", "vgg16") else set())
            assert sorted({p.sparsity for p in mine if p.method != "dense"}) == sorted(sparsities), (table, model)
            preset = dpf_presets.PRESETS[dpf_presets.MODEL_PRESET[model]]
            assert all(p.recipe.epochs == preset["epochs"] and p.recipe.lr == preset["lr"] for p in mine)
    # the one entry the paper draws that cannot run here (Figure 9, layer-wise DPF) is recorded, not planned
    (layerwise,) = [e for e in dpf_paper.PAPER_GRID if not e["run"]]
    assert layerwise["tag"] == "fig9-resnet20-layerwise" and layerwise["missing"]
    assert len(config.grid) == len(dpf_paper.PAPER_GRID) - 1 == 47
    assert not any(p.tag == layerwise["tag"] for p in points)
    assert len(points) == 294 and len(plan(config)) == 294 * 3
