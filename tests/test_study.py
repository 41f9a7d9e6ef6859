"""The study runner: plans, result files and meta, resume after a kill, sharding, eps calibration per
checkpoint on held-out images, BatchNorm modes, the random baseline, the PGD re-check, and the filter command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from robustness import paths
from robustness.attacks import FGSM, calibrate_eps, make_attack
from robustness.cli import main
from robustness.data import load_dataset, loader_to_tensors, make_loader
from robustness.errors import CheckpointError, InvalidArgument
from robustness.filtering import load_results, local_analysis
from robustness.models import load_checkpoint
from robustness.retraining import attack_from_meta, evaluation_attacks
from robustness.study import (
    StudyConfig,
    merge_results,
    plan_units,
    result_path,
    run_recheck,
    run_study,
    run_units,
    split_test_images,
    study_data,
)
from robustness.study import runner as study_module
from robustness.training import TrainConfig, train

EPS = 0.1


def fresh_root(checkpoints_root: Path, tmp_path: Path, name: str) -> Path:
    root = tmp_path / name
    shutil.copytree(checkpoints_root, root)
    return root


def study(root: Path, **changes) -> StudyConfig:
    config = StudyConfig(attack=FGSM(EPS), arch="mnist_cnn", dataset="mnist5k", kinds=("highpass", "pulse"),
                         thresholds=3, layers=("conv1", "fc2"), subset=20, models_root=str(root), device="cpu")
    return StudyConfig(**{**config.__dict__, **changes})


def result_files(root: Path) -> dict[str, object]:
    """Every file written by the study (checkpoints aside), as relative path -> JSON text, or for an .npz
    the per-image arrays it holds (a zip's bytes carry time stamps)."""
    folder = paths.model_dir("mnist_cnn", "mnist5k", root)
    files = [p for p in sorted(folder.rglob("*")) if p.is_file() and not p.relative_to(folder).parts[0].startswith(
        "Init_")]
    return {str(p.relative_to(folder)): p.read_text() if p.suffix == ".json" else npz_arrays(p) for p in files}


def npz_arrays(path: Path) -> dict[str, list]:
    with np.load(path) as npz:
        return {k: npz[k].tolist() for k in sorted(npz.files)}


def test_plan_is_deterministic_and_complete(checkpoints_root: Path) -> None:
    units = plan_units(study(checkpoints_root))
    assert units == plan_units(study(checkpoints_root))
    assert len(units) == 2 * 2 * 3  # epochs 0 and 1 x 2 filters x (2 layers + 1 global)
    assert [u.checkpoint for u in units] == sorted(u.checkpoint for u in units)
    assert {(u.scope, u.layer) for u in units} == {("local", "conv1"), ("local", "fc2"), ("global", None)}
    with pytest.raises(InvalidArgument, match="conv1, conv2, fc1, fc2"):
        plan_units(study(checkpoints_root, layers=("conv3",)))
    with pytest.raises(CheckpointError, match=r"epoch\(s\) \[7\].*found epochs \[0, 1\]"):
        plan_units(study(checkpoints_root, epochs=(1, 7)))


@pytest.fixture(scope="module")
def whole(checkpoints_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The models root after one uninterrupted study."""
    root = fresh_root(checkpoints_root, tmp_path_factory.mktemp("whole"), "whole")
    written = run_study(study(root))
    assert len(written) == 2 * 2 * 2  # 2 checkpoints x 2 filters x (local, global)
    return root


def test_result_files_and_meta(whole: Path) -> None:
    local = paths.sweep_result_path("mnist_cnn", "mnist5k", 1, 1, "pulse", "local", "fgsm_eps0.1", whole)
    assert local.parent.name == "Pulse_minmax"
    meta, results = load_results(local)
    assert results["conv1"].ref_adv_acc < results["conv1"].ref_clean_acc
    assert meta == {"arch": "mnist_cnn", "dataset": "mnist5k", "init": 1, "epoch": 1, "kind": "pulse",
                    "scope": "local", "attack": "fgsm_eps0.1", "eps": EPS, "calibrate_eps": None, "thresholds": 3,
                    "subset": 20, "seed": 0, "precision": "fp32", "layers": ["conv1", "fc2"], "sequential": None,
                    "attack_params": {"name": "fgsm", "eps": EPS}, "bn": "recalibrate", "bn_images": 1000,
                    "calibration_images": 0, "grid": "value", "null_masks": 0, "regime": "standard",
                    "regime_settings": {"method": "none"},
                    "ref_clean_acc": results["conv1"].ref_clean_acc, "ref_adv_acc": results["conv1"].ref_adv_acc,
                    "depth": {"conv1": 0.0, "conv2": 1 / 3, "fc1": 2 / 3, "fc2": 1.0}}
    assert list(results) == ["conv1", "fc2"] and len(results["fc2"].adv_acc) == 3


def test_result_file_written_before_regimes_is_reused_as_standard(whole: Path, tmp_path: Path) -> None:
    root = tmp_path / "old"
    shutil.copytree(whole, root)
    path = paths.sweep_result_path("mnist_cnn", "mnist5k", 1, 1, "pulse", "local", "fgsm_eps0.1", root)
    data = json.loads(path.read_text())
    del data["meta"]["regime"], data["meta"]["regime_settings"]
    path.write_text(json.dumps(data))
    assert run_study(study(root)) and json.loads(path.read_text()) == data  # nothing recomputed, nothing refused
    meta, results = load_results(
        paths.sweep_result_path("mnist_cnn", "mnist5k", 1, 0, "highpass", "global", "fgsm_eps0.1", whole))
    assert meta["alpha_range"] == [-1.0, 1.0] and list(results) == ["global"]
    assert results["global"].thresholds == [-1.0, 0.0, 1.0]
    assert not list(whole.rglob(".parts"))
    stamps = {f: f.stat().st_mtime_ns for f in whole.rglob("*.json")}
    assert sorted(run_study(study(whole))) == sorted(f for f in stamps if f.name != "history.json")
    assert {f: f.stat().st_mtime_ns for f in whole.rglob("*.json")} == stamps  # a finished study rewrites nothing
    with pytest.raises(InvalidArgument, match="different study set-up.*thresholds"):
        run_study(study(whole, thresholds=4))


@pytest.mark.slow
def test_resume_after_a_kill_writes_only_the_rest(checkpoints_root, whole, tmp_path, monkeypatch) -> None:
    killed = fresh_root(checkpoints_root, tmp_path, "killed")
    real_run_unit, ran = study_module.run_unit, []

    def run_unit(config, unit, *args):
        if len(ran) == 5:
            raise KeyboardInterrupt  # killed during the 6th of 12 units
        ran.append(unit)
        return real_run_unit(config, unit, *args)

    monkeypatch.setattr(study_module, "run_unit", run_unit)
    with pytest.raises(KeyboardInterrupt):
        run_study(study(killed))
    first = list(ran)
    assert len(first) == 5 and result_files(killed) != result_files(whole)
    ran.clear()
    monkeypatch.setattr(study_module, "run_unit", lambda config, unit, *args: ran.append(unit) or real_run_unit(
        config, unit, *args))
    run_study(study(killed))
    assert sorted(ran) == sorted(set(plan_units(study(killed))) - set(first))
    assert result_files(killed) == result_files(whole)


@pytest.mark.slow
def test_units_split_over_workers_merge_to_the_same_files(checkpoints_root, whole, tmp_path) -> None:
    config = study(fresh_root(checkpoints_root, tmp_path, "shards"))
    units, data = plan_units(config), study_data(config, torch.device("cpu"))
    for rank in range(3):  # as three torchrun ranks would, each writing only its own units' files
        run_units(config, units[rank::3], data)
    parts = sorted(Path(config.models_root).rglob(".parts/*/*.json"))
    assert len(parts) == 2 * 2 * 2  # 8 local layer parts, each with its own .npz
    assert all(p.with_suffix(".npz").is_file() for p in parts)
    layers = {(p.parent.name, p.stem): load_results(p)[1][p.stem] for p in parts}
    merge_results(config)
    assert result_files(Path(config.models_root)) == result_files(whole)
    for (name, layer), part in layers.items():  # the merged file carries each part's per-image arrays
        merged = load_results(next(Path(config.models_root).rglob(f"{name}.json")))[1][layer]
        assert merged == part and merged.clean_correct.shape == (3, 20)


def test_cli_filter(checkpoints_root: Path, tmp_path: Path, capsys) -> None:
    root = fresh_root(checkpoints_root, tmp_path, "cli")
    common = ["filter", "--arch", "mnist_cnn", "--models-root", str(root), "--device", "cpu",
              "--checkpoint-epochs", "1", "--subset", "50", "--thresholds", "2", "--filter", "lowpass", "--scope",
              "local", "-e", "0.05"]
    assert main([*common, "--layers", "fc2"]) == 0
    out = capsys.readouterr().out
    assert "Step_maxmin" in out and "fgsm_eps0.05" in out
    assert main([*common, "--layers", "fc9"]) == 2
    assert "error: unknown layer(s) fc9" in capsys.readouterr().err
    assert main([*common, "--layers", "fc2", "--precision", "bf16"]) == 2
    assert "different study set-up ({'precision': 'fp32'})" in capsys.readouterr().err
    fast = fresh_root(checkpoints_root, tmp_path, "fast")
    args = [*common, "--layers", "fc2", "--precision", "bf16", "--channels-last", "--models-root", str(fast)]
    assert main(args) == 0
    written = paths.sweep_result_path("mnist_cnn", "mnist5k", 1, 1, "lowpass", "local", "fgsm_eps0.05", fast)
    assert load_results(written)[0]["precision"] == "bf16"


# ---------------------------------------------------------------- eps calibration per checkpoint


@pytest.fixture(scope="module")
def two_inits(checkpoints_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkpoints of ``checkpoints_root`` and a second initialisation trained alike."""
    root = fresh_root(checkpoints_root, tmp_path_factory.mktemp("two_inits"), "two")
    train(TrainConfig(arch="mnist_cnn", dataset="mnist5k", inits=2, epochs=1, subset=500, models_root=str(root),
                      device="cpu"))
    return root


@pytest.mark.slow
def test_eps_is_calibrated_per_checkpoint_on_held_out_images(two_inits: Path, tmp_path: Path, monkeypatch) -> None:
    root = fresh_root(two_inits, tmp_path, "calibrated")
    config = study(root, epochs=(1,), kinds=("highpass",), layers=("fc2",), thresholds=2, subset=50,
                   calibrate_eps=0.5, eps_images=120)
    written = run_study(config)
    evaluated, held = split_test_images(config)
    assert len(held.indices) == 120 and len(evaluated.indices) == 50
    assert not set(held.indices) & set(evaluated.indices)  # eps is never calibrated on scored images
    x, y = loader_to_tensors(make_loader(evaluated, 1000))
    epsilons = []
    for init in (1, 2):
        model, _ = load_checkpoint(paths.checkpoint_path("mnist_cnn", "mnist5k", init, 1, root))
        eps = calibrate_eps(model, make_loader(held, 1000), 0.5, "fgsm")
        epsilons.append(eps)
        for scope in ("local", "global"):
            path = result_path(config, init, 1, "highpass", scope)
            assert path in written and path.name.endswith(f"Init_{init}_1epochs_fgsm_acc0.5.json")  # by the target
            meta, results = load_results(path)
            result = next(iter(results.values()))
            assert meta["eps"] == eps and meta["attack_params"] == {"name": "fgsm", "eps": eps}
            assert (meta["calibrate_eps"], meta["calibration_images"], meta["attack"]) == (0.5, 120, "fgsm_acc0.5")
            with torch.no_grad():  # the reference was measured on the 50 evaluated images, in their order
                own = (model(x).argmax(1) == y).numpy()
            assert np.array_equal(result.ref_clean_correct, own) and meta["ref_clean_acc"] == own.mean()
            assert meta["ref_adv_acc"] == result.ref_adv_acc and abs(result.ref_adv_acc - 0.5) < 0.15
    assert epsilons[0] != epsilons[1]  # each checkpoint its own eps
    # a rerun that misses one file takes the eps recorded in the checkpoint's other files: no new calibration
    result_path(config, 2, 1, "highpass", "global").unlink()
    monkeypatch.setattr("robustness.study.runner.calibrate_eps", lambda *a, **k: pytest.fail("calibrated again"))
    run_study(config)
    assert load_results(result_path(config, 2, 1, "highpass", "global"))[0]["eps"] == epsilons[1]


@pytest.mark.slow
def test_a_checkpoint_below_the_target_fails_before_any_sweep(checkpoints_root: Path, tmp_path: Path) -> None:
    root = fresh_root(checkpoints_root, tmp_path, "untrained")
    config = study(root, epochs=(1, 0), calibrate_eps=0.5, eps_images=100, subset=50)
    with pytest.raises(InvalidArgument, match=r"checkpoint Init_1 epoch 0: clean accuracy 0\.\d+ is already below "
                                              r"target 0\.5.*fixed eps.*--checkpoint-epochs"):
        run_study(config)
    assert not result_files(root)


def test_held_out_images_must_fit_the_test_split(checkpoints_root: Path) -> None:
    for changes in ({"eps_images": 990, "subset": 20}, {"eps_images": 1000, "subset": None}):
        config = study(checkpoints_root, calibrate_eps=0.5, **changes)
        with pytest.raises(InvalidArgument, match="test split has 1000 images.*eps_images.*subset"):
            run_study(config)


# ---------------------------------------------------------------- settings in the meta; no mixing


@pytest.mark.parametrize(("changes", "message"), [
    ({"bn": "train"}, "unknown BatchNorm mode 'train'"),
    ({"bn_images": 0}, "bn_images.*at least 2"),
    ({"null_masks": -1}, "null_masks"),
    ({"random_baseline": True, "null_masks": 0}, "null_masks.*>= 1"),
    ({"grid": "log"}, "unknown grid 'log'"),
    ({"calibrate_eps": 0.5, "eps_images": 0}, "eps_images"),
    ({"bn_images": 4001}, "bn_images=4001.*training split has 4000 images"),
])
def test_bad_settings_are_one_clear_error(checkpoints_root: Path, changes: dict, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        run_study(study(checkpoints_root, **changes))


@pytest.mark.parametrize(("changes", "key"), [
    ({"bn": "frozen"}, "bn"), ({"grid": "quantile"}, "grid"), ({"random_baseline": True}, "null_masks"),
    ({"bn_images": 500}, "bn_images"),
])
def test_results_of_other_settings_never_mix(whole: Path, changes: dict, key: str) -> None:
    with pytest.raises(InvalidArgument, match=f"different study set-up.*'{key}'"):
        run_study(study(whole, **changes))


# ---------------------------------------------------------------- BatchNorm in a study


@pytest.fixture(scope="module")
def resnet_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained ResNet-18 checkpoint (epoch 0): its BatchNorm statistics are the initial ones."""
    root = tmp_path_factory.mktemp("resnet")
    train(TrainConfig(arch="resnet18", dataset="mnist5k", epochs=0, models_root=str(root), device="cpu"))
    return root


@pytest.mark.slow
def test_a_study_recalibrates_on_a_seeded_training_subset(resnet_root: Path) -> None:
    common = dict(attack=FGSM(0.05), arch="resnet18", kinds=("highpass",), scopes=("local",), layers=("fc",),
                  thresholds=2, subset=20, bn_images=120, models_root=str(resnet_root), device="cpu")
    recal = load_results(run_study(StudyConfig(**common))[0])
    frozen = load_results(run_study(StudyConfig(**{**common, "bn": "frozen", "kinds": ("lowpass",)}))[0])
    assert (recal[0]["bn"], recal[0]["bn_images"], frozen[0]["bn"], frozen[0]["bn_images"]) == (
        "recalibrate", 120, "frozen", 0)
    model, _ = load_checkpoint(paths.checkpoint_path("resnet18", "mnist5k", 1, 0, resnet_root))
    evaluated = loader_to_tensors(make_loader(load_dataset("mnist5k", train=False), 100, subset=20, seed=0))
    images = loader_to_tensors(make_loader(load_dataset("mnist5k", train=True), 100, subset=120, seed=0))
    direct = local_analysis(model, evaluated, "highpass", FGSM(0.05), 2, layers=["fc"], bn_images=images)["fc"]
    assert recal[1]["fc"] == direct
    assert frozen[1]["fc"].ref_clean_loss != direct.ref_clean_loss  # the stored statistics give other numbers


# ---------------------------------------------------------------- the random baseline and the grid, by command


def test_cli_filter_bn_grid_and_random_baseline(checkpoints_root: Path, tmp_path: Path, capsys) -> None:
    root = fresh_root(checkpoints_root, tmp_path, "cli_options")
    args = ["filter", "--arch", "mnist_cnn", "--models-root", str(root), "--device", "cpu", "--checkpoint-epochs", "1",
            "--subset", "40", "--thresholds", "3", "--filter", "highpass", "--scope", "local", "--layers", "fc2",
            "--bn", "frozen", "--grid", "quantile", "--random-baseline", "--null-masks", "2"]
    assert main(args) == 0
    assert "quantile" in capsys.readouterr().out
    meta, results = load_results(paths.sweep_result_path("mnist_cnn", "mnist5k", 1, 1, "highpass", "local",
                                                          "fgsm_eps0.1", root))
    assert (meta["bn"], meta["bn_images"], meta["grid"], meta["null_masks"]) == ("frozen", 0, "quantile", 2)
    fc2 = results["fc2"]
    assert fc2.removed_fraction == [0.0, 0.5, 1.0] and fc2.null_adv_correct.shape == (2, 3, 40)
    assert main([*args[:-1], "3"]) == 2  # another number of masks: refused, not mixed
    assert "different study set-up ({'null_masks': 2})" in capsys.readouterr().err
    assert main([*args, "--bn-images", "1"]) == 2
    assert "error: bn_images" in capsys.readouterr().err


# ---------------------------------------------------------------- the PGD re-check


@pytest.mark.slow
def test_pgd_recheck_of_an_fgsm_study(two_inits: Path, tmp_path: Path) -> None:
    root = fresh_root(two_inits, tmp_path, "recheck")
    config = study(root, epochs=(1,), inits=(1,), kinds=("highpass",), scopes=("local",), layers=("conv1", "fc2"),
                   thresholds=3, subset=60, calibrate_eps=0.5, eps_images=100)
    with pytest.raises(InvalidArgument, match="run the FGSM study first"):
        run_recheck(config, {(1, 1): ["fc2"]}, steps=3)
    run_study(config)
    with pytest.raises(InvalidArgument, match="one filter"):
        run_recheck(study(root, epochs=(1,), calibrate_eps=0.5), {(1, 1): ["fc2"]})
    with pytest.raises(InvalidArgument, match=r"no sweep of conv2: re-check layers it swept \(conv1, fc2\)"):
        run_recheck(config, {(1, 1): ["conv2"]})
    paths_written = run_recheck(config, {(1, 1): ["fc2"], (2, 1): []}, steps=3, restarts=2)
    assert list(paths_written) == [(1, 1)]  # a checkpoint without layers is skipped
    path = paths_written[1, 1]
    assert path.name == "Init_1_1epochs_pgd-linf_a0.833333_k3_r2_recheck_of_fgsm_acc0.5.json"
    fgsm_meta, fgsm = load_results(result_path(config, 1, 1, "highpass", "local"))
    meta, pgd = load_results(path)
    eps = fgsm_meta["eps"]
    assert meta["eps"] == eps and meta["recheck_of"] == "fgsm_acc0.5" and meta["layers"] == ["fc2"]
    assert meta["attack_params"] == {"name": "pgd", "eps": eps, "alpha": pytest.approx(2.5 * eps / 3), "steps": 3,
                                     "norm": "linf", "random_start": True, "restarts": 2, "seed": 0}
    assert (meta["bn"], meta["grid"], meta["thresholds"], meta["null_masks"]) == ("recalibrate", "value", 3, 0)
    assert list(pgd) == ["fc2"]
    # retraining rebuilds the sweep's own attack from its meta, and evaluates with PGD at that eps
    rebuilt = attack_from_meta(meta)
    assert rebuilt == make_attack("pgd", eps, meta["attack_params"]["alpha"], steps=3, restarts=2)
    assert rebuilt.alpha == pytest.approx(2.5 * eps / 3)
    assert evaluation_attacks(meta, pgd_steps=4)["pgd"] == make_attack("pgd", eps, steps=4)
    # the same thresholds, images and model: the clean outcomes are FGSM's, image by image
    assert pgd["fc2"].thresholds == fgsm["fc2"].thresholds
    assert np.array_equal(pgd["fc2"].clean_correct, fgsm["fc2"].clean_correct)
    assert np.array_equal(pgd["fc2"].ref_clean_correct, fgsm["fc2"].ref_clean_correct)
    assert pgd["fc2"].ref_adv_acc <= fgsm["fc2"].ref_adv_acc and sum(pgd["fc2"].adv_acc) <= sum(fgsm["fc2"].adv_acc)
    stamp = path.stat().st_mtime_ns
    assert run_recheck(config, {(1, 1): ["fc2"]}, steps=3, restarts=2) == {(1, 1): path}
    assert path.stat().st_mtime_ns == stamp  # resumable: a finished re-check is not recomputed
