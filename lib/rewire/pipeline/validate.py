"""Validate ``params.yaml`` against the whole pipeline before anything runs.

``python -m rewire.pipeline.validate check`` is the first DVC stage (``validate_params``): every
notebook stage's block at the active scale is checked against its notebook's parameters cell,
and every point of the DPF grid (``<scale>.dpf_sweeps.grid``: methods, sparsities, presets, recipes), so a bad value stops
``dvc repro`` before the first training and leaves no result behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from rewire.pipeline.params import (
    ParamsError,
    active_scale,
    check_values,
    load,
    notebook_parameters,
    stage_values,
)


def notebook_stages(dvc_yaml: str | os.PathLike = "dvc.yaml") -> list[tuple[str, Path, str]]:
    """``(stage, notebook, params block)`` of every notebook stage of ``dvc.yaml``."""
    import shlex

    stages = yaml.safe_load(Path(dvc_yaml).read_text(encoding="utf-8"))["stages"]
    found = []
    for name, stage in stages.items():
        words = shlex.split(stage["cmd"]) if isinstance(stage.get("cmd"), str) else []
        if words[:3] == ["python", "-m", "rewire.pipeline"]:
            block = words[words.index("--stage") + 1]
            found.append((name, Path(dvc_yaml).parent / words[3], block))
    return found


def check_grid(values: dict[str, Any], where: str) -> list[str]:
    """Expand the DPF block's ``grid`` (every method registered, every sparsity in (0, 1), every
    preset known, every recipe valid); return the point names."""
    from rewire.experiments.dpf_sweep import grid_points

    try:
        return [point.name for point in grid_points(values)]
    except (TypeError, ValueError) as error:
        raise ParamsError(f"{where}: {error}. Fix params.yaml before `dvc repro`.") from error


def check_pipeline(
    params_path: str | os.PathLike = "params.yaml", dvc_yaml: str | os.PathLike = "dvc.yaml", scale: str | None = None
) -> dict[str, Any]:
    """Check every notebook stage's block at the active scale and the DPF grid; return what was checked."""
    params = load(params_path)
    scale = active_scale(params, scale, where=str(params_path))
    checked = {}
    for name, notebook, block in notebook_stages(dvc_yaml):
        _, values = stage_values(block, params_path, scale)
        check_values(values, notebook_parameters(notebook), where=f"{params_path} '{scale}.{block}'")
        checked[name] = sorted(values)
    if "dpf_sweeps" in params.get(scale, {}):
        _, values = stage_values("dpf_sweeps", params_path, scale)
        checked["dpf_grid"] = check_grid(values, f"{params_path} '{scale}.dpf_sweeps'")
    return {"scale": scale, "stages": checked}


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m rewire.pipeline.validate",
        description="Validate params.yaml against every stage before any runs.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="check every stage block at the active scale and the DPF grid")
    check.add_argument("--params", default="params.yaml")
    check.add_argument("--dvc-yaml", default="dvc.yaml")
    check.add_argument("--scale", default=None)
    check.add_argument("--out", default=None, help="write what was checked as JSON (the DVC stage's output)")
    args = parser.parse_args(argv)
    try:
        checked = check_pipeline(args.params, args.dvc_yaml, args.scale)
    except ParamsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.out:
        from rewire.io import write_json

        write_json(args.out, checked)
    print(f"params.yaml: every stage valid at scale '{checked['scale']}'")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
