"""The experiment contract: every experiment has the same four parts, with the same names.

An experiment is a subpackage of :mod:`rewire.experiments` (registered in
:mod:`rewire.experiments.registry`) whose ``__init__`` exposes:

``Config``
    its typed config (:mod:`rewire.experiments.schema`), the only schema: ``params.yaml`` blocks,
    notebook parameters and the command line are checked against it before any work;
``plan(config) -> list[RunSpec]``
    the runs a config asks for, in the order they train (nothing is trained);
``run(config, *, context, only=None) -> Outcome``
    trains (or finds, by hash) the planned runs through the one run engine
    (:mod:`rewire.experiments.engine`) and returns what the report reads;
``report(config, outcome, out_dir, label) -> dict``
    tables, claims and figures into ``out_dir``; returns the headline metrics.

Inside the package: ``config.py`` (the schema), ``plan.py``, ``runs.py`` (training; its code is in
every run's identity), ``report.py`` (presentation; not in the identity) and ``paper.yaml`` (the
paper's quoted numbers, data, not code: editing a quoted number never retrains a run).

One command line drives all of them: ``python -m rewire run <experiment> --scale cpu [--only ROW]``
(see :mod:`rewire.__main__`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = ["RunSpec", "RunContextSpec", "Outcome", "select_rows"]


@dataclass(frozen=True)
class RunSpec:
    """One planned run: its row (what ``--only`` selects), its seed and what defines it.

    ``settings`` enter the run's settings hash; ``name`` is the run directory's readable prefix.
    """

    row: str
    seed: int
    name: str
    settings: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        return f"{self.row} seed {self.seed}"


@dataclass
class RunContextSpec:
    """Where and how an experiment runs: the same for the notebook, the CLI and the tests."""

    data_root: str | os.PathLike = "data"
    checkpoint_root: str | os.PathLike = "checkpoints"
    device: torch.device | str | None = None  # None: CUDA when present, else the CPU
    progress: bool | None = None  # None: a progress bar on a terminal
    reuse_checkpoints: bool | None = None  # None: the REWIRE_REUSE_CHECKPOINTS environment variable
    distributed: Any = None  # a rewire.train.distributed.DistContext under torchrun (world size > 1), else None

    def resolved_device(self) -> torch.device:
        from rewire.train.runtime import pick_device

        return torch.device(self.device) if self.device is not None else pick_device()

    def checkpoints(self, experiment: str) -> Path:
        return Path(self.checkpoint_root)


@dataclass
class Outcome:
    """What :func:`run` returns and :func:`report` reads: the finished runs and the data they used."""

    runs: list[Any]
    data_source: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def select_rows(specs: list[RunSpec], only: str | list[str] | tuple[str, ...] | None) -> list[RunSpec]:
    """The specs of the rows named in ``only`` (all when None); an unknown row stops with the known ones."""
    if only is None:
        return list(specs)
    wanted = [only] if isinstance(only, str) else list(only)
    known = list(dict.fromkeys(spec.row for spec in specs))
    missing = [row for row in wanted if row not in known]
    if missing:
        from rewire.experiments.schema import ConfigError

        raise ConfigError(f"--only {', '.join(missing)}: not a row of this plan; rows: {', '.join(known)}")
    return [spec for spec in specs if spec.row in wanted]
