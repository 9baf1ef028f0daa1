"""The prepared cache on disk, and :func:`prepare`/:func:`load`, which find or create it.

A cache is the folder ``root/<dataset>/``: four plain ``.npy`` arrays (uint8 ``N x 3 x H x W``
images and int64 labels per split) and ``meta.json`` (format, classes, counts, the source's
provenance and the sha256 of every array). It is built in a temporary folder next to its
destination and renamed into place, its bytes are deterministic for a given source and do not
depend on where the source or the cache lie (meta.json holds no path), and it is verified against
its checksums before use. :func:`prepare` tries an existing cache, then a local
archive (read by :mod:`rewire.data.sources`), then the official torchvision download.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from rewire.data.datasets import SPLITS, CorruptDataError, DataNotFoundError, ImageDataset
from rewire.data.sources import OFFICIAL_RELEASES, WrongDatasetError, read_archive, sha256_file

__all__ = [
    "CACHE_FORMAT",
    "ENV_ARCHIVE",
    "SHARED_JPEG_HINT",
    "TOOL_VERSION",
    "existing_cache",
    "load",
    "prepare",
    "read_cache",
]

log = logging.getLogger(__name__)

CACHE_FORMAT = "rewire-image-cache/1"
TOOL_VERSION = "rewire.data/1"
ENV_ARCHIVE = "REWIRE_DATA_ARCHIVE"
SHARED_JPEG_HINT = "../shared/datasets/cifar10-jpeg.tar.gz"

_FILES = {
    "train_images": "train_images.npy",
    "train_labels": "train_labels.npy",
    "test_images": "test_images.npy",
    "test_labels": "test_labels.npy",
}


# ----------------------------------------------------------------------------- writing the cache


class _HashingWriter:
    def __init__(self, f):
        self.f = f
        self.hash = hashlib.sha256()

    def write(self, data) -> int:
        self.hash.update(data)
        return self.f.write(data)


def _write_npy(path: Path, array: np.ndarray) -> str:
    """Write ``array`` as a plain .npy (no pickle, deterministic bytes); return its sha256."""
    with open(path, "wb") as f:
        writer = _HashingWriter(f)
        np.lib.format.write_array(writer, np.ascontiguousarray(array), version=(1, 0), allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())
    return writer.hash.hexdigest()


def _check_name(dataset: str) -> str:
    name = str(dataset).strip()
    if name.lower() in OFFICIAL_RELEASES:
        name = name.lower()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ValueError(f"dataset name {dataset!r} must be a simple folder name (letters, digits, '_', '-', '.')")
    return name


def _fix_permissions(path: Path) -> None:
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o777 & ~mask)


def _write_cache(target: Path, name: str, classes, arrays, labels, provenance, image_size) -> None:
    """Build the cache in ``root/.tmp-<name>-*`` and rename it to ``target``; nothing is left behind on failure."""
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=target.parent))
    try:
        hashes = {}
        for split in SPLITS:
            hashes[_FILES[f"{split}_images"]] = _write_npy(tmp / _FILES[f"{split}_images"], arrays[split])
            hashes[_FILES[f"{split}_labels"]] = _write_npy(tmp / _FILES[f"{split}_labels"],
                                                           labels[split].astype(np.int64))
        created_by = {"tool": TOOL_VERSION, "numpy": np.__version__}
        if provenance.get("kind") != "official" or image_size is not None:
            import PIL

            created_by["pillow"] = PIL.__version__
        meta = {
            "format": CACHE_FORMAT,
            "name": name,
            "classes": list(classes),
            "counts": {split: int(len(labels[split])) for split in SPLITS},
            "class_counts": {split: np.bincount(labels[split], minlength=len(classes)).tolist() for split in SPLITS},
            "image_shape": [int(s) for s in arrays["train"].shape[1:]],
            "image_size": image_size,
            "source": provenance,
            "sha256": hashes,
            "created_by": created_by,
        }
        with open(tmp / "meta.json", "w", encoding="utf-8") as f:
            f.write(json.dumps(meta, indent=2) + "\n")
            f.flush()
            os.fsync(f.fileno())
        _fix_permissions(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if (target / "meta.json").exists():  # another process finished first: keep its cache
                shutil.rmtree(tmp, ignore_errors=True)
                return
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ----------------------------------------------------------------------------- checking the cache


def _corrupt(target: Path, name: str, detail: str) -> CorruptDataError:
    root = target.parent
    return CorruptDataError(
        f"the prepared data in {target} is damaged or incomplete ({detail}). Delete the folder "
        f"(rm -rf {target}) and recreate it with `make data` "
        f"(or `python -m rewire.data prepare --dataset {name} --root {root}`), or fetch it again with `dvc pull data.dvc`."
    )


def _read_meta(target: Path, name: str) -> dict | None:
    """The cache's meta.json, or None when ``target`` is an empty directory."""
    if not target.is_dir():
        raise _corrupt(target, name, "it exists but is not a directory")
    meta_path = target / "meta.json"
    if not meta_path.exists():
        if not any(target.iterdir()):
            return None
        raise _corrupt(target, name, "meta.json is missing")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise _corrupt(target, name, f"meta.json is unreadable: {error}") from error
    if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise _corrupt(target, name, f"meta.json has format {found!r}, expected {CACHE_FORMAT!r}")
    if meta.get("name") != name:
        raise _corrupt(target, name, f"it holds dataset {meta.get('name')!r}, not {name!r}")
    for key in ("classes", "counts", "image_shape", "source", "sha256"):
        if key not in meta:
            raise _corrupt(target, name, f"meta.json lacks {key!r}")
    return meta


def _verify_checksums(target: Path, name: str, meta: dict) -> None:
    for fname in _FILES.values():
        path = target / fname
        if not path.exists():
            raise _corrupt(target, name, f"{fname} is missing")
        expected = meta["sha256"].get(fname)
        actual = sha256_file(path)
        if actual != expected:
            raise _corrupt(target, name, f"{fname} has sha256 {actual[:12]}..., meta.json records "
                                         f"{str(expected)[:12]}... (truncated or modified file)")


def _check_image_size(meta: dict, target: Path, image_size: int | None) -> None:
    if image_size is not None and list(meta["image_shape"][1:]) != [image_size, image_size]:
        h, w = meta["image_shape"][1:]
        raise ValueError(f"{target} holds {h}x{w} images but image_size={image_size} was requested; "
                         f"delete {target} to prepare it again at the new size, or use another root")


# ----------------------------------------------------------------------------- finding or creating the cache


def _not_found_message(name: str, target: Path, attempts: list[str]) -> str:
    if name == "cifar10":
        archives = (f"the official cifar-10-python.tar.gz, or an ImageFolder JPEG archive such as {SHARED_JPEG_HINT}")
    elif name == "cifar100":
        archives = "the official cifar-100-python.tar.gz, or an ImageFolder archive (train/ and test/, one folder per class)"
    else:
        archives = "an ImageFolder archive or directory (train/ and test/ or val/, one subfolder per class)"
    if name in OFFICIAL_RELEASES:
        download = "(c) allow the official torchvision download: it needs internet access (download=True; CLI without --no-download)."
    else:
        download = (f"(c) the torchvision download exists only for cifar10 and cifar100, not for {name!r}; "
                    f"use (a) or (b).")
    lines = [
        f"no prepared data for {name!r} in {target} and no way to create it. Get it in one of three ways:",
        f"  (a) fetch the prepared cache with `dvc pull data.dvc`, or copy an existing prepared cache to {target};",
        f"  (b) point to a local archive: set {ENV_ARCHIVE}=/path/to/archive or pass archive= (CLI: --archive PATH); "
        f"accepted: {archives}; a .tar/.tar.gz/.tgz file or an extracted directory;",
        f"  {download}",
    ]
    if attempts:
        lines.append("Tried: " + "; ".join(attempts))
    return "\n".join(lines)


def _brief(error: BaseException, limit: int = 300) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def _download_official(dataset: str, workdir: Path) -> Path:
    """Download the official release with torchvision into ``workdir``; return the tarball (or folder)."""
    import torchvision

    cls = {"cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100}[dataset]
    cls(root=str(workdir), train=True, download=True)
    tarball = workdir / OFFICIAL_RELEASES[dataset]["tarball"]
    if tarball.is_file():
        return tarball
    folder = workdir / OFFICIAL_RELEASES[dataset]["folder"]
    if folder.is_dir():
        return folder
    raise RuntimeError(f"torchvision finished but neither {tarball.name} nor {folder.name}/ is in {workdir}")


def _build_from(path: Path, origin: str, target: Path, name: str, image_size: int | None,
                origin_label: str | None = None) -> None:
    classes, arrays, labels, provenance = read_archive(path, origin, name, image_size, origin_label)
    _write_cache(target, name, classes, arrays, labels, provenance, image_size)
    log.info("prepared the cache %s", target)


def _ensure_cache(dataset, root, archive, download, image_size) -> tuple[Path, dict, bool]:
    """(cache path, meta, checksums verified in this call)."""
    name = _check_name(dataset)
    if image_size is not None and (isinstance(image_size, bool) or int(image_size) != image_size or image_size < 1):
        raise ValueError(f"image_size must be a positive integer or None, got {image_size!r}")
    image_size = None if image_size is None else int(image_size)
    root = Path(root)
    target = root / name

    # 1. an existing cache
    if target.exists():
        meta = _read_meta(target, name)
        if meta is not None:
            _verify_checksums(target, name, meta)
            _check_image_size(meta, target, image_size)
            log.info("using the prepared cache %s", target)
            return target, meta, True
        target.rmdir()  # an empty folder left by a tool: prepare into it

    root.mkdir(parents=True, exist_ok=True)
    attempts: list[str] = []

    # 2. a local archive
    if archive is not None:
        path = Path(archive)
        if not path.exists():
            raise DataNotFoundError(_not_found_message(name, target, [f"archive={str(archive)!r} does not exist"]))
        try:
            _build_from(path, str(archive), target, name, image_size)
        except WrongDatasetError as error:
            raise ValueError(str(error)) from None
        meta = _read_meta(target, name)
        return target, meta, False
    env = os.environ.get(ENV_ARCHIVE, "").strip()
    if env:
        path = Path(env)
        if not path.exists():
            attempts.append(f"{ENV_ARCHIVE}={env!r} does not exist")
        else:
            try:
                _build_from(path, env, target, name, image_size)
                return target, _read_meta(target, name), False
            except WrongDatasetError as error:  # e.g. the CIFAR-10 copy while cifar100 is requested
                attempts.append(f"{ENV_ARCHIVE}={env!r}: {error}")
        log.warning("%s", attempts[-1])

    # 3. the official download
    if name not in OFFICIAL_RELEASES:
        attempts.append(f"no download for {name!r}")
    elif not download:
        attempts.append("download disabled (download=False / --no-download)")
    else:
        workdir = Path(tempfile.mkdtemp(prefix=f".tmp-download-{name}-", dir=root))
        try:
            try:
                fetched = _download_official(name, workdir)
            except Exception as error:  # no network, proxy, checksum mismatch...
                attempts.append(f"torchvision download failed ({_brief(error)})")
            else:
                _build_from(fetched, str(fetched), target, name, image_size, origin_label="torchvision download")
                return target, _read_meta(target, name), False
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    raise DataNotFoundError(_not_found_message(name, target, attempts))


def prepare(dataset: str = "cifar10", root: str | os.PathLike = "data", archive: str | os.PathLike | None = None,
            download: bool = True, image_size: int | None = None) -> Path:
    """Create the prepared cache ``root/<dataset>/`` once and return its path.

    Sources, in order: (1) an existing valid cache (returned untouched); (2) a local archive:
    ``archive``, else ``$REWIRE_DATA_ARCHIVE`` -- a tar(.gz) file or a directory with the official
    CIFAR-10/CIFAR-100 python release or an ImageFolder tree (``train/`` and ``test/`` or ``val/``,
    one subfolder per class; ``val`` becomes the test split); (3) the official torchvision
    download (cifar10/cifar100, ``download=True``). ``image_size`` resizes image-folder data
    (shorter side, bilinear) and centre-crops it square; without it all images must share one size.

    An explicit ``archive`` that does not hold the dataset raises ``ValueError``; one named by
    the environment variable is skipped (so a global CIFAR-10 setting does not block cifar100).
    Raises :class:`DataNotFoundError` when nothing works and :class:`CorruptDataError` for a
    damaged cache.
    """
    return _ensure_cache(dataset, root, archive, download, image_size)[0]


def load(dataset: str = "cifar10", root: str | os.PathLike = "data", archive: str | os.PathLike | None = None,
         download: bool = True, image_size: int | None = None) -> ImageDataset:
    """:func:`prepare` the cache if needed, verify its checksums and read it into an :class:`ImageDataset`."""
    target, meta, verified = _ensure_cache(dataset, root, archive, download, image_size)
    return _read_dataset(target, meta, verified)


def read_cache(target: str | os.PathLike) -> ImageDataset:
    """Verify the checksums of the existing cache folder ``target`` (a path :func:`prepare` returned) and read it.

    Unlike :func:`load` it never prepares anything and logs nothing.
    """
    target = Path(target)
    meta = _read_meta(target, target.name)
    if meta is None:
        raise _corrupt(target, target.name, "meta.json is missing")
    return _read_dataset(target, meta, verified=False)


def existing_cache(dataset: str, root: str | os.PathLike = "data") -> Path:
    """The folder ``root/<dataset>`` if it exists (its contents are not checked here), else
    :class:`DataNotFoundError` explaining the ways to get the data."""
    name = _check_name(dataset)
    target = Path(root) / name
    if not target.exists():
        raise DataNotFoundError(_not_found_message(name, target, []))
    return target


def _read_dataset(target: Path, meta: dict, verified: bool) -> ImageDataset:
    """Read the arrays of the cache ``target`` (described by ``meta``) into an :class:`ImageDataset`,
    verifying the checksums first unless that was ``verified`` already."""
    name = meta["name"]
    if not verified:
        _verify_checksums(target, name, meta)
    tensors = {}
    for key, fname in _FILES.items():
        try:
            array = np.load(target / fname, allow_pickle=False)
        except (OSError, ValueError, EOFError) as error:
            raise _corrupt(target, name, f"{fname} is unreadable: {error}") from error
        split = key.split("_")[0]
        expected_n = meta["counts"][split]
        if key.endswith("images"):
            ok = array.dtype == np.uint8 and list(array.shape) == [expected_n, *meta["image_shape"]]
        else:
            ok = array.dtype == np.int64 and list(array.shape) == [expected_n]
        if not ok:
            raise _corrupt(target, name, f"{fname} holds {array.dtype} {array.shape}, which disagrees with meta.json")
        tensors[key] = torch.from_numpy(array)
    try:
        return ImageDataset(name=name, classes=tuple(meta["classes"]), source=dict(meta["source"]), **tensors)
    except ValueError as error:
        raise _corrupt(target, name, str(error)) from error

