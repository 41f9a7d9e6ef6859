"""Invariance: label agreement and Spearman's ρ between sets of scores, against planted truths and scipy."""

from __future__ import annotations

import json

import numpy as np
import pytest
from planted import planted
from scipy.stats import spearmanr

from robustness import paths
from robustness.cli import main
from robustness.errors import InvalidArgument
from robustness.figures import save_figure
from robustness.filtering import save_results
from robustness.scoring import Scoring, compare, label, plot_comparison
from robustness.vocab import SCORES

LAYERS = [f"layer{i}" for i in range(8)]


def scored(values, labels=None, tau: float = 0.05, layers=LAYERS) -> dict:
    """Per-layer scores dicts with the same value for every score; labels default to the point labels."""
    labels = labels or [label(v, tau) for v in values]
    return {name: {**{s: float(v) for s in SCORES}, "ci": {s: (v - 0.01, v + 0.01) for s in SCORES},
                   "labels": {s: lab for s in SCORES}, "tau": tau}
            for name, v, lab in zip(layers, values, labels, strict=True)}


VALUES = [-0.3, -0.1, -0.02, 0.0, 0.03, 0.08, 0.2, 0.4]


def test_identical_sets_agree_fully_and_rank_alike() -> None:
    result = compare({"a": scored(VALUES), "b": scored(VALUES)}, scoring=Scoring(n_boot=200))
    for score in SCORES:
        pair = result.pair(score, "a", "b")
        assert pair["agreement"] == 1.0 and pair["confident_agreement"] == 1.0 and pair["n_confident"] == 8
        assert pair["rho"] == pytest.approx(1.0) and (pair["rho_lo"], pair["rho_hi"]) == pytest.approx((1.0, 1.0))
    assert result.layers == LAYERS and result.names == ["a", "b"] and result.tau == 0.05


def test_a_reversed_ranking_has_rho_minus_one() -> None:
    result = compare({"a": scored(VALUES), "b": scored(VALUES[::-1])}, scoring=Scoring(n_boot=200))
    pair = result.pair("clean", "b", "a")
    assert pair["rho"] == pytest.approx(-1.0) and (pair["rho_lo"], pair["rho_hi"]) == pytest.approx((-1.0, -1.0))
    # fragile, fragile, robust, robust, robust, antifragile, antifragile, antifragile reversed: 2 of 8 agree.
    assert pair["agreement"] == pytest.approx(2 / 8)


def test_rho_and_its_interval_equal_scipy_on_explicitly_resampled_layers() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=8).round(1), rng.normal(size=8).round(1)  # rounded: ties
    result = compare({"a": scored(a), "b": scored(b)}, scoring=Scoring(n_boot=300, seed=4, ci=0.9))
    pair = result.pair("adversarial", "a", "b")
    assert pair["rho"] == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)
    draws = np.random.default_rng(4).integers(0, 8, (300, 8))
    reference = np.array([spearmanr(a[d], b[d]).statistic for d in draws])
    lo, hi = np.nanquantile(reference, [0.05, 0.95])
    assert (pair["rho_lo"], pair["rho_hi"]) == pytest.approx((lo, hi), abs=1e-12)


def test_uncertain_counts_as_a_label_and_confident_agreement_leaves_it_out() -> None:
    labels_a = ["fragile", "uncertain", "uncertain", "robust", "robust", "antifragile", "undefined", "robust"]
    labels_b = ["fragile", "uncertain", "robust", "robust", "fragile", "antifragile", "robust", "undefined"]
    pair = compare({"a": scored(VALUES, labels_a), "b": scored(VALUES, labels_b)},
            scoring=Scoring(n_boot=50)).pair("clean", "a", "b")
    # Defined in both: layers 0-5; equal: 0, 1, 3, 5. Confident in both: 0, 3, 4, 5; equal: 0, 3, 5.
    assert pair["agreement"] == pytest.approx(4 / 6)
    assert pair["confident_agreement"] == pytest.approx(3 / 4) and pair["n_confident"] == 4


def test_the_agreement_interval_equals_explicitly_resampled_layers() -> None:
    """Over the layers defined in both (layers 0-5 here), resampled as rho's are: the percentile interval of the
    share that agree; identical labels give [1, 1]."""
    labels_a = ["fragile", "uncertain", "uncertain", "robust", "robust", "antifragile", "undefined", "robust"]
    labels_b = ["fragile", "uncertain", "robust", "robust", "fragile", "antifragile", "robust", "undefined"]
    pair = compare({"a": scored(VALUES, labels_a), "b": scored(VALUES, labels_b)},
                   scoring=Scoring(n_boot=400, seed=3, ci=0.9)).pair("clean", "a", "b")
    same = np.array([1, 1, 0, 1, 0, 1], dtype=float)
    draws = np.random.default_rng(3).integers(0, 6, (400, 6))
    lo, hi = np.quantile(same[draws].mean(1), [0.05, 0.95])
    assert (pair["agreement_lo"], pair["agreement_hi"]) == pytest.approx((lo, hi), abs=1e-12)
    assert pair["agreement_lo"] < 4 / 6 < pair["agreement_hi"]
    full = compare({"a": scored(VALUES), "b": scored(VALUES)}, scoring=Scoring(n_boot=50)).pair("clean", "a", "b")
    assert (full["agreement_lo"], full["agreement_hi"]) == (1.0, 1.0)


def test_different_architectures_are_matched_through_a_layer_mapping() -> None:
    other = [f"block{i}" for i in range(8)]
    sets = {"small": scored(VALUES), "big": scored(VALUES, layers=other)}
    with pytest.raises(InvalidArgument, match="0 layer\\(s\\) in common.*rename="):
        compare(sets)
    result = compare(sets, rename={"big": dict(zip(other, LAYERS, strict=True))}, scoring=Scoring(n_boot=50))
    assert result.layers == LAYERS and result.pair("clean", "small", "big")["rho"] == pytest.approx(1.0)
    subset = compare(sets, rename={"big": dict(zip(other, LAYERS, strict=True))}, layers=LAYERS[:4],
            scoring=Scoring(n_boot=50))
    assert subset.layers == LAYERS[:4]
    with pytest.raises(InvalidArgument, match="missing"):
        compare(sets, layers=["layer0", "nope", "layer1"])


def test_three_sets_give_every_pair_and_bad_input_one_clear_error(tmp_path) -> None:
    rng = np.random.default_rng(1)
    sets = {f"Init_{i}": scored(VALUES + rng.normal(0, 0.05, 8)) for i in (1, 2, 3)}
    result = compare(sets, scoring=Scoring(n_boot=100))
    assert [(p["a"], p["b"]) for p in result.pairs if p["score"] == "clean"] == [
        ("Init_1", "Init_2"), ("Init_1", "Init_3"), ("Init_2", "Init_3")]
    assert {row["sets"] for row in result.rows()} == {"Init_1 vs Init_2", "Init_1 vs Init_3", "Init_2 vs Init_3"}
    assert save_figure(plot_comparison(result, "inits"), "compare", tmp_path).read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(InvalidArgument, match="at least two"):
        compare({"a": scored(VALUES)})
    with pytest.raises(InvalidArgument, match="different tau"):
        compare({"a": scored(VALUES), "b": scored(VALUES, tau=0.1)})


def _write_checkpoints(root, arch: str = "mnist_cnn", layers=("conv1", "conv2", "fc1", "fc2")) -> None:
    """Local highpass results for Init_1-2 at epochs 1-2: layer i loses a share i/4 of its accuracy, so every
    checkpoint ranks the layers alike."""
    t = np.linspace(0, 1, 5)
    for init in (1, 2):
        for epoch in (1, 2):
            results = [planted(1 - i / 4 * t, 1 - i / 4 * t, t, n=400, layer=name) for i, name in enumerate(layers)]
            save_results({"attack": "fgsm_acc0.5", "eps": 0.1},
                         results, paths.sweep_result_path(arch, "mnist5k", init, epoch, "highpass", "local",
                                                          "fgsm_acc0.5", root))


@pytest.mark.slow
def test_compare_command_by_init_by_epoch_and_by_set(tmp_path, capsys) -> None:
    models, plots = tmp_path / "models", tmp_path / "plots"
    _write_checkpoints(models)
    common = ["--arch", "mnist_cnn", "--n-boot", "100", "--models-root", str(models), "--plots-root", str(plots)]
    assert main(["compare", "--by", "init", *common]) == 0
    out = capsys.readouterr().out
    assert "Init_1 vs Init_2" in out and "+1.00" in out and "(4 layers, tau=0.05)" in out
    assert (plots / "compare_MnistCNN_MNIST5K_by_init_highpass_density.png").is_file()
    assert main(["compare", "--by", "epoch", "--init", "2", *common]) == 0
    assert "epoch 1 vs epoch 2" in capsys.readouterr().out
    assert main(["compare", "--set", "a=mnist_cnn:mnist5k:1:1", "--set", "b=mnist_cnn:mnist5k:2:2", *common]) == 0
    assert "a vs b" in capsys.readouterr().out
    assert main(["compare", *common]) == 2
    assert "choose what to compare" in capsys.readouterr().err
    assert main(["compare", "--set", "a=mnist_cnn:mnist5k:1", "--set", "b=x", *common]) == 2
    assert "NAME=ARCH:DATASET:INIT:EPOCH" in capsys.readouterr().err
    assert main(["compare", "--set", "a=mnist_cnn:mnist5k:3:1", "--set", "b=mnist_cnn:mnist5k:1:1", *common]) == 2
    assert "no local highpass results of Init_3 epoch 1" in capsys.readouterr().err


def test_a_layer_map_matches_two_architectures(tmp_path, capsys) -> None:
    models = tmp_path / "models"
    _write_checkpoints(models)
    _write_checkpoints(models, arch="resnet18", layers=("conv1", "layer1.0.conv1", "layer2.0.conv1", "fc"))
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"big": {"layer1.0.conv1": "conv2", "layer2.0.conv1": "fc1", "fc": "fc2"}}))
    argv = ["compare", "--set", "small=mnist_cnn:mnist5k:1:2", "--set", "big=resnet18:mnist5k:1:2", "--n-boot", "50",
            "--models-root", str(models), "--plots-root", str(tmp_path / "plots")]
    assert main(argv) == 2
    assert "1 layer(s) in common (conv1)" in capsys.readouterr().err
    assert main([*argv, "--layer-map", str(mapping)]) == 0
    assert "small vs big" in capsys.readouterr().out
