"""Every artefact carries its provenance: scale, seeds, data source, device, commit."""

import json

import pandas as pd
import torch

from rewire.reporting import plotting, results


def label():
    return results.run_label(
        scale="cpu",
        seeds=[0, 1],
        device=torch.device("cpu"),
        data_source={"kind": "jpeg-copy", "description": "lossy JPEG copy"},
    )


def test_label_names_scale_seeds_source_and_device():
    lab = label()
    assert lab["scale"] == "cpu" and lab["seeds"] == [0, 1]
    assert lab["data_source"] == "jpeg-copy" and lab["data_source_description"] == "lossy JPEG copy"
    assert lab["device"].startswith("cpu") and lab["torch"] == torch.__version__
    assert lab["commit"]


def test_metrics_and_tables_carry_the_label(tmp_path):
    lab = label()
    metrics = json.loads(results.write_metrics(tmp_path / "metrics.json", {"top1": 91.5}, lab).read_text())
    assert metrics == {"top1": 91.5}  # numbers only: `dvc metrics show` stays a readable table
    assert json.loads((tmp_path / "label.json").read_text()) == lab
    assert results.read_label(tmp_path) == lab
    table = pd.DataFrame({"method": ["dense", "dnw"], "top1": [90.0, 91.25]})
    csv_path, md_path = results.write_table(table, tmp_path, "table", lab, title="Table 1")
    csv = pd.read_csv(csv_path)
    assert list(csv.columns) == ["method", "top1", "scale", "seeds", "data_source"]
    assert set(csv["scale"]) == {"cpu"} and set(csv["seeds"]) == {"0 1"} and set(csv["data_source"]) == {"jpeg-copy"}
    markdown = md_path.read_text()
    assert markdown.startswith("### Table 1")
    assert "scale **cpu**" in markdown and "seeds 0, 1" in markdown and "jpeg-copy" in markdown
    assert "91.25" in markdown


def test_learning_curve_figure_is_written_as_png_with_caption(tmp_path):
    history = pd.DataFrame(
        {
            "epoch": [1, 2, 1, 2],
            "seed": [0, 0, 1, 1],
            "test_top1": [30.0, 40, 32, 41],
            "train_loss": [2.0, 1.5, 2.1, 1.4],
        }
    )
    fig = plotting.learning_curves(history, label())
    assert plotting.caption(label()) in [t.get_text() for t in fig.texts]
    path = plotting.save_figure(fig, tmp_path / "curves.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_output_a_scale_leaves_out_is_written_as_one_line_saying_why(tmp_path):
    from rewire.reporting.results import write_not_computed

    text = write_not_computed(tmp_path, "claims", "1 seed(s); an interval needs at least 2", title="Claims")
    assert text == "### Claims\n\nnot computed at this scale: 1 seed(s); an interval needs at least 2\n"
    assert (tmp_path / "claims.md").read_text() == text
    assert (tmp_path / "claims.csv").read_text().splitlines() == [
        "note",
        "not computed at this scale: 1 seed(s); an interval needs at least 2",
    ]
    write_not_computed(tmp_path, "kept.csv", "no row ran")
    assert (tmp_path / "kept.csv").read_text() == "note\nnot computed at this scale: no row ran\n"
    assert not (tmp_path / "kept.md").exists()  # a name with a suffix is that one file
    write_not_computed(tmp_path, "curves.png", "no curve")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    write_not_computed(tmp_path, "analysis.md", "no data")
    assert (tmp_path / "analysis.md").read_text() == "not computed at this scale: no data\n"
