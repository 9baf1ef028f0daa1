"""`python -m rewire.pipeline.summary`: the headline table that replaces plain `dvc exp show` at 120 columns."""

import json

from rewire.pipeline import summary


def _stage(root, name, metrics, scale="cpu", commit="abcdef1234"):
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "label.json").write_text(json.dumps({"scale": scale, "commit": commit}))


def test_rows_come_from_each_stage_with_its_label(tmp_path):
    _stage(tmp_path, "b_stage", {"claims_held": 3, "claims_reversed": 1, "claims_not_decided": 0, "top1": 71.25})
    _stage(tmp_path, "a_stage", {"top1": 12.5, "baseline_top1": 40.0}, scale="smoke", commit="0123456789")
    rows = summary.workspace_rows(tmp_path)
    assert [r["stage"] for r in rows] == ["a_stage", "b_stage"]
    assert rows[0]["scale"] == "smoke" and rows[0]["commit"] == "0123456"
    assert rows[1]["claims_reversed"] == 1 and rows[1]["top1"] == 71.25


def test_table_fits_120_columns_and_keeps_each_number_in_its_column(tmp_path):
    _stage(
        tmp_path,
        "mobilenet_dnw",
        {"claims_held": 1, "claims_reversed": 4, "claims_not_decided": 3, "top1": 40.1, "baseline_top1": 48.4833},
    )
    _stage(tmp_path, "dpf_theory", {"claims_held": 1, "claims_reversed": 0, "claims_not_decided": 0})
    text = summary.format_table(summary.workspace_rows(tmp_path))
    lines = text.splitlines()
    assert max(map(len, lines)) <= 120
    header = lines[0].split()
    assert header[:4] == ["run", "stage", "scale", "commit"]
    row = lines[3].split()  # mobilenet_dnw sorts after dpf_theory
    assert row[1] == "mobilenet_dnw"
    assert row[-5:] == ["1", "4", "3", "40.10", "48.48"]  # held, reversed, not decided, top1, baseline


def test_experiments_from_dvc_json_skip_the_workspace():
    exp_json = [
        {"rev": "workspace", "data": {"metrics": {"results/x/metrics.json": {"data": {"top1": 1.0}}}}},
        {
            "rev": "f" * 40,
            "name": "main",
            "data": {
                "params": {"params.yaml": {"data": {"scale": "cpu"}}},
                "metrics": {"results/x/metrics.json": {"data": {"top1": 2.0}}},
            },
            "experiments": [
                {
                    "revs": [
                        {
                            "rev": "e" * 40,
                            "name": "smoke-exp",
                            "data": {
                                "params": {"params.yaml": {"data": {"scale": "smoke"}}},
                                "metrics": {"results/x/metrics.json": {"data": {"top1": 3.0}}},
                            },
                        }
                    ]
                }
            ],
        },
    ]
    rows = summary.experiment_rows(exp_json)
    assert [(r["run"], r["scale"], r["top1"]) for r in rows] == [("main", "cpu", 2.0), ("smoke-exp", "smoke", 3.0)]


def test_missing_results_folder_says_where_to_run(tmp_path, capsys):
    assert summary.main(["--results", str(tmp_path / "nowhere")]) == 2
    assert "repository root" in capsys.readouterr().err
