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
from .spec import Place, StudySpec
from .steps import depth_config, run_retraining, study_config


def draw_figures(s: StudySpec, at: Place, frame: pd.DataFrame) -> list[Path]:
    """Draw every figure the page shows under ``at.figures`` (kept while newer than the findings table)."""
    keep = {"root": at.figures, "keep_if_newer_than": [at.table], "formats": ("png",)}
    drawn = []
    for regime in s.regimes:
        drawn.append(draw_and_save(lambda r=regime: _scores(s, at, r), f"scores_{regime}", **keep))

    def regimes() -> Figure:
        loaded = [regime_result(s.train.arch, s.train.dataset, "highpass", 1, s.train.epochs, regime,
                                attack=attack_tag(study_config(s, at, regime)), root=at.models_root)
                  for regime in s.regimes]
        result = compare_regimes(*loaded, names=s.regimes, scoring=s.scoring)
        t = s.train
        return plot_regimes(result, f"{t.arch} on {t.dataset}, Init_1 epoch {t.epochs}: high-pass scores by regime")

    drawn.append(draw_and_save(regimes, "regimes", **keep))
    for score in s.retrain_scores:
        title = f"{s.train.arch} on {s.train.dataset}: selective retraining of Init_1, layers by the {score} labels"
        drawn.append(draw_and_save(lambda x=score, t=title: plot_retraining(run_retraining(s, at)[x], t),
                                   f"retraining_{score}", **keep))
    drawn.append(draw_and_save(lambda: plot_probe(frame, s), "probe", **keep))
    if s.depth.arch != s.train.arch:
        drawn.append(draw_and_save(lambda: _depth(s, at), "depth", **keep))
    return drawn


def _scores(s: StudySpec, at: Place, regime: str) -> Figure:
    config = study_config(s, at, regime)
    tables = {t.score: t for t in score_study(s.train.arch, s.train.dataset, kinds=("highpass",), scopes=("local",),
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
    t = s.train
    ax.set_title(f"{t.arch} on {t.dataset}, Init_1 epoch {t.epochs}: each layer reset to its epoch-0 weights")
    ax.legend(fontsize=8)
    return fig
