"""A finished run back from its directory: :class:`ModelSpec` (how to rebuild the dense model) and
:func:`load_run` (the model with every trained mask restored, and its record)."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from rewire.experiments.engine.run_dirs import LINK_FILE, RECORD_FILE
from rewire.train import checkpoint as checkpoint_module
from rewire.train.trainer import Trainer

__all__ = ["ModelSpec", "LoadedRun", "load_run"]


@dataclass(frozen=True)
class ModelSpec:
    """How to rebuild a dense model: a name of :func:`rewire.models.build_model` and its arguments."""

    name: str
    num_classes: int = 10
    kwargs: dict[str, Any] = field(default_factory=dict)

    def build(self) -> nn.Module:
        from rewire.models import build_model

        return build_model(self.name, num_classes=self.num_classes, **self.kwargs)

    def as_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelSpec:
        return cls(values["name"], values.get("num_classes", 10), dict(values.get("kwargs", {})))


@dataclass
class LoadedRun:
    """A trained model back from its run directory, masks restored (:func:`load_run`)."""

    model: nn.Module
    record: dict[str, Any]
    layers: list[dict[str, Any]]

    @property
    def reached_sparsity(self) -> float:
        total = sum(layer["entries"] for layer in self.layers)
        return sum(layer["pruned"] for layer in self.layers) / total if total else 0.0

    def summary(self) -> dict[str, Any]:
        from rewire.sparse.flops import count_macs

        config = self.record.get("config", {})
        macs = count_macs(self.model)
        return {
            "run": self.record["name"],
            "method": config.get("method", "dense"),
            "target_sparsity": config.get("sparsity"),
            "reached_sparsity": self.reached_sparsity,
            "test_top1": self.record["final"].get("test_top1"),
            "macs_dense": macs.dense_macs,
            "macs_sparse": macs.sparse_macs,
            "commit": self.record.get("commit"),
            "checkpoint": self.record.get("checkpoint"),
        }


def load_run(run_dir: str | os.PathLike, *, device: str | torch.device = "cpu") -> LoadedRun:
    """Rebuild the model of a finished run and load its checkpoint with every mask restored.

    ``run_dir`` may also be the directory of a run reused across a code change (its ``reused.json`` link is
    followed). Each sparse tensor comes back behind an :class:`rewire.sparse.masks.AssignedMask` holding the
    trained mask (``masked`` route): the forward pass equals the trained model's, whatever method
    produced the mask. Per layer: entries, pruned, sparsity.
    """
    from rewire.sparse.masks import AssignedMask, sparse_modules, sparsify

    run_dir = Path(run_dir)
    link = run_dir / LINK_FILE
    if not (run_dir / RECORD_FILE).exists() and link.exists():  # a run reused under this directory's code
        run_dir = run_dir.parent / json.loads(link.read_text(encoding="utf-8"))["reused_run"]
    record_path = run_dir / RECORD_FILE
    if not record_path.exists():
        raise FileNotFoundError(
            f"{run_dir} has no {RECORD_FILE}: not a finished run of the run engine "
            f"(train it first, e.g. with `dvc repro`, or pass the run's directory)"
        )
    record = json.loads(record_path.read_text(encoding="utf-8"))
    if not record.get("model"):
        raise ValueError(
            f"{record_path} does not say how to rebuild its model (no 'model' entry); "
            f"runs trained with RunContext.fit(model_spec=...) or RunRequest(model_spec=...) can be loaded"
        )
    state = checkpoint_module.load(run_dir / Trainer.CHECKPOINT_FILE, map_location=device)["model"]
    model = ModelSpec.from_dict(record["model"]).build()
    suffix = ".original"
    for key in [k for k in state if k.endswith(suffix) and ".parametrizations." in k]:
        module_path, _, tensor = key[: -len(suffix)].partition(".parametrizations.")
        if not module_path:  # a parametrized tensor of the root module
            module_path, tensor = "", key[: -len(suffix)].split(".parametrizations.")[-1]
        module = model.get_submodule(module_path) if module_path else model
        prefix = f"{key[: -len(suffix)]}.0."
        allowed = state.get(prefix + "selector.allowed")
        with torch.no_grad():
            getattr(module, tensor).copy_(state[key])
        parametrization = sparsify(module, tensor, selector=AssignedMask(allowed), route="masked")
        parametrization.assign_mask(state[prefix + "mask"].bool())
    model_state = model.state_dict()
    restored = {k: v for k, v in state.items() if k in model_state}
    missing = sorted(set(model_state) - set(restored))
    if missing:
        raise checkpoint_module.CheckpointError(
            f"{run_dir / Trainer.CHECKPOINT_FILE} lacks {', '.join(missing[:5])}: "
            f"it does not belong to the model its record names"
        )
    model.load_state_dict(restored)
    model.to(device).eval()
    layers = []
    for name, _, p in sparse_modules(model):
        entries = p.mask.numel()
        pruned = int((~p.mask).sum())
        layers.append({"layer": name, "entries": entries, "pruned": pruned, "sparsity": pruned / entries})
    return LoadedRun(model, record, layers)
