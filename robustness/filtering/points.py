"""How one point of a sweep is measured: :func:`evaluate_point` on the evaluation images, the BatchNorm statistics
re-estimated once per point (:meth:`Points.calibrate`) and the points evaluated on any block of the images
(:meth:`Points.evaluate`), with the unfiltered prefix reused where a :class:`~robustness.filtering.reuse.Split` is
given. :class:`StoppingRule` is what a sequential sweep asks of its rule.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, fx, nn

from ..attacks import FGSM, Attack
from ..runtime import progress
from .batchnorm import Statistics, batchnorm_layers, load_statistics, recalibrate_batchnorm, statistics
from .results import Evaluation, SweepResult
from .reuse import Split, Tally, fgsm_points

DEFAULT_BATCH = 1000  # images per forward pass during a sweep


def evaluate_point(
    model: nn.Module, x: Tensor, y: Tensor, attack: Attack, batch_size: int = DEFAULT_BATCH
) -> Evaluation:
    """Clean and adversarial accuracy, loss and per-image outcomes of ``model`` on ``(x, y)``: what one point
    of a sweep records.

    Unlike :func:`robustness.attacks.evaluate` it also sums the losses, takes tensors
    already on the model's device, and waits for the device once per call, not per batch.
    An attack with ``with_clean_logits`` (FGSM, PGD) shares its first forward pass
    with the clean evaluation: FGSM then costs 2 forward passes and 1 input-gradient
    backward pass per batch, no more.
    """
    shared = getattr(attack, "with_clean_logits", None)
    tally = Tally(x.device, model, x)
    for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True):
        if shared is not None:
            x_adv, clean_logits = shared(model, xb, yb)
        else:
            with torch.no_grad():
                clean_logits = model(xb)
            x_adv = attack(model, xb, yb)
        with torch.no_grad():
            tally.add(clean_logits, model(x_adv), yb)
    return tally.evaluation(len(y))


Masks = Callable[[], list[Tensor]]  # one point's masks of the filtered weights, computed when needed


class StoppingRule(Protocol):
    """When a sequential sweep may stop (:class:`robustness.scoring.sequential.Sequential` is one): the number of
    images at each planned look of ``n``, whether the sweep so far has decided every label, and a record of
    the rule for the result."""

    def ends(self, n: int) -> list[int]: ...

    def decided(self, result: SweepResult) -> bool: ...

    def record(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Points:
    """How every point of a sweep is measured: on ``(x, y)`` under ``attack``, after re-estimating the
    BatchNorm statistics on ``bn_images`` (when given). ``traced`` is the model's :func:`reuse.trace` when
    local sweeps reuse the unfiltered prefix (``None``: a full pass per point), ``per_pass`` the points
    evaluated per pass there."""

    x: Tensor
    y: Tensor
    attack: Attack
    batch_size: int
    bn_images: Tensor | None
    traced: fx.GraphModule | str | None = None
    per_pass: int = 1

    def measure(self, model: nn.Module) -> Evaluation:
        """The :func:`evaluate_point` of ``model`` as it is (its statistics re-estimated first): the reference."""
        if self.bn_images is not None:
            recalibrate_batchnorm(model, self.bn_images)
        return evaluate_point(model, self.x, self.y, self.attack, self.batch_size)

    def calibrate(self, model: nn.Module, split: Split | None, points: list[Masks],
                  zero: Callable[[list[Tensor]], None], desc: str, passes: Counter) -> list[Statistics] | None:
        """Each point's BatchNorm statistics re-estimated on ``bn_images``, once (those of the suffix's layers with a
        ``split``, whose prefix's layers are re-estimated here once for all points), or ``None`` when nothing is
        re-estimated."""
        if self.bn_images is None or not batchnorm_layers(model):
            return None
        n = len(self.bn_images)
        if split is not None:
            cache = split.capture(self.bn_images)
            passes["bn"] += n
            if not split.suffix_bn:
                return None
        stats = []
        for masks in progress(points, f"{desc}: BatchNorm"):
            zero(masks())
            if split is not None:
                split.recalibrate(cache)
                stats.append(split.statistics())
            else:
                recalibrate_batchnorm(model, self.bn_images)
                stats.append(statistics(batchnorm_layers(model)))
            passes["bn"] += n
        return stats

    def evaluate(self, model: nn.Module, split: Split | None, points: list[Masks], zero: Callable[[list[Tensor]], None],
                 stats: list[Statistics] | None, original: Tensor, images: slice, desc: str,
                 passes: Counter) -> list[Evaluation]:
        r"""The :class:`Evaluation` of each of ``points`` on the evaluation ``images`` (a slice), with the
        :meth:`calibrate`\ d statistics ``stats``."""
        x, y = self.x[images], self.y[images]
        passes["clean"] += len(y) * len(points)
        passes["attack"] += len(y) * len(points)
        if split is not None and type(self.attack) is FGSM:
            return fgsm_points(split, original, [masks()[0] for masks in points], stats, x, y, self.attack.eps,
                               self.batch_size, self.per_pass, desc)
        layers = split.suffix_bn if split is not None else batchnorm_layers(model)
        out = []
        for i, masks in enumerate(progress(points, desc)):
            zero(masks())
            if stats is not None:
                load_statistics(layers, stats[i])
            out.append(evaluate_point(model, x, y, self.attack, self.batch_size))
        return out


def distinct(points: list[Masks]) -> tuple[list[Masks], list[int]]:
    """The points whose masks differ from the point before's, and for every point the index of its distinct one."""
    distinct: list[Masks] = []
    index, previous = [], None
    for masks in points:
        current = masks()
        if previous is None or not all(torch.equal(a, b) for a, b in zip(current, previous, strict=True)):
            distinct.append(masks)
        index.append(len(distinct) - 1)
        previous = current
    return distinct, index


