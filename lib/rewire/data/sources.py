"""Reading a raw release: an official CIFAR python tarball or an ImageFolder tree, packed or extracted.

:func:`read_archive` opens a ``.tar``/``.tar.gz``/``.tgz`` file or a directory, finds the
dataset's layout in it (the official CIFAR-10 or CIFAR-100 python release, or an ImageFolder
tree ``train/`` + ``test/`` or ``val/``, one subfolder per class) and decodes it into uint8
``N x 3 x H x W`` arrays, int64 labels and a provenance record. The official pickles are read
with an unpickler that accepts only dicts, lists and numpy arrays.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import io
import logging
import os
import pickle
import posixpath
import tarfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from rewire.data.datasets import CIFAR10_CLASSES, CIFAR100_CLASSES, SPLITS

__all__ = ["OFFICIAL_RELEASES", "WrongDatasetError", "read_archive", "sha256_file"]

log = logging.getLogger(__name__)

# The datasets with an official release this module reads (and torchvision downloads): its title,
# the tarball and the folder it unpacks to, and the official label order.
OFFICIAL_RELEASES = {
    "cifar10": {
        "title": "CIFAR-10",
        "tarball": "cifar-10-python.tar.gz",
        "folder": "cifar-10-batches-py",
        "classes": CIFAR10_CLASSES,
    },
    "cifar100": {
        "title": "CIFAR-100",
        "tarball": "cifar-100-python.tar.gz",
        "folder": "cifar-100-python",
        "classes": CIFAR100_CLASSES,
    },
}
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".webp")


class WrongDatasetError(ValueError):
    """The source is readable but does not hold the requested dataset."""


def read_archive(path: Path, origin: str, dataset: str, image_size: int | None, origin_label: str | None = None):
    """Decode ``dataset`` from ``path`` (a tar archive or a directory) into ``(classes, arrays, labels, provenance)``.

    ``arrays`` and ``labels`` map each split to uint8 ``N x 3 x H x W`` images and int64 labels;
    ``provenance`` is the ``source`` record of the cache's meta.json. ``origin`` names ``path`` in
    messages (it may be a full path: messages are not stored). The provenance never holds a path:
    it names the source by its kind and file name (for example "ImageFolder archive
    cifar10-jpeg.tar.gz" or "official python release cifar-10-python.tar.gz"), so a cache prepared
    from the same archive is byte-identical wherever the archive and the cache live; ``origin_label``
    (for example "torchvision download") replaces that name. Raises :class:`WrongDatasetError` when
    the source is readable but holds another dataset and ``ValueError`` when it cannot be read or
    decoded.
    """
    source = _open_source(path, origin)
    try:
        return _read_source(source, dataset, image_size, origin_label)
    finally:
        source.close()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 4 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------- files of an archive or directory


def _normalise_member(name: str) -> str:
    name = name.replace("\\", "/").lstrip("/")
    name = posixpath.normpath(name)
    return "" if name == "." else name


def _ignored(path: str) -> bool:
    """macOS resource forks, hidden files and folders."""
    return any(part.startswith(".") or part == "__MACOSX" for part in path.split("/"))


def _file_name(path: Path) -> str:
    """The last component of ``path`` (resolved for ``.``/``..``): how provenance names a source, never its path."""
    name = path.name
    if name in ("", ".", ".."):
        name = path.resolve().name
    return name or "/"


class _Source:
    """Files of an archive or directory, addressed by relative POSIX paths."""

    origin: str  # how messages name the source (may be a full path; never stored)
    container: str  # "archive" | "directory"
    name: str  # the file or folder name alone: what the provenance stores

    def files(self) -> list[str]:
        raise NotImplementedError

    def read_many(self, paths: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        """Yield ``(path, bytes)`` for the requested paths, in the order cheapest for the source."""
        raise NotImplementedError

    def read(self, path: str) -> bytes:
        for _, data in self.read_many([path]):
            return data
        raise FileNotFoundError(path)

    def sha256(self) -> str | None:
        return None

    def close(self) -> None:
        pass


class _TarSource(_Source):
    container = "archive"

    def __init__(self, path: Path, origin: str):
        self.path = path
        self.origin = origin
        self.name = _file_name(path)
        try:
            self._tar = tarfile.open(path, "r:*")
            members = self._tar.getmembers()
        except (tarfile.TarError, EOFError, OSError) as error:
            raise ValueError(f"{origin} is not a readable tar archive ({type(error).__name__}: {error}); "
                             f"re-download it or point to another archive") from error
        self._members = [(_normalise_member(m.name), m) for m in members if m.isfile()]
        self._index = {name: i for i, (name, _) in enumerate(self._members)}

    def files(self) -> list[str]:
        return [name for name, _ in self._members]

    def read_many(self, paths):
        wanted = sorted({self._index[p] for p in paths})  # archive order: one forward pass
        for i in wanted:
            name, member = self._members[i]
            handle = self._tar.extractfile(member)
            yield name, handle.read()

    def sha256(self) -> str:
        return sha256_file(self.path)

    def close(self) -> None:
        self._tar.close()


class _DirectorySource(_Source):
    container = "directory"

    def __init__(self, path: Path, origin: str):
        self.path = path
        self.origin = origin
        self.name = _file_name(path)

    def files(self) -> list[str]:
        out = []
        for dirpath, dirnames, filenames in os.walk(self.path):
            dirnames.sort()
            rel = os.path.relpath(dirpath, self.path)
            for f in sorted(filenames):
                out.append(_normalise_member(f if rel == "." else f"{rel}/{f}"))
        return out

    def read_many(self, paths):
        for p in sorted(set(paths)):
            yield p, (self.path / p).read_bytes()


def _open_source(path: Path, origin: str) -> _Source:
    if path.is_dir():
        return _DirectorySource(path, origin)
    if path.is_file():
        if not tarfile.is_tarfile(path):
            raise ValueError(f"{origin} is neither a directory nor a tar archive (.tar, .tar.gz, .tgz); "
                             f"extract it and pass the directory, or repack it as .tar.gz")
        return _TarSource(path, origin)
    raise FileNotFoundError(origin)


# ------------------------------------------------------------- layout detection


@dataclass
class _Layout:
    kind: str  # "cifar10-python" | "cifar100-python" | "image-folder"
    prefix: str  # folder inside the source holding the layout ("" = top level)
    splits: dict = dataclasses.field(default_factory=dict)  # image-folder: {"train": {class: [paths]}, "test": ...}
    test_folder: str = "test"

    @property
    def depth(self) -> int:
        return 0 if not self.prefix else self.prefix.count("/") + 1


def _detect_layouts(files: Sequence[str]) -> list[_Layout]:
    """Every recognised layout in a file list, shallowest first."""
    fileset = set(files)
    found: list[_Layout] = []
    join = posixpath.join
    for path in files:
        base, folder = posixpath.basename(path), posixpath.dirname(path)
        if base == "data_batch_1" and all(join(folder, f) in fileset
                                          for f in ["test_batch"] + [f"data_batch_{i}" for i in range(2, 6)]):
            found.append(_Layout("cifar10-python", folder))
        if base == "train" and join(folder, "test") in fileset and join(folder, "meta") in fileset:
            found.append(_Layout("cifar100-python", folder))

    trees: dict[str, dict[str, dict[str, list[str]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for path in files:
        if not path.lower().endswith(_IMAGE_EXTENSIONS) or _ignored(path):
            continue
        parts = path.split("/")
        for i in range(len(parts) - 2):
            if parts[i] in ("train", "test", "val"):
                trees["/".join(parts[:i])][parts[i]][parts[i + 1]].append(path)
    for prefix, splits in trees.items():
        if "train" in splits and ("test" in splits or "val" in splits):
            test_folder = "test" if "test" in splits else "val"
            found.append(_Layout("image-folder", prefix, {"train": splits["train"], "test": splits[test_folder]},
                                 test_folder))
    found.sort(key=lambda layout: (layout.depth, layout.kind, layout.prefix))
    return found


def _choose_layout(layouts: list[_Layout], dataset: str, source: _Source) -> _Layout:
    preferred = {"cifar10": ("cifar10-python", "image-folder"),
                 "cifar100": ("cifar100-python", "image-folder")}.get(dataset, ("image-folder",))
    for kind in preferred:
        matches = [layout for layout in layouts if layout.kind == kind]
        if matches:
            best = [m for m in matches if m.depth == matches[0].depth]
            if len(best) > 1:
                raise ValueError(f"{source.origin} holds several {kind} trees at the same level "
                                 f"({', '.join(repr(m.prefix) for m in best)}); pass the folder you want as archive=")
            return best[0]
    expected = {
        "cifar10": "the official CIFAR-10 python release (cifar-10-batches-py/ with data_batch_1..5 and test_batch) "
                   "or an ImageFolder tree (<dir>/train/<class>/<image> and <dir>/test/<class>/<image>, or val/)",
        "cifar100": "the official CIFAR-100 python release (cifar-100-python/ with train, test and meta) "
                    "or an ImageFolder tree (<dir>/train/<class>/<image> and <dir>/test/<class>/<image>, or val/)",
    }.get(dataset, "an ImageFolder tree (<dir>/train/<class>/<image> and <dir>/test/<class>/<image>, or val/)")
    if layouts:
        names = {"cifar10-python": "cifar10", "cifar100-python": "cifar100"}
        other = ", ".join(sorted({f"{lay.kind} (dataset={names[lay.kind]!r})" for lay in layouts if lay.kind in names}))
        raise WrongDatasetError(f"{source.origin} holds {other}, not dataset {dataset!r}; "
                            f"pass the matching dataset name or another archive")
    top = sorted({f.split("/")[0] for f in source.files()})[:8]
    raise WrongDatasetError(f"{source.origin} holds no recognised layout for dataset {dataset!r}. Expected {expected}. "
                        f"Top-level entries found: {top or 'none'}")


# ------------------------------------------------------------- decoding


def _resize_and_centre_crop(img, size: int):
    """Shorter side to ``size`` (bilinear), then the central ``size x size`` square, centred as torchvision's
    ``CenterCrop`` centres (``round`` of the half, to even), so a centred crop of it is ``Resize`` + ``CenterCrop``."""
    from PIL import Image

    w, h = img.size
    if min(w, h) != size:
        if w <= h:
            new_w, new_h = size, max(size, int(size * h / w))
        else:
            new_w, new_h = max(size, int(size * w / h)), size
        img = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
        w, h = img.size
    if (w, h) != (size, size):
        left, top = int(round((w - size) / 2.0)), int(round((h - size) / 2.0))
        img = img.crop((left, top, left + size, top + size))
    return img


def _decode_image(data: bytes, image_size: int | None) -> tuple[np.ndarray, str]:
    """Encoded image bytes -> (uint8 ``H x W x 3`` RGB array, PIL format name)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img.load()
        fmt = img.format or "unknown"
        rgb = img if img.mode == "RGB" else img.convert("RGB")
        if image_size is not None:
            rgb = _resize_and_centre_crop(rgb, image_size)
        return np.array(rgb, dtype=np.uint8), fmt


def _read_image_folder(source: _Source, layout: _Layout, dataset: str, image_size: int | None):
    train_classes = sorted(layout.splits["train"])
    unknown = sorted(set(layout.splits["test"]) - set(train_classes))
    if unknown:
        raise ValueError(f"{source.origin}: the {layout.test_folder}/ split has class folders missing from train/: "
                         f"{unknown[:10]}; every {layout.test_folder}/ class needs a train/ folder of the same name")
    if dataset in OFFICIAL_RELEASES:
        official = list(OFFICIAL_RELEASES[dataset]["classes"])
        if train_classes != official:
            missing = sorted(set(official) - set(train_classes))[:10]
            extra = sorted(set(train_classes) - set(official))[:10]
            raise WrongDatasetError(
                f"{source.origin}: the class folders are not the {OFFICIAL_RELEASES[dataset]['title']} classes "
                f"(missing {missing}, unexpected {extra}); the folders must be named exactly "
                f"{', '.join(official[:10])}{', ...' if len(official) > 10 else ''}, or use another dataset name")
    label_of = {c: i for i, c in enumerate(train_classes)}
    slots: dict[str, tuple[str, int]] = {}
    labels = {}
    for split in SPLITS:
        ordered = [(label_of[c], p) for c in sorted(layout.splits[split]) for p in sorted(layout.splits[split][c])]
        labels[split] = np.array([lab for lab, _ in ordered], dtype=np.int64)
        for i, (_, p) in enumerate(ordered):
            slots[p] = (split, i)

    arrays: dict[str, np.ndarray] = {}
    first: tuple[str, tuple[int, int]] | None = None
    formats: set[str] = set()
    started = time.perf_counter()
    for path, data in source.read_many(slots):
        try:
            pixels, fmt = _decode_image(data, image_size)
        except (OSError, ValueError, SyntaxError) as error:  # PIL.UnidentifiedImageError is an OSError
            raise ValueError(f"{source.origin}: cannot decode {path} ({type(error).__name__}: {error}); "
                             f"remove the file or repair the archive") from error
        formats.add(fmt)
        h, w = pixels.shape[:2]
        if first is None:
            first = (path, (h, w))
            for split in SPLITS:
                arrays[split] = np.empty((len(labels[split]), 3, h, w), dtype=np.uint8)
        elif (h, w) != first[1]:
            raise ValueError(
                f"{source.origin}: images differ in size ({first[1][1]}x{first[1][0]} for {first[0]}, {w}x{h} for {path}); "
                f"pass image_size=N (CLI: --image-size N) to resize the shorter side to N and centre-crop N x N")
        split, i = slots[path]
        arrays[split][i] = pixels.transpose(2, 0, 1)
    log.info("decoded %d images from %s in %.1f s", len(slots), source.origin, time.perf_counter() - started)
    return train_classes, arrays, labels, sorted(formats)


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles the official CIFAR pickles (dicts, lists, numpy arrays) and refuses anything else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) == ("_codecs", "encode"):  # how protocol-2 pickles written by Python 3 store bytes
            return _latin1_encode
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: the CIFAR python release "
                                         f"only contains dicts, lists and numpy arrays")
        if module.startswith("numpy.core"):
            modern = "numpy._core" + module[len("numpy.core"):]
            try:
                return getattr(importlib.import_module(modern), name)
            except (ImportError, AttributeError):
                pass
        return super().find_class(module, name)


def _latin1_encode(text, encoding="latin1"):
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _unpickle(data: bytes, where: str) -> dict:
    try:
        obj = _ArrayOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()
    except Exception as error:
        raise ValueError(f"{where} is not a readable CIFAR python pickle ({type(error).__name__}: {error})") from error
    if not isinstance(obj, dict):
        raise ValueError(f"{where} should hold a dict, found {type(obj).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _read_cifar_python(source: _Source, layout: _Layout, dataset: str, image_size: int | None):
    join = posixpath.join
    if layout.kind == "cifar10-python":
        split_files = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
        meta_file, names_key, labels_key = "batches.meta", "label_names", "labels"
    else:
        split_files = {"train": ["train"], "test": ["test"]}
        meta_file, names_key, labels_key = "meta", "fine_label_names", "fine_labels"
    wanted = [join(layout.prefix, f) for files in split_files.values() for f in files]
    meta_path = join(layout.prefix, meta_file)
    have_meta = meta_path in set(source.files())
    blobs = dict(source.read_many(wanted + ([meta_path] if have_meta else [])))

    official = list(OFFICIAL_RELEASES[dataset]["classes"])
    if have_meta:
        meta = _unpickle(blobs[meta_path], f"{source.origin}:{meta_path}")
        if names_key not in meta:
            raise ValueError(f"{source.origin}:{meta_path} has no {names_key!r} entry")
        classes = [_text(c) for c in meta[names_key]]
    else:
        classes = official
    if dataset == "cifar10" and classes != official:
        raise ValueError(f"{source.origin}: label names {classes} differ from the official CIFAR-10 classes")

    arrays, labels = {}, {}
    for split, files in split_files.items():
        xs, ys = [], []
        for f in files:
            where = f"{source.origin}:{join(layout.prefix, f)}"
            batch = _unpickle(blobs[join(layout.prefix, f)], where)
            if "data" not in batch or labels_key not in batch:
                raise ValueError(f"{where} lacks the 'data' or {labels_key!r} entry")
            x = np.asarray(batch["data"])
            y = np.asarray(batch[labels_key], dtype=np.int64)
            if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 or len(y) != len(x):
                raise ValueError(f"{where}: expected uint8 data N x 3072 with N labels, got {x.dtype} {x.shape} "
                                 f"and {len(y)} labels")
            if len(y) and (y.min() < 0 or y.max() >= len(classes)):
                raise ValueError(f"{where}: labels outside [0, {len(classes)})")
            xs.append(x.reshape(-1, 3, 32, 32))
            ys.append(y)
        arrays[split] = np.ascontiguousarray(np.concatenate(xs))
        labels[split] = np.concatenate(ys)
        if image_size is not None and image_size != 32:
            arrays[split] = _resize_array(arrays[split], image_size)
    return classes, arrays, labels


def _resize_array(images: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    out = np.empty((len(images), 3, size, size), dtype=np.uint8)
    for i, img in enumerate(images):
        out[i] = np.asarray(_resize_and_centre_crop(Image.fromarray(img.transpose(1, 2, 0)), size)).transpose(2, 0, 1)
    return out


def _portable_origin(source: _Source, layout: _Layout) -> str:
    """The source named by its kind and file name, e.g. "ImageFolder archive cifar10-jpeg.tar.gz",
    "official python release cifar-10-python.tar.gz" or "ImageFolder directory flowers": no path,
    so the provenance (and the cache's bytes) do not depend on where the archive lies."""
    if layout.kind == "image-folder":
        return f"ImageFolder {source.container} {source.name}"
    if source.container == "archive":
        return f"official python release {source.name}"
    return f"official python release directory {source.name}"


def _read_source(source: _Source, dataset: str, image_size: int | None, origin_label: str | None = None):
    """Decode a source into (classes, arrays, labels, source-provenance dict).

    The provenance names the source by :func:`_portable_origin` (or ``origin_label``), never by
    ``source.origin``, which may be an absolute path."""
    layouts = _detect_layouts(source.files())
    layout = _choose_layout(layouts, dataset, source)
    origin = origin_label or _portable_origin(source, layout)
    started = time.perf_counter()
    if layout.kind in ("cifar10-python", "cifar100-python"):
        classes, arrays, labels = _read_cifar_python(source, layout, dataset, image_size)
        title = OFFICIAL_RELEASES[dataset]["title"]
        how = "downloaded through torchvision" if origin_label else f"read from {source.container} {source.name}"
        provenance = {
            "kind": "official",
            "description": f"official {title} python release (pickled batches, pixel-exact), {how}",
            "formats": ["cifar-python-pickle"],
        }
    else:
        classes, arrays, labels, formats = _read_image_folder(source, layout, dataset, image_size)
        test_note = f"; test split taken from {layout.test_folder}/" if layout.test_folder != "test" else ""
        resize_note = f"; resized (shorter side {image_size}, bilinear) and centre-cropped to {image_size}x{image_size}" \
            if image_size is not None else ""
        if dataset in OFFICIAL_RELEASES and formats == ["JPEG"]:
            title = OFFICIAL_RELEASES[dataset]["title"]
            provenance = {
                "kind": "jpeg-copy",
                "description": (f"{title} as a lossy JPEG re-encoding of the official data ({origin}); "
                                f"pixel values differ slightly from the official release, so accuracies may sit "
                                f"1-2 points lower than on the official data{test_note}{resize_note}"),
            }
        else:
            provenance = {
                "kind": "image-folder",
                "description": (f"{origin} ({len(classes)} classes, {'/'.join(formats)} files)"
                                f"{test_note}{resize_note}"),
            }
        provenance["formats"] = formats
    provenance.update({
        "origin": origin,
        "sha256": source.sha256(),
        "layout": layout.kind,
        "layout_root": layout.prefix,
    })
    log.info("read %s (%s) in %.1f s", origin, layout.kind, time.perf_counter() - started)
    return classes, arrays, labels, provenance
