"""Filtering scores: how a layer's accuracy responds to synaptic filtering, with bootstrap intervals.

For a sweep of ``T`` thresholds, ``t̂ = linspace(0, 1, T)`` is the position in the
sweep, ``Â = A / A_ref`` the accuracy relative to the unfiltered model, and ``B`` the
baseline the relative accuracy is compared with::

    clean        φ_c = ∫₀¹ (Â_clean − B) dt̂
    adversarial  φ_a = ∫₀¹ (Â_adv − B) dt̂
    difference   φ_Δ = ∫₀¹ (Â_adv − Â_clean) dt̂

each integrated with Simpson's rule over the ``T`` points. Baselines: ``"density"``
(default, ``B = ρ``, the fraction of the filtered weights still present),
``"unfiltered"`` (``B = 1``) and ``"random"`` (``B`` = the relative accuracy of the same
layer with as many weights removed uniformly at random, averaged over the null model's
masks, for clean and adversarial accuracy separately).

Every score gets a percentile interval and a standard error from a *paired* bootstrap
over the evaluation images: each resample recomputes the reference, every threshold's
accuracy and the null model's on the same resampled images. The label follows the
interval: ``fragile`` if it lies below ``−τ``, ``antifragile`` above ``+τ``, ``robust``
within ``±τ`` (ends included), ``uncertain`` otherwise. A reference accuracy below
``floor`` makes a score undefined (NaN, label ``undefined``, with a warning).

The study-level tables (:class:`ScoresTable`, :func:`score_study`, ...) live in
:mod:`robustness.scoring.tables`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.integrate import simpson

from ..errors import InvalidArgument
from ..filtering import SweepResult
from ..stats import bootstrap_counts, percentile_interval, resampled_mean, standard_error
from ..vocab import (
    BASELINES,
    DEFAULT_BASELINE,
    DEFAULT_BOOT,
    DEFAULT_CI,
    DEFAULT_FLOOR,
    DEFAULT_TAU,
    SCORES,
    Baseline,
    Label,
    Score,
)

CONFIDENT: tuple[Label, ...] = ("fragile", "robust", "antifragile")
TAIL_DRAWS = 20  # bootstrap resamples beyond each end of an interval, at least (see look_scoring)
RERUN = "rerun the filter command (python -m robustness filter ...) to write them"


def label(score: float, tau: float = DEFAULT_TAU) -> Label:
    """The label of a point score: ``fragile`` below ``−tau``, ``robust`` within ``±tau`` (ends included),
    ``antifragile`` above ``+tau``, ``undefined`` for NaN."""
    return interval_label(score, score, tau)


def interval_label(lo: float, hi: float, tau: float = DEFAULT_TAU) -> Label:
    """The label of a score's interval ``[lo, hi]``: ``fragile`` if ``hi < −tau``, ``antifragile`` if
    ``lo > +tau``, ``robust`` if ``−tau <= lo`` and ``hi <= +tau``, else ``uncertain``; NaN is ``undefined``."""
    return str(interval_labels(lo, hi, tau))  # type: ignore[return-value]


def interval_labels(lo: np.ndarray | float, hi: np.ndarray | float, tau: float = DEFAULT_TAU) -> np.ndarray:
    """:func:`interval_label` of every interval of the arrays ``lo`` and ``hi`` at once: an array of labels."""
    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    return np.select([np.isnan(lo) | np.isnan(hi), hi < -tau, lo > tau, (-tau <= lo) & (hi <= tau)],
                     ["undefined", "fragile", "antifragile", "robust"], "uncertain")


@dataclass(frozen=True)
class Scoring:
    """How sweeps are scored and labelled, passed whole to every function that scores: the ``baseline`` the
    relative accuracy is compared with, the label threshold ``tau``, the reference-accuracy ``floor`` below
    which a score is undefined, the coverage ``ci`` of the intervals, ``n_boot`` paired bootstrap resamples of
    the images and the ``seed`` that fixes them. Checked when made: a bad option is one :class:`InvalidArgument`."""

    baseline: Baseline = DEFAULT_BASELINE
    tau: float = DEFAULT_TAU
    floor: float = DEFAULT_FLOOR
    ci: float = DEFAULT_CI
    n_boot: int = DEFAULT_BOOT
    seed: int = 0

    def __post_init__(self) -> None:
        if self.baseline not in BASELINES:
            raise InvalidArgument(f"unknown baseline {self.baseline!r}: choose {', '.join(BASELINES)}")
        if not self.tau >= 0:
            raise InvalidArgument(f"tau must be a non-negative number, got {self.tau}")
        if not self.floor > 0:
            raise InvalidArgument(f"the reference-accuracy floor must be positive, got {self.floor}")
        if not 0 < self.ci < 1:
            raise InvalidArgument(f"ci is a coverage in (0, 1), e.g. 0.95, got {self.ci!r}")
        if not isinstance(self.n_boot, int) or self.n_boot < 2:
            raise InvalidArgument(f"the bootstrap needs at least 2 resamples, got n_boot={self.n_boot!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise InvalidArgument(f"seed must be an integer >= 0, got {self.seed!r}")


DEFAULT_SCORING = Scoring()


@dataclass(frozen=True)
class Outcomes:
    """Per-image outcomes of one sweep: correct (``True``) or not, for ``T`` thresholds and ``n`` images.

    ``clean``/``adv`` have shape ``(T, n)``, ``ref_clean``/``ref_adv`` ``(n,)``, and the null model's
    ``null_clean``/``null_adv`` ``(M, T, n)`` (``None`` when it was not computed). Every array may carry the same
    leading batch axes (many sweeps at once, as in a simulation): :func:`score_intervals` keeps them.
    """

    clean: np.ndarray
    adv: np.ndarray
    ref_clean: np.ndarray
    ref_adv: np.ndarray
    null_clean: np.ndarray | None
    null_adv: np.ndarray | None

    @property
    def n(self) -> int:
        """The number of evaluation images."""
        return self.ref_clean.shape[-1]

    def prefix(self, n: int) -> Outcomes:
        """The outcomes of the first ``n`` images."""
        return Outcomes(*(None if a is None else a[..., :n] for a in (
            self.clean, self.adv, self.ref_clean, self.ref_adv, self.null_clean, self.null_adv)))


def outcomes(result: SweepResult) -> Outcomes:
    """The per-image outcomes of ``result``, checked; :class:`InvalidArgument` when it has none."""
    where = describe(result)
    arrays = {name: getattr(result, name, None) for name in (
        "clean_correct", "adv_correct", "ref_clean_correct", "ref_adv_correct", "null_clean_correct",
        "null_adv_correct")}
    if any(arrays[name] is None for name in ("clean_correct", "adv_correct", "ref_clean_correct", "ref_adv_correct")):
        raise InvalidArgument(
            f"{where} has no per-image outcomes (a result file written before they were recorded), so its scores "
            f"have no interval: {RERUN}"
        )
    found = Outcomes(*(None if a is None else np.asarray(a, dtype=bool) for a in arrays.values()))
    t, n = len(result.thresholds), found.n
    expected = {"clean": (t, n), "adv": (t, n), "ref_adv": (n,)}
    if found.null_clean is not None:
        expected |= {"null_clean": (len(found.null_clean), t, n), "null_adv": (len(found.null_clean), t, n)}
    for name, shape in expected.items():
        if getattr(found, name) is None or getattr(found, name).shape != shape:
            raise InvalidArgument(
                f"{where}: per-image outcomes {name} should have shape {shape} for {t} thresholds and {n} images, "
                f"found {None if getattr(found, name) is None else getattr(found, name).shape}: {RERUN}"
            )
    return found


def images_of(result: SweepResult) -> int:
    """The images ``result`` could have evaluated: all of them, also where a sequential sweep stopped early."""
    return result.sequential["n"] if result.sequential else outcomes(result).n


def describe(result: SweepResult) -> str:
    """``layer 'conv1'`` or ``the global highpass sweep``, for messages."""
    return f"layer {result.layer!r}" if result.layer is not None else f"the global {result.kind} sweep"


def integrate(curves: np.ndarray) -> np.ndarray:
    """Simpson's rule over ``t̂ = linspace(0, 1, T)`` along the last axis of ``curves``."""
    return simpson(curves, x=np.linspace(0.0, 1.0, curves.shape[-1]), axis=-1)


def _draws(found: Outcomes, density: np.ndarray, baseline: Baseline, floor: float, counts: np.ndarray) -> np.ndarray:
    """The three scores under each resample of ``counts`` (``(draws, n)``): shape ``(draws, ..., 3)``, the
    ``...`` being the batch axes of ``found``."""
    clean, adv = resampled_mean(found.clean, counts), resampled_mean(found.adv, counts)  # (draws, ..., T)
    ref_clean, ref_adv = (np.where(ref >= floor, ref, np.nan)[..., None]  # below the floor: undefined
                          for ref in (resampled_mean(found.ref_clean, counts), resampled_mean(found.ref_adv, counts)))
    if baseline == "random":
        # Â_random: each mask's accuracy, averaged over the masks, relative to the same reference.
        base_clean = resampled_mean(found.null_clean, counts).mean(-2) / ref_clean
        base_adv = resampled_mean(found.null_adv, counts).mean(-2) / ref_adv
    else:
        base_clean = base_adv = density if baseline == "density" else np.ones_like(density)
    rel_clean, rel_adv = clean / ref_clean, adv / ref_adv
    return np.stack([integrate(rel_clean - base_clean), integrate(rel_adv - base_adv),
                     integrate(rel_adv - rel_clean)], axis=-1)


def look_scoring(scoring: Scoring, looks: int) -> Scoring:
    """The :class:`Scoring` of one of ``looks`` planned looks at a sequential sweep (Bonferroni): coverage
    ``1 − (1 − ci) / looks`` per look, so that all looks' intervals cover together with probability at least
    ``ci`` whichever look a sweep stops at; and enough resamples to put :data:`TAIL_DRAWS` beyond each end of
    the interval. One look is ``scoring`` itself."""
    if looks == 1:
        return scoring
    alpha = (1 - scoring.ci) / looks
    return replace(scoring, ci=1 - alpha, n_boot=max(scoring.n_boot, math.ceil(2 * TAIL_DRAWS / alpha)))


def score_intervals(
    found: Outcomes, density: np.ndarray, scoring: Scoring
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(point, lo, hi, se)`` of the three scores (:data:`SCORES` along the last axis) of the outcomes ``found``
    with the baseline's ``density``: shape ``(..., 3)`` for batch axes ``...`` of ``found``. The interval is the
    percentile interval of ``scoring.n_boot`` paired resamples (seeded by ``scoring.seed``) at coverage
    ``scoring.ci``; a resample whose reference falls below the floor widens it."""
    point = _draws(found, density, scoring.baseline, scoring.floor, np.ones((1, found.n), dtype=np.int64))[0]
    draws = _draws(found, density, scoring.baseline, scoring.floor,
                   bootstrap_counts(found.n, scoring.n_boot, scoring.seed))
    lo, hi = percentile_interval(draws, scoring.ci, undefined="widen")
    return point, lo, hi, standard_error(draws)


def filtering_scores(result: SweepResult, scoring: Scoring = DEFAULT_SCORING) -> dict[str, Any]:
    """The clean, adversarial and difference scores of one sweep, with intervals and interval labels.

    Returns ``{"clean": φ_c, "adversarial": φ_a, "difference": φ_Δ, "ci": {score: (lo, hi)},
    "se": {score: bootstrap SE}, "labels": {score: label}, "tau", "baseline", "floor", "coverage": ci,
    "n_boot", "n_images", "looks", "look_coverage"}``, scored as ``scoring`` says (:class:`Scoring`). The interval
    comes from ``n_boot`` paired resamples of the images (``seed`` fixes them); a resample whose reference falls
    below ``floor`` counts as undefined and widens the interval (:func:`robustness.stats.percentile_interval`). A
    point reference below ``floor`` makes the scores that need it NaN (label ``undefined``) and warns, naming the
    layer.

    A sequential sweep (``result.sequential``, :class:`robustness.scoring.sequential.Sequential`) of ``K`` looks
    is scored on the images it evaluated, at the look's coverage ``look_coverage = 1 − (1 − ci) / K``
    (:func:`look_scoring`): the interval its stopping rule saw; ``coverage`` stays ``ci``, the coverage the
    looks' intervals have together, whichever look the sweep stopped at. A sweep of all images has ``looks = 1``.
    """
    n_thresholds = len(result.thresholds)
    if n_thresholds < 2:
        raise InvalidArgument(
            f"a sweep needs at least 2 thresholds to be scored, this one has {n_thresholds}: rerun the filter "
            f"command with --thresholds 3 or more"
        )
    found = outcomes(result)
    if scoring.baseline == "random" and found.null_clean is None:
        raise InvalidArgument(
            f"{describe(result)} has no null-model outcomes, which the random baseline needs: rerun the filter "
            f"command with --random-baseline (and --null-masks 5), or choose --baseline density"
        )
    looks = result.sequential["looks"] if result.sequential else 1
    at_look = look_scoring(scoring, looks)
    point, lo, hi, se = score_intervals(found, density_of(result), at_look)
    _warn_below_floor(result, found, scoring.floor)
    scores = {name: float(v) for name, v in zip(SCORES, point, strict=True)}
    undefined = {name: math.isnan(v) for name, v in scores.items()}
    intervals = {name: (math.nan, math.nan) if undefined[name] else (float(lo[i]), float(hi[i]))
                 for i, name in enumerate(SCORES)}
    return {
        **scores,
        "ci": intervals,
        "se": {name: math.nan if undefined[name] else float(se[i]) for i, name in enumerate(SCORES)},
        "labels": {name: interval_label(*intervals[name], scoring.tau) for name in SCORES},
        "tau": scoring.tau, "baseline": scoring.baseline, "floor": scoring.floor, "coverage": scoring.ci,
        "n_boot": at_look.n_boot, "n_images": found.n, "looks": looks, "look_coverage": at_look.ci,
    }


def density_of(result: SweepResult) -> np.ndarray:
    """The density baseline ``ρ`` of ``result``: the fraction of its filtered weights still present at each point."""
    return 1.0 - np.asarray(result.removed_fraction, dtype=float)


def _warn_below_floor(result: SweepResult, found: Outcomes, floor: float) -> None:
    for what, ref in (("clean", found.ref_clean.mean()), ("adversarial", found.ref_adv.mean())):
        if ref < floor:
            warnings.warn(
                f"{describe(result)}: the unfiltered model's {what} accuracy {ref:.4f} is below the floor {floor}, "
                f"so its {what} score is undefined (NaN); for the adversarial score, use a weaker attack (smaller "
                f"eps, e.g. calibrated with --calibrate-eps 0.5)",
                RuntimeWarning,
                stacklevel=3,
            )


def layer_scores(
    results: Mapping[str, SweepResult], scoring: Scoring = DEFAULT_SCORING
) -> dict[str, dict[str, Any]]:
    """:func:`filtering_scores` of each layer of one checkpoint's local sweeps, keyed by module name.

    Every layer is resampled with the same seed, so the same resamples of the images. This
    per-checkpoint scores table is what :func:`robustness.retraining.selective.labelled_layers` reads.
    """
    return {name: filtering_scores(result, scoring) for name, result in results.items()}


def consensus(labels: Sequence[Label | None]) -> Label:
    """The label every initialisation gives (``None``: it has none), else ``uncertain``; ``undefined`` for none."""
    if not labels:
        return "undefined"
    found = set(labels)
    return found.pop() if len(found) == 1 and None not in found else "uncertain"  # type: ignore[return-value]


def consensus_labels(
    per_init: Mapping[int, Mapping[str, Mapping[str, Any]]], score: Score
) -> dict[str, Label]:
    """One label per layer over initialisations: the label every initialisation gives it, else ``uncertain``.

    ``per_init[init][layer]`` is a :func:`filtering_scores` dict (e.g. :func:`layer_scores` of each
    initialisation's sweeps of one checkpoint epoch). A layer missing from some initialisation is uncertain.
    """
    if score not in SCORES:
        raise InvalidArgument(f"unknown score {score!r}: choose one of {', '.join(SCORES)}")
    if not per_init:
        raise InvalidArgument("no initialisation's scores to aggregate: run the filter command first")
    layers = list(dict.fromkeys(name for per_layer in per_init.values() for name in per_layer))
    return {name: consensus([per_layer[name]["labels"][score] if name in per_layer else None
                             for per_layer in per_init.values()]) for name in layers}
