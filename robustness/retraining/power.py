"""Can a retraining comparison tell the chosen layers from random ones? Overlap, stratified random sets, and an
interval that resamples seeds and random sets as well as images.

A chosen set of ``k`` layers is compared with random sets of ``k`` layers. When the two share most of their
layers, retraining them trains nearly the same network and no outcome can separate them: with 19 of 21 layers
chosen, every random set of 19 shares at least 17. :func:`overlap_power` reports the share of the chosen layers
each random set contains and its mean; above :data:`MAX_OVERLAP` on average the comparison is *untestable*.
:func:`expected_overlap` gives that share before drawing anything, and :func:`largest_testable_k` the largest top-k that
stays below it.

Random sets are drawn *stratified by stage* (:func:`stratified_random_sets`): as many layers from each stage as
the chosen set has there (a ResNet's stem, ``layer1`` … ``layer4`` and head, from the module names; other
architectures by depth bins), so a random set differs from the chosen one in which layers, not in where they sit.

:func:`retraining_difference` is the interval of "chosen minus random": a two-stage bootstrap whose draws resample
the seeds (paired: a seed orders the training batches of every variant alike), the random sets and the test
images (paired across every run), turned into an interval by :func:`robustness.stats.cluster_interval` with the
seeds or sets, whichever are fewer, as its clusters. :func:`power_variants` plans a comparison by ranking (top-k
and bottom-k, each with its own stratified random sets) and :func:`runs_difference` reads the difference off
:func:`robustness.retraining.comparison.retrain_runs`' outcomes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from ..errors import InvalidArgument
from ..models import DEFAULT_BINS, bin_name
from ..stats import bootstrap_counts, cluster_interval, resampled_mean
from .summary import RunOutcomes

MAX_OVERLAP = 0.5  # a comparison whose random sets share more than this of the chosen layers is untestable
_STAGE = re.compile(r"^layer(\d+)\.")


def layer_stages(layers: Sequence[str], depths: Mapping[str, float] | None = None,
                 bins: int = DEFAULT_BINS) -> dict[str, str]:
    """Each layer's stage, in the order given (model order): for a ResNet, ``stem`` before ``layer1``,
    ``stage N`` for ``layerN.…`` and ``head`` after the last stage; otherwise the depth bin of ``depths``."""
    if any(_STAGE.match(x) for x in layers):
        stages, seen = {}, False
        for x in layers:
            found = _STAGE.match(x)
            seen = seen or bool(found)
            stages[x] = f"stage {found.group(1)}" if found else ("head" if seen else "stem")
        return stages
    if depths is None or any(x not in depths for x in layers):
        raise InvalidArgument("the layers' names carry no ResNet stage (layerN.…): give each layer's normalised "
                              "depth (robustness.models.arch_depths) to stratify by depth bins")
    return {x: bin_name(depths[x], bins) for x in layers}


def _strata(chosen: Sequence[str], stages: Mapping[str, str]) -> dict[str, tuple[list[str], int]]:
    unknown = [x for x in chosen if x not in stages]
    if unknown or len(set(chosen)) != len(chosen):
        raise InvalidArgument(f"the chosen layers must be distinct layers of the model; unknown: {unknown}")
    members: dict[str, list[str]] = {}
    for x, stage in stages.items():
        members.setdefault(stage, []).append(x)
    return {stage: (names, sum(stages[x] == stage for x in chosen)) for stage, names in members.items()}


def stratified_random_sets(chosen: Sequence[str], stages: Mapping[str, str], count: int,
                           seed: int = 0) -> list[list[str]]:
    """``count`` random sets with as many layers from each stage as ``chosen`` has there, drawn independently and
    uniformly within each stage (seeded; a set may equal ``chosen`` or another set). Layers in ``stages``' order."""
    if count < 0:
        raise InvalidArgument(f"count is a number of random sets >= 0, got {count}")
    strata = _strata(chosen, stages)
    rng = np.random.default_rng(seed)
    order = {x: i for i, x in enumerate(stages)}
    sets = []
    for _ in range(count):
        drawn = [x for names, k in strata.values() for x in rng.choice(names, k, replace=False).tolist()]
        sets.append(sorted(drawn, key=order.__getitem__))
    return sets


def expected_overlap(chosen: Sequence[str], stages: Mapping[str, str], stratified: bool = True) -> float:
    """The expected share of ``chosen`` that a random set of the same size contains: ``Σ k_s² / n_s / k`` over the
    stages when stratified (``k_s`` chosen of the stage's ``n_s`` layers), ``k / n`` when not; NaN for none."""
    strata = _strata(chosen, stages)
    if not chosen:
        return math.nan
    if not stratified:
        return len(chosen) / len(stages)
    return sum(k * k / len(names) for names, k in strata.values()) / len(chosen)


def largest_testable_k(ranked: Sequence[str], stages: Mapping[str, str], limit: float = MAX_OVERLAP) -> int:
    """The largest ``k`` such that the top ``k`` of ``ranked`` (best first) overlap a stratified random set of ``k``
    by at most ``limit`` on average (:func:`expected_overlap`); 0 when none does."""
    fits = [k for k in range(1, len(ranked) + 1) if expected_overlap(ranked[:k], stages) <= limit]
    return max(fits, default=0)


def overlap_power(chosen: Sequence[str], random_sets: Sequence[Sequence[str]]) -> dict[str, Any]:
    """The share of ``chosen`` in each random set, their mean, and whether the comparison can tell them apart:
    ``{"per_set": [...], "mean": ..., "testable": mean <= MAX_OVERLAP, "max_overlap": MAX_OVERLAP}``."""
    if not chosen or not random_sets:
        raise InvalidArgument("the overlap needs a chosen layer set and at least one random set")
    mine = set(chosen)
    per_set = [len(mine & set(s)) / len(mine) for s in random_sets]
    mean = float(np.mean(per_set))
    return {"per_set": per_set, "mean": mean, "testable": mean <= MAX_OVERLAP, "max_overlap": MAX_OVERLAP}


def retraining_difference(
    chosen: np.ndarray, random: np.ndarray, *, ci: float = 0.95, n_boot: int = 1000, seed: int = 0,
    method: Literal["t", "percentile"] = "t",
) -> dict[str, float]:
    """Mean accuracy of the chosen variant minus that of the random sets, with an interval over seeds, sets and
    images (see the module docstring).

    ``chosen``: per seed and test image, correct or not, ``(S, n)``; ``random``: ``(R, S, n)``, run ``s`` of every
    set with seed ``s``. Returns ``{"diff", "lo", "hi", "seeds", "sets", "clusters"}``.
    """
    chosen, random = np.asarray(chosen, dtype=float), np.asarray(random, dtype=float)
    if chosen.ndim != 2 or random.ndim != 3 or random.shape[1:] != chosen.shape:
        raise InvalidArgument(f"need chosen outcomes (seeds, images) and random ones (sets, seeds, images) with the "
                              f"same seeds and images, got {chosen.shape} and {random.shape}")
    (seeds, n), sets = chosen.shape, len(random)
    rng = np.random.default_rng(seed)
    counts = bootstrap_counts(n, n_boot, int(rng.integers(2**31)))
    seed_pick, set_pick = rng.integers(0, seeds, (n_boot, seeds)), rng.integers(0, sets, (n_boot, sets))
    mine = resampled_mean(chosen, counts)  # (B, S)
    theirs = resampled_mean(random, counts)  # (B, R, S)
    rows = np.arange(n_boot)[:, None]
    draws = (np.take_along_axis(mine, seed_pick, 1).mean(1)
             - theirs[rows[..., None], set_pick[..., None], seed_pick[:, None, :]].mean((1, 2)))
    point = chosen.mean() - random.mean()
    clusters = min(seeds, sets)
    lo, hi = cluster_interval(np.asarray(point), draws, clusters, ci, method)
    return {"diff": float(point), "lo": float(lo), "hi": float(hi), "seeds": seeds, "sets": sets,
            "clusters": clusters}


def power_variants(ranked: Sequence[str], stages: Mapping[str, str], k: int, count: int,
                   seed: int = 0) -> dict[str, list[str]]:
    """The variants of a comparison by ranking (for :func:`robustness.retraining.comparison.retrain_runs`): ``top``
    (the first ``k`` of ``ranked``), ``bottom`` (the last ``k``), and ``count`` stratified random sets for each,
    ``top random-1`` … and ``bottom random-1`` …, drawn with seeds ``seed`` and ``seed + 1``."""
    if not 1 <= k <= len(ranked):
        raise InvalidArgument(f"k is a number of layers from 1 to {len(ranked)}, got {k}")
    order = {x: i for i, x in enumerate(stages)}
    variants: dict[str, list[str]] = {}
    for offset, (name, chosen) in enumerate((("top", ranked[:k]), ("bottom", ranked[-k:]))):
        variants[name] = sorted(chosen, key=order.__getitem__)
        for i, drawn in enumerate(stratified_random_sets(chosen, stages, count, seed + offset), start=1):
            variants[f"{name} random-{i}"] = drawn
    return variants


def runs_difference(
    runs: Mapping[str, Sequence[RunOutcomes]], chosen: str, randoms: Sequence[str], metric: str, **bootstrap: Any,
) -> dict[str, float]:
    """:func:`retraining_difference` of variant ``chosen`` against the variants ``randoms`` on ``metric`` (``clean``,
    ``fgsm``, ``pgd``), from :func:`robustness.retraining.comparison.retrain_runs`' outcomes (one per seed, in the
    same seed order for every variant); ``bootstrap`` takes ``ci``, ``n_boot``, ``seed`` and ``method``."""
    missing = [v for v in (chosen, *randoms) if v not in runs]
    if missing or not randoms:
        raise InvalidArgument(f"no runs of variant(s) {missing or 'random'}: retrain them first")
    mine = np.stack([run[metric] for run in runs[chosen]])
    theirs = np.stack([np.stack([run[metric] for run in runs[v]]) for v in randoms])
    return retraining_difference(mine, theirs, **bootstrap)
