"""The ImageNet stage (rewire.experiments.imagenet): the config (the one schema), the plan, counts only without
data, a generated folder at the smoke scale, every declared output written, bad input refused before any result
is written."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
import yaml

from rewire.data.imagefolder import ImageFolderLayoutError, scan_image_folder
from rewire.experiments import imagenet
from rewire.experiments.imagenet import folders, stage
from rewire.experiments.imagenet.config import Config
from rewire.experiments.schema import ConfigError, config_fields
from rewire.pipeline import params as params_module

pytestmark = pytest.mark.usefixtures("one_thread")

PARAMS = params_module.load("params.yaml")  # the scales' blocks (wherever they live) with the overrides
NO_DATA = {"data": "", "dnw_rows": [], "dpf_points": [], "seeds": [0]}


def test_without_data_the_stage_writes_the_counts_and_says_nothing_was_trained(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    metrics = stage.run_stage(NO_DATA, "cpu", out, tmp_path / "ck")
    assert metrics == {}  # metrics.json: headline numbers only, none without a trained row
    details = json.loads((out / "details.json").read_text())
    assert details["dnw_rows_trained"] == 0 and details["dpf_points_trained"] == 0
    table = pd.read_csv(out / "table3.csv").set_index("row")
    assert 55.65 <= table.loc["rg_x225", "flops_M"] <= 55.75  # the paper's 55.7 M, no training needed
    assert table.loc["mobilenet_x25", "flops_M"] == pytest.approx(41.030272, abs=1e-6)
    assert table["trained_top1_mean"].isna().all()
    assert "none at this scale" in (out / "table3.md").read_text()
    assert pd.read_csv(out / "dpf_table3.csv").empty
    assert "not computed at this scale" in (out / "dpf_table3.md").read_text()
    for name in ("figure10.png", "label.json", "metrics.json", "details.json"):
        assert (out / name).exists()
    assert json.loads((out / "label.json").read_text())["data_source"] == "none"
    assert not (tmp_path / "ck").exists()  # nothing trained, nothing written there


def test_the_generated_folder_has_the_imagenet_layout(tmp_path):
    index = scan_image_folder(folders.write_synthetic_folder(tmp_path / "f"))
    assert index.num_classes == folders.SYNTHETIC_CLASSES == 3
    assert index.num_images("train") == 3 * 8 and index.num_images("val") == 3 * 2


def test_the_smoke_path_trains_a_table3_row_on_the_generated_folder_and_finds_it_again(tmp_path):
    torch.set_num_threads(1)
    values = {
        "data": folders.SYNTHETIC,
        "dnw_rows": ["dnw_x225"],
        "dpf_points": [],
        "epochs": 1,
        "batch_size": 8,
        "workers": 0,
        "crop_size": 32,
        "resize_size": 36,
        "seeds": [0],
    }
    out = tmp_path / "out"
    out.mkdir()
    metrics = stage.run_stage(values, "smoke", out, tmp_path / "ck")
    details = json.loads((out / "details.json").read_text())
    assert details["dnw_rows_trained"] == 1 and "dnw_dnw_x225_top1" in details
    assert metrics == {"top1": details["dnw_dnw_x225_top1"]}
    row = pd.read_csv(out / "table3.csv").set_index("row").loc["dnw_x225"]
    assert 0 < row["trained_flops_M"] < 60 and row["real_edges"] == 158_944  # counted at 224 px
    assert json.loads((out / "label.json").read_text())["data_source"] != "none"
    (run_dir,) = (tmp_path / "ck" / "dnw").iterdir()
    stamp = (run_dir / "checkpoint.pt").stat().st_mtime_ns
    stage.run_stage(values, "smoke", out, tmp_path / "ck")
    assert (run_dir / "checkpoint.pt").stat().st_mtime_ns == stamp  # found again, not retrained


def test_the_smoke_block_writes_every_output_dvc_yaml_declares_and_headline_metrics_only(tmp_path):
    stage_yaml = yaml.safe_load(open("dvc.yaml", encoding="utf-8"))["stages"]["imagenet"]
    declared = [next(iter(entry)) for entry in stage_yaml["outs"] + stage_yaml["metrics"]]
    out = tmp_path / "out"
    out.mkdir()
    metrics = stage.run_stage(PARAMS["smoke"]["imagenet"], "smoke", out, tmp_path / "ck")
    for path in declared:
        assert (out / path.removeprefix("results/imagenet/")).exists(), path
    assert set(metrics) == {"top1"}  # the keys every stage shares (tools/headline_metrics.py)
    assert json.loads((out / "metrics.json").read_text()) == metrics
    details = json.loads((out / "details.json").read_text())
    assert (details["dnw_rows_trained"], details["dpf_points_trained"], details["top1"]) == (1, 2, metrics["top1"])
    assert {row["method"] for row in details["dpf"]} == {"dense", "dpf"} and details["curves"]


@pytest.mark.parametrize(
    ("values", "error", "message"),
    [
        ({**NO_DATA, "data": "no/such/folder"}, ImageFolderLayoutError, "train"),
        ({**NO_DATA, "dnw_rows": ["dnw_x9"]}, ValueError, "dnw_x9"),
        ({**NO_DATA, "dpf_points": [{"method": "magic", "sparsity": 0.8}]}, ValueError, "magic"),
        ({**NO_DATA, "dpf_points": [{"method": "dpf", "sparsity": 0.0}]}, ValueError, "target sparsity"),
    ],
)
def test_bad_input_stops_before_any_result_is_written(tmp_path, values, error, message):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(error, match=message):
        stage.run_stage(values, "paper", out, tmp_path / "ck")
    assert list(out.iterdir()) == []


# --------------------------------------------------------------------------------------- the config


@pytest.mark.parametrize("scale", ["smoke", "cpu", "paper"])
def test_every_scales_block_is_a_valid_config(scale):
    block = PARAMS[scale]["imagenet"]
    assert set(block) == set(config_fields(Config))  # every key is a field, every field is set
    Config.from_values(block, where=f"params.yaml '{scale}.imagenet'")


def test_the_schemas_defaults_are_the_smoke_scale():
    assert Config.from_values(PARAMS["smoke"]["imagenet"]) == Config()


@pytest.mark.parametrize(
    ("changes", "field", "expected"),
    [
        ({"epochs": 0}, "'epochs'", ">= 1"),
        ({"epochs": 2.5}, "'epochs'", "must be int or None"),
        ({"batch_size": -8}, "'batch_size'", ">= 1"),
        ({"update_every": 0}, "'update_every'", ">= 1"),
        ({"workers": -1}, "'workers'", ">= 0"),
        ({"crop_size": 0}, "'crop_size'", ">= 1"),
        ({"resize_size": 0}, "'resize_size'", ">= 1"),
        ({"crop_size": 64, "resize_size": 36}, "'crop_size'", "larger than 'resize_size'"),
        ({"seeds": [-1]}, "'seeds'", ">= 0"),
        ({"seeds": [0, 0]}, "'seeds'", "distinct"),
        ({"data": 3}, "'data'", "must be a string"),
        ({"dnw_rows": ["shufflenetv2_x5"]}, "'dnw_rows'", "one of 'mobilenet_x25'"),
        ({"dpf_points": [{"method": "dpf", "sparsity": 1.0}]}, "'dpf_points[0].sparsity'", "in [0, 1)"),
        ({"dpf_points": [{"method": "snip", "sparsity": 0.8}]}, "'dpf_points[0].method'", "one of 'dense'"),
        ({"dpf_points": [{"method": "dpf", "sparsity": 0.0}]}, "'dpf_points[0].sparsity'", "(0, 1)"),
        ({"dpf_points": [{"method": "dpf", "sparsity": 0.8}] * 2}, "'dpf_points'", "twice"),
        ({"dpf_points": [{"method": "dpf", "spars": 0.8}]}, "'dpf_points[0].spars'", "did you mean 'sparsity'"),
    ],
)
def test_config_rejects_each_kind_of_bad_value_naming_the_field(changes, field, expected):
    with pytest.raises(ConfigError) as error:
        Config.from_values({**PARAMS["smoke"]["imagenet"], **changes}, where="params.yaml 'smoke.imagenet'")
    message = str(error.value)
    assert "params.yaml 'smoke.imagenet'" in message and field in message and expected in message, message


def test_an_unknown_row_is_refused_with_the_trainable_ones():
    with pytest.raises(ConfigError, match="'dnw_rows': 'dnw_x9' is not one of 'mobilenet_x25', 'rg_x225'"):
        Config.from_values({**NO_DATA, "dnw_rows": ["dnw_x9"]})


@pytest.mark.parametrize(("scale", "size"), [("smoke", 3), ("cpu", 0), ("paper", 18)])
def test_plan_sizes(scale, size):
    specs = imagenet.plan(Config.from_values(PARAMS[scale]["imagenet"]))
    assert len(specs) == size
    if size:
        assert specs[0].name.startswith("table3-") and specs[-1].name.startswith("dpf-imagenet-")


def test_the_stage_command_line_writes_the_counts_and_refuses_a_bad_block(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"scale": "cpu", "cpu": {"imagenet": PARAMS["cpu"]["imagenet"]}}))
    out = tmp_path / "out"
    assert stage.main(["--params", str(params), "--out", str(out), "--checkpoints", str(tmp_path / "ck")]) == 0
    assert (out / "table3.md").exists()
    params.write_text(yaml.safe_dump({"scale": "cpu", "cpu": {"imagenet": {**NO_DATA, "epochs": 0}}}))
    bad = tmp_path / "bad"
    assert stage.main(["--params", str(params), "--out", str(bad)]) == 2
    assert "'epochs': 0 is not >= 1" in capsys.readouterr().err and not bad.exists()


def test_the_stage_reads_its_block_from_scales_yaml_with_params_yaml_overrides(tmp_path):
    (tmp_path / "scales.yaml").write_text(yaml.safe_dump({"cpu": {"imagenet": PARAMS["cpu"]["imagenet"]}}))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"scale": "cpu", "cpu": {"imagenet": {"workers": 4}}}))
    scale, values = stage.block(str(tmp_path / "params.yaml"))
    assert scale == "cpu" and values == {**PARAMS["cpu"]["imagenet"], "workers": 4}
    with pytest.raises(ValueError, match="no 'paper:' block"):
        stage.block(str(tmp_path / "params.yaml"), "paper")
