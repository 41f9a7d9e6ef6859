"""The PGD re-check: the gain of FGSM over PGD under filtering, its SE, and the flag, on planted sweeps."""

from __future__ import annotations

import numpy as np
import pytest
from planted import nested, sweep_from_outcomes
from scipy.integrate import simpson

from robustness.errors import InvalidArgument
from robustness.recheck import candidates, fgsm_gain
from robustness.stats import bootstrap_counts

T = np.linspace(0, 1, 9)
N = 800


def _pair(fgsm_adv, pgd_adv, fgsm_ref: float = 0.5, pgd_ref: float = 0.2):
    """FGSM and PGD sweeps of one layer on the same images (same clean outcomes)."""
    clean, ref_clean = nested(np.full(9, 0.9), N), nested(0.9, N)
    fgsm = sweep_from_outcomes(clean, nested(fgsm_adv, N), ref_clean, nested(fgsm_ref, N), T)
    pgd = sweep_from_outcomes(clean, nested(pgd_adv, N), ref_clean, nested(pgd_ref, N), T)
    return fgsm, pgd


def test_pgd_weaker_in_absolute_terms_but_falling_alike_is_not_flagged() -> None:
    # PGD is 0.3 below FGSM everywhere, the unfiltered model included: filtering does the same to both.
    fgsm, pgd = _pair(0.5 - 0.2 * T, 0.2 - 0.2 * T)
    result = fgsm_gain(fgsm, pgd, n_boot=200)
    assert result["gain"] == pytest.approx(0.0, abs=1e-12) and not result["flagged"]
    assert 0 < result["se"] < 0.02  # different images flip under each attack: the gain has noise, not signal


def test_fgsm_rising_while_pgd_falls_is_flagged() -> None:
    # A filtered layer that masks the gradient: FGSM accuracy rises by 0.2 T, PGD's falls by 0.1 T.
    fgsm, pgd = _pair(0.5 + 0.2 * T, 0.2 - 0.1 * T)
    result = fgsm_gain(fgsm, pgd, n_boot=300, seed=2)
    assert result["gain"] == pytest.approx(simpson(0.3 * T, x=T), abs=1e-12)  # 0.15
    assert 0 < result["se"] < 0.05 and result["flagged"]
    assert result["ci"][0] < result["gain"] < result["ci"][1]
    # The SE equals the SD of g recomputed on explicitly resampled images.
    draws = []
    for counts in bootstrap_counts(N, 300, 2):
        idx = np.repeat(np.arange(N), counts)
        drop_f = fgsm.adv_correct[:, idx].mean(1) - fgsm.ref_adv_correct[idx].mean()
        drop_p = pgd.adv_correct[:, idx].mean(1) - pgd.ref_adv_correct[idx].mean()
        draws.append(simpson(drop_f - drop_p, x=T))
    assert result["se"] == pytest.approx(np.std(draws, ddof=1), abs=1e-12)


def test_a_gain_within_two_standard_errors_is_not_flagged() -> None:
    # Independent outcomes per threshold: FGSM and PGD both flat at their reference in truth; one draw of 800
    # images gives a small positive gain that two standard errors cover.
    rng = np.random.default_rng(3)
    clean, ref_clean = nested(np.full(9, 0.9), N), nested(0.9, N)
    fgsm = sweep_from_outcomes(clean, rng.random((9, N)) < 0.5, ref_clean, rng.random(N) < 0.5, T)
    pgd = sweep_from_outcomes(clean, rng.random((9, N)) < 0.2, ref_clean, rng.random(N) < 0.2, T)
    result = fgsm_gain(fgsm, pgd, n_boot=300)
    assert 0 < result["gain"] < 2 * result["se"] and not result["flagged"]


def test_sweeps_of_other_images_or_thresholds_are_refused() -> None:
    fgsm, pgd = _pair(0.5 * np.ones(9), 0.2 * np.ones(9))
    pgd.ref_clean_correct = pgd.ref_clean_correct[::-1].copy()
    with pytest.raises(InvalidArgument, match="same layer, thresholds and images"):
        fgsm_gain(fgsm, pgd)


def test_candidates_are_the_layers_fgsm_calls_robust_or_antifragile_on_adversarial_or_difference() -> None:
    def scored(clean: str, adv: str, diff: str) -> dict:
        return {"labels": {"clean": clean, "adversarial": adv, "difference": diff}}

    table = {"a": scored("robust", "fragile", "fragile"), "b": scored("fragile", "antifragile", "fragile"),
             "c": scored("fragile", "uncertain", "robust"), "d": scored("antifragile", "uncertain", "uncertain")}
    assert candidates(table) == ["b", "c"]
