"""Statistics over several sources of variance: the two-stage bootstrap's coverage on a simulated hierarchy,
consensus scores against a loop by hand, κ against scikit-learn, partial ρ against its textbook formula,
Benjamini–Hochberg against the step-up procedure written out, the sign test against scipy."""

from __future__ import annotations

import numpy as np
import pytest
from planted import latent, sweep_from_outcomes
from scipy.integrate import simpson
from scipy.stats import binomtest, spearmanr
from scipy.stats import t as student_t
from sklearn.metrics import cohen_kappa_score

from robustness.errors import InvalidArgument
from robustness.scoring import (
    KAPPA_UNDEFINED,
    Scoring,
    consensus_scores,
    filtering_scores,
    label_agreement,
    layer_consensus,
    score_correlation,
)
from robustness.stats import (
    agreed_sign,
    benjamini_hochberg,
    bootstrap_counts,
    bootstrap_p_value,
    cluster_draws,
    cluster_interval,
    cohen_kappa,
    partial_spearman,
    resampled_mean,
    sign_test,
)


def _hierarchy_coverage(inits: int, between: float, method: str, *, counted_once: bool = True, reps: int = 600,
                        n: int = 200, mean: float = 0.6, seed: int = 0) -> tuple[float, float]:
    """Coverage and mean half-width of the interval of a mean accuracy over ``inits`` initialisations, each with
    its own true accuracy ``mean + N(0, between²)`` measured on ``n`` images: the true consensus mean is ``mean``.
    ``counted_once``: the t interval takes the images' variance out of the draws' once (``within``)."""
    rng = np.random.default_rng(seed)
    p = np.clip(mean + between * rng.standard_normal((reps, inits)), 0, 1)
    correct = rng.random((inits, reps, n)) < p.T[..., None]
    inner = resampled_mean(correct, bootstrap_counts(n, 400, seed + 1)).transpose(1, 0, 2)  # (inits, 400, reps)
    point = correct.mean(-1).mean(0)
    within = inner.var(1, ddof=1).mean(0) if counted_once else None
    lo, hi = cluster_interval(point, cluster_draws(inner, 1000, seed + 2), inits, 0.95, method,  # type: ignore[arg-type]
                              within)
    return float(np.mean((lo <= mean) & (mean <= hi))), float(np.mean(hi - lo) / 2)


@pytest.mark.parametrize("between", [0.0, 0.05, 0.1])
@pytest.mark.parametrize("inits", [3, 5, 10])
def test_the_seed_level_interval_covers_the_known_mean(inits: int, between: float) -> None:
    coverage, half = _hierarchy_coverage(inits, between, "t")
    assert coverage >= 0.93
    wide_coverage, wide_half = _hierarchy_coverage(inits, between, "t", counted_once=False)
    assert wide_coverage >= coverage and wide_half > half  # the images counted twice: wider than it needs


def test_the_percentile_interval_over_three_initialisations_under_covers() -> None:
    # Why the default is the t interval: with 3 clusters and real between-init spread, the percentile interval of
    # the two-stage draws covers about 82 %, far below 95 %.
    coverage, half = _hierarchy_coverage(3, 0.1, "percentile")
    t_coverage, t_half = _hierarchy_coverage(3, 0.1, "t")
    assert coverage < 0.9 and t_coverage >= 0.93
    assert t_half > 2 * half


def test_cluster_draws_resample_clusters_then_their_inner_draws() -> None:
    # Two clusters with constant inner draws 0 and 1: a draw is the share of cluster 1 among 2 drawn -> 0, 0.5, 1.
    inner = np.stack([np.zeros((50, 1)), np.ones((50, 1))])
    draws = cluster_draws(inner, 4000, seed=3)[:, 0]
    assert set(np.unique(draws)) == {0.0, 0.5, 1.0}
    assert np.mean(draws == 0.5) == pytest.approx(0.5, abs=0.03)
    with pytest.raises(InvalidArgument, match="at least 2"):
        cluster_interval(np.zeros(1), draws[:, None], 1)
    with pytest.raises(InvalidArgument, match="'t' or 'percentile'"):
        cluster_interval(np.zeros(1), draws[:, None], 2, method="bca")  # type: ignore[arg-type]


def _init_sweep(rng: np.random.Generator, shift: float, n: int = 300, null: bool = True):
    t = np.linspace(0, 1, 5)
    clean, ref_clean = latent(0.9 - (0.4 + shift) * t, 0.9, n, rng)
    adv, ref_adv = latent(0.5 - (0.2 + shift) * t, 0.5, n, rng)
    null_clean = np.stack([latent(0.9 - 0.5 * t, 0.9, n, rng)[0] for _ in range(3)]) if null else None
    null_adv = np.stack([latent(0.5 - 0.3 * t, 0.5, n, rng)[0] for _ in range(3)]) if null else None
    return sweep_from_outcomes(clean, adv, ref_clean, ref_adv, t, null_clean=null_clean, null_adv=null_adv)


def test_consensus_scores_equal_a_loop_by_hand() -> None:
    rng = np.random.default_rng(0)
    sweeps = [_init_sweep(rng, s) for s in (0.0, 0.1, -0.05)]
    scoring = Scoring(baseline="random", n_boot=300, seed=4)
    found = consensus_scores(sweeps, scoring)
    # The point: the mean of each initialisation's own score.
    for score in ("clean", "adversarial", "difference"):
        own = [filtering_scores(s, scoring)[score] for s in sweeps]
        assert found[score] == pytest.approx(np.mean(own), abs=1e-12)
        assert found["per_init"][score] == pytest.approx(own, abs=1e-12)
    # The draws by hand: init i's images resampled with seed + i, the inits with seed; adversarial score only.
    t_hat = np.linspace(0, 1, 5)
    inner = []
    for i, s in enumerate(sweeps):
        counts = bootstrap_counts(300, 300, scoring.seed + i)
        rows = []
        for c in counts:
            w = c / c.sum()
            ref = (s.ref_adv_correct * w).sum()
            curve = (s.adv_correct * w).sum(1) / ref
            base = np.mean([(m * w).sum(1) for m in s.null_adv_correct], axis=0) / ref
            rows.append(simpson(curve - base, x=t_hat))
        inner.append(rows)
    rng = np.random.default_rng(scoring.seed)
    clusters, picks = rng.integers(0, 3, (300, 3)), rng.integers(0, 300, (300, 3))
    draws = np.array([np.mean([inner[k][j] for k, j in zip(cl, pk, strict=True)]) for cl, pk in zip(
        clusters, picks, strict=True)])
    within = np.mean([np.var(rows, ddof=1) for rows in inner]) / 3
    se = np.sqrt(max((draws.var(ddof=1) - within) * 3 / 2, within))
    half = student_t.ppf(0.975, 2) * se
    assert found["ci"]["adversarial"] == pytest.approx((found["adversarial"] - half, found["adversarial"] + half))
    assert found["labels"]["adversarial"] in ("fragile", "robust", "antifragile", "uncertain")
    assert found["image_share"]["adversarial"] == pytest.approx(within / se**2)
    assert layer_consensus([{"conv1": s} for s in sweeps], scoring)["conv1"]["ci"] == found["ci"]


def test_the_image_share_tells_the_initialisations_spread_from_the_images_noise() -> None:
    rng = np.random.default_rng(5)
    scoring = Scoring(baseline="random", n_boot=300, seed=2)
    same = consensus_scores([_init_sweep(rng, 0.0) for _ in range(10)], scoring)["image_share"]
    apart = consensus_scores([_init_sweep(rng, s) for s in (-0.3, 0.0, 0.3)], scoring)["image_share"]
    # the same true curves: the initialisations differ by the images' noise only, which is then most of the
    # interval (10 of them, for a between-variance estimate that is not mostly chance); curves far apart: the seed
    # is most of it
    assert 0.4 < same["adversarial"] <= 1 and 0 < apart["adversarial"] < 0.1


def test_consensus_needs_two_initialisations_of_one_layer() -> None:
    rng = np.random.default_rng(1)
    one = _init_sweep(rng, 0.0, null=False)
    with pytest.raises(InvalidArgument, match="at least 2"):
        consensus_scores([one])
    other = _init_sweep(rng, 0.0, null=False)
    other.layer = "fc"
    with pytest.raises(InvalidArgument, match="one layer"):
        consensus_scores([one, other])
    with pytest.raises(InvalidArgument, match="--random-baseline"):
        consensus_scores([one, one], Scoring(baseline="random"))


def test_kappa_matches_scikit_learn_and_is_undefined_when_one_label_covers_everything() -> None:
    rng = np.random.default_rng(2)
    labels = np.array(["fragile", "robust", "antifragile", "uncertain"])
    for _ in range(20):
        a, b = labels[rng.integers(0, 4, 21)], labels[rng.integers(0, 3, 21)]
        b[:10] = a[:10]
        assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)
    everything = np.array(["antifragile"] * 21)
    assert np.isnan(cohen_kappa(everything, everything))
    found = label_agreement(list(everything), list(everything), n_boot=200)
    assert found["share"] == 1.0 and np.isnan(found["kappa"]) and found["kappa_note"] == KAPPA_UNDEFINED
    # Almost every layer one label: a high raw share, a κ near chance (the page's case).
    a = ["antifragile"] * 19 + ["robust", "antifragile"]
    b = ["antifragile"] * 19 + ["antifragile", "robust"]
    found = label_agreement(a, b, n_boot=500)
    assert found["share"] == pytest.approx(19 / 21)
    assert found["kappa"] == pytest.approx(cohen_kappa_score(a, b)) and found["kappa"] < 0
    assert found["share_lo"] <= found["share"] <= found["share_hi"] and found["kappa_note"] == ""
    assert found["kappa_lo"] <= found["kappa"] <= found["kappa_hi"]
    with pytest.raises(InvalidArgument, match="same layers"):
        label_agreement(a, b[:3])


def test_partial_spearman_matches_the_textbook_formula_and_removes_depth() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        depth, a, b = rng.random(21), rng.random(21), rng.random(21)
        a, b = a + 2 * depth, b + depth
        r_ab, r_ad, r_bd = spearmanr(a, b)[0], spearmanr(a, depth)[0], spearmanr(b, depth)[0]
        expected = (r_ab - r_ad * r_bd) / np.sqrt((1 - r_ad**2) * (1 - r_bd**2))
        assert partial_spearman(a, b, depth) == pytest.approx(expected, abs=1e-10)
    # Planted: both scores are depth plus independent noise: raw ρ is high, the partial ρ near 0.
    depth = np.linspace(0, 1, 200)
    a, b = depth + 0.05 * rng.standard_normal(200), depth + 0.05 * rng.standard_normal(200)
    found = score_correlation(a, b, depth, n_boot=300)
    assert found["rho"] > 0.8 and found["rho_lo"] > 0.7
    assert found["partial_lo"] < 0 < found["partial_hi"] and abs(found["partial"]) < 0.2
    assert np.isnan(partial_spearman(depth, b, depth))  # a side that is depth's own order has no residual
    assert np.isnan(score_correlation(a[:3], b[:3], depth[:3])["rho"])


def _bh_by_hand(p: list[float], alpha: float) -> list[bool]:
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    largest = max((k for k in range(1, m + 1) if p[order[k - 1]] <= k * alpha / m), default=0)
    return [order.index(i) < largest for i in range(m)]


def test_benjamini_hochberg_matches_the_step_up_procedure() -> None:
    rng = np.random.default_rng(4)
    for _ in range(50):
        p = np.concatenate([rng.random(40), rng.random(23) * 0.01])
        q, reject = benjamini_hochberg(p.reshape(21, 3))
        assert reject.ravel().tolist() == _bh_by_hand(p.tolist(), 0.05)
        assert (q.ravel() >= p - 1e-15).all() and q.max() <= 1
    q, reject = benjamini_hochberg(np.array([0.01, np.nan, 0.02]))
    assert np.isnan(q[1]) and reject.tolist() == [True, False, True] and q[0] == pytest.approx(0.02)
    with pytest.raises(InvalidArgument, match="alpha"):
        benjamini_hochberg(np.array([0.1]), alpha=5)


def test_bootstrap_p_value_is_two_sided_and_matches_the_percentile_interval() -> None:
    rng = np.random.default_rng(5)
    draws = rng.normal(0.2, 0.05, (999, 3)) * np.array([1, -1, 1]) - np.array([0, 0, 0.19])
    p = bootstrap_p_value(draws)
    expected = [2 * (min((d <= 0).sum(), (d >= 0).sum()) + 1) / 1000 for d in draws.T]
    assert p == pytest.approx(expected)
    assert max(p[0], p[1]) < 0.05 < p[2]
    assert bootstrap_p_value(np.zeros(10)) == 1.0 and np.isnan(bootstrap_p_value(np.full(4, np.nan)))


def test_a_layer_counts_only_when_every_initialisation_agrees_in_sign() -> None:
    values = np.array([[0.1, 0.2, 0.3], [-0.1, -0.2, -0.1], [0.1, -0.2, 0.3], [0.1, 0.2, 0.3]])
    significant = np.array([[True] * 3, [True] * 3, [True] * 3, [True, False, True]])
    assert agreed_sign(values, significant).tolist() == [1, -1, 0, 0]


def test_sign_test_matches_scipy() -> None:
    values = np.array([-0.5, -0.2, -0.3, 0.1, -0.4, -0.6, 0.0, -0.1, np.nan, -0.2, -0.3, -0.7])
    positive, negative, p = sign_test(values)
    assert (positive, negative) == (1, 9)
    assert p == pytest.approx(binomtest(1, 10, 0.5).pvalue)
    assert sign_test(np.zeros(3)) == (0, 0, 1.0)


def test_regime_differences_carry_p_values_for_benjamini_hochberg() -> None:
    from test_comparisons import CURVES, FLAT, loaded  # noqa: PLC0415

    from robustness.scoring import compare_regimes  # noqa: PLC0415

    result = compare_regimes(loaded(CURVES), loaded({**CURVES, "fc1": FLAT}),
                             scoring=Scoring(n_boot=300, baseline="unfiltered"))
    rows = result.frame.set_index(["layer", "score"])
    assert rows.loc[("fc1", "clean")]["p"] == pytest.approx(2 / 301)  # every draw below 0
    assert rows.loc[("conv1", "clean")]["p"] == 1.0  # a difference of exactly 0
    _, reject = benjamini_hochberg(result.frame.p.to_numpy())
    assert set(result.frame[reject].layer) == {"fc1"}


def test_probe_agreement_reports_the_partial_rho_with_depth_held_out() -> None:
    from robustness.probes import ProbeResult, probe_agreement  # noqa: PLC0415

    rng = np.random.default_rng(6)
    n, layers = 100, [f"layer{i}" for i in range(8)]
    depth = {x: i / 7 for i, x in enumerate(layers)}
    drops = rng.permutation(8) * 0.1
    probes, scores = {}, {}
    for x, drop in zip(layers, drops, strict=True):
        ref = np.arange(n) < 90
        probed = np.arange(n) < round(90 - drop * 100)
        probes[x] = ProbeResult(x, "ablate", probed.mean(), probed.mean(), probed, probed, ref.mean(), ref.mean(),
                                ref, ref)
        value = -drop + 0.01 * rng.standard_normal()
        scores[x] = {"adversarial": value, "ci": {"adversarial": (value - 0.01, value + 0.01)},
                     "labels": {"adversarial": "uncertain"}}
    frame, summary = probe_agreement(scores, probes, depths=depth, n_boot=200)
    expected = score_correlation(frame.score, frame["drop"], frame.depth, n_boot=200)
    assert summary["partial"] == pytest.approx(expected["partial"]) and summary["partial"] < -0.9
    assert (summary["partial_lo"], summary["partial_hi"]) == pytest.approx((expected["partial_lo"],
                                                                            expected["partial_hi"]))
    assert np.isnan(probe_agreement(scores, probes, n_boot=50)[1]["partial"])  # no depths, no partial ρ


def test_compare_reports_kappa_and_with_depths_the_partial_rho() -> None:
    from test_compare import LAYERS, VALUES, scored  # noqa: PLC0415

    from robustness.scoring import compare  # noqa: PLC0415

    depths = {x: i / 7 for i, x in enumerate(LAYERS)}
    other = [v + 0.001 * (-1) ** i for i, v in enumerate(VALUES)]
    result = compare({"a": scored(VALUES), "b": scored(other)}, scoring=Scoring(n_boot=200), depths=depths)
    pair = result.pair("adversarial", "a", "b")
    labels_a = [result.labels["adversarial"][0][i] for i in range(8)]
    labels_b = [result.labels["adversarial"][1][i] for i in range(8)]
    assert pair["kappa"] == pytest.approx(cohen_kappa_score(labels_a, labels_b))
    assert pair["kappa_lo"] <= pair["kappa"] <= pair["kappa_hi"] and pair["kappa_note"] == ""
    # The values rise with depth, so with depth held out nothing is left to correlate.
    assert pair["rho"] == pytest.approx(1.0) and np.isnan(pair["partial"])
    same = compare({"a": scored([0.3] * 8), "b": scored([0.4] * 8)}, scoring=Scoring(n_boot=50))
    found = same.pair("clean", "a", "b")
    assert found["agreement"] == 1.0 and np.isnan(found["kappa"]) and found["kappa_note"] == KAPPA_UNDEFINED
    assert "partial" not in found
