"""The retraining figure: accuracy of each retraining variant."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure


def plot_retraining(rows: Sequence[Mapping[str, Any]], title: str) -> Figure:
    """Accuracy of each retraining variant, grouped bars per metric (clean, FGSM, PGD), with error bars of
    one SD over runs; a dashed line marks each metric's accuracy without retraining (the ``none`` row).

    ``rows`` are :func:`robustness.retraining.summary.summarise` rows: ``variant``, ``n_layers``, ``params`` and,
    per metric ``m``, ``m`` and ``m_sd``.
    """
    metrics = [m for m in ("clean", "fgsm", "pgd") if m in rows[0]]
    colours = {"clean": "tab:blue", "fgsm": "tab:orange", "pgd": "tab:red"}
    width = 0.8 / len(metrics)
    fig, ax = plt.subplots(figsize=(2.0 + 1.1 * len(rows), 4.0))
    x = np.arange(len(rows))
    none = next((row for row in rows if row["variant"] == "none"), None)
    for i, m in enumerate(metrics):
        offset = (i - (len(metrics) - 1) / 2) * width
        drawn = ax.bar(x + offset, [row[m] for row in rows], width=width, color=colours[m], label=m,
                       yerr=[0 if math.isnan(row[f"{m}_sd"]) else row[f"{m}_sd"] for row in rows],
                       error_kw={"elinewidth": 0.8, "capsize": 2})
        ax.bar_label(drawn, fmt="%.2f", fontsize=6, padding=2)
        if none is not None:
            ax.axhline(none[m], color=colours[m], linestyle="--", linewidth=0.8)
    ax.set_xticks(x, [f"{row['variant']}\n{row['n_layers']:g} layers\n{row['params'] / 1e6:.2g}M params"
                      for row in rows], fontsize=7)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), title="dashed: no\nretraining",
              title_fontsize=7)
    ax.set_title(title, fontsize=9, wrap=True)
    fig.tight_layout()
    return fig
