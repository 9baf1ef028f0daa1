"""The robust-binary training callbacks (Liu et al., NeurIPS 2022): the training attacks and robust model selection.

* :class:`PGDTraining`: Algorithm 1's inner maximisation, PGD at ε with random start, trained on the final iterate;
* :class:`TRADESTraining`: the TRADES loss, CE(f(x), y) + β·KL(f(x) ‖ f(x_adv)) (Table 9's TRADES rows);
* :class:`FastATTATraining`: Algorithm 2, FGSM with random start from ATTA's per-sample cache, the augmentation
  inside the attacker (its loader an :class:`IndexedBatchLoader`): CIFAR's pad-4 crop and flip, or ImageNet-100's
  RandomResizedCrop and flip (:class:`ResizedCropATTACache`);
* :class:`RobustSelection`: the authors' model selection, robust (PGD) validation accuracy every ``eval_every``
  epochs (clean for rows trained without an attack), the selected epoch's state evaluated on the test images at
  the end beside the final one;
* :class:`LatentClip`: BinaryConnect's latent weights back into [-1, 1].

Each reads its attack settings from a resolved :class:`~rewire.experiments.robust_binary.config.Row` (ε, step and
FGSM step as pixel fractions through its ``eps``, ``step_size`` and ``fast_step``).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from rewire.attacks.fast import ATTACache
from rewire.attacks.pgd import pgd_linf, robust_accuracy
from rewire.attacks.trades import trades_loss
from rewire.data.imagefolder.in_memory import CropBoxes, draw_crop_boxes, paste_resized, resized_crop
from rewire.data.loader import BatchLoader
from rewire.experiments.robust_binary.config import Row
from rewire.models.binary_connect import attach_latent_clip
from rewire.train.trainer import Callback

__all__ = [
    "IndexedBatchLoader",
    "PGDTraining",
    "TRADESTraining",
    "FastATTATraining",
    "ResizedCropATTACache",
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


class ResizedCropATTACache(ATTACache):
    """ATTA's per-sample cache under ImageNet's training augmentation, ``RandomResizedCrop(crop_size)`` + flip.

    The authors' cache lives on the image's padded canvas and each batch crops image and perturbation with the same
    offsets, so that a pixel's perturbation stays on that pixel from epoch to epoch. The analogue here: the canvas is
    the stored image (pad 0; stored 8x8-average-pooled when it is over 160 px, ATTA's compression, so 32x32 for 256
    px); each batch draws a :func:`draw_crop_boxes` box and flip per image from the cache's generator, the image and
    its perturbation are resized from the same box (:func:`resized_crop`), and after the FGSM step the perturbation
    goes back onto its box (:func:`paste_resized`, bilinear; pixels outside the box keep theirs). Bilinear weights are
    non-negative and sum to one, so every stored value stays in [-ε, ε].

    The authors' ImageNet-100 code differs (their loader's RandomResizedCrop is not switched off for fast training,
    then the attacker pads and crops the 224 crop again with a 232x232 cache): the perturbation it loads was made
    on another crop of the image, so ATTA's reuse there carries no alignment. That is not reproduced."""

    def __init__(self, num_samples: int, image_shape: tuple[int, int, int], *, crop_size: int, **kwargs) -> None:
        if isinstance(crop_size, bool) or int(crop_size) != crop_size or not 0 < crop_size <= min(image_shape[1:]):
            raise ValueError(f"crop_size must be an integer in [1, {min(image_shape[1:])}] for images of shape "
                             f"{tuple(image_shape)}, got {crop_size!r}; e.g. 224 of 256")  # fmt: skip
        super().__init__(num_samples, image_shape, pad=0, **kwargs)
        self.crop_size = int(crop_size)

    def sample_augmentation(self, batch_size: int) -> CropBoxes:
        _, h, w = self.image_shape
        return draw_crop_boxes(batch_size, h, w, self.generator)

    def augment(self, x: torch.Tensor, aug: CropBoxes) -> torch.Tensor:
        self._check_batch(x, aug)
        return resized_crop(x, aug, self.crop_size)

    def load(self, index: torch.Tensor, aug: CropBoxes) -> torch.Tensor:
        return resized_crop(self._full(self._index(index, aug)), aug, self.crop_size)

    def store(self, index: torch.Tensor, aug: CropBoxes, delta: torch.Tensor) -> None:
        index = self._index(index, aug)
        expected = (len(aug), self.image_shape[0], self.crop_size, self.crop_size)
        if tuple(delta.shape) != expected:
            raise ValueError(f"expected perturbations of shape {expected}, got {tuple(delta.shape)}")
        _, h, w = self.image_shape
        values, seen = paste_resized(delta.detach().to(self.canvas.device, self.canvas.dtype), aug, h, w)
        full = torch.where(seen, values, self._full(index))
        if self.compress == 1:
            self.canvas[index] = full
            return
        k = self.compress
        touched = F.avg_pool2d(seen.to(full.dtype), k) > 0
        self.canvas[index] = torch.where(touched, F.avg_pool2d(full, k), self.canvas[index])


class FastATTATraining(Callback):
    """Algorithm 2: FGSM with random start from ATTA's cached perturbation, augmentation done by the attacker.

    The loader must be an :class:`IndexedBatchLoader` without augmentation; the cache is the training run's
    memory and part of its checkpoint (a resumed run continues with the perturbations it had). ``crop_size``
    (ImageNet-100): the attacker's augmentation is ``RandomResizedCrop(crop_size)`` + flip of the stored images
    (:class:`ResizedCropATTACache`) instead of CIFAR's pad-4 crop and flip."""

    def __init__(self, setup: Row, loader: IndexedBatchLoader, seed: int, crop_size: int = 0) -> None:
        if loader.augment:
            raise ValueError("fast training augments inside the attacker: build the loader with augment=False")
        self.setup, self.loader = setup, loader
        images = loader.images
        cache = ResizedCropATTACache if crop_size else ATTACache
        self.cache = cache(
            loader.num_examples,
            tuple(images.shape[1:]),
            eps=setup.eps,
            device=images.device,
            generator=torch.Generator().manual_seed(seed),
            **({"crop_size": crop_size} if crop_size else {}),
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
    """The authors' model selection (Appendix D.1: a validation split of 2 % "to select the best model during
    training"; their code keeps the epoch of the best robust validation accuracy, PGD-10 in eval mode): after every
    ``eval_every``-th epoch (and the last) the validation images are attacked, and the state of the epoch with the
    best :meth:`selection_accuracy` is kept -- the robust accuracy, or the clean one for a row trained without an
    attack (ε = 0: robust accuracy *is* clean accuracy, Table 8's vanilla training). At the end the final and the
    selected state are both evaluated on ``test_images`` test images, clean and PGD (``test_*`` = final,
    ``best_test_*`` = selected, ``best_epoch`` its epoch); the selected state stays in the checkpoint
    (:meth:`state_dict`) for the report's AutoAttack."""

    def __init__(self, setup: Row, validation, test) -> None:
        self.setup, self.validation, self.test = setup, validation, test
        self.best_robust = -1.0  # the best selection accuracy so far (robust, or clean for a vanilla row)
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None

    @property
    def selects_on(self) -> str:
        """What the selection maximises: "robust" (PGD validation accuracy), "clean" for rows trained without an attack."""
        return "clean" if self.setup.training == "clean" else "robust"

    def selection_accuracy(self, accuracy) -> float:
        """The number the best epoch maximises, from a :func:`robust_accuracy` result."""
        return accuracy.clean if self.selects_on == "clean" else accuracy.robust

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
            if self.selection_accuracy(accuracy) > self.best_robust:
                self.best_robust, self.best_epoch = self.selection_accuracy(accuracy), epoch
                self.best_state = copy.deepcopy(model.state_dict())
        if last:
            self._test(model, epoch, record)

    def _test(self, model: nn.Module, epoch: int, record: dict[str, Any]) -> None:
        """The final state and the selected one on the test images (the selected one once if it is the final)."""
        final = robust_accuracy(model, self.test, n=self.setup.test_images, **self._attack())
        record.update({"test_clean_top1": 100 * final.clean, "test_pgd_top1": 100 * final.robust})
        record["test_images_attacked"] = final.n
        if self.best_state is None:
            return
        best = final
        if self.best_epoch != epoch:
            current = copy.deepcopy(model.state_dict())
            model.load_state_dict(self.best_state)
            best = robust_accuracy(model, self.test, n=self.setup.test_images, **self._attack())
            model.load_state_dict(current)
        record.update({"best_epoch": self.best_epoch, "selected_on": self.selects_on,
                       "best_test_clean_top1": 100 * best.clean, "best_test_pgd_top1": 100 * best.robust})  # fmt: skip

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
