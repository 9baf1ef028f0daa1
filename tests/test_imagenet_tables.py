"""The ImageNet stage (rewire.experiments.imagenet_tables): counts only without data, a generated folder at the
smoke scale, bad input refused before any result is written."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from rewire.data.imagefolder import ImageFolderLayoutError, scan_image_folder
from rewire.experiments import imagenet_tables

pytestmark = pytest.mark.usefixtures("one_thread")

NO_DATA = {"data": "", "dnw_rows": [], "dpf_points": [], "seeds": [0]}


def test_without_data_the_stage_writes_the_counts_and_says_nothing_was_trained(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    metrics = imagenet_tables.run_stage(NO_DATA, "cpu", out, tmp_path / "ck")
    assert metrics["dnw_rows_trained"] == 0 and metrics["dpf_points_trained"] == 0
    table = pd.read_csv(out / "table3.csv").set_index("row")
    assert 55.65 <= table.loc["rg_x225", "flops_M"] <= 55.75  # the paper's 55.7 M, no training needed
    assert table.loc["mobilenet_x25", "flops_M"] == pytest.approx(41.030272, abs=1e-6)
    assert table["trained_top1_mean"].isna().all()
    assert "none at this scale" in (out / "table3.md").read_text()
    assert pd.read_csv(out / "dpf_table3.csv").empty
    for name in ("figure10.png", "label.json", "metrics.json", "details.json"):
        assert (out / name).exists()
    assert json.loads((out / "label.json").read_text())["data_source"] == "none"
    assert not (tmp_path / "ck").exists()  # nothing trained, nothing written there


def test_the_generated_folder_has_the_imagenet_layout(tmp_path):
    index = scan_image_folder(imagenet_tables.write_synthetic_folder(tmp_path / "f"))
    assert index.num_classes == imagenet_tables.SYNTHETIC_CLASSES == 3
    assert index.num_images("train") == 3 * 8 and index.num_images("val") == 3 * 2


def test_the_smoke_path_trains_a_table3_row_on_the_generated_folder_and_finds_it_again(tmp_path):
    torch.set_num_threads(1)
    values = {
        "data": imagenet_tables.SYNTHETIC,
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
    metrics = imagenet_tables.run_stage(values, "smoke", out, tmp_path / "ck")
    assert metrics["dnw_rows_trained"] == 1 and "dnw_dnw_x225_top1" in metrics
    row = pd.read_csv(out / "table3.csv").set_index("row").loc["dnw_x225"]
    assert 0 < row["trained_flops_M"] < 60 and row["real_edges"] == 158_944  # counted at 224 px
    assert json.loads((out / "label.json").read_text())["data_source"] != "none"
    (run_dir,) = (tmp_path / "ck" / "dnw").iterdir()
    stamp = (run_dir / "checkpoint.pt").stat().st_mtime_ns
    imagenet_tables.run_stage(values, "smoke", out, tmp_path / "ck")
    assert (run_dir / "checkpoint.pt").stat().st_mtime_ns == stamp  # found again, not retrained


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
        imagenet_tables.run_stage(values, "paper", out, tmp_path / "ck")
    assert list(out.iterdir()) == []
