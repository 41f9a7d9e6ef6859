"""BatchNorm running statistics after filtering: re-estimate them, and put them back exactly.

Zeroing part of a layer's weights shifts the mean and variance of what it outputs, so the
running statistics a BatchNorm layer learnt for the unfiltered weights no longer fit
(evaluated with them, accuracy collapses mid-sweep and recovers once the whole layer is
zero: a curve that measures stale statistics, not the layer). :func:`recalibrate_batchnorm`
re-estimates them for the current weights; :func:`preserved_batchnorm` restores the
originals bitwise afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import InvalidArgument

Statistics = list[tuple[Tensor, Tensor]]  # running mean and variance of each of some BatchNorm layers
BN_BATCH = 100  # images per forward pass while re-estimating the statistics
_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def batchnorm_layers(model: nn.Module) -> list[_BatchNorm]:
    """The BatchNorm layers of ``model`` that keep running statistics, in module order."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


@contextmanager
def preserved_batchnorm(model: nn.Module) -> Iterator[None]:
    """Run the body, then put back every BatchNorm layer's running statistics, batch counter, momentum and
    training flag exactly as they were (bitwise), also when the body raises."""
    saved = [
        (m, {name: getattr(m, name).detach().clone() for name in _BUFFERS if getattr(m, name) is not None},
         m.momentum, m.training)
        for m in batchnorm_layers(model)
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, buffers, momentum, training in saved:
                for name, value in buffers.items():
                    getattr(m, name).copy_(value)
                m.momentum, m.training = momentum, training


def bn_batches(images: Tensor, batch_size: int = BN_BATCH) -> list[Tensor]:
    """``images`` in batches of ``batch_size``; a last batch of one image joins the one before it (a
    BatchNorm layer in train mode cannot take the statistics of a single value per channel). Fewer than
    2 images raise :class:`InvalidArgument`."""
    if len(images) < 2:
        raise InvalidArgument(f"re-estimating BatchNorm statistics needs at least 2 images, got {len(images)}")
    batches = list(images.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


@contextmanager
def estimating(model: nn.Module, layers: list[_BatchNorm]) -> Iterator[None]:
    """Run the body with ``layers`` (BatchNorm layers of ``model``) ready to re-estimate their statistics:
    reset, cumulative average (``momentum=None``), train mode, every other module of ``model`` in eval
    mode. Momentum and every module's training flag are restored on exit; the new statistics stay."""
    modes = [(m, m.training) for m in model.modules()]
    momenta = [(m, m.momentum) for m in layers]
    try:
        model.eval()
        for m in layers:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        with torch.no_grad():
            yield
    finally:
        for m, training in modes:
            m.training = training
        for m, momentum in momenta:
            m.momentum = momentum


def recalibrate_batchnorm(model: nn.Module, images: Tensor, batch_size: int = BN_BATCH) -> None:
    """Re-estimate the running statistics of every BatchNorm layer of ``model`` on ``images`` with its current
    weights.

    Each layer's statistics are reset and re-accumulated as a cumulative average over the
    batches (``momentum=None``), ``batch_size`` images at a time, without gradients, with only
    the BatchNorm layers in train mode (dropout and the rest stay in eval). Momentum and every
    module's training flag are restored on exit; the new statistics stay, so wrap the call in
    :func:`preserved_batchnorm` to get the old ones back. Weights are never touched; a model
    without BatchNorm is left alone (no forward pass).
    """
    layers = batchnorm_layers(model)
    if not layers:
        return
    batches = bn_batches(images, batch_size)
    with estimating(model, layers):
        for batch in batches:
            model(batch)


def statistics(layers: list[_BatchNorm]) -> Statistics:
    """A copy of the running means and variances of the BatchNorm ``layers``: all that eval mode normalises with."""
    return [(m.running_mean.clone(), m.running_var.clone()) for m in layers]


def load_statistics(layers: list[_BatchNorm], stats: Statistics) -> None:
    """Put the :func:`statistics` ``stats`` back into ``layers`` (in place)."""
    with torch.no_grad():
        for m, (mean, var) in zip(layers, stats, strict=True):
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
