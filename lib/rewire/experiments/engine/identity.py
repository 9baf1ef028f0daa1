"""A run's identity: the hash of its settings, the hash of the code it executes, its directory name.

The *code hash* (:func:`code_fingerprint`) covers the static import closure (:func:`module_closure`)
of its roots: the driver that calls the engine (``code=``), the engine itself, the modules defining
the model and its sparsity parametrizations and callbacks. It hashes each module's syntax tree without
docstrings, so reformatting, comments and documentation never change a run's identity, while any change
of behaviour does.

Left out (:func:`left_out_of_code_hash`), because they never change what a run computes: the
presentation layers :mod:`rewire.pipeline` and :mod:`rewire.reporting`, and every module named
``report`` or ``paper`` in an experiment package (``rewire.experiments.<name>.report``: tables,
claims and figures; the papers' quoted numbers live in data files such as ``paper.yaml``, which no
import reaches). Editing a number quoted from a paper, or a table's layout, never retrains a run.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
import sys
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = [
    "PRESENTATION_PACKAGES",
    "PRESENTATION_MODULE_NAMES",
    "left_out_of_code_hash",
    "module_closure",
    "code_fingerprint",
    "driver_modules",
    "rewire_modules_of",
    "settings_digest",
    "run_directory",
]

# Packages that never change what a run computes (they read its results): not part of the code hash.
PRESENTATION_PACKAGES = ("rewire.pipeline", "rewire.reporting")
# Modules of an experiment package (``rewire.experiments.<name>.<module>``) that report a run or hold
# the paper's quoted numbers: not part of the code hash either (the experiment contract, HELPERS.md).
PRESENTATION_MODULE_NAMES = ("report", "paper")
EXPERIMENTS_PACKAGE = "rewire.experiments"

_MISSING_CODE = (
    "{what} needs code=: the modules of the driver that trains the run, e.g. code=(__name__,) in an "
    "experiment's runs module (rewire.experiments.<name>.runs), so that editing the driver makes a new run "
    "(the engine adds its own modules, the model's and the callbacks')"
)


def left_out_of_code_hash(name: str) -> bool:
    """Whether module ``name`` is outside every code hash (module docstring): the presentation packages,
    and the ``report`` / ``paper`` modules (or packages) of an experiment package."""
    if any(name == package or name.startswith(package + ".") for package in PRESENTATION_PACKAGES):
        return True
    parts = name.split(".")
    inside_experiment = len(parts) >= 4 and ".".join(parts[:2]) == EXPERIMENTS_PACKAGE
    return inside_experiment and any(part in PRESENTATION_MODULE_NAMES for part in parts[3:])


def _module_file(name: str) -> Path | None:
    if name == "__main__":  # a script run as `python tools/x.py` (it has no import spec)
        path = getattr(sys.modules.get("__main__"), "__file__", None)
        return Path(path) if path and path.endswith(".py") else None
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _imports(name: str, path: Path) -> set[str]:
    """The ``rewire`` modules that module ``name`` imports anywhere (functions included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "rewire")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != "rewire":
                continue
            found.add(module)
            for alias in node.names:  # `from rewire.sparse import masks` imports a submodule
                candidate = f"{module}.{alias.name}"
                if _is_module(module) and _is_module(candidate):
                    found.add(candidate)
    return found


def module_closure(roots: Iterable[str]) -> list[str]:
    """Every module that ``roots`` import, transitively, sorted: the roots themselves (whatever their
    package: a test or a script may drive a run) and the ``rewire`` modules they reach (parent packages
    included); the modules of :func:`left_out_of_code_hash` are left out and not followed."""
    pending = list(roots)
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen or left_out_of_code_hash(name):
            continue
        path = _module_file(name)
        if path is None:
            continue
        seen.add(name)
        parts = name.split(".")
        if parts[0] == "rewire":  # importing a.b.c runs a and a.b
            pending.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        pending.extend(_imports(name, path))
    return sorted(seen)


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(getattr(body[0], "value", None), ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
    return tree


@cache
def _module_digest(path: str, mtime_ns: int) -> str:
    tree = _strip_docstrings(ast.parse(Path(path).read_text(encoding="utf-8")))
    return hashlib.sha256(ast.dump(tree, include_attributes=False).encode()).hexdigest()


def code_fingerprint(roots: Iterable[str]) -> str:
    """A 10-hex-digit hash of the code of :func:`module_closure` ``(roots)``: syntax trees without
    docstrings, so formatting, comments and documentation do not count."""
    digest = hashlib.sha256()
    for name in module_closure(roots):
        path = _module_file(name)
        digest.update(name.encode())
        digest.update(_module_digest(str(path), path.stat().st_mtime_ns).encode())
    return digest.hexdigest()[:10]


def driver_modules(code: Iterable[str | ModuleType] | None, what: str = "fit_run") -> tuple[str, ...]:
    """``code=`` checked before any work: module names (or modules) of the driver, at least one, each
    importable. Refuses a missing or empty ``code`` (a :class:`TypeError` naming what to pass)."""
    if code is None or isinstance(code, (str, ModuleType)):
        if isinstance(code, (str, ModuleType)):
            raise TypeError(f"{what}: code= takes a tuple of modules, e.g. code=({_name(code)!r},), not one module")
        raise TypeError(_MISSING_CODE.format(what=what))
    names = tuple(_name(entry) for entry in code)
    if not names:
        raise TypeError(_MISSING_CODE.format(what=what) + "; got code=()")
    unknown = [name for name in names if _module_file(name) is None]
    if unknown:
        raise ValueError(
            f"{what}: code= names {', '.join(map(repr, unknown))}, not an importable Python module; pass the "
            f"driver's module name, e.g. code=(__name__,) or code=('rewire.experiments.quickstart.runs',)"
        )
    return names


def _name(entry: str | ModuleType) -> str:
    if isinstance(entry, ModuleType):
        return entry.__name__
    if isinstance(entry, str) and entry:
        return entry
    raise TypeError(f"code= holds module names or modules, got {entry!r}")


def rewire_modules_of(objects: Iterable[Any]) -> set[str]:
    """The ``rewire`` modules defining the classes of ``objects`` (a model's modules, the callbacks)."""
    return {type(o).__module__ for o in objects if type(o).__module__.split(".")[0] == "rewire"}


def settings_digest(config: dict[str, Any]) -> str:
    """A 10-hex-digit hash of a run's settings (JSON, sorted keys)."""
    return hashlib.md5(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:10]


def run_directory(root: str | os.PathLike, name: str, config: dict[str, Any], code: str | None = None) -> Path:
    """``root/<name>-<settings hash>[-<code hash>]`` (open_lth style named, hashed runs)."""
    suffix = f"-{code}" if code else ""
    return Path(root) / f"{name}-{settings_digest(config)}{suffix}"
