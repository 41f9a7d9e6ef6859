"""Sequential evaluation: wrong labels and coverage on simulated sweeps of known true scores, a planted score on a
label boundary, and a real small sweep whose evaluated prefix equals the sweep of all images."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from fitting import adam_fit
from planted import planted
from torch import nn

from robustness import paths
from robustness.attacks import FGSM
from robustness.cli import main
from robustness.data import load_dataset, loader_to_tensors, make_loader
from robustness.errors import InvalidArgument
from robustness.filtering import SweepResult, load_results, local_analysis, save_results
from robustness.runtime import seed_everything
from robustness.scoring import Scoring, Sequential, compare_regimes, filtering_scores, interval_labels
from robustness.scoring.scores import CONFIDENT, Outcomes
from robustness.vocab import SCORES

TAU = 0.05
DENSITY = np.array([1.0, 0.5, 0.0])  # three thresholds: Simpson's weights 1/6, 4/6, 1/6
REF = {"clean": 0.9, "adv": 0.6}


def _relative(score: np.ndarray) -> np.ndarray:
    """Relative accuracy curves ``(…, 3)`` whose density-baseline score is ``score``: ``[1, r1, 0.3]``."""
    r1 = 0.5 + (score - 0.05) * 1.5
    return np.stack([np.ones_like(score), r1, np.full_like(score, 0.3)], axis=-1)


def simulate(clean: np.ndarray, adv: np.ndarray, n: int, seed: int) -> Outcomes:
    """Per-image outcomes of ``len(clean)`` sweeps of three thresholds over ``n`` images whose true clean and
    adversarial scores (density baseline) are ``clean`` and ``adv``: an image is correct where its uniform draw
    lies below the accuracy (one draw per image for all clean outcomes, another for the adversarial ones, so the
    thresholds are paired as in a real sweep)."""
    rng = np.random.default_rng(seed)
    out = {}
    for what, score in (("clean", clean), ("adv", adv)):
        u = rng.random((len(score), 1, n))
        accuracy = REF[what] * _relative(score)[..., None]  # (sweeps, T, 1)
        out[what], out[f"ref_{what}"] = u < accuracy, u[:, 0] < REF[what]
    return Outcomes(out["clean"], out["adv"], out["ref_clean"], out["ref_adv"], None, None)


def prefix(found: Outcomes, rows: np.ndarray, end: int) -> Outcomes:
    return Outcomes(found.clean[rows, :, :end], found.adv[rows, :, :end], found.ref_clean[rows, :end],
                    found.ref_adv[rows, :end], None, None)


def run_looks(rule: Sequential, found: Outcomes) -> dict[str, np.ndarray]:
    """Every simulated sweep looked at as a sequential sweep looks (the rule's :meth:`Sequential.look`, the code
    the sweeps call): the look each stopped at, and its scores and intervals there."""
    sweeps = len(found.ref_clean)
    ends = rule.ends(found.n)
    stop = np.full(sweeps, len(ends))
    point, lo, hi = (np.full((sweeps, 3), np.nan) for _ in range(3))
    running = np.arange(sweeps)
    for look, end in enumerate(ends, 1):
        p, low, high, decided = rule.look(prefix(found, running, end), DENSITY)
        done = decided if look < len(ends) else np.ones_like(decided)
        point[running[done]], lo[running[done]], hi[running[done]] = p[done], low[done], high[done]
        stop[running[done]] = look
        running = running[~done]
    return {"stop": stop, "point": point, "lo": lo, "hi": hi, "ends": np.asarray(ends)}


def test_simulated_sweeps_keep_the_error_and_the_coverage() -> None:
    """1,000 sweeps of 400 images at true scores 0 to 0.3 from the label boundaries ±0.05: at most 5 % of the
    sweeps get any label wrong, every score's interval covers its true score at least 95 % of the time (less 3
    standard errors), and the sweeps far from a boundary stop early."""
    distances = np.array([-0.25, -0.12, -0.07, -0.05, -0.02, 0.0, 0.03, 0.05, 0.08, 0.15, 0.25])
    rng = np.random.default_rng(1)
    truth_clean = distances[np.arange(1000) % len(distances)]
    truth_adv = rng.permutation(truth_clean)
    rule = Sequential(Scoring(tau=TAU, seed=0), looks=4)
    found = simulate(truth_clean, truth_adv, 400, seed=2)
    seen = run_looks(rule, found)
    truth = np.stack([truth_clean, truth_adv, truth_adv - truth_clean], axis=-1)
    labels = interval_labels(seen["lo"], seen["hi"], TAU)
    wrong = np.isin(labels, CONFIDENT) & (labels != interval_labels(truth, truth, TAU))
    assert wrong.any(axis=1).mean() <= 0.05
    covered = (seen["lo"] <= truth) & (truth <= seen["hi"])
    assert (covered.mean(axis=0) >= 0.95 - 3 * np.sqrt(0.05 * 0.95 / 1000)).all(), covered.mean(axis=0)
    images = seen["ends"][seen["stop"] - 1]
    far = (np.abs(np.abs(truth) - TAU).min(axis=1) >= 0.1)
    assert images[far].mean() < 0.5 * 400  # the decided sweeps saved at least half their images
    assert rule.at_look.ci == pytest.approx(1 - 0.05 / 4) and rule.at_look.n_boot == 3200


def test_a_score_on_a_boundary_runs_to_the_last_block_and_is_uncertain() -> None:
    """The clean score planted exactly at −τ: the sweep cannot decide it, so (but for the rule's error, at most
    5 %) every sweep runs to the last look, and there its clean label is uncertain."""
    rule = Sequential(Scoring(tau=TAU, seed=0), looks=4)
    found = simulate(np.full(200, -TAU), np.full(200, 0.25), 400, seed=3)
    seen = run_looks(rule, found)
    assert (seen["stop"] < 4).mean() <= 0.05
    last = seen["stop"] == 4
    assert (interval_labels(seen["lo"][last, 0], seen["hi"][last, 0], TAU) == "uncertain").all()
    assert seen["stop"][0] == 4 and interval_labels(seen["lo"][0, 0], seen["hi"][0, 0], TAU) == "uncertain"


def test_the_looks_double_the_images_and_bad_settings_are_refused() -> None:
    assert Sequential(looks=4).ends(1000) == [125, 250, 500, 1000]
    assert Sequential(looks=4).ends(5) == [2, 3, 5]
    assert Sequential(looks=1).ends(7) == [7] and Sequential(looks=1).at_look == Scoring()
    for bad in ({"looks": 0}, {"looks": 2.5}, {"scores": ("clean", "nope")}, {"scores": ()}):
        with pytest.raises(InvalidArgument):
            Sequential(**bad)


class SmallNet(nn.Sequential):
    """Two convolutions with BatchNorm and a classifier: a network with everything a sweep re-estimates."""

    def __init__(self) -> None:
        super().__init__(nn.Conv2d(1, 8, 3, stride=2), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2),
                         nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10))


@pytest.fixture(scope="module")
def net() -> nn.Module:
    seed_everything(0)
    return adam_fit(SmallNet(), 1000, 3e-3)


@pytest.mark.parametrize("reuse", [True, False])
def test_a_sequential_sweep_equals_the_full_sweep_on_its_prefix(net: nn.Module, mnist5k_test, tmp_path,
                                                                reuse: bool) -> None:
    """Per-image outcomes on the prefix each layer evaluated are those of the sweep of all images; labels agree
    but where the sequential one is uncertain; BatchNorm is re-estimated once per point however many blocks."""
    x, y = mnist5k_test
    data = (x[:600], y[:600])
    cal = loader_to_tensors(make_loader(load_dataset("mnist5k", train=True), 1000, subset=200, seed=2))[0]
    scoring = Scoring(tau=TAU, n_boot=200)
    rule = Sequential(scoring, looks=3)
    options = {"layers": ["0", "3", "7"], "bn_images": cal, "batch_size": 100, "reuse": reuse}
    before = {k: v.clone() for k, v in net.state_dict().items()}
    full = local_analysis(net, data, "highpass", FGSM(0.03), 5, **options)
    seq = local_analysis(net, data, "highpass", FGSM(0.03), 5, sequential=rule, **options)
    assert all(torch.equal(net.state_dict()[k], v) for k, v in before.items())
    for layer, result in seq.items():
        n = result.sequential["images"]
        assert result.sequential["ends"] == [150, 300, 600] and n == result.sequential["ends"][
            result.sequential["look"] - 1]
        for name, array in result.outcomes().items():
            assert np.array_equal(array, full[layer].outcomes()[name][..., :n]), (layer, name)
        assert result.clean_acc == [float(c.mean()) for c in result.clean_correct]
        points = len(set(full[layer].removed))
        assert result.passes["bn"] == full[layer].passes["bn"]  # re-estimated once per point, not per block
        assert result.passes["clean"] == result.passes["attack"] == points * n
        assert full[layer].passes["clean"] == points * 600
        mine, theirs = filtering_scores(result, scoring), filtering_scores(full[layer], scoring)
        assert mine["looks"] == 3 and mine["look_coverage"] == pytest.approx(1 - 0.05 / 3)
        assert all(mine["labels"][s] in (theirs["labels"][s], "uncertain") for s in SCORES), (mine, theirs)
        assert (mine["n_images"] < 600) == result.sequential["decided"] or n == 600
    assert any(r.sequential["look"] < 3 for r in seq.values())  # some layer stopped early
    path = save_results({"test": 1}, list(seq.values()), tmp_path / "seq.json")
    _, loaded = load_results(path)
    assert all(loaded[k] == v and loaded[k].passes == v.passes for k, v in seq.items())


def test_cli_filter_sequential_records_the_rule_and_resumes(checkpoints_root, tmp_path, capsys) -> None:
    """``filter --sequential`` writes local results that record the rule and where each layer stopped; the same
    command again finds them done, and a run without it refuses to mix with them."""
    root = tmp_path / "models"
    shutil.copytree(checkpoints_root, root)
    command = ["filter", "--arch", "mnist_cnn", "--models-root", str(root), "--device", "cpu", "--checkpoint-epochs",
               "1", "--test-subset", "200", "--n-thresholds", "3", "--filter", "highpass", "--scope", "local",
               "-e", "0.05", "--layers", "fc1", "fc2", "--n-boot", "100", "--sequential"]
    assert main(command) == 0
    written = paths.sweep_result_path("mnist_cnn", "mnist5k", 1, 1, "highpass", "local", "fgsm_eps0.05", root)
    meta, results = load_results(written)
    assert meta["sequential"] == Sequential(Scoring(n_boot=100)).record()
    for result in results.values():
        assert result.sequential["ends"] == [25, 50, 100, 200] and result.sequential["n"] == 200
        assert result.clean_correct.shape == (3, result.sequential["images"])
    before = written.stat().st_mtime_ns
    assert main(command) == 0 and written.stat().st_mtime_ns == before  # resumed: nothing left to do
    assert main(command[:-1]) == 2
    assert "different study set-up" in capsys.readouterr().err


def test_regimes_pair_a_layer_that_stopped_early_on_the_common_prefix() -> None:
    """A layer that one side evaluated on its first 100 of 200 images pairs with the other's on those 100: the
    same outcomes there differ by exactly 0; both sides still count as measured on the same 200 images."""
    meta = {"arch": "mnist_cnn", "dataset": "mnist5k", "seed": 0, "subset": None, "calibration_images": 500,
            "calibrate_eps": 0.5}
    curves = {"conv1": [1.0, 0.9, 0.75, 0.6, 0.5], "conv2": [1.0] * 5, "fc1": [1.0, 0.5, 0.5, 0.5, 0.5]}
    density = [0.0, 0.25, 0.5, 0.75, 1.0]
    full = {name: planted(c, c, density, layer=name, ref_adv=0.5) for name, c in curves.items()}
    cut = dict(full)
    fc1 = full["fc1"]
    cut["fc1"] = SweepResult.from_dict({**fc1.to_dict(), "sequential": {"looks": 4, "n": 200, "images": 100}},
                                       {name: array[..., :100] for name, array in fc1.outcomes().items()})
    result = compare_regimes((meta, full), (meta, cut), scoring=Scoring(n_boot=200))
    assert result.n_images == 200
    rows = result.frame.set_index(["layer", "score"])
    assert (rows.loc["fc1"]["diff"] == 0).all() and (rows.loc["fc1"].diff_lo == 0).all()
    assert filtering_scores(cut["fc1"], Scoring(n_boot=200))["n_images"] == 100
