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
from ..models import arch_depths
from ..retraining import plot_retraining
from ..scoring import (
    binned_sets,
    checkpoint_scores,
    compare,
    compare_regimes,
    plot_comparison,
    plot_regimes,
    plot_score_heatmaps,
    regime_result,
    score_study,
)
from ..study import attack_tag
from .settings import FindingsSettings
from .steps import depth_config, run_retraining, scoring, study_config


def draw_figures(s: FindingsSettings, frame: pd.DataFrame) -> list[Path]:
    """Draw every figure the page shows under ``s.figures`` (kept while newer than the findings table)."""
    keep = {"root": s.figures, "keep_if_newer_than": [s.table], "formats": ("png",)}
    drawn = []
    for regime in s.regimes:
        drawn.append(draw_and_save(lambda r=regime: _scores(s, r), f"scores_{regime}", **keep))

    def regimes() -> Figure:
        loaded = [regime_result(s.arch, s.dataset, "highpass", 1, s.epochs, regime,
                                attack=attack_tag(study_config(s, regime)), root=s.models_root)
                  for regime in s.regimes]
        result = compare_regimes(*loaded, names=s.regimes, scoring=scoring(s))
        return plot_regimes(result, f"{s.arch} on {s.dataset}, Init_1 epoch {s.epochs}: high-pass scores by regime")

    drawn.append(draw_and_save(regimes, "regimes", **keep))
    for score in s.retrain_scores:
        title = f"{s.arch} on {s.dataset}: selective retraining of Init_1, layers by the {score} labels"
        drawn.append(draw_and_save(lambda x=score, t=title: plot_retraining(run_retraining(s)[x], t),
                                   f"retraining_{score}", **keep))
    drawn.append(draw_and_save(lambda: plot_probe(frame, s), "probe", **keep))
    if s.depth_arch != s.arch:
        drawn.append(draw_and_save(lambda: _depth(s), "depth", **keep))
    return drawn


def _scores(s: FindingsSettings, regime: str) -> Figure:
    config = study_config(s, regime)
    tables = {t.score: t for t in score_study(s.arch, s.dataset, kinds=("highpass",), scopes=("local",),
                                              root=config.models_root, attack=attack_tag(config), scoring=scoring(s))}
    return plot_score_heatmaps(tables, f"{s.arch} on {s.dataset}, {regime}: high-pass local scores")


def _depth(s: FindingsSettings) -> Figure:
    sets = {}
    for arch, config in ((s.arch, study_config(s, paths.STANDARD)), (s.depth_arch, depth_config(s))):
        scored = checkpoint_scores(arch, s.dataset, "highpass", 1, s.epochs, attack=attack_tag(config),
                                   root=config.models_root, scoring=scoring(s))
        sets[arch] = (scored, arch_depths(arch, s.dataset))
    return plot_comparison(compare(binned_sets(sets, s.depth_bins), scoring=scoring(s)),
                           f"high-pass scores of Init_1 on {s.depth_bins} bins of normalised depth")


def plot_probe(frame: pd.DataFrame, s: FindingsSettings) -> Figure:
    """Each layer's adversarial-accuracy drop under re-initialisation (Init_1, final epoch), both regimes, with
    its interval; the critical threshold dashed."""
    fig, ax = plt.subplots(figsize=(10, 4))
    rows = frame[(frame.section == "probe") & (frame.init == 1) & (frame.epoch == s.epochs)]
    width = 0.8 / len(s.regimes)
    for k, regime in enumerate(s.regimes):
        r = rows[rows.regime == regime]
        x = np.arange(len(r)) + (k - (len(s.regimes) - 1) / 2) * width
        ax.bar(x, r.value, width, label=regime,
               yerr=np.vstack([r.value - r.lo, r.hi - r.value]).clip(min=0), capsize=2)
    layers = rows[rows.regime == s.regimes[0]].layer
    ax.set_xticks(np.arange(len(layers)), layers, rotation=70, ha="right", rotation_mode="anchor", fontsize=7)
    ax.axhline(s.probe_threshold, color="k", ls="--", lw=0.8, label=f"critical above {s.probe_threshold:g}")
    ax.set_ylabel("adversarial accuracy drop")
    ax.set_title(f"{s.arch} on {s.dataset}, Init_1 epoch {s.epochs}: each layer reset to its epoch-0 weights")
    ax.legend(fontsize=8)
    return fig
