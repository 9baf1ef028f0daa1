"""rewire.data.imagefolder: the ImageNet-style streaming loader (layout checks, DNW transforms, seeds, shards).

Every folder is synthetic, written into tmp_path with PIL: 3 classes x 6 train + 2 val images of 40x48
(width x height). Two kinds of pixels are used: random texture (the augmentation shows in the pixels)
and one constant colour per image (crops and flips keep the colour, so a batch row names its image).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch.utils.data import DistributedSampler
from torchvision.transforms import RandomResizedCrop

from rewire.data import IMAGENET_MEAN, IMAGENET_STD, DataNotFoundError
from rewire.data.imagefolder import (
    EvalTransform,
    ImageFolderLayoutError,
    ImageFolderLoader,
    TrainAugmentation,
    image_folder_loaders,
    random_resized_crop_box,
    read_class_list,
    scan_image_folder,
)
from rewire.train.trainer import Callback, Trainer, TrainingHparams

# Created in this (unsorted) order on purpose: the labels must follow the sorted names.
CLASSES = ("zebra", "ant", "mole")
SORTED = ("ant", "mole", "zebra")
WIDTH, HEIGHT = 40, 48
MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def colour_of(number: int) -> tuple[int, int, int]:
    """A distinct, channel-asymmetric RGB colour for image ``number`` (0..23)."""
    return (10 * number + 5, 250 - 7 * number, (37 * number) % 256)


def make_folder(root, *, constant: bool, train: int = 6, val: int = 2, classes=CLASSES):
    """root/{train,val}/<class>/ images; JPEG and PNG mixed in train (an upper-case .JPEG too), PNG in val.

    With ``constant`` every image is one colour (PNG only, lossless), numbered in sorted class order
    and file order (train first): ``colour_of(number)``. Returns ``{colour: (split, label)}``.
    """
    rng = np.random.default_rng(0)
    identities = {}
    number = 0
    for split, count in (("train", train), ("val", val)):
        for label, name in sorted(enumerate(sorted(classes)), key=lambda pair: pair[1]):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                if constant:
                    pixels = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
                    pixels[:] = colour_of(number)
                    identities[colour_of(number)] = (split, label)
                    number += 1
                    file_name = f"img{i}.png"
                else:
                    pixels = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
                    file_name = f"img{i}." + ("png" if split == "val" else ("jpg", "png", "JPEG")[i % 3])
                Image.fromarray(pixels).save(folder / file_name)
    # neither a non-image file nor a hidden file is an image
    (root / "train" / sorted(classes)[0] / "notes.txt").write_text("not an image")
    (root / "train" / sorted(classes)[0] / ".hidden.jpg").write_bytes(b"")
    return identities


def snapshot(path):
    return sorted((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*"))


def identify(images: torch.Tensor, identities) -> list[tuple[int, int, int]]:
    """The colour of each (constant) image in a normalised batch, checked to be one of ``identities``."""
    pixels = torch.round((images * STD + MEAN) * 255)
    colours = []
    for row in pixels:
        colour = tuple(int(v) for v in row[:, 0, 0])
        assert torch.all(row == row[:, :1, :1]), "a constant image stayed constant"
        assert colour in identities
        colours.append(colour)
    return colours


def epoch_of(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in loader]


# ----------------------------------------------------------------------------- layout and labels


def test_classes_are_the_sorted_train_folders_and_the_source_names_no_path(tmp_path):
    root = tmp_path / "imagenet-mini"
    make_folder(root, constant=False)
    index = scan_image_folder(root)
    assert index.classes == SORTED
    for split, per_class in (("train", 6), ("val", 2)):
        files = [os.fsdecode(f) for f in index.files[split]]
        assert len(files) == 3 * per_class  # notes.txt and .hidden.jpg are not images; .JPEG is
        for path, label in zip(files, index.labels[split].tolist()):
            assert path.split("/")[:2] == [split, SORTED[label]]
        assert index.labels[split].tolist() == [0] * per_class + [1] * per_class + [2] * per_class
    assert "train/ant/img2.JPEG" in [os.fsdecode(f) for f in index.files["train"]]
    source = index.source
    assert source["origin"] == "ImageFolder directory imagenet-mini"
    assert source["counts"] == {"train": 18, "val": 6}
    assert source["classes"] == list(SORTED) and source["class_list"] is None
    assert str(tmp_path) not in json.dumps(source)


def test_class_subset_relabels_in_the_given_order_from_a_list_and_from_a_file(tmp_path):
    root = tmp_path / "data"
    identities = make_folder(root, constant=True)
    listed = scan_image_folder(root, classes=["zebra", "ant"])
    listing = tmp_path / "imagenet100.txt"
    listing.write_text("# the subset\nzebra\n\n  ant  \n")
    from_file = scan_image_folder(root, classes=listing)
    for index in (listed, from_file):
        assert index.classes == ("zebra", "ant")
        for split, per_class in (("train", 6), ("val", 2)):
            files = [os.fsdecode(f) for f in index.files[split]]
            assert [f.split("/")[1] for f in files] == ["zebra"] * per_class + ["ant"] * per_class
            assert index.labels[split].tolist() == [0] * per_class + [1] * per_class
    assert listed.source["class_list"] == "a list"
    assert from_file.source["class_list"] == "file imagenet100.txt"
    assert from_file.source["counts"] == {"train": 12, "val": 4}
    # through the loader: the val images of zebra (now label 0) come first, then ant's (label 1)
    loader = ImageFolderLoader(root, "val", 4, classes=listing, resize_size=40, crop_size=40)
    [(images, labels)] = list(loader)
    assert labels.tolist() == [0, 0, 1, 1]
    folder_of = [(split, SORTED[label]) for split, label in (identities[c] for c in identify(images, identities))]
    assert folder_of == [("val", "zebra")] * 2 + [("val", "ant")] * 2


def test_class_list_mistakes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="repeats"):
        read_class_list(["ant", "mole", "ant"])
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    with pytest.raises(ValueError, match="names no class"):
        read_class_list(empty)
    with pytest.raises(FileNotFoundError, match="one-element list"):
        read_class_list(tmp_path / "absent.txt")


def _missing_root(root):
    return root / "nowhere"


def _root_is_a_file(root):
    root.mkdir()
    (root / "file").write_text("x")
    return root / "file"


def _without(split):
    def build(root):
        make_folder(root, constant=True, train=1, val=1)
        for path in sorted((root / split).rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        (root / split).rmdir()
        return root

    return build


def _no_class_folders(root):
    make_folder(root, constant=True, train=1, val=1)
    for name in CLASSES:
        for path in (root / "train" / name).iterdir():
            path.unlink()
        (root / "train" / name).rmdir()
    (root / "train" / "README.txt").write_text("images go in class folders")
    return root


def _empty_class(root):
    make_folder(root, constant=True, train=1, val=1)
    for path in (root / "train" / "mole").iterdir():
        path.unlink()
    (root / "train" / "mole" / "list.txt").write_text("no images here")
    return root


def _val_has_an_extra_class(root):
    make_folder(root, constant=True, train=1, val=1)
    (root / "val" / "owl").mkdir()
    Image.new("RGB", (8, 8)).save(root / "val" / "owl" / "a.png")
    return root


def _val_lacks_a_class(root):
    make_folder(root, constant=True, train=1, val=1)
    (root / "val" / "zebra" / "img0.png").unlink()
    (root / "val" / "zebra").rmdir()
    return root


@pytest.mark.parametrize(
    "build, classes, expected",
    [
        (_missing_root, None, "the root folder does not exist"),
        (_root_is_a_file, None, "the root folder is a file, not a directory"),
        (_without("train"), None, "- train/ is missing"),
        (_without("val"), None, "- val/ is missing"),
        (_no_class_folders, None, "- train/ holds no class folders"),
        (_empty_class, None, "- class folders in train/ without image files: mole"),
        (_val_has_an_extra_class, None, "- val/ has class folders that train/ lacks: owl"),
        (_val_lacks_a_class, None, "- train/ has class folders that val/ lacks: zebra"),
        (_val_has_an_extra_class, ["ant", "owl"], "- requested classes missing from train/: owl"),
    ],
    ids=[
        "missing-root",
        "root-file",
        "no-train",
        "no-val",
        "no-classes",
        "empty-class",
        "val-extra",
        "val-lacks",
        "unknown-class",
    ],
)
def test_malformed_layouts_give_one_error_with_the_expected_tree_and_write_nothing(tmp_path, build, classes, expected):
    root = build(tmp_path / "root")
    before = snapshot(tmp_path)
    for make in (
        lambda: scan_image_folder(root, classes),
        lambda: ImageFolderLoader(root, "train", 2, classes=classes),
    ):
        with pytest.raises(ImageFolderLayoutError) as caught:
            make()
        message = str(caught.value)
        assert isinstance(caught.value, DataNotFoundError)
        assert expected in message
        assert "expected layout" in message and "    train/\n      <class_a>/" in message and "    val/\n" in message
        assert "found:" in message
    assert snapshot(tmp_path) == before


def test_every_problem_is_reported_at_once(tmp_path):
    root = _empty_class(tmp_path / "root")
    for path in (root / "val").rglob("*.png"):
        path.unlink()
    message = str(pytest.raises(ImageFolderLayoutError, scan_image_folder, root).value)
    assert "class folders in train/ without image files: mole" in message
    assert "class folders in val/ without image files: ant, mole, zebra" in message
    assert "train/: 3 class folders (ant, mole, zebra)" in message and "train/: 2 images" in message


# ----------------------------------------------------------------------------- transforms and batches


def test_batches_have_the_crop_size_and_constant_images_normalise_to_the_hand_value(tmp_path):
    identities = make_folder(tmp_path, constant=True)
    train = ImageFolderLoader(tmp_path, "train", 4, crop_size=16, resize_size=24)
    val = ImageFolderLoader(tmp_path, "val", 4, crop_size=16, resize_size=24)
    assert (len(train), len(val)) == (4, 2)  # 18 // 4 with drop_last; ceil(6 / 4)
    seen = []
    for loader, sizes in ((train, [4, 4, 4, 4]), (val, [4, 2])):
        batches = list(loader)
        assert [y.numel() for _, y in batches] == sizes
        for images, labels in batches:
            assert images.shape == (labels.numel(), 3, 16, 16) and images.dtype == torch.float32
            assert labels.dtype == torch.int64
            for image, label, colour in zip(images, labels, identify(images, identities)):
                # (c / 255 - mean) / std per channel, by hand; and the label is this image's label
                hand = [(c / 255 - m) / s for c, m, s in zip(colour, IMAGENET_MEAN, IMAGENET_STD)]
                assert torch.allclose(image[:, 0, 0], torch.tensor(hand), atol=1e-6)
                assert identities[colour] == (loader.split, int(label))
                seen.append(colour)
    assert len(set(seen)) == 16 + 6  # no image twice in an epoch; 2 training images dropped with drop_last
    assert val.source == train.source and train.classes == SORTED


def test_random_resized_crop_box_is_torchvisions_without_the_global_generator():
    for seed in range(40):
        for height, width in ((48, 40), (300, 200), (7, 90), (90, 7)):
            torch.manual_seed(seed)
            image = torch.zeros(3, height, width)
            expected = RandomResizedCrop.get_params(image, [0.08, 1.0], [3 / 4, 4 / 3])
            state = torch.get_rng_state()
            assert random_resized_crop_box(height, width, torch.Generator().manual_seed(seed)) == expected
            assert torch.equal(torch.get_rng_state(), state)
    # 4 x 400: no box of >= 8% of the area fits 4 rows, so the centre fallback with ratio 4/3: h 4, w round(16/3)
    assert random_resized_crop_box(4, 400, torch.Generator().manual_seed(0)) == (0, (400 - 5) // 2, 4, 5)
    # 400 x 4 (tall): the same with ratio 3/4: w 4, h round(4 / (3/4)) = 5
    assert random_resized_crop_box(400, 4, torch.Generator().manual_seed(0)) == ((400 - 5) // 2, 0, 5, 4)


def test_train_augmentation_crops_the_drawn_box_and_flips_half_of_the_images():
    image = Image.fromarray(_pattern_image(WIDTH, HEIGHT))
    augment = TrainAugmentation(crop_size=16, mean=(0, 0, 0), std=(1, 1, 1))
    flipped = 0
    for seed in range(200):
        out = augment(image, torch.Generator().manual_seed(seed))
        generator = torch.Generator().manual_seed(seed)
        top, left, h, w = random_resized_crop_box(HEIGHT, WIDTH, generator)
        expected = TF.resized_crop(image, top, left, h, w, [16, 16], TF.InterpolationMode.BILINEAR, antialias=True)
        flip = torch.rand(1, generator=generator).item() < 0.5  # the draw after the box
        expected = TF.to_tensor(TF.hflip(expected) if flip else expected)
        assert torch.equal(out, expected)
        # R grows with x (5 x): a flipped crop reads right to left
        assert bool(out[0, 0, 0] > out[0, 0, -1]) == flip
        flipped += flip
    assert 70 <= flipped <= 130  # p = 0.5: 100 +- 4.2 standard deviations of 7.1


def _pattern_image(width: int, height: int) -> np.ndarray:
    """R = 5 x, G = 4 y, B = 7: every pixel names its position (and a flip or a transpose would show)."""
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    pixels[..., 0] = 5 * np.arange(width)[None, :]
    pixels[..., 1] = 4 * np.arange(height)[:, None]
    pixels[..., 2] = 7
    return pixels


def test_val_transform_is_a_deterministic_centre_crop_at_the_hand_computed_place(tmp_path):
    for split in ("train", "val"):
        (tmp_path / split / "only").mkdir(parents=True)
        Image.fromarray(_pattern_image(WIDTH, HEIGHT)).save(tmp_path / split / "only" / "pattern.png")
    loader = ImageFolderLoader(tmp_path, "val", 1, resize_size=40, crop_size=20)  # shorter side already 40
    first = list(loader)
    second = list(loader)
    assert torch.equal(first[0][0], second[0][0])
    pixels = torch.round((first[0][0][0] * STD + MEAN) * 255)
    # 48 x 40 (h x w) -> crop 20 x 20 at top round((48 - 20) / 2) = 14, left round((40 - 20) / 2) = 10
    assert torch.equal(pixels[0], 5 * torch.arange(10, 30).float().expand(20, 20))
    assert torch.equal(pixels[1], 4 * torch.arange(14, 34).float()[:, None].expand(20, 20))
    assert torch.all(pixels[2] == 7)


def test_val_transform_resizes_the_shorter_side_before_the_centre_crop():
    pixels = np.zeros((96, 80, 3), dtype=np.uint8)  # h 96, w 80: left half red, right half blue
    pixels[:, :40, 0] = 255
    pixels[:, 40:, 2] = 255
    out = EvalTransform(resize_size=40, crop_size=20, mean=(0, 0, 0), std=(1, 1, 1))(Image.fromarray(pixels))
    assert out.shape == (3, 20, 20)
    # 80 x 96 -> 40 x 48, the red/blue edge at column 20 of 40, i.e. column 10 of the crop (left 10):
    # columns well left of it are pure red, well right pure blue (the bilinear filter blurs the edge only)
    assert torch.all(out[0, :, :8] == 1) and torch.all(out[2, :, :8] == 0)
    assert torch.all(out[0, :, 12:] == 0) and torch.all(out[2, :, 12:] == 1)


def test_same_seeds_give_the_same_batches_with_and_without_workers_and_epochs_differ(tmp_path):
    make_folder(tmp_path, constant=False)
    options = dict(crop_size=16, resize_size=20, order_seed=3, augmentation_seed=4)
    single = ImageFolderLoader(tmp_path, "train", 6, **options)
    again = ImageFolderLoader(tmp_path, "train", 6, **options)
    workers = ImageFolderLoader(tmp_path, "train", 6, num_workers=2, **options)
    epochs = {
        name: [epoch_of(loader), epoch_of(loader)]
        for name, loader in (("single", single), ("again", again), ("workers", workers))
    }
    for name in ("again", "workers"):
        for mine, theirs in zip(epochs["single"], epochs[name]):
            assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(mine, theirs))
    first, second = epochs["single"]
    assert torch.cat([y for _, y in first]).tolist() != torch.cat([y for _, y in second]).tolist()
    # all 18 images are in both epochs (3 batches of 6), yet no crop repeats: the crops depend on the epoch
    crops = [{image.numpy().tobytes() for x, _ in epoch for image in x} for epoch in (first, second)]
    assert len(crops[0]) == len(crops[1]) == 18 and not crops[0] & crops[1]
    # another augmentation seed: the same order (labels) but other crops
    other = epoch_of(ImageFolderLoader(tmp_path, "train", 6, **{**options, "augmentation_seed": 5}))
    assert [y.tolist() for _, y in other] == [y.tolist() for _, y in first]
    assert not any(torch.equal(a[0], b[0]) for a, b in zip(other, first))
    # set_epoch(1) on a fresh loader draws the second epoch
    fresh = ImageFolderLoader(tmp_path, "train", 6, **options)
    fresh.set_epoch(1)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(epoch_of(fresh), second))


def test_state_dict_resumes_at_the_next_epoch_with_the_recorded_seeds(tmp_path):
    make_folder(tmp_path, constant=False)
    options = dict(crop_size=16, resize_size=20)
    original = ImageFolderLoader(tmp_path, "train", 6, order_seed=8, augmentation_seed=9, **options)
    epoch_of(original)
    state = original.state_dict()
    torch.save(state, tmp_path / "state.pt")
    assert state["epoch"] == 1 and (state["order_seed"], state["augmentation_seed"]) == (8, 9)
    expected = epoch_of(original)
    resumed = ImageFolderLoader(tmp_path, "train", 6, order_seed=0, augmentation_seed=0, **options)
    resumed.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(epoch_of(resumed), expected))
    with pytest.raises(ValueError, match="same folder and classes"):
        ImageFolderLoader(tmp_path, "train", 6, classes=["ant", "mole"], **options).load_state_dict(state)


def test_shards_are_disjoint_cover_the_set_and_follow_distributed_sampler(tmp_path):
    identities = make_folder(tmp_path, constant=True)
    train_colours = {c for c, (split, _) in identities.items() if split == "train"}
    number_of = {colour_of(i): i for i in range(18)}  # train images are numbered 0..17 in index order
    for world_size, batch, expected_cover in ((3, 6, 18), (2, 4, 16)):
        shards = []
        for rank in range(world_size):
            loader = ImageFolderLoader(
                tmp_path, "train", batch, crop_size=8, resize_size=8, order_seed=5, rank=rank, world_size=world_size
            )
            loader.set_epoch(2)
            colours = [c for x, _ in loader for c in identify(x, identities)]
            assert all(x.shape[0] == batch // world_size for x, _ in loader)
            sampler = DistributedSampler(range(18), world_size, rank, shuffle=True, seed=5, drop_last=True)
            sampler.set_epoch(2)
            assert [number_of[c] for c in colours] == list(sampler)[: len(colours)]
            shards.append(colours)
        union = [c for shard in shards for c in shard]
        assert len(union) == len(set(union)) == expected_cover  # disjoint
        assert set(union) <= train_colours
        if expected_cover == 18:
            assert set(union) == train_colours  # 18 images, 3 ranks x 3 batches x 2: every image once


def test_distributed_arguments_are_checked(tmp_path):
    make_folder(tmp_path, constant=True, train=2, val=1)
    with pytest.raises(ValueError, match="global batch 5 is not divisible by world_size 2"):
        ImageFolderLoader(tmp_path, "train", 5, rank=0, world_size=2)
    with pytest.raises(ValueError, match="both rank and world_size"):
        ImageFolderLoader(tmp_path, "train", 4, rank=1)
    with pytest.raises(ValueError, match=r"rank must be an integer in \[0, 2\)"):
        ImageFolderLoader(tmp_path, "train", 4, rank=2, world_size=2)
    with pytest.raises(ValueError, match="fewer than one batch"):
        ImageFolderLoader(tmp_path, "train", 8)  # 6 images, drop_last
    train, val = image_folder_loaders(tmp_path, 4, rank=1, world_size=2, crop_size=8, resize_size=8)
    assert (train.world_size, train.local_batch_size, len(train)) == (2, 2, 1)
    assert (val.world_size, val.num_examples, len(val)) == (1, 3, 1)


def test_undecodable_file_names_itself(tmp_path):
    make_folder(tmp_path, constant=True, train=1, val=1)
    (tmp_path / "val" / "ant" / "img0.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"cannot decode .*val/ant/img0.png"):
        list(ImageFolderLoader(tmp_path, "val", 3, crop_size=8, resize_size=8))


def test_progress_bar_names_the_split_and_epoch(tmp_path, capsys):
    make_folder(tmp_path, constant=True, train=2, val=1)
    loader = ImageFolderLoader(tmp_path, "val", 3, crop_size=8, resize_size=8, progress=True)
    list(loader)
    assert "val epoch 1" in capsys.readouterr().err


class _StopAtEpoch(Callback):
    """Interrupts a run when epoch ``stop`` starts (the previous epochs are checkpointed): a killed job."""

    def __init__(self, stop: int | None) -> None:
        self.stop = stop

    def on_epoch_start(self, trainer) -> None:
        if trainer.epoch == self.stop:
            raise KeyboardInterrupt


def test_trainer_resumes_a_killed_run_to_the_same_losses_with_worker_processes(tmp_path):
    make_folder(tmp_path / "data", constant=False)

    def run(run_dir, stop):
        train, val = image_folder_loaders(
            tmp_path / "data", 6, crop_size=16, resize_size=20, num_workers=2, order_seed=1, augmentation_seed=2
        )
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 3))
        trainer = Trainer(
            model, TrainingHparams(epochs=3, lr=0.01), train, val, run_dir=run_dir, callbacks=[_StopAtEpoch(stop)]
        )
        try:
            return [(r["train_loss"], r["test_loss"]) for r in trainer.fit(resume=True).records]
        except KeyboardInterrupt:
            return None

    uninterrupted = run(tmp_path / "reference", None)
    assert run(tmp_path / "killed", 2) is None
    assert run(tmp_path / "killed", None) == uninterrupted


def test_normalisation_is_bit_identical_to_torchvisions_to_tensor_and_normalize():
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8))
    ours = EvalTransform(resize_size=40, crop_size=40)(image)  # resize and crop are the identity here
    theirs = TF.normalize(TF.to_tensor(image), list(IMAGENET_MEAN), list(IMAGENET_STD))
    assert torch.equal(ours, theirs)
