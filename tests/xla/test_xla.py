"""torch_xla on its CPU device gives the numbers eager CPU gives (make test-xla; skipped without torch_xla).

``make test-xla`` runs these in ``.venv-xla`` (torch 2.9.0, torch_xla 2.9.0) with ``PJRT_DEVICE=CPU``:
the XLA code paths (device choice, fixed-shape PGD, the per-step sync, checkpoints written from and
loaded onto an XLA device) run for real, on the CPU instead of a TPU.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("PJRT_DEVICE", "CPU")
torch_xla = pytest.importorskip("torch_xla")
metrics = pytest.importorskip("torch_xla.debug.metrics")

from robustness import paths  # noqa: E402 (after the skip)
from robustness.attacks import FGSM, PGD  # noqa: E402
from robustness.filtering import evaluate_point, local_analysis  # noqa: E402
from robustness.models import load_checkpoint  # noqa: E402
from robustness.runtime import choose_device  # noqa: E402
from robustness.training import TrainConfig, train  # noqa: E402

N = 200


@pytest.fixture(scope="module")
def xla() -> torch.device:
    return choose_device("xla").device


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, xla):
    """A CNN trained briefly on the CPU (about 90 % test accuracy) and a copy on the XLA device."""
    root = tmp_path_factory.mktemp("models")
    train(TrainConfig(arch="mnist_cnn", epochs=1, subset=1000, models_root=str(root), device="cpu"))
    model, _ = load_checkpoint(paths.checkpoint_path("mnist_cnn", "mnist5k", 1, 1, root))
    return model, copy.deepcopy(model).to(xla)


@pytest.fixture(scope="module")
def batch(mnist5k_test):
    return mnist5k_test[0][:N], mnist5k_test[1][:N]


def test_auto_and_xla_pick_the_xla_device_and_say_why(xla: torch.device) -> None:
    choice = choose_device("auto")
    assert choice.device == xla and xla.type == "xla"
    assert f"torch_xla {torch_xla.__version__}" in choose_device("xla").reason
    assert choice.reason == "auto: no CUDA; torch_xla imports and PJRT_DEVICE=CPU"


def test_fgsm_on_xla_equals_eager_cpu(pair, batch, xla) -> None:
    cpu_model, xla_model = pair
    x, y = batch
    eager = FGSM(0.1)(cpu_model, x, y)
    on_xla = FGSM(0.1)(xla_model, x.to(xla), y.to(xla)).cpu()
    assert (on_xla - eager).abs().max().item() <= 1e-4


@pytest.mark.parametrize("attack", [PGD(0.1, 0.04, 5), PGD(1.5, 0.3, 5, "l2", restarts=2)], ids=lambda a: a.tag)
def test_pgd_on_xla_gives_eager_accuracies_with_fixed_shapes(pair, batch, xla, attack: PGD) -> None:
    """Same clean and adversarial accuracy within 1/n; a second batch of the same size, fooled at other
    steps, compiles no new graph (the masked path keeps every shape fixed)."""
    cpu_model, xla_model = pair
    x, y = batch
    eager = evaluate_point(cpu_model, x, y, attack, batch_size=100)
    on_xla = evaluate_point(xla_model, x.to(xla), y.to(xla), attack, batch_size=100)
    assert abs(on_xla.clean_acc - eager.clean_acc) <= 1 / N and abs(on_xla.adv_acc - eager.adv_acc) <= 1 / N
    assert eager.adv_acc < eager.clean_acc - 0.2  # the attack does something
    compiled = metrics.metric_data("CompileTime")[0]
    other_x, other_y = x.flip(0).to(xla), y.flip(0).to(xla)
    evaluate_point(xla_model, other_x, other_y, attack, batch_size=100)
    assert metrics.metric_data("CompileTime")[0] == compiled


def test_local_sweep_on_xla_gives_eager_accuracies(pair, batch, xla) -> None:
    cpu_model, xla_model = pair
    x, y = batch
    options = dict(thresholds=3, layers=["conv2", "fc2"], batch_size=100)
    eager = local_analysis(cpu_model, (x, y), "highpass", FGSM(0.1), **options)
    on_xla = local_analysis(xla_model, (x.to(xla), y.to(xla)), "highpass", FGSM(0.1), **options)
    for layer, sweep in eager.items():
        assert on_xla[layer].thresholds == pytest.approx(sweep.thresholds, abs=1e-6)
        for key in ("clean_acc", "adv_acc"):
            assert max(abs(a - b) for a, b in zip(getattr(on_xla[layer], key), getattr(sweep, key),
                                                  strict=True)) <= 1 / N, (layer, key)
        assert on_xla[layer].removed == sweep.removed


def test_training_on_xla_writes_checkpoints_that_load_anywhere(tmp_path: Path, xla) -> None:
    """A short run on XLA follows the eager run's losses; its checkpoints hold CPU tensors and load on
    the CPU and back onto XLA (never reported as corrupt)."""
    settings = dict(arch="mnist_cnn", dataset="mnist5k", epochs=2, subset=300, batch_size=50)
    on_xla = train(TrainConfig(**settings, device="xla", models_root=str(tmp_path / "xla")))[1]
    eager = train(TrainConfig(**settings, device="cpu", models_root=str(tmp_path / "cpu")))[1]
    for a, b in zip(on_xla, eager, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-3)
        assert abs(a["test_acc"] - b["test_acc"]) <= 0.01
    path = paths.checkpoint_path("mnist_cnn", "mnist5k", 1, 2, tmp_path / "xla")
    saved = torch.load(path, weights_only=True)
    assert all(t.device.type == "cpu" for t in saved["state_dict"].values())
    model, _ = load_checkpoint(path, map_location="xla")
    assert next(model.parameters()).device == xla
