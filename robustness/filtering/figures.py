"""The sweep figures: accuracies and the removed fraction against the threshold, per layer (local) or
per filter (global)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from .results import SweepResult


def _sweep_panel(ax: Axes, x: np.ndarray, result: SweepResult) -> tuple[list[Any], list[str]]:
    """Clean and adversarial accuracy against ``x``, the removed fraction as bars on a twin axis.

    Returns the legend handles and labels of both axes.
    """
    bars = ax.twinx()
    width = 0.8 * (float(np.min(np.abs(np.diff(x)))) if len(x) > 1 else 1.0)
    bars.bar(x, result.removed_fraction, width=width, color="0.85", label="removed fraction")
    bars.set_ylim(0, 1)
    bars.set_ylabel("removed fraction", fontsize=8)
    ax.set_zorder(bars.get_zorder() + 1)  # lines in front of the bars
    ax.patch.set_visible(False)
    ax.plot(x, result.clean_acc, "o-", ms=3, color="tab:blue", label="clean")
    ax.plot(x, result.adv_acc, "s-", ms=3, color="tab:red", label="adversarial")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("accuracy", fontsize=8)
    handles, labels = ax.get_legend_handles_labels()
    bar_handles, bar_labels = bars.get_legend_handles_labels()
    return handles + bar_handles, labels + bar_labels


def plot_layer_grid(results: Mapping[str, SweepResult], title: str, ncols: int = 4) -> Figure:
    """Local sweeps of one checkpoint: one subplot per layer, titled with its module name.

    Each shows clean and adversarial accuracy against the normalised threshold
    ``t̂ = 0 … 1`` and the removed-weight fraction as bars on a second axis.
    """
    ncols = max(1, min(ncols, len(results)))
    nrows = -(-len(results) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.7 * nrows), squeeze=False)
    for ax, (name, result) in zip(axes.flat, results.items(), strict=False):
        legend = _sweep_panel(ax, np.linspace(0, 1, len(result.thresholds)), result)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("normalised threshold t̂", fontsize=8)
    for ax in axes.flat[len(results):]:
        fig.delaxes(ax)
    fig.suptitle(title)
    fig.tight_layout()
    fig.legend(*legend, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=8)
    return fig


def plot_global_curves(results: Mapping[str, SweepResult], title: str) -> Figure:
    """Global sweeps, one subplot per filter: accuracies against the threshold ``α``, removed fraction as bars."""
    fig, axes = plt.subplots(1, len(results), figsize=(4.4 * len(results), 3.3), squeeze=False)
    for ax, (kind, result) in zip(axes.flat, results.items(), strict=False):
        legend = _sweep_panel(ax, np.asarray(result.thresholds, dtype=float), result)
        ax.set_title(f"{kind}, all layers at once", fontsize=10)
        ax.set_xlabel("threshold α")
    fig.suptitle(title)
    fig.tight_layout()
    fig.legend(*legend, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=8)
    return fig
