"""The library on a CUDA GPU: the same masks, gradients and batches as on the CPU, and a training run.

Every test here is marked ``cuda`` and skips cleanly on a machine without a CUDA GPU
(``python -m pytest -m cuda tests`` selects them; ``python tools/gpu_check.py`` runs them
together with the notebooks and benchmarks on a GPU machine). The CPU result is computed in
the same test and is the reference: CUDA must not change which edges are real, where the
gradient goes, or the data a seed produces.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from rewire.data import BatchLoader, crop_and_flip
from rewire.methods import apply_method
from rewire.models import SmallConvNet
from rewire.sparse.masks import TopKMagnitude, current_mask, sparse_modules, sparsify
from rewire.train.runtime import Seeds, pick_device
from rewire.train.trainer import Trainer, TrainingHparams

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not torch.cuda.is_available(), reason="no CUDA GPU present (run tools/gpu_check.py on a GPU machine)"
    ),
]

CUDA = torch.device("cuda")
CPU = torch.device("cpu")

# A small signed, asymmetric (4 x 5) weight. |w| ranks, largest first:
#   -0.9 (1,3)  0.8 (0,1)  -0.7 (3,0)  0.6 (2,4)  then a tie at 0.5: +0.5 (0,4), -0.5 (2,2), +0.5 (3,3)
# With k = 6 the k-th value is tied three ways and topk_mask fills the two free places with the
# lowest flat indices, (0,4) = 4 and (2,2) = 12, on every device; (3,3) = 18 stays hallucinated.
WEIGHT = [
    [0.10, 0.80, -0.20, 0.05, 0.50],
    [-0.30, 0.00, 0.25, -0.90, 0.15],
    [0.40, -0.35, -0.50, 0.01, 0.60],
    [-0.70, 0.20, -0.45, 0.50, -0.02],
]
K = 6
EXPECTED_REAL = {(1, 3), (0, 1), (3, 0), (2, 4), (0, 4), (2, 2)}
INPUTS = [[1.0, -2.0, 0.5, 3.0, -1.5], [0.25, 0.75, -1.0, 2.0, 0.5], [-0.5, 1.5, 2.5, -3.0, 1.0]]
OUTPUT_WEIGHTS = [[1.0, -1.0, 2.0, 0.5], [-0.5, 3.0, 1.0, -2.0], [2.0, 0.25, -1.0, 1.5]]  # dL/dy: not symmetric


def expected_mask() -> torch.Tensor:
    mask = torch.zeros(4, 5, dtype=torch.bool)
    for row, col in EXPECTED_REAL:
        mask[row, col] = True
    return mask


def sparse_linear_pass(
    device: torch.device, route: str, allowed: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """One forward/backward through a sparsified ``nn.Linear(5, 4)`` (float64) on ``device``; CPU copies back."""
    layer = nn.Linear(5, 4, dtype=torch.float64).to(device)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(WEIGHT, dtype=torch.float64))
        layer.bias.copy_(torch.tensor([0.1, -0.2, 0.3, -0.4], dtype=torch.float64))
    sparsify(layer, "weight", selector=TopKMagnitude(K, allowed), route=route)
    x = torch.tensor(INPUTS, dtype=torch.float64, device=device, requires_grad=True)
    c = torch.tensor(OUTPUT_WEIGHTS, dtype=torch.float64, device=device)
    out = layer(x)
    (out * c).sum().backward()
    original = layer.parametrizations.weight.original
    mask = current_mask(layer)
    assert mask.device.type == device.type and original.grad.device.type == device.type
    return {
        "mask": mask.cpu(),
        "grad": original.grad.cpu(),
        "input_grad": x.grad.cpu(),
        "out": out.detach().cpu(),
        "effective": layer.weight.detach().cpu(),
    }


@pytest.mark.parametrize("route", ["straight_through", "masked"])
def test_mask_and_gradients_on_cuda_equal_cpu(route):
    cpu, cuda = sparse_linear_pass(CPU, route), sparse_linear_pass(CUDA, route)
    mask = expected_mask()
    assert torch.equal(cuda["mask"], mask) and torch.equal(cpu["mask"], mask)  # tie at 0.5 broken by index on both
    assert int(cuda["mask"].sum()) == K
    for key in ("grad", "input_grad", "out", "effective"):
        torch.testing.assert_close(cuda[key], cpu[key], rtol=1e-12, atol=1e-12, msg=f"{key} differs on CUDA ({route})")
    # The routes themselves (DNW Algorithm 1 line 10 vs the "no update rule" ablation), checked on CUDA:
    dense_grad = torch.tensor(OUTPUT_WEIGHTS, dtype=torch.float64).t() @ torch.tensor(INPUTS, dtype=torch.float64)
    expected = dense_grad if route == "straight_through" else torch.where(mask, dense_grad, torch.zeros(()).double())
    torch.testing.assert_close(cuda["grad"], expected, rtol=1e-12, atol=1e-12)
    assert (cuda["grad"][~mask] != 0).any() == (route == "straight_through")  # hallucinated edges get a gradient or not
    # Only real edges carry the forward pass, hence the input gradient too.
    effective = torch.where(mask, torch.tensor(WEIGHT, dtype=torch.float64), torch.zeros(()).double())
    torch.testing.assert_close(cuda["effective"], effective, rtol=0, atol=0)
    torch.testing.assert_close(
        cuda["input_grad"], torch.tensor(OUTPUT_WEIGHTS, dtype=torch.float64) @ effective, rtol=1e-12, atol=1e-12
    )


def test_allowed_entries_given_on_cpu_are_honoured_on_cuda():
    allowed = torch.ones(4, 5, dtype=torch.bool)
    allowed[1, 3] = allowed[0, 1] = False  # the two largest |w| may not be real edges
    cpu, cuda = (
        sparse_linear_pass(CPU, "straight_through", allowed),
        sparse_linear_pass(CUDA, "straight_through", allowed),
    )
    assert torch.equal(cuda["mask"], cpu["mask"])
    assert not cuda["mask"][1, 3] and not cuda["mask"][0, 1] and int(cuda["mask"].sum()) == K
    assert cuda["grad"][1, 3] == 0 and cuda["grad"][0, 1] == 0  # no gradient outside the allowed entries
    torch.testing.assert_close(cuda["grad"], cpu["grad"], rtol=1e-12, atol=1e-12)


def dnw_trajectory(device: torch.device, method: str, steps: int = 6) -> tuple[list[torch.Tensor], torch.Tensor]:
    """``apply_method(.., method)`` on a float64 ``nn.Linear(12, 8)`` trained by SGD on fixed data; masks per step."""
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(8, 12, generator=g, dtype=torch.float64) * 0.3
    x = torch.randn(32, 12, generator=g, dtype=torch.float64)
    target = torch.randn(32, 8, generator=g, dtype=torch.float64)
    layer = nn.Linear(12, 8, bias=False, dtype=torch.float64).to(device)
    with torch.no_grad():
        layer.weight.copy_(weight)
    apply_method(layer, method, k=30, targets=("weight",))
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.5)
    x, target = x.to(device), target.to(device)
    masks = []
    for _ in range(steps):
        loss = ((layer(x) - target) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        masks.append(current_mask(layer, recompute=True).cpu())
    return masks, layer.parametrizations.weight.original.detach().cpu()


@pytest.mark.parametrize("method", ["dnw", "dnw_no_update"])
def test_apply_method_training_trajectory_on_cuda_equals_cpu(method):
    cpu_masks, cpu_weight = dnw_trajectory(CPU, method)
    cuda_masks, cuda_weight = dnw_trajectory(CUDA, method)
    for step, (a, b) in enumerate(zip(cpu_masks, cuda_masks)):
        assert torch.equal(a, b), f"{method}: the mask after step {step + 1} differs between CPU and CUDA"
        assert int(b.sum()) == 30
    torch.testing.assert_close(cuda_weight, cpu_weight, rtol=1e-9, atol=1e-12)
    if method == "dnw":  # hallucinated edges receive the gradient, so the edge set changes while training
        assert any(not torch.equal(cuda_masks[0], m) for m in cuda_masks[1:])


def test_pick_device_returns_cuda():
    assert pick_device().type == "cuda"
    assert pick_device("cuda") == torch.device("cuda")
    assert pick_device("cpu").type == "cpu"  # an explicit choice still wins


def synthetic_images(n: int = 48, size: int = 8, classes: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(n // classes)
    images = (
        (torch.randint(0, 128, (labels.numel(), 3, size, size), generator=g) + 30 * labels[:, None, None, None])
        .clamp(0, 255)
        .to(torch.uint8)
    )
    return images, labels


MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)


def test_batch_loader_augments_on_cuda_like_on_cpu():
    images, labels = synthetic_images()
    kwargs = dict(shuffle=True, augment=True, mean=MEAN, std=STD, order_seed=3, augmentation_seed=5, crop_padding=2)
    on_cuda = BatchLoader(images, labels, 10, device="cuda", **kwargs)
    on_cpu = BatchLoader(images, labels, 10, device="cpu", **kwargs)
    assert on_cuda.images.device.type == "cuda" and on_cuda.labels.device.type == "cuda"  # moved once, up front
    for _epoch in range(2):
        batches = list(on_cuda)
        reference = list(on_cpu)
        assert len(batches) == len(reference) == 5
        for (x, y), (x_ref, y_ref) in zip(batches, reference):
            assert x.device.type == "cuda" and y.device.type == "cuda"
            assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape[1:] == (3, 8, 8)
            assert torch.equal(y.cpu(), y_ref)  # same order from the same CPU generator
            torch.testing.assert_close(x.cpu(), x_ref)  # same crops and flips; normalisation within float32 rounding


def test_crop_and_flip_on_cuda_is_exact():
    images, _ = synthetic_images(n=8)
    top = torch.tensor([0, 4, 2, 1, 3, 0, 4, 2])
    left = torch.tensor([4, 0, 2, 3, 1, 1, 0, 2])
    flip = torch.tensor([True, False, True, True, False, False, True, False])
    out = crop_and_flip(images.cuda(), top.cuda(), left.cuda(), flip.cuda(), padding=2)
    assert out.device.type == "cuda" and out.dtype == torch.uint8
    assert torch.equal(out.cpu(), crop_and_flip(images, top, left, flip, padding=2))
    identity = crop_and_flip(
        images.cuda(), torch.full((8,), 2), torch.full((8,), 2), torch.zeros(8, dtype=torch.bool), 2
    )
    assert torch.equal(identity.cpu(), images)


@pytest.mark.parametrize("method", ["dense", "dnw"])
def test_trainer_one_epoch_on_cuda(tmp_path, method):
    device = pick_device()
    images, labels = synthetic_images(n=64)
    seeds = Seeds.from_run_seed(0)
    torch.manual_seed(seeds.model)
    model = SmallConvNet(num_classes=4, width=4).to(device)
    if method == "dnw":  # a sparse layer applied after the move, as the notebooks do
        classifier = model.classifier.weight
        apply_method(model, "dnw", k=classifier.numel() // 2, targets=("classifier.weight",))
    train = BatchLoader(
        images,
        labels,
        16,
        shuffle=True,
        augment=True,
        mean=MEAN,
        std=STD,
        device=device,
        order_seed=seeds.data_order,
        augmentation_seed=seeds.augmentation,
        drop_last=True,
    )
    test = BatchLoader(images, labels, 32, shuffle=False, augment=False, mean=MEAN, std=STD, device=device)
    hparams = TrainingHparams(epochs=1, lr=0.05, momentum=0.9, weight_decay=5e-4, schedule="cosine")
    trainer = Trainer(model, hparams, train, test, run_dir=tmp_path / "run", progress=False)
    history = trainer.fit()
    final = history.final
    assert trainer.global_step == 4 and final["epoch"] == 1
    assert math.isfinite(final["train_loss"]) and final["train_loss"] > 0
    assert math.isfinite(final["test_loss"]) and 0.0 <= final["test_top1"] <= 100.0
    assert all(p.device.type == "cuda" for p in model.parameters())
    assert all(b.device.type == "cuda" for b in model.buffers())  # BN statistics and masks stay on the GPU
    if method == "dnw":
        ((_, _, parametrization),) = list(sparse_modules(model))
        assert parametrization.mask.device.type == "cuda" and int(parametrization.mask.sum()) == classifier.numel() // 2
    state = torch.load(tmp_path / "run" / Trainer.CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    assert state["epoch"] == 1 and state["global_step"] == 4
