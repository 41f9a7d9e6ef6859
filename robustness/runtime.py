"""Run-time helpers shared by every module: device choice (and the per-step XLA sync), seeding, progress bars,
the eval-mode guard that attacks, sweeps and defenses run under, and the
opt-in speed options (bf16 autocast, channels-last memory format)."""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, get_args

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .errors import InvalidArgument
from .vocab import Precision

T = TypeVar("T")


DEVICE_HELP = "auto (cuda, xla, mps, cpu in that order), cpu, cuda, cuda:N, xla, mps"
_TPU_PCI_VENDOR = "0x1ae0"  # Google's PCI vendor id: a TPU chip on this host


@dataclass(frozen=True)
class DeviceChoice:
    """The device a run uses and why it was chosen."""

    device: torch.device
    reason: str

    def __str__(self) -> str:
        return f"device {self.device}: {self.reason}"


def choose_device(name: str = "auto") -> DeviceChoice:
    """The device ``name`` asks for with the reason, or with ``"auto"`` the best one present:
    CUDA, then XLA (``torch_xla`` imports and a TPU or ``PJRT_DEVICE`` is present), then MPS, then CPU.

    A device asked for by name that this machine cannot give raises :class:`InvalidArgument`
    with one message per kind (CUDA, MPS, XLA) naming what is missing.
    """
    if name == "auto":
        return _auto_device()
    if name == "xla" or name.startswith("xla:"):
        return _xla_device(name)
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise InvalidArgument(f"unknown device {name!r}: use {DEVICE_HELP}") from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidArgument(f"device {name!r} asked for, but CUDA is not available (no NVIDIA GPU, or a "
                                  f"CPU-only torch build): use --device cpu, or auto")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise InvalidArgument(f"device {name!r} asked for, but this machine has {count} CUDA device(s): "
                                  f"use cuda:0 to cuda:{count - 1}")
        return DeviceChoice(device, f"named, not auto-detected; {torch.cuda.get_device_name(device)}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InvalidArgument(f"device {name!r} asked for, but MPS is not available (it needs an Apple-silicon "
                              f"Mac and a macOS build of torch): use --device cpu, or auto")
    backend = getattr(torch, device.type, None)  # torch.xpu and the like answer is_available() too
    if device.type != "mps" and not getattr(backend, "is_available", lambda: True)():
        raise InvalidArgument(f"device {name!r} asked for, but {device.type} is not available: use --device cpu")
    return DeviceChoice(device, "named, not auto-detected")


def _auto_device() -> DeviceChoice:
    if torch.cuda.is_available():
        return DeviceChoice(torch.device("cuda"), f"auto: CUDA is available ({torch.cuda.get_device_name(0)})")
    why_not_xla = _xla_missing(asked=False)
    if why_not_xla is None:
        return DeviceChoice(_xla_device("xla").device, f"auto: no CUDA; torch_xla imports and {_xla_target()}")
    if torch.backends.mps.is_available():
        return DeviceChoice(torch.device("mps"), "auto: no CUDA or XLA; Apple MPS is available")
    return DeviceChoice(torch.device("cpu"), f"auto: no CUDA GPU, no XLA ({why_not_xla}), no Apple MPS")


def _tpu_present() -> bool:
    """Whether a TPU chip sits on this host (its PCI vendor id, as torch_xla itself checks)."""
    for vendor in Path("/sys/bus/pci/devices").glob("*/vendor"):
        try:
            if vendor.read_text().strip() == _TPU_PCI_VENDOR:
                return True
        except OSError:
            continue
    return False


def _xla_target() -> str:
    """What torch_xla would run on: ``PJRT_DEVICE`` when set, else the TPU found."""
    pjrt = os.environ.get("PJRT_DEVICE")
    return f"PJRT_DEVICE={pjrt}" if pjrt else "a TPU is present"


def _xla_missing(asked: bool) -> str | None:
    """Why XLA cannot be used here, ``None`` when it can. Asked for by name, torch_xla is imported
    first (its absence is the likelier problem); for ``auto``, only where a TPU or ``PJRT_DEVICE`` is."""
    target = bool(os.environ.get("PJRT_DEVICE")) or _tpu_present()
    if not target and not asked:
        return "no TPU and PJRT_DEVICE not set"
    try:
        import torch_xla  # noqa: F401, PLC0415 (optional dependency)
    except ImportError as err:
        return f"torch_xla does not import ({err})"
    return None if target else "torch_xla imports, but there is no TPU and PJRT_DEVICE is not set"


def _xla_device(name: str) -> DeviceChoice:
    why_not = _xla_missing(asked=True)
    if why_not is not None:
        raise InvalidArgument(
            f"device {name!r} asked for, but XLA is not usable here ({why_not}): on a TPU runtime (Colab, "
            f"Cloud TPU) torch_xla comes preinstalled with its own torch; elsewhere install the torch_xla "
            f"release that matches your torch and set PJRT_DEVICE (CPU or TPU), or use --device cpu"
        )
    import torch_xla  # noqa: PLC0415 (optional dependency)

    index = int(name.partition(":")[2] or 0)
    return DeviceChoice(torch_xla.device(index), f"torch_xla {torch_xla.__version__} with {_xla_target()}")


_announced: set[str] = set()


def pick_device(name: str = "auto") -> torch.device:
    """The device of :func:`choose_device`; the first time a process picks a device, one line on
    stderr names it and why (``device xla:0: auto: no CUDA; torch_xla imports and a TPU is present``)."""
    choice = choose_device(name)
    if str(choice) not in _announced:
        _announced.add(str(choice))
        print(choice, file=sys.stderr)
    return choice.device


def needs_fixed_shapes(device: torch.device) -> bool:
    """Whether loops on ``device`` should keep tensor shapes fixed: on XLA every new shape compiles a
    new graph, so attacks mask finished examples instead of dropping them from the batch."""
    return device.type == "xla"


def sync(device: torch.device) -> None:
    """End one step of a loop on ``device``: on XLA, cut and run the graph traced so far (``torch_xla.sync()``),
    so graphs stay one step long and compile once; elsewhere nothing."""
    if device.type == "xla":
        import torch_xla  # noqa: PLC0415 (optional dependency, present whenever an XLA device exists)

        torch_xla.sync()


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (where tqdm draws a widget)."""
    shell = sys.modules.get("IPython")
    get = getattr(shell, "get_ipython", None)
    return get is not None and type(get()).__name__ == "ZMQInteractiveShell"


class LineProgress:
    """Progress for a log that is not a terminal (a pipe, a file, CI): whole lines, no carriage returns. Once
    the loop has run ``quiet`` seconds (a quicker loop prints nothing), it prints ``desc: done/total (pct%),
    elapsed`` when the count crosses each tenth of ``total`` (each step when the total is unknown or at most 10)
    or ``every`` seconds have passed, and a last line on :meth:`close`. The same ``update``/``close``/iteration
    interface as tqdm's bar."""

    def __init__(self, iterable: Iterable[T] | None, desc: str, total: int | None, every: float = 30.0,
                 quiet: float = 2.0):
        self.iterable, self.desc, self.total, self.every, self.quiet = iterable, desc, total, every, quiet
        self.n, self._tenth, self._shown, self._closed = 0, -1, 0, False
        self._start = self._last = time.monotonic()

    def _line(self) -> str:
        elapsed = f"{time.monotonic() - self._start:.0f} s"
        if not self.total:
            return f"{self.desc}: {self.n} done, {elapsed}"
        return f"{self.desc}: {self.n}/{self.total} ({100 * self.n / self.total:.0f}%), {elapsed}"

    def update(self, n: int = 1) -> None:
        """Count ``n`` more steps; print a line where one is due."""
        self.n += n
        now = time.monotonic()
        tenth = self.n if not self.total or self.total <= 10 else 10 * self.n // self.total
        if now - self._start >= self.quiet and (tenth != self._tenth or now - self._last >= self.every):
            self._tenth, self._last, self._shown = tenth, now, self.n
            print(self._line(), file=sys.stderr, flush=True)

    def close(self) -> None:
        """The last line, if the count moved since the one printed last."""
        if not self._closed and self._shown and self.n != self._shown:
            print(self._line(), file=sys.stderr, flush=True)
        self._closed = True

    def __iter__(self) -> Iterator[T]:
        try:
            for item in self.iterable or ():
                yield item
                self.update()
        finally:
            self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress_bar(desc: str, total: int | None = None, iterable: Iterable[T] | None = None,
                 leave: bool = False) -> Any:
    """A progress bar with tqdm's interface (``update(n)``, ``close()``, iteration, a context manager): tqdm's
    bar in a terminal or a notebook, :class:`LineProgress` where stderr is anything else, so that a piped log
    gets whole lines instead of carriage-return debris."""
    if sys.stderr.isatty() or _in_notebook():
        return tqdm(iterable, desc=desc, total=total, leave=leave, dynamic_ncols=True)
    return LineProgress(iterable, desc, total)


def progress(iterable: Iterable[T], desc: str, total: int | None = None, leave: bool = False) -> Iterator[T]:
    """``iterable`` with a progress bar (:func:`progress_bar`: a widget in notebooks, a bar in a terminal, whole
    lines in a piped log)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    return iter(progress_bar(desc, total, iterable, leave))


@contextmanager
def frozen_eval(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode with parameter gradients off; restore both on exit.

    Restores the training flag of every submodule and each parameter's
    ``requires_grad`` exactly as found, also when the body raises.
    """
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training
        for p, flag in flags:
            p.requires_grad_(flag)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without any)."""
    return next(model.parameters(), torch.empty(0)).device


def check_precision(precision: str) -> Precision:
    """``precision`` if it is one of :data:`Precision`; else :class:`InvalidArgument`."""
    if precision not in get_args(Precision):
        raise InvalidArgument(f"unknown precision {precision!r}: use 'fp32' or 'bf16'")
    return precision  # type: ignore[return-value]


@contextmanager
def autocast(device: torch.device, precision: Precision = "fp32") -> Iterator[None]:
    """Run the body in ``precision``: ``"fp32"`` as is, or ``"bf16"`` under ``torch.autocast``
    (convolutions and matrix products in bfloat16; losses, softmax and input gradients in fp32).

    bf16 pays off on GPUs with bfloat16 tensor cores (A100, H100); on a CPU it is usually slower.
    """
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=check_precision(precision) == "bf16"):
        yield


def channels_last(model: nn.Module, *images: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Switch ``model`` to the channels-last memory format in place (faster convolutions on
    tensor-core GPUs) and return ``images`` in the same format; values are unchanged."""
    model.to(memory_format=torch.channels_last)
    return tuple(x.contiguous(memory_format=torch.channels_last) for x in images)
