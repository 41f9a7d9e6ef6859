"""Normalised depth: where each filterable layer sits in a network, as a number in ``[0, 1]``.

Layer names differ between architectures (``layer3.1.conv2`` in a ResNet, ``features.7.expand3x3``
in a SqueezeNet), so comparing them needs a common axis. A layer's depth ``d`` is its position in
the order the layers *execute* in a forward pass, scaled to ``[0, 1]``: the first filterable
layer that runs has ``d = 0``, the last (the classifier) ``d = 1``, and the ``L`` layers are
evenly spaced (``d = rank / (L - 1)``). Execution order is recorded with forward hooks on one
forward pass of a dummy input, not read from the order the modules are defined in (which can
differ: a module defined early may run late). A layer that runs more than once counts at its
first run; a filterable layer that never runs has no depth.

Architectures are aligned on depth *bins*: ``bins`` equal intervals of ``[0, 1]``
(:func:`depth_bins`), each named by its interval, e.g. ``d 0.00-0.20``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import Tensor, nn

from ..data import dataset_info
from ..errors import InvalidArgument
from .registry import build_model, filterable_layers

DEFAULT_BINS = 5


def execution_order(model: nn.Module, example: Tensor) -> list[str]:
    """The names of ``model``'s filterable layers in the order they first run on ``example``.

    ``example`` is one input batch (a meta-device tensor works for a model on the meta device:
    nothing is computed). The model's mode is restored; hooks are always removed.
    """
    layers = filterable_layers(model)
    order: list[str] = []
    handles = [m.register_forward_hook(lambda _m, _i, _o, name=name: order.append(name)) for name, m in layers]
    training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example)
    finally:
        model.train(training)
        for handle in handles:
            handle.remove()
    return list(dict.fromkeys(order))


def depths_from_order(order: list[str]) -> dict[str, float]:
    """``{layer: rank / (L - 1)}`` for layers in execution order (a single layer gets 0)."""
    if not order:
        raise InvalidArgument("no filterable layer ran in the forward pass: the model has no Conv2d or Linear layer")
    last = max(len(order) - 1, 1)
    return {name: i / last for i, name in enumerate(order)}


def layer_depths(model: nn.Module, example: Tensor) -> dict[str, float]:
    """The normalised depth ``d`` of every filterable layer of ``model`` that runs on ``example``, in execution
    order (:func:`execution_order`): 0 for the first, 1 for the classifier."""
    return depths_from_order(execution_order(model, example))


@lru_cache(maxsize=32)
def _arch_depths(arch: str, dataset: str) -> tuple[tuple[str, float], ...]:
    with torch.device("meta"):
        model = build_model(arch, dataset)
        example = torch.empty(2, *dataset_info(dataset).shape)
    return tuple(layer_depths(model, example).items())


def arch_depths(arch: str, dataset: str) -> dict[str, float]:
    """:func:`layer_depths` of architecture ``arch`` for ``dataset``, built and run on the meta device (no
    weights are made, nothing is computed; cached)."""
    return dict(_arch_depths(arch, dataset))


def model_depths(model: nn.Module, shape: tuple[int, ...]) -> dict[str, float]:
    """:func:`layer_depths` of a built ``model`` on one dummy image of ``shape`` (``(C, H, W)``), on the
    model's device; what a model from elsewhere, which cannot be rebuilt on the meta device, gets."""
    parameter = next(iter(model.parameters()), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    return layer_depths(model, torch.zeros(1, *shape, device=device))


def depth_bins(bins: int = DEFAULT_BINS) -> np.ndarray:
    """The ``bins + 1`` edges of ``bins`` equal intervals of ``[0, 1]``."""
    if not isinstance(bins, int) or isinstance(bins, bool) or bins < 1:
        raise InvalidArgument(f"depth bins is a whole number >= 1, got {bins!r}")
    return np.linspace(0.0, 1.0, bins + 1)


def bin_name(depth: float, bins: int = DEFAULT_BINS) -> str:
    """The name of the bin ``depth`` falls in, e.g. ``d 0.20-0.40``; intervals are closed on the left, the last
    one also on the right (so ``d = 1``, the classifier, is in the last bin)."""
    if not 0.0 <= depth <= 1.0:
        raise InvalidArgument(f"a normalised depth is in [0, 1], got {depth}")
    edges = depth_bins(bins)
    i = min(int(np.searchsorted(edges, depth, side="right")) - 1, bins - 1)
    return f"d {edges[i]:.2f}-{edges[i + 1]:.2f}"
