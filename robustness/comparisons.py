"""Comparisons the field asks for: two training regimes, architectures on a common depth axis, and two probes.

- :func:`compare_regimes`: a standard and an adversarially trained model of one architecture, swept on the
  same images with eps calibrated to the same target. Per layer and score, the *paired* difference
  (first minus second) with an interval from a bootstrap over the images that resamples both sweeps with
  the same draws; both labels and whether they agree; Spearman's ρ over layers with its interval
  (:func:`robustness.compare.compare`).
- :func:`binned_sets` + :func:`robustness.compare.compare`: architectures aligned on normalised depth
  (:mod:`robustness.depth`): each bin's score is the mean of its layers' scores, its interval the mean of
  their intervals, its label the label all its layers share (else uncertain).
- :func:`probe_agreement`: per layer the filtering label beside the re-initialisation verdict
  (:mod:`robustness.probes`), their agreement, and ρ between the filtering score and the accuracy drop.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from . import paths
from .compare import Comparison, Scores, _rank_correlation, _wanted, compare
from .depth import DEFAULT_BINS, arch_depths, bin_name
from .errors import DataNotFoundError, InvalidArgument
from .probes import DEFAULT_THRESHOLD, ProbeResult, verdicts
from .regimes import calibration_target, check_same_images, regime_kwargs, regime_of
from .results import SweepResult, load_results
from .scores import (
    CONFIDENT,
    DEFAULT_BASELINE,
    DEFAULT_BOOT,
    DEFAULT_CI,
    DEFAULT_FLOOR,
    DEFAULT_TAU,
    SCORES,
    Score,
    _draws,
    consensus,
    layer_scores,
    outcomes,
)
from .stats import bootstrap_counts, percentile_interval

Loaded = tuple[dict[str, Any], dict[str, SweepResult]]  # (meta, results) of one result file


@dataclass
class RegimeComparison:
    """The outcome of :func:`compare_regimes`: ``frame`` has one row per (layer, score) with both models'
    scores and labels, the paired difference ``diff`` with ``[diff_lo, diff_hi]`` and ``agree``;
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
    depths: Mapping[str, float] | None = None, baseline: str = DEFAULT_BASELINE, tau: float = DEFAULT_TAU,
    floor: float = DEFAULT_FLOOR, ci: float = DEFAULT_CI, n_boot: int = DEFAULT_BOOT, seed: int = 0,
) -> RegimeComparison:
    """Compare two models' local sweeps of one filter, layer by layer (see the module docstring).

    ``a`` and ``b`` are :func:`robustness.results.load_results` of their result files; they must have
    evaluated the same images and calibrated eps to the same target (else :class:`InvalidArgument`).
    ``depths`` maps layers to normalised depth (default: the metas' ``depth``, else the architecture's).
    """
    (meta_a, res_a), (meta_b, res_b) = a, b
    if names[0] == names[1]:
        raise InvalidArgument(f"the two sides of a comparison need different names, got {names[0]!r} twice")
    layers = [name for name in res_a if name in res_b]
    if not layers:
        raise InvalidArgument(f"{names[0]} and {names[1]} have no swept layer in common")
    found_a, found_b = outcomes(res_a[layers[0]]), outcomes(res_b[layers[0]])
    check_same_images(meta_a, meta_b, found_a.n, found_b.n, names)
    target = calibration_target(meta_a, meta_b, names)
    depths = depths or meta_a.get("depth") or arch_depths(meta_a["arch"], meta_a["dataset"])
    options = {"baseline": baseline, "tau": tau, "floor": floor, "ci": ci, "n_boot": n_boot, "seed": seed}
    scores_a = layer_scores({x: res_a[x] for x in layers}, **options)
    scores_b = layer_scores({x: res_b[x] for x in layers}, **options)
    comparison = compare(dict(zip(names, (scores_a, scores_b), strict=True)), layers=layers, ci=ci, n_boot=n_boot,
                         seed=seed)
    counts = np.concatenate([np.ones((1, found_a.n), dtype=np.int64), bootstrap_counts(found_a.n, n_boot, seed)])
    rows = []
    for layer in layers:
        diff = _draws_of(res_a[layer], baseline, floor, counts) - _draws_of(res_b[layer], baseline, floor, counts)
        lo, hi = percentile_interval(diff[1:], ci, undefined="widen")
        for i, score in enumerate(SCORES):
            la, lb = scores_a[layer]["labels"][score], scores_b[layer]["labels"][score]
            undefined = math.isnan(diff[0, i])
            rows.append({"layer": layer, "depth": float(depths.get(layer, np.nan)), "score": score,
                         "a": scores_a[layer][score], "a_label": la, "b": scores_b[layer][score], "b_label": lb,
                         "diff": float(diff[0, i]), "diff_lo": math.nan if undefined else float(lo[i]),
                         "diff_hi": math.nan if undefined else float(hi[i]), "agree": la == lb})
    return RegimeComparison(names, pd.DataFrame(rows), comparison, target, found_a.n)


def _draws_of(result: SweepResult, baseline: str, floor: float, counts: np.ndarray) -> np.ndarray:
    """The three scores of ``result`` under each resample of ``counts``: ``(draws, 3)``."""
    density = 1.0 - np.asarray(result.removed_fraction, dtype=float)
    return _draws(outcomes(result), density, baseline, floor, counts)  # type: ignore[arg-type]


def regime_result(
    arch: str, dataset: str, kind: str, init: int, epoch: int, regime: str, *, attack: str | None = None,
    root: str | Path = paths.DEFAULT_MODELS_ROOT,
) -> Loaded:
    """The local result file of one checkpoint trained under ``regime``, read (``attack``: its attack tag,
    default the only one there, PGD re-checks left out); its meta must record that regime."""
    listed = paths.list_sweep_results(arch, dataset, kind, "local", root,
                                      **regime_kwargs(paths.list_sweep_results, regime))
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


# ---------------------------------------------------------------- depth bins


def binned_sets(
    sets: Mapping[str, tuple[Scores, Mapping[str, float]]], bins: int = DEFAULT_BINS
) -> dict[str, Scores]:
    """Each set's layer scores pooled into depth bins: ``{name: {bin name: scores dict}}`` for
    :func:`robustness.compare.compare`. ``sets[name]`` is ``(layer scores, {layer: depth})``; a bin's score is
    the mean of its layers' scores (NaN ones left out), its interval the mean of their intervals, its label the
    one all its layers share (else ``uncertain``). Bins are ``bins`` equal intervals of ``[0, 1]``."""
    out: dict[str, Scores] = {}
    for name, (scored, depths) in sets.items():
        missing = [layer for layer in scored if layer not in depths]
        if missing:
            raise InvalidArgument(f"set {name!r}: no depth for layer(s) {', '.join(missing)}")
        groups: dict[str, list[Mapping[str, Any]]] = {}
        for layer, s in sorted(scored.items(), key=lambda item: depths[item[0]]):
            groups.setdefault(bin_name(depths[layer], bins), []).append(s)
        out[name] = {label: _pooled(members) for label, members in groups.items()}
    return out


def _pooled(members: list[Mapping[str, Any]]) -> dict[str, Any]:
    def mean(values: list[float]) -> float:
        finite = [v for v in values if math.isfinite(v)]
        return float(np.mean(finite)) if finite else math.nan

    return {**{score: mean([m[score] for m in members]) for score in SCORES},
            "ci": {score: (mean([m["ci"][score][0] for m in members]), mean([m["ci"][score][1] for m in members]))
                   for score in SCORES},
            "labels": {score: consensus([m["labels"][score] for m in members]) for score in SCORES},
            "tau": members[0]["tau"], "layers": len(members)}


# ---------------------------------------------------------------- probe agreement

MATCH: dict[str, str] = {"fragile": "critical", "robust": "robust", "antifragile": "robust"}


def probe_agreement(
    scores: Scores, probes: Mapping[str, ProbeResult], *, score: Score = "adversarial",
    which: Literal["clean", "adv"] = "adv", threshold: float = DEFAULT_THRESHOLD,
    depths: Mapping[str, float] | None = None, ci: float = DEFAULT_CI, n_boot: int = DEFAULT_BOOT, seed: int = 0,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per layer, the filtering label of ``score`` beside the probe's verdict on the ``which`` accuracy drop
    (critical when its interval lies wholly above ``threshold``), and whether they agree: fragile goes with
    critical, robust and antifragile with robust; a layer either side leaves uncertain has no agreement (NA).

    Returns ``(frame, summary)``: ``frame`` one row per layer (layer, depth, score, its interval and label, drop,
    its interval and verdict, agree); ``summary`` the agreement over the layers both call confidently, their
    number, Spearman's ρ between filtering score and drop over all layers with its interval over layers
    (a fragile layer has a negative score and a large drop, so agreement shows as ρ < 0), and the threshold."""
    layers = [name for name in scores if name in probes]
    if not layers:
        raise InvalidArgument("the filtering scores and the probe share no layer")
    verdict = verdicts({x: probes[x] for x in layers}, which, threshold, ci=ci, n_boot=n_boot, seed=seed)
    rows = []
    for x in layers:
        label, v = scores[x]["labels"][score], verdict[x]
        both = label in CONFIDENT and v["verdict"] in ("critical", "robust")
        rows.append({"layer": x, "depth": float((depths or {}).get(x, np.nan)), "score": scores[x][score],
                     "score_lo": scores[x]["ci"][score][0], "score_hi": scores[x]["ci"][score][1], "label": label,
                     "drop": v["drop"], "drop_lo": v["lo"], "drop_hi": v["hi"], "verdict": v["verdict"],
                     "agree": (MATCH[label] == v["verdict"]) if both else None})
    frame = pd.DataFrame(rows)
    decided = [r["agree"] for r in rows if r["agree"] is not None]
    rho, lo, hi = _rank_correlation(frame["score"].to_numpy(float), frame["drop"].to_numpy(float), ci, n_boot, seed)
    return frame, {"agreement": float(np.mean(decided)) if decided else math.nan, "n_confident": len(decided),
                   "n_layers": len(rows), "rho": rho, "rho_lo": lo, "rho_hi": hi, "threshold": threshold,
                   "score": score, "which": which, "coverage": ci}
