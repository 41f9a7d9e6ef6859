"""Training regimes in result files: which regime a result belongs to, and whether two results can be compared.

A result file's meta records the training regime of the model it measured (``"regime"``:
``"standard"``, or a tag such as ``"pgd-linf-eps0.1"``, with its ``"regime_settings"``); a file
without the key was written for a standard model. Two sweeps are compared layer by layer only
when they measured the *same evaluation images* (the same dataset, seed, subset and held-out
count, and as many images) and their eps was calibrated to the *same target accuracy*: the
attack's strength sets the unfiltered adversarial accuracy every score is relative to, so
sweeps at different targets measure different things.

:func:`compare_regimes` compares a standard and an adversarially trained model of one architecture, swept on
the same images with eps calibrated to the same target: per layer and score, the *paired* difference (first
minus second) with an interval from a bootstrap over the images that resamples both sweeps with the same
draws; both labels and whether they agree; Spearman's ρ over layers with its interval
(:func:`robustness.scoring.compare`). A layer swept sequentially (on a prefix of the images) pairs on the images
both sweeps evaluated, its difference's interval at the looks' coverage (:func:`robustness.scoring.look_scoring`).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .. import paths
from ..errors import DataNotFoundError, InvalidArgument
from ..filtering import SweepResult, load_results
from ..models import arch_depths
from ..stats import bootstrap_counts, bootstrap_p_value, percentile_interval
from ..vocab import SCORES
from .compare import Comparison, _wanted, compare
from .scores import (
    DEFAULT_SCORING,
    Outcomes,
    Scoring,
    _draws,
    density_of,
    images_of,
    layer_scores,
    look_scoring,
    outcomes,
)

STANDARD = "standard"
# The meta keys that fix which test images a study evaluated (robustness.study.images.split_test_images).
IMAGE_KEYS: tuple[str, ...] = ("dataset", "seed", "subset", "calibration_images")


def regime_of(meta: Mapping[str, Any]) -> str:
    """The training regime a result file's ``meta`` records (``"standard"`` when it records none)."""
    return str(meta.get("regime") or STANDARD)


def check_same_images(a: Mapping[str, Any], b: Mapping[str, Any], n_a: int, n_b: int, names: tuple[str, str]) -> None:
    """Raise :class:`InvalidArgument` unless the result metas ``a`` and ``b`` (of ``n_a`` and ``n_b`` images)
    evaluated the same images."""
    differ = {key: (a.get(key), b.get(key)) for key in IMAGE_KEYS if a.get(key) != b.get(key)}
    if n_a != n_b:
        differ["images"] = (n_a, n_b)
    if differ:
        detail = ", ".join(f"{key} {x!r} vs {y!r}" for key, (x, y) in differ.items())
        raise InvalidArgument(
            f"{names[0]} and {names[1]} were not measured on the same evaluation images ({detail}): a paired "
            f"comparison needs the same images; rerun the filter command of one with the other's --seed, --subset "
            f"and --eps-images"
        )


def calibration_target(a: Mapping[str, Any], b: Mapping[str, Any], names: tuple[str, str]) -> float:
    """The target accuracy both results' eps was calibrated to; :class:`InvalidArgument` when either was not
    calibrated or the targets differ."""
    targets = (a.get("calibrate_eps"), b.get("calibrate_eps"))
    if None in targets or targets[0] != targets[1]:
        raise InvalidArgument(
            f"{names[0]} and {names[1]} are not calibrated to the same target accuracy (calibrate_eps "
            f"{targets[0]!r} vs {targets[1]!r}): scores are relative to the unfiltered adversarial accuracy, which "
            f"the attack's eps sets, so run the filter command of both with the same --calibrate-eps TARGET"
        )
    return float(targets[0])


Loaded = tuple[dict[str, Any], dict[str, SweepResult]]  # (meta, results) of one result file


@dataclass
class RegimeComparison:
    """The outcome of :func:`compare_regimes`: ``frame`` has one row per (layer, score) with both models'
    scores and labels, the paired difference ``diff`` with ``[diff_lo, diff_hi]``, its two-sided bootstrap p-value of 0
    ``p`` (:func:`robustness.stats.bootstrap_p_value`, for Benjamini–Hochberg over layers) and ``agree``;
    ``comparison`` holds label agreement and ρ per score; ``target`` is the calibration target both met."""

    names: tuple[str, str]
    frame: pd.DataFrame
    comparison: Comparison
    target: float
    n_images: int

    def header(self) -> str:
        """What the tables print above themselves: the calibration target, images, τ and coverage."""
        c = self.comparison
        return (f"{self.names[0]} minus {self.names[1]}: both attacks calibrated to adversarial accuracy "
                f"{self.target:g} on held-out images; {self.n_images} evaluation images, the same for both; "
                f"tau={c.tau:g}; {c.coverage:.0%} paired-bootstrap intervals ({c.n_boot} resamples)")

    def rows(self) -> list[dict[str, Any]]:
        """The per-layer table, formatted for printing."""
        a, b = self.names
        return [{"layer": r.layer, "d": f"{r.depth:.2f}", "score": r.score, a: f"{r.a:+.3f} {r.a_label}",
                 b: f"{r.b:+.3f} {r.b_label}", "difference": f"{r.diff:+.3f} [{r.diff_lo:+.3f}, {r.diff_hi:+.3f}]",
                 "agree": "yes" if r.agree else "no"} for r in self.frame.itertuples()]


def compare_regimes(
    a: Loaded, b: Loaded, names: tuple[str, str] = ("standard", "adversarial"), *,
    depths: Mapping[str, float] | None = None, scoring: Scoring = DEFAULT_SCORING,
) -> RegimeComparison:
    """Compare two models' local sweeps of one filter, layer by layer (see the module docstring).

    ``a`` and ``b`` are :func:`robustness.filtering.results.load_results` of their result files; they must have
    evaluated the same images and calibrated eps to the same target (else :class:`InvalidArgument`).
    ``depths`` maps layers to normalised depth (default: the metas' ``depth``, else the architecture's). Both
    are scored as ``scoring`` says, and the differences resampled with its ``n_boot``, ``seed`` and ``ci``.
    """
    (meta_a, res_a), (meta_b, res_b) = a, b
    if names[0] == names[1]:
        raise InvalidArgument(f"the two sides of a comparison need different names, got {names[0]!r} twice")
    layers = [name for name in res_a if name in res_b]
    if not layers:
        raise InvalidArgument(f"{names[0]} and {names[1]} have no swept layer in common")
    n_images = images_of(res_a[layers[0]])
    check_same_images(meta_a, meta_b, n_images, images_of(res_b[layers[0]]), names)
    target = calibration_target(meta_a, meta_b, names)
    depths = depths or meta_a.get("depth") or arch_depths(meta_a["arch"], meta_a["dataset"])
    scores_a = layer_scores({x: res_a[x] for x in layers}, scoring)
    scores_b = layer_scores({x: res_b[x] for x in layers}, scoring)
    comparison = compare(dict(zip(names, (scores_a, scores_b), strict=True)), layers=layers, scoring=scoring)
    rows = []
    for layer in layers:
        # sequential sweeps pair on the images both evaluated, at the looks' coverage
        found_a, found_b = outcomes(res_a[layer]), outcomes(res_b[layer])
        n = min(found_a.n, found_b.n)
        looks = max((r.sequential or {"looks": 1})["looks"] for r in (res_a[layer], res_b[layer]))
        at_look = look_scoring(scoring, looks)
        counts = np.concatenate([np.ones((1, n), dtype=np.int64), bootstrap_counts(n, at_look.n_boot, scoring.seed)])
        diff = (_draws_of(res_a[layer], found_a.prefix(n), scoring, counts)
                - _draws_of(res_b[layer], found_b.prefix(n), scoring, counts))
        lo, hi = percentile_interval(diff[1:], at_look.ci, undefined="widen")
        p = bootstrap_p_value(diff[1:])
        for i, score in enumerate(SCORES):
            la, lb = scores_a[layer]["labels"][score], scores_b[layer]["labels"][score]
            undefined = math.isnan(diff[0, i])
            rows.append({"layer": layer, "depth": float(depths.get(layer, np.nan)), "score": score,
                         "a": scores_a[layer][score], "a_label": la, "b": scores_b[layer][score], "b_label": lb,
                         "diff": float(diff[0, i]), "diff_lo": math.nan if undefined else float(lo[i]),
                         "diff_hi": math.nan if undefined else float(hi[i]),
                         "p": math.nan if undefined else float(p[i]), "agree": la == lb})
    return RegimeComparison(names, pd.DataFrame(rows), comparison, target, n_images)


def _draws_of(result: SweepResult, found: Outcomes, scoring: Scoring, counts: np.ndarray) -> np.ndarray:
    """The three scores of ``result``'s outcomes ``found`` under each resample of ``counts``: ``(draws, 3)``."""
    return _draws(found, density_of(result), scoring.baseline, scoring.floor, counts)


def regime_result(
    arch: str, dataset: str, kind: str, init: int, epoch: int, regime: str, *, attack: str | None = None,
    root: str | Path = paths.DEFAULT_MODELS_ROOT,
) -> Loaded:
    """The local result file of one checkpoint trained under ``regime``, read (``attack``: its attack tag,
    default the only one there, PGD re-checks left out); its meta must record that regime."""
    listed = paths.list_sweep_results(arch, dataset, kind, "local", root,
                                      regime=regime)
    found = [units[init, epoch] for tag, units in listed.items() if (init, epoch) in units and _wanted(tag, attack)]
    if len(found) != 1:
        raise DataNotFoundError(
            f"{'no' if not found else 'several'} local {kind} results of the {regime} model's Init_{init} epoch "
            f"{epoch}{' (pick one with --attack-tag)' if found else ''}: run python -m robustness filter --arch "
            f"{arch} --dataset {dataset} --regime {regime} --filter {kind} --scope local --calibrate-eps TARGET"
        )
    meta, results = load_results(found[0])
    if regime_of(meta) != regime:
        raise InvalidArgument(f"{found[0]} records the regime {regime_of(meta)!r}, not {regime!r}")
    return meta, results


def plot_regimes(result: RegimeComparison, title: str) -> Figure:
    """Both models' scores (with their intervals) against normalised depth, one panel per score; ρ and the label
    agreement in each panel's title."""
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(1, len(SCORES), figsize=(4.0 * len(SCORES), 3.4), squeeze=False)
    a, b = result.names
    frame = result.frame.sort_values("depth", kind="stable")
    for ax, score in zip(axes[0], SCORES, strict=True):
        part = frame[frame.score == score]
        for name, column, colour in ((a, "a", "tab:blue"), (b, "b", "tab:orange")):
            box = np.array([result.comparison.intervals[score][result.names.index(name)][
                result.comparison.layers.index(x)] for x in part.layer])
            y = part[column].to_numpy()
            ax.errorbar(part.depth, y, yerr=np.abs(box.T - y), fmt="o-", ms=3, lw=0.8, capsize=2, color=colour,
                        label=name)
        tau = result.comparison.tau
        ax.axhspan(-tau, tau, color="0.92", zorder=0)
        p = result.comparison.pair(score, a, b)
        ax.set(xlabel="normalised depth d (0: first layer, 1: classifier)", ylabel=f"{score} score", xlim=(-0.03, 1.03))
        ax.set_title(f"{score}: ρ = {p['rho']:+.2f} [{p['rho_lo']:+.2f}, {p['rho_hi']:+.2f}], "
                     f"labels agree {p['agreement']:.0%}", fontsize=8)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"{title}\n{textwrap.fill(result.header() + '; grey band: ±τ', 140)}", fontsize=8)
    fig.tight_layout()
    return fig
