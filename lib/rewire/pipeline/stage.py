"""Execute a notebook as a DVC stage: ``python -m rewire.pipeline NOTEBOOK --stage NAME --out DIR``.

What it does, in order:

1. reads ``params.yaml``, picks the active scale and the stage's block (plus the keys of
   any top-level mapping named with ``--shared``, such as the sweep grid ``dpf_grid``, and the
   scale-independent strings given with ``--set NAME=VALUE``), and checks it as the first stage
   does (:func:`rewire.pipeline.validate.check_block`): every value against the notebook's
   ``parameters`` cell and the experiment's schema, and every notebook parameter a field of it;
2. runs the notebook with papermill (kernel ``python3``, working directory the
   notebook's folder), injecting the block plus ``scale``, ``out_dir`` and, when
   the notebook declares it, ``checkpoint_dir`` (``checkpoints/<stage>``, kept by
   DVC between runs so that a killed stage resumes);
3. the notebook writes its artefacts into a temporary directory next to ``DIR``;
   the executed notebook goes there too. Only when every cell succeeded is the
   temporary directory renamed to ``DIR``. On failure nothing is left in ``DIR``;
   the executed notebook with the traceback is kept as ``results/failed/<stage>.ipynb``, and the
   error's whole message (e.g. the three ways to get missing data) is printed, the line DVC
   shows. A data or checkpoint folder the failed stage created and left empty is removed.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from rewire.experiments.schema import ConfigError
from rewire.pipeline import params as params_module
from rewire.pipeline import validate


def run_notebook(
    notebook: str | os.PathLike,
    stage: str,
    out_dir: str | os.PathLike,
    *,
    params_path: str | os.PathLike = "params.yaml",
    scale: str | None = None,
    checkpoint_root: str | os.PathLike = "checkpoints",
    failed_dir: str | os.PathLike = "results/failed",
    kernel_name: str = "python3",
    shared: Sequence[str] = (),
    fixed: dict[str, str] | None = None,
) -> Path:
    import papermill

    notebook, out_dir = Path(notebook), Path(out_dir)
    if not notebook.exists():
        raise FileNotFoundError(f"notebook {notebook} not found")
    scale, values = params_module.stage_values(stage, params_path, scale)
    values = {**params_module.shared_values(shared, params_path), **values, **(fixed or {})}
    declared = params_module.notebook_parameters(notebook)
    validate.check_block(stage, values, f"{params_module.source(params_path)} '{scale}.{stage}'", notebook, declared)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.parent.glob(f".tmp-{out_dir.name}-*"):  # left by a run killed with SIGKILL
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{out_dir.name}-", dir=out_dir.parent))
    os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes it private; results are meant to be shared
    # Paths relative to the notebook's folder (its working directory): the executed notebook, a
    # committed result, never carries a machine's absolute path.
    here = notebook.parent.resolve()
    parameters = {**values, "scale": scale, "out_dir": os.path.relpath(staging.resolve(), here)}
    if "checkpoint_dir" in declared:
        parameters["checkpoint_dir"] = os.path.relpath((Path(checkpoint_root) / stage).resolve(), here)
    executed = staging / notebook.name
    created = _absent_folders(notebook.parent, {**declared_defaults(declared), **parameters})
    # Progress bars inside the kernel are logged line by line; keep them sparse.
    os.environ.setdefault("TQDM_MININTERVAL", "15")
    try:
        papermill.execute_notebook(
            str(notebook),
            str(executed),
            parameters=parameters,
            kernel_name=kernel_name,
            cwd=str(notebook.parent),
            progress_bar=False,
            log_output=True,
        )
    except BaseException:
        _remove_if_empty(created)
        if executed.exists():
            failed = Path(failed_dir) / f"{stage}.ipynb"
            failed.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(executed), failed)
            print(f"stage '{stage}' failed; the executed notebook with the traceback is {failed}", file=sys.stderr)
        raise
    else:
        # name the final directory, not the staging one, in the executed notebook (parameters, metadata)
        _make_portable(executed, notebook, out_dir / notebook.name, staging.name, out_dir.name)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
        return out_dir / notebook.name
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def declared_defaults(declared: dict) -> dict:
    return {name: info["default"] for name, info in declared.items()}


# Parameters naming folders a notebook may create before it fails (the data cache, the runs).
FOLDER_PARAMETERS = ("data_root", "checkpoint_dir")


def _absent_folders(notebook_dir: Path, parameters: dict) -> list[Path]:
    """The folders named by :data:`FOLDER_PARAMETERS` (relative to the notebook's folder) that do not exist
    yet (for a nested one, its topmost missing ancestor)."""
    folders = []
    for name in FOLDER_PARAMETERS:
        value = parameters.get(name)
        if isinstance(value, str) and value:
            folder = (notebook_dir / value).resolve()
            if not folder.exists():
                while not folder.parent.exists():  # the topmost folder that a run would create
                    folder = folder.parent
                folders.append(folder)
    return folders


def _remove_if_empty(folders: list[Path]) -> None:
    """Remove the folders a failed stage created and left empty (e.g. ``data/`` after a failed download)."""
    for folder in folders:
        for path in sorted((p for p in [folder, *folder.rglob("*")] if p.is_dir()), key=lambda p: -len(p.parts)):
            try:
                path.rmdir()  # only empty folders: nothing the stage wrote is lost
            except OSError:
                pass


def failure_message(error: BaseException) -> str:
    """The failed cell's exception with its whole message (papermill's error, else the error itself).

    A library error explains itself in several lines (e.g. :class:`rewire.data.DataNotFoundError`'s three
    ways to get the data); DVC shows the stage's stderr, so the whole message goes there.
    """
    name, value = getattr(error, "ename", None), getattr(error, "evalue", None)
    if name is None:
        name, value = type(error).__name__, str(error)
    text = str(value or "").strip()
    return f"{name}: {text}" if text else name


def _relative(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it, else its file name."""
    resolved, here = Path(path).resolve(), Path.cwd().resolve()
    return resolved.relative_to(here).as_posix() if resolved.is_relative_to(here) else resolved.name


def _make_portable(executed: Path, notebook: Path, final: Path, staging_name: str, final_name: str) -> None:
    """Name the final directory, not the staging one, and no absolute path in the executed notebook (paths under
    the working directory, the checkout, are written relative to it)."""
    import json

    text = executed.read_text(encoding="utf-8").replace(staging_name, final_name)
    # e.g. a warning's "<checkout>/lib/rewire/...py:537": repository paths become relative to the checkout
    text = text.replace(json.dumps(Path.cwd().resolve().as_posix() + "/")[1:-1], "")
    nb = json.loads(text)
    meta = nb.get("metadata", {}).get("papermill", {})
    if meta:
        meta["input_path"], meta["output_path"] = _relative(notebook), _relative(final)
    executed.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt(f"received signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rewire.pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument("notebook", help="notebook to execute, e.g. notebooks/00_quickstart.ipynb")
    parser.add_argument("--stage", required=True, help="stage name: the key of its block in params.yaml")
    parser.add_argument("--out", required=True, help="directory for the executed notebook and its artefacts")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--scale", default=None, help="override params.yaml's scale (smoke, cpu, gpu, paper)")
    parser.add_argument(
        "--shared",
        action="append",
        default=[],
        help="a top-level mapping of params.yaml shared by all scales (e.g. dpf_grid) whose keys "
        "are injected too; repeatable",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a string parameter that is the same at every scale (e.g. runs_dir=../results/dpf_runs)",
    )
    args = parser.parse_args(argv)
    fixed = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--set takes NAME=VALUE, got {item!r}")
        fixed[name] = value
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # A killed stage (Ctrl-C, SIGTERM from a scheduler or `kill`) still removes its staging directory.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        path = run_notebook(
            args.notebook,
            args.stage,
            args.out,
            params_path=args.params,
            scale=args.scale,
            shared=args.shared,
            fixed=fixed,
        )
    except (params_module.ParamsError, ConfigError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"error: stage '{args.stage}' interrupted; nothing was written to {args.out}", file=sys.stderr)
        return 130
    except Exception as error:  # papermill's execution error names the cell and the exception
        print(f"error: stage '{args.stage}' failed: {failure_message(error)}", file=sys.stderr)
        return 1
    print(f"stage '{args.stage}' done: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
