"""The training loop: exact resume, determinism, schedules, weight-decay groups, callbacks, checkpoints."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from rewire.data import BatchLoader
from rewire.experiments.engine import run_directory
from rewire.models import SmallConvNet
from rewire.train import checkpoint
from rewire.train.runtime import Seeds, seed_model_init
from rewire.train.trainer import Callback, Trainer, TrainingHparams, evaluate, parameter_groups

NUM_CLASSES = 4
TIMING_KEYS = {"train_seconds", "data_seconds", "images_per_second"}


def synthetic_images(n_per_class: int = 12, size: int = 8, seed: int = 0):
    """Class-dependent colour blobs: learnable in a few steps, random enough to test determinism."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(NUM_CLASSES).repeat_interleave(n_per_class)
    base = torch.randint(0, 256, (labels.numel(), 3, size, size), generator=g)
    base[:, labels % 3] = 0  # not a real class signal per channel, but labels still shape the pixels
    images = (base // 2 + 60 * labels[:, None, None, None]).clamp(0, 255).to(torch.uint8)
    return images, labels


def make_run(tmp_path, name="run", seed=0, callbacks=(), hparams=None, model_seed_override=None):
    images, labels = synthetic_images()
    seeds = Seeds.from_run_seed(seed)
    torch.manual_seed(model_seed_override if model_seed_override is not None else seeds.model)
    model = SmallConvNet(num_classes=NUM_CLASSES, width=4)
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    train = BatchLoader(
        images,
        labels,
        10,
        shuffle=True,
        augment=True,
        mean=mean,
        std=std,
        order_seed=seeds.data_order,
        augmentation_seed=seeds.augmentation,
        drop_last=True,
    )
    test = BatchLoader(images, labels, 16, shuffle=False, augment=False, mean=mean, std=std)
    hparams = hparams or TrainingHparams(
        epochs=3,
        lr=0.05,
        momentum=0.9,
        nesterov=True,
        weight_decay=5e-4,
        no_weight_decay_on=("bias", "norm"),
        schedule="cosine",
    )
    run_dir = tmp_path / name if tmp_path is not None else None
    return Trainer(model, hparams, train, test, run_dir=run_dir, callbacks=list(callbacks), progress=False)


def without_timing(records):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


class Interrupted(Exception):
    pass


class KillSwitch(Callback):
    """Counts optimizer steps (state that must survive a resume) and can simulate a killed run."""

    def __init__(self, kill_at_step=None):
        self.kill_at_step = kill_at_step
        self.steps_seen = 0

    def on_batch_end(self, trainer, loss):
        self.steps_seen += 1
        if self.kill_at_step is not None and trainer.global_step == self.kill_at_step:
            raise Interrupted

    def on_epoch_end(self, trainer, record):
        record["steps_seen"] = self.steps_seen

    def state_dict(self):
        return {"steps_seen": self.steps_seen}

    def load_state_dict(self, state):
        self.steps_seen = state["steps_seen"]


def test_resume_after_kill_reaches_the_same_final_metrics(tmp_path):
    reference = make_run(tmp_path, "uninterrupted", callbacks=[KillSwitch()])
    reference.fit()

    killed = make_run(tmp_path, "killed", callbacks=[KillSwitch(kill_at_step=11)])  # mid-epoch 3 (4 steps/epoch)
    with pytest.raises(Interrupted):
        killed.fit()
    assert killed.global_step == 11
    stored = checkpoint.load(tmp_path / "killed" / Trainer.CHECKPOINT_FILE)
    assert stored["epoch"] == 2 and stored["global_step"] == 8

    # A new process: a differently initialised model, fresh loaders; the checkpoint restores everything.
    resumed = make_run(tmp_path, "killed", callbacks=[KillSwitch()], model_seed_override=1234)
    history = resumed.fit(resume=True)

    assert without_timing(history.records) == without_timing(reference.history.records)
    assert history.final["steps_seen"] == reference.history.final["steps_seen"] == 12
    for (name, a), (_, b) in zip(reference.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name


def test_same_seed_same_metrics_and_other_seed_differs():
    first = make_run(None, seed=3).fit()
    second = make_run(None, seed=3).fit()
    other = make_run(None, seed=4).fit()
    assert without_timing(first.records) == without_timing(second.records)
    assert first.final["train_loss"] != other.final["train_loss"]


def test_finished_run_is_not_retrained(tmp_path):
    trainer = make_run(tmp_path)
    trainer.fit()
    again = make_run(tmp_path)
    history = again.fit(resume=True)
    assert again.global_step == trainer.global_step == 12
    assert without_timing(history.records) == without_timing(trainer.history.records)


def test_existing_checkpoint_without_resume_is_refused(tmp_path):
    make_run(tmp_path).fit()
    with pytest.raises(FileExistsError, match="resume=True"):
        make_run(tmp_path).fit(resume=False)


def test_history_log_is_complete_json_after_every_epoch(tmp_path):
    trainer = make_run(tmp_path)
    trainer.fit()
    log = json.loads((tmp_path / "run" / Trainer.HISTORY_FILE).read_text())
    assert [r["epoch"] for r in log["epochs"]] == [1, 2, 3]
    assert {"train_loss", "test_top1", "test_top5", "test_loss", "lr", "step"} <= set(log["epochs"][0])
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]


def test_the_history_holds_what_the_convergence_test_reads(tmp_path):
    """rewire.reporting.convergence reads ``train_loss`` every epoch and a held-out top-1 where evaluated:
    with ``eval_every`` 2 of 3 epochs, ``val_top1`` / ``test_top1`` sit on epochs 2 and 3 (the last is always
    evaluated), ``train_loss`` on all three."""
    from rewire.reporting.convergence import ConvergenceTest

    trainer = make_run(tmp_path, hparams=TrainingHparams(epochs=3, lr=0.05, momentum=0.9, eval_every=2))
    images, labels = synthetic_images(n_per_class=3, seed=1)
    trainer.validation_loader = BatchLoader(
        images, labels, 16, shuffle=False, augment=False, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)
    )
    history = trainer.fit()
    log = json.loads((tmp_path / "run" / Trainer.HISTORY_FILE).read_text())["epochs"]
    assert log == json.loads(json.dumps(history.records))  # the file holds what the engine returns
    assert all(math.isfinite(r["train_loss"]) for r in log)
    assert [r["epoch"] for r in log if "val_top1" in r] == [2, 3]
    assert [r["epoch"] for r in log if "test_top1" in r] == [2, 3]
    result = ConvergenceTest().judge(log, num_classes=NUM_CLASSES)
    assert result.accuracy_key == "val_top1" and result.epochs == 3 and result.window_epochs == 1
    assert result.loss_before_window == log[1]["train_loss"] and result.loss_final == log[2]["train_loss"]
    assert result.accuracy_final == log[2]["val_top1"] and result.at_chance is not None


def test_checkpoint_loads_with_weights_only(tmp_path):
    make_run(tmp_path).fit()
    state = torch.load(tmp_path / "run" / Trainer.CHECKPOINT_FILE, weights_only=True)
    assert state["format"] == checkpoint.FORMAT and state["epoch"] == 3


def test_corrupt_checkpoint_is_reported_with_advice(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / Trainer.CHECKPOINT_FILE).write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(checkpoint.CheckpointError, match="corrupt.*delete"):
        make_run(tmp_path).fit()


def test_foreign_checkpoint_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    torch.save({"state_dict": {"w": torch.zeros(2)}}, tmp_path / "run" / Trainer.CHECKPOINT_FILE)
    with pytest.raises(checkpoint.CheckpointError, match="another program"):
        make_run(tmp_path).fit()


class NotATensor:
    pass


def test_checkpoint_with_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": checkpoint.FORMAT, "payload": NotATensor()}, path)
    with pytest.raises(checkpoint.CheckpointError, match="not a readable checkpoint"):
        checkpoint.load(path)


def test_checkpoint_of_other_hyperparameters_is_refused(tmp_path):
    make_run(tmp_path).fit()
    other = TrainingHparams(epochs=3, lr=0.5)
    with pytest.raises(checkpoint.CheckpointError, match="differing: .*lr"):
        make_run(tmp_path, hparams=other).fit()


class LrRecorder(Callback):
    def __init__(self):
        self.lrs = []

    def on_after_backward(self, trainer):
        self.lrs.append(trainer.optimizer.param_groups[0]["lr"])


@pytest.mark.parametrize(
    "hparams, expected",
    [
        # 4 steps per epoch, 3 epochs; per-iteration cosine: t = step / 4
        (
            TrainingHparams(epochs=3, lr=0.1, schedule="cosine", schedule_step="iteration"),
            [0.1 * 0.5 * (1 + math.cos(math.pi * s / 12)) for s in range(12)],
        ),
        # per-epoch multistep at epochs 1 and 2, gamma 0.1
        (
            TrainingHparams(
                epochs=3, lr=0.1, schedule="multistep", milestones=(1, 2), gamma=0.1, schedule_step="epoch"
            ),
            [0.1] * 4 + [0.01] * 4 + [0.001] * 4,
        ),
        # linear warm-up over one epoch from 0.25, then constant
        (
            TrainingHparams(epochs=3, lr=0.4, schedule="constant", warmup_epochs=1.0, warmup_start_factor=0.25),
            [0.4 * (0.25 + 0.75 * s / 4) for s in range(4)] + [0.4] * 8,
        ),
    ],
)
def test_learning_rate_follows_the_schedule_at_every_step(hparams, expected):
    recorder = LrRecorder()
    make_run(None, hparams=hparams, callbacks=[recorder]).fit()
    assert recorder.lrs == pytest.approx(expected, rel=1e-12)


def test_weight_decay_groups_exclude_biases_and_norm_parameters():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=True), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    decay, no_decay = parameter_groups(model, 1e-4, ("bias", "norm"))
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[3].weight)}
    assert {id(p) for p in no_decay["params"]} == {
        id(model[0].bias),
        id(model[1].weight),
        id(model[1].bias),
        id(model[3].bias),
    }
    (only,) = parameter_groups(model, 1e-4, ())
    assert len(only["params"]) == 6
    decay, no_decay = parameter_groups(model, 1e-4, ("3.*",))  # fnmatch pattern on names
    assert {id(p) for p in no_decay["params"]} == {id(model[3].weight), id(model[3].bias)}


def test_adam_and_sgd_are_built_as_asked():
    sgd = make_run(None, hparams=TrainingHparams(epochs=1, optimizer="sgd", nesterov=True)).optimizer
    adam = make_run(None, hparams=TrainingHparams(epochs=1, optimizer="adam", lr=1e-3)).optimizer
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"] is True
    assert isinstance(adam, torch.optim.Adam)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"epochs": 0}, "epochs"),
        ({"epochs": 1, "optimizer": "rmsprop"}, "optimizer"),
        ({"epochs": 1, "schedule": "poly"}, "schedule"),
        ({"epochs": 1, "label_smoothing": 1.0}, "label_smoothing"),
        ({"epochs": 1, "optimizer": "adam", "nesterov": True}, "nesterov"),
    ],
)
def test_invalid_hyperparameters_are_rejected_with_the_field_named(bad, message):
    with pytest.raises(ValueError, match=message):
        TrainingHparams(**bad)


class Recorder(Callback):
    def __init__(self, name, events):
        self.name, self.events = name, events

    def optimizer_step(self, trainer, step):
        self.events.append(f"{self.name}:before")
        step()
        self.events.append(f"{self.name}:after")


class ZeroInputs(Callback):
    def on_batch_start(self, trainer, inputs, targets):
        return torch.zeros_like(inputs), targets


def test_optimizer_step_wrappers_nest_in_order_and_step_once():
    events = []
    trainer = make_run(
        None, hparams=TrainingHparams(epochs=1), callbacks=[Recorder("a", events), Recorder("b", events)]
    )
    steps = []
    original = trainer.optimizer.step
    trainer.optimizer.step = lambda: (steps.append(1), original())
    trainer.fit()
    assert events[:4] == ["a:before", "b:before", "b:after", "a:after"]
    assert len(steps) == trainer.global_step == 4


def test_on_batch_start_can_replace_the_batch():
    class Capture(Callback):
        def on_after_backward(self, trainer):
            self.grad = trainer.model.features[0][0].weight.grad.clone()

    capture = Capture()
    make_run(None, hparams=TrainingHparams(epochs=1), callbacks=[ZeroInputs(), capture]).fit()
    assert torch.count_nonzero(capture.grad) == 0  # zero inputs -> zero gradient of the first conv


def test_label_smoothing_reaches_the_loss():
    trainer = make_run(None, hparams=TrainingHparams(epochs=1, label_smoothing=0.1))
    logits, targets = torch.randn(5, NUM_CLASSES), torch.tensor([0, 1, 2, 3, 0])
    assert trainer.criterion(logits, targets).item() == pytest.approx(
        F.cross_entropy(logits, targets, label_smoothing=0.1).item()
    )


def test_evaluate_counts_top1_and_top5_exactly():
    class Fixed(nn.Module):
        def __init__(self, logits):
            super().__init__()
            self.logits = logits
            self.dummy = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return self.logits

    logits = torch.tensor([[5.0, 4, 3, 2, 1, 0], [0, 1, 2, 3, 4, 5], [0, 5, 1, 1, 1, 1]])
    targets = torch.tensor([0, 0, 1])  # right, last-ranked, right
    metrics = evaluate(Fixed(logits), [(torch.zeros(3), targets)])
    assert metrics["top1"] == pytest.approx(200 / 3)
    assert metrics["top5"] == pytest.approx(200 / 3)
    assert metrics["loss"] == pytest.approx(F.cross_entropy(logits, targets).item())


def test_run_directory_changes_with_the_configuration(tmp_path):
    a = run_directory(tmp_path, "seed0", {"lr": 0.1})
    assert a == run_directory(tmp_path, "seed0", {"lr": 0.1})
    assert a != run_directory(tmp_path, "seed0", {"lr": 0.2})
    assert a.name.startswith("seed0-")


def test_seeds_are_derived_deterministically_and_differ():
    seeds = Seeds.from_run_seed(0)
    assert seeds == Seeds.from_run_seed(0)
    assert len({seeds.model, seeds.data_order, seeds.augmentation}) == 3
    assert seeds != Seeds.from_run_seed(1)
    with pytest.raises(ValueError):
        Seeds.from_run_seed(-1)
    seed_model_init(seeds)
    a = torch.rand(3)
    seed_model_init(seeds)
    assert torch.equal(a, torch.rand(3))


def test_bf16_precision_trains_in_bfloat16_with_float32_state(tmp_path):
    """bf16: autocast forward (bfloat16 activations) with channels-last weights; weights, gradients and
    optimizer state stay float32; the evaluation restores train mode and reports float metrics."""
    seen = {}

    class Probe(Callback):
        def on_after_backward(self, trainer):
            first = next(trainer.model.parameters())
            seen["grad_dtype"] = first.grad.dtype

    hparams = TrainingHparams(epochs=1, lr=0.05, weight_decay=0.0, precision="bf16")
    trainer = make_run(tmp_path, hparams=hparams, callbacks=[Probe()])
    conv = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d))
    out = {}

    def record_dtype(module, inputs, output):
        out.setdefault("dtype", output.dtype)

    handle = conv.register_forward_hook(record_dtype)
    history = trainer.fit()
    handle.remove()
    assert out["dtype"] == torch.bfloat16
    assert conv.weight.dtype == torch.float32 and conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert seen["grad_dtype"] == torch.float32
    assert all(s["momentum_buffer"].dtype == torch.float32 for s in trainer.optimizer.state.values())
    assert math.isfinite(history.final["train_loss"]) and 0.0 <= history.final["test_top1"] <= 100.0
    assert trainer.model.training


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16"):
        TrainingHparams(epochs=1, precision="fp16")


class ScaledLoss(Callback):
    """Replaces the batch loss by ``scale`` times the cross-entropy (a loss the criterion cannot produce)."""

    def __init__(self, scale):
        self.scale = scale

    def training_loss(self, trainer, inputs, targets):
        return self.scale * F.cross_entropy(trainer.model(inputs), targets)


class NeverDecides(Callback):
    def training_loss(self, trainer, inputs, targets):
        return None


def test_a_callback_can_replace_the_training_loss_and_the_first_one_decides():
    plain = TrainingHparams(epochs=1, lr=0.1, momentum=0.0, weight_decay=0.0, schedule="constant")
    reference = make_run(None, hparams=plain, callbacks=[NeverDecides()])
    reference.fit()
    zero = make_run(None, hparams=plain, callbacks=[NeverDecides(), ScaledLoss(0.0), ScaledLoss(-1.0)])
    before = [p.detach().clone() for p in zero.model.parameters()]
    zero.fit()
    assert zero.history.records[0]["train_loss"] == 0.0  # the scale-0 loss decided, not the later one
    assert all(torch.equal(a, b) for a, b in zip(before, zero.model.parameters()))  # zero loss, no update
    doubled = make_run(None, hparams=plain, callbacks=[ScaledLoss(2.0)])
    doubled.fit()
    half_lr = TrainingHparams(epochs=1, lr=0.2, momentum=0.0, weight_decay=0.0, schedule="constant")
    equivalent = make_run(None, hparams=half_lr)  # 2·CE at lr 0.1 is CE at lr 0.2 under plain SGD
    equivalent.fit()
    for a, b in zip(doubled.model.parameters(), equivalent.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert doubled.history.records[0]["train_loss"] == pytest.approx(
        2 * equivalent.history.records[0]["train_loss"], rel=1e-5
    )
    assert not torch.equal(next(reference.model.parameters()), next(equivalent.model.parameters()))
