"""Atomic writes: whole files or none, with the permissions of an ordinary write."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
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


def test_tables_are_plain_csv_or_json_with_every_digit(tmp_path) -> None:
    """pandas reads the CSV without options and gets the same numbers back, numpy scalars and NaN included."""
    import pandas as pd  # noqa: PLC0415

    from robustness.errors import InvalidArgument  # noqa: PLC0415
    from robustness.files import save_rows  # noqa: PLC0415

    rows = [{"name": "a", "value": np.float64(1) / 3, "count": np.int64(7), "flag": np.bool_(True)},
            {"name": "b", "value": float("nan"), "count": 2, "extra": 0.1 + 0.2}]
    csv_path = save_rows(rows, tmp_path / "t.csv")
    assert csv_path.read_text().splitlines()[0] == "name,value,count,flag,extra"
    table = pd.read_csv(csv_path)
    assert table["value"][0] == 1 / 3 and np.isnan(table["value"][1]) and table["extra"][1] == 0.1 + 0.2
    assert table["count"].tolist() == [7, 2] and table["flag"][0]
    json_rows = json.loads(save_rows(rows, tmp_path / "t.json").read_text())
    assert json_rows[0] == {"name": "a", "value": 1 / 3, "count": 7, "flag": True}
    with pytest.raises(InvalidArgument, match="as .csv or .json, not .txt"):
        save_rows(rows, tmp_path / "t.txt")


def test_the_data_reaches_the_disk_before_the_rename(tmp_path: Path, monkeypatch) -> None:
    # Without the fsync a power loss after the rename could leave an empty file in place of the old good one.
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append(("fsync", os.fstat(fd).st_size)) or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append(("replace", Path(b).name)) or real_replace(a, b))
    save_json({"a": 1}, tmp_path / "r.json")
    assert [kind for kind, _ in events] == ["fsync", "replace"] and events[0][1] > 0 and events[1][1] == "r.json"
