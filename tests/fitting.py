"""A few seconds of training for the small models the sweep tests measure."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robustness.data import load_dataset, loader_to_tensors, make_loader


def adam_fit(model: nn.Module, images: int, lr: float, epochs: int = 1) -> nn.Module:
    """``model`` after ``epochs`` of Adam (batches of 50) on a fixed subset of ``images`` mnist5k training
    images, in eval mode."""
    x, y = loader_to_tensors(make_loader(load_dataset("mnist5k", train=True), 1000, subset=images, seed=1))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        for xb, yb in zip(x.split(50), y.split(50), strict=True):
            optimizer.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            optimizer.step()
    return model.eval()
