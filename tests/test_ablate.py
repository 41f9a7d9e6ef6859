"""Whole-layer ablation: planted layers the network ignores or cannot do without, the same outcomes as a copy
zeroed and recalibrated by hand, and the model back bitwise."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from test_probes import Planted, SmallBN, assert_same_state, planted_data, reference_probe, state
from torch import nn

from robustness.attacks import FGSM
from robustness.probes import ProbeResult, ablate, accuracy_drop, verdicts


def test_an_ignored_layer_loses_nothing_and_a_bottleneck_everything() -> None:
    model, data = Planted(trained=True), planted_data()
    results = ablate(model, data, FGSM(0.05))
    assert {r.kind for r in results.values()} == {"ablate"}
    ignored, bottleneck = results["ignored"], results["bottleneck"]
    assert ignored.clean_acc == ignored.adv_acc == ignored.ref_clean_acc == 1.0
    assert accuracy_drop(ignored, "adv", n_boot=200) == (0.0, 0.0, 0.0)
    # Zeroed (bias too), the bottleneck makes every logit 0: every image is called class 0.
    share_of_class_0 = float((data[1] == 0).float().mean())
    assert bottleneck.clean_acc == bottleneck.adv_acc == pytest.approx(share_of_class_0)
    drop, lo, hi = accuracy_drop(bottleneck, "clean", n_boot=500)
    assert drop == pytest.approx(1 - share_of_class_0) and lo < drop < hi
    assert verdicts(results, "clean", 0.05, n_boot=200)["bottleneck"]["verdict"] == "critical"
    back = ProbeResult.from_sweep(bottleneck.to_sweep(40))
    assert back.kind == "ablate" and back.seeds == () and np.array_equal(back.adv_correct, bottleneck.adv_correct)


def test_ablation_equals_a_copy_zeroed_and_recalibrated_by_hand(mnist5k_test) -> None:
    torch.manual_seed(2)
    model = SmallBN().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0).add_(0.1)
        model.bn1.running_mean.fill_(0.3)
    zeros = copy.deepcopy(model)
    with torch.no_grad():
        for p in zeros.parameters():
            p.zero_()
    x, y = mnist5k_test[0][:200], mnist5k_test[1][:200].long()
    calibration = mnist5k_test[0][500:650]
    saved = state(model)
    results = ablate(model, (x, y), FGSM(0.1), calibration=calibration)
    assert_same_state(model, saved)
    assert list(results) == ["conv1", "conv2", "fc"]
    for name, result in results.items():
        clean, adv = reference_probe(model, zeros, name, x, y, calibration, 0.1)
        assert np.array_equal(result.clean_correct, clean) and np.array_equal(result.adv_correct, adv)


def test_the_model_comes_back_bitwise_also_on_an_exception() -> None:
    model, data = Planted(trained=True), planted_data(40)
    saved = state(model)
    calls = []

    def failing(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 2:  # the first ablated layer: it is zero now
            assert float(m.ignored.weight.abs().sum()) == 0.0
            raise RuntimeError("boom")
        return x

    with pytest.raises(RuntimeError, match="boom"):
        ablate(model, data, failing)
    assert_same_state(model, saved)
    assert model.training


def test_the_probe_command_ablates_every_checkpoint_into_its_own_folder(checkpoints_root, tmp_path, capsys) -> None:
    import shutil  # noqa: PLC0415

    from robustness import paths  # noqa: PLC0415
    from robustness.cli import main  # noqa: PLC0415
    from robustness.probes import load_probes  # noqa: PLC0415

    root = tmp_path / "models"
    shutil.copytree(checkpoints_root, root)
    command = ["probe", "--arch", "mnist_cnn", "--dataset", "mnist5k", "--models-root", str(root), "--device", "cpu",
               "--kind", "ablate", "--subset", "60", "--eps", "0.1", "--n-boot", "50", "--checkpoint-epochs", "1",
               "--plots-root", str(tmp_path)]
    assert main(command) == 0
    path = paths.probe_result_path("mnist_cnn", "mnist5k", 1, 1, "ablate", "fgsm_eps0.1", root)
    assert path.parent.name == "Probe_ablate"
    meta, results = load_probes(path)
    assert meta["probe"] == "ablate" and list(results) == ["conv1", "conv2", "fc1", "fc2"]
    assert results["fc2"].kind == "ablate" and results["fc2"].clean_acc < 0.5 < results["fc2"].ref_clean_acc
    assert "adv drop" in capsys.readouterr().out
