"""Copy the pipeline's tables and figures into README.md, so its numbers are never typed by hand.

``python -m rewire.pipeline.report`` (run by ``make repro`` after ``dvc repro``) replaces the
text between ``<!-- results:start -->`` and ``<!-- results:end -->`` in README.md
with, for every stage listed in ``STAGES``, its Markdown tables (which already name
scale, seeds and data source) and its figures (copied to ``reports/figures/``).
Each stage's section is also kept in ``reports/sections/<stage>.md``: a stage whose results
are absent keeps its committed section.

The README shows one scale, :data:`README_SCALE` (the default of ``dvc repro``). A stage whose
``label.json`` names another scale (e.g. after ``dvc exp run -S scale=smoke``) is refused,
unless asked with ``--allow-scale smoke``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from rewire.io import write_text
from rewire.reporting.results import read_label

START, END = "<!-- results:start -->", "<!-- results:end -->"
README_SCALE = "cpu"


class ScaleError(ValueError):
    """A stage's results were made at another scale than the README shows."""


# stage -> (heading, table files, figure files), in the order of the README
STAGES = {
    "quickstart": (
        "Quickstart (end-to-end check, no paper number)",
        ("summary.md", "precision_check.md"),
        ("learning_curves.png",),
    ),
    "tiny_graphs": ("DNW Table 1: tiny neural graphs, RG vs DNW", ("claims.md", "table1.md"), ("accuracy.png",)),
    "mobilenet_dnw": (
        "DNW Table 2: MobileNetV1-DNW and other ways to find its edges",
        ("claims.md", "table2.md", "table5.md", "compact_timing.md"),
        ("table2.png", "wiring.png"),
    ),
    "imagenet": (
        "DNW Table 3 and DPF Table 3 on ImageNet (counts here; training at the paper scale)",
        ("table3.md", "dpf_table3.md"),
        ("figure10.png",),
    ),
    "robust_binary": (
        "Robust binary subnetworks: pruned random binary networks, adversarially trained",
        ("claims.md", "table_robust.md", "analysis.md", "cross_check.md"),
        ("curves.png", "allocation.png"),
    ),
    "dpf_sweeps": (
        "DPF on CIFAR-10: methods x sparsity",
        ("claims.md", "table1.md", "table2.md", "table5.md"),
        (
            "accuracy_vs_sparsity.png",
            "accuracy_vs_cost.png",
            "mask_convergence.png",
            "training_dynamics.png",
            "lottery_check.png",
            "structured.png",
            "layer_sparsity.png",
            "period_batch.png",
            "iteration_cost.png",
        ),
    ),
    "dpf_theory": ("DPF Theorem 4.1 on a strongly convex toy", ("theory.md",), ("final_gap.png",)),
}


def check_scale(stage: str, stage_dir: Path, allowed_scales: tuple[str, ...] = (README_SCALE,)) -> None:
    """Raise :class:`ScaleError` when the stage's ``label.json`` names a scale not in ``allowed_scales``."""
    scale = read_label(stage_dir).get("scale")
    if scale is not None and scale not in allowed_scales:
        raise ScaleError(
            f"{stage_dir} holds results of scale '{scale}', the README shows scale "
            f"'{README_SCALE}'; rerun the stage at '{README_SCALE}' (`dvc repro {stage}`), or pass "
            f"--allow-scale {scale} if you mean to publish them"
        )


def stage_section(stage: str, stage_dir: Path, figures_dir: Path, relative_to: Path) -> str | None:
    """The Markdown of one stage from its results (figures copied to ``figures_dir``); None if not run.
    Its scale is checked by :func:`results_section`, for every stage before anything is written."""
    heading, tables, figures = STAGES[stage]
    present = [t for t in tables if (stage_dir / t).exists()]
    if not present:
        return None
    parts = [(stage_dir / t).read_text(encoding="utf-8").strip().replace("### ", "#### ", 1) + "\n" for t in present]
    for figure in figures:
        if (stage_dir / figure).exists():
            copy = figures_dir / f"{stage}_{figure}"
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(stage_dir / figure, copy)
            parts.append(f"![{heading}]({copy.resolve().relative_to(relative_to.resolve()).as_posix()})\n")
    return "\n".join(parts)


# the stages whose claims.csv (rewire.reporting.claims) feeds the overview at the top of the results
CLAIM_STAGES = ("tiny_graphs", "mobilenet_dnw", "robust_binary", "dpf_sweeps")


def claims_overview(results_dir: Path) -> str | None:
    """One table of every paper claim decided at this scale: claim, difference [95 % CI], verdict."""
    import pandas as pd

    frames = []
    for stage in CLAIM_STAGES:
        path = results_dir / stage / "claims.csv"
        if path.exists() and path.stat().st_size:
            frame = pd.read_csv(path)
            if "difference" in frame:
                frames.append(frame.assign(stage=stage))
    if not frames:
        return None
    rows = pd.concat(frames, ignore_index=True)
    lines = [
        "#### Claims at this scale: verdicts",
        "",
        "Each claim of the papers compared seed by seed: the mean difference a − b with its two-sided 95 % "
        "Student-t interval over seeds, and a verdict (*holds*: the interval clears the test; *reversed*: it "
        "clears the opposite; otherwise *inconclusive at this scale*). Details and the two sides' numbers are in "
        "each paper's claims table below.",
        "",
        "| paper | claim | source | a − b [95 % CI] | unit | seeds | verdict |",
        "|:--|:--|:--|:--|:--|--:|:--|",
    ]
    for row in rows.to_dict("records"):
        interval = f"{row['difference']:+.2f} [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]"
        lines.append(
            f"| {row['paper']} | {row['claim']} | {row['source']} | {interval} | {row['unit']} "
            f"| {int(row['seeds'])} | **{row['verdict']}** |"
        )
    return "\n".join(lines) + "\n"


def results_section(
    results_dir: Path,
    figures_dir: Path,
    relative_to: Path,
    sections_dir: Path | None = None,
    allowed_scales: tuple[str, ...] = (README_SCALE,),
) -> str:
    for stage in STAGES:  # every stage is checked before anything is written
        check_scale(stage, results_dir / stage, allowed_scales)
    parts = []
    overview = claims_overview(results_dir)
    if overview is not None:
        parts.append(overview)
    for stage, (heading, _, _) in STAGES.items():
        section = stage_section(stage, results_dir / stage, figures_dir, relative_to)
        kept = sections_dir / f"{stage}.md" if sections_dir is not None else None
        if section is not None and kept is not None:
            write_text(kept, section)
        elif section is None and kept is not None and kept.exists():
            section = kept.read_text(encoding="utf-8")
        parts.append(section if section is not None else f"#### {heading}\n\nNot run yet: `dvc repro {stage}`.\n")
    return "\n".join(parts)


def update_readme(
    readme: Path,
    results_dir: Path,
    figures_dir: Path | None = None,
    sections_dir: Path | None = None,
    allowed_scales: tuple[str, ...] = (README_SCALE,),
) -> bool:
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise ValueError(f"{readme} has no '{START}' ... '{END}' markers")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    figures_dir = figures_dir if figures_dir is not None else readme.parent / "reports" / "figures"
    sections_dir = sections_dir if sections_dir is not None else readme.parent / "reports" / "sections"
    updated = f"{head}{START}\n{results_section(results_dir, figures_dir, readme.parent, sections_dir, allowed_scales)}{END}{tail}"
    if updated != text:
        write_text(readme, updated)
    return updated != text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rewire.pipeline.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--readme", default="README.md")
    parser.add_argument("--results", default="results")
    parser.add_argument("--figures", default="reports/figures")
    parser.add_argument("--sections", default="reports/sections")
    parser.add_argument(
        "--allow-scale",
        action="append",
        default=[],
        metavar="SCALE",
        help=f"also accept results of this scale (the README shows '{README_SCALE}'); repeatable",
    )
    args = parser.parse_args(argv)
    try:
        changed = update_readme(
            Path(args.readme),
            Path(args.results),
            Path(args.figures),
            Path(args.sections),
            (README_SCALE, *args.allow_scale),
        )
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{args.readme}: results section {'updated' if changed else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
