"""The PGD re-check: the gain of FGSM over PGD under filtering, its SE and the flag on planted sweeps; a real
re-check of a small study, resumed, and from the scores command."""

from __future__ import annotations

import numpy as np
import pytest
from planted import nested, sweep_from_outcomes
from scipy.integrate import simpson

from robustness import paths
from robustness.attacks import FGSM
from robustness.cli import main
from robustness.errors import InvalidArgument
from robustness.filtering import load_results
from robustness.scoring import Scoring, layer_scores
from robustness.stats import bootstrap_counts
from robustness.study import StudyConfig, candidates, fgsm_gain, recheck_study, run_study
from robustness.training import TrainConfig, train

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
        return {"adversarial": 0.0, "labels": {"clean": clean, "adversarial": adv, "difference": diff}}

    table = {"a": scored("robust", "fragile", "fragile"), "b": scored("fragile", "antifragile", "fragile"),
             "c": scored("fragile", "uncertain", "robust"), "d": scored("antifragile", "uncertain", "uncertain")}
    assert candidates(table) == ["b", "c"]
    table["b"]["adversarial"], table["c"]["adversarial"] = 0.1, 0.3
    assert candidates(table, limit=1) == ["c"]  # the most robust-looking first


@pytest.mark.slow
def test_recheck_study_sweeps_the_candidates_with_pgd_resumably_and_the_command_prints_it(tmp_path, capsys) -> None:
    models = tmp_path / "models"
    train(TrainConfig(arch="mnist_cnn", epochs=1, subset=300, models_root=str(models), device="cpu"))
    config = StudyConfig(attack=FGSM(0.1), arch="mnist_cnn", inits=(1,), epochs=(1,), kinds=("highpass",),
                         scopes=("local",), thresholds=3, layers=("conv2", "fc2"), subset=60, calibrate_eps=0.3,
                         eps_images=60, bn_images=60, models_root=str(models), device="cpu")
    (fgsm_file,) = run_study(config)
    scored = layer_scores(load_results(fgsm_file)[1],
            scoring=Scoring(tau=1.0, n_boot=100))  # tau 1: every layer is robust
    assert candidates(scored) == ["conv2", "fc2"]
    pgd_options = {"steps": 5, "restarts": 2, "scoring": Scoring(tau=1.0, n_boot=100)}  # fewer steps than 20: fast
    rows = recheck_study(config, **pgd_options)
    assert [(r["init"], r["epoch"], r["filter"], r["layer"]) for r in rows] == [
        (1, 1, "highpass", name) for name in ("conv2", "fc2")]
    for row in rows:
        assert row["fgsm adversarial"] == "robust" and row["pgd adversarial"] in ("robust", "undefined")
        assert row["flagged"] == (row["gain"] > 2 * row["se"] + 1e-12) and row["se"] > 0
    (pgd_file,) = [p for p in fgsm_file.parent.glob("*.json") if "_recheck_of_fgsm_acc0.3" in p.name]
    fgsm, pgd = load_results(fgsm_file), load_results(pgd_file)
    assert pgd[0]["eps"] == fgsm[0]["eps"] and pgd[0]["thresholds"] == 3
    assert pgd[1]["fc2"].ref_adv_acc <= fgsm[1]["fc2"].ref_adv_acc  # PGD is the stronger attack
    saved = paths.scores_table_path("mnist_cnn", "mnist5k", "highpass", "local", "pgd_recheck", models,
                                    tag="fgsm_acc0.3_density")
    assert saved.read_text().splitlines()[0].startswith("init,epoch,filter,layer,fgsm adversarial")
    stamp = pgd_file.stat().st_mtime_ns
    assert recheck_study(config, **pgd_options) == rows and pgd_file.stat().st_mtime_ns == stamp  # resumed

    argv = ["scores", "--arch", "mnist_cnn", "--scope", "local", "--tau", "1", "--n-boot", "100", "--device", "cpu",
            "--recheck", "--steps", "5", "--models-root", str(models), "--plots-root", str(tmp_path / "plots")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "PGD re-check" in out and "fgsm adversarial" in out and "recheck_of" not in out  # no PGD table
    assert pgd_file.stat().st_mtime_ns == stamp
    assert main([a for a in argv if a != "--recheck"]) == 0
    assert "PGD re-check of what FGSM labels robust or antifragile: not run (add --recheck)" in capsys.readouterr().out
