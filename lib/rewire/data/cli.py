"""The command line ``python -m rewire.data``: ``prepare`` a dataset's cache or ``verify`` an existing one.

Both print the cache's path, source, counts and checksums; they exit with status 2 and a
one-paragraph explanation (no traceback) when the data are missing, damaged or the wrong ones.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rewire.data.cache import ENV_ARCHIVE, existing_cache, load, prepare, read_cache
from rewire.data.datasets import CorruptDataError, DataNotFoundError

__all__ = ["main"]

# The parser's description: the first line of the package docstring.
_DESCRIPTION = (
    "Datasets for rewire: a compact prepared cache, in-memory uint8 tensors and batched on-device augmentation."
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rewire.data", description=_DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("prepare", help="create the prepared cache root/<dataset> (cache > archive > download)")
    p.add_argument("--dataset", default="cifar10", help="cifar10, cifar100 or a name for an ImageFolder dataset")
    p.add_argument("--root", default="data", help="folder holding the prepared caches (default: data)")
    p.add_argument("--archive", default=None, help=f"local archive or directory (default: ${ENV_ARCHIVE})")
    p.add_argument("--no-download", action="store_true", help="never try the torchvision download")
    p.add_argument("--image-size", type=int, default=None, help="resize image-folder data to N x N")
    v = commands.add_parser("verify", help="check an existing cache's checksums and describe it (no preparation)")
    v.add_argument("--dataset", default="cifar10")
    v.add_argument("--root", default="data")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    root_existed = Path(args.root).exists()
    try:
        if args.command == "prepare":
            started = time.perf_counter()
            path = prepare(
                args.dataset, args.root, archive=args.archive, download=not args.no_download, image_size=args.image_size
            )
            seconds = time.perf_counter() - started
            data = read_cache(path)  # verify the checksums again, without a second "using the prepared cache"
        else:
            path, seconds = existing_cache(args.dataset, args.root), None
            data = load(args.dataset, args.root, download=False)
    except (DataNotFoundError, CorruptDataError, ValueError) as error:
        if not root_existed:
            _remove_empty(Path(args.root))  # a failed preparation leaves nothing behind
        print(f"error: {error}", file=sys.stderr)
        return 2
    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    src = data.source
    print(f"cache: {path}")
    print(f"source: {src.get('kind')} - {src.get('description')}")
    digest = f" (sha256 {src['sha256']})" if src.get("sha256") else ""
    print(f"origin: {src.get('origin')}{digest}")
    print(
        f"classes: {data.num_classes}; train: {data.train_labels.numel()}; test: {data.test_labels.numel()}; "
        f"images: {'x'.join(str(s) for s in data.image_shape)}"
    )
    for fname, digest in meta["sha256"].items():
        print(f"sha256 {fname}: {digest}")
    if seconds is not None:
        print(f"seconds: {seconds:.1f}")
    return 0


def _remove_empty(folder: Path) -> None:
    """Remove ``folder`` and its subfolders if no file is left in them (e.g. ``data/`` after a failed download)."""
    if not folder.is_dir():
        return
    for path in sorted((p for p in [folder, *folder.rglob("*")] if p.is_dir()), key=lambda p: -len(p.parts)):
        try:
            path.rmdir()
        except OSError:
            pass
