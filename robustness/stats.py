"""Intervals for the package's numbers: Wilson intervals for an accuracy, and the paired bootstrap.

Every accuracy is a proportion of images classified correctly, so its interval is the
Wilson score interval. A quantity computed from several accuracies measured on the same
images (a filtering score, the difference between two retraining variants) gets its
interval from the *paired* bootstrap: one resample of the images is drawn and every
accuracy in the quantity is recomputed on it, so the correlation between them is kept.

A resample is represented by how often it draws each image: :func:`bootstrap_counts`
gives a ``(n_boot, n)`` matrix, and :func:`resampled_mean` turns per-image outcomes into
their mean under every resample with one matrix product.
"""

from __future__ import annotations

import math
import warnings
from statistics import NormalDist
from typing import Literal

import numpy as np
from scipy.stats import rankdata

from .errors import InvalidArgument


def _check_ci(ci: float) -> None:
    if not 0 < ci < 1:
        raise InvalidArgument(f"ci is a coverage in (0, 1), e.g. 0.95, got {ci!r}")


def wilson_interval(correct: int, n: int, ci: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``correct / n`` at coverage ``ci``.

    Unlike the normal approximation it stays inside ``[0, 1]`` and is not empty at 0 or
    ``n`` correct. ``n = 0`` gives ``(nan, nan)``.
    """
    _check_ci(ci)
    if not 0 <= correct <= n:
        raise InvalidArgument(f"need 0 <= correct <= n, got correct={correct}, n={n}")
    if n == 0:
        return math.nan, math.nan
    z = NormalDist().inv_cdf(0.5 + ci / 2)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # At 0 (or n) correct the bound is exactly 0 (or 1); rounding would otherwise leave a few 1e-17s.
    lo = 0.0 if correct == 0 else max(0.0, centre - half)
    hi = 1.0 if correct == n else min(1.0, centre + half)
    return lo, hi


def bootstrap_counts(n: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """How often each of ``n`` images is drawn in each of ``n_boot`` resamples with replacement:
    an ``(n_boot, n)`` integer matrix whose rows sum to ``n``; the same ``seed`` gives the same matrix."""
    if n < 1 or n_boot < 1:
        raise InvalidArgument(f"the bootstrap needs n >= 1 images and n_boot >= 1 resamples, got {n}, {n_boot}")
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot)


def resampled_mean(outcomes: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The mean of per-image ``outcomes`` (shape ``(..., n)``) under every resample of ``counts``
    (shape ``(n_boot, n)``): shape ``(n_boot, ...)``."""
    outcomes = np.asarray(outcomes, dtype=float)
    if outcomes.shape[-1] != counts.shape[1]:
        raise InvalidArgument(f"outcomes cover {outcomes.shape[-1]} images, the resamples {counts.shape[1]}")
    n = counts.shape[1]
    means = counts @ outcomes.reshape(-1, n).T / n
    return means.reshape(counts.shape[0], *outcomes.shape[:-1])


def percentile_interval(
    samples: np.ndarray, ci: float = 0.95, *, undefined: Literal["ignore", "widen"] = "ignore"
) -> tuple[np.ndarray, np.ndarray]:
    """The equal-tailed percentile interval of bootstrap ``samples`` along axis 0: ``(lo, hi)``, each
    of the shape of one sample.

    A NaN draw is one whose quantity is undefined (e.g. a resample whose reference accuracy fell below a
    floor). ``undefined="ignore"`` drops those draws (all-NaN gives NaN). ``"widen"`` counts each as
    ``-inf`` for the lower end and ``+inf`` for the upper, so the interval keeps what those draws could
    have been: once more than ``(1 - ci) / 2`` of the draws are undefined, that end is infinite.
    """
    _check_ci(ci)
    samples = np.asarray(samples, dtype=float)
    tail = (1 - ci) / 2
    with warnings.catch_warnings():  # an all-NaN column is a NaN interval, on purpose
        warnings.filterwarnings("ignore", message="All-NaN slice", category=RuntimeWarning)
        if undefined == "ignore":
            lo, hi = np.nanquantile(samples, [tail, 1 - tail], axis=0)
            return lo, hi
        if undefined != "widen":
            raise InvalidArgument(f"undefined is 'ignore' or 'widen', got {undefined!r}")
        # The q-quantile of all N draws sits at position q (N - 1) of the sorted draws (linear interpolation),
        # the k undefined ones first (for lo) or last (for hi); an end that touches them is infinite.
        flat = samples.reshape(len(samples), -1)
        bounds = np.full((2, flat.shape[1]), np.nan)
        last = len(flat) - 1
        for j, column in enumerate(flat.T):
            defined = np.sort(column[~np.isnan(column)])
            if len(defined) == 0:
                continue
            at_lo, at_hi = tail * last - (len(column) - len(defined)), (1 - tail) * last
            positions = np.arange(len(defined))
            bounds[0, j] = np.interp(at_lo, positions, defined) if at_lo >= 0 else -np.inf
            bounds[1, j] = np.interp(at_hi, positions, defined) if math.ceil(at_hi) < len(defined) else np.inf
        shape = samples.shape[1:]
        return bounds[0].reshape(shape), bounds[1].reshape(shape)


def standard_error(samples: np.ndarray) -> np.ndarray:
    """The bootstrap standard error: the SD (``ddof=1``) of the defined (non-NaN) draws along axis 0."""
    samples = np.asarray(samples, dtype=float)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Degrees of freedom", category=RuntimeWarning)
        return np.nanstd(samples, axis=0, ddof=1)


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's rank correlation of ``a`` and ``b`` along the last axis (any leading shape, e.g. bootstrap
    draws): the Pearson correlation of their ranks; NaN where either side is constant."""
    ra, rb = rankdata(a, axis=-1), rankdata(b, axis=-1)  # ties get their average rank
    ra = ra - ra.mean(-1, keepdims=True)
    rb = rb - rb.mean(-1, keepdims=True)
    denominator = np.sqrt((ra * ra).sum(-1) * (rb * rb).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (ra * rb).sum(-1) / denominator, np.nan)
