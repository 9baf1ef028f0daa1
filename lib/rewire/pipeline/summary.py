"""The pipeline's headline numbers as one table that fits 120 columns: one row per stage (and experiment).

Plain ``dvc exp show`` prints one column per metrics key *per file* and one per dependency path; DVC
has no setting to hide dependency columns (they are shown by design, treeverse/dvc#7089, which
points to ``--only-changed``/``--drop``), so with eight stages it cannot fit a terminal. This command
reads the same data (``dvc exp show --json``) and turns it around: stages are rows, the headline keys
that every stage's ``metrics.json`` shares are columns.

    python -m rewire.pipeline.summary               # the workspace's results (make results)
    python -m rewire.pipeline.summary --experiments # every DVC experiment too (e.g. make repro-smoke's)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HEADLINE_KEYS = ("claims_held", "claims_reversed", "claims_not_decided", "top1", "baseline_top1")
SHORT = {"claims_held": "held", "claims_reversed": "reversed", "claims_not_decided": "not decided"}


def workspace_rows(results: Path) -> list[dict]:
    """One row per ``results/<stage>/metrics.json``, with the scale and commit of its ``label.json``."""
    rows = []
    for metrics_path in sorted(results.glob("*/metrics.json")):
        label_path = metrics_path.parent / "label.json"
        label = json.loads(label_path.read_text(encoding="utf-8")) if label_path.exists() else {}
        rows.append(
            {
                "run": "workspace",
                "stage": metrics_path.parent.name,
                "scale": label.get("scale", "?"),
                "commit": str(label.get("commit", "?"))[:7],
                **json.loads(metrics_path.read_text(encoding="utf-8")),
            }
        )
    return rows


def experiment_rows(exp_json: list[dict]) -> list[dict]:
    """Rows from ``dvc exp show --json``: each experiment (not the workspace) times each stage."""
    rows = []

    def add(name: str, data: dict) -> None:
        for path, metrics in sorted((data.get("metrics") or {}).items()):
            stage = Path(path).parent.name
            rows.append({"run": name, "stage": stage, "scale": _scale(data), "commit": "", **metrics.get("data", {})})

    for entry in exp_json:
        if entry.get("rev") != "workspace" and entry.get("data"):
            add(entry.get("name") or entry["rev"][:7], entry["data"])
        for exp in entry.get("experiments") or []:
            for rev in exp.get("revs") or []:
                if rev.get("data"):
                    add(rev.get("name") or rev["rev"][:7], rev["data"])
    return rows


def _scale(data: dict) -> str:
    for params in (data.get("params") or {}).values():
        scale = (params.get("data") or {}).get("scale")
        if scale:
            return str(scale)
    return "?"


def format_table(rows: list[dict]) -> str:
    """A fixed-width text table: run, stage, scale, commit, the three claim counts, top1, baseline_top1."""
    header = ["run", "stage", "scale", "commit", *(SHORT.get(k, k) for k in HEADLINE_KEYS)]
    body = []
    for row in rows:
        cells = [str(row["run"])[:24], row["stage"], row["scale"], row["commit"]]
        for key in HEADLINE_KEYS:
            value = row.get(key)
            cells.append("" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value))
        body.append(cells)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) if i < 4 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
        for r in [header, *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"), help="the results folder (default: results)")
    parser.add_argument("--experiments", action="store_true", help="also list DVC experiments (dvc exp show --json)")
    args = parser.parse_args(argv)
    if not args.results.is_dir():
        print(f"no results folder at {args.results}: run it in the repository root", file=sys.stderr)
        return 2
    rows = workspace_rows(args.results)
    if args.experiments:
        shown = subprocess.run(
            [sys.executable, "-m", "dvc", "exp", "show", "--json"], capture_output=True, text=True, check=False
        )
        if shown.returncode:
            print(f"dvc exp show failed: {shown.stderr.strip()}", file=sys.stderr)
            return shown.returncode
        rows += experiment_rows(json.loads(shown.stdout))
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
