"""Straightforward reference computations that the tests hold the package's faster ones against."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def recalibrate_by_hand(net: nn.Module, images: Tensor) -> nn.Module:
    """``net`` with every BatchNorm layer's running statistics reset and re-accumulated as a cumulative average
    over ``images`` in batches of 100 (train mode, no gradients); returned in eval mode."""
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    net.train()
    with torch.no_grad():
        for batch in images.split(100):
            net(batch)
    return net.eval()


def outcomes_by_hand(net: nn.Module, x: Tensor, y: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Per image, whether ``net`` (in eval mode) classifies ``x`` correctly, clean and after FGSM at ``eps`` written
    out: ``x + eps · sign(∇ₓ cross-entropy)``, clamped to ``[0, 1]``."""
    x = x.clone().requires_grad_(True)
    logits = net(x)
    (grad,) = torch.autograd.grad(nn.functional.cross_entropy(logits, y), x)
    x_adv = (x + eps * grad.sign()).clamp(0, 1).detach()
    with torch.no_grad():
        return logits.argmax(1) == y, net(x_adv).argmax(1) == y
