"""Batch-norm recalibration (rewire.train.batchnorm): the running statistics become the batches' own, exactly,
and nothing else changes (issue 20, point 4: the ``sfp_bn`` variant of the DPF sweeps)."""

import pytest
import torch
import torch.nn as nn

from rewire.train.batchnorm import batchnorm_layers, recalibrate_batchnorm


def _conv_bn() -> nn.Sequential:
    """1x1 convolution (3 filters, filter 1 zeroed, as SFP leaves it) into a batch norm with stale statistics."""
    model = nn.Sequential(nn.Conv2d(2, 3, 1, bias=False), nn.BatchNorm2d(3, momentum=0.1)).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, -2.0], [0.0, 0.0], [0.5, 3.0]]).view(3, 2, 1, 1).double())
        model[1].weight.copy_(torch.tensor([1.5, -0.7, 0.9]).double())
        model[1].bias.copy_(torch.tensor([0.3, -0.2, 0.1]).double())
        model[1].running_mean.copy_(torch.tensor([4.0, 5.0, -6.0]).double())  # stale: the model before zeroing
        model[1].running_var.copy_(torch.tensor([2.0, 3.0, 7.0]).double())
        model[1].num_batches_tracked.fill_(100)
    return model.eval()


def _batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    first = torch.randn(4, 2, 3, 3, generator=g, dtype=torch.float64) + 1.0  # signed, shifted: unequal batches
    second = 2.0 * torch.randn(4, 2, 3, 3, generator=g, dtype=torch.float64) - 0.5
    return [(first, torch.zeros(4, dtype=torch.long)), (second, torch.ones(4, dtype=torch.long))]


def _expected(model: nn.Sequential, batches) -> tuple[torch.Tensor, torch.Tensor]:
    """Hand reference: the average over the batches of each channel's batch mean and unbiased batch variance."""
    means, variances = [], []
    for inputs, _ in batches:
        out = torch.einsum("oc,bchw->bohw", model[0].weight[:, :, 0, 0], inputs).transpose(0, 1).reshape(3, -1)
        means.append(out.mean(dim=1))
        variances.append(out.var(dim=1, unbiased=True))
    return torch.stack(means).mean(0), torch.stack(variances).mean(0)


def test_recalibration_sets_the_running_statistics_to_the_batches_own_and_zeroed_channels_to_zero():
    model = _conv_bn()
    batches = _batches()
    read = recalibrate_batchnorm(model, batches, 2)
    mean, var = _expected(model, batches)
    bn = model[1]
    assert read == 2 and int(bn.num_batches_tracked) == 2
    torch.testing.assert_close(bn.running_mean, mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(bn.running_var, var, rtol=0, atol=1e-12)
    # the zeroed filter's channel: its real statistics are 0 and 0 (the stale 5.0 and 3.0 are gone)
    assert bn.running_mean[1].item() == 0.0 and bn.running_var[1].item() == 0.0
    assert bn.running_mean[0].item() != 4.0 and bn.running_var[2].item() != 7.0


def test_recalibration_reads_exactly_the_stated_number_of_batches():
    model = _conv_bn()
    batches = _batches()
    assert recalibrate_batchnorm(model, batches, 1) == 1
    mean, var = _expected(model, batches[:1])  # the first batch alone (both batches would differ)
    torch.testing.assert_close(model[1].running_mean, mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(model[1].running_var, var, rtol=0, atol=1e-12)
    both_mean, _ = _expected(model, batches)
    assert not torch.allclose(mean, both_mean)
    # a loader shorter than asked is read once to its end
    assert recalibrate_batchnorm(_conv_bn(), batches, 5) == 2


def test_recalibration_changes_no_weight_and_restores_mode_and_momentum():
    model = _conv_bn()
    before = {k: v.clone() for k, v in model.named_parameters()}
    recalibrate_batchnorm(model, _batches(), 2)
    for name, value in model.named_parameters():
        assert torch.equal(value, before[name]), name
        assert value.grad is None
    assert not model.training and not model[1].training  # eval mode restored
    assert model[1].momentum == 0.1  # its momentum restored (None only while recalibrating)
    train_model = _conv_bn().train()
    recalibrate_batchnorm(train_model, _batches(), 1)
    assert train_model.training


def test_recalibration_refuses_fewer_than_one_batch_and_writes_nothing():
    model = _conv_bn()
    stale = model[1].running_mean.clone()
    for bad in (0, -3, 1.5, True):
        with pytest.raises(ValueError, match=r"batches=.* must be an int >= 1 .*e\.g\. batches=40"):
            recalibrate_batchnorm(model, _batches(), bad)
    with pytest.raises(ValueError, match="yields no batch"):
        recalibrate_batchnorm(model, [], 2)
    assert torch.equal(model[1].running_mean, stale) and int(model[1].num_batches_tracked) == 100


def test_only_batch_norms_with_running_statistics_are_recalibrated():
    model = nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3), nn.BatchNorm2d(3, track_running_stats=False))
    assert batchnorm_layers(model) == [model[1]]
