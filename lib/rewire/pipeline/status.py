"""What ``make repro`` will do, said before it does it: ``python -m rewire.pipeline.status``.

* Stages out of date (``dvc status``): their names and what changed, then ``dvc repro`` runs them.
* Everything current (a fresh clone: the results are committed): it says so, and how to retrain
  every stage anyway: ``make retrain`` (``dvc repro -f``), with the time that takes at the active
  scale, summed from the committed results (:func:`retrain_seconds`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

__all__ = ["stale_stages", "retrain_seconds", "recorded_seconds", "describe", "main"]

SHOWN = 3  # changed paths named per stage and kind; the rest are counted


def stale_stages(dvc_yaml: str | os.PathLike = "dvc.yaml") -> dict[str, list[str]]:
    """``dvc status``: every stage that ``dvc repro`` would run, with what changed (deps, outs, command)."""
    # dvc of this interpreter (`python -m dvc`), so a venv that is not activated still finds it
    result = subprocess.run(
        [sys.executable, "-m", "dvc", "status", "--json", str(dvc_yaml)], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"`dvc status` failed: {result.stderr.strip() or result.stdout.strip()}")
    status = json.loads(result.stdout or "{}")
    stale = {}
    for stage, changes in status.items():
        reasons = []
        for change in changes:
            if isinstance(change, str):
                reasons.append(change)
            else:
                for kind, paths in change.items():
                    shown = [f"{p} ({s})" for p, s in list(paths.items())[:SHOWN]]
                    more = f" and {len(paths) - SHOWN} more" if len(paths) > SHOWN else ""
                    reasons.append(f"{kind}: " + ", ".join(shown) + more)
        stale[stage.split(":")[-1]] = reasons
    return stale


def retrain_seconds(
    results: str | os.PathLike = "results", dvc_yaml: str | os.PathLike = "dvc.yaml"
) -> dict[str, float]:
    """Seconds of training each stage's committed results record, by stage (:func:`recorded_seconds`)."""
    return {stage: found[0] for stage, found in recorded_seconds(results, dvc_yaml).items()}


def recorded_seconds(
    results: str | os.PathLike = "results", dvc_yaml: str | os.PathLike = "dvc.yaml"
) -> dict[str, tuple[float, str]]:
    """``(seconds, source)`` by stage, from the first of these in ``results/<stage>/``:

    1. ``details.json``'s ``train_seconds``: the training time of the stage's runs as the run engine
       recorded it (found-again runs included), written by the experiments' reports;
    2. the sum of the ``train_seconds`` column of ``curves.csv`` (per epoch, from the same records);
    3. ``notebook_seconds``: the executed notebook's wall time, short when the runs were found
       again rather than trained (a lower bound).
    """
    stages = yaml.safe_load(Path(dvc_yaml).read_text(encoding="utf-8"))["stages"]
    found: dict[str, tuple[float, str]] = {}
    for stage in stages:
        folder = Path(results) / stage
        values: dict = {}
        for name in ("metrics.json", "details.json"):
            if (folder / name).exists():
                values.update(json.loads((folder / name).read_text(encoding="utf-8")))
        curves = _curve_seconds(folder / "curves.csv")
        if isinstance(values.get("train_seconds"), (int, float)):
            found[stage] = (float(values["train_seconds"]), "train_seconds")
        elif curves is not None:
            found[stage] = (curves, "curves.csv train_seconds")
        elif isinstance(values.get("notebook_seconds"), (int, float)):
            found[stage] = (float(values["notebook_seconds"]), "notebook_seconds")
    return found


def _curve_seconds(path: Path) -> float | None:
    import csv

    if not path.exists():
        return None
    with path.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or "train_seconds" not in rows[0]:
        return None
    return sum(float(r["train_seconds"]) for r in rows if r["train_seconds"] not in ("", "nan"))


def _scale(params: str | os.PathLike = "params.yaml") -> str:
    from rewire.pipeline.params import active_scale, load

    return active_scale(load(params), where=str(params))


def describe(
    stale: dict[str, list[str]], seconds: dict[str, float], scale: str, force: bool = False, lower: tuple = ()
) -> str:
    """The message ``make repro`` (``make retrain``: ``force``) prints before running ``dvc repro`` (``-f``).

    ``lower``: the stages whose time is only the notebook's (their runs were found again): a lower bound.
    """
    minutes = max(1, round(sum(seconds.values()) / 60))
    span = f"{'at least' if lower else 'about'} {minutes} minute{'s' if minutes > 1 else ''}"
    basis = "the committed results' recorded minutes by stage: " + (
        ", ".join(f"{s} {v / 60:.1f}" for s, v in seconds.items()) or "none recorded"
    )
    if lower:
        basis += f"; {', '.join(lower)} recorded only the notebook's time, their runs having been found again"
    if force:
        return f"dvc repro -f retrains every stage at scale '{scale}': {span} ({basis})."
    if stale:
        count = f"{len(stale)} stage{'s' if len(stale) > 1 else ''}"
        lines = [f"dvc repro will run {count} at scale '{scale}' (out of date):"]
        for stage, reasons in stale.items():
            lines.append(f"  {stage}: " + ("; ".join(reasons) if reasons else "changed"))
        known = {stage: seconds[stage] for stage in stale if stage in seconds}
        if known:
            stale_minutes = max(1, round(sum(known.values()) / 60))
            lines.append(
                f"Runs already under checkpoints/ are found again by their hash; any not there train: "
                f"{'at least' if set(lower) & set(known) else 'about'} {stale_minutes} minutes for these stages "
                f"when nothing is found ({basis})."
            )
        unrecorded = [stage for stage in stale if stage not in seconds]
        if unrecorded:
            lines.append(
                f"No training time is recorded for {', '.join(unrecorded)} (never run here, or no record): "
                f"the budget comments of their scales.yaml blocks estimate it."
            )
        return "\n".join(lines)
    return (
        f"Results are current at scale '{scale}': every stage matches its code, data and parameters "
        f"(dvc status), so dvc repro has nothing to run.\n"
        f"To retrain everything anyway: `make retrain` (= dvc repro -f), {span} at the '{scale}' scale ({basis})."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rewire.pipeline.status", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dvc-yaml", default="dvc.yaml")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--results", default="results")
    parser.add_argument("--force", action="store_true", help="describe `dvc repro -f` (make retrain)")
    args = parser.parse_args(argv)
    try:
        stale = {} if args.force else stale_stages(args.dvc_yaml)
        scale = _scale(args.params)
    except (RuntimeError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    found = recorded_seconds(args.results, args.dvc_yaml)
    lower = tuple(stage for stage, (_, source) in found.items() if source == "notebook_seconds")
    print(describe(stale, {stage: value for stage, (value, _) in found.items()}, scale, args.force, lower))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
