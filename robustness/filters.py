"""Synaptic filters and their threshold grids (SPEC 4).

To filter a weight is to set it to 0. For a weight tensor ``W``, threshold ``α``
and pulse half-width ``h``:

=============  ===============  =====================  ====================
kind           original name    zeroes                 threshold sweep
=============  ===============  =====================  ====================
``highpass``   ``step_minmax``  ``W <= α``             ascending, min → max
``lowpass``    ``step_maxmin``  ``W >= α``             descending, max → min
``pulse``      ``pulse_minmax`` ``α - h <= W < α + h`` ascending, min → max
=============  ===============  =====================  ====================

Thresholds are Python floats; a comparison with a weight tensor happens in the
weight's dtype, so the range ends ``min W`` and ``max W`` compare exactly.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, get_args

import numpy as np
import torch
from torch import nn

from .errors import InvalidArgument
from .models import filterable_layers

Kind = Literal["highpass", "lowpass", "pulse"]
KINDS: tuple[str, ...] = get_args(Kind)
ALIASES: dict[str, str] = {"step_minmax": "highpass", "step_maxmin": "lowpass", "pulse_minmax": "pulse"}


def canonical_kind(kind: str) -> Kind:
    """The filter name of ``kind``, which may also be one of the original study's names."""
    name = ALIASES.get(kind, kind)
    if name not in KINDS:
        valid = ", ".join([*KINDS, *ALIASES])
        raise InvalidArgument(f"unknown filter {kind!r}: choose one of {valid}")
    return name  # type: ignore[return-value]


def filter_mask(weight: torch.Tensor, kind: str, alpha: float, half_width: float | None = None) -> torch.Tensor:
    """The boolean mask of the entries of ``weight`` that filter ``kind`` at ``alpha`` sets to 0.

    ``half_width`` (``h``) is required by ``pulse`` and ignored by the step filters.
    """
    kind = canonical_kind(kind)
    if kind == "highpass":
        return weight <= alpha
    if kind == "lowpass":
        return weight >= alpha
    if half_width is None or half_width < 0:
        raise InvalidArgument(f"the pulse filter needs a half_width >= 0, got {half_width}: use filters.half_width()")
    return (weight >= alpha - half_width) & (weight < alpha + half_width)


def apply_filter(weight: torch.Tensor, kind: str, alpha: float, half_width: float | None = None) -> torch.Tensor:
    """A copy of ``weight`` with the entries that filter ``kind`` removes at ``alpha`` set to 0."""
    return weight.masked_fill(filter_mask(weight, kind, alpha, half_width), 0)


def thresholds(kind: str, lo: float, hi: float, count: int) -> list[float]:
    """``count`` evenly spaced thresholds over ``[lo, hi]`` in the sweep order of ``kind``.

    Ascending for ``highpass`` and ``pulse``, descending for ``lowpass``; both ends
    are exactly ``lo`` and ``hi``.
    """
    kind = canonical_kind(kind)
    if count < 2:
        raise InvalidArgument(f"a sweep needs at least 2 thresholds, got {count}")
    if not lo <= hi:
        raise InvalidArgument(f"threshold range [{lo}, {hi}] is empty: give lo <= hi")
    grid = np.linspace(lo, hi, count).tolist()
    return grid[::-1] if kind == "lowpass" else grid


def half_width(lo: float, hi: float, count: int) -> float:
    """The pulse half-width ``h = (hi - lo) / (2 count)``: neighbouring pulse bands tile the range."""
    return (hi - lo) / (2 * count)


def weight_range(weights: Iterable[torch.Tensor]) -> tuple[float, float]:
    """``(min, max)`` over all entries of ``weights``."""
    weights = list(weights)
    return min(w.min().item() for w in weights), max(w.max().item() for w in weights)


AlphaRange = tuple[float, float] | Literal["auto"]


def global_range(model: nn.Module, alpha_range: AlphaRange = (-1.0, 1.0)) -> tuple[float, float]:
    """The global analysis range: ``alpha_range`` itself, or with ``"auto"`` the min/max of every filterable weight."""
    if alpha_range == "auto":
        return weight_range(m.weight for _, m in filterable_layers(model))
    if isinstance(alpha_range, str) or len(alpha_range) != 2:
        raise InvalidArgument(f"alpha_range must be (lo, hi) or 'auto', got {alpha_range!r}")
    lo, hi = float(alpha_range[0]), float(alpha_range[1])
    if not lo <= hi:
        raise InvalidArgument(f"alpha_range [{lo}, {hi}] is empty: give lo <= hi")
    return lo, hi
