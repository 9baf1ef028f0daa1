"""The scales' blocks: which experiment reads which values at which scale.

``params.yaml`` names the active scale (``scale: cpu``); the blocks, one per scale (``smoke`` /
``cpu`` / ``paper``) with one entry per experiment, live in ``scales.yaml`` beside it
(:data:`BLOCKS_FILE`). Anything else a user puts in ``params.yaml`` overrides single values of
the blocks (``cpu: {quickstart: {epochs: 3}}``, or ``dvc exp run -S +cpu.quickstart.epochs=3``).
DVC shows every key of ``params.yaml`` in ``dvc exp show``, so a short ``params.yaml`` keeps that
table narrow. (Blocks left in ``params.yaml`` itself still work.)

This module only reads the files, so the experiments' own command lines use it too; the checks
of the values are each experiment's schema (:mod:`rewire.experiments.schema`), run for the
whole pipeline by :mod:`rewire.pipeline.validate`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "SCALES",
    "BLOCKS_FILE",
    "ParamsError",
    "load",
    "source",
    "merge",
    "active_scale",
    "stage_values",
    "shared_values",
]

SCALES = ("smoke", "cpu", "gpu", "paper")  # gpu: one lent GPU, `make gpu-evidence` (results/gpu/)
BLOCKS_FILE = "scales.yaml"  # beside params.yaml: the scales' blocks, when they are not in params.yaml


class ParamsError(ValueError):
    """``params.yaml`` does not fit the stage or notebook it is used for."""


def load(path: str | os.PathLike = "params.yaml") -> dict[str, Any]:
    """``params.yaml`` merged over the blocks of ``scales.yaml`` beside it (when that file exists)."""
    params = _read(Path(path))
    blocks_path = Path(path).with_name(BLOCKS_FILE)
    if blocks_path.exists():
        blocks = _read(blocks_path)
        if "scale" in blocks:
            raise ParamsError(f"{blocks_path}: 'scale' belongs in {Path(path).name}, not beside the blocks")
        params = merge(blocks, params)
    return params


def source(path: str | os.PathLike = "params.yaml") -> str:
    """The file that holds the blocks, for messages: ``scales.yaml`` beside ``path`` when present."""
    blocks_path = Path(path).with_name(BLOCKS_FILE)
    return str(blocks_path) if blocks_path.exists() else str(path)


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``: mappings merged key by key, anything else (lists too) replaced."""
    merged = dict(base)
    for key, value in over.items():
        merged[key] = merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ParamsError(f"{path} not found; run from the repository root or pass the path to params.yaml")
    try:
        params = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ParamsError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(params, dict):
        raise ParamsError(f"{path} must be a mapping with a 'scale' key and one block per scale")
    return params


def active_scale(params: dict[str, Any], override: str | None = None, where: str = "params.yaml") -> str:
    scale = override if override is not None else params.get("scale")
    if scale not in SCALES:
        raise ParamsError(
            f"{where}: scale {scale!r} is not one of {', '.join(SCALES)}. Set `scale:` in params.yaml "
            f"or switch with `dvc exp run -S scale=paper`."
        )
    if not isinstance(params.get(scale), dict):
        raise ParamsError(f"{where}: there is no '{scale}:' block; add one with an entry per stage")
    return scale


def stage_values(
    stage: str, path: str | os.PathLike = "params.yaml", scale: str | None = None
) -> tuple[str, dict[str, Any]]:
    """Return ``(scale, values)`` of ``stage`` at the active (or given) scale."""
    params = load(path)
    scale = active_scale(params, scale, where=str(path))
    values = params[scale].get(stage)
    if not isinstance(values, dict):
        raise ParamsError(f"{path}: '{scale}.{stage}' is missing or not a mapping; copy the block of another scale")
    return scale, values


def shared_values(names, path: str | os.PathLike = "params.yaml") -> dict[str, Any]:
    """The keys of the top-level mappings ``names`` (blocks shared by every scale, e.g. ``dpf_grid``)."""
    if not names:
        return {}
    params = load(path)
    merged: dict[str, Any] = {}
    for name in names:
        block = params.get(name)
        if name in SCALES or not isinstance(block, dict):
            raise ParamsError(f"{path}: '{name}' is not a top-level mapping shared by all scales")
        merged.update(block)
    return merged
