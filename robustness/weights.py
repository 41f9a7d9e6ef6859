"""Reading weight files safely: ``torch.load`` on the CPU with ``weights_only=True``.

Only what torch raises for bytes it cannot unzip or unpickle calls a file damaged (a
truncated or random file, a text file, a legacy pickle cut short); a file that is fine but
holds pickled Python objects gets its own message; any other error is not about the file
and propagates. Third-party loaders (torchvision, timm, RobustBench) run under
:func:`weights_only_loads`, so they are held to the same rule.
"""

from __future__ import annotations

import os
import pickle
import re
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError

# What torch raises for bytes it cannot unpickle: each seen for random, truncated or bit-flipped files.
_UNPICKLING_ERRORS = (pickle.UnpicklingError, EOFError, UnicodeDecodeError, struct.error, IndexError, KeyError,
                      AssertionError)
# RuntimeErrors of the zip reader and of the storage and legacy-format loaders; any other is not about the file.
_ARCHIVE_ERROR = re.compile(r"PytorchStreamReader|unexpected EOF|storage has wrong byte size|invalid header|"
                            r"Invalid magic number|Invalid protocol version")
_FOREIGN_ZIP = re.compile(r"file in archive is not in a subdirectory|hasRecord\(\"version\"\)|data\.pkl")
_TORCHSCRIPT_OR_TAR = re.compile(r"TorchScript archive|torch\.jit\.load|legacy \.tar format")
_FORBIDDEN_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")
# A global of a module torch blocks outright (os, posix, subprocess, sys, ...): pickled code, never weights.
_REFUSED_CODE = re.compile(r"unsupported GLOBAL (\S+) whose module \S+ is blocked")
_PLAIN_PICKLE = re.compile(r"Unsupported operand \d+")  # an opcode torch.save never writes


def _plain_pickle(path: str | Path, found: re.Match) -> str | None:
    """The message for a file that starts as ``pickle.dump`` with protocol 4 or 5 writes (an opcode torch.save
    never writes stops the reader); ``None`` for other bytes (damaged: the generic message)."""
    with open(path, "rb") as f:
        head = f.read(2)
    if len(head) < 2 or head[0] != 0x80 or head[1] not in (4, 5):
        return None
    return (f"{path} is a pickle written by pickle.dump (protocol {head[1]}), not torch.save, which loading with "
            f"weights_only=True refuses ({found.group(0)}): not a checkpoint; do not load it unless you trust where "
            f"it came from")


# What a refusal of torch.load means, by the error's type and message: (type, pattern, message of path and
# match, or None when it does not apply after all).
_REFUSALS: tuple[tuple[type[BaseException], re.Pattern, Any], ...] = (
    (pickle.UnpicklingError, _REFUSED_CODE, lambda path, found: (
        f"{path} holds code that was refused (a call of {found.group(1)}), not weights: loading it with "
        f"weights_only=False would run that code; do not load it, and delete it unless you know who made it and why")),
    (pickle.UnpicklingError, _PLAIN_PICKLE, _plain_pickle),
    (pickle.UnpicklingError, _FORBIDDEN_GLOBAL, lambda path, found: (
        f"{path} holds a pickled Python object ({found.group(1)}), not only tensors, and is read with "
        f"weights_only=True, which refuses to run code from a file. If you trust it, load it yourself and "
        f"save its weights: torch.save(torch.load(path, weights_only=False).state_dict(), new_path)")),
    (RuntimeError, _TORCHSCRIPT_OR_TAR, lambda path, found: (
        f"{path} is a TorchScript archive or an old .tar checkpoint, which loading with weights_only=True "
        f"refuses. If you trust it, load it yourself (torch.jit.load or torch.load) and torch.save its state_dict")),
    (RuntimeError, _FOREIGN_ZIP, lambda path, found: (
        f"{path} is a zip archive but not a torch file (torch.save writes one folder holding data.pkl): not a "
        f"checkpoint; give the path of a checkpoint or of a state_dict saved with torch.save")),
)


def unreadable_file_error(path: str | Path, err: BaseException) -> CheckpointError | None:
    """The :class:`CheckpointError` that ``err``, raised by ``torch.load(path)``, means for the user; ``None``
    when ``err`` is not about the file's bytes (it should then propagate as it is)."""
    for kind, pattern, message in _REFUSALS:
        if isinstance(err, kind) and (found := pattern.search(str(err))) and (text := message(path, found)):
            return CheckpointError(text)
    if isinstance(err, _UNPICKLING_ERRORS) or (isinstance(err, RuntimeError) and _ARCHIVE_ERROR.search(str(err))):
        return CheckpointError(
            f"{path} is not a readable checkpoint ({type(err).__name__}): it may be corrupt or truncated; "
            f"delete it and train (or download) it again"
        )
    return None


def load_torch_file(path: str | Path) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``; a missing file, or one torch cannot
    unzip or unpickle, raises :class:`CheckpointError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: train one first (python -m robustness train ...)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        problem = unreadable_file_error(path, err)
        if problem is None:
            raise
        raise problem from None


@contextmanager
def weights_only_loads() -> Iterator[None]:
    """Make every ``torch.load`` in the body use ``weights_only=True``, also where a third-party loader
    passes ``weights_only=False`` (``torch.hub.load_state_dict_from_url`` does by default)."""
    before = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        if before is None:
            del os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"]
        else:
            os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = before
