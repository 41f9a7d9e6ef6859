"""Whole-layer ablation: can the network do without a layer at all?

Each filterable layer in turn is zeroed entirely (its weight and, when it has one, its bias), the BatchNorm
running statistics re-estimated for that model as the sweeps do, and clean and adversarial accuracy measured with
the attack regenerated, every image's outcome kept, against the unprobed model measured the same way: the
re-initialisation probe's machinery (:func:`robustness.probes.reinit._probe`) with "set to zero" as the new
parameters. For a layer without a bias (every convolution of a ResNet) this is the last point of a high-pass or
low-pass sweep. A layer inside a residual block can lose everything and the shortcut still carries the signal;
its accuracy drop (:func:`robustness.probes.reinit.accuracy_drop`, a paired bootstrap over the images) is then
near 0, which is what a filtering score near the density baseline's ceiling means. The model comes back bitwise.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..attacks import Attack
from ..filtering import DEFAULT_BATCH, BNImages, EvalData
from .reinit import ProbeResult, _parameters, _probe


def ablate(
    model: nn.Module, loader: EvalData, attack: Attack, layers: Sequence[str] | None = None,
    calibration: BNImages | None = None,
) -> dict[str, ProbeResult]:
    """Zero each filterable layer of ``model`` (all, or those named in ``layers``) in turn, weight and bias,
    re-estimate the BatchNorm statistics on ``calibration`` (training images; ``None`` keeps them frozen) and
    measure clean and adversarial accuracy on ``loader`` (a DataLoader or an ``(x, y)`` pair), ``attack``
    regenerated against the ablated model.

    Returns ``{layer: ProbeResult}`` of kind ``"ablate"``: ``clean_acc``, ``adv_acc``, per-image ``clean_correct``,
    ``adv_correct`` and the unprobed (recalibrated) model's ``ref_*``. ``model`` comes back bitwise unchanged,
    parameters and buffers, also on an exception.
    """

    def zero(_name: str, module: nn.Module, _seed: int | None) -> None:
        with torch.no_grad():
            for parameter in _parameters(module).values():
                parameter.zero_()

    return _probe(model, loader, attack, layers, calibration, "ablate", zero, [0], DEFAULT_BATCH)
