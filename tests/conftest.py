"""Shared fixtures: small real data and small trained models, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fitting import one_thread
from torch import nn

from robustness import paths
from robustness.data import load_dataset, loader_to_tensors, make_loader
from robustness.models import load_checkpoint
from robustness.training import TrainConfig, train


@pytest.fixture(scope="session")
def mnist5k_test() -> tuple[torch.Tensor, torch.Tensor]:
    """The 1,000 mnist5k test images and labels."""
    return loader_to_tensors(make_loader(load_dataset("mnist5k", train=False), 500))


def _trained(tmp_path_factory: pytest.TempPathFactory, arch: str, epochs: int) -> nn.Module:
    root = tmp_path_factory.mktemp(f"models_{arch}")
    with one_thread():  # the same weights whatever the machine's threads
        train(TrainConfig(arch=arch, dataset="mnist5k", epochs=epochs, models_root=str(root), device="cpu"))
    model, _ = load_checkpoint(paths.checkpoint_path(arch, "mnist5k", 1, epochs, root))
    return model


@pytest.fixture(scope="session")
def trained_cnn(tmp_path_factory: pytest.TempPathFactory) -> nn.Module:
    """``mnist_cnn`` after 2 epochs on mnist5k (about 95% test accuracy), in eval mode."""
    return _trained(tmp_path_factory, "mnist_cnn", 2)


@pytest.fixture(scope="module")
def batch(
    mnist5k_test: tuple[torch.Tensor, torch.Tensor], request: pytest.FixtureRequest
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``BATCH`` mnist5k test images and labels (``BATCH`` set by the test module, default 12)."""
    n = getattr(request.module, "BATCH", 12)
    x, y = mnist5k_test
    return x[:n], y[:n]


@pytest.fixture(scope="session")
def checkpoints_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mnist_cnn checkpoints of Init_1 at epochs 0 and 1 (trained on 500 mnist5k images). Copy it before writing."""
    root = tmp_path_factory.mktemp("checkpoints")
    with one_thread():
        train(TrainConfig(arch="mnist_cnn", dataset="mnist5k", epochs=1, subset=500, models_root=str(root),
                          device="cpu"))
    return root
