"""The ImageNet-style ``train/`` + ``val/`` folder tree: the class list, the scan that checks it
(every problem reported at once, with the expected layout) and the index of its images.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rewire.data.datasets import DataNotFoundError
from rewire.data.sources import _IMAGE_EXTENSIONS  # what counts as an image file, shared with the cache reader

SPLIT_FOLDERS = ("train", "val")
_SHOWN = 8  # how many names an error message lists before "..." (our choice: readable with 1000 classes)


class ImageFolderLayoutError(DataNotFoundError):
    """The folder is not an ImageNet-style ``train/`` + ``val/`` tree (or lacks requested classes).

    The message shows the expected layout, what was found, and every problem at once.
    """


# ----------------------------------------------------------------------------- the layout


def read_class_list(classes: Sequence[str] | str | os.PathLike) -> tuple[str, ...]:
    """Class folder names from a list, or from a text file (a ``str``/path) with one name per line.

    In the file, surrounding whitespace is stripped and blank lines and lines starting with
    ``#`` are skipped. The order is kept: it defines the labels ``0..len-1``. An empty list or a
    repeated name raises ``ValueError``; a missing file raises ``FileNotFoundError``.
    """
    if isinstance(classes, (str, os.PathLike)):
        path = Path(classes)
        if not path.is_file():
            raise FileNotFoundError(
                f"class list file {path} does not exist; pass a text file with one class folder name per line, "
                f"or a list of names (a single name must be given as a one-element list)"
            )
        lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
        names = tuple(line for line in lines if line and not line.startswith("#"))
        where = f"class list file {path.name}"
    else:
        names = tuple(classes)
        where = "classes"
        bad = [name for name in names if not isinstance(name, str) or not name.strip()]
        if bad:
            raise ValueError(f"classes must be non-empty strings (folder names), got {bad[:_SHOWN]}")
    if not names:
        raise ValueError(f"{where} names no class; give at least one class folder name")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(
            f"{where} repeats {repeated[:_SHOWN]}; every class may appear once (its position is its label)"
        )
    return names


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(_IMAGE_EXTENSIONS)


def _class_folders(split_dir: Path) -> list[str]:
    """Sorted names of the visible subfolders of ``split_dir``."""
    with os.scandir(split_dir) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def _image_files(class_dir: Path) -> list[str]:
    """Sorted names of the image files in ``class_dir`` (not recursive: the ImageFolder layout is flat)."""
    with os.scandir(class_dir) as entries:
        return sorted(e.name for e in entries if e.is_file() and _is_image(e.name))


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return f"{shown}, ... ({len(names)} in all)" if len(names) > _SHOWN else shown


EXPECTED_LAYOUT = """expected layout (ImageNet ImageFolder):
  {root}/
    train/
      <class_a>/   image files ({extensions})
      <class_b>/   ...
    val/
      <class_a>/   the same class folders as train/
      <class_b>/   ..."""


def _layout_error(root: Path, found: list[str], problems: list[str]) -> ImageFolderLayoutError:
    extensions = ", ".join(_IMAGE_EXTENSIONS[:3]) + ", ..."
    text = EXPECTED_LAYOUT.format(root=root, extensions=extensions)
    text += "\nfound:\n" + "\n".join(f"  {line}" for line in found)
    text += "\nproblems:\n" + "\n".join(f"  - {p}" for p in problems)
    return ImageFolderLayoutError(f"{root} is not a usable ImageNet-style image folder.\n{text}")


@dataclass(frozen=True, eq=False)
class ImageFolderIndex:
    """The checked file list of an ImageNet-style folder: classes, and per split the files and labels.

    ``files[split]`` holds paths relative to ``root`` as a numpy bytes array (one object, so forked
    workers do not copy it page by page through reference counting); ``labels[split]`` is int64.
    Within a split, images are ordered by label, then by file name. ``class_list`` names where a
    class subset came from (``None``: every train/ folder).
    """

    root: Path
    classes: tuple[str, ...]
    files: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    class_list: str | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def num_images(self, split: str) -> int:
        return int(self.labels[split].shape[0])

    @property
    def source(self) -> dict[str, Any]:
        """Where the pixels come from, JSON-serialisable and free of absolute paths (like ``ImageDataset.source``)."""
        origin = f"ImageFolder directory {self.root.name or self.root.resolve().name}"
        counts = {split: self.num_images(split) for split in SPLIT_FOLDERS}
        subset = f"; class subset from {self.class_list}" if self.class_list else ""
        return {
            "kind": "image-folder-stream",
            "description": (
                f"{origin} decoded image by image every epoch ({self.num_classes} classes; "
                f"train {counts['train']}, val {counts['val']} images{subset})"
            ),
            "origin": origin,
            "layout": "image-folder",
            "test_split": "val",
            "counts": counts,
            "classes": list(self.classes),
            "class_list": self.class_list,
        }


def scan_image_folder(
    root: str | os.PathLike, classes: Sequence[str] | str | os.PathLike | None = None
) -> ImageFolderIndex:
    """List and check ``root/train`` and ``root/val`` (the ImageNet ImageFolder layout), decoding nothing.

    Without ``classes`` the labels are the sorted train/ folder names and val/ must hold the
    same set. With ``classes`` (see :func:`read_class_list`) only those folders are read, in that
    order, and each must exist, with images, in both splits. Every problem found -- missing root,
    ``train/`` or ``val/``, a split without class folders, a class folder without images, val/
    classes missing from train/ (or the reverse), requested classes that do not exist -- is
    reported together in one :class:`ImageFolderLayoutError`.
    """
    root = Path(root)
    requested = read_class_list(classes) if classes is not None else None
    if not root.is_dir():
        state = "is a file, not a directory" if root.exists() else "does not exist"
        raise _layout_error(root, [f"{root} {state}"], [f"the root folder {state}"])

    found: list[str] = []
    problems: list[str] = []
    with os.scandir(root) as entries:
        top = sorted(e.name + ("/" if e.is_dir() else "") for e in entries if not e.name.startswith("."))
    found.append(f"{root.name or root}/ holds: {_listing(top) if top else 'nothing'}")
    folders: dict[str, list[str]] = {}
    for split in SPLIT_FOLDERS:
        split_dir = root / split
        if not split_dir.is_dir():
            found.append(f"{split}/: missing")
            problems.append(f"{split}/ is missing")
            continue
        folders[split] = _class_folders(split_dir)
        if not folders[split]:
            found.append(f"{split}/: no class folders")
            problems.append(f"{split}/ holds no class folders (one subfolder per class, images inside)")
        else:
            found.append(f"{split}/: {len(folders[split])} class folders ({_listing(folders[split])})")

    if requested is not None:
        chosen = list(requested)
        for split, names in folders.items():
            absent = [c for c in requested if c not in set(names)]
            if absent:
                problems.append(f"requested classes missing from {split}/: {_listing(absent)}")
    else:
        chosen = folders.get("train") or folders.get("val", [])
        if "train" in folders and "val" in folders:
            extra = sorted(set(folders["val"]) - set(folders["train"]))
            lacking = sorted(set(folders["train"]) - set(folders["val"]))
            if extra:
                problems.append(f"val/ has class folders that train/ lacks: {_listing(extra)}")
            if lacking:
                problems.append(f"train/ has class folders that val/ lacks: {_listing(lacking)}")

    files: dict[str, np.ndarray] = {}
    labels: dict[str, np.ndarray] = {}
    for split, names in folders.items():
        present = set(names)
        paths: list[bytes] = []
        split_labels: list[int] = []
        empty: list[str] = []
        for label, name in enumerate(chosen):
            if name not in present:
                continue
            images = _image_files(root / split / name)
            if not images:
                empty.append(name)
            paths.extend(os.fsencode(f"{split}/{name}/{image}") for image in images)
            split_labels.extend([label] * len(images))
        if empty:
            problems.append(f"class folders in {split}/ without image files: {_listing(empty)}")
        files[split] = np.array(paths, dtype=np.bytes_) if paths else np.zeros(0, dtype="S1")
        labels[split] = np.array(split_labels, dtype=np.int64)
        found.append(
            f"{split}/: {len(paths)} images in the {len(chosen)} {'requested' if requested else 'train/'} classes"
        )
    if problems:
        raise _layout_error(root, found, problems)
    class_list = None
    if requested is not None:
        class_list = f"file {Path(classes).name}" if isinstance(classes, (str, os.PathLike)) else "a list"
    return ImageFolderIndex(root, tuple(chosen), files, labels, class_list)
