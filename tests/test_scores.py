"""Filtering scores: exact integrals on planted sweeps, the three baselines, the paired bootstrap against
explicit resampling, interval labels at their boundaries, the NaN guard, consensus over initialisations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from planted import latent, nested, planted, sweep_from_outcomes
from scipy.integrate import simpson
from torch import nn

from robustness import paths
from robustness.attacks import FGSM
from robustness.cli import main
from robustness.errors import DataNotFoundError, InvalidArgument
from robustness.filtering import load_results, local_analysis, save_results
from robustness.scoring import (
    Scoring,
    build_tables,
    consensus_labels,
    filtering_scores,
    interval_label,
    label,
    layer_scores,
    read_table,
    save_table,
    score_study,
)
from robustness.stats import bootstrap_counts, wilson_interval
from robustness.vocab import SCORES


@pytest.mark.slow
@pytest.mark.parametrize("t_count", [5, 6, 25])
def test_scores_are_the_exact_integrals_of_linear_and_quadratic_curves(t_count: int) -> None:
    t = np.linspace(0, 1, t_count)
    # Â_clean = 1 − t, Â_adv = 1 − t²/2, removed fraction = t (so ρ = 1 − t); every accuracy is a count of
    # 57,600 images, so the planted curves are exact.
    result = planted(1 - t, 1 - t**2 / 2, t, ref_clean=0.5, ref_adv=0.5, n=57_600)
    unfiltered = filtering_scores(result, scoring=Scoring(baseline="unfiltered", n_boot=20))
    assert unfiltered["clean"] == pytest.approx(-1 / 2, abs=1e-12)  # ∫ −t
    assert unfiltered["adversarial"] == pytest.approx(-1 / 6, abs=1e-12)  # ∫ −t²/2
    assert unfiltered["difference"] == pytest.approx(1 / 3, abs=1e-12)  # ∫ t − t²/2
    assert unfiltered["tau"] == 0.05 and unfiltered["baseline"] == "unfiltered"

    density = filtering_scores(result, scoring=Scoring(n_boot=20))  # the default baseline
    assert density["baseline"] == "density"
    assert density["clean"] == pytest.approx(0.0, abs=1e-12)  # Â_clean equals ρ exactly
    assert density["adversarial"] == pytest.approx(1 / 3, abs=1e-12)  # ∫ t − t²/2
    assert density["difference"] == pytest.approx(1 / 3, abs=1e-12)  # the baseline cancels
    # The point scores equal Simpson's rule on the recorded accuracy lists.
    rel = np.asarray(result.adv_acc) / result.ref_adv_acc
    assert density["adversarial"] == pytest.approx(simpson(rel - (1 - t), x=t), abs=1e-12)


def test_the_random_baseline_subtracts_the_null_models_mean_relative_accuracy() -> None:
    t = np.linspace(0, 1, 5)
    n = 400
    # Two masks whose relative accuracies are 1 − t/4 and 1 − 3t/4 (clean), 1 and 1 − t (adversarial):
    # their means are 1 − t/2 for both, against a sweep of Â_clean = 1 − t and Â_adv = 1.
    null_clean = np.stack([nested(0.8 * (1 - t / 4), n), nested(0.8 * (1 - 3 * t / 4), n)])
    null_adv = np.stack([nested(0.4 * np.ones(5), n), nested(0.4 * (1 - t), n)])
    result = sweep_from_outcomes(nested(0.8 * (1 - t), n), nested(0.4 * np.ones(5), n), nested(0.8, n),
                                 nested(0.4, n), t, null_clean=null_clean, null_adv=null_adv)
    scores = filtering_scores(result, scoring=Scoring(baseline="random", n_boot=50))
    assert scores["clean"] == pytest.approx(-0.25, abs=1e-12)  # ∫ (1 − t) − (1 − t/2)
    assert scores["adversarial"] == pytest.approx(0.25, abs=1e-12)  # ∫ 1 − (1 − t/2)
    assert scores["difference"] == pytest.approx(0.5, abs=1e-12)  # no baseline


def test_a_sweep_equal_to_its_null_model_is_robust_with_an_interval_of_zero_width() -> None:
    # Paired: every resample draws the same images for the sweep and the null model, so the difference is 0
    # in every resample. An unpaired bootstrap would give this a wide interval.
    t = np.linspace(0, 1, 9)
    scores = filtering_scores(planted(1 - t, 1 - t, t, n=100, null=True), scoring=Scoring(baseline="random"))
    for name in ("clean", "adversarial"):
        assert scores[name] == 0.0 and scores["ci"][name] == (0.0, 0.0) and scores["se"][name] == 0.0
        assert scores["labels"][name] == "robust"


def _reference_interval(result, baseline: str, n_boot: int, seed: int, ci: float = 0.95):
    """Resample the images explicitly and recompute every accuracy and score with scipy's Simpson."""
    n = len(result.ref_clean_correct)
    t = np.linspace(0, 1, len(result.thresholds))
    density = 1 - np.asarray(result.removed_fraction)
    draws = []
    for counts in bootstrap_counts(n, n_boot, seed):
        idx = np.repeat(np.arange(n), counts)
        ref_c, ref_a = result.ref_clean_correct[idx].mean(), result.ref_adv_correct[idx].mean()
        rel_c, rel_a = result.clean_correct[:, idx].mean(1) / ref_c, result.adv_correct[:, idx].mean(1) / ref_a
        if baseline == "random":
            base_c = result.null_clean_correct[..., idx].mean(-1).mean(0) / ref_c
            base_a = result.null_adv_correct[..., idx].mean(-1).mean(0) / ref_a
        else:
            base_c = base_a = density if baseline == "density" else np.ones_like(t)
        draws.append([simpson(rel_c - base_c, x=t), simpson(rel_a - base_a, x=t), simpson(rel_a - rel_c, x=t)])
    draws = np.array(draws)
    lo, hi = np.quantile(draws, [(1 - ci) / 2, (1 + ci) / 2], axis=0)
    return lo, hi, draws.std(0, ddof=1)


@pytest.mark.parametrize("baseline", ["density", "unfiltered", "random"])
def test_bootstrap_intervals_equal_explicit_resampling(baseline: str) -> None:
    rng = np.random.default_rng(0)
    n, t = 60, np.linspace(0, 1, 7)
    clean, ref_clean = latent(0.9 - 0.5 * t, 0.9, n, rng)
    adv, ref_adv = latent(0.5 - 0.3 * t**2, 0.5, n, rng)
    null_clean = np.stack([latent(0.9 - 0.2 * t, 0.9, n, rng)[0] for _ in range(3)])
    null_adv = np.stack([latent(0.5 - 0.1 * t, 0.5, n, rng)[0] for _ in range(3)])
    result = sweep_from_outcomes(clean, adv, ref_clean, ref_adv, t**1.5, null_clean=null_clean, null_adv=null_adv)
    scores = filtering_scores(result, scoring=Scoring(baseline=baseline, n_boot=300, seed=7, ci=0.9))
    lo, hi, se = _reference_interval(result, baseline, 300, 7, ci=0.9)
    for i, name in enumerate(("clean", "adversarial", "difference")):
        assert scores["ci"][name] == pytest.approx((lo[i], hi[i]), abs=1e-12)
        assert scores["se"][name] == pytest.approx(se[i], abs=1e-12)
        assert scores["ci"][name][0] <= scores[name] <= scores["ci"][name][1]
    assert scores["coverage"] == 0.9 and scores["n_boot"] == 300 and scores["n_images"] == n
    assert filtering_scores(result,
            scoring=Scoring(baseline=baseline, n_boot=300, seed=7, ci=0.9)) == scores  # deterministic
    assert filtering_scores(result,
            scoring=Scoring(baseline=baseline, n_boot=300, seed=8, ci=0.9))["ci"] != scores["ci"]


def test_intervals_narrow_with_more_images_and_cover_the_truth() -> None:
    rng = np.random.default_rng(1)
    t = np.linspace(0, 1, 9)
    p_adv, p_ref = 0.5 - 0.3 * t, 0.5
    truth = simpson(p_adv / p_ref - (1 - t), x=t)  # density baseline, ρ = 1 − t
    widths = {}
    for n in (100, 1000):
        adv, ref = latent(p_adv, p_ref, n, rng)
        clean, ref_clean = latent(np.full(9, 0.9), 0.9, n, rng)
        lo, hi = filtering_scores(sweep_from_outcomes(clean, adv, ref_clean, ref, t),
                scoring=Scoring(n_boot=500))["ci"]["adversarial"]
        widths[n] = hi - lo
    assert 2.2 < widths[100] / widths[1000] < 4.5  # about √10
    # At 100 images the 95 % interval is about ±0.09 even for these smooth curves: nearly twice τ.
    assert 0.12 < widths[100] < 0.3
    covered = 0
    for _ in range(100):
        adv, ref = latent(p_adv, p_ref, 300, rng)
        clean, ref_clean = latent(np.full(9, 0.9), 0.9, 300, rng)
        lo, hi = filtering_scores(sweep_from_outcomes(clean, adv, ref_clean, ref, t),
                scoring=Scoring(n_boot=300))["ci"]["adversarial"]
        covered += lo <= truth <= hi
    assert 88 <= covered <= 100


@pytest.mark.parametrize(
    ("lo", "hi", "expected"),
    [(-0.3, -0.0500001, "fragile"), (-0.3, -0.05, "uncertain"), (-0.05, 0.05, "robust"), (-0.05, -0.05, "robust"),
     (0.05, 0.3, "uncertain"), (0.0500001, 0.3, "antifragile"), (-0.04, 0.06, "uncertain"),
     (-0.06, 0.04, "uncertain"), (-math.inf, math.inf, "uncertain"), (math.nan, math.nan, "undefined")],
)
def test_interval_labels_at_the_tau_boundaries(lo: float, hi: float, expected: str) -> None:
    assert interval_label(lo, hi, 0.05) == expected


@pytest.mark.parametrize(
    ("score", "expected"),
    [(0.05, "robust"), (-0.05, "robust"), (0.0, "robust"), (0.0500001, "antifragile"), (-0.0500001, "fragile"),
     (math.nan, "undefined")],
)
def test_point_labels_at_the_tau_boundaries(score: float, expected: str) -> None:
    assert label(score, 0.05) == expected


def test_labels_follow_the_interval_and_tau() -> None:
    t = np.linspace(0, 1, 5)
    # 1,000 images: the clean score −0.5 is far below −τ; Â_adv = 1 is exactly robust.
    scores = filtering_scores(planted(1 - t, np.ones(5), t, n=1000), scoring=Scoring(baseline="unfiltered", n_boot=200))
    assert scores["labels"] == {"clean": "fragile", "adversarial": "robust", "difference": "antifragile"}
    assert scores["ci"]["adversarial"] == (0.0, 0.0)
    wide = filtering_scores(planted(1 - t, np.ones(5), t, n=1000),
            scoring=Scoring(baseline="unfiltered", tau=0.6, n_boot=200))
    assert wide["labels"]["clean"] == "robust" and wide["tau"] == 0.6


def test_a_reference_below_the_floor_gives_nan_and_a_warning_naming_the_layer() -> None:
    t = np.linspace(0, 1, 5)
    with pytest.warns(RuntimeWarning, match=r"layer 'fc'.*adversarial accuracy 0\.0000 is below the floor 0\.05"):
        scores = filtering_scores(planted(1 - t, np.zeros(5), t, ref_adv=0.0, layer="fc"),
                scoring=Scoring(baseline="unfiltered"))
    assert scores["clean"] == pytest.approx(-0.5)
    assert math.isnan(scores["adversarial"]) and math.isnan(scores["difference"])
    assert all(math.isnan(v) for v in scores["ci"]["adversarial"]) and math.isnan(scores["se"]["difference"])
    assert scores["labels"] == {"clean": "fragile", "adversarial": "undefined", "difference": "undefined"}

    with pytest.warns(RuntimeWarning, match=r"global lowpass sweep.*clean accuracy"):
        scores = filtering_scores(planted(np.ones(5), np.ones(5), t, ref_clean=0.04, n=100, layer=None,
                                          kind="lowpass"))
    assert math.isnan(scores["clean"]) and scores["labels"]["clean"] == "undefined"
    with pytest.warns(RuntimeWarning):  # a higher floor turns a valid reference undefined too
        assert math.isnan(filtering_scores(planted(np.ones(5), np.ones(5), t),
                scoring=Scoring(floor=0.5))["adversarial"])


def test_resamples_whose_reference_falls_below_the_floor_widen_the_interval() -> None:
    # 3 of 100 images correct at the reference, above the floor 0.025: but about 40 % of the resamples draw
    # at most 2 of them and are undefined, so the interval is infinite and the label uncertain.
    t = np.linspace(0, 1, 5)
    result = planted(np.ones(5), np.ones(5), t, ref_adv=0.03, n=100)
    scores = filtering_scores(result, scoring=Scoring(floor=0.025, n_boot=500))
    assert scores["adversarial"] == pytest.approx(0.5)
    assert scores["ci"]["adversarial"][1] == math.inf and scores["labels"]["adversarial"] == "uncertain"


def test_results_without_per_image_outcomes_are_rejected_with_the_fix() -> None:
    t = np.linspace(0, 1, 5)
    old = planted(t, t, t)
    old.clean_correct = None
    with pytest.raises(InvalidArgument, match=r"layer 'conv1' has no per-image outcomes.*rerun the filter command"):
        filtering_scores(old)
    bad = planted(t, t, t)
    bad.adv_correct = bad.adv_correct[:3]
    with pytest.raises(InvalidArgument, match=r"adv should have shape \(5, 200\)"):
        filtering_scores(bad)


def test_the_random_baseline_needs_the_null_model() -> None:
    t = np.linspace(0, 1, 5)
    with pytest.raises(InvalidArgument, match="--random-baseline"):
        filtering_scores(planted(t, t, t), scoring=Scoring(baseline="random"))


def test_bad_arguments_raise_invalid_argument() -> None:
    t = np.linspace(0, 1, 5)
    with pytest.raises(InvalidArgument, match="density, unfiltered, random"):
        filtering_scores(planted(t, t, t), scoring=Scoring(baseline="ones"))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="--n-thresholds 3"):
        filtering_scores(planted([1.0], [1.0], [0.0]))
    with pytest.raises(InvalidArgument, match="tau"):
        filtering_scores(planted(t, t, t), scoring=Scoring(tau=-1))
    with pytest.raises(InvalidArgument, match="coverage"):
        filtering_scores(planted(t, t, t), scoring=Scoring(ci=95))
    with pytest.raises(InvalidArgument, match="n_boot"):
        filtering_scores(planted(t, t, t), scoring=Scoring(n_boot=1))


def test_layer_scores_resample_every_layer_alike() -> None:
    t = np.linspace(0, 1, 5)
    sweeps = {"a": planted(1 - t, 1 - t, t), "b": planted(np.ones(5), 1 - t / 2, t, layer="b")}
    scored = layer_scores(sweeps, scoring=Scoring(n_boot=100, seed=3))
    assert list(scored) == ["a", "b"]
    assert scored["b"] == filtering_scores(sweeps["b"], scoring=Scoring(n_boot=100, seed=3))


def test_consensus_labels_keep_only_what_every_initialisation_says() -> None:
    def scored(**labels: str) -> dict:
        return {layer: {"labels": {"difference": lab}} for layer, lab in labels.items()}

    per_init = {1: scored(a="robust", b="fragile", c="antifragile", d="uncertain"),
                2: scored(a="robust", b="robust", d="uncertain")}
    assert consensus_labels(per_init, "difference") == {"a": "robust", "b": "uncertain", "c": "uncertain",
                                                        "d": "uncertain"}
    with pytest.raises(InvalidArgument, match="unknown score"):
        consensus_labels(per_init, "adv")


def _cell(value: float, lab: str, half: float = 0.04) -> dict:
    return {**dict.fromkeys(SCORES, value), "ci": dict.fromkeys(SCORES, (value - half, value + half)),
            "se": dict.fromkeys(SCORES, half / 2), "labels": dict.fromkeys(SCORES, lab), "floor": 0.05,
            "coverage": 0.95, "n_boot": 1000}


def _study() -> dict:
    """3 initialisations at epoch 2, one at epoch 0: conv1 fragile everywhere; fc split at epoch 2."""
    return {
        (1, 2): {"conv1": _cell(-0.2, "fragile"), "fc": _cell(0.01, "robust")},
        (2, 2): {"conv1": _cell(-0.3, "fragile"), "fc": _cell(0.03, "robust")},
        (3, 2): {"conv1": _cell(-0.1, "fragile"), "fc": _cell(0.06, "uncertain")},
        (1, 0): {"conv1": _cell(-0.4, "fragile"), "fc": _cell(math.nan, "undefined")},
    }


def _info(init: int, epoch: int) -> dict:
    k = 400 + init
    lo, hi = wilson_interval(k, 500)
    return {"eps": 0.08 + init / 100, "n_images": 500, "ref_clean_acc": k / 500, "ref_clean_lo": lo,
            "ref_clean_hi": hi, "ref_adv_acc": 0.5, "ref_adv_lo": 0.45, "ref_adv_hi": 0.55}


def test_tables_give_mean_sd_consensus_and_agreement_over_initialisations() -> None:
    tables = build_tables(_study(), kind="highpass", scope="local", attack="fgsm_acc0.5",
                          checkpoints={c: _info(*c) for c in _study()}, bn="recalibrate", grid="quantile")
    table = tables["difference"]
    assert table.layers == ["conv1", "fc"] and table.epochs == [0, 2] and table.inits == [1, 2, 3]
    np.testing.assert_allclose(table.values, [[-0.4, -0.2], [np.nan, 0.1 / 3]])
    np.testing.assert_allclose(table.sd[:, 1], [0.1, np.std([0.01, 0.03, 0.06], ddof=1)])
    assert np.isnan(table.sd[0, 0])  # one initialisation: no spread
    # Epoch 0 has Init_1 only: a layer the others lack is uncertain, not fragile.
    assert table.labels == [["uncertain", "fragile"], ["uncertain", "uncertain"]]
    assert table.agreement == [[("fragile", 1), ("fragile", 3)], [("undefined", 1), ("robust", 2)]]
    assert table.label_counts() == {"uncertain": 3, "fragile": 1}
    row = table.rows()[1]
    assert row["epoch 2"] == f"+0.033 ± {np.std([0.01, 0.03, 0.06], ddof=1):.3f}"
    assert row["epoch 2 intervals"] == "[-0.03, +0.05] [-0.01, +0.07] [+0.02, +0.10]"
    assert row["epoch 2 label"] == "uncertain (robust 2/3)" and table.rows()[0]["epoch 2 label"] == "fragile 3/3"
    text = table.text()
    assert "baseline density, tau=0.05, 95% intervals (1000 paired resamples" in text
    assert "BatchNorm recalibrate, quantile grid" in text and "1 of 4 labels confident" in text
    assert "[0.765, 0.835]" in text  # Init_1's clean accuracy 401/500 with its Wilson interval


def test_tables_round_trip_through_a_plain_csv(tmp_path) -> None:
    table = build_tables(_study(), kind="highpass", scope="local", attack="fgsm_acc0.5", scoring=Scoring(tau=0.05),
                         checkpoints={c: _info(*c) for c in _study()}, bn="recalibrate",
                         regime="pgd-linf-eps0.1")["clean"]
    assert table.title().endswith("regime pgd-linf-eps0.1")
    path = save_table(table, "resnet18", "mnist5k", tmp_path)
    assert path == paths.scores_table_path("resnet18", "mnist5k", "highpass", "local", "clean", tmp_path,
                                           tag="fgsm_acc0.5_density")
    lines = path.read_text().splitlines()
    assert lines[0].startswith("score,filter,scope,attack,baseline,tau,floor,ci,n_boot,seed,bn,grid,regime,layer,epoch,"
                               "init,")
    assert len(lines) == 1 + 8  # one row per (layer, epoch, initialisation) present
    back = read_table(path)
    for name in ("layers", "epochs", "inits", "init_labels", "checkpoints", "scoring", "bn", "grid", "attack", "score",
                 "kind", "scope", "regime"):
        assert getattr(back, name) == getattr(table, name), name
    for name in ("per_init", "lo", "hi", "se", "values", "sd"):
        np.testing.assert_array_equal(getattr(back, name), getattr(table, name))
    assert back.labels == table.labels and back.text() == table.text()
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def _write_study(root, bn: str = "recalibrate") -> None:
    """Result files, as the filter command writes them, for Init_1 and Init_2 at epoch 1: local and global
    highpass. conv1 loses accuracy with the weights (slope 1), fc keeps it; Â_adv = ρ everywhere."""
    t = np.linspace(0, 1, 5)
    for init in (1, 2):
        meta = {"init": init, "epoch": 1, "kind": "highpass", "attack": "fgsm_acc0.5", "eps": 0.08 + init / 100,
                "bn": bn}
        local = [planted(1 - slope * t, 1 - t, t, n=400, layer=name) for name, slope in (("conv1", 1.0), ("fc", 0.0))]
        for scope, results in (("local", local), ("global", [planted(1 - t, 1 - t, t, n=400, layer=None)])):
            path = paths.sweep_result_path("mnist_cnn", "mnist5k", init, 1, "highpass", scope, "fgsm_acc0.5", root)
            save_results({**meta, "scope": scope}, results, path)


def test_score_study_reads_the_result_files_and_writes_every_table(tmp_path) -> None:
    _write_study(tmp_path)
    tables = score_study("mnist_cnn", "mnist5k", kinds=["step_minmax"], root=tmp_path, scoring=Scoring(n_boot=100))
    assert {(t.scope, t.score) for t in tables} == {(s, k) for s in ("local", "global") for k in SCORES}
    local_clean = next(t for t in tables if t.scope == "local" and t.score == "clean")
    np.testing.assert_allclose(local_clean.values, [[0.0], [0.5]], atol=1e-12)  # density: ∫ (1 − t) − ρ, ∫ 1 − ρ
    assert local_clean.labels == [["robust"], ["antifragile"]] and local_clean.bn == "recalibrate"
    assert local_clean.checkpoints[2, 1]["eps"] == pytest.approx(0.1)
    assert local_clean.checkpoints[1, 1]["ref_clean_acc"] == 0.8 and local_clean.checkpoints[1, 1]["n_images"] == 400
    assert next(t for t in tables if t.scope == "global").layers == ["global"]
    for table in tables:
        path = paths.scores_table_path("mnist_cnn", "mnist5k", "highpass", table.scope, table.score, tmp_path,
                                       tag=table.tag())
        assert read_table(path).text() == table.text()
    with pytest.raises(DataNotFoundError, match="for attack pgd-linf"):
        score_study("mnist_cnn", "mnist5k", kinds=["highpass"], root=tmp_path, attack="pgd-linf_eps0.1_a0.025_k10")


def test_results_of_different_batchnorm_modes_never_mix(tmp_path) -> None:
    _write_study(tmp_path)
    meta, results = load_results(paths.sweep_result_path("mnist_cnn", "mnist5k", 2, 1, "highpass", "local",
                                                         "fgsm_acc0.5", tmp_path))
    save_results({**meta, "bn": "frozen"}, list(results.values()),
                 paths.sweep_result_path("mnist_cnn", "mnist5k", 2, 1, "highpass", "local", "fgsm_acc0.5", tmp_path))
    with pytest.raises(InvalidArgument, match=r"mix BatchNorm modes \['frozen', 'recalibrate'\]"):
        score_study("mnist_cnn", "mnist5k", kinds=["highpass"], scopes=["local"], root=tmp_path,
                scoring=Scoring(n_boot=10))


def test_no_result_files_is_one_clear_error_naming_the_filter_command(tmp_path, capsys) -> None:
    with pytest.raises(DataNotFoundError, match="python -m robustness filter --arch mnist_cnn"):
        score_study("mnist_cnn", "mnist5k", root=tmp_path)
    assert main(["scores", "--arch", "mnist_cnn", "--models-root", str(tmp_path)]) == 2
    assert "run python -m robustness filter" in capsys.readouterr().err


@pytest.mark.slow
def test_scores_command_prints_tables_with_intervals_and_writes_csv_and_plots(tmp_path, capsys) -> None:
    _write_study(tmp_path / "models")
    argv = ["scores", "--arch", "mnist_cnn", "--filter", "highpass", "--scope", "local", "--tau", "0.1",
            "--n-boot", "200", "--models-root", str(tmp_path / "models"),
            "--plots-root", str(tmp_path / "plots")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "clean score, highpass filter, local scope, fgsm_acc0.5, baseline density, tau=0.1, 95% intervals" in out
    assert "antifragile 2/2" in out and "[+0.50, +0.50] [+0.50, +0.50]" in out and "-0.000" not in out
    assert "2 of 2 labels confident: 1 robust, 1 antifragile" in out
    assert len(list((tmp_path / "models").rglob("scores_*.csv"))) == 3
    # These hand-made files do not record the study's set-up, which the PGD re-check needs: one clear error.
    assert main([*argv, "--recheck"]) == 2
    assert "lacks arch" in capsys.readouterr().err
    assert {p.name for p in (tmp_path / "plots").glob("*.png")} == {
        "MnistCNN_MNIST5K_local_highpass_scores_fgsm_acc0.5_density.png",
        *(f"MnistCNN_MNIST5K_local_highpass_Init_{i}_1epochs_fgsm_acc0.5.png" for i in (1, 2)),
    }


class _Planted(nn.Module):
    """A trained linear classifier whose logits pass through ``bottleneck`` (−I plus small positive off-diagonal
    weights, negated: it carries every logit, and high-pass filtering removes its diagonal first), with a
    ``dead`` branch whose output is multiplied by 0."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Linear(784, 10)
        self.dead = nn.Linear(784, 10)
        self.bottleneck = nn.Linear(10, 10, bias=False)
        optimiser = torch.optim.Adam(self.features.parameters(), lr=0.01)
        for _ in range(100):
            optimiser.zero_grad()
            nn.functional.cross_entropy(self.features(x.flatten(1)), y).backward()
            optimiser.step()
        with torch.no_grad():
            self.bottleneck.weight.copy_(0.01 * torch.rand(10, 10) - 1.01 * torch.eye(10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        return -self.bottleneck(self.features(flat)) + 0 * self.dead(flat)


@pytest.fixture(scope="module")
def planted_network(mnist5k_test) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    x, y = mnist5k_test
    return _Planted(x[500:], y[500:]).eval(), x[:200], y[:200]


@pytest.mark.parametrize("kind", ["highpass", "lowpass", "pulse"])
def test_a_layer_whose_output_is_discarded_is_robust_against_the_random_baseline(planted_network, kind) -> None:
    model, x, y = planted_network
    (sweep,) = local_analysis(model, (x, y), kind, FGSM(0.05), 5, layers=["dead"], null_masks=2).values()
    assert sweep.removed_fraction[-1] > 0  # weights were removed, yet nothing changes:
    for outcome in (sweep.clean_correct, sweep.null_clean_correct[1]):
        assert (outcome == sweep.ref_clean_correct).all()
    assert (sweep.adv_correct == sweep.ref_adv_correct).all()
    scores = filtering_scores(sweep, scoring=Scoring(baseline="random"))
    for name in SCORES:
        assert scores[name] == 0.0 and scores["ci"][name] == pytest.approx((0.0, 0.0), abs=1e-12)
    assert scores["labels"] == dict.fromkeys(SCORES, "robust")


def test_a_bottleneck_everything_passes_through_is_fragile(planted_network) -> None:
    model, x, y = planted_network
    (sweep,) = local_analysis(model, (x, y), "highpass", FGSM(0.05), 5, layers=["bottleneck"],
                              null_masks=2).values()
    assert sweep.ref_clean_acc > 0.8 and sweep.ref_adv_acc > 0.2
    for baseline in ("density", "random", "unfiltered"):
        scores = filtering_scores(sweep, scoring=Scoring(baseline=baseline))
        for name in ("clean", "adversarial"):
            assert scores["ci"][name][1] < -0.05, (baseline, name, scores[name])
            assert scores["labels"][name] == "fragile"
