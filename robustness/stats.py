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
from scipy.stats import binomtest, rankdata
from scipy.stats import t as student

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


# ---------------------------------------------------------------- several sources of variance, several tests


def cluster_draws(inner: np.ndarray, n_boot: int, seed: int = 0) -> np.ndarray:
    """Draws of a mean over ``I`` clusters (e.g. initialisations) from a two-stage bootstrap: each draw resamples
    the clusters with replacement, then gives every drawn cluster one of its own inner draws (a resample of its
    images), picked at random, so that a cluster drawn twice gets two independent inner resamples.

    ``inner`` has shape ``(I, n_inner, ...)``: cluster ``i``'s statistic under ``n_inner`` resamples of its images.
    Returns ``(n_boot, ...)``: the mean over the drawn clusters. NaN inner draws (undefined) stay NaN.
    """
    inner = np.asarray(inner, dtype=float)
    if inner.ndim < 2 or len(inner) < 1 or inner.shape[1] < 1:
        raise InvalidArgument(f"inner draws need shape (clusters, draws, ...), got {inner.shape}")
    rng = np.random.default_rng(seed)
    clusters = rng.integers(0, len(inner), (n_boot, len(inner)))
    picks = rng.integers(0, inner.shape[1], (n_boot, len(inner)))
    return inner[clusters, picks].mean(axis=1)


def cluster_interval(
    point: np.ndarray, draws: np.ndarray, clusters: int, ci: float = 0.95, method: Literal["t", "percentile"] = "t",
    within: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The interval of a mean over ``clusters`` clusters from its two-stage bootstrap ``draws`` (``(n_boot, ...)``).

    ``"percentile"``: the percentile interval of the draws. With few clusters it under-covers: resampling ``I``
    clusters with replacement spreads the mean by only ``(I − 1) / I`` of the clusters' variance, and its quantiles
    are a normal's, not those of Student's t with ``I − 1`` degrees of freedom. ``"t"`` (default) corrects both:
    ``point ± t_{I−1} · SE``. The draws' variance ``V`` holds the clusters' spread, shrunk by ``(I − 1) / I``, plus
    the inner resampling once more, although each cluster's own value already carries it. With ``within`` (the
    mean over clusters of their inner draws' variance) that second count is taken out, and the inner variance kept
    as a floor: ``SE² = max((V − within / I) · I / (I − 1), within / I)``; without it ``SE² = V · I / (I − 1)``,
    which errs wide. It needs ``clusters >= 2``; NaN draws are left out.
    """
    _check_ci(ci)
    point = np.asarray(point, dtype=float)
    if method == "percentile":
        return percentile_interval(draws, ci)
    if method != "t":
        raise InvalidArgument(f"the interval method is 't' or 'percentile', got {method!r}")
    half = student.ppf(0.5 + ci / 2, clusters - 1) * np.sqrt(cluster_variance(draws, clusters, within))
    return point - half, point + half


def cluster_variance(draws: np.ndarray, clusters: int, within: np.ndarray | None = None) -> np.ndarray:
    """``SE²`` of a mean over ``clusters`` clusters from its two-stage bootstrap ``draws``, as
    :func:`cluster_interval` defines it (with ``within``, the inner variance counted once and kept as a floor)."""
    if clusters < 2:
        raise InvalidArgument(f"an interval over clusters needs at least 2 of them (e.g. initialisations), got "
                              f"{clusters}: add initialisations, or report the image-level interval only")
    variance = standard_error(draws) ** 2
    if within is None:
        return variance * clusters / (clusters - 1)
    within = np.asarray(within, dtype=float) / clusters
    return np.maximum((variance - within) * clusters / (clusters - 1), within)


def resampled_indices(n: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """``(n_boot, n)`` indices of ``n`` items (e.g. layers) drawn with replacement: a bootstrap over the items."""
    if n < 1 or n_boot < 1:
        raise InvalidArgument(f"the bootstrap needs n >= 1 items and n_boot >= 1 resamples, got {n}, {n_boot}")
    return np.random.default_rng(seed).integers(0, n, (n_boot, n))


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cohen's κ of two label vectors along the last axis (any leading shape, e.g. bootstrap draws): the observed
    agreement ``p_o`` beyond the agreement ``p_e`` expected from each side's label shares, ``(p_o − p_e) / (1 − p_e)``.
    NaN where ``p_e = 1`` (one label covers every item on both sides: agreement is certain, κ undefined)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise InvalidArgument(f"the two label vectors differ in shape: {a.shape} vs {b.shape}")
    observed = (a == b).mean(-1)
    expected = sum((a == lab).mean(-1) * (b == lab).mean(-1) for lab in np.unique(np.concatenate([a, b], axis=None)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(np.isclose(expected, 1.0), np.nan, (observed - expected) / (1.0 - expected))


def partial_spearman(a: np.ndarray, b: np.ndarray, control: np.ndarray) -> np.ndarray:
    """Spearman's ρ of ``a`` and ``b`` with ``control`` (e.g. depth) held out, along the last axis: the Pearson
    correlation of their ranks' residuals after a least-squares line on ``control``'s rank. NaN where a residual is
    constant (e.g. a side that follows the control's order exactly)."""
    ra, rb, rc = (rankdata(v, axis=-1) for v in (a, b, control))
    rc = rc - rc.mean(-1, keepdims=True)

    def residual(r: np.ndarray) -> np.ndarray:
        r = r - r.mean(-1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            slope = (r * rc).sum(-1, keepdims=True) / (rc * rc).sum(-1, keepdims=True)
        return r - slope * rc

    ea, eb = residual(ra), residual(rb)
    ssa, ssb = (ea * ea).sum(-1), (eb * eb).sum(-1)
    tiny = 1e-9 * (ra.shape[-1] ** 3)  # a rank vector's sum of squares is about n³ / 12: below this, constant
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((ssa > tiny) & (ssb > tiny), (ea * eb).sum(-1) / np.sqrt(ssa * ssb), np.nan)


def bootstrap_p_value(draws: np.ndarray, null: float = 0.0) -> np.ndarray:
    """The two-sided bootstrap p-value of ``null`` along axis 0 of ``draws``: twice the smaller share of the
    draws on either side of it (a draw equal to it counts on both), with one pseudo-draw added to each side so that
    ``p >= 2 / (n_boot + 1)``; capped at 1. It is below ``1 − ci`` exactly when ``null`` lies outside the
    equal-tailed percentile interval (up to that pseudo-draw). NaN draws are left out; all-NaN gives NaN."""
    draws = np.asarray(draws, dtype=float)
    defined = (~np.isnan(draws)).sum(0)
    below, above = (draws <= null).sum(0), (draws >= null).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = 2 * (np.minimum(below, above) + 1) / (defined + 1)
    return np.where(defined > 0, np.minimum(p, 1.0), np.nan)


def benjamini_hochberg(p_values: np.ndarray, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Benjamini–Hochberg over every entry of ``p_values`` (any shape; NaN entries take no part): the adjusted
    p-values (q-values) and which tests are rejected at false-discovery rate ``alpha`` (``q <= alpha``)."""
    if not 0 < alpha < 1:
        raise InvalidArgument(f"alpha is a false-discovery rate in (0, 1), e.g. 0.05, got {alpha!r}")
    p = np.asarray(p_values, dtype=float)
    flat, q = p.ravel(), np.full(p.size, np.nan)
    defined = np.flatnonzero(~np.isnan(flat))
    order = defined[np.argsort(flat[defined], kind="stable")]
    m = len(order)
    if m:
        scaled = flat[order] * m / np.arange(1, m + 1)
        q[order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    q = q.reshape(p.shape)
    return q, np.where(np.isnan(q), False, q <= alpha)


def agreed_sign(values: np.ndarray, significant: np.ndarray) -> np.ndarray:
    """Per row of ``values`` (e.g. layers × initialisations): ``+1`` or ``−1`` when every entry of the row is
    ``significant`` and they all have that sign, else ``0``."""
    values, significant = np.asarray(values, dtype=float), np.asarray(significant, dtype=bool)
    sign = np.sign(values)
    agreed = significant.all(-1) & (np.abs(sign.sum(-1)) == sign.shape[-1])
    return np.where(agreed, sign[..., 0], 0).astype(int)


def sign_test(values: np.ndarray) -> tuple[int, int, float]:
    """The two-sided exact sign test that positive and negative ``values`` are equally likely (zeros and NaN left
    out): ``(positives, negatives, p)``; ``p = 1`` with nothing left."""
    values = np.asarray(values, dtype=float)
    positive, negative = int((values > 0).sum()), int((values < 0).sum())
    if positive + negative == 0:
        return 0, 0, 1.0
    return positive, negative, float(binomtest(positive, positive + negative, 0.5).pvalue)
