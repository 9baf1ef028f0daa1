"""Notebook parameters checked against a stage's block; the blocks themselves are read by ``rewire.experiments.scales``.

``params.yaml`` names the active scale (``scale: cpu``) and holds one block per
scale, ``smoke`` / ``cpu`` / ``paper``, each with one entry per experiment (stage).
The blocks may instead live in ``scales.yaml`` beside it (:data:`BLOCKS_FILE`), leaving
``params.yaml`` with what a user switches: ``scale`` and, optionally, overrides of single
values (``cpu: {quickstart: {epochs: 3}}``), merged over the blocks. DVC shows every key of
``params.yaml`` in ``dvc exp show``, so a short ``params.yaml`` keeps that table narrow.

The values of a stage are checked against the parameters cell of its notebook,
which declares every parameter with a type annotation and its smoke-scale default,
for example ``epochs: int = 1``, and against the experiment's schema
(:mod:`rewire.pipeline.validate`). An unknown scale, an unknown key or a value of
the wrong type stops with a message naming the file, the key and the fix.
"""

from __future__ import annotations

import os
from typing import Any

from rewire.experiments.scales import (  # noqa: F401  (re-exported: the pipeline's view of the same files)
    BLOCKS_FILE,
    SCALES,
    ParamsError,
    active_scale,
    load,
    merge,
    shared_values,
    source,
    stage_values,
)


def notebook_parameters(notebook: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Parameters declared in the notebook's ``parameters`` cell: name -> {type, default}.

    Read with :mod:`ast` (every ``name: type = value`` statement, whatever its comments or layout), not
    with papermill's line parser, which skips a line whose comment holds an ``=`` and an annotation
    such as ``list | str`` without a word.
    """
    import ast

    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    if not cells:
        raise ParamsError(f"{notebook} has no cell tagged 'parameters'")
    try:
        tree = ast.parse(cells[0].source)
    except SyntaxError as error:
        raise ParamsError(f"{notebook}: the parameters cell is not valid Python ({error})") from error
    declared = {}
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            declared[node.target.id] = {
                "type": ast.unparse(node.annotation),
                "default": _literal(ast.unparse(node.value)),
            }
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            declared[node.targets[0].id] = {"type": "Any", "default": _literal(ast.unparse(node.value))}
    return declared


def _literal(text: str) -> Any:
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


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
    options = _top_level_union(type_name)
    if len(options) > 1:
        return any(matches_type(value, part) for part in options)
    if type_name.startswith("list[") and type_name.endswith("]"):
        return isinstance(value, list) and all(matches_type(v, type_name[5:-1]) for v in value)
    if type_name.startswith("dict[") and type_name.endswith("]"):
        return isinstance(value, dict)  # the experiment's schema checks the items
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


def _top_level_union(type_name: str) -> list[str]:
    """``"list[int | None] | str"`` -> ``["list[int | None]", "str"]`` (only the outer ``|`` split)."""
    parts, depth, current = [], 0, ""
    for char in type_name:
        depth += char == "["
        depth -= char == "]"
        if char == "|" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]
