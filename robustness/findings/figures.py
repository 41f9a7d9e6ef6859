"""The findings page's figures (PNG, beside the page): drawn by the toolkit's own plot functions from the run's
files, except the probe's, which is drawn from the findings table. Each is redrawn only when the table changed."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .. import paths
from ..figures import draw_and_save
from ..filtering import SweepResult
from ..models import arch_depths
from ..retraining import plot_retraining
from ..scoring import (
    binned_sets,
    checkpoint_scores,
    compare,
    compare_regimes,
    outcomes,
    plot_comparison,
    plot_regimes,
    plot_score_heatmaps,
    regime_result,
    score_study,
)
from ..study import attack_tag
from .collect_null import null_sweeps
from .field_report import CURVES_FIGURE, curves_figure
from .spec import Place, StudySpec
from .steps import (
    compares_depth,
    depth_config,
    probed_regimes,
    retrained_scores,
    run_retraining,
    study_config,
    study_depths,
)
from .tables import Page


def draw_figures(s: StudySpec, at: Place, frame: pd.DataFrame) -> list[Path]:
    """Draw every figure the page shows under ``at.figures`` (kept while newer than the findings table)."""
    keep = {"root": at.figures, "keep_if_newer_than": [at.table], "formats": ("png",)}
    drawn = []
    for regime in s.regimes:
        drawn.append(draw_and_save(lambda r=regime: _scores(s, at, r), f"scores_{regime}", **keep))

    def regimes() -> Figure:
        loaded = [regime_result(config.tree_arch, s.train.dataset, "highpass", 1, s.final_of(regime), regime,
                                attack=attack_tag(config), root=at.models_root)
                  for regime, config in ((r, study_config(s, at, r)) for r in s.regimes)]
        result = compare_regimes(*loaded, names=s.regimes, scoring=s.scoring)
        t = s.train
        return plot_regimes(result, f"{t.arch} on {t.dataset}, Init_1 epoch {t.epochs}: high-pass scores by regime")

    drawn.append(draw_and_save(regimes, "regimes", **keep))
    for score in retrained_scores(s):
        title = f"{s.train.arch} on {s.train.dataset}: selective retraining of Init_1, layers by the {score} labels"
        drawn.append(draw_and_save(lambda x=score, t=title: plot_retraining(run_retraining(s, at)[x], t),
                                   f"retraining_{score}", **keep))
    if probed_regimes(s):
        drawn.append(draw_and_save(lambda: plot_probe(frame, s), "probe", **keep))
    if not all(s.source(regime) for regime in s.regimes):
        drawn.append(draw_and_save(lambda: curves_figure(Page(frame)), CURVES_FIGURE, **keep))
    if compares_depth(s):
        drawn.append(draw_and_save(lambda: _depth(s, at), "depth", **keep))
    sweeps = {regime: null_sweeps(s, at, regime, 1) for regime in s.regimes}
    t, depths = s.train, study_depths(study_config(s, at, s.regimes[0]))
    drawn.append(draw_and_save(lambda: plot_raw_curves(sweeps, raw_curve_layers(depths),
                                                       f"{t.arch} on {t.dataset}, Init_1 epoch {t.epochs}"),
                               "raw_curves", **keep))
    return drawn


def raw_curve_layers(depths: dict[str, float]) -> list[str]:
    """Three layers for the raw curves: the first (the stem), the shortcut (a ``downsample`` or ``shortcut``
    layer; else any) nearest mid-depth, and the last (the classifier)."""
    layers = list(depths)
    shortcuts = [x for x in layers[1:-1] if "downsample" in x or "shortcut" in x] or layers[1:-1] or layers
    return list(dict.fromkeys([layers[0], min(shortcuts, key=lambda x: abs(depths[x] - 0.5)), layers[-1]]))


def plot_raw_curves(sweeps: dict[str, dict[str, SweepResult]], layers: list[str], title: str) -> Figure:
    """Relative clean and adversarial accuracy against the fraction of the layer's weights removed (quantile grid),
    per regime (``sweeps``: ``{regime: {layer: SweepResult}}`` with the random null's outcomes), for ``layers``:
    the filter's curve, the random null's band (the lowest to the highest of its masks) and the density line."""
    fig, axes = plt.subplots(2, len(layers), figsize=(4 * len(layers), 6.5), sharex=True, squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for column, layer in enumerate(layers):
        for row, (which, name) in enumerate((("clean", "clean"), ("adv", "adversarial"))):
            ax = axes[row, column]
            for color, (regime, found) in zip(colors, sweeps.items(), strict=False):
                if layer not in found:
                    continue
                result = found[layer]
                o = outcomes(result)
                x = np.asarray(result.removed_fraction, dtype=float)
                ref = getattr(o, f"ref_{which}").mean()
                null = getattr(o, f"null_{which}").mean(-1) / ref
                ax.fill_between(x, null.min(0), null.max(0), color=color, alpha=0.25,
                                label=f"{regime}: random null ({len(null)} masks)")
                ax.plot(x, getattr(o, which).mean(-1) / ref, "o-", color=color, ms=3, label=f"{regime}: high-pass")
            ax.plot([0, 1], [1, 0], "k:", lw=1, label="density (weights left)")
            ax.set_title(f"{layer}: {name}", fontsize=9)
            ax.set_xlabel("fraction of the layer's weights removed" if row else "")
            ax.set_ylabel(f"relative {name} accuracy" if column == 0 else "")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"{title}: raw curves against the random null")
    fig.tight_layout()
    return fig


def _scores(s: StudySpec, at: Place, regime: str) -> Figure:
    config = study_config(s, at, regime)
    tables = {t.score: t for t in score_study(config.tree_arch, s.train.dataset, kinds=("highpass",), scopes=("local",),
                                              root=config.models_root, attack=attack_tag(config), scoring=s.scoring)}
    return plot_score_heatmaps(tables, f"{s.train.arch} on {s.train.dataset}, {regime}: high-pass local scores")


def _depth(s: StudySpec, at: Place) -> Figure:
    sets = {}
    for arch, config in ((s.train.arch, study_config(s, at, paths.STANDARD)), (s.depth.arch, depth_config(s, at))):
        scored = checkpoint_scores(arch, s.train.dataset, "highpass", 1, s.train.epochs, attack=attack_tag(config),
                                   root=config.models_root, scoring=s.scoring)
        sets[arch] = (scored, arch_depths(arch, s.train.dataset))
    return plot_comparison(compare(binned_sets(sets, s.depth.bins), scoring=s.scoring),
                           f"high-pass scores of Init_1 on {s.depth.bins} bins of normalised depth")


def plot_probe(frame: pd.DataFrame, s: StudySpec) -> Figure:
    """Each layer's adversarial-accuracy drop under re-initialisation (Init_1, final epoch), both regimes, with
    its interval; the critical threshold dashed."""
    fig, ax = plt.subplots(figsize=(10, 4))
    rows = frame[(frame.section == "probe") & (frame.init == 1) & (frame.epoch == s.train.epochs)]
    regimes = probed_regimes(s)
    width = 0.8 / len(regimes)
    for k, regime in enumerate(regimes):
        r = rows[rows.regime == regime]
        x = np.arange(len(r)) + (k - (len(regimes) - 1) / 2) * width
        ax.bar(x, r.value, width, label=regime,
               yerr=np.vstack([r.value - r.lo, r.hi - r.value]).clip(min=0), capsize=2)
    layers = rows[rows.regime == regimes[0]].layer
    ax.set_xticks(np.arange(len(layers)), layers, rotation=70, ha="right", rotation_mode="anchor", fontsize=7)
    ax.axhline(s.probe_threshold, color="k", ls="--", lw=0.8, label=f"critical above {s.probe_threshold:g}")
    ax.set_ylabel("adversarial accuracy drop")
    t = s.train
    ax.set_title(f"{t.arch} on {t.dataset}, Init_1 epoch {t.epochs}: each layer reset to its epoch-0 weights")
    ax.legend(fontsize=8)
    return fig
