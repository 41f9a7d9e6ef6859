"""Every branch of every verdict rule of the findings page, on planted intervals and counts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from robustness.errors import InvalidArgument
from robustness.findings.verdicts import (
    CONFIRMED,
    EXCEEDED,
    REFUTED,
    UNDECIDED,
    UNINFORMATIVE,
    UNTESTABLE,
    WITHIN,
    Estimate,
    Verdict,
    bin_labels,
    combined_verdict,
    depth_verdict,
    invariance_verdict,
    labels_verdict,
    probe_verdict,
    regime_verdict,
    retraining_verdict,
    settings_verdict,
)

NAN = Estimate(math.nan, math.nan, math.nan)


@pytest.mark.parametrize(("counts", "outcome"), [
    ({"fragile": 2, "robust": 5, "antifragile": 1, "uncertain": 13}, CONFIRMED),
    ({"robust": 21}, REFUTED),  # every layer decided, two labels never occur
    ({"fragile": 1, "robust": 4, "uncertain": 16}, UNDECIDED),  # antifragile could hide among the uncertain
    ({"undefined": 21}, UNTESTABLE),
    ({}, UNTESTABLE),
])
def test_labels_verdict(counts: dict[str, int], outcome: str) -> None:
    verdict = labels_verdict(counts)
    assert verdict.outcome == outcome and "random null" in verdict.rule
    assert verdict.numbers["uncertain"] == counts.get("uncertain", 0)


@pytest.mark.parametrize(("kappas", "partials", "outcome"), [
    ([(0.6, 0.3, 0.8), (0.5, 0.2, 0.7)], [(0.6, 0.3, 0.8)], CONFIRMED),
    ([(0.6, 0.3, 0.8), (0.05, -0.2, 0.15)], [(0.6, 0.3, 0.8)], REFUTED),  # one κ at most slight
    ([(0.6, 0.3, 0.8)], [(0.0, -0.3, 0.1)], REFUTED),  # partial ρ at most slight
    ([(0.6, 0.3, 0.8)], [(0.3, -0.1, 0.6)], UNDECIDED),  # partial ρ includes 0
    ([NAN, (0.6, 0.3, 0.8)], [(0.6, 0.3, 0.8)], UNDECIDED),  # one κ undefined: its labels cannot be judged
    ([NAN, NAN], [NAN], UNTESTABLE),
])
def test_invariance_verdict(kappas: list, partials: list, outcome: str) -> None:
    verdict = invariance_verdict(kappas, partials)
    assert verdict.outcome == outcome and "below 0.2" in verdict.rule
    assert invariance_verdict(kappas, partials, weak=0.3).rule != verdict.rule


@pytest.mark.parametrize(("difference", "overlap", "outcome"), [
    ((0.05, 0.02, 0.08), 0.3, CONFIRMED),
    ((0.0, -0.005, 0.005), 0.3, REFUTED),  # equivalent within the margin
    ((-0.05, -0.08, -0.02), 0.3, REFUTED),
    ((0.01, -0.01, 0.03), 0.3, UNDECIDED),
    ((0.05, 0.02, 0.08), 0.94, UNTESTABLE),  # the page's 19 of 21 layers: a clear interval counts for nothing
    (NAN, 0.3, UNTESTABLE),
    ((0.05, 0.02, 0.08), math.nan, UNTESTABLE),
])
def test_retraining_verdict(difference: tuple, overlap: float, outcome: str) -> None:
    verdict = retraining_verdict(Estimate(*difference), overlap, margin=0.01)
    assert verdict.outcome == outcome and "margin 0.01" in verdict.rule and verdict.numbers["margin"] == 0.01
    with pytest.raises(InvalidArgument, match="margin"):
        retraining_verdict(Estimate(*difference), overlap, margin=-1)


def _v(outcome: str) -> Verdict:
    return Verdict(outcome, "", "")


@pytest.mark.parametrize(("outcomes", "outcome"), [
    ([CONFIRMED, CONFIRMED], CONFIRMED),
    ([CONFIRMED, UNDECIDED], UNDECIDED),
    ([REFUTED, UNDECIDED], REFUTED),
    ([REFUTED, CONFIRMED], UNDECIDED),
    ([UNTESTABLE, UNTESTABLE], UNTESTABLE),
    ([UNTESTABLE, REFUTED], REFUTED),
    ([], UNTESTABLE),
])
def test_combined_verdict(outcomes: list[str], outcome: str) -> None:
    found = combined_verdict({f"comparison {i}": _v(o) for i, o in enumerate(outcomes)})
    assert found.outcome == outcome


def _regime(moved: bool, within: bool) -> tuple[np.ndarray, ...]:
    """21 layers x 3 initialisations of differences; ``moved``: layer 0 clearly positive in every initialisation."""
    diff = np.full((21, 3), 0.01)
    diff[:, 1] = -0.01
    lo, hi = diff - (0.02 if within else 0.2), diff + (0.02 if within else 0.2)
    p = np.full((21, 3), 0.5)
    if moved:
        diff[0], lo[0], hi[0], p[0] = 0.3, 0.2, 0.4, 0.002
    return diff, lo, hi, p


def test_regime_verdict_counts_a_layer_only_when_every_initialisation_agrees_in_sign() -> None:
    confirmed = regime_verdict(*_regime(moved=True, within=False))
    assert confirmed.outcome == CONFIRMED and confirmed.numbers["moved"] == confirmed.numbers["moved_up"] == 1
    assert confirmed.numbers["significant"] == 3 and "Benjamini" in confirmed.rule
    # Significant in every initialisation but with mixed signs: not moved.
    diff, lo, hi, p = _regime(moved=True, within=False)
    diff[0, 1], lo[0, 1], hi[0, 1] = -0.3, -0.4, -0.2
    assert regime_verdict(diff, lo, hi, p).outcome == UNDECIDED
    # 63 tests at p = 0.04 each clear 0 uncorrected but not after BH when most are null.
    diff, lo, hi, p = _regime(moved=False, within=False)
    p[:2] = 0.04
    found = regime_verdict(diff, lo, hi, p)
    assert found.numbers["uncorrected"] == 6 and found.numbers["significant"] == 0 and found.outcome == UNDECIDED
    assert regime_verdict(*_regime(moved=False, within=True)).outcome == REFUTED
    nan = np.full((2, 3), np.nan)
    assert regime_verdict(nan, nan, nan, nan).outcome == UNTESTABLE


def _partials(values: list[float], half: float = 0.2) -> list[Estimate]:
    return [Estimate(v, v - half, v + half) for v in values]


@pytest.mark.parametrize(("values", "half", "outcome"), [
    ([-0.5] * 8, 0.2, CONFIRMED),
    ([-0.5] * 7 + [0.5], 0.2, UNDECIDED),  # one interval above 0 (and the sign test not at 0.05)
    ([-0.5] * 10 + [0.4], 0.2, UNDECIDED),  # sign test negative, yet one interval above 0
    ([0.5] * 8, 0.2, REFUTED),  # sign test positive
    ([0.1, -0.1] * 4, 0.05, REFUTED),  # every interval above -0.2: not even a weak negative relation
    ([-0.3, 0.2] * 4, 0.4, UNDECIDED),
    ([-0.5] * 5, 0.2, UNTESTABLE),  # 5 checkpoints: the sign test's smallest p is 0.0625
])
def test_probe_verdict(values: list[float], half: float, outcome: str) -> None:
    verdict = probe_verdict(_partials(values, half))
    assert verdict.outcome == outcome, verdict.reason
    assert verdict.numbers["checkpoints"] == len(values)


def test_probe_verdict_leaves_out_undefined_checkpoints() -> None:
    assert probe_verdict([*_partials([-0.5] * 6), NAN]).numbers["checkpoints"] == 6


def test_a_bins_label_follows_its_own_interval() -> None:
    bins = {"d 0.00-0.25": Estimate(0.2, 0.1, 0.3), "d 0.25-0.50": Estimate(0.0, -0.03, 0.04),
            "d 0.50-0.75": Estimate(-0.2, -0.3, -0.1), "d 0.75-1.00": Estimate(0.1, -0.1, 0.3),
            "empty": NAN}
    assert bin_labels(bins, 0.05) == {"d 0.00-0.25": "antifragile", "d 0.25-0.50": "robust",
                                      "d 0.50-0.75": "fragile", "d 0.75-1.00": "uncertain", "empty": "undefined"}


@pytest.mark.parametrize(("rho", "outcome"), [
    ((0.4, -1.0, 1.0), UNINFORMATIVE),  # a ρ over 4 bins
    ((0.8, 0.2, 1.0), CONFIRMED),
    ((-0.8, -1.0, -0.3), REFUTED),
    ((0.2, -0.5, 0.9), UNDECIDED),
    ((math.nan, math.nan, math.nan), UNTESTABLE),
])
def test_depth_verdict(rho: tuple, outcome: str) -> None:
    assert depth_verdict(Estimate(*rho)).outcome == outcome


def test_settings_verdict_reads_its_own_numbers() -> None:
    # The page's check: 0.036 / 0.022 / 0.037 against 0.02, with 1, 4 and 3 labels changed.
    largest = {"thresholds": 0.036, "BatchNorm images": 0.022, "both": 0.037}
    changed = {"thresholds": 1, "BatchNorm images": 4, "both": 3}
    found = settings_verdict(largest, changed, 0.02)
    assert found.outcome == EXCEEDED and "thresholds 0.036, 1 labels changed" in found.reason
    assert settings_verdict({"thresholds": 0.01}, {"thresholds": 1}, 0.02).outcome == EXCEEDED
    within = settings_verdict({"thresholds": 0.01, "both": 0.02}, {"thresholds": 0, "both": 0}, 0.02)
    assert within.outcome == WITHIN and "0.02" in within.rule
