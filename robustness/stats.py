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

import numpy as np

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
    return max(0.0, centre - half), min(1.0, centre + half)


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


def percentile_interval(samples: np.ndarray, ci: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """The equal-tailed percentile interval of bootstrap ``samples`` along axis 0 (NaN draws ignored;
    all-NaN gives NaN): ``(lo, hi)``, each of the shape of one sample."""
    _check_ci(ci)
    samples = np.asarray(samples, dtype=float)
    tail = 100 * (1 - ci) / 2
    with warnings.catch_warnings():  # an all-NaN column is a NaN interval, on purpose
        warnings.filterwarnings("ignore", message="All-NaN slice", category=RuntimeWarning)
        lo, hi = np.nanpercentile(samples, [tail, 100 - tail], axis=0)
    return lo, hi
