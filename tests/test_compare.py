"""Invariance: label agreement and Spearman's ρ between sets of scores, against planted truths and scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from robustness.compare import compare
from robustness.errors import InvalidArgument
from robustness.plots import plot_comparison, save_figure
from robustness.scores import SCORES, label

LAYERS = [f"layer{i}" for i in range(8)]


def scored(values, labels=None, tau: float = 0.05, layers=LAYERS) -> dict:
    """Per-layer scores dicts with the same value for every score; labels default to the point labels."""
    labels = labels or [label(v, tau) for v in values]
    return {name: {**{s: float(v) for s in SCORES}, "ci": {s: (v - 0.01, v + 0.01) for s in SCORES},
                   "labels": {s: lab for s in SCORES}, "tau": tau}
            for name, v, lab in zip(layers, values, labels, strict=True)}


VALUES = [-0.3, -0.1, -0.02, 0.0, 0.03, 0.08, 0.2, 0.4]


def test_identical_sets_agree_fully_and_rank_alike() -> None:
    result = compare({"a": scored(VALUES), "b": scored(VALUES)}, n_boot=200)
    for score in SCORES:
        pair = result.pair(score, "a", "b")
        assert pair["agreement"] == 1.0 and pair["confident_agreement"] == 1.0 and pair["n_confident"] == 8
        assert pair["rho"] == pytest.approx(1.0) and (pair["rho_lo"], pair["rho_hi"]) == pytest.approx((1.0, 1.0))
    assert result.layers == LAYERS and result.names == ["a", "b"] and result.tau == 0.05


def test_a_reversed_ranking_has_rho_minus_one() -> None:
    result = compare({"a": scored(VALUES), "b": scored(VALUES[::-1])}, n_boot=200)
    pair = result.pair("clean", "b", "a")
    assert pair["rho"] == pytest.approx(-1.0) and (pair["rho_lo"], pair["rho_hi"]) == pytest.approx((-1.0, -1.0))
    # fragile, fragile, robust, robust, robust, antifragile, antifragile, antifragile reversed: 2 of 8 agree.
    assert pair["agreement"] == pytest.approx(2 / 8)


def test_rho_and_its_interval_equal_scipy_on_explicitly_resampled_layers() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=8).round(1), rng.normal(size=8).round(1)  # rounded: ties
    result = compare({"a": scored(a), "b": scored(b)}, n_boot=300, seed=4, ci=0.9)
    pair = result.pair("adversarial", "a", "b")
    assert pair["rho"] == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)
    draws = np.random.default_rng(4).integers(0, 8, (300, 8))
    reference = np.array([spearmanr(a[d], b[d]).statistic for d in draws])
    lo, hi = np.nanquantile(reference, [0.05, 0.95])
    assert (pair["rho_lo"], pair["rho_hi"]) == pytest.approx((lo, hi), abs=1e-12)


def test_uncertain_counts_as_a_label_and_confident_agreement_leaves_it_out() -> None:
    labels_a = ["fragile", "uncertain", "uncertain", "robust", "robust", "antifragile", "undefined", "robust"]
    labels_b = ["fragile", "uncertain", "robust", "robust", "fragile", "antifragile", "robust", "undefined"]
    pair = compare({"a": scored(VALUES, labels_a), "b": scored(VALUES, labels_b)}, n_boot=50).pair("clean", "a", "b")
    # Defined in both: layers 0-5; equal: 0, 1, 3, 5. Confident in both: 0, 3, 4, 5; equal: 0, 3, 5.
    assert pair["agreement"] == pytest.approx(4 / 6)
    assert pair["confident_agreement"] == pytest.approx(3 / 4) and pair["n_confident"] == 4


def test_different_architectures_are_matched_through_a_layer_mapping() -> None:
    other = [f"block{i}" for i in range(8)]
    sets = {"small": scored(VALUES), "big": scored(VALUES, layers=other)}
    with pytest.raises(InvalidArgument, match="0 layer\\(s\\) in common.*rename="):
        compare(sets)
    result = compare(sets, rename={"big": dict(zip(other, LAYERS, strict=True))}, n_boot=50)
    assert result.layers == LAYERS and result.pair("clean", "small", "big")["rho"] == pytest.approx(1.0)
    subset = compare(sets, rename={"big": dict(zip(other, LAYERS, strict=True))}, layers=LAYERS[:4], n_boot=50)
    assert subset.layers == LAYERS[:4]
    with pytest.raises(InvalidArgument, match="missing"):
        compare(sets, layers=["layer0", "nope", "layer1"])


def test_three_sets_give_every_pair_and_bad_input_one_clear_error(tmp_path) -> None:
    rng = np.random.default_rng(1)
    sets = {f"Init_{i}": scored(VALUES + rng.normal(0, 0.05, 8)) for i in (1, 2, 3)}
    result = compare(sets, n_boot=100)
    assert [(p["a"], p["b"]) for p in result.pairs if p["score"] == "clean"] == [
        ("Init_1", "Init_2"), ("Init_1", "Init_3"), ("Init_2", "Init_3")]
    assert {row["sets"] for row in result.rows()} == {"Init_1 vs Init_2", "Init_1 vs Init_3", "Init_2 vs Init_3"}
    assert save_figure(plot_comparison(result, "inits"), "compare", tmp_path).read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(InvalidArgument, match="at least two"):
        compare({"a": scored(VALUES)})
    with pytest.raises(InvalidArgument, match="different tau"):
        compare({"a": scored(VALUES), "b": scored(VALUES, tau=0.1)})
