"""The robust-binary training callbacks (Liu et al., NeurIPS 2022): the training attacks and robust model selection.

* :class:`PGDTraining`: Algorithm 1's inner maximisation, PGD at ε with random start, trained on the final iterate;
* :class:`TRADESTraining`: the TRADES loss, CE(f(x), y) + β·KL(f(x) ‖ f(x_adv)) (Table 9's TRADES rows);
* :class:`FastATTATraining`: Algorithm 2, FGSM with random start from ATTA's per-sample cache, the augmentation
  inside the attacker (its loader an :class:`IndexedBatchLoader`);
* :class:`RobustSelection`: the authors' model selection, robust (PGD) validation accuracy every ``eval_every``
  epochs, the best epoch's state evaluated on the test images at the end beside the final one;
* :class:`LatentClip`: BinaryConnect's latent weights back into [-1, 1].

Each reads its attack settings from a resolved :class:`~rewire.experiments.robust_binary.config.Row` (ε, step and
FGSM step as pixel fractions through its ``eps``, ``step_size`` and ``fast_step``).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn as nn

from rewire.attacks.fast import ATTACache
from rewire.attacks.pgd import pgd_linf, robust_accuracy
from rewire.attacks.trades import trades_loss
from rewire.data.loader import BatchLoader
from rewire.experiments.robust_binary.config import Row
from rewire.models.binary_connect import attach_latent_clip
from rewire.train.trainer import Callback

__all__ = [
    "IndexedBatchLoader",
    "PGDTraining",
    "TRADESTraining",
    "FastATTATraining",
    "RobustSelection",
    "LatentClip",
    "EVALUATION_SEED",
    "evaluation_subset",
]


class IndexedBatchLoader(BatchLoader):
    """A :class:`rewire.data.BatchLoader` for ATTA's per-sample cache: ``last_index`` (set by every BatchLoader)
    names the dataset indices of the batch it yielded last. Pixels stay in [0, 1] (normalisation is inside the
    model). It never augments (ATTA augments inside the attacker), so ``augment=True`` is refused."""

    def __init__(self, *args, **kwargs) -> None:
        if kwargs.get("augment"):
            raise ValueError(
                "IndexedBatchLoader yields un-augmented images (ATTA augments in the attacker): augment=False"
            )
        super().__init__(*args, **kwargs)


# ------------------------------------------------------------------------------------------------ callbacks


class _SeededAttack(Callback):
    """A training attack with its own seeded generator (its random starts), saved in the checkpoint."""

    def __init__(self, setup: Row, seed: int) -> None:
        self.setup = setup
        self.generator = torch.Generator().manual_seed(seed)

    def attack_options(self) -> dict[str, Any]:
        s = self.setup
        return {"eps": s.eps, "step_size": s.step_size, "steps": s.steps, "bn_mode": s.attack_bn_mode}

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


class PGDTraining(_SeededAttack):
    """Algorithm 1's inner maximisation: each training batch is replaced by its PGD adversarial examples."""

    def on_batch_start(self, trainer, inputs, targets):
        adversarial = pgd_linf(trainer.model, inputs, targets, generator=self.generator, **self.attack_options())
        return adversarial, targets


class TRADESTraining(_SeededAttack):
    """TRADES (Zhang et al. 2019) as the training loss: CE(f(x), y) + β·KL(f(x) ‖ f(x_adv)), x_adv the inner
    maximiser of the KL term (:func:`rewire.attacks.trades.trades_loss`)."""

    def training_loss(self, trainer, inputs, targets):
        loss, _ = trades_loss(
            trainer.model,
            inputs,
            targets,
            beta=self.setup.trades_beta,
            generator=self.generator,
            **self.attack_options(),
        )
        return loss


class FastATTATraining(Callback):
    """Algorithm 2: FGSM with random start from ATTA's cached perturbation, augmentation done by the attacker.

    The loader must be an :class:`IndexedBatchLoader` without augmentation; the cache is the training run's
    memory and part of its checkpoint (a resumed run continues with the perturbations it had)."""

    def __init__(self, setup: Row, loader: IndexedBatchLoader, seed: int) -> None:
        if loader.augment:
            raise ValueError("fast training augments inside the attacker: build the loader with augment=False")
        self.setup, self.loader = setup, loader
        images = loader.images
        self.cache = ATTACache(
            loader.num_examples,
            tuple(images.shape[1:]),
            eps=setup.eps,
            device=images.device,
            generator=torch.Generator().manual_seed(seed),
        )

    def on_batch_start(self, trainer, inputs, targets):
        adversarial, _, _ = self.cache.perturb(
            trainer.model,
            inputs,
            targets,
            self.loader.last_index,
            step_size=self.setup.fast_step,
            bn_mode=self.setup.attack_bn_mode,
        )
        return adversarial, targets

    def state_dict(self) -> dict[str, Any]:
        return {"cache": self.cache.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.cache.load_state_dict(state["cache"])


class RobustSelection(Callback):
    """Robust validation accuracy (PGD-10) after evaluated epochs; the best epoch's state is kept, and at the end
    both the final and the best state are evaluated on ``test_images`` test images (clean and PGD-10)."""

    def __init__(self, setup: Row, validation, test) -> None:
        self.setup, self.validation, self.test = setup, validation, test
        self.best_robust = -1.0
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None

    def _attack(self) -> dict[str, Any]:
        s = self.setup
        return {"eps": s.eps, "step_size": s.step_size, "steps": s.steps, "bn_mode": "eval"}

    def on_epoch_end(self, trainer, record: dict[str, Any]) -> None:
        epoch = record["epoch"]
        last = epoch == trainer.hparams.epochs
        model = trainer.model
        if self.validation is not None and (epoch % self.setup.eval_every == 0 or last):
            accuracy = robust_accuracy(model, self.validation, n=self.setup.validation_images, **self._attack())
            record["val_clean_top1"] = 100 * accuracy.clean
            record["val_pgd_top1"] = 100 * accuracy.robust
            if accuracy.robust > self.best_robust:
                self.best_robust, self.best_epoch = accuracy.robust, epoch
                self.best_state = copy.deepcopy(model.state_dict())
        if last:
            final = robust_accuracy(model, self.test, n=self.setup.test_images, **self._attack())
            record.update({"test_clean_top1": 100 * final.clean, "test_pgd_top1": 100 * final.robust})
            record["test_images_attacked"] = final.n
            if self.best_state is not None and self.best_epoch == epoch:  # the final state is the best one
                best = final
            elif self.best_state is not None:
                current = copy.deepcopy(model.state_dict())
                model.load_state_dict(self.best_state)
                best = robust_accuracy(model, self.test, n=self.setup.test_images, **self._attack())
                model.load_state_dict(current)
            if self.best_state is not None:
                record.update(
                    {
                        "best_epoch": self.best_epoch,
                        "best_test_clean_top1": 100 * best.clean,
                        "best_test_pgd_top1": 100 * best.robust,
                    }
                )

    def state_dict(self) -> dict[str, Any]:
        return {"best_robust": self.best_robust, "best_epoch": self.best_epoch, "best_state": self.best_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_robust, self.best_epoch = state["best_robust"], state["best_epoch"]
        self.best_state = state["best_state"]


class LatentClip(Callback):
    """BinaryConnect: latent weights back into [-1, 1] after every optimizer step."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.attached = False

    def on_fit_start(self, trainer) -> None:
        if not self.attached:
            attach_latent_clip(trainer.optimizer, self.model)
            self.attached = True


EVALUATION_SEED = 0  # one fixed draw of the attacked images for every run, seed and row (our choice)


def evaluation_subset(size: int, n: int) -> torch.Tensor:
    """The indices of the ``n`` images (all if fewer) that robust evaluation attacks: a fixed, seeded random subset."""
    order = torch.randperm(size, generator=torch.Generator().manual_seed(EVALUATION_SEED))
    return order[: min(n, size)].sort().values
