"""The training loop shared by every method in this repository.

``Trainer`` runs plain supervised training (SGD with momentum/Nesterov or Adam,
weight decay with exclusions, multi-step or cosine schedules with linear warm-up,
label smoothing, top-1/top-5 evaluation). Sparse-training methods plug in
through ``Callback`` without editing the loop:

- ``on_fit_start`` / ``on_epoch_start`` / ``on_epoch_end`` at epoch boundaries
  (DPF's sparsity schedule, DNW's swap counting);
- ``on_batch_start`` may replace the batch (adversarial examples for PGD training);
- ``on_after_backward`` sees the gradients before the update;
- ``optimizer_step`` wraps the optimizer step (update masks after the step, or
  restore weights around it);
- ``state_dict`` / ``load_state_dict`` so a callback's state resumes with the run.

A run directory (named and hashed by the run engine, :mod:`rewire.experiments.engine`) holds ``history.json`` (one record per epoch, rewritten
atomically) and ``checkpoint.pt`` (every ``checkpoint_every`` epochs and at the
end). ``fit(resume=True)`` continues a killed run from its last checkpoint and
reaches the same final metrics as an uninterrupted run on CPU, because the
checkpoint holds the model, the optimizer, the data loaders' generators, torch's
global generator and every callback's state; the learning rate is a pure
function of the step counter (``rewire.schedules``).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm  # text bars everywhere: in a terminal, in JupyterLab and in papermill logs

from rewire.io import write_json
from rewire.train import checkpoint, schedules

# "fp32": plain float32. "bf16": bfloat16 autocast for forward and loss (weights, optimizer state
# and gradients stay float32) with channels-last memory for 4-D activations: about 2x faster on
# CPUs with AVX-512 BF16 and on GPUs since Ampere (README, "Measurements").
PRECISIONS = ("fp32", "bf16")
NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


@dataclass(frozen=True)
class TrainingHparams:
    """Everything that defines a training run apart from the model, the data and the seeds.

    ``milestones`` are in epochs (fractions allowed). ``no_weight_decay_on`` holds
    ``"bias"``, ``"norm"`` (every parameter of a normalisation layer) or ``fnmatch``
    patterns of parameter names; matching parameters get weight decay 0.
    """

    epochs: int
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    adam_betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 5e-4
    no_weight_decay_on: tuple[str, ...] = ()
    schedule: str = "cosine"
    milestones: tuple[float, ...] = ()
    gamma: float = 0.1
    schedule_step: str = "iteration"
    warmup_epochs: float = 0.0
    warmup_start_factor: float = 0.1
    label_smoothing: float = 0.0
    checkpoint_every: int = 1
    precision: str = "fp32"
    # Evaluate the test (and validation) set after every n-th epoch and after the last one; the
    # records of the other epochs have no test_*/val_* columns. 1 = every epoch.
    eval_every: int = 1

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.epochs, int) or self.epochs < 1:
            problems.append(f"epochs must be a positive int, got {self.epochs!r}")
        if self.optimizer not in ("sgd", "adam"):
            problems.append(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.schedule not in ("constant", "multistep", "cosine"):
            problems.append(f"schedule must be 'constant', 'multistep' or 'cosine', got {self.schedule!r}")
        if self.schedule_step not in ("epoch", "iteration"):
            problems.append(f"schedule_step must be 'epoch' or 'iteration', got {self.schedule_step!r}")
        if self.lr <= 0:
            problems.append(f"lr must be positive, got {self.lr!r}")
        if self.weight_decay < 0:
            problems.append(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            problems.append(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum <= 0):
            problems.append("nesterov needs optimizer='sgd' with momentum > 0")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not isinstance(self.checkpoint_every, int) or self.checkpoint_every < 1:
            problems.append(f"checkpoint_every must be a positive int, got {self.checkpoint_every!r}")
        if isinstance(self.eval_every, bool) or not isinstance(self.eval_every, int) or self.eval_every < 1:
            problems.append(f"eval_every must be a positive int, got {self.eval_every!r}")
        if problems:
            raise ValueError("invalid training hyperparameters: " + "; ".join(problems))

    def as_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))  # tuples -> lists, as stored in checkpoints

    def lr_at(self, epoch: int, batch: int, batches_per_epoch: int) -> float:
        t = float(epoch) if self.schedule_step == "epoch" else epoch + batch / batches_per_epoch
        return self.lr * schedules.lr_factor(
            t,
            schedule=self.schedule,
            total=float(self.epochs),
            milestones=self.milestones,
            gamma=self.gamma,
            warmup=self.warmup_epochs,
            warmup_start_factor=self.warmup_start_factor,
        )


def parameter_groups(model: nn.Module, weight_decay: float, no_weight_decay_on: Sequence[str]) -> list[dict]:
    """Split trainable parameters into a decayed and a non-decayed group."""
    norm_params = {id(p) for m in model.modules() if isinstance(m, NORM_LAYERS) for p in m.parameters(recurse=False)}
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        excluded = (
            ("bias" in no_weight_decay_on and name.endswith("bias"))
            or ("norm" in no_weight_decay_on and id(param) in norm_params)
            or any(fnmatch.fnmatchcase(name, pattern) for pattern in no_weight_decay_on)
        )
        (no_decay if excluded else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(model: nn.Module, hparams: TrainingHparams) -> torch.optim.Optimizer:
    groups = parameter_groups(model, hparams.weight_decay, hparams.no_weight_decay_on)
    if hparams.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=hparams.lr, momentum=hparams.momentum, nesterov=hparams.nesterov)
    return torch.optim.Adam(groups, lr=hparams.lr, betas=tuple(hparams.adam_betas))


@torch.no_grad()
def autocast(precision: str, device: torch.device | str):
    """The autocast context of ``precision`` ("fp32": none, "bf16": bfloat16 on ``device``)."""
    device_type = torch.device(device).type
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=precision == "bf16")


def to_memory_format(inputs: torch.Tensor, precision: str) -> torch.Tensor:
    """Channels-last for 4-D inputs under bf16 (oneDNN and cuDNN pick faster kernels), else unchanged."""
    if precision == "bf16" and inputs.dim() == 4:
        return inputs.contiguous(memory_format=torch.channels_last)
    return inputs


def evaluate(
    model: nn.Module, loader: Iterable, topk: Sequence[int] = (1, 5), precision: str = "fp32"
) -> dict[str, float]:
    """Mean cross-entropy and top-k accuracy (in %) of ``model`` over ``loader`` (eval mode, restored after)."""
    was_training = model.training
    model.eval()
    total, loss_sum = 0, 0.0
    correct = {k: 0 for k in topk}
    for inputs, targets in loader:
        with autocast(precision, inputs.device):
            logits = model(to_memory_format(inputs, precision))
        if logits.dtype == torch.bfloat16:  # metrics in float32; a float64 model keeps float64
            logits = logits.float()
        loss_sum += F.cross_entropy(logits, targets, reduction="sum").item()
        ranked = logits.topk(min(max(topk), logits.shape[1]), dim=1).indices
        hits = ranked.eq(targets[:, None])
        for k in topk:
            correct[k] += hits[:, :k].any(dim=1).sum().item()
        total += targets.numel()
    model.train(was_training)
    if total == 0:
        raise ValueError("evaluation loader is empty")
    return {"loss": loss_sum / total, **{f"top{k}": 100.0 * correct[k] / total for k in topk}}


class Callback:
    """Extension point of ``Trainer``; override what you need. All hooks receive the trainer."""

    def on_fit_start(self, trainer: Trainer) -> None: ...

    def on_epoch_start(self, trainer: Trainer) -> None: ...

    def on_batch_start(self, trainer: Trainer, inputs: torch.Tensor, targets: torch.Tensor):
        """Return ``(inputs, targets)`` to replace the batch, or None to keep it."""
        return None

    def training_loss(self, trainer: Trainer, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor | None:
        """Return this batch's loss to back-propagate instead of the trainer's criterion on the model's
        output (e.g. TRADES: clean cross-entropy plus a KL term on adversarial inputs), or None to keep it.
        The first callback that returns a loss decides; it runs inside the trainer's autocast."""
        return None

    def on_after_backward(self, trainer: Trainer) -> None: ...

    def optimizer_step(self, trainer: Trainer, step) -> None:
        """Wrap the optimizer step: do work before/after, and call ``step()`` exactly once."""
        step()

    def on_batch_end(self, trainer: Trainer, loss: torch.Tensor) -> None: ...

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """``record`` is this epoch's metrics; a callback may add its own keys to it."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class History:
    """Per-epoch records of a run; ``final`` is the last one."""

    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def final(self) -> dict[str, Any]:
        if not self.records:
            raise ValueError("the run has no finished epoch yet")
        return self.records[-1]

    def column(self, key: str) -> list:
        return [r[key] for r in self.records]


class Trainer:
    """Train ``model`` on ``train_loader`` and evaluate on ``eval_loader`` after every epoch.

    ``validation_loader`` (optional) is evaluated after every epoch too, recorded as ``val_*``:
    the held-out part of the training split that model and hyperparameter selection read
    (never the test set, whose ``test_*`` columns are only reported).

    ``train_loader`` must yield ``(inputs, targets)`` already on the device and, for
    exact resume, provide ``state_dict``/``load_state_dict`` (``rewire.data.BatchLoader`` does).
    ``run_dir=None`` trains without writing anything.
    """

    HISTORY_FILE = "history.json"
    CHECKPOINT_FILE = "checkpoint.pt"

    def __init__(
        self,
        model: nn.Module,
        hparams: TrainingHparams,
        train_loader,
        eval_loader,
        *,
        validation_loader=None,
        run_dir: str | os.PathLike | None = None,
        callbacks: Sequence[Callback] = (),
        run_info: dict[str, Any] | None = None,
        progress: bool | None = None,
        description: str = "train",
    ) -> None:
        self.model = model
        self.hparams = hparams
        self.train_loader = train_loader
        self.eval_loader = eval_loader
        self.validation_loader = validation_loader
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.callbacks = list(callbacks)
        self.run_info = dict(run_info or {})
        self.progress = progress
        self.description = description
        if hparams.precision == "bf16":  # channels-last weights to match the activations (before the optimizer)
            model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(model, hparams)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=hparams.label_smoothing)
        self.history = History()
        self.epoch = 0  # epochs completed
        self.global_step = 0  # optimizer steps completed
        self.epochs_trained_in_last_fit = 0
        self.batches_per_epoch = len(train_loader)
        if self.batches_per_epoch == 0:
            raise ValueError(
                "the training loader yields no batch: the training set is smaller than one batch with drop_last"
            )

    # ------------------------------------------------------------------ run
    def fit(self, resume: bool = True) -> History:
        """Train until ``hparams.epochs``; with ``resume``, continue from the run directory's checkpoint."""
        if resume and self.run_dir is not None and (self.run_dir / self.CHECKPOINT_FILE).exists():
            self.load_checkpoint(self.run_dir / self.CHECKPOINT_FILE)
        elif self.run_dir is not None and (self.run_dir / self.CHECKPOINT_FILE).exists():
            raise FileExistsError(
                f"{self.run_dir} already holds a checkpoint; pass resume=True to continue it or choose another run directory"
            )
        first_epoch = self.epoch
        for cb in self.callbacks:
            cb.on_fit_start(self)
        epochs = tqdm(
            range(self.epoch, self.hparams.epochs),
            desc=self.description,
            unit="epoch",
            initial=self.epoch,
            total=self.hparams.epochs,
            disable=self._progress_disabled(),
        )
        for _ in epochs:
            record = self._train_one_epoch()
            epochs.set_postfix(loss=f"{record['train_loss']:.3f}", top1=f"{record.get('test_top1', float('nan')):.1f}")
        self.epochs_trained_in_last_fit = self.epoch - first_epoch
        return self.history

    def _progress_disabled(self) -> bool:
        if self.progress is None:  # default: bars on (also inside notebooks), off when TQDM_DISABLE is set (CI)
            return os.environ.get("TQDM_DISABLE", "").lower() not in ("", "0", "false")
        return not self.progress

    def _train_one_epoch(self) -> dict[str, Any]:
        for cb in self.callbacks:
            cb.on_epoch_start(self)
        self.model.train()
        loss_sum = None  # accumulated on the training device: no host synchronisation per step
        seen = 0
        data_seconds = 0.0
        started = time.perf_counter()
        batches = tqdm(
            total=self.batches_per_epoch,
            desc=f"epoch {self.epoch + 1}",
            unit="batch",
            leave=False,
            disable=self._progress_disabled(),
        )
        iterator = iter(self.train_loader)
        for batch_index in range(self.batches_per_epoch):
            fetch_started = time.perf_counter()
            inputs, targets = next(iterator)
            data_seconds += time.perf_counter() - fetch_started
            for cb in self.callbacks:
                replaced = cb.on_batch_start(self, inputs, targets)
                if replaced is not None:
                    inputs, targets = replaced
            self._set_lr(batch_index)
            with autocast(self.hparams.precision, inputs.device):
                loss = self._loss(inputs, targets)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for cb in self.callbacks:
                cb.on_after_backward(self)
            self._optimizer_step()
            self.global_step += 1
            for cb in self.callbacks:
                cb.on_batch_end(self, loss)
            batch_loss = loss.detach().double() * targets.numel()
            loss_sum = batch_loss if loss_sum is None else loss_sum + batch_loss
            seen += targets.numel()
            batches.update()
        batches.close()
        train_seconds = time.perf_counter() - started
        self.epoch += 1
        due = self.epoch % self.hparams.eval_every == 0 or self.epoch == self.hparams.epochs
        evaluation = evaluate(self.model, self.eval_loader, precision=self.hparams.precision) if due else {}
        record = {
            "epoch": self.epoch,
            "step": self.global_step,
            "lr": self.optimizer.param_groups[0]["lr"],
            "train_loss": float(loss_sum) / seen,
            **{f"test_{k}": v for k, v in evaluation.items()},
            **(self._validation() if due else {}),
            "train_seconds": train_seconds,
            "data_seconds": data_seconds,
            "images_per_second": seen / train_seconds,
        }
        for cb in self.callbacks:
            cb.on_epoch_end(self, record)
        self.history.records.append(record)
        if self.run_dir is not None:
            write_json(self.run_dir / self.HISTORY_FILE, {"run": self.run_info, "epochs": self.history.records})
            if self.epoch % self.hparams.checkpoint_every == 0 or self.epoch == self.hparams.epochs:
                self.save_checkpoint(self.run_dir / self.CHECKPOINT_FILE)
        return record

    def _loss(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        for cb in self.callbacks:
            loss = cb.training_loss(self, inputs, targets)
            if loss is not None:
                return loss
        return self.criterion(self.model(to_memory_format(inputs, self.hparams.precision)), targets)

    def _validation(self) -> dict[str, float]:
        if self.validation_loader is None:
            return {}
        evaluation = evaluate(self.model, self.validation_loader, precision=self.hparams.precision)
        return {f"val_{k}": v for k, v in evaluation.items()}

    def _set_lr(self, batch_index: int) -> None:
        lr = self.hparams.lr_at(self.epoch, batch_index, self.batches_per_epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _optimizer_step(self) -> None:
        step = self.optimizer.step
        for cb in reversed(self.callbacks):
            step = functools.partial(cb.optimizer_step, self, step)
        step()

    # ----------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "hparams": self.hparams.as_dict(),
            "run": self.run_info,
            "epoch": self.epoch,
            "global_step": self.global_step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "train_loader": self.train_loader.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "callbacks": [{"type": type(cb).__name__, "state": cb.state_dict()} for cb in self.callbacks],
            "history": self.history.records,
        }

    def save_checkpoint(self, path: str | os.PathLike) -> Path:
        return checkpoint.save(path, self.state_dict())

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        state = checkpoint.load(path, map_location=next(self.model.parameters()).device)
        if state.get("hparams") != self.hparams.as_dict():
            stored = state.get("hparams") or {}
            differing = sorted(
                k for k in set(stored) | set(self.hparams.as_dict()) if stored.get(k) != self.hparams.as_dict().get(k)
            )
            raise checkpoint.CheckpointError(
                f"{path} belongs to a run with other hyperparameters (differing: {', '.join(differing)}); "
                f"use a new run directory or delete the checkpoint"
            )
        stored_callbacks = [c["type"] for c in state["callbacks"]]
        if stored_callbacks != [type(cb).__name__ for cb in self.callbacks]:
            raise checkpoint.CheckpointError(
                f"{path} was written with callbacks {stored_callbacks}, this run has "
                f"{[type(cb).__name__ for cb in self.callbacks]}; use a new run directory"
            )
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as error:
            raise checkpoint.CheckpointError(f"{path} holds weights of another model: {error}") from error
        self.optimizer.load_state_dict(state["optimizer"])
        self.train_loader.load_state_dict(state["train_loader"])
        torch.set_rng_state(state["torch_rng"].cpu())
        for cb, stored in zip(self.callbacks, state["callbacks"]):
            cb.load_state_dict(stored["state"])
        self.epoch = state["epoch"]
        self.global_step = state["global_step"]
        self.history = History(list(state["history"]))
