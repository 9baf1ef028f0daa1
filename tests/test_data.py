"""rewire.data: preparing the cache from every source, its integrity checks, subsets and the batch loader.

All data is synthetic and generated in tmp_path; only the last test looks at the real
CIFAR-10 JPEG archive (layout detection and a few decoded members) and is skipped without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rewire import data as rdata
from rewire.data import (
    CIFAR10_CLASSES,
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_CLASSES,
    CIFAR100_MEAN,
    CIFAR100_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    BatchLoader,
    CorruptDataError,
    DataNotFoundError,
    ImageDataset,
    channel_statistics,
    crop_and_flip,
    load,
    normalisation_for,
    prepare,
)
from rewire.data import cache as rcache
from rewire.data import sources as rsources

REPO = Path(__file__).resolve().parents[1]
REAL_ARCHIVE = REPO / rcache.SHARED_JPEG_HINT  # ../shared/datasets/cifar10-jpeg.tar.gz next to the checkout
LIB = Path(rdata.__file__).resolve().parents[2]
ORIGINAL_DOWNLOAD = rcache._download_official


@pytest.fixture(autouse=True)
def isolated_sources(monkeypatch):
    """No archive from the caller's environment (the Makefile exports one) and never a real download."""
    monkeypatch.delenv("REWIRE_DATA_ARCHIVE", raising=False)

    def no_network(dataset, workdir):
        raise ConnectionError("simulated: no route to host")

    monkeypatch.setattr(rcache, "_download_official", no_network)


# ----------------------------------------------------------------------------- builders


def random_images(n, size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3, size, size), dtype=np.uint8)


def dump_pickle(path: Path, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # the official files are Python-2 era pickles


def cifar10_content(train_per_class=3, test_per_class=2, seed=0):
    train_y = np.tile(np.arange(10), train_per_class)
    test_y = np.tile(np.arange(10), test_per_class)
    return random_images(len(train_y), seed=seed), train_y, random_images(len(test_y), seed=seed + 1), test_y


def write_cifar10_python(base: Path, content, classes=CIFAR10_CLASSES) -> Path:
    train_x, train_y, test_x, test_y = content
    folder = base / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i, idx in enumerate(np.array_split(np.arange(len(train_y)), 5), start=1):
        dump_pickle(
            folder / f"data_batch_{i}",
            {
                b"batch_label": f"training batch {i} of 5".encode(),
                b"labels": train_y[idx].tolist(),
                b"data": train_x[idx].reshape(len(idx), 3072),
                b"filenames": [f"img_{j}.png".encode() for j in idx],
            },
        )
    dump_pickle(
        folder / "test_batch",
        {
            b"batch_label": b"testing batch 1 of 1",
            b"labels": test_y.tolist(),
            b"data": test_x.reshape(len(test_y), 3072),
        },
    )
    dump_pickle(
        folder / "batches.meta",
        {b"label_names": [c.encode() for c in classes], b"num_cases_per_batch": 10000, b"num_vis": 3072},
    )
    return folder


def make_tar(path: Path, folder: Path, arcname: str, reverse: bool = False) -> Path:
    """tar(.gz) ``folder`` as ``arcname``; ``reverse=True`` stores the files in reverse name order."""
    if not reverse:
        with tarfile.open(path, "w:gz" if path.name.endswith("gz") else "w") as tar:
            tar.add(folder, arcname=arcname)
        return path
    with tarfile.open(path, "w") as tar:
        for file in sorted((p for p in folder.rglob("*") if p.is_file()), reverse=True):
            tar.add(file, arcname=f"{arcname}/{file.relative_to(folder).as_posix()}")
    return path


@pytest.fixture
def cifar10_tarball(tmp_path):
    content = cifar10_content()
    folder = write_cifar10_python(tmp_path / "src", content)
    return make_tar(tmp_path / "cifar-10-python.tar.gz", folder, "cifar-10-batches-py"), content


def write_image_folder(base: Path, splits: dict, ext: str) -> None:
    """splits: {split: {class: {filename_stem: HxWx3 uint8 array}}}"""
    for split, classes in splits.items():
        for cls, files in classes.items():
            folder = base / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for stem, pixels in files.items():
                Image.fromarray(pixels).save(folder / f"{stem}.{ext}")


def expected_arrays(split_content: dict):
    """Images and labels in the documented order: classes sorted, files sorted by name."""
    classes = sorted(split_content)
    xs, ys = [], []
    for label, cls in enumerate(classes):
        for stem in sorted(split_content[cls]):
            xs.append(split_content[cls][stem].transpose(2, 0, 1))
            ys.append(label)
    return np.stack(xs), np.array(ys)


def leftovers(root: Path):
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


# ----------------------------------------------------------------------------- official releases


def test_official_cifar10_tarball_round_trips_exactly(tmp_path, cifar10_tarball):
    tarball, (train_x, train_y, test_x, test_y) = cifar10_tarball
    root = tmp_path / "data"
    ds = load("cifar10", root, archive=tarball, download=False)

    assert ds.name == "cifar10" and ds.classes == CIFAR10_CLASSES
    assert ds.train_images.dtype == torch.uint8 and ds.train_labels.dtype == torch.int64
    assert torch.equal(ds.train_images, torch.from_numpy(train_x))
    assert torch.equal(ds.train_labels, torch.from_numpy(train_y))
    assert torch.equal(ds.test_images, torch.from_numpy(test_x))
    assert torch.equal(ds.test_labels, torch.from_numpy(test_y))
    assert ds.source["kind"] == "official"
    assert ds.source["origin"] == "official python release cifar-10-python.tar.gz"  # file name, not path
    assert "read from archive cifar-10-python.tar.gz" in ds.source["description"]
    assert ds.source["sha256"] == hashlib.sha256(tarball.read_bytes()).hexdigest()
    json.dumps(ds.source)  # provenance is JSON-serialisable
    assert "official" in ds.describe() and "train 30" in ds.describe() and "test 20" in ds.describe()

    meta = json.loads((root / "cifar10" / "meta.json").read_text())
    assert meta["format"] == "rewire-image-cache/1"
    assert meta["counts"] == {"train": 30, "test": 20}
    assert meta["class_counts"]["train"] == [3] * 10
    assert meta["image_shape"] == [3, 32, 32]
    for fname, digest in meta["sha256"].items():
        assert hashlib.sha256((root / "cifar10" / fname).read_bytes()).hexdigest() == digest
    assert np.array_equal(np.load(root / "cifar10" / "train_images.npy", allow_pickle=False), train_x)
    assert leftovers(root) == ["cifar10"]  # no temporary folders left


def test_official_cifar10_extracted_directory(tmp_path):
    content = cifar10_content(seed=5)
    write_cifar10_python(tmp_path / "extracted", content)
    ds = load("cifar10", tmp_path / "data", archive=tmp_path / "extracted", download=False)
    assert torch.equal(ds.train_images, torch.from_numpy(content[0]))
    assert ds.source["kind"] == "official" and ds.source["sha256"] is None
    assert ds.source["origin"] == "official python release directory extracted"


def test_official_cifar100_tarball_uses_fine_labels(tmp_path):
    fine_names = ["apple", "bear", "castle", "dolphin", "maple_tree"]
    rng = np.random.default_rng(3)
    train_x, test_x = random_images(15, seed=3), random_images(10, seed=4)
    train_fine, test_fine = rng.integers(0, 5, 15), np.tile(np.arange(5), 2)
    folder = tmp_path / "src" / "cifar-100-python"
    folder.mkdir(parents=True)
    for split, x, fine in (("train", train_x, train_fine), ("test", test_x, test_fine)):
        dump_pickle(
            folder / split,
            {
                b"filenames": [b"f"] * len(fine),
                b"batch_label": split.encode(),
                b"fine_labels": fine.tolist(),
                b"coarse_labels": (fine // 2).tolist(),
                b"data": x.reshape(len(fine), 3072),
            },
        )
    dump_pickle(
        folder / "meta",
        {b"fine_label_names": [n.encode() for n in fine_names], b"coarse_label_names": [b"c0", b"c1", b"c2"]},
    )
    tarball = make_tar(tmp_path / "cifar-100-python.tar.gz", folder, "cifar-100-python")

    ds = load("cifar100", tmp_path / "data", archive=tarball, download=False)
    assert ds.classes == tuple(fine_names)
    assert torch.equal(ds.train_labels, torch.from_numpy(train_fine))
    assert torch.equal(ds.test_labels, torch.from_numpy(test_fine))
    assert torch.equal(ds.test_images, torch.from_numpy(test_x))
    assert ds.source["kind"] == "official" and "CIFAR-100" in ds.source["description"]

    with pytest.raises(ValueError, match="cifar100"):  # the right archive for the wrong dataset name
        prepare("cifar10", tmp_path / "other", archive=tarball, download=False)


class _Payload:
    def __reduce__(self):
        return (os.getcwd, ())


def test_pickles_with_foreign_objects_are_refused(tmp_path):
    folder = write_cifar10_python(tmp_path / "src", cifar10_content())
    dump_pickle(folder / "data_batch_3", {b"data": _Payload(), b"labels": []})
    with pytest.raises(ValueError, match="refusing to unpickle"):
        prepare("cifar10", tmp_path / "data", archive=tmp_path / "src", download=False)
    assert leftovers(tmp_path / "data") == []


def test_cifar100_class_list_is_complete_and_ordered():
    assert len(CIFAR100_CLASSES) == len(set(CIFAR100_CLASSES)) == 100
    assert list(CIFAR100_CLASSES) == sorted(CIFAR100_CLASSES)
    assert list(CIFAR10_CLASSES) == sorted(CIFAR10_CLASSES)


# ----------------------------------------------------------------------------- image folders


def write_jpeg_cifar10_tarball(base: Path):
    """A tiny CIFAR-10 ImageFolder of 8x8 JPEGs packed as ``base/cifar10-jpeg.tar.gz``: (tarball, splits)."""
    rng = np.random.default_rng(0)
    colours = {c: rng.integers(0, 256, 3, dtype=np.uint8) for c in CIFAR10_CLASSES}
    solid = lambda c, k: np.broadcast_to(
        np.clip(colours[c].astype(int) + 7 * k, 0, 255).astype(np.uint8), (8, 8, 3)
    ).copy()
    splits = {
        "train": {c: {f"{k:04d}": solid(c, k) for k in range(2)} for c in CIFAR10_CLASSES},
        "test": {c: {"0000": solid(c, 3)} for c in CIFAR10_CLASSES},
    }
    write_image_folder(base / "src" / "cifar10", splits, "jpg")
    return make_tar(base / "cifar10-jpeg.tar.gz", base / "src" / "cifar10", "cifar10"), splits


def test_jpeg_image_folder_tarball_is_recorded_as_lossy_copy(tmp_path):
    tarball, splits = write_jpeg_cifar10_tarball(tmp_path)

    ds = load("cifar10", tmp_path / "data", archive=tarball, download=False)
    assert ds.train_images.shape == (20, 3, 8, 8) and ds.test_images.shape == (10, 3, 8, 8)
    assert ds.classes == CIFAR10_CLASSES
    assert ds.train_labels.tolist() == [c for c in range(10) for _ in range(2)]
    expected, _ = expected_arrays(splits["train"])
    assert np.abs(ds.train_images.numpy().astype(int) - expected.astype(int)).max() <= 4  # lossy, but close
    assert ds.source["kind"] == "jpeg-copy" and ds.source["origin"] == "ImageFolder archive cifar10-jpeg.tar.gz"
    assert "lossy JPEG" in ds.source["description"] and "1-2 points" in ds.source["description"]
    assert "(ImageFolder archive cifar10-jpeg.tar.gz)" in ds.source["description"]
    assert ds.source["sha256"] == hashlib.sha256(tarball.read_bytes()).hexdigest()


def test_png_image_folder_round_trips_exactly_in_sorted_order(tmp_path):
    rng = np.random.default_rng(1)
    img = lambda: rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    # Folder and file names deliberately created out of order: classes sort to a, b, c; files by name.
    splits = {
        "train": {"b_class": {"2": img(), "10": img()}, "a_class": {"x": img()}, "c_class": {"y": img(), "a": img()}},
        "test": {"c_class": {"t": img()}, "a_class": {"u": img()}},
    }
    write_image_folder(tmp_path / "tree", splits, "png")
    (tmp_path / "tree" / "train" / "a_class" / "._x.png").write_bytes(b"macOS resource fork, not an image")
    (tmp_path / "tree" / "README.txt").write_text("not an image")
    tarball = make_tar(tmp_path / "toy.tar", tmp_path / "tree", "toy", reverse=True)  # archive order != name order

    ds = load("toy", tmp_path / "data", archive=tarball, download=False)
    assert ds.classes == ("a_class", "b_class", "c_class")
    for split in ("train", "test"):
        x, y = expected_arrays(splits[split])
        assert torch.equal(getattr(ds, f"{split}_images"), torch.from_numpy(x))
        assert getattr(ds, f"{split}_labels").tolist() == [ds.classes.index(sorted(splits[split])[i]) for i in y]
    assert ds.source["kind"] == "image-folder" and "PNG" in ds.source["description"]


def test_imagenet_style_directory_with_val_and_image_size(tmp_path):
    rng = np.random.default_rng(2)
    wide = rng.integers(0, 256, (16, 32, 3), dtype=np.uint8)  # h=16, w=32: only a centre crop is needed
    splits = {
        "train": {
            "n01440764": {"a": wide, "b": rng.integers(0, 256, (40, 24, 3), dtype=np.uint8)},
            "n02102040": {"c": rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)},
        },
        "val": {
            "n01440764": {"d": rng.integers(0, 256, (17, 30, 3), dtype=np.uint8)},
            "n02102040": {"e": rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)},
        },
    }
    write_image_folder(tmp_path / "imagenet_mini", splits, "png")

    with pytest.raises(ValueError, match="image_size"):
        prepare("mini", tmp_path / "data", archive=tmp_path / "imagenet_mini", download=False)
    assert leftovers(tmp_path / "data") == []

    ds = load("mini", tmp_path / "data", archive=tmp_path / "imagenet_mini", download=False, image_size=16)
    assert ds.train_images.shape == (3, 3, 16, 16) and ds.test_images.shape == (2, 3, 16, 16)
    assert ds.train_labels.tolist() == [0, 0, 1] and ds.test_labels.tolist() == [0, 1]
    assert torch.equal(ds.train_images[0], torch.from_numpy(wide[:, 8:24].transpose(2, 0, 1).copy()))
    assert torch.equal(ds.test_images[1], torch.from_numpy(splits["val"]["n02102040"]["e"].transpose(2, 0, 1).copy()))
    assert ds.source["kind"] == "image-folder" and ds.source["sha256"] is None
    assert "val/" in ds.source["description"] and "16x16" in ds.source["description"]

    with pytest.raises(ValueError, match="image_size=8"):  # the cache holds 16x16
        prepare("mini", tmp_path / "data", image_size=8, download=False)


def test_cifar10_image_folder_must_have_the_official_classes(tmp_path):
    pixels = np.zeros((4, 4, 3), np.uint8)
    write_image_folder(
        tmp_path / "tree",
        {"train": {"cat": {"0": pixels}, "dog": {"0": pixels}}, "test": {"cat": {"0": pixels}}},
        "png",
    )
    with pytest.raises(ValueError, match="CIFAR-10 classes"):
        prepare("cifar10", tmp_path / "data", archive=tmp_path / "tree", download=False)


def test_archive_without_a_known_layout_is_rejected(tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="no recognised layout"):
        prepare("cifar10", tmp_path / "data", archive=tmp_path / "junk", download=False)
    (tmp_path / "file.zip").write_bytes(b"PK\x03\x04 not a tar")
    with pytest.raises(ValueError, match="tar archive"):
        prepare("cifar10", tmp_path / "data", archive=tmp_path / "file.zip", download=False)


# ----------------------------------------------------------------------------- source order


def test_existing_cache_is_reused_without_touching_the_archive(tmp_path, cifar10_tarball, monkeypatch):
    tarball, content = cifar10_tarball
    root = tmp_path / "data"
    path = prepare("cifar10", root, archive=tarball, download=False)
    stamp = (path / "meta.json").stat().st_mtime_ns
    tarball.unlink()

    def must_not_read(*args, **kwargs):
        raise AssertionError("the archive was read although a valid cache exists")

    monkeypatch.setattr(rsources, "_open_source", must_not_read)
    assert prepare("cifar10", root, archive=tarball, download=False) == path
    ds = load("cifar10", root, archive=tarball, download=False)
    assert torch.equal(ds.train_images, torch.from_numpy(content[0]))
    assert (path / "meta.json").stat().st_mtime_ns == stamp


def test_environment_variable_names_the_archive(tmp_path, cifar10_tarball, monkeypatch):
    tarball, content = cifar10_tarball
    monkeypatch.setenv("REWIRE_DATA_ARCHIVE", str(tarball))
    ds = load("cifar10", tmp_path / "data", download=False)
    assert ds.source["origin"] == "official python release cifar-10-python.tar.gz"
    assert torch.equal(ds.test_images, torch.from_numpy(content[2]))


def test_environment_archive_for_another_dataset_is_skipped(tmp_path, cifar10_tarball, monkeypatch):
    tarball, _ = cifar10_tarball
    monkeypatch.setenv("REWIRE_DATA_ARCHIVE", str(tarball))
    with pytest.raises(DataNotFoundError) as info:
        prepare("cifar100", tmp_path / "data", download=False)
    assert str(tarball) in str(info.value) and "not dataset 'cifar100'" in str(info.value)


def test_nothing_available_explains_the_three_ways(tmp_path):
    root = tmp_path / "data"
    with pytest.raises(DataNotFoundError) as info:
        prepare("cifar10", root, download=False)
    message = str(info.value)
    assert isinstance(info.value, RuntimeError)
    for needle in (
        "dvc pull",
        "REWIRE_DATA_ARCHIVE",
        "download",
        "cifar-10-python.tar.gz",
        "../shared/datasets/cifar10-jpeg.tar.gz",
        "internet",
    ):
        assert needle in message, needle

    with pytest.raises(DataNotFoundError, match="simulated: no route to host"):
        load("cifar10", root, download=True)
    assert leftovers(root) == []  # neither a cache nor a temporary download folder

    with pytest.raises(DataNotFoundError, match="does not exist"):
        prepare("cifar10", root, archive=tmp_path / "missing.tar.gz")
    with pytest.raises(DataNotFoundError, match="only for cifar10 and cifar100"):
        prepare("flowers", root)


def test_torchvision_download_is_the_last_resort(tmp_path, cifar10_tarball, monkeypatch):
    import torchvision

    tarball, content = cifar10_tarball
    calls = []

    class FakeCIFAR10:  # what torchvision leaves in root: the tarball and its extracted folder
        def __init__(self, root, train=True, download=False, **kwargs):
            calls.append((Path(root), download))
            assert download
            (Path(root) / "cifar-10-python.tar.gz").write_bytes(tarball.read_bytes())
            with tarfile.open(tarball) as tar:
                tar.extractall(root, filter="data")

    monkeypatch.setattr(rcache, "_download_official", ORIGINAL_DOWNLOAD)
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    root = tmp_path / "data"
    ds = load("cifar10", root, download=True)
    assert len(calls) == 1 and calls[0][0].parent == root
    assert ds.source["kind"] == "official" and ds.source["origin"] == "torchvision download"
    assert ds.source["sha256"] == hashlib.sha256(tarball.read_bytes()).hexdigest()
    assert "torchvision" in ds.source["description"]
    assert torch.equal(ds.train_images, torch.from_numpy(content[0]))
    assert leftovers(root) == ["cifar10"]  # the download folder is gone


# ----------------------------------------------------------------------------- integrity


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete-array", "delete-meta"])
def test_corrupt_cache_is_detected(tmp_path, cifar10_tarball, damage):
    tarball, _ = cifar10_tarball
    path = prepare("cifar10", tmp_path / "data", archive=tarball, download=False)
    target = path / "train_images.npy"
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:1000])
    elif damage == "flip":
        raw = bytearray(target.read_bytes())
        raw[-5] ^= 0xFF
        target.write_bytes(bytes(raw))
    elif damage == "delete-array":
        target.unlink()
    else:
        (path / "meta.json").unlink()
    with pytest.raises(CorruptDataError) as info:
        load("cifar10", tmp_path / "data", archive=tarball, download=False)
    assert "make data" in str(info.value) and str(path) in str(info.value)
    assert isinstance(info.value, RuntimeError)
    with pytest.raises(CorruptDataError):
        prepare("cifar10", tmp_path / "data", download=False)


def test_interrupted_decoding_leaves_no_cache(tmp_path, monkeypatch):
    write_image_folder(
        tmp_path / "tree",
        {
            "train": {c: {str(k): np.full((4, 4, 3), k, np.uint8) for k in range(3)} for c in ("a", "b")},
            "test": {c: {"0": np.zeros((4, 4, 3), np.uint8)} for c in ("a", "b")},
        },
        "png",
    )
    real_decode = rsources._decode_image
    count = {"n": 0}

    def crashing_decode(data, image_size):
        count["n"] += 1
        if count["n"] > 3:
            raise KeyboardInterrupt  # e.g. Ctrl-C halfway through
        return real_decode(data, image_size)

    monkeypatch.setattr(rsources, "_decode_image", crashing_decode)
    root = tmp_path / "data"
    with pytest.raises(KeyboardInterrupt):
        prepare("toy", root, archive=tmp_path / "tree", download=False)
    assert not (root / "toy").exists() and leftovers(root) == []

    monkeypatch.setattr(rsources, "_decode_image", real_decode)
    assert load("toy", root, archive=tmp_path / "tree", download=False).train_images.shape == (6, 3, 4, 4)


def test_interrupted_writing_leaves_no_cache(tmp_path, cifar10_tarball, monkeypatch):
    tarball, _ = cifar10_tarball
    real_write = rcache._write_npy
    written = []

    def crashing_write(path, array):
        if written:
            raise OSError("simulated: disk full")
        written.append(path)
        return real_write(path, array)

    monkeypatch.setattr(rcache, "_write_npy", crashing_write)
    root = tmp_path / "data"
    with pytest.raises(OSError, match="disk full"):
        prepare("cifar10", root, archive=tarball, download=False)
    assert written and written[0].parent.name.startswith(".tmp-cifar10-")  # built in a temporary folder
    assert leftovers(root) == []


def test_cache_bytes_are_deterministic(tmp_path, cifar10_tarball):
    tarball, _ = cifar10_tarball
    a = prepare("cifar10", tmp_path / "a", archive=tarball, download=False)
    b = prepare("cifar10", tmp_path / "b", archive=tarball, download=False)
    for fname in ("train_images.npy", "train_labels.npy", "test_images.npy", "test_labels.npy", "meta.json"):
        assert (a / fname).read_bytes() == (b / fname).read_bytes(), fname


def cache_digests(cache: Path) -> dict:
    """md5 of every file under a prepared cache, by relative path (what DVC hashes for data/)."""
    return {
        p.relative_to(cache).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(cache.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("kind", ["official-tarball", "jpeg-tarball", "official-directory"])
def test_cache_is_identical_wherever_archive_and_root_lie(tmp_path, monkeypatch, kind):
    """The same archive copied into two checkouts and prepared into two roots gives the same bytes
    (so data.dvc's hash does not depend on the checkout's location) and meta.json holds no path."""
    built = tmp_path / "built"
    if kind == "official-tarball":
        source = make_tar(
            built / "cifar-10-python.tar.gz",
            write_cifar10_python(built / "src", cifar10_content()),
            "cifar-10-batches-py",
        )
    elif kind == "jpeg-tarball":
        source, _ = write_jpeg_cifar10_tarball(built)
    else:
        source = write_cifar10_python(built, cifar10_content())  # built/cifar-10-batches-py/

    caches = []
    for checkout in ("checkout-a/shared/datasets", "elsewhere/deeper/checkout-b/shared/datasets"):
        copy = tmp_path / checkout / source.name
        copy.parent.mkdir(parents=True)
        if source.is_dir():
            shutil.copytree(source, copy)
        else:
            shutil.copyfile(source, copy)
        caches.append((copy, prepare("cifar10", tmp_path / checkout / "data", archive=copy, download=False)))
    # the same again with a relative archive path, as in `--archive ../shared/datasets/...`
    monkeypatch.chdir(tmp_path / "checkout-a" / "shared" / "datasets")
    caches.append(
        (Path(source.name), prepare("cifar10", Path("..") / "relative-root", archive=source.name, download=False))
    )

    (_, first), *others = caches
    meta = (first / "meta.json").read_bytes()
    assert len(cache_digests(first)) == 5  # four arrays and meta.json
    for _copy, cache in others:
        assert (cache / "meta.json").read_bytes() == meta
        assert cache_digests(cache) == cache_digests(first)
    text = meta.decode("utf-8")
    for copy, cache in caches:
        assert str(copy.resolve().parent) not in text and str(cache.resolve()) not in text
    assert str(tmp_path) not in text and str(tmp_path.resolve()) not in text
    source_record = json.loads(text)["source"]
    assert not any(isinstance(v, str) and os.path.isabs(v) for v in source_record.values())
    assert source.name in source_record["origin"] and source.name in source_record["description"]

    ds = load("cifar10", first.parent, download=False)  # what results carry (run labels, describe())
    for value in (ds.source["origin"], ds.source["description"], ds.describe()):
        assert str(tmp_path) not in value and str(tmp_path.resolve()) not in value


# ----------------------------------------------------------------------------- subsets and splits


def id_dataset(train_counts=(8, 12, 4), test_counts=(3, 4, 5), size=4) -> ImageDataset:
    """Every image carries its index in pixels [0, 0, 0] (low byte) and [1, 0, 0] (high byte)."""

    def split(counts, offset):
        labels = torch.cat([torch.full((n,), c, dtype=torch.int64) for c, n in enumerate(counts)])
        labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(offset))]
        images = torch.zeros((len(labels), 3, size, size), dtype=torch.uint8)
        ids = torch.arange(len(labels)) + offset
        images[:, 0, 0, 0], images[:, 1, 0, 0] = (ids % 256).to(torch.uint8), (ids // 256).to(torch.uint8)
        return images, labels

    tr, te = split(train_counts, 0), split(test_counts, 1000)
    return ImageDataset("toy", ("a", "b", "c"), tr[0], tr[1], te[0], te[1], {"kind": "image-folder"})


def ids(images: torch.Tensor) -> list[int]:
    return (images[:, 0, 0, 0].long() + 256 * images[:, 1, 0, 0].long()).tolist()


def test_class_balanced_subset(tmp_path):
    ds = id_dataset()
    sub = ds.class_balanced_subset(4, 2, seed=0)
    assert torch.bincount(sub.train_labels).tolist() == [4, 4, 4]
    assert torch.bincount(sub.test_labels).tolist() == [2, 2, 2]
    for split in ("train", "test"):
        chosen = ids(getattr(sub, f"{split}_images"))
        assert len(set(chosen)) == len(chosen)
        original = dict(zip(ids(getattr(ds, f"{split}_images")), getattr(ds, f"{split}_labels").tolist()))
        assert [original[i] for i in chosen] == getattr(sub, f"{split}_labels").tolist()  # labels follow images
    assert sub.train_labels.tolist() != sorted(sub.train_labels.tolist())  # shuffled, not grouped by class

    again = ds.class_balanced_subset(4, 2, seed=0)
    assert ids(again.train_images) == ids(sub.train_images) and ids(again.test_images) == ids(sub.test_images)
    other = ds.class_balanced_subset(4, 2, seed=1)
    assert sorted(ids(other.train_images)) != sorted(ids(sub.train_images))
    assert ids(ds.class_balanced_subset(4, None, seed=0).train_images) == ids(sub.train_images)

    whole = ds.class_balanced_subset(None, None, seed=0)
    assert torch.equal(whole.train_images, ds.train_images) and torch.equal(whole.test_labels, ds.test_labels)
    assert sub.source["subset"] == {"train_per_class": 4, "test_per_class": 2, "seed": 0}

    with pytest.raises(ValueError, match="'c' has only 4 train images"):
        ds.class_balanced_subset(5, None, seed=0)
    with pytest.raises(ValueError, match="positive"):
        ds.class_balanced_subset(0, None, seed=0)


def test_train_validation_split():
    ds = id_dataset()
    train_part, validation_part = ds.train_validation_split(0.25, seed=0)
    held = ids(validation_part.test_images)
    kept = ids(train_part.train_images)
    assert set(held).isdisjoint(kept)
    assert sorted(held + kept) == sorted(ids(ds.train_images))
    assert torch.bincount(validation_part.test_labels, minlength=3).tolist() == [2, 3, 1]  # round(0.25 * n_c)
    assert torch.bincount(train_part.train_labels, minlength=3).tolist() == [6, 9, 3]
    assert validation_part.train_images is train_part.train_images
    assert train_part.test_images is ds.test_images
    assert kept == sorted(kept) and held == sorted(held)  # original order kept
    assert validation_part.source["test_split"] == "validation" and "validation" in validation_part.describe()

    again = ds.train_validation_split(0.25, seed=0)[1]
    assert ids(again.test_images) == held
    assert ids(ds.train_validation_split(0.25, seed=1)[1].test_images) != held

    tiny = ds.train_validation_split(0.01, seed=0)[1]
    assert torch.bincount(tiny.test_labels, minlength=3).tolist() == [1, 1, 1]  # at least one per class
    none = ds.train_validation_split(0.0, seed=0)
    assert none[1].test_labels.numel() == 0 and none[0].train_labels.numel() == ds.train_labels.numel()
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            ds.train_validation_split(bad, seed=0)


def test_image_dataset_validates_its_tensors():
    ds = id_dataset()
    with pytest.raises(ValueError, match="uint8"):
        ImageDataset("x", ("a",), ds.train_images.float(), ds.train_labels, ds.test_images, ds.test_labels, {})
    with pytest.raises(ValueError, match="labels must lie"):
        ImageDataset("x", ("a",), ds.train_images, ds.train_labels, ds.test_images, ds.test_labels, {})


# ----------------------------------------------------------------------------- the batch loader


def loader_data(n=10, size=6, seed=0):
    return torch.from_numpy(random_images(n, size=size, seed=seed)), torch.arange(n)


def epochs(loader, k):
    return [[(x.clone(), y.clone()) for x, y in loader] for _ in range(k)]


def same_epoch(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))


MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def test_batch_counts_and_every_example_once():
    images, labels = loader_data(10)
    loader = BatchLoader(images, labels, 4, shuffle=True, augment=False, mean=MEAN, std=STD)
    assert len(loader) == 3 and loader.num_examples == 10
    first, second = epochs(loader, 2)
    assert [y.numel() for _, y in first] == [4, 4, 2]
    for epoch in (first, second):
        assert sorted(torch.cat([y for _, y in epoch]).tolist()) == list(range(10))
    assert torch.cat([y for _, y in first]).tolist() != torch.cat([y for _, y in second]).tolist()

    dropping = BatchLoader(images, labels, 4, shuffle=True, augment=False, mean=MEAN, std=STD, drop_last=True)
    assert len(dropping) == 2 and [y.numel() for _, y in dropping] == [4, 4]
    ordered = BatchLoader(images, labels, 4, shuffle=False, augment=False, mean=MEAN, std=STD)
    assert torch.cat([y for _, y in ordered]).tolist() == list(range(10))
    with pytest.raises(ValueError, match="no batch"):
        BatchLoader(images, labels, 32, shuffle=True, augment=False, mean=MEAN, std=STD, drop_last=True)


def test_normalisation_without_augmentation_is_exact():
    images, labels = loader_data(7)
    loader = BatchLoader(images, labels, 7, shuffle=False, augment=False, mean=MEAN, std=STD)
    ((x, y),) = list(loader)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape == (7, 3, 6, 6)
    torch.testing.assert_close(x, (images.float() / 255 - mean) / std)


def test_same_seeds_same_batches_and_each_seed_matters():
    images, labels = loader_data(12)
    make = lambda order, aug: BatchLoader(
        images, labels, 5, shuffle=True, augment=True, mean=MEAN, std=STD, order_seed=order, augmentation_seed=aug
    )
    reference = epochs(make(1, 2), 2)
    assert all(same_epoch(a, b) for a, b in zip(reference, epochs(make(1, 2), 2)))

    other_aug = epochs(make(1, 3), 1)[0]
    assert all(torch.equal(ya, yb) for (_, ya), (_, yb) in zip(reference[0], other_aug))  # same order
    assert not all(torch.equal(xa, xb) for (xa, _), (xb, _) in zip(reference[0], other_aug))  # other pixels

    other_order = epochs(make(4, 2), 1)[0]
    assert torch.cat([y for _, y in other_order]).tolist() != torch.cat([y for _, y in reference[0]]).tolist()


def test_state_dict_resume_gives_the_identical_next_epoch(tmp_path):
    images, labels = loader_data(11)
    kwargs = dict(shuffle=True, augment=True, mean=MEAN, std=STD, drop_last=True)
    a = BatchLoader(images, labels, 4, order_seed=7, augmentation_seed=8, **kwargs)
    epochs(a, 2)
    torch.save(a.state_dict(), tmp_path / "loader.pt")
    state = torch.load(tmp_path / "loader.pt", weights_only=True)
    expected = epochs(a, 1)[0]

    b = BatchLoader(images, labels, 4, order_seed=0, augmentation_seed=0, **kwargs)  # seeds do not matter now
    b.load_state_dict(state)
    assert b.epoch == 2
    assert same_epoch(epochs(b, 1)[0], expected)

    with pytest.raises(ValueError, match="11 examples"):
        BatchLoader(images[:10], labels[:10], 4, **kwargs).load_state_dict(state)


def reference_crop(image: torch.Tensor, top: int, left: int, flip: bool, padding: int) -> torch.Tensor:
    """Per-image Python reference: zero-pad, cut the window, mirror."""
    c, h, w = image.shape
    padded = torch.zeros((c, h + 2 * padding, w + 2 * padding), dtype=image.dtype)
    padded[:, padding : padding + h, padding : padding + w] = image
    window = padded[:, top : top + h, left : left + w]
    return window.flip(-1) if flip else window


def test_crop_and_flip_matches_a_per_image_reference():
    images, _ = loader_data(6, size=5)
    top = torch.tensor([0, 8, 4, 2, 8, 0])
    left = torch.tensor([0, 8, 4, 7, 1, 3])
    flip = torch.tensor([False, True, False, True, False, True])
    out = crop_and_flip(images, top, left, flip, padding=4)
    for i in range(6):
        assert torch.equal(out[i], reference_crop(images[i], int(top[i]), int(left[i]), bool(flip[i]), 4))
    assert torch.equal(out[2], images[2])  # centre offset, no flip: identity


def test_augmented_batches_are_padded_shifted_flipped_crops():
    images, labels = loader_data(40, size=6, seed=3)
    padding = 4
    loader = BatchLoader(
        images,
        labels,
        16,
        shuffle=True,
        augment=True,
        mean=(0, 0, 0),
        std=(1, 1, 1),
        crop_padding=padding,
        augmentation_seed=5,
    )
    seen_offsets, seen_flips = set(), set()
    for x, y in loader:
        pixels = (x * 255).round().to(torch.uint8)  # mean 0, std 1: exact inverse of the normalisation
        for out, index in zip(pixels, y.tolist()):
            matches = [
                (t, left, f)
                for t in range(2 * padding + 1)
                for left in range(2 * padding + 1)
                for f in (False, True)
                if torch.equal(out, reference_crop(images[index], t, left, f, padding))
            ]
            assert matches, f"augmented image {index} is not a crop of its padded original"
            seen_offsets.add(matches[0][:2])
            seen_flips.add(matches[0][2])
    assert len(seen_offsets) > 10 and seen_flips == {False, True}


def test_no_flips_when_disabled_and_no_crop_without_padding():
    images, labels = loader_data(20, size=6)
    loader = BatchLoader(
        images,
        labels,
        20,
        shuffle=False,
        augment=True,
        mean=(0, 0, 0),
        std=(1, 1, 1),
        crop_padding=0,
        horizontal_flip=False,
    )
    ((x, _),) = list(loader)
    assert torch.equal((x * 255).round().to(torch.uint8), images)


# ----------------------------------------------------------------------------- statistics


def test_normalisation_constants_and_channel_statistics():
    assert normalisation_for("cifar10") == (CIFAR10_MEAN, CIFAR10_STD)
    assert normalisation_for("cifar100") == (CIFAR100_MEAN, CIFAR100_STD)
    assert (
        normalisation_for("imagenet100")
        == (IMAGENET_MEAN, IMAGENET_STD)
        == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    )
    images = torch.from_numpy(random_images(50, size=8, seed=9))
    mean, std = channel_statistics(images, chunk=7)
    as_float = images.double().permute(1, 0, 2, 3).reshape(3, -1) / 255
    np.testing.assert_allclose(mean, as_float.mean(dim=1).numpy(), rtol=1e-12)
    np.testing.assert_allclose(std, as_float.std(dim=1, unbiased=False).numpy(), rtol=1e-9)


# ----------------------------------------------------------------------------- CLI


def test_cli_prepare_prints_path_source_and_counts(tmp_path, cifar10_tarball, capsys):
    tarball, _ = cifar10_tarball
    root = tmp_path / "data"
    code = rdata.main(
        ["prepare", "--dataset", "cifar10", "--root", str(root), "--archive", str(tarball), "--no-download"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert f"cache: {root / 'cifar10'}" in out and "official" in out and "train: 30" in out and "test: 20" in out

    code = rdata.main(["prepare", "--dataset", "cifar100", "--root", str(root), "--no-download"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error:") and "dvc pull" in err and "Traceback" not in err


def test_cli_exit_status_without_data(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "REWIRE_DATA_ARCHIVE"}
    env["PYTHONPATH"] = os.pathsep.join([str(LIB), env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-m", "rewire.data", "prepare", "--root", str(tmp_path / "data"), "--no-download"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2
    assert "REWIRE_DATA_ARCHIVE" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()  # a failed preparation leaves no empty data/ behind


def test_cli_keeps_a_data_folder_that_existed(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("REWIRE_DATA_ARCHIVE", raising=False)
    (tmp_path / "data").mkdir()
    assert rdata.main(["prepare", "--root", str(tmp_path / "data"), "--no-download"]) == 2
    assert (tmp_path / "data").is_dir()  # only what the failed command created is removed
    assert "dvc pull" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the real archive


@pytest.mark.skipif(not REAL_ARCHIVE.exists(), reason="the shared CIFAR-10 JPEG archive is not on this machine")
def test_real_jpeg_archive_layout_is_detected():
    source = rsources._open_source(REAL_ARCHIVE, str(REAL_ARCHIVE))
    try:
        layout = rsources._choose_layout(rsources._detect_layouts(source.files()), "cifar10", source)
        assert (layout.kind, layout.prefix, layout.test_folder) == ("image-folder", "cifar10", "test")
        assert tuple(sorted(layout.splits["train"])) == CIFAR10_CLASSES
        assert {len(v) for v in layout.splits["train"].values()} == {5000}
        assert {len(v) for v in layout.splits["test"].values()} == {1000}
        few = sorted(layout.splits["test"]["airplane"])[:3]
        for _, blob in source.read_many(few):
            pixels, fmt = rsources._decode_image(blob, None)
            assert pixels.shape == (32, 32, 3) and fmt == "JPEG"
    finally:
        source.close()
