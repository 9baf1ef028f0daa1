"""Why SFP ends at chance at the cpu scale (issue 20, point 4): the mechanism, pinned on exact tensors.

SFP (He et al. 2018) zeroes the smallest filters of every layer at each epoch end and lets them train again.
A zeroed filter feeding a batch norm gives a channel of zero mean and zero variance, so in training mode
the batch norm's backward pass multiplies its gradient by gamma / sqrt(eps) (about 316 gamma with PyTorch's
eps = 1e-5; the batch norm of He et al.'s code is the same). One step at the DPF recipe's lr 0.2 makes the
zeroed filter larger than every filter that was never zeroed, so the next epoch-end ranking zeroes other
filters (the measured cpu-scale collapse: ``rewire.methods.dpf.SoftFilterPruning``'s docstring).
"""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from rewire import methods
from rewire.methods.dpf import SparsitySchedule

EPS = 1e-5  # nn.BatchNorm2d's default eps, as in He et al.'s CIFAR ResNets


def _sfp_conv_bn():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4, eps=EPS)).double()
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([1.5, -0.7, 0.9, 2.0]))  # signed, distinct gammas
        model[1].bias.copy_(torch.tensor([0.3, -0.2, 0.1, 0.0]))  # (float64: exact comparisons below)
    attached = methods.get("sfp").attach(model, schedule=SparsitySchedule(final=0.5, initial=0.5, end=1.0))
    (sfp,) = attached.callbacks
    sfp.prune(None, 0.0)  # the epoch-end zeroing: the 2 smallest-L2 of 4 filters
    sfp.on_epoch_start(None)  # soft: every filter back in the forward pass for the next epoch
    return model, attached.group


def test_a_zeroed_filter_gets_its_gradient_multiplied_by_gamma_over_sqrt_eps_through_the_batch_norm():
    model, group = _sfp_conv_bn()
    (weight,) = group.dense_weights()
    zeroed = [j for j in range(4) if not bool(weight[j].any())]
    kept = [j for j in range(4) if j not in zeroed]
    assert len(zeroed) == 2 and all(bool(m.all()) for m in group.masks())
    x = torch.randn(6, 2, 5, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    upstream = torch.randn(6, 4, 5, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64) + 0.5
    model.train()
    (model(x) * upstream).sum().backward()

    # a channel of zero mean and variance: d(bn)/d(input) = gamma / sqrt(eps) (I - mean), x_hat = 0
    gamma = model[1].weight.detach()
    grad_input = torch.zeros(6, 4, 5, 5, dtype=torch.float64)  # dL/d(conv output) of the zeroed channels
    for j in zeroed:
        grad_input[:, j] = gamma[j] / math.sqrt(EPS) * (upstream[:, j] - upstream[:, j].mean())
    probe = weight.detach().clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(F.conv2d(x, probe, padding=1), probe, grad_outputs=grad_input)
    torch.testing.assert_close(weight.grad[zeroed], expected[zeroed], rtol=1e-9, atol=1e-9)
    norms = weight.grad.reshape(4, -1).norm(dim=1)
    assert norms[zeroed].min() > 100 * norms[kept].max()  # the measured cpu-scale ratio was 319x


def test_one_step_at_the_dpf_learning_rate_makes_the_zeroed_filters_the_largest():
    model, group = _sfp_conv_bn()
    (weight,) = group.dense_weights()
    zeroed = [j for j in range(4) if not bool(weight[j].any())]
    kept = [j for j in range(4) if j not in zeroed]
    before = weight.detach().reshape(4, -1).norm(dim=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9, nesterov=True, weight_decay=1e-4)
    x = torch.randn(6, 2, 5, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    target = torch.randn(6, 4, 5, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    model.train()
    F.mse_loss(model(x), target).backward()
    optimizer.step()
    after = weight.detach().reshape(4, -1).norm(dim=1)
    assert before[zeroed].max() == 0.0 and after[zeroed].min() > after[kept].max()
    # the next epoch-end ranking (smallest L2 first) would now zero exactly the filters kept before
    assert set(after.argsort()[:2].tolist()) == set(kept)


# --------------------------------------------------------------------------- sfp_bn: SFP + recomputed statistics


class _BNNet(nn.Module):
    """A convolution into a batch norm, ReLU, pooling and a linear classifier: SFP's filters feed a batch norm."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(F.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


def _fit(method: str):
    from synthetic import separable_loaders

    from rewire.train.trainer import Trainer, TrainingHparams

    torch.manual_seed(0)
    model = _BNNet()
    extra = {} if "sfp" in method else {"update_every": 1}  # DPF: a mask update every step (6 per epoch)
    attached = methods.get(method).attach(model, schedule=SparsitySchedule(final=0.5, end=1.0), **extra)
    train, test = separable_loaders(4)  # 6 steps per epoch
    hparams = TrainingHparams(epochs=2, lr=0.2, momentum=0.9, schedule="cosine")
    trainer = Trainer(model, hparams, train, test, callbacks=attached.callbacks, progress=False)
    trainer.fit()
    return trainer, attached


def test_sfp_bn_is_sfp_then_the_batch_norm_statistics_recomputed_after_the_final_zeroing():
    from rewire.methods.dpf import SFP_BN_BATCHES, BatchNormRecalibration, SoftFilterPruning
    from rewire.train.batchnorm import recalibrate_batchnorm

    plain, _ = _fit("sfp")
    variant, attached = _fit("sfp_bn")
    sfp, callback = attached.callbacks  # SFP's zeroing first, then the recalibration
    assert isinstance(sfp, SoftFilterPruning) and isinstance(callback, BatchNormRecalibration)
    assert callback.batches == SFP_BN_BATCHES
    # the same training: every weight identical, the loader's state restored after the recalibration
    for (name, a), b in zip(plain.model.named_parameters(), variant.model.parameters()):
        assert torch.equal(a, b), name
    assert plain.train_loader.state_dict()["epoch"] == variant.train_loader.state_dict()["epoch"] == 2
    # only the running statistics differ: they are the recalibration's, on the batches after the last epoch
    # (the loader has 6 batches: fewer than SFP_BN_BATCHES, read once to the end)
    assert variant.history.records[-1]["bn_recalibration_batches"] == 6
    assert "bn_recalibration_batches" not in variant.history.records[0]
    assert not torch.equal(variant.model.bn.running_var, plain.model.bn.running_var)  # SFP's are stale
    assert recalibrate_batchnorm(plain.model, plain.train_loader, SFP_BN_BATCHES) == 6
    torch.testing.assert_close(variant.model.bn.running_mean, plain.model.bn.running_mean, rtol=0, atol=0)
    torch.testing.assert_close(variant.model.bn.running_var, plain.model.bn.running_var, rtol=0, atol=0)
    zeroed = [j for j in range(4) if not bool(variant.model.conv.parametrizations.weight.original[j].any())]
    assert len(zeroed) == 2
    assert variant.model.bn.running_var[zeroed].abs().max().item() == 0.0  # a zeroed channel's true variance


def test_the_recalibration_callback_refuses_fewer_than_one_batch():
    from rewire.methods.dpf import BatchNormRecalibration

    for bad in (0, -1, 2.0):
        with pytest.raises(ValueError, match=r"batches=.* must be an int >= 1, e\.g\. batches=40"):
            BatchNormRecalibration(bad)


def test_dpf_structured_bn_is_structured_dpf_then_the_statistics_recomputed_after_its_last_step():
    from rewire.methods.dpf import GRADUAL_METHODS, BatchNormRecalibration, GradualPruning
    from rewire.train.batchnorm import recalibrate_batchnorm

    assert GRADUAL_METHODS["dpf_structured_bn"] == GRADUAL_METHODS["dpf_structured"]
    plain, _ = _fit("dpf_structured")
    variant, attached = _fit("dpf_structured_bn")
    dpf, callback = attached.callbacks
    assert isinstance(dpf, GradualPruning) and isinstance(callback, BatchNormRecalibration)
    for (name, a), b in zip(plain.model.named_parameters(), variant.model.parameters()):
        assert torch.equal(a, b), name
    assert not torch.equal(variant.model.bn.running_mean, plain.model.bn.running_mean)
    assert recalibrate_batchnorm(plain.model, plain.train_loader, 40) == 6
    torch.testing.assert_close(variant.model.bn.running_var, plain.model.bn.running_var, rtol=0, atol=0)
    assert variant.history.records[-1]["bn_recalibration_batches"] == 6
