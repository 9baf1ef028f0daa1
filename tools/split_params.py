"""Move the scales' blocks out of ``params.yaml`` into ``scales.yaml``, so ``dvc exp show`` is narrow.

DVC prints every key of the repository's ``params.yaml`` as a column of ``dvc exp show``, tracked or
not (hundreds with the smoke / cpu / paper blocks). After this split ``params.yaml`` holds what a user
switches: ``scale`` (``dvc exp run -S scale=smoke``) and, when wanted, overrides of single values
(``cpu: {quickstart: {epochs: 3}}``, merged over the blocks by :func:`rewire.pipeline.params.load`);
``scales.yaml`` holds the blocks, byte for byte as they were (comments included). The first DVC
stage, ``validate_params``, then depends on both files.

    python tools/split_params.py            # in the repository root; refuses to run twice
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

HEADER = """# The blocks of every scale: one entry per experiment (== DVC stage == rewire.experiments.<name>),
# each checked against its experiment's Config before any work (`python -m rewire validate`).
# The active scale and any override of a single value are in params.yaml (merged over these blocks).
"""


def split(root: Path) -> tuple[str, str]:
    """(new params.yaml, scales.yaml) from the current ``params.yaml``: everything from the first
    scale block (``smoke:``, ``cpu:`` or ``paper:`` at column 0) onward goes to ``scales.yaml``."""
    text = (root / "params.yaml").read_text(encoding="utf-8")
    first = re.search(r"(?m)^(smoke|cpu|paper):\s*$", text)
    if first is None:
        raise SystemExit("params.yaml holds no scale block (already split?); nothing to do")
    head, blocks = text[: first.start()], text[first.start() :]
    if re.search(r"(?m)^scale:", blocks):
        raise SystemExit("params.yaml has `scale:` after its blocks; move it to the top first")
    return head.rstrip() + "\n", HEADER + "\n" + blocks


def add_dependency(dvc_yaml: str) -> str:
    """``scales.yaml`` beside ``params.yaml`` in the deps of ``validate_params``."""
    if "      - scales.yaml" in dvc_yaml:
        return dvc_yaml
    anchor = "  validate_params:"
    start = dvc_yaml.index(anchor)
    deps = dvc_yaml.index("      - params.yaml\n", start)
    end = deps + len("      - params.yaml\n")
    return dvc_yaml[:end] + "      - scales.yaml         # the blocks of every scale\n" + dvc_yaml[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=".", help="the repository root")
    args = parser.parse_args(argv)
    root = Path(args.root)
    if (root / "scales.yaml").exists():
        print("scales.yaml exists already; nothing to do", file=sys.stderr)
        return 1
    params, scales = split(root)
    (root / "scales.yaml").write_text(scales, encoding="utf-8")
    (root / "params.yaml").write_text(params, encoding="utf-8")
    (root / "dvc.yaml").write_text(add_dependency((root / "dvc.yaml").read_text(encoding="utf-8")), encoding="utf-8")
    print(f"params.yaml: {len(params.splitlines())} lines; scales.yaml: {len(scales.splitlines())} lines")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
