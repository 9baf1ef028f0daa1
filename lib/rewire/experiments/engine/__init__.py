"""The run engine: a run is a request, a hashed directory that also depends on the code, train/resume/skip, a record.

Every training in the repository goes through :func:`fit_run`, usually through :class:`RunContext`,
which adds the shared seed -> model -> loaders steps::

    ctx = RunContext(data, device, batch_size=128, checkpoint_root="checkpoints/quickstart", code=(__name__,))
    result = ctx.fit("seed0", seed=0, config={...}, model=model, model_spec=ModelSpec("resnet20"), hparams=hparams)
    result.final["test_top1"], result.checkpoint      # the run's record and its checkpoint

A driver with its own loaders (ImageNet) calls ``fit_run(RunRequest(...), RunOptions(root=...))``:
:class:`RunRequest` is one run (name, settings, model, recipe, loaders, the driver's ``code``),
:class:`RunOptions` what every run of a stage shares (checkpoint root, reuse, progress, processes).

**Identity** (:mod:`.identity`). A run lives in ``<root>/<name>-<settings hash>-<code hash>``: the
settings hash covers the run's ``config`` (recipe, method, seed, data, model); the code hash covers
the import closure of the driver (``code=``, always required), of this engine, and of the modules
defining the model, its sparsity parametrizations and its callbacks -- syntax trees without docstrings.
The presentation code (:mod:`rewire.pipeline`, :mod:`rewire.reporting`, the ``report`` and ``paper``
modules of the experiment packages) is left out, and the papers' quoted numbers live in data files.

**Reuse** (:mod:`.run_dirs`). A code change never silently reuses an old model: the rerun finds no
checkpoint under the new code and trains again (with a warning naming the old run and the flag).
``reuse_checkpoints=True`` (CLI ``--reuse-checkpoints``, or ``REWIRE_REUSE_CHECKPOINTS=1``) reuses the
newest run of the same settings, says so, records it and links it under the new code's directory, so
later plain reruns find it. The record keeps every code hash the run was trained under (``code_history``,
``resumed_under_other_code``).

**Train / resume / skip.** A directory with a checkpoint of a finished run is skipped (the model is
loaded); an unfinished one resumes exactly (:class:`rewire.train.Trainer`); otherwise it trains.

**Record.** ``record.json`` in the run directory names the run, its config, the model to rebuild,
the code hashes, the commit that trained it, the final metrics and the checkpoint file.
:func:`load_run` (:mod:`.loading`) rebuilds the model from it with its masks restored.

**Several GPUs.** A driver launched by ``torchrun`` passes ``distributed=init_from_env()``
(:mod:`rewire.train.distributed`) in :class:`RunOptions` or :class:`RunContext`; with world size > 1 the
run trains with :class:`~rewire.train.distributed.DistributedTrainer` (DDP, SyncBatchNorm, each global
batch sharded over the ranks). The run is the same run as in one process -- same global batch, same
directory, settings hash and code hash -- and its record adds ``world_size``; rank 0 writes it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn

from rewire.experiments.engine.identity import (
    PRESENTATION_MODULE_NAMES,
    PRESENTATION_PACKAGES,
    code_fingerprint,
    driver_modules,
    left_out_of_code_hash,
    module_closure,
    rewire_modules_of,
    run_directory,
    settings_digest,
)
from rewire.experiments.engine.loading import LoadedRun, ModelSpec, load_run
from rewire.experiments.engine.run_dirs import (
    LINK_FILE,
    RECORD_FILE,
    REUSE_ENV,
    RunPlace,
    choose_run_dir,
    code_history,
    portable_path,
)
from rewire.io import write_json
from rewire.train import checkpoint as checkpoint_module
from rewire.train.distributed import DistContext, DistributedTrainer, barrier, check_global_batch_size
from rewire.train.runtime import Seeds, git_commit, seed_model_init
from rewire.train.trainer import Callback, Trainer, TrainingHparams

__all__ = [
    "ModelSpec",
    "RunRequest",
    "RunOptions",
    "RunResult",
    "RunContext",
    "fit_run",
    "run_directory",
    "code_fingerprint",
    "module_closure",
    "left_out_of_code_hash",
    "settings_digest",
    "load_run",
    "LoadedRun",
    "portable_path",
    "RECORD_FILE",
    "LINK_FILE",
    "REUSE_ENV",
    "PRESENTATION_PACKAGES",
    "PRESENTATION_MODULE_NAMES",
]


@dataclass(frozen=True, kw_only=True, eq=False)
class RunRequest:
    """One run to train, resume or skip: what defines it and what it trains on.

    ``model`` already carries its sparsity method (build the model, attach the method, then ask).
    ``code`` names the modules of the driver whose code defines the run (required: e.g.
    ``code=(__name__,)`` in ``rewire.experiments.<name>.runs``). ``model_spec`` lets :func:`load_run`
    rebuild the model. ``train_loader`` is the *global* loader when the run is distributed.
    """

    name: str
    config: dict[str, Any]
    model: nn.Module
    hparams: TrainingHparams
    train_loader: Any
    eval_loader: Any
    code: Sequence[str | ModuleType] | None = None
    callbacks: Sequence[Callback] = ()
    model_spec: ModelSpec | None = None
    validation_loader: Any = None
    run_info: dict[str, Any] | None = None
    description: str | None = None

    def __post_init__(self) -> None:  # refuse a request without its driver before any work
        object.__setattr__(self, "code", driver_modules(self.code, what=f"RunRequest {self.name!r}"))


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """What every run of a stage shares: where runs live, checkpoint reuse across code changes, progress
    bars, and the processes (``distributed`` from ``init_from_env()``; ``sync_batchnorm`` as in
    :class:`~rewire.train.distributed.DistributedTrainer`)."""

    root: str | os.PathLike
    reuse_checkpoints: bool | None = None
    progress: bool | None = None
    distributed: DistContext | None = None
    sync_batchnorm: bool = True

    @property
    def parallel(self) -> bool:
        return self.distributed is not None and self.distributed.distributed


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


def _fingerprint(request: RunRequest, options: RunOptions) -> str:
    """The code hash of the run (its driver, this engine, the model's and the callbacks' modules), the same on
    every rank or refused."""
    fingerprint = code_fingerprint(
        {__name__, *request.code, *rewire_modules_of(request.model.modules()), *rewire_modules_of(request.callbacks)}
    )
    if options.parallel:
        fingerprints: list[Any] = [None] * options.distributed.world_size
        dist.all_gather_object(fingerprints, fingerprint)
        if len(set(fingerprints)) > 1:
            raise checkpoint_module.CheckpointError(
                f"the ranks run different code (code hashes {fingerprints}, in rank order); every machine of a "
                f"torchrun job needs the same checkout of the repository"
            )
    return fingerprint


def _place(
    root: Path, request: RunRequest, config: dict[str, Any], fingerprint: str, options: RunOptions
) -> tuple[RunPlace, list[str]]:
    """Where the run lives and the code hashes it was trained under so far, decided on rank 0 alone and broadcast.

    The reuse choice globs the checkpoint root and compares modification times, which ranks on other
    machines may see at different moments (or while rank 0 still writes), and it may warn and link; one
    decision gives every rank the same directory and one warning. Whether that directory holds a checkpoint
    (train, resume or skip) is then read by every rank from the shared file system -- which a multi-node run
    needs anyway, since every rank loads rank 0's checkpoint on resume -- and DistributedTrainer.fit gathers
    every rank's view and stops, on every rank, if they differ (a directory that is not shared).
    """
    decision: list[Any] = [None]
    if not options.parallel or options.distributed.is_main:
        try:
            place = choose_run_dir(root, request.name, config, fingerprint, options.reuse_checkpoints)
            decision[0] = place, code_history(place.run_dir)
        except Exception as error:
            if not options.parallel:
                raise
            decision[0] = error  # raised on every rank below, so no rank waits for the others forever
    if options.parallel:
        dist.broadcast_object_list(decision, src=0)
        if isinstance(decision[0], Exception):
            raise decision[0]
    return decision[0]


def _trainer(request: RunRequest, options: RunOptions, run_dir: Path, info: dict[str, Any]) -> Trainer:
    arguments = dict(
        validation_loader=request.validation_loader,
        run_dir=run_dir,
        callbacks=request.callbacks,
        run_info=info,
        progress=options.progress,
        description=request.description or request.name,
    )
    if options.parallel:
        return DistributedTrainer(
            request.model,
            request.hparams,
            request.train_loader,
            request.eval_loader,
            context=options.distributed,
            sync_batchnorm=options.sync_batchnorm,
            **arguments,
        )
    return Trainer(request.model, request.hparams, request.train_loader, request.eval_loader, **arguments)


def fit_run(request: RunRequest, options: RunOptions) -> RunResult:
    """Train, resume or skip the run of ``request``; write and return its record.

    With ``options.distributed`` of world size > 1 it trains on every rank with
    :class:`~rewire.train.distributed.DistributedTrainer`; call it on every rank with the same request.
    The run directory and both hashes are those of a single-process run of the same global batch (the world
    size does not enter them; the record notes it as ``world_size``). Rank 0 writes the record; every rank
    returns the same :class:`RunResult` fields, ``model`` being this rank's (unwrapped) model.
    """
    if not isinstance(request, RunRequest) or not isinstance(options, RunOptions):
        raise TypeError(
            "fit_run takes a RunRequest and RunOptions: fit_run(RunRequest(name=..., config=..., model=..., "
            "hparams=..., train_loader=..., eval_loader=..., code=(__name__,)), RunOptions(root=...)); "
            f"got {type(request).__name__} and {type(options).__name__}"
        )
    if options.parallel:  # before any work, the same refusal on every rank
        check_global_batch_size(request.train_loader.batch_size, options.distributed.world_size)
    root = Path(options.root)
    hparams = request.hparams
    config = {**request.config, "hparams": hparams.as_dict()}  # the recipe is always part of a run's settings
    fingerprint = _fingerprint(request, options)
    place, earlier_codes = _place(root, request, config, fingerprint, options)
    codes_if_trained = earlier_codes if earlier_codes[-1:] == [fingerprint] else [*earlier_codes, fingerprint]
    info = {
        "name": request.name,
        "code": codes_if_trained[0],  # the code that started the run
        "code_history": codes_if_trained,
        **(request.run_info or {}),
    }
    trainer = _trainer(request, options, place.run_dir, info)
    history = trainer.fit(resume=True)  # DistributedTrainer.fit ends with a barrier
    already = trainer.epochs_trained_in_last_fit == 0  # the same on every rank: all loaded the same checkpoint
    codes = (earlier_codes or [fingerprint]) if already else codes_if_trained
    record, records = None, list(history.records)
    if not options.parallel or options.distributed.is_main:
        record_path = place.run_dir / RECORD_FILE
        previous = json.loads(record_path.read_text(encoding="utf-8")) if already and record_path.exists() else {}
        record = {
            "name": request.name,
            "config": config,
            "model": request.model_spec.as_dict() if request.model_spec is not None else None,
            "code": codes[0],
            "code_of_this_call": fingerprint,
            "code_history": codes,
            "resumed_under_other_code": len(set(codes)) > 1,
            "reused_across_code_change": place.reused_from is not None,
            "commit": previous.get("commit") or git_commit(),
            "hparams": hparams.as_dict(),
            "final": {k: v for k, v in history.final.items() if isinstance(v, (int, float, str, bool))},
            "epochs": len(history.records),
            "checkpoint": portable_path(place.run_dir / Trainer.CHECKPOINT_FILE),
        }
        if place.reused_from is not None:
            record["reused_under"] = place.identity_dir.name  # the directory of this code's identity (a link)
        # How many processes trained it (a skipped run keeps the number that trained it); only runs given
        # `distributed`, or skipped runs whose record has the entry, carry it.
        world_size = options.distributed.world_size if options.distributed is not None else None
        if already:
            world_size = previous.get("world_size", world_size)
        if world_size is not None:
            record["world_size"] = world_size
        write_json(record_path, record)
    if options.parallel:
        barrier(options.distributed)  # rank 0 has written record.json: no rank goes on (and reads it) before
        shared = [record, records]  # rank 0's, so every rank returns the same record and epoch records
        dist.broadcast_object_list(shared, src=0)
        record, records = shared
    trained_model = trainer.module if options.parallel else request.model
    return RunResult(request.name, place.run_dir, trained_model, records, record, trained_now=not already)


@dataclass
class RunContext:
    """What the runs of one experiment share: data, device, batch size, where checkpoints go, the driver.

    ``code`` (required) names the driver's modules, e.g. ``code=(__name__,)`` in an experiment's runs module.
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
    code: Sequence[str | ModuleType] | None = None
    validation: Any = None
    distributed: DistContext | None = None
    sync_batchnorm: bool = True

    def __post_init__(self) -> None:  # refuse before any work
        self.code = driver_modules(self.code, what="RunContext")
        if self.distributed is not None and self.distributed.distributed:
            check_global_batch_size(self.batch_size, self.distributed.world_size)

    @property
    def options(self) -> RunOptions:
        return RunOptions(
            root=self.checkpoint_root,
            reuse_checkpoints=self.reuse_checkpoints,
            progress=self.progress,
            distributed=self.distributed,
            sync_batchnorm=self.sync_batchnorm,
        )

    def _loader(self, images, labels, batch_size: int, **kwargs):
        from rewire import data as rdata

        mean, std = rdata.normalisation_for(self.data.name)
        return rdata.BatchLoader(images, labels, batch_size, mean=mean, std=std, device=self.device, **kwargs)

    def loaders(self, seed: int):
        """Training loader (shuffled, augmented, seeded by the run seed) and evaluation loader."""
        seeds = Seeds.from_run_seed(seed)
        train = self._loader(
            self.data.train_images,
            self.data.train_labels,
            self.batch_size,
            shuffle=True,
            augment=True,
            order_seed=seeds.data_order,
            augmentation_seed=seeds.augmentation,
            drop_last=True,
        )
        test = self._loader(
            self.data.test_images, self.data.test_labels, self.eval_batch_size, shuffle=False, augment=False
        )
        return train, test

    def validation_loader(self):
        """The loader of the held-out validation images (no augmentation), or ``None``."""
        if self.validation is None:
            return None
        return self._loader(
            self.validation.test_images,
            self.validation.test_labels,
            self.eval_batch_size,
            shuffle=False,
            augment=False,
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
        """Train, resume or skip the run ``name`` of seed ``seed`` (:func:`fit_run`) on this context's data."""
        train, test = self.loaders(seed)
        data = {
            "name": getattr(self.data, "name", None),
            "source": self.data.source.get("kind", "unknown"),
            "train_examples": len(self.data.train_labels),
            "test_examples": len(self.data.test_labels),
            **({"validation_examples": len(self.validation.test_labels)} if self.validation is not None else {}),
        }
        request = RunRequest(
            name=name,
            config={**config, "seed": seed, "batch_size": self.batch_size, "data": data},
            model=model,
            hparams=hparams,
            train_loader=train,
            eval_loader=test,
            code=self.code,
            callbacks=callbacks,
            model_spec=model_spec,
            validation_loader=self.validation_loader(),
            run_info={"seed": seed, **(run_info or {})},
            description=name,
        )
        return fit_run(request, self.options)
