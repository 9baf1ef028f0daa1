"""Attacks of rewire.attacks: PGD (ours and the authors' variant), FGSM-RS + ATTA, TRADES, AutoAttack wrappers."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from rewire.attacks import (
    ATTACache,
    Augmentation,
    autoattack_accuracy,
    fgsm_rs,
    make_attack,
    pgd_linf,
    robust_accuracy,
    torchattacks_pgd_accuracy,
    trades_adversary,
    trades_loss,
)

pytestmark = pytest.mark.usefixtures("one_thread")

EPS = 8 / 255


def ce(model, x, y):
    with torch.no_grad():
        return F.cross_entropy(model(x), y, reduction="none")


@pytest.fixture(scope="module")
def linear_task():
    """A linear 4-class classifier trained on labels of a random linear teacher (3x8x8 images in [0, 1]).

    Test accuracy about 0.8 clean and 0.1 under PGD-10 at 8/255.
    """
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1700, 3, 8, 8, generator=g)
    teacher = torch.randn(192, 4, generator=g)
    y = ((x.flatten(1) - 0.5) @ teacher).argmax(1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(192, 4))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(150):
        opt.zero_grad()
        F.cross_entropy(model(x[:1500]), y[:1500]).backward()
        opt.step()
    model.eval()
    return model, x[1500:], y[1500:]


def bn_net():
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 10),
    )


def assert_in_ball(x_adv, x, eps=EPS):
    assert x_adv.shape == x.shape
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_attacks_stay_in_eps_ball_and_pixel_box(linear_task):
    model, x, y = linear_task
    x = x[:64].clone()
    x[:8] = 0.0  # corners of the box: the clamp must act
    x[8:16] = 1.0
    y = y[:64]
    assert_in_ball(pgd_linf(model, x, y), x)
    assert_in_ball(pgd_linf(model, x, y, authors_mode=True), x)
    assert_in_ball(pgd_linf(model, x, y, random_start=False, steps=3), x)
    assert_in_ball(fgsm_rs(model, x, y, step_size=4 / 255), x)
    assert_in_ball(trades_adversary(model, x), x)
    cache = ATTACache(64, (3, 8, 8), eps=EPS, pad=2, generator=torch.Generator().manual_seed(0))
    x_adv, x_aug, _ = cache.perturb(model, x, y, torch.arange(64))
    assert_in_ball(x_adv, x_aug)


def test_pgd_increases_the_loss_and_lowers_accuracy(linear_task):
    model, x, y = linear_task
    torch.manual_seed(0)
    x_adv = pgd_linf(model, x, y)
    clean, adv = ce(model, x, y), ce(model, x_adv, y)
    assert adv.mean() > clean.mean() + 0.5
    assert (adv >= clean).float().mean() > 0.95
    acc_clean = (model(x).argmax(1) == y).float().mean()
    acc_adv = (model(x_adv).argmax(1) == y).float().mean()
    assert acc_clean > 0.6 and acc_adv < acc_clean - 0.2


def test_worst_iterate_loss_dominates_the_final_iterate(linear_task):
    model, x, y = linear_task
    # the authors' rule looks at iterates 0..steps-1, so it dominates the final iterate of a (steps-1)-step run
    torch.manual_seed(3)
    worst = pgd_linf(model, x, y, worst_iterate=True)
    torch.manual_seed(3)
    final9 = pgd_linf(model, x, y, steps=9)
    assert torch.all(ce(model, worst, y) >= ce(model, final9, y))
    # ... and with evaluate_last it dominates the final iterate of the same 10-step run
    torch.manual_seed(3)
    worst_all = pgd_linf(model, x, y, worst_iterate=True, evaluate_last=True)
    torch.manual_seed(3)
    final10 = pgd_linf(model, x, y)
    assert torch.all(ce(model, worst_all, y) >= ce(model, final10, y))
    assert torch.all(ce(model, worst_all, y) >= ce(model, worst, y))


def test_authors_mode_runs_bn_in_train_mode_default_does_not():
    model = bn_net().eval()
    x, y = torch.rand(16, 3, 8, 8), torch.randint(0, 10, (16,))
    before = model[1].running_mean.clone()
    pgd_linf(model, x, y)
    assert torch.equal(model[1].running_mean, before) and not model.training
    pgd_linf(model, x, y, authors_mode=True)
    assert not torch.equal(model[1].running_mean, before)  # the attack's forward passes updated the statistics
    assert not model.training and not model[1].training  # modes are restored
    model.train()
    pgd_linf(model, x, y)
    assert model.training and model[1].training


def test_our_pgd_equals_torchattacks_pgd(linear_task):
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = linear_task
    torch.manual_seed(7)
    ours = pgd_linf(model, x, y, eps=EPS, step_size=2 / 255, steps=10)
    torch.manual_seed(7)
    theirs = torchattacks.PGD(model, eps=EPS, alpha=2 / 255, steps=10, random_start=True)(x, y)
    assert torch.equal(ours, theirs)  # bit-identical: same random start draw, same arithmetic
    # the accuracy helpers agree within a point (here exactly, with the same seed)
    loader = [(x[i : i + 50], y[i : i + 50]) for i in range(0, 200, 50)]
    torch.manual_seed(11)
    ours_acc = robust_accuracy(model, loader, attack="pgd", eps=EPS, step_size=2 / 255, steps=10)
    torch.manual_seed(11)
    theirs_acc = torchattacks_pgd_accuracy(model, x, y, EPS, step_size=2 / 255, steps=10, batch_size=50)
    assert ours_acc.n == 200 and abs(ours_acc.robust - theirs_acc) <= 0.01
    assert ours_acc.robust < ours_acc.clean


def test_robust_accuracy_takes_the_first_n_images(linear_task):
    model, x, y = linear_task
    loader = [(x[i : i + 30], y[i : i + 30], torch.arange(i, i + 30)) for i in range(0, 200, 30)]
    res = robust_accuracy(model, loader, attack="none", n=70)
    assert res.n == 70 and res.robust == res.clean
    assert res.clean == pytest.approx((model(x[:70]).argmax(1) == y[:70]).float().mean().item())


def test_autoattack_wrapper(linear_task):
    pytest.importorskip("torchattacks")
    model, x, y = linear_task
    x, y = x[:48], y[:48]
    torch.manual_seed(0)
    pgd = torchattacks_pgd_accuracy(model, x, y, EPS)
    apgd = autoattack_accuracy(model, x, y, EPS, attacks=("apgd-ce",), steps=50)
    clean = (model(x).argmax(1) == y).float().mean().item()
    assert apgd <= clean and apgd <= pgd + 2 / 48
    standard = autoattack_accuracy(model, x[:16], y[:16], EPS, steps=5, n_queries=20)
    assert 0.0 <= standard <= (model(x[:16]).argmax(1) == y[:16]).float().mean().item()


# -- ATTA -----------------------------------------------------------------------------------


def reference_crop(canvas_rows: torch.Tensor, aug: Augmentation, h: int, w: int) -> torch.Tensor:
    """Crop and flip by plain slicing: the independent reference for ATTACache's index arithmetic."""
    out = []
    for i in range(len(aug)):
        dy, dx = int(aug.dy[i]), int(aug.dx[i])
        crop = canvas_rows[i, :, dy : dy + h, dx : dx + w]
        out.append(torch.flip(crop, dims=[2]) if aug.flip[i] else crop)
    return torch.stack(out)


def signed_asymmetric(shape) -> torch.Tensor:
    n = torch.arange(torch.Size(shape).numel(), dtype=torch.float32).reshape(shape)
    return (n + 1) * torch.where(n.long() % 3 == 0, -1.0, 1.0) / 1e4  # distinct values, mixed signs, no symmetry


def test_atta_crop_flip_round_trip_is_exact():
    c, h, w, pad = 3, 6, 5, 2
    cache = ATTACache(10, (c, h, w), eps=EPS, pad=pad, generator=torch.Generator().manual_seed(0))
    cache.canvas = signed_asymmetric(cache.canvas.shape)
    original = cache.canvas.clone()
    index = torch.tensor([3, 0, 7, 9, 5, 1])
    aug = Augmentation(
        dy=torch.tensor([0, 4, 2, 1, 4, 0]),
        dx=torch.tensor([0, 4, 1, 3, 0, 4]),
        flip=torch.tensor([False, True, True, False, True, False]),
    )
    loaded = cache.load(index, aug)
    assert torch.equal(loaded, reference_crop(original[index], aug, h, w))
    cache.store(index, aug, loaded)  # load -> store is the identity
    assert torch.equal(cache.canvas, original)
    new = -signed_asymmetric((6, c, h, w)) * 7
    cache.store(index, aug, new)
    assert torch.equal(cache.load(index, aug), new)  # store -> load is the identity
    for i, k in enumerate(index.tolist()):  # pixels the crop did not cover keep their values
        seen = torch.zeros(h + 2 * pad, w + 2 * pad, dtype=torch.bool)
        seen[int(aug.dy[i]) : int(aug.dy[i]) + h, int(aug.dx[i]) : int(aug.dx[i]) + w] = True
        assert torch.equal(cache.canvas[k][:, ~seen], original[k][:, ~seen])
        assert not torch.equal(cache.canvas[k][:, seen], original[k][:, seen])
    untouched = [k for k in range(10) if k not in index.tolist()]
    assert torch.equal(cache.canvas[untouched], original[untouched])


def test_atta_augment_matches_pad_crop_flip():
    cache = ATTACache(4, (3, 6, 6), pad=4, pad_value=0.5, generator=torch.Generator().manual_seed(1))
    x = torch.rand(4, 3, 6, 6)
    aug = cache.sample_augmentation(4)
    expected = reference_crop(F.pad(x, (4, 4, 4, 4), value=0.5), aug, 6, 6)
    assert torch.equal(cache.augment(x, aug), expected)


def test_atta_offsets_and_auto_compression():
    g = torch.Generator().manual_seed(0)
    tv = ATTACache(2, (3, 32, 32), generator=g).sample_augmentation(4000)
    au = ATTACache(2, (3, 32, 32), offsets="authors", generator=g).sample_augmentation(4000)
    assert tv.dy.min() == 0 and tv.dy.max() == 8 and au.dx.max() == 7
    assert 0.4 < tv.flip.float().mean() < 0.6
    assert ATTACache(2, (3, 32, 32)).compress == 1
    big = ATTACache(2, (3, 224, 224), eps=2 / 255)
    assert big.compress == 8 and big.canvas.shape == (2, 3, 29, 29)
    assert big.canvas.abs().max() <= 2 / 255


def test_atta_compressed_store_keeps_untouched_blocks():
    cache = ATTACache(3, (1, 224, 224), eps=EPS, generator=torch.Generator().manual_seed(0))
    original = cache.canvas.clone()
    aug = Augmentation(torch.tensor([0]), torch.tensor([8]), torch.tensor([True]))
    loaded = cache.load(torch.tensor([1]), aug)
    assert loaded.shape == (1, 1, 224, 224)
    assert torch.equal(loaded[0, 0, :8, -8:], original[1, 0, 0, 1].expand(8, 8))  # nearest-neighbour upsampling
    cache.store(torch.tensor([1]), aug, torch.full_like(loaded, 0.01))
    assert torch.equal(cache.canvas[1, 0, 28, :], original[1, 0, 28, :])  # rows 224..231 were not covered
    assert torch.equal(cache.canvas[1, 0, :, 0], original[1, 0, :, 0])  # columns 0..7 were not covered
    assert torch.allclose(cache.canvas[1, 0, :28, 1:], torch.full((28, 28), 0.01))
    assert torch.equal(cache.canvas[[0, 2]], original[[0, 2]])


def test_atta_perturb_carries_the_perturbation(linear_task):
    model, x, y = linear_task
    x, y = x[:16], y[:16]
    cache = ATTACache(100, (3, 8, 8), eps=EPS, pad=2, generator=torch.Generator().manual_seed(0))
    index = torch.arange(50, 66)
    x_adv, x_aug, aug = cache.perturb(model, x, y, index, step_size=4 / 255)
    assert torch.allclose(cache.load(index, aug), x_adv - x_aug, atol=0)
    assert ce(model, x_adv, y).mean() > ce(model, x_aug, y).mean()
    # the next epoch starts from the stored perturbation, not from a fresh random one
    start = cache.load(index, aug)
    x_adv2, _, _ = cache.perturb(model, x, y, index, aug=aug, step_size=4 / 255)
    step = (x_adv2 - x_aug) - start
    assert step.abs().max() <= 4 / 255 + 1e-6


# -- TRADES ---------------------------------------------------------------------------------


def test_trades_loss(linear_task):
    model, x, y = linear_task
    x, y = x[:32], y[:32]
    torch.manual_seed(0)
    loss, x_adv = trades_loss(model, x, y, beta=6.0)
    assert_in_ball(x_adv, x)
    clean = F.cross_entropy(model(x), y)
    assert loss.item() > clean.item()  # the KL term is positive at a maximiser
    kl = F.kl_div(F.log_softmax(model(x_adv), 1), F.softmax(model(x), 1), reduction="batchmean")
    assert loss.item() == pytest.approx(clean.item() + 6.0 * kl.item(), rel=1e-5)
    loss.backward()
    assert model[1].weight.grad is not None
    model.zero_grad()


# -- input checks ---------------------------------------------------------------------------


class CountingModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0
        self.lin = nn.Linear(12, 3)

    def forward(self, x):
        self.calls += 1
        return self.lin(x.flatten(1))


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda m, x, y: pgd_linf(m, x, y, eps=8), "divide by 255"),
        (lambda m, x, y: pgd_linf(m, x, y, step_size=2), "divide by 255"),
        (lambda m, x, y: pgd_linf(m, x, y, steps=0), "steps must be >= 1"),
        (lambda m, x, y: pgd_linf(m, x, y, eps=-0.1), "eps must be >= 0"),
        (lambda m, x, y: pgd_linf(m, x, y, bn_mode="training"), "unknown bn_mode"),
        (lambda m, x, y: pgd_linf(m, x * 255, y), r"pixels in \[0, 1\]"),
        (lambda m, x, y: fgsm_rs(m, x, y, eps=8), "divide by 255"),
        (lambda m, x, y: trades_adversary(m, x, steps=0), "steps must be >= 1"),
        (lambda m, x, y: make_attack("pgd20", eps=8 / 255), "unknown attack 'pgd20'"),
        (lambda m, x, y: make_attack("pgd", eps=8), "divide by 255"),
        (lambda m, x, y: robust_accuracy(m, [(x, y)], attack="cw"), "unknown attack 'cw'"),
        (lambda m, x, y: autoattack_accuracy(m, x, y, 8), "divide by 255"),
        (lambda m, x, y: autoattack_accuracy(m, x, y, EPS, attacks=("apgd-xx",)), "unknown AutoAttack component"),
        (lambda m, x, y: autoattack_accuracy(m, x, y, EPS, version="plus"), "unknown AutoAttack version"),
        (lambda m, x, y: ATTACache(4, (3, 2, 2), eps=8), "divide by 255"),
    ],
)
def test_bad_inputs_fail_before_any_work(call, match):
    model = CountingModel()
    x, y = torch.rand(2, 3, 2, 2), torch.tensor([0, 1])
    with pytest.raises(ValueError, match=match):
        call(model, x, y)
    assert model.calls == 0


def test_steps_must_be_an_integer():
    with pytest.raises(TypeError, match="steps must be an integer"):
        pgd_linf(CountingModel(), torch.rand(2, 3, 2, 2), torch.tensor([0, 1]), steps=2.5)
