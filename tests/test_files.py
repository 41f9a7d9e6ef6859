"""Atomic writes: whole files or none, with the permissions of an ordinary write."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from robustness.files import atomic_path, load_json, save_json


def test_written_file_has_ordinary_permissions(tmp_path: Path) -> None:
    ordinary = tmp_path / "ordinary.txt"
    ordinary.write_text("x")
    path = save_json({"a": 1}, tmp_path / "result.json")
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(ordinary.stat().st_mode)
    assert load_json(path) == {"a": 1}


def test_an_error_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = save_json({"a": 1}, tmp_path / "result.json")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert load_json(path) == {"a": 1} and os.listdir(tmp_path) == ["result.json"]
