"""Run-time helpers shared by every module: device choice, seeding, progress bars,
the eval-mode guard that attacks, sweeps and defenses run under (SPEC 1), and the
opt-in speed options (bf16 autocast, channels-last memory format)."""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Literal, TypeVar, get_args

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .errors import InvalidArgument

T = TypeVar("T")
Precision = Literal["fp32", "bf16"]


def pick_device(name: str = "auto") -> torch.device:
    """Return the device named, or with ``"auto"`` the best one present:
    CUDA, then an XLA device (TPU, when ``torch_xla`` imports), then MPS, then CPU."""
    if name != "auto":
        try:
            device = torch.device(name)
        except RuntimeError as err:
            raise InvalidArgument(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from err
        if device.type == "cuda" and not torch.cuda.is_available():
            raise InvalidArgument(f"device {name!r} asked for, but CUDA is not available: use --device cpu")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    try:
        import torch_xla.core.xla_model as xm  # noqa: PLC0415 (optional dependency)

        return xm.xla_device()
    except ImportError:
        pass
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def progress(iterable: Iterable[T], desc: str, total: int | None = None, leave: bool = False) -> Iterator[T]:
    """A tqdm progress bar (a widget in notebooks, text in a terminal)."""
    return tqdm(iterable, desc=desc, total=total, leave=leave, dynamic_ncols=True)


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
