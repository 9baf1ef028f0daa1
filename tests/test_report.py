"""The docs' generated parts (results pages, README status, quoted numbers, package tree) come from files."""

import json

import pytest

from rewire.pipeline import report

CLAIMS_HEADER = "paper,claim,a,a_mean,b,b_mean,difference,ci_low,ci_high,test,unit,seeds,verdict,source\n"


def repository(tmp_path, readme_body="intro\n"):
    """A minimal repository: README with the status markers, an empty docs/ and results/."""
    readme = tmp_path / "README.md"
    readme.write_text(f"{readme_body}{report.START}\nold\n{report.END}\nfooter\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "results").mkdir()
    return readme


def stage(tmp_path, name, files, scale="cpu"):
    folder = tmp_path / "results" / name
    folder.mkdir(parents=True, exist_ok=True)
    for file, content in files.items():
        (folder / file).write_bytes(content) if isinstance(content, bytes) else (folder / file).write_text(content)
    (folder / "label.json").write_text(json.dumps({"scale": scale}))
    return folder


def test_results_page_copies_the_stage_table_and_links_its_figure_and_notebook(tmp_path):
    readme = repository(tmp_path)
    stage(
        tmp_path,
        "quickstart",
        {
            "summary.md": "### Quickstart\n\nscale **cpu**\n\n| a |\n|---|\n| 1 |\n",
            "learning_curves.png": b"png",
            "00_quickstart.ipynb": "{}",
        },
    )
    assert report.publish(readme, tmp_path / "results") is True
    page = (tmp_path / "docs" / "results" / "quickstart.md").read_text()
    assert "### Quickstart" in page and "scale **cpu**" in page
    assert "](../../results/quickstart/learning_curves.png)" in page  # the file where it is, no copy
    assert "[00_quickstart.ipynb](../../results/quickstart/00_quickstart.ipynb)" in page
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("footer\n") and "old" not in text
    assert report.publish(readme, tmp_path / "results") is False  # idempotent


def test_missing_results_say_how_to_make_them(tmp_path):
    readme = repository(tmp_path)
    report.publish(readme, tmp_path / "results")
    assert "dvc repro quickstart" in (tmp_path / "docs" / "results" / "quickstart.md").read_text()
    assert "no claims decided yet" in readme.read_text()


def test_readme_without_markers_is_an_error(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        report.publish(readme, tmp_path / "results")


def test_committed_sections_are_kept_for_stages_not_rerun_here(tmp_path):
    readme = repository(tmp_path)
    pages = tmp_path / "docs" / "results"
    pages.mkdir()
    start, end = report._markers("tiny_graphs")
    (pages / "dnw.md").write_text(f"{start}\n## DNW Table 1\n\nscale **cpu** (committed)\n{end}\n")
    stage(tmp_path, "mobilenet_dnw", {"table2.md": "### DNW Table 2\n\nscale **cpu**\n"})
    report.publish(readme, tmp_path / "results")
    page = (pages / "dnw.md").read_text()
    assert "scale **cpu** (committed)" in page  # kept, not replaced by "Not run yet"
    assert "### DNW Table 2" in page
    assert "dvc repro imagenet" in page  # neither run nor committed


def test_results_of_another_scale_are_refused_before_anything_is_written(tmp_path):
    readme = repository(tmp_path)
    stage(tmp_path, "quickstart", {"summary.md": "### Quickstart\n\n| a |\n|---|\n| 1 |\n"}, scale="smoke")
    with pytest.raises(report.ScaleError, match="scale 'smoke'.*--allow-scale smoke"):
        report.publish(readme, tmp_path / "results")
    assert "old" in readme.read_text() and not (tmp_path / "docs" / "results").exists()  # nothing written
    assert report.publish(readme, tmp_path / "results", allowed_scales=("cpu", "smoke"))


def test_the_status_line_counts_each_papers_verdicts_from_claims_csv(tmp_path):
    readme = repository(tmp_path)
    rows = [
        "DNW,c1,a,1,b,0,1,0.5,1.5,a > b,top-1 %,3,holds,Table 1",
        "DNW,c2,a,0,b,1,-1,-1.5,-0.5,a > b,top-1 %,3,reversed,Table 1",
    ]
    stage(tmp_path, "tiny_graphs", {"claims.csv": CLAIMS_HEADER + "\n".join(rows[:1]) + "\n"})
    stage(tmp_path, "mobilenet_dnw", {"claims.csv": CLAIMS_HEADER + "\n".join(rows[1:]) + "\n"})
    report.publish(readme, tmp_path / "results")
    dnw = next(line for line in readme.read_text().splitlines() if "Discovering Neural Wirings" in line)
    assert "**1 held · 1 reversed · 0 inconclusive** of 2 (cpu scale, 3 seeds)" in dnw
    assert "[dnw.md](docs/results/dnw.md)" in dnw
    verdicts = (tmp_path / "docs" / "results" / "index.md").read_text()
    assert "| [DNW](dnw.md) | c2 | Table 1 | -1.00 [-1.50, -0.50] | top-1 % | 3 | **reversed** |" in verdicts


def test_quoted_numbers_are_read_from_their_files(tmp_path):
    (tmp_path / "t.csv").write_text("model,ratio\nmasked,1.0\ncompact,2.375\n")
    (tmp_path / "m.json").write_text(json.dumps({"a": {"b": [0.5, {"c/d0.5": 7}]}, "n": 3}))
    text = (
        "x <!-- number: t.csv ratio model=compact .2f -->2.2<!-- /number --> y "
        "<!-- number: m.json a.b.1.c/d0.5 -->0<!-- /number --> "
        "<!-- number: m.json n -->3<!-- /number -->"
    )
    filled, changes = report.fill_numbers(text, tmp_path)
    assert "-->2.38<!--" in filled and "-->7<!--" in filled and "-->3<!--" in filled
    assert len(changes) == 2 and "the page says '2.2', the file gives '2.38'" in changes[0]
    assert report.fill_numbers(filled, tmp_path) == (filled, [])


@pytest.mark.parametrize(
    "spec, message",
    [
        ("t.csv", "needs FILE FIELD"),
        ("missing.csv ratio", "missing.csv does not exist"),
        ("t.csv ratio model=none", "0 rows of t.csv match"),
        ("m.json a.z", "has no key 'a.z'"),
    ],
)
def test_a_bad_number_marker_names_what_is_wrong(tmp_path, spec, message):
    (tmp_path / "t.csv").write_text("model,ratio\ncompact,2.375\n")
    (tmp_path / "m.json").write_text(json.dumps({"a": {"b": 1}}))
    with pytest.raises(ValueError, match=message):
        report.fill_numbers(f"<!-- number: {spec} -->1<!-- /number -->", tmp_path)


def test_the_package_tree_lists_every_module_in_layer_order(tmp_path):
    package = tmp_path / "rewire"
    (package / "sparse").mkdir(parents=True)
    (package / "pipeline").mkdir()
    (package / "io.py").write_text('"""Atomic writes. More text."""\n')
    (package / "sparse" / "__init__.py").write_text('"""Masks."""\n')
    (package / "sparse" / "masks.py").write_text('"""One mask: see :class:`~x.SparseWeight` and ``y``."""\n')
    (package / "pipeline" / "report.py").write_text("x = 1\n")
    tree = report.package_tree(package)
    assert tree.splitlines() == [
        "- `io.py` Atomic writes.",
        "- **`sparse/`** Masks.",
        "    - `masks.py` One mask: see `SparseWeight` and `y`.",
        "- **`pipeline/`**",
        "    - `report.py`",
    ]


def test_check_writes_nothing_and_fails_while_anything_is_stale(tmp_path, capsys):
    readme = repository(tmp_path)
    stage(tmp_path, "quickstart", {"summary.md": "### Quickstart\n\n| a |\n|---|\n| 1 |\n"})
    assert report.main(["--root", str(tmp_path), "--check"]) == 1
    assert "stale:" in capsys.readouterr().out and "old" in readme.read_text()
    assert report.main(["--root", str(tmp_path)]) == 0
    assert report.main(["--root", str(tmp_path), "--check"]) == 0
