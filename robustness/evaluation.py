"""Accuracy of a model on a loader."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

from .runtime import frozen_eval, model_device


def accuracy(model: nn.Module, loader: DataLoader) -> float:
    """Clean top-1 accuracy of ``model`` over ``loader``, in eval mode (mode restored after)."""
    device = model_device(model)
    correct = total = 0
    with frozen_eval(model), torch.no_grad():
        for x, y in loader:
            x, y = x.to(device), torch.as_tensor(y).to(device)
            correct += (model(x).argmax(1) == y).sum().item()
            total += len(y)
    return correct / max(total, 1)
