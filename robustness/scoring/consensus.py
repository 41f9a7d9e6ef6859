"""Scores over several initialisations: a consensus score with an interval that includes the seed, and how far
two label or score vectors over layers agree.

**Seed-level intervals.** A consensus score of one layer over ``I`` initialisations is the mean of their scores.
Its interval comes from a two-stage (hierarchical) paired bootstrap: each draw resamples the initialisations with
replacement and, within each drawn one, the evaluation images, recomputing every accuracy the score uses on the
same resampled images (the score formula is :mod:`robustness.scoring.scores`'s own).
:func:`robustness.stats.cluster_interval` turns the draws into an interval: by default ``mean ± t_{I−1} · SE``,
the SE from the draws' variance corrected for resampling few initialisations and with the images' variance
counted once, because the percentile interval of 3 resampled initialisations under-covers (``docs/statistics.md``
has the coverage).

**Agreement over layers.** :func:`label_agreement`: the raw share of layers given the same label and Cohen's κ,
each with a percentile interval from a bootstrap over the layers; κ is undefined (NaN, with the reason) when one
label covers every layer on both sides. :func:`score_correlation`: Spearman's ρ and the partial ρ with normalised
depth held out, each with an interval from the same bootstrap over layers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from ..errors import InvalidArgument
from ..filtering import SweepResult
from ..stats import (
    bootstrap_counts,
    bootstrap_p_value,
    cluster_draws,
    cluster_interval,
    cluster_variance,
    cohen_kappa,
    partial_spearman,
    percentile_interval,
    resampled_indices,
    spearman,
    standard_error,
)
from ..vocab import SCORES, Label
from .scores import DEFAULT_SCORING, Scoring, _draws, interval_label, outcomes

KAPPA_UNDEFINED = "undefined: one label covers every layer on both sides, so agreement is certain and κ has no scale"


def image_draws(result: SweepResult, scoring: Scoring, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One sweep's three scores (point, ``(3,)``) and under ``scoring.n_boot`` paired resamples of its images seeded
    by ``seed`` (``(n_boot, 3)``), with :mod:`robustness.scoring.scores`'s formula."""
    found = outcomes(result)
    if scoring.baseline == "random" and found.null_clean is None:
        raise InvalidArgument(f"layer {result.layer!r} has no null-model outcomes, which the random baseline needs: "
                              f"rerun the filter command with --random-baseline")
    density = 1.0 - np.asarray(result.removed_fraction, dtype=float)
    counts = np.concatenate([np.ones((1, found.n), dtype=np.int64), bootstrap_counts(found.n, scoring.n_boot, seed)])
    draws = _draws(found, density, scoring.baseline, scoring.floor, counts)  # type: ignore[arg-type]
    return draws[0], draws[1:]


def consensus_scores(
    results: Sequence[SweepResult], scoring: Scoring = DEFAULT_SCORING,
    method: Literal["t", "percentile"] = "t",
) -> dict[str, Any]:
    """One layer's consensus scores over initialisations (``results``: its sweep in each, two or more) with
    seed-level intervals (see the module docstring).

    Returns ``{score: mean over the initialisations, "ci": {score: (lo, hi)}, "labels": {score: label of that
    interval}, "per_init": {score: [each initialisation's score]}, "p": {score: two-sided bootstrap p-value of 0},
    "image_share": {score: the share of the interval's SE² the images contribute (1: the initialisations spread
    no more than the images' noise explains)}, "n_inits", "method", "tau", "baseline", "coverage", "n_boot"}``.
    Initialisation ``i``'s images are resampled with seed ``scoring.seed + i``, the initialisations with
    ``scoring.seed``. A score undefined in some initialisation (its reference below the floor) is undefined for the
    consensus.
    """
    if len(results) < 2:
        raise InvalidArgument(f"a consensus over initialisations needs at least 2 of them, got {len(results)}: add "
                              f"initialisations (--inits), or read each one's own interval")
    layers = {r.layer for r in results}
    if len(layers) > 1:
        raise InvalidArgument(f"a consensus score is of one layer, got sweeps of {sorted(map(str, layers))}")
    found = [image_draws(r, scoring, scoring.seed + i) for i, r in enumerate(results)]
    points = np.stack([p for p, _ in found])  # (I, 3)
    inner = np.stack([d for _, d in found])  # (I, n_boot, 3)
    point = points.mean(0)
    draws = cluster_draws(inner, scoring.n_boot, scoring.seed)
    within = (standard_error(inner.transpose(1, 0, 2)) ** 2).mean(0)  # the initialisations' image-level variance
    lo, hi = cluster_interval(point, draws, len(results), scoring.ci, method, within)
    se2 = cluster_variance(draws, len(results), within)
    with np.errstate(invalid="ignore", divide="ignore"):  # no spread at all: the share is undefined
        image_share = np.where(se2 > 0, within / len(results) / se2, math.nan)
    p = bootstrap_p_value(draws)
    intervals = {s: (math.nan, math.nan) if math.isnan(point[i]) else (float(lo[i]), float(hi[i]))
                 for i, s in enumerate(SCORES)}
    return {**{s: float(point[i]) for i, s in enumerate(SCORES)}, "ci": intervals,
            "labels": {s: interval_label(*intervals[s], scoring.tau) for s in SCORES},
            "per_init": {s: points[:, i].tolist() for i, s in enumerate(SCORES)},
            "p": {s: float(p[i]) for i, s in enumerate(SCORES)},
            "image_share": {s: float(image_share[i]) for i, s in enumerate(SCORES)}, "n_inits": len(results),
            "method": method,
            "tau": scoring.tau, "baseline": scoring.baseline, "coverage": scoring.ci, "n_boot": scoring.n_boot}


def layer_consensus(
    per_init: Sequence[Mapping[str, SweepResult]], scoring: Scoring = DEFAULT_SCORING,
    method: Literal["t", "percentile"] = "t",
) -> dict[str, dict[str, Any]]:
    """:func:`consensus_scores` of every layer that each initialisation's local sweeps (``per_init``, one
    ``{layer: SweepResult}`` per initialisation) have, in the first one's order."""
    layers = [x for x in per_init[0] if all(x in sweeps for sweeps in per_init)] if per_init else []
    return {x: consensus_scores([sweeps[x] for sweeps in per_init], scoring, method) for x in layers}


def image_p_values(result: SweepResult, scoring: Scoring = DEFAULT_SCORING) -> dict[str, float]:
    """Each score's two-sided bootstrap p-value of 0 (:func:`robustness.stats.bootstrap_p_value`) from the paired
    bootstrap over one sweep's images: the per-test p-values that Benjamini–Hochberg adjusts."""
    _, draws = image_draws(result, scoring, scoring.seed)
    return {s: float(p) for s, p in zip(SCORES, bootstrap_p_value(draws), strict=True)}


def label_agreement(
    a: Sequence[Label], b: Sequence[Label], *, ci: float = 0.95, n_boot: int = 1000, seed: int = 0,
) -> dict[str, Any]:
    """The raw share of layers with the same label and Cohen's κ between two label vectors over the same layers
    (``undefined`` labels on either side left out), each with a percentile interval from ``n_boot`` resamples of
    the layers. Returns ``{"share", "share_lo", "share_hi", "kappa", "kappa_lo", "kappa_hi", "kappa_note",
    "n_layers"}``; ``kappa_note`` is ``""`` or why κ is undefined (:data:`KAPPA_UNDEFINED`), to print."""
    if len(a) != len(b):
        raise InvalidArgument(f"the two label vectors cover {len(a)} and {len(b)} layers: give the same layers")
    kept = [(x, y) for x, y in zip(a, b, strict=True) if "undefined" not in (x, y)]
    if len(kept) < 2:
        nan = math.nan
        return {"share": nan, "share_lo": nan, "share_hi": nan, "kappa": nan, "kappa_lo": nan, "kappa_hi": nan,
                "kappa_note": "undefined: fewer than 2 layers labelled on both sides", "n_layers": len(kept)}
    x, y = (np.array(side) for side in zip(*kept, strict=True))
    index = resampled_indices(len(x), n_boot, seed)
    share_lo, share_hi = percentile_interval((x[index] == y[index]).mean(1), ci)
    kappa = float(cohen_kappa(x, y))
    kappa_lo, kappa_hi = percentile_interval(cohen_kappa(x[index], y[index]), ci)
    undefined = math.isnan(kappa)
    return {"share": float((x == y).mean()), "share_lo": float(share_lo), "share_hi": float(share_hi),
            "kappa": kappa, "kappa_lo": math.nan if undefined else float(kappa_lo),
            "kappa_hi": math.nan if undefined else float(kappa_hi), "kappa_note": KAPPA_UNDEFINED if undefined else "",
            "n_layers": len(x)}


def score_correlation(
    a: np.ndarray, b: np.ndarray, depth: np.ndarray, *, ci: float = 0.95, n_boot: int = 1000, seed: int = 0,
) -> dict[str, float]:
    """Spearman's ρ of two score vectors over layers and the partial ρ with ``depth`` held out
    (:func:`robustness.stats.partial_spearman`), over the layers where all three are finite, each with a percentile
    interval from ``n_boot`` resamples of those layers: ``{"rho", "rho_lo", "rho_hi", "partial", "partial_lo",
    "partial_hi", "n_layers"}`` (NaN with fewer than 4 layers)."""
    a, b, depth = (np.asarray(v, dtype=float) for v in (a, b, depth))
    keep = np.isfinite(a) & np.isfinite(b) & np.isfinite(depth)
    a, b, depth = a[keep], b[keep], depth[keep]
    out = {key: math.nan for key in ("rho", "rho_lo", "rho_hi", "partial", "partial_lo", "partial_hi")}
    if len(a) < 4:
        return {**out, "n_layers": len(a)}
    index = resampled_indices(len(a), n_boot, seed)
    for key, value, draws in (("rho", spearman(a, b), spearman(a[index], b[index])),
                              ("partial", partial_spearman(a, b, depth),
                               partial_spearman(a[index], b[index], depth[index]))):
        lo, hi = percentile_interval(draws, ci)
        out |= {key: float(value), f"{key}_lo": float(lo), f"{key}_hi": float(hi)}
    return {**out, "n_layers": len(a)}
