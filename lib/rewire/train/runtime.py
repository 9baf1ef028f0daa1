"""Where and with which seeds a run executes.

The device is chosen at run time (CUDA when present, else CPU) and recorded in
results; it is never a parameter, so moving between machines does not change
what DVC considers the experiment.
"""

from __future__ import annotations

import platform
import subprocess
from dataclasses import asdict, dataclass

import numpy as np
import torch


def pick_device(preferred: str | None = None) -> torch.device:
    """CUDA when available, else CPU; ``preferred`` ("cpu", "cuda", "cuda:1") overrides."""
    if preferred:
        device = torch.device(preferred)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {preferred!r} requested but CUDA is not available; use 'cpu' or leave it unset")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


@dataclass(frozen=True)
class Seeds:
    """Independent seeds for the three sources of randomness of a run (as in open_lth).

    ``model`` initialises the weights, ``data_order`` shuffles the training set and
    ``augmentation`` draws crops and flips. ``Seeds.from_run_seed(s)`` derives all
    three from one run seed with numpy's ``SeedSequence`` so that the streams differ.
    """

    model: int
    data_order: int
    augmentation: int

    @classmethod
    def from_run_seed(cls, seed: int) -> Seeds:
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"a run seed must be a non-negative int, got {seed!r}")
        children = np.random.SeedSequence(seed).spawn(3)
        model, order, augmentation = (int(c.generate_state(1)[0]) for c in children)
        return cls(model=model, data_order=order, augmentation=augmentation)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def seed_model_init(seeds: Seeds) -> None:
    """Seed torch's global generator before building a model (weights init, dropout)."""
    torch.manual_seed(seeds.model)


# What defines a result: the code and the experiment's definition. Pipeline outputs (results/,
# reports/, README.md, dvc.lock) are rewritten while `dvc repro` runs and must not make it "dirty".
SOURCE_PATHS = ("lib", "notebooks", "benchmarks", "params.yaml", "dvc.yaml", "pyproject.toml", "requirements.txt")


def git_commit() -> str:
    """The current commit (``-dirty`` if the code or the experiment definitions differ from it: see
    :data:`SOURCE_PATHS`), or ``unknown`` outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", *SOURCE_PATHS],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=top,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")
