"""Checkpoint files of training runs.

A checkpoint is a plain dictionary of tensors, numbers, strings, lists and dicts,
so it loads with ``torch.load(weights_only=True)`` (no arbitrary code runs when a
file is opened). It carries a format tag so that a file written by another
program is recognised as foreign instead of half-loaded, and it is written
atomically so that a run killed while saving leaves the previous checkpoint
intact.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from rewire.io import atomic_path

FORMAT = "rewire-checkpoint/1"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: corrupt, foreign, or from a different run."""


def save(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` with the format tag; atomic (temporary file, then rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **state}, tmp)
    return path


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a rewire checkpoint with ``weights_only=True``; raise ``CheckpointError`` with advice otherwise."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:  # corrupt zip, truncated file, pickled objects that weights_only refuses
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}). "
            f"It is corrupt or was not written by rewire; delete it (or its run directory) to start the run afresh."
        ) from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(
            f"{path} is not a {FORMAT} checkpoint (found {found!r}). It was written by another program; "
            f"point the run at a different directory or delete the file to start afresh."
        )
    return state
