"""Local and global synaptic-filtering sweeps of one model.

A sweep sets a filter's threshold to each point of a grid and, at every point,
evaluates clean and adversarial accuracy and loss, regenerating the attack against
the filtered model, and records per image whether it was classified correctly.
Filtering happens in place on the model's own weights: one spare copy of the layers
being filtered is kept and copied back after the sweep, also when it ends by an
exception or Ctrl-C, so the weights are bitwise what they were. A local sweep computes what the
filtered layer leaves unchanged once instead of at every threshold (:mod:`robustness.filtering.reuse`), and a
point whose mask equals the point before's copies its numbers.

With ``bn_images``, every BatchNorm layer's running statistics are
re-estimated for the weights of each point (and for the unfiltered reference) before
it is evaluated; the original statistics are restored bitwise afterwards. With
``null_masks = M``, the random null model is evaluated too: at each point, ``M``
seeded random choices of as many weights as the filter removed there.
"""

from __future__ import annotations

import functools
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ..attacks import FGSM, Attack
from ..data import loader_to_tensors
from ..errors import InvalidArgument
from ..finite import check_finite_model
from ..models import filterable_layers
from ..runtime import frozen_eval, model_device, progress
from ..vocab import Grid
from .batchnorm import preserved_batchnorm
from .filters import AlphaRange, Cut, canonical_kind, check_grid, global_range, quantile_grid, value_grid, weight_range
from .points import DEFAULT_BATCH, Masks, Points, StoppingRule, distinct
from .results import Evaluation, SweepResult
from .reuse import Split, split_model, trace

EvalData = DataLoader | tuple[Tensor, Tensor]
BNImages = EvalData | Tensor  # BatchNorm images (labels, when given, are not used)


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
def _filtering(weights: list[Tensor]) -> Iterator[tuple[list[Tensor], Callable[[list[Tensor]], None]]]:
    """Keep one spare copy of ``weights`` and yield ``(originals, zero)``: ``zero(masks)`` sets the weights to
    their originals with the entries of ``masks`` set to 0, in place. Copy the originals back on exit."""
    originals = [w.detach().clone() for w in weights]

    def zero(masks: list[Tensor]) -> None:
        with torch.no_grad():
            for w, original, mask in zip(weights, originals, masks, strict=True):
                w.copy_(original).masked_fill_(mask, 0)

    try:
        yield originals, zero
    finally:
        with torch.no_grad():
            for w, original in zip(weights, originals, strict=True):
                w.copy_(original)


@dataclass(frozen=True)
class _Sweep:
    """What a sweep measures: ``configs`` (the filter's ``cuts``, then the null model's masks) of the weights
    ``originals`` of ``layer`` (``None``: all layers), with ``removed`` weights zeroed at each cut."""

    layer: str | None
    cuts: list[Cut]
    configs: list[Masks]
    removed: list[int]
    total: int
    grid: Grid
    null_masks: int

    def result(self, reference: Evaluation, evaluations: list[Evaluation]) -> SweepResult:
        """The :class:`SweepResult` of the ``evaluations`` of every config, on the images they cover."""
        n = len(evaluations[0].clean_correct)
        result = SweepResult.start(self.cuts[0].kind, self.layer, self.total, reference.prefix(n), self.grid)
        for cut, count, point in zip(self.cuts, self.removed, evaluations, strict=False):
            result.record(cut.threshold, point, count)
        if self.null_masks:
            outcomes = [(point.clean_correct, point.adv_correct) for point in evaluations[len(self.cuts):]]
            clean, adv = np.asarray(outcomes).reshape(self.null_masks, len(self.cuts), 2, -1).transpose(2, 0, 1, 3)
            result.null_clean_correct, result.null_adv_correct = clean, adv
        return result


def _looks(model: nn.Module, sweep: _Sweep, zero: Callable[[list[Tensor]], None], originals: list[Tensor],
           how: Points, reference: Evaluation, rule: StoppingRule | None) -> SweepResult:
    """Measure every config of ``sweep`` on the evaluation images, block after block of the ``rule``'s looks (all
    images at once without one), until the rule has decided; the BatchNorm statistics of each point are
    re-estimated once, for all blocks. A point whose masks equal the point before's copies its numbers."""
    desc = f"{sweep.cuts[0].kind} {sweep.layer or 'global'}"
    unique, index = distinct(sweep.configs)
    split = split_model(model, sweep.layer, how.traced) if how.traced is not None and sweep.layer is not None else None
    cut = split if isinstance(split, Split) else None
    passes: Counter = Counter(bn=0, clean=0, attack=0)
    stats = how.calibrate(model, cut, unique, zero, desc, passes)
    n = len(how.y)
    ends = [n] if rule is None else rule.ends(n)
    blocks: list[list[Evaluation]] = []
    for look, end in enumerate(ends, 1):
        blocks.append(how.evaluate(model, cut, unique, zero, stats, originals[0],
                                   slice(ends[look - 2] if look > 1 else 0, end), desc, passes))
        result = sweep.result(reference, [Evaluation.join([block[i] for block in blocks]) for i in index])
        decided = rule is not None and rule.decided(result)
        if decided:
            break
    if rule is not None:
        result.sequential = {**rule.record(), "n": n, "ends": ends, "look": look, "images": end, "decided": decided}
    result.passes = dict(passes)
    if cut is not None:
        result.reuse = {"prefix_passes": cut.prefix_passes, "fallback": None}
    elif split is not None:
        result.reuse = {"prefix_passes": 0, "fallback": split}
    return result


def _sweep(
    model: nn.Module, modules: list[nn.Module], layer: str | None, cuts: list[Cut], points: Points,
    reference: Evaluation, grid: Grid, null_masks: int, seed: int, rule: StoppingRule | None = None,
) -> SweepResult:
    """Filter ``modules`` together at each cut and measure; then the null model's ``null_masks`` masks."""
    weights = [m.weight for m in modules]
    with _filtering(weights) as (originals, zero):
        configs: list[Masks] = [functools.partial(_cut_masks, cut, originals) for cut in cuts]
        removed = [sum(int(m.sum()) for m in masks()) for masks in configs]
        ranks = functools.lru_cache(maxsize=1)(lambda index: null_ranks(originals, seed, index, layer))
        configs += [functools.partial(_rank_masks, ranks, index, r) for index in range(null_masks) for r in removed]
        sweep = _Sweep(layer, cuts, configs, removed, sum(w.numel() for w in weights), grid, null_masks)
        return _looks(model, sweep, zero, originals, points, reference, rule)


def _cut_masks(cut: Cut, originals: list[Tensor]) -> list[Tensor]:
    return [cut.mask(w) for w in originals]


def _rank_masks(ranks: Callable[[int], list[Tensor]], index: int, removed: int) -> list[Tensor]:
    return [rank < removed for rank in ranks(index)]


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


def _tensors(data: EvalData, device: torch.device, what: str = "evaluation set") -> tuple[Tensor, Tensor]:
    """A data set as two tensors on ``device`` (loaded once, then evaluated in large batches); an empty one is an
    :class:`InvalidArgument`."""
    if (len(data[0]) if isinstance(data, tuple) else len(data)) == 0:
        raise InvalidArgument(f"the {what} is empty: give at least one image")
    x, y = data if isinstance(data, tuple) else loader_to_tensors(data)
    return x.to(device), torch.as_tensor(y).to(device=device, dtype=torch.long)


def _check_thresholds(thresholds: int) -> None:
    """A sweep's number of thresholds: an integer >= 2 (its two ends)."""
    if not isinstance(thresholds, int) or isinstance(thresholds, bool) or thresholds < 2:
        raise InvalidArgument(f"thresholds is the number of points of a sweep, at least 2 (its two ends), "
                              f"got {thresholds!r}")


def _points(
    model: nn.Module, data: EvalData, attack: Attack, batch_size: int, bn_images: BNImages | None,
    null_masks: int,
) -> Points:
    """The evaluation set and the BatchNorm images on the model's device, checked."""
    if not isinstance(null_masks, int) or null_masks < 0:
        raise InvalidArgument(f"null_masks is a number of random masks >= 0 (0: no null model), got {null_masks!r}")
    check_finite_model(model)
    device = model_device(model)
    x, y = _tensors(data, device)
    images = bn_images.to(device) if isinstance(bn_images, Tensor) else (
        None if bn_images is None else _tensors(bn_images, device, "BatchNorm image set (bn_images)")[0])
    if images is not None and len(images) == 0:
        raise InvalidArgument("the BatchNorm image set (bn_images) is empty: give some training images, or None")
    return Points(x, y, attack, batch_size, images)


def measure_reference(
    model: nn.Module, data: EvalData, attack: Attack, *, batch_size: int = DEFAULT_BATCH,
    bn_images: BNImages | None = None,
) -> Evaluation:
    """The unfiltered model's :func:`evaluate_point`, measured as every point of a sweep is (BatchNorm statistics
    re-estimated on ``bn_images`` first, when given, and restored after): the ``reference`` of a sweep."""
    with frozen_eval(model), preserved_batchnorm(model):
        return _points(model, data, attack, batch_size, bn_images, 0).measure(model)


def local_analysis(
    model: nn.Module, data: EvalData, kind: str, attack: Attack, thresholds: int = 25, *,
    layers: Sequence[str] | None = None, batch_size: int = DEFAULT_BATCH, reference: Evaluation | None = None,
    bn_images: BNImages | None = None, grid: Grid = "value", null_masks: int = 0, seed: int = 0,
    reuse: bool = True, thresholds_per_pass: int = 1, sequential: StoppingRule | None = None,
) -> dict[str, SweepResult]:
    """Filter one layer at a time; one sweep per layer, keyed by module name.

    ``data`` is a DataLoader or an ``(x, y)`` pair; ``attack`` is any ``(model, x, y) -> x_adv``,
    regenerated at every threshold; ``layers`` restricts the sweep to those module names.
    ``grid="value"`` spaces the thresholds evenly over the layer's own ``[min W, max W]``,
    ``"quantile"`` over the fraction of its weights removed (:func:`filters.quantile_grid`).
    ``bn_images`` (a DataLoader, an ``(x, y)`` pair or images alone, e.g. training images) re-estimates the
    BatchNorm statistics at every threshold and for the reference (``None``: the model's own
    statistics, frozen). ``null_masks = M > 0`` adds the random null model (:func:`null_ranks`,
    seeded by ``seed``). ``reference`` is the unfiltered model's :func:`evaluate_point` (measured
    the same way), when already known.

    ``reuse`` (default) computes what the filtered layer leaves unchanged once per layer instead of once per
    threshold (:mod:`robustness.filtering.reuse`: the input-gradient pass of FGSM up to the layer, and the BatchNorm
    statistics before it), with the same numbers; ``reuse=False`` runs a full pass per threshold. A point
    whose mask equals the point before's copies its numbers. ``thresholds_per_pass = K > 1`` evaluates K
    thresholds per pass under FGSM (for GPUs; the same outcomes up to the rounding of batch-size-dependent
    kernels). A model that cannot be cut exactly before a layer (:func:`reuse.split_model` says why) gets
    full passes there.

    ``sequential`` (default ``None``: every layer on every image) evaluates the images in blocks, in their order,
    and stops a layer once its stopping rule (:class:`robustness.scoring.sequential.Sequential`, which holds the
    :class:`~robustness.scoring.scores.Scoring` whose labels it decides) says every label is decided; each point's
    BatchNorm statistics are re-estimated once, on the first block, and kept for the others. A stopped layer's
    result holds the images it evaluated (:attr:`SweepResult.sequential` says which and where it stopped).
    """
    kind, grid = canonical_kind(kind), check_grid(grid)
    _check_thresholds(thresholds)
    check_finite_model(model)
    chosen = select_layers(model, layers)
    if not isinstance(thresholds_per_pass, int) or isinstance(thresholds_per_pass, bool) or thresholds_per_pass < 1:
        raise InvalidArgument(f"thresholds_per_pass is a number of thresholds >= 1, got {thresholds_per_pass!r}")
    with frozen_eval(model), preserved_batchnorm(model):
        points = _points(model, data, attack, batch_size, bn_images, null_masks)
        if reuse and (type(attack) is FGSM or points.bn_images is not None):
            points = replace(points, traced=trace(model), per_pass=thresholds_per_pass)
        if reference is None:
            reference = points.measure(model)
        sweeps = {}
        for name, m in progress(chosen, "layers") if len(chosen) > 1 else chosen:
            cuts = value_grid(kind, *weight_range([m.weight]), thresholds) if grid == "value" else quantile_grid(
                kind, [m.weight], thresholds)
            sweeps[name] = _sweep(model, [m], name, cuts, points, reference, grid, null_masks, seed, sequential)
        return sweeps


def global_analysis(
    model: nn.Module, data: EvalData, kind: str, attack: Attack, thresholds: int = 25, *,
    alpha_range: AlphaRange = (-1.0, 1.0), batch_size: int = DEFAULT_BATCH, reference: Evaluation | None = None,
    bn_images: BNImages | None = None, grid: Grid = "value", null_masks: int = 0, seed: int = 0,
) -> SweepResult:
    """Filter every filterable layer at once with the same threshold.

    ``grid="value"``: thresholds over ``alpha_range`` (default ``(-1, 1)``, as in the original
    study; ``"auto"``: the global min/max weight). ``grid="quantile"``: at quantiles of all
    filterable weights pooled (``alpha_range`` is not used). The other arguments are
    :func:`local_analysis`'s.
    """
    kind, grid = canonical_kind(kind), check_grid(grid)
    _check_thresholds(thresholds)
    check_finite_model(model)
    modules = [m for _, m in filterable_layers(model)]
    cuts = value_grid(kind, *global_range(model, alpha_range), thresholds) if grid == "value" else quantile_grid(
        kind, [m.weight for m in modules], thresholds)
    with frozen_eval(model), preserved_batchnorm(model):
        points = _points(model, data, attack, batch_size, bn_images, null_masks)
        if reference is None:
            reference = points.measure(model)
        return _sweep(model, modules, None, cuts, points, reference, grid, null_masks, seed)
