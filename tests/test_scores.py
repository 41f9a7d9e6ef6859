"""Filtering scores: exact integrals on synthetic sweeps, both baselines, the NaN guard, labels, tables."""

from __future__ import annotations

import math

import numpy as np
import pytest

from robustness import paths
from robustness.cli import main
from robustness.errors import DataNotFoundError, InvalidArgument
from robustness.scores import (
    build_tables,
    consensus_labels,
    filtering_scores,
    label,
    read_table,
    save_table,
    score_study,
)
from robustness.sweep import SweepResult, save_results


def sweep(clean_rel, adv_rel, removed_fraction, *, ref_clean=0.8, ref_adv=0.4, layer="conv1", kind="highpass"):
    """A sweep whose accuracies are ``ref * relative curve``."""
    n = len(clean_rel)
    return SweepResult(
        kind=kind, layer=layer, total=100, ref_clean_acc=ref_clean, ref_adv_acc=ref_adv, ref_clean_loss=0.5,
        ref_adv_loss=1.5, thresholds=list(np.linspace(-1, 1, n)), clean_acc=[ref_clean * v for v in clean_rel],
        adv_acc=[ref_adv * v for v in adv_rel], clean_loss=[0.5] * n, adv_loss=[1.5] * n,
        removed=[round(100 * f) for f in removed_fraction], removed_fraction=list(removed_fraction),
    )


@pytest.mark.parametrize("n", [5, 6, 25])
def test_scores_are_the_exact_integrals_of_linear_and_quadratic_curves(n: int) -> None:
    t = np.linspace(0, 1, n)
    # Â_clean = 1 − t, Â_adv = 1 + t²/2, removed fraction = t (so ρ = 1 − t).
    result = sweep(1 - t, 1 + t**2 / 2, t)
    unfiltered = filtering_scores(result)
    assert unfiltered["clean"] == pytest.approx(-1 / 2, abs=1e-12)  # ∫ −t
    assert unfiltered["adversarial"] == pytest.approx(1 / 6, abs=1e-12)  # ∫ t²/2
    assert unfiltered["difference"] == pytest.approx(2 / 3, abs=1e-12)  # ∫ t + t²/2
    assert unfiltered["labels"] == {"clean": "fragile", "adversarial": "antifragile", "difference": "antifragile"}
    assert unfiltered["tau"] == 0.05 and unfiltered["baseline"] == "unfiltered"

    density = filtering_scores(result, baseline="density")
    assert density["clean"] == pytest.approx(0.0, abs=1e-12)  # Â_clean equals ρ exactly
    assert density["adversarial"] == pytest.approx(2 / 3, abs=1e-12)  # ∫ t²/2 + t
    assert density["difference"] == pytest.approx(2 / 3, abs=1e-12)  # the baseline cancels
    assert density["labels"]["clean"] == "robust"


def test_relative_accuracy_divides_by_each_reference_separately() -> None:
    t = np.linspace(0, 1, 5)
    flat = filtering_scores(sweep(np.ones(5), np.ones(5), t, ref_clean=0.9, ref_adv=0.2))
    assert flat["clean"] == pytest.approx(0.0, abs=1e-12)
    assert flat["adversarial"] == pytest.approx(0.0, abs=1e-12)
    assert flat["labels"] == {"clean": "robust", "adversarial": "robust", "difference": "robust"}


def test_tau_decides_the_labels_and_is_reported() -> None:
    t = np.linspace(0, 1, 5)
    scores = filtering_scores(sweep(1 - t, np.ones(5), t), tau=0.6)
    assert scores["clean"] == pytest.approx(-0.5)
    assert scores["labels"]["clean"] == "robust" and scores["tau"] == 0.6


@pytest.mark.parametrize(
    ("score", "expected"),
    [(0.05, "robust"), (-0.05, "robust"), (0.0, "robust"), (0.0500001, "antifragile"), (-0.0500001, "fragile"),
     (math.nan, "undefined")],
)
def test_labels_at_the_tau_boundaries(score: float, expected: str) -> None:
    assert label(score, 0.05) == expected


def test_a_reference_below_the_floor_gives_nan_and_a_warning_naming_the_layer() -> None:
    t = np.linspace(0, 1, 5)
    with pytest.warns(RuntimeWarning, match=r"layer 'fc'.*adversarial accuracy 0\.0000 is below the floor 0\.05"):
        scores = filtering_scores(sweep(1 - t, np.zeros(5), t, ref_adv=0.0, layer="fc"))
    assert scores["clean"] == pytest.approx(-0.5)
    assert math.isnan(scores["adversarial"]) and math.isnan(scores["difference"])
    assert scores["labels"] == {"clean": "fragile", "adversarial": "undefined", "difference": "undefined"}

    with pytest.warns(RuntimeWarning, match=r"global lowpass sweep.*clean accuracy"):
        scores = filtering_scores(sweep(np.ones(5), np.ones(5), t, ref_clean=0.04, layer=None, kind="lowpass"))
    assert math.isnan(scores["clean"]) and scores["adversarial"] == pytest.approx(0.0, abs=1e-12)
    # A higher floor turns a valid reference undefined too.
    with pytest.warns(RuntimeWarning):
        assert math.isnan(filtering_scores(sweep(np.ones(5), np.ones(5), t), floor=0.5)["adversarial"])


def test_bad_arguments_raise_invalid_argument() -> None:
    t = np.linspace(0, 1, 5)
    with pytest.raises(InvalidArgument, match="unfiltered or density"):
        filtering_scores(sweep(t, t, t), baseline="ones")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="--thresholds 3"):
        filtering_scores(sweep([1.0], [1.0], [0.0]))
    with pytest.raises(InvalidArgument, match="tau"):
        filtering_scores(sweep(t, t, t), tau=-1)


def _scored(value: float) -> dict:
    return {"clean": value, "adversarial": -value, "difference": math.nan, "labels": {}}


def test_tables_average_over_inits_and_round_trip_through_csv(tmp_path) -> None:
    scored = {
        (1, 0): {"conv1": _scored(0.1), "fc": _scored(0.0)},
        (2, 0): {"conv1": _scored(0.3), "fc": _scored(0.02)},
        (1, 5): {"conv1": _scored(-0.2), "fc": _scored(0.06)},
    }
    tables = build_tables(scored, kind="highpass", scope="local", attack="fgsm_eps0.1", tau=0.05)
    clean = tables["clean"]
    assert clean.layers == ["conv1", "fc"] and clean.epochs == [0, 5] and clean.inits == [1, 2]
    np.testing.assert_allclose(clean.values, [[0.2, -0.2], [0.01, 0.06]])
    assert clean.labels == [["antifragile", "fragile"], ["robust", "antifragile"]]
    assert tables["adversarial"].labels[0] == ["fragile", "antifragile"]
    assert tables["difference"].labels == [["undefined"] * 2] * 2

    path = save_table(clean, "resnet18", "mnist5k", tmp_path)
    assert path == paths.scores_table_path("resnet18", "mnist5k", "highpass", "local", "clean", tmp_path,
                                           tag="fgsm_eps0.1_unfiltered")
    text = path.read_text().splitlines()
    assert text[0].startswith("# score=clean filter=highpass scope=local attack=fgsm_eps0.1 baseline=unfiltered")
    assert "tau=0.05" in text[0]
    assert text[1] == "layer,epoch_0,epoch_0_label,epoch_5,epoch_5_label"
    assert text[2].split(",")[::2] == ["conv1", "antifragile", "fragile"]
    back = read_table(path)
    np.testing.assert_array_equal(back.values, clean.values)
    assert (back.layers, back.epochs, back.inits, back.tau) == (clean.layers, clean.epochs, clean.inits, 0.05)
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def _write_study(root) -> None:
    """Result files, in the runner's format, for 2 checkpoints of one init: local and global highpass."""
    t = np.linspace(0, 1, 5)
    for epoch, slope in ((1, 1.0), (2, 0.0)):
        meta = {"init": 1, "epoch": epoch, "kind": "highpass", "attack": "fgsm_eps0.1", "eps": 0.1}
        local = [sweep(1 - slope * t, np.ones(5), t, layer=name) for name in ("conv1", "fc")]
        for scope, results in (("local", local), ("global", [sweep(1 - t, 1 - t, t, layer=None)])):
            path = paths.sweep_result_path("mnist_cnn", "mnist5k", 1, epoch, "highpass", scope, "fgsm_eps0.1", root)
            save_results({**meta, "scope": scope}, results, path)


def test_score_study_reads_the_result_files_and_writes_every_table(tmp_path) -> None:
    _write_study(tmp_path)
    tables = score_study("mnist_cnn", "mnist5k", kinds=["step_minmax"], root=tmp_path)
    assert {(t.scope, t.score) for t in tables} == {(s, k) for s in ("local", "global")
                                                    for k in ("clean", "adversarial", "difference")}
    local_clean = next(t for t in tables if t.scope == "local" and t.score == "clean")
    np.testing.assert_allclose(local_clean.values, [[-0.5, 0.0], [-0.5, 0.0]], atol=1e-12)
    global_clean = next(t for t in tables if t.scope == "global" and t.score == "clean")
    assert global_clean.layers == ["global"]
    for table in tables:
        assert paths.scores_table_path("mnist_cnn", "mnist5k", "highpass", table.scope, table.score, tmp_path,
                                       tag=table.tag()).is_file()
    with pytest.raises(DataNotFoundError, match="for attack pgd-linf"):
        score_study("mnist_cnn", "mnist5k", kinds=["highpass"], root=tmp_path, attack="pgd-linf_eps0.1_a0.025_k10")


def test_no_result_files_is_one_clear_error_naming_the_filter_command(tmp_path, capsys) -> None:
    with pytest.raises(DataNotFoundError, match="python -m robustness filter --arch mnist_cnn"):
        score_study("mnist_cnn", "mnist5k", root=tmp_path)
    assert main(["scores", "--arch", "mnist_cnn", "--models-root", str(tmp_path)]) == 2
    assert "run python -m robustness filter" in capsys.readouterr().err


def test_scores_command_prints_labelled_tables_and_writes_csv_and_plots(tmp_path, capsys) -> None:
    _write_study(tmp_path / "models")
    argv = ["scores", "--arch", "mnist_cnn", "--filter", "highpass", "--scope", "local", "--tau", "0.1",
            "--models-root", str(tmp_path / "models"), "--plots-root", str(tmp_path / "plots")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "clean score, highpass filter, local scope, fgsm_eps0.1, baseline unfiltered, tau=0.1" in out
    assert "fragile" in out and "robust" in out
    assert len(list((tmp_path / "models").rglob("scores_*.csv"))) == 3
    assert {p.name for p in (tmp_path / "plots").glob("*.png")} == {
        "MnistCNN_MNIST5K_local_highpass_scores_fgsm_eps0.1_unfiltered.png",
        "MnistCNN_MNIST5K_local_highpass_Init_1_2epochs_fgsm_eps0.1.png",
    }


def test_consensus_labels_keep_only_what_every_initialisation_says() -> None:
    def scored(**labels: str) -> dict:
        return {layer: {"labels": {"difference": lab}} for layer, lab in labels.items()}

    per_init = {1: scored(a="robust", b="fragile", c="antifragile"), 2: scored(a="robust", b="robust")}
    assert consensus_labels(per_init, "difference") == {"a": "robust", "b": "uncertain", "c": "uncertain"}
    with pytest.raises(InvalidArgument, match="unknown score"):
        consensus_labels(per_init, "adv")
