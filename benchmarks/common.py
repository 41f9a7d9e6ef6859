"""Shared set-up for the benchmarks: a trained ResNet-18 and synchronised timing."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn

from robustness import paths
from robustness.models import load_checkpoint
from robustness.training import TrainConfig, train

BENCH_EPOCHS = 2


def trained_resnet18(device: str = "cpu", models_root: str = "saved_models") -> nn.Module:
    """ResNet-18 trained on mnist5k (reused from ``saved_models/`` when already there)."""
    train(TrainConfig(arch="resnet18", dataset="mnist5k", epochs=BENCH_EPOCHS, models_root=models_root))
    model, _ = load_checkpoint(
        paths.checkpoint_path("resnet18", "mnist5k", 1, BENCH_EPOCHS, models_root), map_location=device
    )
    return model


def synchronize(device: torch.device | str) -> None:
    """Wait for queued GPU work, so that wall-clock timings are real."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: torch.device | str) -> tuple[float, object]:
    """Run ``fn`` once; return (seconds, result), synchronised on GPU."""
    synchronize(device)
    tic = time.perf_counter()
    out = fn()
    synchronize(device)
    return time.perf_counter() - tic, out
