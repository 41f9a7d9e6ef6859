"""Sweeps and the study runner (SPEC 4): deep-copy reference, restore on errors, resume after a kill."""

from __future__ import annotations

import copy
import functools
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustness import paths, sweep
from robustness.attacks import FGSM, fgsm
from robustness.cli import main
from robustness.data import load_dataset, make_loader
from robustness.errors import CheckpointError, InvalidArgument
from robustness.evaluation import calibrate_eps
from robustness.filters import apply_filter, half_width, thresholds
from robustness.runtime import autocast, channels_last
from robustness.sweep import (
    StudyConfig,
    evaluation_set,
    global_analysis,
    load_results,
    local_analysis,
    merge_results,
    plan_units,
    run_study,
    run_units,
)
from robustness.train import TrainConfig, load_checkpoint, train

EPS = 0.1


@pytest.fixture(scope="module")
def data(mnist5k_test: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """100 test images."""
    x, y = mnist5k_test
    return x[:100], y[:100]


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_bitwise_equal(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert all(torch.equal(after[k], v) and after[k].dtype == v.dtype for k, v in before.items())


def deep_copy_reference(model: nn.Module, data, layer: str, kind: str, count: int) -> dict[str, list]:
    """The original study's way: a fresh deep copy of the model per threshold, FGSM on batches of 50."""
    x, y = data
    weight = dict(model.named_modules())[layer].weight.detach()
    lo, hi = weight.min().item(), weight.max().item()
    out: dict[str, list] = {"clean_acc": [], "adv_acc": [], "removed": [], "clean_correct": [], "adv_correct": []}
    for alpha in thresholds(kind, lo, hi, count):
        filtered = copy.deepcopy(model)
        state = copy.deepcopy(filtered.state_dict())
        state[f"{layer}.weight"] = apply_filter(weight, kind, alpha, half_width(lo, hi, count))
        filtered.load_state_dict(state)
        clean, adv = [], []
        for xb, yb in zip(x.split(50), y.split(50), strict=True):
            x_grad = xb.clone().requires_grad_(True)
            logits = filtered(x_grad)
            F.cross_entropy(logits, yb).backward()
            x_adv = (x_grad + EPS * x_grad.grad.sign()).clamp(0, 1).detach()
            clean += (logits.argmax(1) == yb).tolist()
            with torch.no_grad():
                adv += (filtered(x_adv).argmax(1) == yb).tolist()
        out["clean_acc"].append(sum(clean) / len(y))
        out["adv_acc"].append(sum(adv) / len(y))
        out["clean_correct"].append(clean)
        out["adv_correct"].append(adv)
        out["removed"].append(int((state[f"{layer}.weight"] == 0).sum() - (weight == 0).sum()))
    return out


@pytest.mark.parametrize(("kind", "layers"), [("highpass", ["conv1", "fc2"]), ("lowpass", ["fc2"]),
                                              ("pulse", ["conv1"])])
def test_local_sweep_equals_deep_copy_reference(trained_cnn: nn.Module, data, kind: str, layers: list[str]) -> None:
    before = snapshot(trained_cnn)
    results = local_analysis(trained_cnn, data, kind, FGSM(EPS), thresholds=4, layers=layers)
    assert list(results) == layers
    for layer, result in results.items():
        expected = deep_copy_reference(trained_cnn, data, layer, kind, 4)
        assert result.clean_acc == expected["clean_acc"]
        assert result.adv_acc == expected["adv_acc"]
        assert result.removed == expected["removed"]
        assert result.clean_correct.tolist() == expected["clean_correct"]
        assert result.adv_correct.tolist() == expected["adv_correct"]
        assert result.layer == layer and result.kind == kind and len(result.thresholds) == 4
        assert result.total == dict(trained_cnn.named_modules())[layer].weight.numel()
    assert_bitwise_equal(trained_cnn, before)


def test_reference_and_direction(trained_cnn: nn.Module, data) -> None:
    result = local_analysis(trained_cnn, data, "step_maxmin", FGSM(EPS), thresholds=5, layers=["fc1"])["fc1"]
    assert result.kind == "lowpass"
    assert result.thresholds == sorted(result.thresholds, reverse=True)
    assert result.removed == sorted(result.removed) and result.removed_fraction[-1] == 1.0
    # The reference is the unfiltered model: clean accuracy is the model's own; FGSM lowers it.
    with torch.no_grad():
        own = (trained_cnn(data[0]).argmax(1) == data[1]).float().mean().item()
    assert result.ref_clean_acc == pytest.approx(own, abs=1e-6)
    assert result.ref_adv_acc < result.ref_clean_acc - 0.05


def test_global_highpass_top_threshold_removes_every_filtered_weight(trained_cnn: nn.Module, data) -> None:
    result = global_analysis(trained_cnn, data, "highpass", FGSM(EPS), thresholds=3, alpha_range="auto")
    total = sum(m.weight.numel() for m in (trained_cnn.conv1, trained_cnn.conv2, trained_cnn.fc1, trained_cnn.fc2))
    assert result.layer is None and result.total == total
    assert result.removed[-1] == total and result.removed_fraction[-1] == 1.0
    assert 1 <= result.removed[0] < total // 1000  # the bottom threshold removes only the global minimum
    default = global_analysis(trained_cnn, data, "pulse", FGSM(EPS), thresholds=3)
    assert default.thresholds == [-1.0, 0.0, 1.0]


def test_attack_without_shared_forward_gives_the_same_numbers(trained_cnn: nn.Module, data) -> None:
    shared = local_analysis(trained_cnn, data, "pulse", FGSM(EPS), thresholds=3, layers=["conv2"])["conv2"]
    plain = local_analysis(trained_cnn, data, "pulse", functools.partial(fgsm, eps=EPS), thresholds=3,
                           layers=["conv2"])["conv2"]
    assert shared == plain


def test_fgsm_configuration_costs_two_forwards(trained_cnn: nn.Module, data) -> None:
    calls = []
    hook = trained_cnn.register_forward_hook(lambda *_: calls.append(1))
    try:
        local_analysis(trained_cnn, data, "highpass", FGSM(EPS), thresholds=3, layers=["fc2"], batch_size=1000)
    finally:
        hook.remove()
    assert len(calls) == 2 * (1 + 3)  # reference + 3 thresholds, one batch each


class Boom(Exception):
    pass


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
@pytest.mark.parametrize("scope", ["local", "global"])
def test_weights_restored_after_an_exception_mid_sweep(trained_cnn: nn.Module, data, error, scope) -> None:
    before = snapshot(trained_cnn)
    flags = [p.requires_grad for p in trained_cnn.parameters()]
    trained_cnn.train()
    calls = []

    def attack(model, x, y):
        calls.append(1)
        if len(calls) == 3:  # reference, threshold 1, then fail at threshold 2 with the weights filtered
            raise error
        return fgsm(model, x, y, EPS)

    with pytest.raises(error):
        if scope == "local":
            local_analysis(trained_cnn, data, "highpass", attack, thresholds=5, layers=["conv2", "fc1"])
        else:
            global_analysis(trained_cnn, data, "highpass", attack, thresholds=5)
    assert len(calls) == 3
    assert_bitwise_equal(trained_cnn, before)
    assert trained_cnn.training and [p.requires_grad for p in trained_cnn.parameters()] == flags
    trained_cnn.eval()


def test_unknown_layer_and_kind(trained_cnn: nn.Module, data) -> None:
    with pytest.raises(InvalidArgument, match=r"layer1\.0\.conv1.*conv1, conv2, fc1, fc2"):
        local_analysis(trained_cnn, data, "highpass", FGSM(EPS), layers=["layer1.0.conv1"])
    with pytest.raises(InvalidArgument, match="highpass, lowpass, pulse"):
        local_analysis(trained_cnn, data, "notch", FGSM(EPS))
    with pytest.raises(InvalidArgument, match="highpass, lowpass, pulse"):
        global_analysis(trained_cnn, data, "notch", FGSM(EPS))


def test_channels_last_and_bf16_agree_with_fp32(trained_cnn: nn.Module, data) -> None:
    """The GPU speed options change the numbers by rounding only. Channels-last: the same accuracies, losses
    within 1e-4. bf16 autocast: accuracies within 0.03 (3 of the 100 images) at every threshold."""
    model = copy.deepcopy(trained_cnn)
    fp32 = local_analysis(model, data, "highpass", FGSM(EPS), 5, layers=["conv2"])["conv2"]
    with autocast(torch.device("cpu"), "bf16"):
        bf16 = local_analysis(model, data, "highpass", FGSM(EPS), 5, layers=["conv2"])["conv2"]
    (x,) = channels_last(model, data[0])
    assert model.conv2.weight.is_contiguous(memory_format=torch.channels_last)
    last = local_analysis(model, (x, data[1]), "highpass", FGSM(EPS), 5, layers=["conv2"])["conv2"]
    assert last.clean_acc == fp32.clean_acc and last.adv_acc == fp32.adv_acc
    assert last.clean_loss == pytest.approx(fp32.clean_loss, abs=1e-4)
    assert bf16.clean_loss != fp32.clean_loss  # autocast did run in bf16
    for field in ("clean_acc", "adv_acc"):
        assert max(abs(a - b) for a, b in zip(getattr(bf16, field), getattr(fp32, field), strict=True)) <= 0.03
    assert bf16.removed == fp32.removed


# ---------------------------------------------------------------- the runner


@pytest.fixture(scope="module")
def checkpoints_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mnist_cnn checkpoints at epochs 0 and 1 (trained on 500 images)."""
    root = tmp_path_factory.mktemp("study_models")
    train(TrainConfig(arch="mnist_cnn", dataset="mnist5k", epochs=1, subset=500, models_root=str(root), device="cpu"))
    return root


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
    assert meta == {"arch": "mnist_cnn", "dataset": "mnist5k", "init": 1, "epoch": 1, "kind": "pulse",
                    "scope": "local", "attack": "fgsm_eps0.1", "eps": EPS, "calibrate_eps": None, "thresholds": 3,
                    "subset": 20, "seed": 0, "precision": "fp32", "layers": ["conv1", "fc2"]}
    assert list(results) == ["conv1", "fc2"] and len(results["fc2"].adv_acc) == 3
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


def test_resume_after_a_kill_writes_only_the_rest(checkpoints_root, whole, tmp_path, monkeypatch) -> None:
    killed = fresh_root(checkpoints_root, tmp_path, "killed")
    real_run_unit, ran = sweep.run_unit, []

    def run_unit(config, unit, *args):
        if len(ran) == 5:
            raise KeyboardInterrupt  # killed during the 6th of 12 units
        ran.append(unit)
        return real_run_unit(config, unit, *args)

    monkeypatch.setattr(sweep, "run_unit", run_unit)
    with pytest.raises(KeyboardInterrupt):
        run_study(study(killed))
    first = list(ran)
    assert len(first) == 5 and result_files(killed) != result_files(whole)
    ran.clear()
    monkeypatch.setattr(sweep, "run_unit", lambda config, unit, *args: ran.append(unit) or real_run_unit(
        config, unit, *args))
    run_study(study(killed))
    assert sorted(ran) == sorted(set(plan_units(study(killed))) - set(first))
    assert result_files(killed) == result_files(whole)


def test_units_split_over_workers_merge_to_the_same_files(checkpoints_root, whole, tmp_path) -> None:
    config = study(fresh_root(checkpoints_root, tmp_path, "shards"))
    units, data = plan_units(config), evaluation_set(config, torch.device("cpu"))
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


def test_calibrated_eps_is_recorded(checkpoints_root: Path, tmp_path: Path) -> None:
    root = fresh_root(checkpoints_root, tmp_path, "calibrated")
    config = study(root, epochs=(0, 1), kinds=("highpass",), scopes=("global",), thresholds=2, calibrate_eps=0.5)
    written = run_study(config)
    model, _ = load_checkpoint(paths.checkpoint_path("mnist_cnn", "mnist5k", 1, 1, root))  # the newest checkpoint
    test = make_loader(load_dataset("mnist5k", train=False), 1000, subset=20, seed=0)
    eps = calibrate_eps(model, test, 0.5, "fgsm")
    assert len(written) == 2 and all(f"fgsm_eps{eps:g}" in p.name for p in written)
    meta, results = load_results(written[1])
    assert meta["eps"] == eps and meta["calibrate_eps"] == 0.5 and meta["epoch"] == 1
    assert abs(results["global"].ref_adv_acc - 0.5) <= 0.1  # 20 images: accuracy moves in steps of 0.05


def test_cli_filter(checkpoints_root: Path, tmp_path: Path, capsys) -> None:
    root = fresh_root(checkpoints_root, tmp_path, "cli")
    common = ["filter", "--arch", "mnist_cnn", "--models-root", str(root), "--device", "cpu", "--epochs", "1",
              "--subset", "50", "--thresholds", "2", "--filter", "lowpass", "--scope", "local", "-e", "0.05"]
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
