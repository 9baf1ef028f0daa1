"""Results as artefacts: metrics JSON and tables, each labelled with scale, seeds and data source.

Every artefact this repository writes says at which scale it was produced, with
which seeds, on which data (the official CIFAR release or the lossy JPEG copy),
on which device and from which commit, so that a number in the README can always
be traced to the run that made it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import rewire
from rewire.io import write_json, write_text
from rewire.train.runtime import describe_device, git_commit


def run_label(*, scale: str, seeds: Sequence[int], data_source: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """The provenance every metrics file and table carries."""
    return {
        "scale": scale,
        "seeds": list(seeds),
        "data_source": data_source.get("kind", "unknown"),
        "data_source_description": data_source.get("description", ""),
        "device": describe_device(device),
        "torch": torch.__version__,
        "rewire": rewire.__version__,
        "commit": git_commit(),
    }


def label_line(label: dict[str, Any]) -> str:
    seeds = ", ".join(str(s) for s in label["seeds"])
    return (
        f"scale **{label['scale']}** · seeds {seeds} · data: {label['data_source']} "
        f"({label['data_source_description']}) · {label['device']} · commit {label['commit']}"
    )


LABEL_FILE = "label.json"


def write_metrics(path: str | os.PathLike, metrics: dict[str, Any], label: dict[str, Any]) -> Path:
    """Write ``metrics`` (numbers only, read by ``dvc metrics show``) and, beside it, ``label.json``
    with the provenance (scale, seeds, data source, device, commit), both atomically.

    The label is kept out of the metrics file so that ``dvc metrics show`` and ``dvc metrics diff``
    stay a readable table of numbers.
    """
    path = Path(path)
    write_json(path.parent / LABEL_FILE, label)
    return write_json(path, metrics)


NOT_COMPUTED = "not computed at this scale"


def write_not_computed(out_dir: str | os.PathLike, name: str, why: str, *, title: str | None = None) -> str:
    """A declared output that this scale (or a ``--only`` selection) leaves out, written as one line saying why,
    so every stage writes every output ``dvc.yaml`` declares at every scale.

    ``name`` with a suffix is that one file: ``.png`` a figure holding the line, ``.csv`` a one-row table
    (column ``note``), anything else the line as text; without a suffix both ``name.csv`` and ``name.md``
    (under ``### title`` when given). Returns the Markdown text.
    """
    out_dir, line = Path(out_dir), f"{NOT_COMPUTED}: {why}"
    text = f"### {title}\n\n{line}\n" if title else f"{line}\n"
    path = out_dir / name
    if path.suffix == ".png":
        import matplotlib.pyplot as plt

        from rewire.reporting import plotting

        fig, ax = plt.subplots(figsize=(6, 1.2))
        ax.text(0.5, 0.5, line, ha="center", va="center", fontsize=9, transform=ax.transAxes)
        ax.set_axis_off()
        plotting.save_figure(fig, path)
        plt.close(fig)
    elif path.suffix == ".csv":
        write_text(path, f"note\n{line}\n")
    elif path.suffix:
        write_text(path, text)
    else:
        write_text(out_dir / f"{name}.csv", f"note\n{line}\n")
        write_text(out_dir / f"{name}.md", text)
    return text


def read_label(directory: str | os.PathLike) -> dict[str, Any]:
    """The ``label.json`` of a results directory (``{}`` when there is none)."""
    path = Path(directory) / LABEL_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def write_table(table, out_dir: str | os.PathLike, name: str, label: dict[str, Any], title: str) -> tuple[Path, Path]:
    """Write a pandas DataFrame as ``name.csv`` (label columns appended) and ``name.md`` (title + label line)."""
    out_dir = Path(out_dir)
    labelled = table.copy()
    labelled["scale"] = label["scale"]
    labelled["seeds"] = " ".join(str(s) for s in label["seeds"])
    labelled["data_source"] = label["data_source"]
    csv_path = write_text(out_dir / f"{name}.csv", labelled.to_csv(index=False))
    markdown = f"### {title}\n\n{label_line(label)}\n\n{table.to_markdown(index=False, floatfmt='.2f')}\n"
    md_path = write_text(out_dir / f"{name}.md", markdown)
    return csv_path, md_path
