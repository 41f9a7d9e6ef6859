"""Atomic writes: a result file either exists whole or not at all."""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import InvalidArgument

_UMASK = os.umask(0)
os.umask(_UMASK)  # read the process's umask: there is no call that reads it without setting it


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place on success.

    On any exception the temporary file is removed and ``path`` is left untouched. The file
    gets the permissions a plain ``open(path, "w")`` would give it (``mkstemp`` makes it
    private to its owner).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        tmp_path.chmod(0o666 & ~_UMASK)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def save_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` as indented JSON, atomically. NaN is written as ``NaN``."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")
    return Path(path)


def load_json(path: str | os.PathLike) -> Any:
    """Read a JSON file written by :func:`save_json`."""
    return json.loads(Path(path).read_text())


def _python(value: Any) -> Any:
    """A numpy scalar as the Python number it holds; anything else as it is."""
    return value.item() if isinstance(value, np.generic) else value


def _cell(value: Any) -> Any:
    """A CSV cell: a float as its ``repr`` (exact: it reads back as the same number)."""
    value = _python(value)
    return repr(value) if isinstance(value, float) else value


def save_csv(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Write ``rows`` as a plain CSV (a header line, then one line per row; no comment lines), atomically.

    Columns are every key in first-seen order (a row without one leaves it empty); floats are written
    exactly, so ``pandas.read_csv(path)`` reads the numbers back as they were.
    """
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows({key: _cell(value) for key, value in row.items()} for row in rows)
    return Path(path)


def save_rows(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Write a table of ``rows`` to ``path`` by its suffix: ``.csv`` (:func:`save_csv`) or ``.json`` (a list of
    objects), atomically."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return save_csv(rows, path)
    if suffix == ".json":
        return save_json([{key: _python(value) for key, value in row.items()} for row in rows], path)
    raise InvalidArgument(f"{path}: a table is written as .csv or .json, not {suffix or 'a file without suffix'}")


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """Write arrays to a compressed ``.npz`` file, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    return Path(path)


def save_torch(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path``, atomically (the object must load with ``weights_only=True``)."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)
