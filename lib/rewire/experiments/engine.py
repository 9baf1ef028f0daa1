"""The run engine: a run is a config, a hashed directory that also depends on the code, train/resume/skip, a record.

Every training in the repository goes through :func:`fit_run` (directly, or through
:class:`RunContext`, which adds the shared seed -> model -> loaders steps)::

    ctx = RunContext(data, device, batch_size=128, checkpoint_root="checkpoints/quickstart")
    result = ctx.fit("seed0", seed=0, config={...}, model_spec=ModelSpec("resnet20"), hparams=hparams)
    result.final["test_top1"], result.checkpoint      # the run's record and its checkpoint

**Identity.** A run lives in ``<root>/<name>-<settings hash>-<code hash>``:

* the *settings hash* covers the run's ``config`` (everything that defines it: recipe,
  method, seed, data subset and source, model);
* the *code hash* (:func:`code_fingerprint`) covers the library code the run executes:
  the static import closure of this module, of the modules defining the model, its
  sparsity parametrizations and callbacks, and of the driver that calls the engine
  (``code=``). It hashes each module's syntax tree without docstrings, so reformatting,
  comments and documentation never invalidate a run, while any change of behaviour does.
  The presentation layer (:mod:`rewire.pipeline`: params, plots, report) is left out.

So a code change never silently reuses an old model: the rerun finds no checkpoint in the new
directory and trains again. Reusing a checkpoint across a code change is an explicit choice:
``reuse_checkpoints=True`` (CLI ``--reuse-checkpoints``, or ``REWIRE_REUSE_CHECKPOINTS=1``) takes
the newest run with the same settings and other code, says so, and records it.

**Train / resume / skip.** A directory with a checkpoint of a finished run is skipped (the model is
loaded); an unfinished one resumes exactly (:class:`rewire.train.Trainer`); otherwise it trains.

**Record.** ``record.json`` in the run directory names the run, its config, the model to rebuild,
the code hash, the commit that trained it, the final metrics and the checkpoint file.
:func:`load_run` rebuilds the model from it with its masks restored.

**Several GPUs.** A driver launched by ``torchrun`` passes ``distributed=init_from_env()``
(:mod:`rewire.train.distributed`) to :func:`fit_run` or :class:`RunContext`; with world size > 1 the
run trains with :class:`~rewire.train.distributed.DistributedTrainer` (DDP, SyncBatchNorm, each global
batch sharded over the ranks). The run is the same run as in one process -- same global batch, same
directory, settings hash and code hash -- and its record adds ``world_size``; rank 0 writes it.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import importlib.util
import json
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn

from rewire.io import write_json
from rewire.train import checkpoint as checkpoint_module
from rewire.train.distributed import DistContext, DistributedTrainer, barrier, check_global_batch_size
from rewire.train.runtime import Seeds, git_commit, seed_model_init
from rewire.train.trainer import Callback, Trainer, TrainingHparams

__all__ = [
    "ModelSpec",
    "RunResult",
    "RunContext",
    "fit_run",
    "run_directory",
    "code_fingerprint",
    "module_closure",
    "settings_digest",
    "load_run",
    "LoadedRun",
    "RECORD_FILE",
    "REUSE_ENV",
]

RECORD_FILE = "record.json"
REUSE_ENV = "REWIRE_REUSE_CHECKPOINTS"
# Modules that never change what a run computes (they read its results); not part of the code hash.
PRESENTATION_PACKAGES = ("rewire.pipeline", "rewire.reporting")


# ------------------------------------------------------------------ code identity


def _module_file(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


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
                if importlib.util.find_spec(module) is not None and _is_module(candidate):
                    found.add(candidate)
    return found


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _presentation(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in PRESENTATION_PACKAGES)


def module_closure(roots: Iterable[str]) -> list[str]:
    """Every ``rewire`` module that ``roots`` import, transitively (parent packages included), sorted;
    the presentation layer (:data:`PRESENTATION_PACKAGES`) is left out."""
    pending = [r for r in roots if r.split(".")[0] == "rewire"]
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen or _presentation(name):
            continue
        path = _module_file(name)
        if path is None:
            continue
        seen.add(name)
        parts = name.split(".")
        pending.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # importing a.b.c runs a and a.b
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


def _rewire_modules_of(objects: Iterable[Any]) -> set[str]:
    return {type(o).__module__ for o in objects if type(o).__module__.split(".")[0] == "rewire"}


def settings_digest(config: dict[str, Any]) -> str:
    """A 10-hex-digit hash of a run's settings (JSON, sorted keys)."""
    return hashlib.md5(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:10]


def run_directory(root: str | os.PathLike, name: str, config: dict[str, Any], code: str | None = None) -> Path:
    """``root/<name>-<settings hash>[-<code hash>]`` (open_lth style named, hashed runs)."""
    suffix = f"-{code}" if code else ""
    return Path(root) / f"{name}-{settings_digest(config)}{suffix}"


# ------------------------------------------------------------------ models


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


# ------------------------------------------------------------------ fitting


@dataclass
class RunResult:
    """A finished run: its model (trained, masks in place), history and record."""

    name: str
    run_dir: Path
    model: nn.Module
    records: list[dict[str, Any]]
    record: dict[str, Any]
    trained_now: bool

    @property
    def final(self) -> dict[str, Any]:
        return self.records[-1]

    @property
    def checkpoint(self) -> str:
        return self.record["checkpoint"]


def portable_path(path: Path) -> str:
    """``path`` relative to the repository (the nearest folder above it holding ``dvc.yaml``), else
    relative to its grandparent: result files never carry a machine's absolute path."""
    path = Path(path).resolve()
    for parent in path.parents:
        if (parent / "dvc.yaml").exists():
            return path.relative_to(parent).as_posix()
    return Path(*path.parts[-3:]).as_posix()


def _reuse_requested(reuse: bool | None) -> bool:
    if reuse is not None:
        return reuse
    return os.environ.get(REUSE_ENV, "").lower() not in ("", "0", "false", "no")


def _stale_candidate(root: Path, name: str, config: dict[str, Any]) -> Path | None:
    prefix = f"{name}-{settings_digest(config)}-"
    candidates = [d for d in root.glob(prefix + "*") if (d / Trainer.CHECKPOINT_FILE).exists()]
    return max(candidates, key=lambda d: (d / Trainer.CHECKPOINT_FILE).stat().st_mtime) if candidates else None


def _stored_code(run_dir: Path) -> str | None:
    for fname in (RECORD_FILE, Trainer.HISTORY_FILE):
        path = run_dir / fname
        if path.exists():
            try:
                stored = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                continue
            code = stored.get("code") if fname == RECORD_FILE else stored.get("run", {}).get("code")
            if code:
                return code
    return None


def fit_run(
    name: str,
    config: dict[str, Any],
    model: nn.Module,
    hparams: TrainingHparams,
    train_loader,
    eval_loader,
    *,
    root: str | os.PathLike,
    callbacks: Sequence[Callback] = (),
    model_spec: ModelSpec | None = None,
    code: Sequence[str] = (),
    reuse_checkpoints: bool | None = None,
    progress: bool | None = None,
    description: str | None = None,
    run_info: dict[str, Any] | None = None,
    validation_loader=None,
    distributed: DistContext | None = None,
    sync_batchnorm: bool = True,
) -> RunResult:
    """Train, resume or skip the run ``name`` with settings ``config``; write and return its record.

    ``model`` must already carry its sparsity method (build the optimizer-free model, attach the
    method, then call this). ``code`` names extra modules whose code defines the run (the driver,
    e.g. ``rewire.experiments.dpf_sweep``). ``model_spec`` lets :func:`load_run` rebuild the model.

    ``distributed`` (from :func:`rewire.train.distributed.init_from_env` under torchrun) with world
    size > 1 trains on every rank with :class:`~rewire.train.distributed.DistributedTrainer`
    (``sync_batchnorm`` as there); call it on every rank with the same arguments, ``train_loader``
    being the *global* loader. The run directory and both hashes are those of a single-process run
    of the same global batch (the world size does not enter them; the record notes it as
    ``world_size``). Rank 0 writes the record; every rank returns the same :class:`RunResult`
    fields, ``model`` being this rank's (unwrapped) model.
    """
    parallel = distributed is not None and distributed.distributed
    if parallel:  # before any work, the same refusal on every rank
        check_global_batch_size(train_loader.batch_size, distributed.world_size)
    root = Path(root)
    config = {**config, "hparams": hparams.as_dict()}  # the training recipe is always part of a run's settings
    fingerprint = code_fingerprint(
        {__name__, *code, *_rewire_modules_of(model.modules()), *_rewire_modules_of(callbacks)}
    )
    if parallel:
        fingerprints: list[Any] = [None] * distributed.world_size
        dist.all_gather_object(fingerprints, fingerprint)
        if len(set(fingerprints)) > 1:
            raise checkpoint_module.CheckpointError(
                f"the ranks run different code (code hashes {fingerprints}, in rank order); every machine of a "
                f"torchrun job needs the same checkout of the repository"
            )
    # Where the run lives (its directory, or a stale run to reuse) is decided on rank 0 alone and broadcast:
    # the reuse choice globs the checkpoint root and compares modification times, which ranks on other
    # machines may see at different moments (or while rank 0 still writes), and it may warn; one decision
    # gives every rank the same directory and one warning. Whether that directory holds a checkpoint
    # (train, resume or skip) is then read by every rank from the shared file system -- which a multi-node
    # run needs anyway, since every rank loads rank 0's checkpoint on resume -- and DistributedTrainer.fit
    # gathers every rank's view and stops, on every rank, if they differ (a directory that is not shared).
    decision: list[Any] = [None]
    if not parallel or distributed.is_main:
        try:
            decision[0] = _choose_run_dir(root, name, config, fingerprint, reuse_checkpoints)
        except Exception as error:
            if not parallel:
                raise
            decision[0] = error  # raised on every rank below, so no rank waits for the others forever
    if parallel:
        dist.broadcast_object_list(decision, src=0)
        if isinstance(decision[0], Exception):
            raise decision[0]
    run_dir, reused_from = decision[0]
    info = {"name": name, "code": fingerprint if reused_from is None else _stored_code(reused_from), **(run_info or {})}
    arguments = dict(
        validation_loader=validation_loader,
        run_dir=run_dir,
        callbacks=callbacks,
        run_info=info,
        progress=progress,
        description=description or name,
    )
    if parallel:
        trainer = DistributedTrainer(
            model,
            hparams,
            train_loader,
            eval_loader,
            context=distributed,
            sync_batchnorm=sync_batchnorm,
            **arguments,
        )
    else:
        trainer = Trainer(model, hparams, train_loader, eval_loader, **arguments)
    history = trainer.fit(resume=True)  # DistributedTrainer.fit ends with a barrier
    already = trainer.epochs_trained_in_last_fit == 0  # the same on every rank: all loaded the same checkpoint
    record, records = None, list(history.records)
    if not parallel or distributed.is_main:
        record_path = run_dir / RECORD_FILE
        previous = json.loads(record_path.read_text(encoding="utf-8")) if already and record_path.exists() else {}
        record = {
            "name": name,
            "config": config,
            "model": model_spec.as_dict() if model_spec is not None else None,
            "code": info["code"],
            "code_of_this_call": fingerprint,
            "reused_across_code_change": reused_from is not None,
            "commit": previous.get("commit") or git_commit(),
            "hparams": hparams.as_dict(),
            "final": {k: v for k, v in history.final.items() if isinstance(v, (int, float, str, bool))},
            "epochs": len(history.records),
            "checkpoint": portable_path(run_dir / Trainer.CHECKPOINT_FILE),
        }
        # How many processes trained it (a skipped run keeps the number that trained it); only runs given
        # `distributed`, or skipped runs whose record has the entry, carry it.
        world_size = distributed.world_size if distributed is not None else None
        if already:
            world_size = previous.get("world_size", world_size)
        if world_size is not None:
            record["world_size"] = world_size
        write_json(record_path, record)
    if parallel:
        barrier(distributed)  # rank 0 has written record.json: no rank goes on (and reads it) before
        shared = [record, records]  # rank 0's, so every rank returns the same record and epoch records
        dist.broadcast_object_list(shared, src=0)
        record, records = shared
    trained_model = trainer.module if parallel else model
    return RunResult(name, run_dir, trained_model, records, record, trained_now=not already)


def _choose_run_dir(
    root: Path, name: str, config: dict[str, Any], fingerprint: str, reuse_checkpoints: bool | None
) -> tuple[Path, Path | None]:
    """The directory of the run (``fit_run``'s identity rules) and the stale run it reuses, if any."""
    run_dir = run_directory(root, name, config, fingerprint)
    reused_from = None
    stored = _stored_code(run_dir) if run_dir.exists() else None
    if stored is not None and stored != fingerprint:
        raise checkpoint_module.CheckpointError(
            f"{run_dir} holds a run of other code ({stored}, this code is {fingerprint}); it was copied or renamed "
            f"by hand. Delete it to train again, or move it back to {root / (run_dir.name.rsplit('-', 1)[0] + '-' + stored)}"
        )
    if not (run_dir / Trainer.CHECKPOINT_FILE).exists() and _reuse_requested(reuse_checkpoints):
        stale = _stale_candidate(root, name, config)
        if stale is not None and stale != run_dir:
            warnings.warn(
                f"reusing {stale.name} (trained by other code, {_stored_code(stale)}) for {run_dir.name} "
                f"because checkpoint reuse across code changes was requested",
                stacklevel=3,  # the caller of fit_run
            )
            reused_from = stale
            run_dir = stale
    return run_dir, reused_from


@dataclass
class RunContext:
    """What the runs of one experiment share: data, device, batch size, where checkpoints go.

    Replaces the seed -> model -> method -> loaders -> Trainer loop every notebook repeated.
    ``validation`` (optional) is a held-out part of the training split, evaluated after every
    epoch as ``val_*`` (the ``validation_part`` of ``ImageDataset.train_validation_split``).
    ``distributed`` (``init_from_env()`` under torchrun; ``device`` then ``distributed.device``) trains
    every run data-parallel (:func:`fit_run`); ``batch_size`` stays the global batch size.
    """

    data: Any
    device: torch.device
    batch_size: int
    checkpoint_root: str | os.PathLike
    eval_batch_size: int = 500
    progress: bool | None = None
    reuse_checkpoints: bool | None = None
    code: Sequence[str] = ()
    validation: Any = None
    distributed: DistContext | None = None
    sync_batchnorm: bool = True

    def __post_init__(self) -> None:
        if self.distributed is not None and self.distributed.distributed:  # refuse before any work
            check_global_batch_size(self.batch_size, self.distributed.world_size)

    def loaders(self, seed: int):
        """Training loader (shuffled, augmented, seeded by the run seed) and evaluation loader."""
        from rewire import data as rdata

        seeds = Seeds.from_run_seed(seed)
        mean, std = rdata.normalisation_for(self.data.name)
        train = rdata.BatchLoader(
            self.data.train_images,
            self.data.train_labels,
            self.batch_size,
            shuffle=True,
            augment=True,
            mean=mean,
            std=std,
            device=self.device,
            order_seed=seeds.data_order,
            augmentation_seed=seeds.augmentation,
            drop_last=True,
        )
        test = rdata.BatchLoader(
            self.data.test_images,
            self.data.test_labels,
            self.eval_batch_size,
            shuffle=False,
            augment=False,
            mean=mean,
            std=std,
            device=self.device,
        )
        return train, test

    def validation_loader(self):
        """The loader of the held-out validation images (no augmentation), or ``None``."""
        if self.validation is None:
            return None
        from rewire import data as rdata

        mean, std = rdata.normalisation_for(self.data.name)
        return rdata.BatchLoader(
            self.validation.test_images,
            self.validation.test_labels,
            self.eval_batch_size,
            shuffle=False,
            augment=False,
            mean=mean,
            std=std,
            device=self.device,
        )

    def build(self, spec: ModelSpec, seed: int) -> nn.Module:
        """The dense model of ``spec``, initialised from the run seed's model stream, on the device."""
        seed_model_init(Seeds.from_run_seed(seed))
        return spec.build().to(self.device)

    def fit(
        self,
        name: str,
        *,
        seed: int,
        config: dict[str, Any],
        model: nn.Module,
        hparams: TrainingHparams,
        callbacks: Sequence[Callback] = (),
        model_spec: ModelSpec | None = None,
        run_info: dict[str, Any] | None = None,
    ) -> RunResult:
        train, test = self.loaders(seed)
        full_config = {
            **config,
            "seed": seed,
            "batch_size": self.batch_size,
            "data": {
                "name": getattr(self.data, "name", None),
                "source": self.data.source.get("kind", "unknown"),
                "train_examples": len(self.data.train_labels),
                "test_examples": len(self.data.test_labels),
                **({"validation_examples": len(self.validation.test_labels)} if self.validation is not None else {}),
            },
        }
        return fit_run(
            name,
            full_config,
            model,
            hparams,
            train,
            test,
            root=self.checkpoint_root,
            callbacks=callbacks,
            model_spec=model_spec,
            code=self.code,
            reuse_checkpoints=self.reuse_checkpoints,
            progress=self.progress,
            description=name,
            run_info={"seed": seed, **(run_info or {})},
            validation_loader=self.validation_loader(),
            distributed=self.distributed,
            sync_batchnorm=self.sync_batchnorm,
        )


# ------------------------------------------------------------------ loading


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

    Each sparse tensor comes back behind an :class:`rewire.sparse.masks.AssignedMask` holding the
    trained mask (``masked`` route): the forward pass equals the trained model's, whatever method
    produced the mask. Per layer: entries, pruned, sparsity.
    """
    from rewire.sparse.masks import AssignedMask, sparse_modules, sparsify

    run_dir = Path(run_dir)
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
            f"runs trained with fit_run(model_spec=...) can be loaded"
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
