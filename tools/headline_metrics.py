"""Shrink each committed ``results/<stage>/metrics.json`` to its headline numbers, without retraining.

``dvc metrics show`` prints one row per metrics file and one column per key across the files, so
the files share their keys (issue 18, point 9; the table fits 120 columns):

    claims_held  claims_reversed  claims_not_decided   the paper's claims decided at this scale
    top1         the headline accuracy of the paper's method (test top-1, %)
    baseline_top1  the accuracy it is compared with (test top-1, %)

Everything else moves to ``details.json`` (which keeps every number the old ``metrics.json`` had).
The values come from the committed files of the same run (``details.json``, ``claims.csv``), so no
number changes; the experiments' reports write the same keys when a stage runs again.

    python tools/headline_metrics.py            # in the repository root; running it twice changes nothing
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

# The claims' verdicts (rewire.reporting.claims.VERDICTS): held, reversed; anything else is not decided.
HELD, REVERSED = "holds", "reversed"

# stage -> {headline key: the details.json key it is read from}
ACCURACIES = {
    "quickstart": {"top1": "test_top1_mean"},  # no paper number; no claims
    "tiny_graphs": {"top1": "static_dnw_top1_mean", "baseline_top1": "static_rg_top1_mean"},  # DNW vs RG
    "mobilenet_dnw": {"top1": "dnw_top1_mean", "baseline_top1": "rg_top1_mean"},  # DNW vs RG, Table 2
    "imagenet": {"top1": "dnw_dnw_x225_top1"},  # trained at the paper scale only
    "robust_binary": {"top1": "ours_p01_pgd_mean", "baseline_top1": "dense_at_pgd_mean"},  # PGD top-1
    "dpf_sweeps": {"top1": "dpf_0.9_top1_mean", "baseline_top1": "dense_0.0_top1_mean"},  # DPF vs dense
    "dpf_theory": {},  # a theorem, no accuracy
    "benchmark": {"top1": "best_sparse_top1_mean", "baseline_top1": "dense_top1_mean"},  # best sparse vs dense
}
# stages whose claim is one check in details.json rather than a claims.csv (DPF Theorem 4.1's bound)
CHECKS = {"dpf_theory": "theorem_bound_holds_all_runs"}


def claim_counts(stage_dir: Path, details: dict) -> dict[str, int]:
    stage = stage_dir.name
    if stage in CHECKS:
        holds = bool(details.get(CHECKS[stage]))
        return {"claims_held": int(holds), "claims_reversed": int(not holds), "claims_not_decided": 0}
    path = stage_dir / "claims.csv"
    if not path.exists() or not path.stat().st_size:
        return {}
    with path.open(encoding="utf-8") as f:
        verdicts = [row["verdict"] for row in csv.DictReader(f)]
    held, reversed_ = verdicts.count(HELD), verdicts.count(REVERSED)
    return {"claims_held": held, "claims_reversed": reversed_, "claims_not_decided": len(verdicts) - held - reversed_}


def headline(stage_dir: Path) -> tuple[dict, dict]:
    """(the new metrics.json, the new details.json) of one stage's committed results."""
    metrics = json.loads((stage_dir / "metrics.json").read_text(encoding="utf-8"))
    details_path = stage_dir / "details.json"
    details = json.loads(details_path.read_text(encoding="utf-8")) if details_path.exists() else {}
    details = {**metrics, **details}  # every number the old metrics.json had stays in details.json
    new = claim_counts(stage_dir, details)
    for key, source in ACCURACIES.get(stage_dir.name, {}).items():
        if isinstance(details.get(source), (int, float)) and not isinstance(details.get(source), bool):
            new[key] = details[source]
    return new, {**details, **new}


def write(path: Path, value: dict) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default="results")
    args = parser.parse_args(argv)
    for stage in ACCURACIES:
        stage_dir = Path(args.results) / stage
        if not (stage_dir / "metrics.json").exists():
            continue
        metrics, details = headline(stage_dir)
        write(stage_dir / "metrics.json", metrics)
        write(stage_dir / "details.json", details)
        print(f"{stage_dir / 'metrics.json'}: {metrics}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
