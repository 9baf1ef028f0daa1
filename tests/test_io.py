"""Atomic writes leave either the old file or the new one, never a partial file."""

import json

import pytest

from rewire.io import atomic_path, write_json


def test_write_json_round_trips_and_leaves_no_temporary(tmp_path):
    path = write_json(tmp_path / "sub" / "m.json", {"a": (1, 2), "b": 0.5})
    assert json.loads(path.read_text()) == {"a": [1, 2], "b": 0.5}
    assert [p.name for p in path.parent.iterdir()] == ["m.json"]


def test_failure_keeps_the_previous_file(tmp_path):
    path = tmp_path / "m.json"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_written_files_get_ordinary_permissions(tmp_path):
    import os

    path = write_json(tmp_path / "m.json", {})
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
