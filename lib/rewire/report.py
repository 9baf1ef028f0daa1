"""Copy the pipeline's tables and figures into README.md, so its numbers are never typed by hand.

``python -m rewire.report`` (run by ``make repro`` after ``dvc repro``) replaces the
text between ``<!-- results:start -->`` and ``<!-- results:end -->`` in README.md
with, for every stage listed in ``STAGES`` whose results exist, its Markdown table
(which already names scale, seeds and data source) and its figure. ``results/`` is
DVC's (cached, not in git), so figures are copied to ``reports/figures/``, which is
committed and which the README links to.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from rewire.io import write_text

START, END = "<!-- results:start -->", "<!-- results:end -->"

# stage -> (heading, table file, figure file), in the order of the README
STAGES = {
    "quickstart": ("Quickstart (end-to-end check, no paper number)", "summary.md", "learning_curves.png"),
    "tiny_graphs": ("DNW Table 1: tiny neural graphs, RG vs DNW", "table1.md", "accuracy.png"),
}


def results_section(results_dir: Path, figures_dir: Path, relative_to: Path) -> str:
    parts = []
    for stage, (heading, table, figure) in STAGES.items():
        stage_dir = results_dir / stage
        if not (stage_dir / table).exists():
            parts.append(f"#### {heading}\n\nNot run yet: `dvc repro {stage}`.\n")
            continue
        body = (stage_dir / table).read_text(encoding="utf-8").strip()
        body = body.replace("### ", "#### ", 1)
        parts.append(body + "\n")
        if (stage_dir / figure).exists():
            copy = figures_dir / f"{stage}_{figure}"
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(stage_dir / figure, copy)
            parts.append(f"![{heading}]({copy.resolve().relative_to(relative_to.resolve()).as_posix()})\n")
    return "\n".join(parts)


def update_readme(readme: Path, results_dir: Path, figures_dir: Path | None = None) -> bool:
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise ValueError(f"{readme} has no '{START}' ... '{END}' markers")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    figures_dir = figures_dir if figures_dir is not None else readme.parent / "reports" / "figures"
    updated = f"{head}{START}\n{results_section(results_dir, figures_dir, readme.parent)}{END}{tail}"
    if updated != text:
        write_text(readme, updated)
    return updated != text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rewire.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--readme", default="README.md")
    parser.add_argument("--results", default="results")
    parser.add_argument("--figures", default="reports/figures")
    args = parser.parse_args(argv)
    try:
        changed = update_readme(Path(args.readme), Path(args.results), Path(args.figures))
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{args.readme}: results section {'updated' if changed else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
