"""Per-image outcomes of a sweep, and result files: JSON beside packed bits in .npz, loaded together."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from robustness.attacks import FGSM
from robustness.errors import DataNotFoundError
from robustness.filtering import SweepResult, load_results, local_analysis, outcomes_path, save_results

EPS = 0.1


@pytest.fixture(scope="module")
def swept(trained_cnn: nn.Module, mnist5k_test) -> SweepResult:
    x, y = mnist5k_test
    return local_analysis(trained_cnn, (x[:90], y[:90]), "highpass", FGSM(EPS), thresholds=4, layers=["fc1"])["fc1"]


def test_per_image_outcomes_are_the_accuracies(trained_cnn: nn.Module, mnist5k_test, swept: SweepResult) -> None:
    assert swept.clean_correct.shape == swept.adv_correct.shape == (4, 90)
    assert swept.clean_correct.dtype == swept.adv_correct.dtype == np.bool_
    assert swept.clean_acc == [row.mean() for row in swept.clean_correct]  # exactly, not approximately
    assert swept.adv_acc == [row.mean() for row in swept.adv_correct]
    assert swept.ref_clean_acc == swept.ref_clean_correct.mean() and swept.ref_adv_acc == swept.ref_adv_correct.mean()
    x, y = mnist5k_test
    with torch.no_grad():
        own = (trained_cnn(x[:90]).argmax(1) == y[:90]).numpy()
    assert np.array_equal(swept.ref_clean_correct, own)  # the images in their order
    assert not swept.adv_correct[0].all() and swept.adv_correct[0].any()  # a real mix: the comparison means something
    assert swept.null_clean_correct is None and swept.grid == "value"
    assert "clean_correct" not in swept.to_dict()
    json.dumps(swept.to_dict())


def test_npz_round_trip_with_null_arrays(swept: SweepResult, tmp_path) -> None:
    rng = np.random.default_rng(0)
    other = SweepResult.from_dict({**swept.to_dict(), "layer": "conv1"}, swept.outcomes())
    other.null_clean_correct = rng.random((3, 4, 90)) < 0.5
    other.null_adv_correct = rng.random((3, 4, 90)) < 0.5
    path = tmp_path / "result.json"
    assert save_results({"seed": 0}, [swept, other], path) == path
    meta, results = load_results(path)
    assert meta == {"seed": 0} and list(results) == ["fc1", "conv1"]
    assert results["fc1"] == swept and results["conv1"] == other and results["conv1"] != swept
    assert np.array_equal(results["conv1"].null_adv_correct, other.null_adv_correct)
    with np.load(outcomes_path(path)) as npz:  # packed: one bit per outcome
        assert npz["conv1/null_clean_correct"].dtype == np.uint8 and npz["conv1/null_clean_correct"].size == 135
        assert list(npz["conv1/null_clean_correct.shape"]) == [3, 4, 90]


def test_hand_made_results_without_arrays_round_trip(tmp_path) -> None:
    result = SweepResult("pulse", None, 10, 0.9, 0.5, 0.3, 1.2, [0.0, 1.0], [0.9, 0.1], [0.5, 0.1], [0.3, 2.0],
                         [1.2, 3.0], [1, 10], [0.1, 1.0])
    save_results({}, [result], tmp_path / "r.json")
    assert load_results(tmp_path / "r.json")[1] == {"global": result}


@pytest.mark.parametrize("damage", ["missing", "garbage", "truncated", "wrong shape"])
def test_a_json_without_its_npz_is_one_clear_error(swept: SweepResult, tmp_path, damage: str) -> None:
    path = tmp_path / "Init_1_2epochs_fgsm_eps0.1.json"
    save_results({}, [swept], path)
    npz = outcomes_path(path)
    assert npz.name == "Init_1_2epochs_fgsm_eps0.1.npz"
    if damage == "missing":
        npz.unlink()
    elif damage == "garbage":
        npz.write_bytes(b"not an npz")
    elif damage == "truncated":
        npz.write_bytes(npz.read_bytes()[:60])
    else:
        shorter = SweepResult.from_dict(swept.to_dict(), {k: v[..., :50] for k, v in swept.outcomes().items()})
        shorter.clean_correct = shorter.clean_correct[:3]
        save_results({}, [shorter], tmp_path / "other.json")
        outcomes_path(tmp_path / "other.json").replace(npz)
    with pytest.raises(DataNotFoundError, match=rf"{npz.name}.*{path.name}.*delete .*{path.name} and rerun the same "
                                                 "filter command"):
        load_results(path)


def test_to_frame_has_one_row_per_threshold_with_the_json_numbers_and_their_intervals(
    swept: SweepResult, tmp_path
) -> None:
    """A local result with a random null model and a global one in a tree: every row's numbers are the JSON's
    (exactly), the intervals Wilson's over the 90 images, the null accuracy the mean over masks and images."""
    from robustness import paths
    from robustness.filtering import FRAME_COLUMNS, to_frame
    from robustness.stats import wilson_interval

    rng = np.random.default_rng(1)
    local = SweepResult.from_dict(swept.to_dict(), swept.outcomes())
    local.null_clean_correct, local.null_adv_correct = rng.random((2, 2, 4, 90)) < [[[[0.3]]], [[[0.6]]]]
    glob = SweepResult.from_dict({**swept.to_dict(), "layer": None, "kind": "lowpass"}, swept.outcomes())
    meta = {"arch": "mnist_cnn", "dataset": "mnist5k", "init": 2, "epoch": 3, "attack": "fgsm_eps0.1", "eps": EPS,
            "bn": "recalibrate"}
    save_results({**meta, "kind": "highpass", "scope": "local"}, [local], paths.sweep_result_path(
        "mnist_cnn", "mnist5k", 2, 3, "highpass", "local", "fgsm_eps0.1", tmp_path))
    save_results({**meta, "kind": "lowpass", "scope": "global", "source": "w.pt"}, [glob], paths.sweep_result_path(
        "mnist_cnn", "mnist5k", 2, 3, "lowpass", "global", "fgsm_eps0.1", tmp_path))
    frame = to_frame(tmp_path)
    assert tuple(frame.columns) == FRAME_COLUMNS and len(frame) == 8
    rows = frame[frame["scope"] == "local"]
    assert rows["threshold"].tolist() == swept.thresholds and rows["clean_acc"].tolist() == swept.clean_acc
    assert rows["adv_acc"].tolist() == swept.adv_acc and rows["removed_fraction"].tolist() == swept.removed_fraction
    assert set(rows["layer"]) == {"fc1"} and set(rows["filter"]) == {"highpass"} and rows["source"].isna().all()
    assert (rows["init"] == 2).all() and (rows["epoch"] == 3).all() and (rows["n_images"] == 90).all()
    for (_, row), acc in zip(rows.iterrows(), swept.adv_acc, strict=True):
        assert (row["adv_lo"], row["adv_hi"]) == wilson_interval(round(acc * 90), 90)
    assert rows["null_clean_acc"].tolist() == local.null_clean_correct.mean(axis=(0, 2)).tolist()
    assert 0.25 < rows["null_clean_acc"].mean() < 0.35 and 0.55 < rows["null_adv_acc"].mean() < 0.65
    other = frame[frame["scope"] == "global"]
    assert set(other["layer"]) == {"global"} and set(other["source"]) == {"w.pt"} and other["null_adv_acc"].isna().all()
    assert to_frame(tmp_path / "empty").empty and tuple(to_frame(tmp_path / "empty").columns) == FRAME_COLUMNS
