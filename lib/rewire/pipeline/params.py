"""The three scales of ``params.yaml`` and their validation.

``params.yaml`` names the active scale (``scale: cpu``) and holds one block per
scale, ``smoke`` / ``cpu`` / ``paper``, each with one entry per notebook stage.
The values of a stage are checked against the parameters cell of its notebook,
which declares every parameter with a type annotation and its smoke-scale default,
for example ``epochs: int = 1``. An unknown scale, an unknown key or a value of
the wrong type stops with a message naming the file, the key and the fix.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

SCALES = ("smoke", "cpu", "paper")


class ParamsError(ValueError):
    """``params.yaml`` does not fit the stage or notebook it is used for."""


def load(path: str | os.PathLike = "params.yaml") -> dict[str, Any]:
    path = Path(path)
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


def notebook_parameters(notebook: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Parameters declared in the notebook's ``parameters`` cell: name -> {type, default}."""
    import papermill

    declared = papermill.inspect_notebook(str(notebook))
    if not declared:
        raise ParamsError(f"{notebook} has no cell tagged 'parameters'")
    return {
        name: {"type": info["inferred_type_name"], "default": _literal(info["default"])}
        for name, info in declared.items()
    }


def _literal(source: str) -> Any:
    import ast

    try:
        return ast.literal_eval(source)
    except (ValueError, SyntaxError):
        return source


def check_values(values: dict[str, Any], declared: dict[str, dict[str, Any]], where: str) -> None:
    """Raise ``ParamsError`` if a key is not declared or a value does not match its annotation."""
    problems = []
    for key, value in values.items():
        if key not in declared:
            problems.append(f"'{key}' is not a parameter of the notebook (known: {', '.join(sorted(declared))})")
            continue
        type_name = declared[key]["type"]
        if not matches_type(value, type_name):
            problems.append(f"'{key}' must be {type_name}, got {type(value).__name__} {value!r}")
    if problems:
        raise ParamsError(f"{where}: " + "; ".join(problems))


def matches_type(value: Any, type_name: str) -> bool:
    """Check a YAML value against a parameters-cell annotation (int, float, str, bool, list[int], ...)."""
    type_name = type_name.replace(" ", "")
    if type_name in ("None", "", "Any"):
        return True
    if "|" in type_name:
        return any(matches_type(value, part) for part in type_name.split("|"))
    if type_name.startswith("list[") and type_name.endswith("]"):
        return isinstance(value, list) and all(matches_type(v, type_name[5:-1]) for v in value)
    checks = {
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "str": lambda v: isinstance(v, str),
        "bool": lambda v: isinstance(v, bool),
        "list": lambda v: isinstance(v, list),
        "dict": lambda v: isinstance(v, dict),
    }
    if type_name not in checks:
        raise ParamsError(f"unsupported parameter annotation {type_name!r}; use int, float, str, bool or list[...]")
    return checks[type_name](value)
