"""A few seconds of training for the small models the sweep tests measure, the same on every machine.

A model trained for a few dozen steps is fragile in two ways that have nothing to do with what a test checks:
its weights depend on the order of floating-point sums (the thread count, the CPU's kernels), and a BatchNorm
model's running statistics after so few steps (momentum 0.1) are mostly their initial values, so its eval-mode
accuracy sits on a knife edge (ResNet-18 after 20 Adam steps: 0.575 on 40 test images with one thread, 0.275
with two). :func:`one_thread` removes the first, :func:`settle_batchnorm` the second (the same model scores
0.75-0.83 on those 40 images whatever the threads or kernels).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from robustness.data import load_dataset, loader_to_tensors, make_loader
from robustness.filtering.batchnorm import recalibrate_batchnorm


@contextmanager
def one_thread() -> Iterator[None]:
    """Run the body on one CPU thread with deterministic algorithms; restore both settings on exit."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def training_images(images: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed, seeded subset of ``images`` mnist5k training images and their labels."""
    return loader_to_tensors(make_loader(load_dataset("mnist5k", train=True), 1000, subset=images, seed=seed))


def settle_batchnorm(model: nn.Module, images: torch.Tensor) -> nn.Module:
    """``model`` with every BatchNorm layer's running statistics re-estimated on ``images`` (one thread), in eval
    mode: its eval-mode predictions then follow its weights, not the few momentum steps its statistics took."""
    with one_thread():
        recalibrate_batchnorm(model, images)
    return model.eval()


def adam_fit(model: nn.Module, images: int, lr: float, epochs: int = 1) -> nn.Module:
    """``model`` after ``epochs`` of Adam (batches of 50) on a fixed subset of ``images`` mnist5k training
    images, on one thread, its BatchNorm statistics settled on those images, in eval mode."""
    x, y = training_images(images)
    with one_thread():
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        for _ in range(epochs):
            for xb, yb in zip(x.split(50), y.split(50), strict=True):
                optimizer.zero_grad()
                F.cross_entropy(model(xb), yb).backward()
                optimizer.step()
    return settle_batchnorm(model, x)
