"""ImageNet-100 in memory as the authors' recipe has it (issue 19, point 5): test images ``Resize(256)`` +
``CenterCrop(224)``, training ``RandomResizedCrop(224)`` + flip, and the fast training's ATTA perturbation aligned
with the crop. On generated image folders (the real data is not on this machine)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from rewire.data.imagefolder.in_memory import (
    RandomResizedCropLoader,
    centre_crop,
    draw_crop_boxes,
    paste_resized,
)
from rewire.experiments.robust_binary import runs
from rewire.experiments.robust_binary.callbacks import FastATTATraining, IndexedBatchLoader, ResizedCropATTACache
from rewire.experiments.robust_binary.config import Config
from rewire.experiments.schema import ConfigError

EPS = 2 / 255  # the paper's ImageNet-100 budget


def smooth_image(width: int, height: int, seed: int) -> np.ndarray:
    """A signed, asymmetric, position-revealing RGB image: ramps in x and y of different slopes and a smooth wave
    (a shift of one pixel changes it by more than the bilinear filter's rounding)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    phase = seed * 0.7
    red = 40 + 150 * x / width + 30 * np.sin(x / 7 + phase)
    green = 220 - 160 * y / height + 25 * np.cos(y / 9 - phase)
    blue = 128 + 60 * np.sin((x + 2 * y) / 11 + phase)
    return np.clip(np.stack([red, green, blue], -1), 0, 255).round().astype(np.uint8)


def write_folder(root, sizes_by_split: dict[str, list[tuple[int, int]]], classes=("n01", "n02")) -> dict:
    """root/{train,val}/<class>/<i>.png (lossless) of :func:`smooth_image`; returns {split: [PIL images]}."""
    made: dict[str, list[Image.Image]] = {}
    seed = 0
    for split, sizes in sizes_by_split.items():
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True)
            for i, (w, h) in enumerate(sizes):
                image = Image.fromarray(smooth_image(w, h, seed))
                image.save(folder / f"{i}.png")
                made.setdefault(split, []).append(image)
                seed += 1
    return made


def imagenet_config(archive, **fields) -> Config:
    block = {"dataset": "imagenet100", "data_archive": str(archive), "image_size": 256, "crop_size": 224,
             "train_per_class": 0, "test_per_class": 0, "validation_fraction": 0.25, "eps_255": 2, "step_255": 0.5,
             "rows": [{"name": "ours_p01", "p": 0.1, "training": "fast", "fast_step_255": 1},
                      {"name": "vanilla_p01", "p": 0.1, "training": "clean"}], **fields}  # fmt: skip
    return Config.from_values(block, where="test")


def torchvision_eval(image: Image.Image) -> torch.Tensor:
    """torchvision's ``Resize(256)`` + ``CenterCrop(224)`` on a PIL image, uint8 CHW."""
    resized = TF.center_crop(TF.resize(image, [256], TF.InterpolationMode.BILINEAR), [224, 224])
    return torch.from_numpy(np.array(resized)).permute(2, 0, 1)


# ------------------------------------------------------------------------------------------------- testing


# (width, height): 400 x 300 resizes to 341 x 256; the stored square's left is floor(85 / 2) = 42 and its 224
# crop's 42 + 16 = 58 = torchvision's round(117 / 2) (58.5 rounds half to even). 300 x 420 -> 256 x 358: top
# 51 + 16 = 67 = round(134 / 2). 256 x 256 needs no resize.
@pytest.mark.parametrize("size", [(400, 300), (300, 420), (256, 256)])
def test_test_images_are_torchvisions_resize_256_and_centre_crop_224(tmp_path, size):
    made = write_folder(tmp_path / "raw", {"train": [(300, 260)] * 2, "val": [size] * 2})
    data, validation, full = runs.load_data(imagenet_config(tmp_path / "raw"), tmp_path / "data")
    assert tuple(full.test_images.shape[1:]) == (3, 256, 256)  # the cache stores the short-side-256 centre square
    assert tuple(data.test_images.shape[1:]) == (3, 224, 224) and tuple(data.train_images.shape[1:]) == (3, 256, 256)
    assert tuple(validation.test_images.shape[1:]) == (3, 224, 224)  # the held-out part is tested the same way
    expected = [torchvision_eval(image) for image in made["val"]]
    for label, stored in zip(data.test_labels.tolist(), data.test_images):
        # same PIL bilinear resize and the same centre: equal to the pixel (tolerance 1 for the filter's rounding)
        closest = min(range(len(expected)), key=lambda i: (stored.int() - expected[i].int()).abs().max().item())
        assert (stored.int() - expected[closest].int()).abs().max() <= 1 and closest // 2 == label
    assert runs.subset_settings(imagenet_config(tmp_path / "raw"))["crop_size"] == 224


def test_an_odd_half_is_centred_as_torchvision_centres_it(tmp_path):
    """402 x 300 resizes to 343 x 256: torchvision's CenterCrop(224) of it starts at round(119 / 2) = 60 (half to
    even); the cache keeps the square at round(87 / 2) = 44 and the crop at 44 + 16 = 60 (a floor would give 59)."""
    made = write_folder(tmp_path / "raw", {"train": [(300, 260)] * 2, "val": [(402, 300)]}, classes=("n01",))
    data, _, _ = runs.load_data(imagenet_config(tmp_path / "raw", validation_fraction=0.5), tmp_path / "data")
    resized = TF.resize(made["val"][0], [256], TF.InterpolationMode.BILINEAR)
    assert resized.size == (343, 256)
    wide = torch.from_numpy(np.array(resized)).permute(2, 0, 1)
    assert torch.equal(data.test_images[0], wide[:, 16:240, 60:284])
    assert torch.equal(data.test_images[0], torchvision_eval(made["val"][0]))


def test_centre_crop_cuts_the_middle_and_a_crop_larger_than_the_images_is_refused():
    images = torch.arange(2 * 3 * 8 * 10, dtype=torch.int64).reshape(2, 3, 8, 10).to(torch.uint8)
    assert torch.equal(centre_crop(images, 4), images[..., 2:6, 3:7])
    with pytest.raises(ValueError, match="crop size must lie in"):
        centre_crop(images, 9)


def test_a_crop_size_above_the_image_size_is_refused_naming_both_fields(tmp_path):
    with pytest.raises(ConfigError, match="'crop_size': 300 needs image_size >= crop_size.*e.g. image_size: 256"):
        imagenet_config(tmp_path, crop_size=300)
    with pytest.raises(ConfigError, match="'crop_size'"):
        imagenet_config(tmp_path, image_size=0)


# ------------------------------------------------------------------------------------------------ training


def test_random_resized_crop_boxes_cover_torchvisions_scale_and_aspect_ranges():
    boxes = draw_crop_boxes(3000, 256, 256, torch.Generator().manual_seed(0))
    area = (boxes.height * boxes.width).double() / 256**2
    aspect = boxes.width.double() / boxes.height.double()
    # the boxes' sides are rounded to pixels: their area and aspect within a pixel of the ranges
    assert area.min() >= 0.08 - 2 / 256 and area.max() <= 1
    assert aspect.min() >= 3 / 4 - 1 / 40 and aspect.max() <= 4 / 3 + 1 / 40
    # the ranges are used, not a corner of them: small and whole-image boxes, tall and wide ones
    assert area.min() < 0.1 and area.max() > 0.95 and aspect.min() < 0.78 and aspect.max() > 1.28
    assert (boxes.top + boxes.height).max() <= 256 and (boxes.left + boxes.width).max() <= 256
    assert 1400 <= int(boxes.flip.sum()) <= 1600  # p = 0.5: 1500 +- 3.7 standard deviations of 27


def test_the_training_loader_yields_224_crops_of_its_drawn_boxes(tmp_path):
    images = torch.stack([torch.from_numpy(smooth_image(256, 256, s)).permute(2, 0, 1) for s in range(12)])
    labels = torch.arange(12) % 3
    loader = RandomResizedCropLoader(images, labels, 5, shuffle=True, augment=True, mean=(0,) * 3, std=(1,) * 3,
                                     order_seed=3, augmentation_seed=4, crop_size=224)  # fmt: skip
    boxes = draw_crop_boxes(12, 256, 256, torch.Generator().manual_seed(4))  # the loader's first epoch's draws
    seen, start = 0, 0
    for x, y in loader:
        assert tuple(x.shape[1:]) == (3, 224, 224)
        for k, index in enumerate(loader.last_index.tolist()):
            top, left, h, w = (int(v[start + k]) for v in (boxes.top, boxes.left, boxes.height, boxes.width))
            expected = TF.resized_crop(images[index].float() / 255, top, left, h, w, [224, 224],
                                       TF.InterpolationMode.BILINEAR, antialias=False)  # fmt: skip
            expected = TF.hflip(expected) if boxes.flip[start + k] else expected
            assert torch.allclose(x[k], expected, atol=1e-4) and y[k] == labels[index]
            seen += 1
        start += x.shape[0]
    assert seen == 12 and len({(int(h), int(w)) for h, w in zip(boxes.height, boxes.width)}) > 6


@pytest.mark.parametrize("row", ["ours_p01", "vanilla_p01"])
def test_an_imagenet100_run_trains_on_224_crops_of_the_256_images_and_tests_the_centre_crops(
    tmp_path, monkeypatch, row
):
    from rewire.experiments.engine import RunContext

    write_folder(tmp_path / "raw", {"train": [(300, 260)] * 4, "val": [(280, 256)]})
    config = imagenet_config(tmp_path / "raw", model="resnet34_imagenet", widths=[2, 2, 2, 2], batch_size=2,
                             validation_images=2, test_images=2)  # fmt: skip
    data, validation, _ = runs.load_data(config, tmp_path / "data")
    ctx = RunContext(data, torch.device("cpu"), 2, tmp_path / "ck", eval_batch_size=2, progress=False,
                     validation=validation, code=(runs.RUNS_MODULE,))  # fmt: skip
    setup = config.row(row)
    run_ctx = runs.PixelRunContext.for_row(ctx, setup, crop_size=224)
    train, test = run_ctx.loaders(0)
    fast = setup.training == "fast"
    assert isinstance(train, IndexedBatchLoader if fast else RandomResizedCropLoader)
    assert tuple(next(iter(train))[0].shape[1:]) == ((3, 256, 256) if fast else (3, 224, 224))  # fast: crops in ATTA
    assert tuple(next(iter(test))[0].shape[1:]) == (3, 224, 224)
    seen_shapes = []
    original_forward = torch.nn.Conv2d.forward

    def recording_forward(self, x):
        if self.in_channels == 3:
            seen_shapes.append(tuple(x.shape[-2:]))
        return original_forward(self, x)

    monkeypatch.setattr(torch.nn.Conv2d, "forward", recording_forward)
    result = runs.run_one(ctx, setup, 0, name=row, subset=runs.subset_settings(config))
    assert seen_shapes and set(seen_shapes) == {(224, 224)}  # training, attacks, validation and test: all 224
    assert result.final["test_images_attacked"] == 2


# ---------------------------------------------------------------------------------------------------- ATTA


def _ramp_images(n: int, size: int) -> torch.Tensor:
    """Pixels in [0, 1] linear in x and y, different per image and channel: bilinear resampling is exact on them."""
    y, x = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    planes = [(0.1 + 0.8 * (a * x + b * y) / (size * (a + b))) for a, b in ((3, 1), (1, 2), (2, 5))]
    return torch.stack([torch.stack(planes)[[(c + i) % 3 for c in range(3)]] for i in range(n)])


def test_atta_loads_the_perturbation_of_the_same_box_and_flip_as_the_image():
    images = _ramp_images(4, 64)
    cache = ResizedCropATTACache(4, (3, 64, 64), crop_size=48, eps=EPS, compress=1,
                                 generator=torch.Generator().manual_seed(0))  # fmt: skip
    cache.canvas = EPS * (2 * images - 1)  # δ a function of the pixel: the crop of δ must be that of the image
    index = torch.tensor([2, 0, 3, 1])
    aug = cache.sample_augmentation(4)
    assert bool(aug.flip.any()) and not bool(aug.flip.all())
    cropped = cache.augment(images[index], aug)
    assert tuple(cropped.shape) == (4, 3, 48, 48)
    assert torch.allclose(cache.load(index, aug), EPS * (2 * cropped - 1), atol=1e-7)
    with pytest.raises(ValueError, match="crop_size must be an integer in \\[1, 64\\]"):
        ResizedCropATTACache(4, (3, 64, 64), crop_size=65, eps=EPS)


def test_atta_writes_the_perturbation_back_onto_its_box_and_leaves_the_rest():
    images = _ramp_images(3, 64)
    generator = torch.Generator().manual_seed(1)
    cache = ResizedCropATTACache(3, (3, 64, 64), crop_size=48, eps=EPS, compress=1, generator=generator)
    before = cache.canvas.clone()
    index = torch.tensor([1, 2, 0])
    aug = cache.sample_augmentation(3)
    delta = EPS * (2 * cache.augment(images[index], aug) - 1)  # in crop coordinates
    cache.store(index, aug, delta)
    _, seen = paste_resized(delta, aug, 64, 64)
    for k, i in enumerate(index.tolist()):
        inside = seen[k, 0]
        top, left, h, w = (int(v[k]) for v in (aug.top, aug.left, aug.height, aug.width))
        interior = torch.zeros_like(inside)
        interior[top + 2 : top + h - 2, left + 2 : left + w - 2] = True
        error = (cache.canvas[i] - EPS * (2 * images[i] - 1)).abs()
        assert error[:, interior].max() < 1e-6  # on the box, back where the image's pixels were (flip undone)
        assert torch.equal(cache.canvas[i][:, ~inside], before[i][:, ~inside])  # off the box: untouched
        assert inside.sum() == h * w
    assert cache.canvas.abs().max() <= EPS + 1e-7


def test_imagenet_fast_training_caches_at_an_eighth_of_256_and_returns_224_adversarial_crops():
    images = (_ramp_images(4, 256) * 255).round().to(torch.uint8)
    loader = IndexedBatchLoader(images, torch.tensor([0, 1, 0, 1]), 2, shuffle=False, augment=False,
                                mean=(0,) * 3, std=(1,) * 3)  # fmt: skip
    setup = Config.from_values({"eps_255": 2, "step_255": 0.5}).resolved(
        Config.from_values({"rows": [{"name": "f", "training": "fast", "fast_step_255": 1}]}).rows[0]
    )
    callback = FastATTATraining(setup, loader, seed=0, crop_size=224)
    assert isinstance(callback.cache, ResizedCropATTACache) and tuple(callback.cache.canvas.shape) == (4, 3, 32, 32)
    model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(48, 2))
    before = callback.cache.canvas.clone()
    x, y = next(iter(loader))
    adversarial, _ = callback.on_batch_start(type("T", (), {"model": model})(), x, y)
    assert tuple(adversarial.shape) == (2, 3, 224, 224) and adversarial.min() >= 0 and adversarial.max() <= 1
    assert not torch.equal(callback.cache.canvas[:2], before[:2]) and torch.equal(callback.cache.canvas[2:], before[2:])
    assert callback.cache.canvas.abs().max() <= EPS + 1e-7


def test_cifar_fast_training_keeps_the_padded_canvas_cache():
    images = torch.zeros(4, 3, 32, 32, dtype=torch.uint8)
    loader = IndexedBatchLoader(images, torch.zeros(4, dtype=torch.long), 2, shuffle=False, augment=False,
                                mean=(0,) * 3, std=(1,) * 3)  # fmt: skip
    setup = Config.from_values({"rows": [{"name": "f", "training": "fast"}]}).resolved_rows()[0]
    cache = FastATTATraining(setup, loader, seed=0).cache
    assert type(cache).__name__ == "ATTACache" and tuple(cache.canvas.shape) == (4, 3, 40, 40)
    assert "crop_size" not in runs.subset_settings(Config.from_values({}))
