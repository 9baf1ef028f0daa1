"""Trained models travel with DVC: ``python -m rewire.pipeline.models export`` (``make models``).

Checkpoints live in ``checkpoints/<stage>/<run>/`` (the run engine's directories, outside git and
outside DVC's stage outputs, so a rerun never deletes them and a fresh clone's ``dvc status``
stays clean). ``export`` copies the newest *finished* run of every run name and settings
(``record.json`` + ``checkpoint.pt``; runs of older code are left behind) into ``models/<stage>/<run>/`` and tracks each stage folder
with ``dvc add``; then ``dvc push`` on the GPU machine and ``dvc pull models/<stage>.dvc``
elsewhere bring the models, and :func:`rewire.experiments.engine.load_run` opens them::

    make models && git add models/*.dvc && git commit -m "models" && dvc push
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

RECORD, CHECKPOINT = "record.json", "checkpoint.pt"


def finished_runs(stage_dir: Path) -> list[Path]:
    """The newest finished run (record + checkpoint) of every run name and settings under ``stage_dir``.

    Run directories are ``<name>-<settings hash>-<code hash>``; runs of older code stay on disk
    after a code change and are not exported.
    """
    newest: dict[str, Path] = {}
    for run in (d for d in stage_dir.iterdir() if (d / RECORD).exists() and (d / CHECKPOINT).exists()):
        key = run.name.rsplit("-", 1)[0]
        if key not in newest or (run / RECORD).stat().st_mtime > (newest[key] / RECORD).stat().st_mtime:
            newest[key] = run
    return sorted(newest.values())


def export(checkpoints: Path, models: Path, *, track: bool = True) -> dict[str, int]:
    if not checkpoints.is_dir():
        raise FileNotFoundError(f"{checkpoints} does not exist: train first (`dvc repro`), then export")
    exported = {}
    for stage_dir in sorted(p for p in checkpoints.iterdir() if p.is_dir()):
        runs = finished_runs(stage_dir)
        if not runs:
            continue
        target = models / stage_dir.name
        for run in runs:
            destination = target / run.name
            destination.mkdir(parents=True, exist_ok=True)
            for name in (RECORD, CHECKPOINT):
                shutil.copy2(run / name, destination / name)
        exported[stage_dir.name] = len(runs)
        if track:
            subprocess.run([sys.executable, "-m", "dvc", "add", str(target)], check=True)
    return exported


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rewire.pipeline.models", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="copy finished runs to models/<stage>/ and `dvc add` each stage folder")
    ex.add_argument("--checkpoints", default="checkpoints")
    ex.add_argument("--models", default="models")
    ex.add_argument("--no-dvc", action="store_true", help="copy only; do not run `dvc add`")
    args = parser.parse_args(argv)
    try:
        exported = export(Path(args.checkpoints), Path(args.models), track=not args.no_dvc)
    except (FileNotFoundError, subprocess.CalledProcessError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(exported, indent=2))
    print("next: git add models/*.dvc && git commit && dvc push (needs a DVC remote: `dvc remote add -d ...`)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
