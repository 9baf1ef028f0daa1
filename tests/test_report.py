"""README's results section is generated from the pipeline's tables."""

import pytest

from rewire.pipeline import report


def test_results_section_copies_the_stage_table_and_figure(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.START}\nold\n{report.END}\nfooter\n")
    (tmp_path / "results" / "quickstart").mkdir(parents=True)
    (tmp_path / "results" / "quickstart" / "summary.md").write_text(
        "### Quickstart\n\nscale **cpu**\n\n| a |\n|---|\n| 1 |\n"
    )
    (tmp_path / "results" / "quickstart" / "learning_curves.png").write_bytes(b"png")
    assert report.update_readme(readme, tmp_path / "results") is True
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("footer\n") and "old" not in text
    assert "#### Quickstart" in text and "scale **cpu**" in text
    assert "](reports/figures/quickstart_learning_curves.png)" in text
    assert (tmp_path / "reports" / "figures" / "quickstart_learning_curves.png").read_bytes() == b"png"
    assert report.update_readme(readme, tmp_path / "results") is False  # idempotent


def test_missing_results_say_how_to_make_them(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"{report.START}{report.END}")
    report.update_readme(readme, tmp_path / "results")
    assert "dvc repro quickstart" in readme.read_text()


def test_readme_without_markers_is_an_error(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        report.update_readme(readme, tmp_path)


def test_committed_sections_are_kept_for_stages_not_rerun_here(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"{report.START}{report.END}")
    sections = tmp_path / "reports" / "sections"
    sections.mkdir(parents=True)
    (sections / "tiny_graphs.md").write_text("#### DNW Table 1\n\nscale **cpu** (committed)\n")
    (tmp_path / "results" / "dpf_sweeps").mkdir(parents=True)
    (tmp_path / "results" / "dpf_sweeps" / "table2.md").write_text("### DPF Table 2\n\nscale **cpu**\n")
    report.update_readme(readme, tmp_path / "results")
    text = readme.read_text()
    assert "scale **cpu** (committed)" in text  # kept, not replaced by "Not run yet"
    assert "#### DPF Table 2" in text and (sections / "dpf_sweeps.md").read_text().startswith("#### DPF Table 2")
    assert "dvc repro quickstart" in text
