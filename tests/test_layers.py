"""The library's layers: imports run downward, and modules stay small (issue 18, point 4).

Every module of ``lib/rewire`` belongs to one *unit* (a subpackage such as ``rewire.sparse``, or one
experiment package such as ``rewire.experiments.quickstart``) and every unit to one layer of
:data:`LAYERS`, bottom first. A module may import its own unit and any unit of a lower layer; an
import of a higher layer, or of another unit of its own layer, fails this test with the file, the line
and both layers. Imports inside functions count (they run as surely, only later). The walk reads the
source with :mod:`ast`; it imports nothing.

Why this order:

* ``rewire.io`` (atomic writes) serves everyone.
* ``sparse`` (the mask mechanism and shared primitives), ``models`` (architectures), ``data`` and
  ``attacks`` are foundations that know nothing of each other: the mask mechanism knows no concrete
  model, and a model never knows which method sparsifies it.
* ``train`` (the loop, checkpoints, several processes) uses the mask mechanism (it keeps masks in
  step across ranks) and nothing above it.
* ``methods`` plug into the loop: a selector on the mask mechanism or a :class:`rewire.train.Callback`
  (so they sit above ``train``), and DNW's analyses read concrete models.
* ``reporting`` (claims, results, plots) reads results; the experiments' report modules use it.
* the engine layer (``rewire.experiments`` itself: the run engine, the config schema, the run specs,
  the registry, the scales' blocks) runs every experiment and knows none of them;
* the experiment packages (``rewire.experiments.<name>``) may build on each other's runs;
* ``pipeline`` reaches the experiments through the registry and their schemas only, never an
  experiment package (:data:`NOT_ACROSS`); the command line ``rewire/__main__.py`` is on top.

A module over :data:`MAX_LINES` lines fails too, unless :data:`LONG_MODULES` names it with a reason.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

LIBRARY = Path(__file__).resolve().parents[1] / "lib"
PACKAGE = LIBRARY / "rewire"
MAX_LINES = 600  # HELPERS.md, "Style": no module over ~600 lines
LONG_MODULES: dict[str, str] = {}  # "rewire.x.y": "why it stays long" (README says so too); none today

ENGINE_MODULES = ("engine", "schema", "base", "registry", "scales")  # rewire.experiments.<these>: the engine layer
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (  # (layer, its units), bottom first
    ("io", ("rewire", "rewire.io")),
    ("foundations", ("rewire.sparse", "rewire.models", "rewire.data", "rewire.attacks")),
    ("train", ("rewire.train",)),
    ("methods", ("rewire.methods",)),
    ("reporting", ("rewire.reporting",)),
    ("engine", ("rewire.experiments",)),  # rewire/experiments/__init__.py and ENGINE_MODULES
    ("experiments", ("rewire.experiments.*",)),  # every other child of rewire.experiments is its own unit
    ("pipeline", ("rewire.pipeline",)),
    ("cli", ("rewire.__main__",)),
)
PEERS_MAY_IMPORT = {"experiments"}  # an experiment package may build on another's runs
NOT_ACROSS = {("pipeline", "experiments"): "the pipeline reaches an experiment through the registry and its schema"}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    path: Path
    line: int
    target: str  # the imported rewire module (or package)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(LIBRARY).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def library_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def is_module(name: str) -> bool:
    base = LIBRARY.joinpath(*name.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def imports_of(module: str, path: Path, source: str | None = None) -> list[Import]:
    """Every ``rewire`` import of a module, at any depth (functions and classes included); ``source``
    replaces the file's text (the tests below break the rules without writing into the library)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    source = path.read_text(encoding="utf-8") if source is None else source
    found = []
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from rewire.experiments import engine` imports the module rewire.experiments.engine
            targets = sorted({f"{source}.{a.name}" if is_module(f"{source}.{a.name}") else source for a in node.names})
        else:
            continue
        found += [Import(module, path, node.lineno, t) for t in targets if t.split(".")[0] == "rewire"]
    return found


def unit_of(module: str) -> str:
    """The unit of ``module``: its experiment package, engine module or subpackage of ``rewire``."""
    parts = module.split(".")
    if parts[:2] == ["rewire", "experiments"] and len(parts) > 2:  # the engine layer is one unit
        return "rewire.experiments" if parts[2] in ENGINE_MODULES else ".".join(parts[:3])
    if module == "rewire.__main__":
        return module
    return ".".join(parts[:2])


def layer_of(unit: str) -> int:
    for index, (_, units) in enumerate(LAYERS):
        if unit in units:
            return index
    for index, (_, units) in enumerate(LAYERS):
        if any(u.endswith(".*") and unit.startswith(u[:-1]) for u in units):
            return index
    raise AssertionError(f"{unit} is in no layer: add it to LAYERS in {Path(__file__).name}")


def violation(edge: Import) -> str | None:
    """Why ``edge`` breaks the layering (a line naming the file, the line and both layers), or ``None``."""
    unit, target_unit = unit_of(edge.module), unit_of(edge.target)
    if unit == target_unit:
        return None
    here, there = layer_of(unit), layer_of(target_unit)
    names = LAYERS[here][0], LAYERS[there][0]
    where = f"{edge.path.relative_to(LIBRARY.parent)}:{edge.line}: {edge.module} imports {edge.target}"
    if names in NOT_ACROSS:
        return f"{where}: layer {names[0]} must not import layer {names[1]} ({NOT_ACROSS[names]})"
    if there > here:
        return f"{where}: layer {names[0]} imports the higher layer {names[1]} (imports run downward)"
    if there == here and names[0] not in PEERS_MAY_IMPORT:
        return f"{where}: {unit} imports {target_unit}, another unit of its own layer {names[0]}"
    return None


def all_imports() -> list[Import]:
    return [edge for module, path in library_modules().items() for edge in imports_of(module, path)]


def test_every_module_is_in_a_layer():
    for module in library_modules():
        layer_of(unit_of(module))


def test_every_imported_rewire_module_exists():
    """A module moved without its importers updated fails here, before any import runs."""
    missing = [
        f"{edge.path.relative_to(LIBRARY.parent)}:{edge.line}: {edge.target}"
        for edge in all_imports()
        if not is_module(edge.target)
    ]
    assert not missing, "imports of modules that do not exist:\n" + "\n".join(missing)


def test_imports_run_downward():
    problems = [problem for edge in all_imports() if (problem := violation(edge))]
    assert not problems, "imports against the layers:\n" + "\n".join(problems)


def test_modules_stay_small():
    long = {
        module: count
        for module, path in library_modules().items()
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES and module not in LONG_MODULES
    }
    assert not long, (
        f"modules over {MAX_LINES} lines (split them into modules with one job each, or list them in "
        f"LONG_MODULES with the reason): " + ", ".join(f"{m} ({n} lines)" for m, n in sorted(long.items()))
    )
    assert all(reason.strip() for reason in LONG_MODULES.values())


@pytest.mark.parametrize(
    "module, source, message",
    [
        (
            "rewire.sparse.toy",
            "from rewire.train.trainer import Callback\n",
            r"lib/rewire/sparse/toy.py:1: rewire.sparse.toy imports rewire.train.trainer: "
            r"layer foundations imports the higher layer train",
        ),
        (
            "rewire.sparse.toy",
            "def f():\n    from rewire.models import tiny_graphs\n",  # inside a function, and a peer
            r"toy.py:2: .*imports rewire.models.tiny_graphs: rewire.sparse imports rewire.models, another unit of its "
            r"own layer foundations",
        ),
        (
            "rewire.pipeline.toy",
            "from rewire.experiments.quickstart import plan\n",
            r"layer pipeline must not import layer experiments \(the pipeline reaches an experiment through",
        ),
        ("rewire.experiments.engine.toy", "from .. import registry\n", None),  # relative, within its unit
    ],
)
def test_an_import_against_the_layers_is_named_with_its_file_line_and_layers(module, source, message):
    path = LIBRARY.joinpath(*module.split(".")).with_suffix(".py")
    problems = [problem for edge in imports_of(module, path, source) if (problem := violation(edge))]
    if message is None:
        assert not problems
    else:
        assert len(problems) == 1 and re.search(message, problems[0]), problems


def subpackage_graph() -> dict[tuple[str, str], int]:
    """(importing unit, imported unit) -> number of import statements, experiment packages merged."""

    def merged(unit: str) -> str:
        return "rewire.experiments.<packages>" if layer_of(unit) == layer_of("rewire.experiments.*") else unit

    graph: dict[tuple[str, str], int] = {}
    for edge in all_imports():
        pair = merged(unit_of(edge.module)), merged(unit_of(edge.target))
        if pair[0] != pair[1]:
            graph[pair] = graph.get(pair, 0) + 1
    return graph


if __name__ == "__main__":  # python tests/test_layers.py: the import graph between subpackages
    for (source, target), count in sorted(subpackage_graph().items()):
        print(f"{source:32} -> {target:32} {count}")
