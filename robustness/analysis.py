"""Local and global synaptic-filtering sweeps of one model (SPEC 4).

A sweep sets a filter's threshold to each point of a grid and, at every point,
evaluates clean and adversarial accuracy and loss, regenerating the attack against
the filtered model, and records per image whether it was classified correctly.
Filtering happens in place on the model's own weights: one spare copy of the layers
being filtered is kept and copied back after the sweep, also when it ends by an
exception or Ctrl-C, so the weights are bitwise what they were.

With ``calibration`` images, every BatchNorm layer's running statistics are
re-estimated for the weights of each point (and for the unfiltered reference) before
it is evaluated; the original statistics are restored bitwise afterwards. With
``null_masks = M``, the random null model is evaluated too: at each point, ``M``
seeded random choices of as many weights as the filter removed there.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from .batchnorm import preserved_batchnorm, recalibrate_batchnorm
from .data import loader_to_tensors
from .errors import InvalidArgument
from .filters import (
    AlphaRange,
    Cut,
    Grid,
    canonical_kind,
    check_grid,
    global_range,
    quantile_grid,
    value_grid,
    weight_range,
)
from .models import filterable_layers
from .results import Evaluation, SweepResult
from .runtime import frozen_eval, model_device, progress

Attack = Callable[[nn.Module, Tensor, Tensor], Tensor]
EvalData = DataLoader | tuple[Tensor, Tensor]
Calibration = EvalData | Tensor  # BatchNorm calibration images (labels, when given, are not used)

DEFAULT_BATCH = 1000  # images per forward pass during a sweep


def evaluate(model: nn.Module, x: Tensor, y: Tensor, attack: Attack, batch_size: int = DEFAULT_BATCH) -> Evaluation:
    """Clean and adversarial accuracy, loss and per-image outcomes of ``model`` on ``(x, y)``: what one point
    of a sweep records.

    Unlike :func:`robustness.evaluation.evaluate` it also sums the losses, takes tensors
    already on the model's device, and waits for the device once per call, not per batch.
    An attack with ``with_clean_logits`` (FGSM, PGD) shares its first forward pass
    with the clean evaluation: FGSM then costs 2 forward passes and 1 input-gradient
    backward pass per batch, no more.
    """
    shared = getattr(attack, "with_clean_logits", None)
    losses = torch.zeros(2, dtype=torch.float64, device=x.device)  # clean, adversarial loss sums
    clean_ok, adv_ok = [], []
    for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True):
        if shared is not None:
            x_adv, clean_logits = shared(model, xb, yb)
        else:
            with torch.no_grad():
                clean_logits = model(xb)
            x_adv = attack(model, xb, yb)
        with torch.no_grad():
            adv_logits = model(x_adv)
            clean_ok.append(clean_logits.argmax(1) == yb)
            adv_ok.append(adv_logits.argmax(1) == yb)
            losses += torch.stack([
                F.cross_entropy(clean_logits, yb, reduction="sum"), F.cross_entropy(adv_logits, yb, reduction="sum")
            ]).double()
    both = torch.stack([torch.cat(clean_ok), torch.cat(adv_ok)]).cpu().numpy() if clean_ok else np.zeros((2, 0), bool)
    clean_loss, adv_loss = (losses / max(len(y), 1)).tolist()
    return Evaluation(_mean(both[0]), _mean(both[1]), clean_loss, adv_loss, both[0], both[1])


def _mean(correct: np.ndarray) -> float:
    """The accuracy of per-image outcomes: exactly ``correct.mean()`` (0 for no images)."""
    return float(correct.mean()) if len(correct) else 0.0


# ---------------------------------------------------------------- the random null model


def null_ranks(weights: Sequence[Tensor], seed: int, index: int, name: str | None = None) -> list[Tensor]:
    """Mask ``index`` of the random null model of a sweep over ``weights``: a rank per weight entry.

    One seeded random permutation orders all entries of ``weights`` together; an entry's
    rank is its position in it, so ``rank < r`` selects ``r`` entries uniformly at random,
    and the selections for growing ``r`` are nested. The permutation is seeded by ``seed``,
    the mask ``index`` and the sweep's ``name`` (its layer, or ``None`` for all layers):
    the same arguments give the same ranks. Returns one int64 tensor per weight, of its
    shape and on its device.
    """
    sizes = [w.numel() for w in weights]
    key = [seed, index, zlib.crc32((name or "global").encode())]
    generator = torch.Generator().manual_seed(int(np.random.SeedSequence(key).generate_state(1)[0]))
    order = torch.randperm(sum(sizes), generator=generator)
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(len(order))
    return [r.view(w.shape).to(w.device) for r, w in zip(ranks.split(sizes), weights, strict=True)]


# ---------------------------------------------------------------- sweeps


@contextmanager
def _filtering(weights: list[Tensor]) -> Iterator[tuple[list[Tensor], Callable[[list[Tensor]], int]]]:
    """Keep one spare copy of ``weights`` and yield ``(originals, zero)``: ``zero(masks) -> removed`` sets the
    weights to their originals with the entries of ``masks`` set to 0, in place. Copy the originals back on exit."""
    originals = [w.detach().clone() for w in weights]

    def zero(masks: list[Tensor]) -> int:
        removed = torch.zeros((), dtype=torch.long, device=originals[0].device)
        with torch.no_grad():
            for w, original, mask in zip(weights, originals, masks, strict=True):
                w.copy_(original).masked_fill_(mask, 0)
                removed += mask.sum()
        return int(removed)

    try:
        yield originals, zero
    finally:
        with torch.no_grad():
            for w, original in zip(weights, originals, strict=True):
                w.copy_(original)


@dataclass(frozen=True)
class _Points:
    """How every point of a sweep is measured: on ``(x, y)`` under ``attack``, after re-estimating the
    BatchNorm statistics on ``calibration`` (when given)."""

    x: Tensor
    y: Tensor
    attack: Attack
    batch_size: int
    calibration: Tensor | None

    def measure(self, model: nn.Module) -> Evaluation:
        if self.calibration is not None:
            recalibrate_batchnorm(model, self.calibration)
        return evaluate(model, self.x, self.y, self.attack, self.batch_size)


def _sweep(
    model: nn.Module, modules: list[nn.Module], layer: str | None, cuts: list[Cut], points: _Points,
    reference: Evaluation, grid: Grid, null_masks: int, seed: int,
) -> SweepResult:
    """Filter ``modules`` together at each cut and measure; then the null model's ``null_masks`` masks."""
    weights = [m.weight for m in modules]
    result = SweepResult.start(cuts[0].kind, layer, sum(w.numel() for w in weights), reference, grid)
    name = f"{cuts[0].kind} {layer or 'global'}"
    with _filtering(weights) as (originals, zero):
        for cut in progress(cuts, name):
            removed = zero([cut.mask(w) for w in originals])
            result.record(cut.threshold, points.measure(model), removed)
        if null_masks:
            outcomes = []
            for index in progress(range(null_masks), f"{name}: random null model"):
                ranks = null_ranks(originals, seed, index, layer)
                for removed in result.removed:
                    zero([rank < removed for rank in ranks])
                    point = points.measure(model)
                    outcomes.append((point.clean_correct, point.adv_correct))
            clean, adv = np.asarray(outcomes).reshape(null_masks, len(cuts), 2, -1).transpose(2, 0, 1, 3)
            result.null_clean_correct, result.null_adv_correct = clean, adv
    return result


def select_layers(model: nn.Module, layers: Sequence[str] | None = None) -> list[tuple[str, nn.Module]]:
    """The filterable layers named in ``layers`` (default: all), in module order."""
    available = filterable_layers(model)
    if layers is None:
        return available
    names = [name for name, _ in available]
    unknown = [name for name in layers if name not in names]
    if unknown:
        raise InvalidArgument(f"unknown layer(s) {', '.join(unknown)}: the filterable layers are {', '.join(names)}")
    return [(name, m) for name, m in available if name in layers]


def _tensors(data: EvalData, device: torch.device) -> tuple[Tensor, Tensor]:
    """A data set as two tensors on ``device`` (loaded once, then evaluated in large batches)."""
    x, y = data if isinstance(data, tuple) else loader_to_tensors(data)
    return x.to(device), torch.as_tensor(y).to(device=device, dtype=torch.long)


def _points(
    model: nn.Module, data: EvalData, attack: Attack, batch_size: int, calibration: Calibration | None,
    null_masks: int,
) -> _Points:
    """The evaluation set and the BatchNorm calibration images on the model's device, checked."""
    if not isinstance(null_masks, int) or null_masks < 0:
        raise InvalidArgument(f"null_masks is a number of random masks >= 0 (0: no null model), got {null_masks!r}")
    device = model_device(model)
    x, y = _tensors(data, device)
    images = calibration.to(device) if isinstance(calibration, Tensor) else (
        None if calibration is None else _tensors(calibration, device)[0])
    if images is not None and len(images) == 0:
        raise InvalidArgument("the BatchNorm calibration set is empty: give some training images, or None")
    return _Points(x, y, attack, batch_size, images)


def measure_reference(
    model: nn.Module, data: EvalData, attack: Attack, *, batch_size: int = DEFAULT_BATCH,
    calibration: Calibration | None = None,
) -> Evaluation:
    """The unfiltered model's :func:`evaluate`, measured as every point of a sweep is (BatchNorm statistics
    re-estimated on ``calibration`` first, when given, and restored after): the ``reference`` of a sweep."""
    with frozen_eval(model), preserved_batchnorm(model):
        return _points(model, data, attack, batch_size, calibration, 0).measure(model)


def local_analysis(
    model: nn.Module, data: EvalData, kind: str, attack: Attack, thresholds: int = 25, *,
    layers: Sequence[str] | None = None, batch_size: int = DEFAULT_BATCH, reference: Evaluation | None = None,
    calibration: Calibration | None = None, grid: Grid = "value", null_masks: int = 0, seed: int = 0,
) -> dict[str, SweepResult]:
    """Filter one layer at a time; one sweep per layer, keyed by module name.

    ``data`` is a DataLoader or an ``(x, y)`` pair; ``attack`` is any ``(model, x, y) -> x_adv``,
    regenerated at every threshold; ``layers`` restricts the sweep to those module names.
    ``grid="value"`` spaces the thresholds evenly over the layer's own ``[min W, max W]``,
    ``"quantile"`` over the fraction of its weights removed (:func:`filters.quantile_grid`).
    ``calibration`` (a DataLoader, an ``(x, y)`` pair or images alone, e.g. training images) re-estimates the
    BatchNorm statistics at every threshold and for the reference (``None``: the model's own
    statistics, frozen). ``null_masks = M > 0`` adds the random null model (:func:`null_ranks`,
    seeded by ``seed``). ``reference`` is the unfiltered model's :func:`evaluate` (measured
    the same way), when already known.
    """
    kind, grid = canonical_kind(kind), check_grid(grid)
    chosen = select_layers(model, layers)
    with frozen_eval(model), preserved_batchnorm(model):
        points = _points(model, data, attack, batch_size, calibration, null_masks)
        if reference is None:
            reference = points.measure(model)
        sweeps = {}
        for name, m in progress(chosen, "layers") if len(chosen) > 1 else chosen:
            cuts = value_grid(kind, *weight_range([m.weight]), thresholds) if grid == "value" else quantile_grid(
                kind, [m.weight], thresholds)
            sweeps[name] = _sweep(model, [m], name, cuts, points, reference, grid, null_masks, seed)
        return sweeps


def global_analysis(
    model: nn.Module, data: EvalData, kind: str, attack: Attack, thresholds: int = 25, *,
    alpha_range: AlphaRange = (-1.0, 1.0), batch_size: int = DEFAULT_BATCH, reference: Evaluation | None = None,
    calibration: Calibration | None = None, grid: Grid = "value", null_masks: int = 0, seed: int = 0,
) -> SweepResult:
    """Filter every filterable layer at once with the same threshold.

    ``grid="value"``: thresholds over ``alpha_range`` (default ``(-1, 1)``, as in the original
    study; ``"auto"``: the global min/max weight). ``grid="quantile"``: at quantiles of all
    filterable weights pooled (``alpha_range`` is not used). The other arguments are
    :func:`local_analysis`'s.
    """
    kind, grid = canonical_kind(kind), check_grid(grid)
    modules = [m for _, m in filterable_layers(model)]
    cuts = value_grid(kind, *global_range(model, alpha_range), thresholds) if grid == "value" else quantile_grid(
        kind, [m.weight for m in modules], thresholds)
    with frozen_eval(model), preserved_batchnorm(model):
        points = _points(model, data, attack, batch_size, calibration, null_masks)
        if reference is None:
            reference = points.measure(model)
        return _sweep(model, modules, None, cuts, points, reference, grid, null_masks, seed)
