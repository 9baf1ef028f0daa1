"""Issue 19's "tests that a real bug passes": each test here fails under a one-line change that the suite
passed before (the change named in each docstring; each was tried once and seen to fail)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from rewire.attacks.fast import fgsm_rs
from rewire.attacks.pgd import pgd_linf
from rewire.methods.edge_popup import apply_edge_popup, kept_counts
from rewire.sparse.allocation import adaptive_allocation

pytestmark = pytest.mark.usefixtures("one_thread")

EPS = 8 / 255


def test_an_allocation_with_the_default_rounding_keeps_its_own_floor_counts():
    """Bug (a): ``apply_edge_popup(model, keep=allocation)`` taking the authors' get_subnet counts
    (``n - int((1 - r) n)``) instead of the allocation's floors (``int(r n)``, the default rounding)."""
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.Conv2d(16, 32, 3), nn.Conv2d(32, 10, 1))
    sizes = {"0.weight": 432, "1.weight": 4608, "2.weight": 320}
    allocation = adaptive_allocation(sizes, 0.1, 0.5)
    assert allocation.counts("get_subnet") != allocation.kept  # the two roundings differ on these layers
    apply_edge_popup(model, keep=allocation)
    assert kept_counts(model) == allocation.kept


def bn_model() -> nn.Module:
    """BN whose running statistics are far from any batch's: train- and eval-mode outputs differ."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(6, 4))  # fmt: skip
    with torch.no_grad():
        model[1].running_mean.uniform_(-2, 2)
        model[1].running_var.uniform_(0.1, 5)
    return model


def test_pgd_in_its_default_mode_attacks_the_eval_mode_network_of_a_model_left_in_train_mode():
    """Bug (b): ``pgd_linf``'s default ``bn_mode="eval"`` not calling ``model.eval()`` (the attack would then see
    batch statistics on a model left in train mode, and update its running statistics)."""
    x = torch.rand(10, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    with torch.no_grad():
        assert not torch.allclose(bn_model().train()(x), bn_model().eval()(x), atol=1e-3)  # the modes differ
    model = bn_model().train()
    statistics = model[1].running_mean.clone()
    reference = pgd_linf(bn_model().eval(), x, y, generator=torch.Generator().manual_seed(7))
    attacked = pgd_linf(model, x, y, generator=torch.Generator().manual_seed(7))
    assert torch.equal(attacked, reference)
    assert model.training and all(module.training for module in model.modules())  # the mode is restored
    assert torch.equal(model[1].running_mean, statistics)  # eval mode: no statistic moved


def test_fgsm_without_a_step_steps_one_and_a_quarter_eps():
    """Bug (c): ``fgsm_rs``'s default step ``eps`` instead of Wong et al.'s ``1.25 · eps``. Starting at -eps·sign(g),
    a step of 1.25·eps ends at +eps/4 along the gradient's sign (a step of eps would end at 0)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    x = torch.full((2, 3, 2, 2), 0.5)
    y = torch.tensor([0, 2])
    x_grad = x.clone().requires_grad_(True)
    sign = torch.autograd.grad(F.cross_entropy(model(x_grad), y), x_grad)[0].sign()
    assert bool((sign != 0).all())
    # the start -eps·sign(g) keeps the gradient's sign (a linear model's input gradient does not depend on x)
    adversarial = fgsm_rs(model, x, y, eps=EPS, delta=-EPS * sign)
    torch.testing.assert_close(adversarial - x, 0.25 * EPS * sign, atol=1e-6, rtol=0)
    explicit = fgsm_rs(model, x, y, eps=EPS, step_size=EPS, delta=-EPS * sign)
    torch.testing.assert_close(explicit - x, torch.zeros_like(x), atol=1e-6, rtol=0)
