"""Adversarial attacks and robust training losses (L-infinity, pixel space [0, 1]).

* :mod:`rewire.attacks.pgd` -- PGD (Madry et al. 2018), the authors' worst-iterate /
  train-mode-BN variant, :func:`robust_accuracy` over a loader;
* :mod:`rewire.attacks.fast` -- FGSM with random start and the ATTA perturbation cache
  with the augmentation moved into the attacker (Liu et al. 2022, App. C, Algorithm 2);
* :mod:`rewire.attacks.trades` -- the TRADES loss (Zhang et al. 2019);
* :mod:`rewire.attacks.autoattack` -- AutoAttack and a PGD cross-check through ``torchattacks``
  (imported lazily: everything else works without it).

Budgets are given in [0, 1] pixel units (8/255, not 8); the models carry their input
normalisation (:mod:`rewire.models.resnet_robust`).
"""

from rewire.attacks._common import BN_MODES, check_budget, check_steps, model_mode
from rewire.attacks.autoattack import AUTOATTACK_STANDARD, autoattack_accuracy, torchattacks_pgd_accuracy
from rewire.attacks.fast import ATTACache, Augmentation, fgsm_rs
from rewire.attacks.pgd import ATTACKS, RobustAccuracy, make_attack, pgd_linf, robust_accuracy
from rewire.attacks.trades import trades_adversary, trades_loss

__all__ = [
    "BN_MODES",
    "check_budget",
    "check_steps",
    "model_mode",
    "pgd_linf",
    "make_attack",
    "ATTACKS",
    "RobustAccuracy",
    "robust_accuracy",
    "fgsm_rs",
    "Augmentation",
    "ATTACache",
    "trades_adversary",
    "trades_loss",
    "AUTOATTACK_STANDARD",
    "autoattack_accuracy",
    "torchattacks_pgd_accuracy",
]
