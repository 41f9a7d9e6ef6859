"""Comparisons by training regime, by depth bins, and the probe command, against planted truths."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from planted import planted

from robustness import paths, scoring
from robustness.cli import main
from robustness.errors import InvalidArgument
from robustness.figures import probe_plot_name, save_figure
from robustness.files import load_json
from robustness.filtering import to_frame
from robustness.probes import load_probes
from robustness.scoring import Scoring, binned_sets, compare, compare_regimes, layer_scores, plot_regimes
from robustness.vocab import SCORES

FLAT, COLLAPSE, RAMP = [1.0] * 5, [1.0, 0.5, 0.5, 0.5, 0.5], [1.0, 0.9, 0.75, 0.6, 0.5]
DENSITY = [0.0, 0.25, 0.5, 0.75, 1.0]
META = {"arch": "mnist_cnn", "dataset": "mnist5k", "seed": 0, "subset": None, "calibration_images": 500,
        "calibrate_eps": 0.5}


def sweeps(curves: dict[str, list[float]]) -> dict:
    return {name: planted(c, c, DENSITY, layer=name, ref_adv=0.5) for name, c in curves.items()}


def loaded(curves: dict[str, list[float]], **meta) -> tuple[dict, dict]:
    return {**META, **meta}, sweeps(curves)


CURVES = {"conv1": FLAT, "conv2": RAMP, "fc1": COLLAPSE, "fc2": FLAT}


def test_a_model_compared_with_itself_differs_by_exactly_zero(tmp_path) -> None:
    result = compare_regimes(loaded(CURVES), loaded(CURVES), ("standard", "standard again"),
                             scoring=Scoring(n_boot=200))
    assert len(result.frame) == 4 * len(SCORES)
    assert (result.frame["diff"] == 0).all() and (result.frame.diff_lo == 0).all() and (result.frame.diff_hi == 0).all()
    assert result.frame.agree.all() and result.target == 0.5 and result.n_images == 200
    assert list(result.frame.depth[::3]) == [0.0, 1 / 3, 2 / 3, 1.0]  # the architecture's execution depths
    assert "calibrated to adversarial accuracy 0.5" in result.header()
    save_figure(plot_regimes(result, "self"), "regimes", tmp_path)
    assert (tmp_path / "regimes.png").is_file()


def test_paired_difference_recovers_a_planted_change_of_one_layer() -> None:
    adversarial = {**CURVES, "fc1": FLAT}  # adversarial training made fc1 robust
    result = compare_regimes(loaded(CURVES), loaded(adversarial), scoring=Scoring(n_boot=300, baseline="unfiltered"))
    rows = result.frame.set_index(["layer", "score"])
    clean = rows.loc[("fc1", "clean")]
    # The standard model's fc1 keeps half its accuracy after the first point: ∫ (0.5 - 1) dt over 4/5 of Simpson.
    expected = layer_scores(sweeps(CURVES), scoring=Scoring(baseline="unfiltered", n_boot=10))["fc1"]["clean"]
    assert clean["diff"] == pytest.approx(expected) and clean["diff_hi"] < -0.3
    assert clean.a_label == "fragile" and clean.b_label == "robust" and not clean.agree
    for layer in ("conv1", "conv2", "fc2"):
        assert rows.loc[(layer, "clean")]["diff"] == 0 and rows.loc[(layer, "clean")].agree


def test_regimes_on_other_images_or_targets_are_refused() -> None:
    for other, match in (({"seed": 1}, "same evaluation images"), ({"subset": 100}, "same evaluation images"),
                         ({"calibrate_eps": 0.3}, "same target accuracy"),
                         ({"calibrate_eps": None}, "same target accuracy")):
        with pytest.raises(InvalidArgument, match=match):
            compare_regimes(loaded(CURVES), loaded(CURVES, **other), scoring=Scoring(n_boot=50))
    fewer = {name: planted(c, c, DENSITY, layer=name, ref_adv=0.5, n=400) for name, c in CURVES.items()}
    with pytest.raises(InvalidArgument, match="images 200 vs 400"):
        compare_regimes(loaded(CURVES), (META, fewer), scoring=Scoring(n_boot=50))


def test_architectures_align_on_depth_bins() -> None:
    deep = {f"l{i}": c for i, c in enumerate([FLAT, FLAT, RAMP, RAMP, COLLAPSE, COLLAPSE])}
    shallow = {"a": FLAT, "b": RAMP, "c": COLLAPSE}
    sets = {"deep": (layer_scores(sweeps(deep), scoring=Scoring(n_boot=50)), {f"l{i}": i / 5 for i in range(6)}),
            "shallow": (layer_scores(sweeps(shallow), scoring=Scoring(n_boot=50)), {"a": 0.0, "b": 0.5, "c": 1.0})}
    binned = binned_sets(sets, bins=3)
    assert list(binned["deep"]) == list(binned["shallow"]) == ["d 0.00-0.33", "d 0.33-0.67", "d 0.67-1.00"]
    assert binned["deep"]["d 0.67-1.00"]["layers"] == 2
    result = compare(binned, scoring=Scoring(n_boot=100))
    for score in SCORES:
        np.testing.assert_allclose(result.values[score][0], result.values[score][1])
        assert result.pair(score, "deep", "shallow")["agreement"] == 1.0


@pytest.mark.slow
def test_probe_and_compare_commands(checkpoints_root, tmp_path, capsys, monkeypatch) -> None:
    root = tmp_path / "models"
    shutil.copytree(checkpoints_root, root)
    common = ["--arch", "mnist_cnn", "--dataset", "mnist5k", "--models-root", str(root), "--device", "cpu"]
    probe = ["probe", *common, "--test-subset", "60", "--eps", "0.1", "--n-boot", "100", "--plots-root", str(tmp_path)]
    assert main(["filter", *common, "--filter", "highpass", "--scope", "local", "--n-thresholds", "3",
                 "--test-subset", "60", "--calibrate-eps", "0.5", "--eps-images", "100",
                 "--checkpoint-epochs", "1"]) == 0
    assert main(probe) == 0
    out = capsys.readouterr().out
    path = paths.probe_result_path("mnist_cnn", "mnist5k", 1, 1, "reinit", "fgsm_eps0.1", root)
    meta, results = load_probes(path)
    assert list(results) == ["conv1", "conv2", "fc1", "fc2"] and meta["depth"]["fc2"] == 1.0
    assert meta["regime"] == "standard" and len(results["fc1"].clean_correct) == 60
    epoch0 = load_probes(paths.probe_result_path("mnist_cnn", "mnist5k", 1, 0, "reinit", "fgsm_eps0.1", root))[1]
    assert all(r.clean_acc == r.ref_clean_acc for r in epoch0.values())  # epoch 0 re-initialised is itself
    assert "adv drop" in out and "agreement" in out and "Spearman rho(score, drop)" in out
    assert (tmp_path / f"{probe_plot_name('mnist_cnn', 'mnist5k', 'reinit', 1, 'fgsm_eps0.1', 'adv')}.png"
            ).is_file()
    written = path.stat().st_mtime_ns
    assert main(probe) == 0 and path.stat().st_mtime_ns == written  # a rerun resumes: nothing recomputed
    assert main([*probe, "--test-subset", "50"]) == 2 and "other settings" in capsys.readouterr().err
    sweep_meta = load_json(paths.sweep_result_path("mnist_cnn", "mnist5k", 1, 1, "highpass", "local",
                                                   "fgsm_acc0.5", root))["meta"]
    assert sweep_meta["depth"] == {"conv1": 0.0, "conv2": 1 / 3, "fc1": 2 / 3, "fc2": 1.0}
    frame = to_frame(root)
    assert frame.groupby("layer")["depth"].first().to_dict() == sweep_meta["depth"]
    compare_common = ["compare", "--arch", "mnist_cnn", "--models-root", str(root), "--plots-root", str(tmp_path),
                      "--n-boot", "50"]
    assert main([*compare_common, "--by", "regime", "--regimes", "standard", "standard", "--epoch", "1"]) == 2
    assert "different names" in capsys.readouterr().err
    # A planted self-comparison: the adversarial side is the standard file under another name.
    found = scoring.regime_result
    monkeypatch.setattr(scoring, "regime_result", lambda *a, **k: found(*a[:5], "standard", **k))
    assert main([*compare_common, "--by", "regime", "--regimes", "standard", "pgd-linf-eps0.1", "--epoch", "1"]) == 0
    out = capsys.readouterr().out
    assert "calibrated to adversarial accuracy 0.5" in out and "+0.000 [+0.000, +0.000]" in out
    monkeypatch.undo()
    assert main([*compare_common, "--by", "arch", "--depth-bins", "3", "--set", "a=mnist_cnn:mnist5k:1:1",
                 "--set", "b=mnist_cnn:mnist5k:1:1"]) == 0
    assert "edges 0.00, 0.33, 0.67, 1.00" in capsys.readouterr().out
    assert main([*compare_common, "--by", "regime", "--regimes", "standard", "pgd-linf-eps0.1", "--epoch", "1"]) == 2


def test_a_result_file_of_another_regime_is_refused(tmp_path) -> None:
    from robustness.filtering import save_results  # noqa: PLC0415

    meta, results = loaded({"fc2": FLAT}, attack="fgsm_acc0.5", regime="standard")  # a standard model's result...
    path = paths.sweep_result_path("mnist_cnn", "mnist5k", 1, 2, "highpass", "local", "fgsm_acc0.5", tmp_path,
                                   regime="pgd-linf-eps0.1")  # ...in the adversarially trained regime's folder
    save_results(meta, list(results.values()), path)
    with pytest.raises(InvalidArgument, match="records the regime 'standard', not 'pgd-linf-eps0.1'"):
        scoring.regime_result("mnist_cnn", "mnist5k", "highpass", 1, 2, "pgd-linf-eps0.1", root=tmp_path)
    save_results({**meta, "regime": "pgd-linf-eps0.1"}, list(results.values()), path)
    assert scoring.regime_result("mnist_cnn", "mnist5k", "highpass", 1, 2, "pgd-linf-eps0.1", root=tmp_path)
