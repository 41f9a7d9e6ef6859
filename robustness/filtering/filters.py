"""Synaptic filters and their threshold grids.

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

A sweep is a list of :class:`Cut` (threshold and, for ``pulse``, the band it zeroes) from
one of two grids: :func:`value_grid`, thresholds evenly spaced in weight value, or
:func:`quantile_grid`, thresholds at quantiles of the weights so that the sweep position
``t̂`` is the fraction of weights removed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from ..errors import InvalidArgument
from ..models import filterable_layers
from ..vocab import FILTERS, GRIDS, FilterKind, Grid

ALIASES: dict[str, str] = {"step_minmax": "highpass", "step_maxmin": "lowpass", "pulse_minmax": "pulse"}


def canonical_kind(kind: str) -> FilterKind:
    """The filter name of ``kind``, which may also be one of the original study's names."""
    name = ALIASES.get(kind, kind)
    if name not in FILTERS:
        valid = ", ".join([*FILTERS, *ALIASES])
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


def threshold_grid(kind: str, lo: float, hi: float, count: int) -> list[float]:
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


# The name this had first, beside the number of thresholds (``thresholds=``) and a sweep's list of them.
thresholds = threshold_grid


def half_width(lo: float, hi: float, count: int) -> float:
    """The pulse half-width ``h = (hi - lo) / (2 count)``: neighbouring pulse bands tile the range."""
    return (hi - lo) / (2 * count)


def weight_range(weights: Iterable[torch.Tensor]) -> tuple[float, float]:
    """``(min, max)`` over all entries of ``weights``."""
    weights = list(weights)
    return min(w.min().item() for w in weights), max(w.max().item() for w in weights)


AlphaRange = tuple[float, float] | Literal["auto"]


def parse_alpha_range(values: Sequence[str]) -> AlphaRange:
    """A global threshold range written as text: two numbers (``["-1", "1"]``) or ``["auto"]``."""
    if list(values) == ["auto"]:
        return "auto"
    try:
        low, high = (float(v) for v in values)
    except ValueError:
        raise InvalidArgument(f"the alpha range is two numbers or auto, got {' '.join(values)}") from None
    return low, high


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


def check_grid(grid: str) -> Grid:
    """``grid`` if it is one of :data:`GRIDS`; else :class:`InvalidArgument`."""
    if grid not in GRIDS:
        raise InvalidArgument(f"unknown grid {grid!r}: choose value (thresholds evenly spaced in weight value) or "
                              f"quantile (evenly spaced in the fraction of weights removed)")
    return grid  # type: ignore[return-value]


@dataclass(frozen=True)
class Cut:
    """One point of a sweep: the threshold it records, and for ``pulse`` the band ``[lower, upper)`` it zeroes."""

    kind: FilterKind
    threshold: float
    band: tuple[float, float] | None = None

    def mask(self, weight: torch.Tensor) -> torch.Tensor:
        """The boolean mask of the entries of ``weight`` this point sets to 0."""
        if self.kind != "pulse":
            return filter_mask(weight, self.kind, self.threshold)
        lower, upper = self.band  # type: ignore[misc]
        return (weight >= lower) & (weight < upper)


def value_grid(kind: str, lo: float, hi: float, count: int) -> list[Cut]:
    """The :func:`thresholds` over ``[lo, hi]`` as cuts; a pulse band is ``[α − h, α + h)`` with ``h = half_width``."""
    kind = canonical_kind(kind)
    h = half_width(lo, hi, count)
    return [Cut(kind, a, (a - h, a + h) if kind == "pulse" else None) for a in threshold_grid(kind, lo, hi, count)]


def _step(sorted_values: torch.Tensor, removed: torch.Tensor) -> list[float]:
    """High-pass thresholds that zero as close to ``removed[k]`` of the ascending ``sorted_values`` as ties allow.

    To remove ``r >= 1`` weights the candidates are ``v = s[r - 1]`` (zeroes every weight ``<= v``, at least
    ``r``) and the largest float below ``v`` (zeroes every weight ``< v``, fewer than ``r``); the one whose count
    is closer to ``r`` wins, ``v`` on a draw. ``r = 0`` takes the float below the minimum.
    """
    s = sorted_values
    v = s[(removed - 1).clamp_min(0)]
    below = torch.nextafter(v, torch.full_like(v, -torch.inf))
    at_most = torch.searchsorted(s, v, right=True)
    under = torch.searchsorted(s, v, right=False)
    take_v = (removed > 0) & (at_most - removed <= removed - under)
    return torch.where(take_v, v, below).tolist()


def quantile_grid(kind: str, weights: Iterable[torch.Tensor], count: int) -> list[Cut]:
    """``count`` cuts at quantiles of all entries of ``weights`` (pooled), in the sweep order of ``kind``.

    ``highpass`` removes the lowest ``t̂`` of the weights and ``lowpass`` the highest, for
    ``t̂ = 0, 1/(count−1), …, 1``: the first cut removes nothing, the last every weight. A filter
    is a threshold on values, so equal weights are removed together: each cut removes the
    count closest to ``r = ⌊t̂ n + ½⌋`` that the ties allow (the count actually removed is what a
    sweep records). ``pulse`` cuts the sorted weights into ``count`` bands of (up to ties)
    ``n / count`` weights each, in ascending order: band ``k`` is ``[s_k, s_{k+1})`` with ``s_k``
    the weight of rank ``⌊k n / count⌋`` (ranks from 0), so the bands tile the weights and every weight
    lies in exactly one; its threshold is the band's midpoint.
    """
    kind = canonical_kind(kind)
    if count < 2:
        raise InvalidArgument(f"a sweep needs at least 2 thresholds, got {count}")
    flat = torch.cat([w.detach().flatten() for w in weights])
    n = flat.numel()
    if kind == "pulse":
        s = flat.sort().values
        starts = [k * n // count for k in range(count)]
        edges = [s[i].item() for i in starts] + [torch.nextafter(s[-1], s.new_tensor(torch.inf)).item()]
        return [Cut(kind, (lower + upper) / 2, (lower, upper)) for lower, upper in zip(edges, edges[1:], strict=False)]
    removed = torch.tensor([(2 * k * n + count - 1) // (2 * (count - 1)) for k in range(count)], device=flat.device)
    if kind == "highpass":
        return [Cut(kind, a) for a in _step(flat.sort().values, removed)]
    return [Cut(kind, -a) for a in _step((-flat).sort().values, removed)]  # lowpass: highpass on -W
