"""Sequential evaluation: stop a layer's sweep once the images seen decide every label it reports.

A sequential sweep evaluates its images in their fixed order at ``K`` planned *looks*, after the first
``n / 2^(K-1)``, ``n / 2^(K-2)``, …, ``n`` images (each look doubles the images, so each narrows the interval by
about √2), and stops at the first look where every reported score's interval lies wholly inside one label region
(below ``−τ``, within ``±τ``, above ``+τ``). Block ``k`` is always the same images, so sweeps of other layers,
regimes or probes pair with it on their common prefix.

The rule is Bonferroni over the planned looks: each look's interval has coverage ``1 − α/K`` (``α = 1 − ci``),
so the probability that *any* look's interval misses the true score is at most ``α``, whatever look the sweep
stops at; the interval reported is the one at the look it stopped (or the last look), at level ``1 − α/K``, and
its coverage under optional stopping is at least ``ci``. Chosen over an always-valid confidence sequence because
it is the paired bootstrap the fixed-size sweep already uses, only at another level, and its guarantee is one line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidArgument
from ..filtering import SweepResult
from ..vocab import SCORES, Score
from .scores import (
    CONFIDENT,
    DEFAULT_SCORING,
    Outcomes,
    Scoring,
    density_of,
    interval_labels,
    look_scoring,
    outcomes,
    score_intervals,
)

DEFAULT_LOOKS = 4


@dataclass(frozen=True)
class Sequential:
    """The stopping rule of a sequential sweep: decide the labels ``scoring`` gives to the ``scores`` (default all
    three) at ``looks`` planned looks (Bonferroni, see the module docstring). ``looks = 1`` is one look at every
    image, the sweep of fixed size. Checked when made."""

    scoring: Scoring = DEFAULT_SCORING
    looks: int = DEFAULT_LOOKS
    scores: tuple[Score, ...] = SCORES

    def __post_init__(self) -> None:
        if not isinstance(self.looks, int) or isinstance(self.looks, bool) or self.looks < 1:
            raise InvalidArgument(f"looks is the number of planned looks of a sequential sweep, >= 1, got "
                                  f"{self.looks!r}")
        unknown = [s for s in self.scores if s not in SCORES]
        if unknown or not self.scores:
            raise InvalidArgument(f"unknown score(s) {unknown or '(none)'} to decide: choose from {', '.join(SCORES)}")

    @property
    def at_look(self) -> Scoring:
        """The :class:`Scoring` of each look: coverage ``1 − (1 − ci) / looks`` (:func:`look_scoring`)."""
        return look_scoring(self.scoring, self.looks)

    def ends(self, n: int) -> list[int]:
        """How many of ``n`` images each look has seen: ``⌈n / 2^(looks − k)⌉`` for look ``k``, at least 2, the
        last ``n`` (looks that would see no new image are left out; the level stays that of ``looks``)."""
        return sorted({min(n, max(2, math.ceil(n / 2 ** (self.looks - k)))) for k in range(1, self.looks + 1)})

    def look(self, found: Outcomes, density: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One look at the outcomes ``found`` (batch axes allowed: many sweeps at once) with the baseline's
        ``density``: ``(point, lo, hi, decided)``, the scores and their intervals at the look's coverage
        (``(..., 3)``, :data:`SCORES` along the last axis) and whether each sweep has decided every label of
        :attr:`scores` (each interval wholly inside one label region)."""
        point, lo, hi, _ = score_intervals(found, density, self.at_look)
        wanted = [SCORES.index(s) for s in self.scores]
        labels = interval_labels(lo[..., wanted], hi[..., wanted], self.scoring.tau)
        return point, lo, hi, np.isin(labels, CONFIDENT).all(axis=-1)

    def decided(self, result: SweepResult) -> bool:
        """Whether the sweep so far has decided (:meth:`look`): what :func:`robustness.filtering.local_analysis`
        asks at each look."""
        return bool(self.look(outcomes(result), density_of(result))[3])

    def record(self) -> dict[str, Any]:
        """What a sequential result records of its rule."""
        s = self.scoring
        return {"rule": "bonferroni", "looks": self.looks, "ci": s.ci, "look_ci": self.at_look.ci,
                "n_boot": self.at_look.n_boot, "baseline": s.baseline, "tau": s.tau, "floor": s.floor, "seed": s.seed,
                "scores": list(self.scores)}

