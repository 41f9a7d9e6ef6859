"""Intervals: Wilson against published values, the bootstrap against direct resampling, Spearman against scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from robustness.errors import InvalidArgument
from robustness.stats import (
    bootstrap_counts,
    percentile_interval,
    resampled_mean,
    spearman,
    standard_error,
    wilson_interval,
)


def test_wilson_matches_published_values() -> None:
    # Newcombe (1998), Table I: 81/263 -> (0.2553, 0.3662); 0/10 -> (0, 0.2775); 10/10 -> (0.7225, 1).
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    lo95, hi95 = wilson_interval(50, 100)
    lo99, hi99 = wilson_interval(50, 100, ci=0.99)
    assert lo99 < lo95 < 0.5 < hi95 < hi99


def test_wilson_rejects_bad_input() -> None:
    with pytest.raises(InvalidArgument, match="correct <= n"):
        wilson_interval(11, 10)
    with pytest.raises(InvalidArgument, match="coverage"):
        wilson_interval(5, 10, ci=95)


def test_bootstrap_counts_are_resamples_with_replacement() -> None:
    counts = bootstrap_counts(50, 400, seed=3)
    assert counts.shape == (400, 50) and (counts.sum(1) == 50).all()
    assert np.array_equal(counts, bootstrap_counts(50, 400, seed=3))
    assert not np.array_equal(counts, bootstrap_counts(50, 400, seed=4))
    assert counts.mean() == pytest.approx(1.0) and counts.var() == pytest.approx(1 - 1 / 50, rel=0.1)


def test_resampled_mean_equals_indexing_the_resample() -> None:
    rng = np.random.default_rng(0)
    outcomes = rng.random((3, 4, 20)) < 0.6
    counts = bootstrap_counts(20, 7, seed=1)
    means = resampled_mean(outcomes, counts)
    assert means.shape == (7, 3, 4)
    for b in range(7):
        drawn = np.repeat(np.arange(20), counts[b])
        np.testing.assert_allclose(means[b], outcomes[..., drawn].mean(-1))


def test_percentile_interval_of_a_mean_covers_the_truth_at_the_stated_rate() -> None:
    # 200 experiments of 100 coin flips with p = 0.7: the 90 % interval covers 0.7 in about 90 % of them.
    rng = np.random.default_rng(0)
    covered = 0
    for seed in range(200):
        flips = rng.random(100) < 0.7
        lo, hi = percentile_interval(resampled_mean(flips, bootstrap_counts(100, 500, seed)), ci=0.9)
        covered += lo <= 0.7 <= hi
    assert 0.83 <= covered / 200 <= 0.96


def test_percentile_interval_ignores_nan_draws() -> None:
    samples = np.array([[1.0, np.nan], [2.0, np.nan], [np.nan, np.nan], [3.0, np.nan]])
    lo, hi = percentile_interval(samples, ci=0.5)
    assert lo[0] == pytest.approx(1.5) and hi[0] == pytest.approx(2.5)
    assert np.isnan(lo[1]) and np.isnan(hi[1])


def test_widened_interval_puts_undefined_draws_at_both_extremes() -> None:
    draws = np.arange(1.0, 101.0)  # 1 … 100
    lo, hi = percentile_interval(draws, ci=0.9, undefined="widen")
    assert (lo, hi) == pytest.approx(np.quantile(draws, [0.05, 0.95]))  # nothing undefined: the plain interval
    with_nan = np.concatenate([draws[:97], [np.nan] * 3])  # 3 % undefined
    lo, hi = percentile_interval(with_nan, ci=0.9, undefined="widen")
    # As if the 3 draws were -inf (for lo) or +inf (for hi): the 5 % and 95 % quantiles of 100 draws.
    assert lo == pytest.approx(np.quantile(np.concatenate([[-1e9] * 3, draws[:97]]), 0.05))
    assert hi == pytest.approx(np.quantile(np.concatenate([draws[:97], [1e9] * 3]), 0.95), rel=1e-6)
    lo, hi = percentile_interval(np.concatenate([draws[:90], [np.nan] * 10]), ci=0.9, undefined="widen")
    assert lo == -np.inf and hi == np.inf  # more than 5 % undefined: neither end can be trusted
    with pytest.raises(InvalidArgument, match="widen"):
        percentile_interval(draws, undefined="drop")  # type: ignore[arg-type]


def test_standard_error_is_the_sd_of_the_defined_draws() -> None:
    draws = np.array([[1.0, np.nan], [2.0, 5.0], [4.0, np.nan]])
    se = standard_error(draws)
    assert se[0] == pytest.approx(np.std([1, 2, 4], ddof=1)) and np.isnan(se[1])


def test_spearman_equals_scipy_with_ties_and_over_leading_axes() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, (50, 12)).astype(float), rng.integers(0, 4, (50, 12)).astype(float)
    ours = spearman(a, b)
    assert ours.shape == (50,)
    for i in range(50):
        assert ours[i] == pytest.approx(spearmanr(a[i], b[i]).statistic, abs=1e-12)
    x = rng.random(8)
    assert spearman(x, x) == pytest.approx(1.0) and spearman(x, -x) == pytest.approx(-1.0)
    assert np.isnan(spearman(x, np.ones(8)))  # a constant side has no ranking


def test_wilson_bounds_are_exactly_0_and_1_at_none_and_all_correct() -> None:
    # Rounding in centre - half leaves 2.8e-17 at 0/5 (and 0.9999999999999999 at 13/13) without the exact ends.
    for n in range(1, 2000):
        assert wilson_interval(0, n)[0] == 0.0 and wilson_interval(n, n)[1] == 1.0, n
    assert 0 < wilson_interval(1, 5)[0] and wilson_interval(4, 5)[1] < 1
