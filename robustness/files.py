"""Atomic writes: a result file either exists whole or not at all.

Every write of the package goes through :func:`atomic_path`: the data goes to a temporary file beside the
target, ``.<name>.<host>-<pid>.<random>.tmp``, which is renamed into place once complete. A write that fails
(no space left, a read-only folder, a path through a file) removes its temporary file and then raises one
:class:`~robustness.errors.WriteError` naming the path and the cause. A process killed between the write and
the rename leaves its temporary file behind; the next write into that folder removes it once it is stale
(:func:`remove_stale_temporaries`).
"""

from __future__ import annotations

import csv
import errno
import json
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import DataNotFoundError, InvalidArgument, WriteError

_UMASK = os.umask(0)
os.umask(_UMASK)  # read the process's umask: there is no call that reads it without setting it


_HOST = re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname()) or "host"
# A temporary file of atomic_path: .<target>.<host>-<pid>.<mkstemp's 8 characters>.tmp, or (written before the
# host and pid were part of the name) .<target>.<8 characters>.tmp
_TEMPORARY = re.compile(r"^\.(?P<target>.+?)\.(?:(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)\.)?[a-z0-9_]{8}\.tmp$")
STALE_SECONDS = 3600  # a temporary file untouched this long is an orphan, whoever wrote it

_CAUSES = {
    errno.ENOSPC: "no space left on the device: free some space, or write elsewhere",
    errno.EDQUOT: "the disk quota is exceeded: free some space, or write elsewhere",
    errno.EROFS: "the file system is read-only: write elsewhere",
    errno.EACCES: "permission denied (the folder is read-only for this user): write elsewhere",
    errno.EPERM: "permission denied (the folder is read-only for this user): write elsewhere",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    errno.EEXIST: "a part of the path is a file, not a folder: choose another path",
    errno.EISDIR: "it is a folder, not a file: give a file name",
}


def write_error(path: str | os.PathLike, err: OSError) -> WriteError:
    """The :class:`WriteError` that ``err``, raised while writing ``path``, means for the user."""
    cause = _CAUSES.get(err.errno, f"{err.strerror or err} (errno {err.errno})")
    return WriteError(f"cannot write {path}: {cause}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: the process exists, owned by another user
        return True
    return True


def is_stale(temporary: Path, now: float | None = None) -> bool:
    """Whether ``temporary``, a file named as :func:`atomic_path`'s temporary files are, is an orphan of a killed
    write: its writer was a process of this host that is no longer running, or it has not been touched for
    :data:`STALE_SECONDS` (a live write touches its file as it goes; this also covers other hosts' writers)."""
    found = _TEMPORARY.match(temporary.name)
    if found is None:
        return False
    if found["pid"] is not None and found["host"] == _HOST and not _pid_alive(int(found["pid"])):
        return True
    try:
        return (time.time() if now is None else now) - temporary.stat().st_mtime > STALE_SECONDS
    except FileNotFoundError:  # renamed or removed by its writer meanwhile
        return False


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files in ``folder`` that killed writes left behind (:func:`is_stale`); return them."""
    removed = []
    with os.scandir(folder) as entries:
        candidates = [Path(e.path) for e in entries if e.name.startswith(".") and e.name.endswith(".tmp")]
    for temporary in candidates:
        if is_stale(temporary):
            temporary.unlink(missing_ok=True)
            removed.append(temporary)
    return removed


def _sync(path: Path) -> None:
    """Flush ``path``'s data to the disk: a rename may reach the disk before the data it names, so without this
    a power loss could leave an empty file in place of the good one the rename replaced."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place on success.

    On any exception the temporary file is removed and ``path`` is left untouched; an ``OSError`` then
    becomes one :class:`WriteError` naming ``path`` and the cause. The file gets the permissions a plain
    ``open(path, "w")`` would give it (``mkstemp`` makes it private to its owner). Stale temporary files of
    killed writes in the folder are removed first.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path.parent)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{_HOST}-{os.getpid()}.", suffix=".tmp")
        os.close(fd)
    except OSError as err:
        raise write_error(path, err) from None
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        tmp_path.chmod(0o666 & ~_UMASK)
        _sync(tmp_path)
        os.replace(tmp_path, path)
    except OSError as err:
        raise write_error(path, err) from None  # the finally below has removed the temporary file by then
    finally:
        tmp_path.unlink(missing_ok=True)


def write_if_changed(text: str, path: str | os.PathLike) -> bool:
    """Write ``text`` to ``path`` atomically unless it already holds it; whether it wrote."""
    path = Path(path)
    if path.is_file() and path.read_text() == text:
        return False
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return True


def writable_folder(folder: str | os.PathLike) -> Path:
    """Create ``folder`` (and its parents) and check that a file can be written in it; a folder that cannot be
    written raises :class:`WriteError` naming it and the cause, before any work is spent."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise write_error(folder, err) from None
    return folder


def check_table_path(path: str | os.PathLike) -> Path:
    """Check, before the work, that :func:`save_rows` can write ``path``: a ``.csv`` or ``.json`` name, not a
    folder, in a folder that can be written (created if missing)."""
    path = Path(path)
    _table_suffix(path)
    if path.is_dir():
        raise write_error(path, IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR)))
    writable_folder(path.parent)
    return path


def save_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` as indented JSON, atomically. NaN is written as ``NaN``."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")
    return Path(path)


def load_json(path: str | os.PathLike, rerun: str = "the command that wrote it") -> Any:
    """Read a JSON file written by :func:`save_json`. A file that is not JSON (truncated, or damaged) raises
    :class:`DataNotFoundError` saying to delete it and rerun ``rerun``."""
    try:
        return json.loads(Path(path).read_text())
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError both are
        raise DataNotFoundError(f"{path} is unreadable (not valid JSON: {err}): delete {path} and rerun {rerun} "
                                f"to recompute it") from None


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
    if _table_suffix(path) == ".csv":
        return save_csv(rows, path)
    return save_json([{key: _python(value) for key, value in row.items()} for row in rows], path)


def _table_suffix(path: str | os.PathLike) -> str:
    """``.csv`` or ``.json``, the suffix of a table's file; any other is an :class:`InvalidArgument`."""
    suffix = Path(path).suffix.lower()
    if suffix not in (".csv", ".json"):
        raise InvalidArgument(f"{path}: a table is written as .csv or .json, not {suffix or 'a file without suffix'}")
    return suffix


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """Write arrays to a compressed ``.npz`` file, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    return Path(path)


def save_torch(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path``, atomically (the object must load with ``weights_only=True``)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        try:
            torch.save(obj, f)
        except RuntimeError as err:
            # torch's zip writer reports a failed write of the file object ("unexpected pos ..."); the OSError
            # it hides (e.g. no space left) is what the user needs
            if isinstance(err.__context__, OSError):
                raise err.__context__ from None
            raise
    return Path(path)
