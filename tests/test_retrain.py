"""Selective retraining: only the named modules move; layer selection; the comparison on a tiny model."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from robustness import paths
from robustness.attacks import FGSM
from robustness.cli import main
from robustness.errors import DataNotFoundError, InvalidArgument
from robustness.files import load_json
from robustness.models import build_model
from robustness.retrain import compare_retraining, run_comparison, select_layers, selective_retrain
from robustness.runtime import seed_everything
from robustness.sweep import SweepResult, save_results
from robustness.train import TrainConfig, train


def _loader(x: torch.Tensor, y: torch.Tensor, n: int, batch: int) -> DataLoader:
    return DataLoader(TensorDataset(x[:n], y[:n]), batch_size=batch, shuffle=True)


def _changed(before: dict[str, torch.Tensor], model: torch.nn.Module) -> set[str]:
    return {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}


def test_only_the_named_layers_change(trained_cnn, mnist5k_test) -> None:
    model = copy.deepcopy(trained_cnn)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    selective_retrain(model, _loader(*mnist5k_test, 200, 50), ["conv2", "fc2"], lr=1e-2)
    assert _changed(before, model) == {"conv2.weight", "conv2.bias", "fc2.weight", "fc2.bias"}
    assert model.training and all(m.training for m in model.modules())  # modes restored
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags


def test_batchnorm_statistics_stay_bitwise_unchanged() -> None:
    seed_everything(0)
    model = build_model("resnet18", "mnist5k").train()
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    selective_retrain(model, _loader(x, y, 8, 8), ["layer1.0.conv1"])
    assert _changed(before, model) == {"layer1.0.conv1.weight"}
    # A whole block: its BatchNorm affine parameters train, its running statistics do not.
    selective_retrain(model, _loader(x, y, 8, 8), ["layer1.0"])
    block = {k for k in before if k.startswith("layer1.0.")}
    stats = {k for k in block if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    assert stats and _changed(before, model) == block - stats


def test_bad_layer_names_and_settings_raise() -> None:
    model = build_model("mnist_cnn", "mnist5k")
    loader = _loader(torch.rand(4, 1, 28, 28), torch.zeros(4, dtype=torch.long), 4, 4)
    with pytest.raises(InvalidArgument, match="no module named 'fc9'.*conv1, conv2, fc1, fc2"):
        selective_retrain(model, loader, ["fc9"])
    with pytest.raises(InvalidArgument, match="no layers to retrain"):
        selective_retrain(model, loader, [])
    with pytest.raises(InvalidArgument, match="epochs"):
        selective_retrain(model, loader, ["fc2"], epochs=0)


def _table(labels: dict[str, str], score: str = "difference") -> dict[str, dict]:
    return {name: {score: 0.0, "labels": {score: lab}} for name, lab in labels.items()}


def test_select_layers_from_a_hand_made_scores_table() -> None:
    table = _table({"conv1": "robust", "conv2": "fragile", "fc1": "antifragile", "fc2": "undefined"})
    assert select_layers(table, "difference") == ["conv1", "fc1"]
    assert select_layers(table, "difference", labels=("fragile",)) == ["conv2"]
    with pytest.raises(InvalidArgument, match="unknown score"):
        select_layers(table, "robustness")


def test_compare_retraining_on_a_tiny_model(trained_cnn, mnist5k_test) -> None:
    x, y = mnist5k_test
    before = {k: v.clone() for k, v in trained_cnn.state_dict().items()}
    table = _table({"conv1": "robust", "conv2": "antifragile", "fc1": "robust", "fc2": "robust"})
    rows = compare_retraining(trained_cnn, _loader(x, y, 200, 50), (x[:300], y[:300]), table,
                              score="difference", attack=FGSM(0.1))
    assert [r["variant"] for r in rows] == ["none", "robust+antifragile", "all", "fragile"]
    assert [r["layers"] for r in rows] == [[], ["conv1", "conv2", "fc1", "fc2"], ["conv1", "conv2", "fc1", "fc2"], []]
    assert [r["steps"] for r in rows] == [0, 4, 4, 0]
    assert _changed(before, trained_cnn) == set()  # the model itself is untouched
    # Same steps, same seed, same layers: (b) and (c) are bitwise the same run here.
    assert rows[1]["clean_acc"] == rows[2]["clean_acc"] and rows[1]["adv_acc"] == rows[2]["adv_acc"]
    assert rows[0]["clean_acc"] == rows[3]["clean_acc"] > 0.8  # nothing trained: the checkpoint's accuracy
    assert 0 <= rows[0]["adv_acc"] < rows[0]["clean_acc"]


def test_retrain_command_writes_json_csv_and_plot(tmp_path, capsys) -> None:
    models, plots = tmp_path / "models", tmp_path / "plots"
    train(TrainConfig(arch="mnist_cnn", epochs=0, models_root=str(models), device="cpu"))
    n, t = 5, np.linspace(0, 1, 5)
    labels = {"conv1": 1.0, "conv2": 0.0, "fc1": 1.0, "fc2": 1.0}  # slope of Â_clean: conv2 robust, others fragile
    images = np.arange(200)  # per-image outcomes: the first k of 200 images correct, k = 200 × accuracy
    results = [SweepResult("highpass", name, 10, 0.5, 0.5, 1.0, 1.0, list(t), list(0.5 * (1 - s * t)),
                           [0.5] * n, [1.0] * n, [1.0] * n, [0] * n, list(t),
                           clean_correct=images < 100 * (1 - s * t)[:, None], adv_correct=np.tile(images < 100, (n, 1)),
                           ref_clean_correct=images < 100, ref_adv_correct=images < 100)
               for name, s in labels.items()]
    save_results({"attack": "fgsm_eps0.05", "eps": 0.05}, results,
                 paths.sweep_result_path("mnist_cnn", "mnist5k", 1, 0, "highpass", "local", "fgsm_eps0.05", models))
    argv = ["retrain", "--arch", "mnist_cnn", "--score", "clean", "--subset", "100", "--test-subset", "100",
            "--device", "cpu", "--models-root", str(models), "--plots-root", str(plots)]
    assert main(argv) == 0
    assert "robust+antifragile" in capsys.readouterr().out
    out = paths.retrain_result_path("mnist_cnn", "mnist5k", 1, 0, kind="highpass", score="clean",
                                    attack_tag="fgsm_eps0.05", root=models)
    saved = load_json(out)
    assert saved["settings"]["eps"] == 0.05
    assert [(r["variant"], r["layers"]) for r in saved["rows"]][1:] == [
        ("robust+antifragile", ["conv2"]), ("all", ["conv1", "conv2", "fc1", "fc2"]),
        ("fragile", ["conv1", "fc1", "fc2"])]
    assert out.with_suffix(".csv").read_text().splitlines()[2].endswith(",conv2")
    assert len(list(plots.glob("MnistCNN_MNIST5K_retrain_Init_1_0epochs_highpass_clean_fgsm_eps0.05.png"))) == 1
    stamp = out.stat().st_mtime_ns
    assert main(argv) == 0 and out.stat().st_mtime_ns == stamp  # same settings: read back, not retrained
    with pytest.raises(DataNotFoundError, match="--filter lowpass --scope local"):
        run_comparison("mnist_cnn", "mnist5k", 1, 0, kind="lowpass", score="clean", models_root=models)
