"""Where a run lives: its directory under this code, a run of other code reused (and linked), its code history.

A run of settings S under code C lives in ``<root>/<name>-<hash of S>-<C>`` (:mod:`.identity`). When
that directory holds no checkpoint, a run of the same settings trained by other code may exist
(a *stale* run). By default it is left alone and the run trains again under C, with a warning that
names both directories, both code hashes and the flag that would reuse it. With
``reuse_checkpoints=True`` (CLI ``--reuse-checkpoints``, or ``REWIRE_REUSE_CHECKPOINTS=1``) the newest
stale run is reused, and the reuse is *linked*: C's directory receives ``reused.json`` naming the
reused run, so every later call under C -- with or without the flag -- finds that run again instead
of training it anew. A run reached through a link keeps its own directory, checkpoint and record.

Every run's record keeps the code hashes it was trained under (``code_history``, in order): a run
started under one code and resumed under another says ``resumed_under_other_code``.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewire.experiments.engine.identity import run_directory, settings_digest
from rewire.io import write_json
from rewire.train.checkpoint import CheckpointError
from rewire.train.trainer import Trainer

__all__ = [
    "RECORD_FILE",
    "LINK_FILE",
    "REUSE_ENV",
    "RunPlace",
    "choose_run_dir",
    "code_history",
    "portable_path",
    "stored_code",
]

RECORD_FILE = "record.json"
LINK_FILE = "reused.json"
REUSE_ENV = "REWIRE_REUSE_CHECKPOINTS"
REUSE_ADVICE = "rerun with --reuse-checkpoints (or REWIRE_REUSE_CHECKPOINTS=1; the reuse is recorded and linked)"


@dataclass(frozen=True)
class RunPlace:
    """Where a call of the engine trains, resumes or skips its run.

    ``run_dir`` holds the run's files; ``identity_dir`` is the directory this code's identity names
    (the same, unless a run of other code is reused); ``reused_from`` is that reused run, else ``None``.
    """

    run_dir: Path
    identity_dir: Path
    reused_from: Path | None = None


def reuse_requested(reuse: bool | None) -> bool:
    """``reuse`` if given, else the environment variable :data:`REUSE_ENV`."""
    if reuse is not None:
        return reuse
    return os.environ.get(REUSE_ENV, "").lower() not in ("", "0", "false", "no")


def portable_path(path: Path) -> str:
    """``path`` relative to the repository (the nearest folder above it holding ``dvc.yaml``), else
    relative to its grandparent: result files never carry a machine's absolute path."""
    path = Path(path).resolve()
    for parent in path.parents:
        if (parent / "dvc.yaml").exists():
            return path.relative_to(parent).as_posix()
    return Path(*path.parts[-3:]).as_posix()


def _read(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    return stored if isinstance(stored, dict) else None


def _run_info(run_dir: Path) -> dict[str, Any]:
    """The run's description: ``record.json`` if written, else the ``run`` entry of ``history.json``."""
    record = _read(run_dir / RECORD_FILE)
    if record and record.get("code"):
        return record
    history = _read(run_dir / Trainer.HISTORY_FILE) or {}
    return history.get("run") or {}


def stored_code(run_dir: Path) -> str | None:
    """The code hash a run directory's files name (the code that started the run), or ``None``."""
    return _run_info(run_dir).get("code")


def code_history(run_dir: Path) -> list[str]:
    """Every code hash the run in ``run_dir`` was trained under, in order (``[]`` for no run)."""
    info = _run_info(run_dir)
    history = info.get("code_history")
    if history:
        return list(history)
    return [info["code"]] if info.get("code") else []


def _stale_candidate(root: Path, name: str, config: dict[str, Any], exclude: Path) -> Path | None:
    prefix = f"{name}-{settings_digest(config)}-"
    candidates = [d for d in root.glob(prefix + "*") if d != exclude and (d / Trainer.CHECKPOINT_FILE).exists()]
    return max(candidates, key=lambda d: (d / Trainer.CHECKPOINT_FILE).stat().st_mtime) if candidates else None


def _followed_link(identity_dir: Path, root: Path) -> Path | None:
    link = _read(identity_dir / LINK_FILE)
    if link is None:
        return None
    target = root / link["reused_run"]
    if not (target / Trainer.CHECKPOINT_FILE).exists():
        raise CheckpointError(
            f"{identity_dir} links to the reused run {target} (code {link.get('its_code')}), which holds no "
            f"checkpoint any more; delete {identity_dir} to train this run again under this code "
            f"({link.get('this_code')}), or restore {target}"
        )
    return target


def choose_run_dir(
    root: Path, name: str, config: dict[str, Any], fingerprint: str, reuse_checkpoints: bool | None
) -> RunPlace:
    """Where the run of ``name`` with settings ``config`` under code ``fingerprint`` lives (module docstring);
    a reuse asked for now is linked under this code's directory before any training."""
    identity_dir = run_directory(root, name, config, fingerprint)
    linked = _followed_link(identity_dir, root)
    if linked is not None:
        return RunPlace(linked, identity_dir, linked)
    stored = stored_code(identity_dir) if identity_dir.exists() else None
    if stored is not None and stored != fingerprint:
        home = root / f"{identity_dir.name.rsplit('-', 1)[0]}-{stored}"
        raise CheckpointError(
            f"{identity_dir} holds a run of other code: its files name code {stored}, this code is {fingerprint} "
            f"(the directory was copied or renamed by hand). To reuse that run under this code, move it back to "
            f"{home} and {REUSE_ADVICE}; to retrain under this code, delete {identity_dir}"
        )
    if (identity_dir / Trainer.CHECKPOINT_FILE).exists():
        return RunPlace(identity_dir, identity_dir)
    stale = _stale_candidate(root, name, config, exclude=identity_dir)
    if stale is None:
        return RunPlace(identity_dir, identity_dir)
    if not reuse_requested(reuse_checkpoints):
        warnings.warn(
            f"{stale} holds a run of the same settings trained by other code ({stored_code(stale)}); this code is "
            f"{fingerprint}, so {name} trains again in {identity_dir.name}. To reuse the old run instead, stop and "
            f"{REUSE_ADVICE}",
            stacklevel=4,  # the caller of fit_run
        )
        return RunPlace(identity_dir, identity_dir)
    warnings.warn(
        f"reusing {stale.name} (trained by other code, {stored_code(stale)}) for {identity_dir.name} "
        f"because checkpoint reuse across code changes was requested; linked in {identity_dir / LINK_FILE}",
        stacklevel=4,  # the caller of fit_run
    )
    write_json(
        identity_dir / LINK_FILE,
        {
            "reused_run": stale.name,
            "its_code": stored_code(stale),
            "this_code": fingerprint,
            "why": "reused across a code change with --reuse-checkpoints; every call under this code finds it",
        },
    )
    return RunPlace(stale, identity_dir, stale)
