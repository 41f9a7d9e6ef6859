"""The defense's figures: t-SNE maps of clean, attacked and defended images."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure


def plot_tsne(sets: Mapping[str, tuple[Any, Any]], title: str, seed: int = 0) -> Figure:
    """A 2-D t-SNE map (scikit-learn) of each set of ``(images, labels)``, points coloured by class.

    Each set gets its own map, computed on the flattened pixels.
    """
    from sklearn.manifold import TSNE

    fig, axes = plt.subplots(1, len(sets), figsize=(4.2 * len(sets), 4.2), squeeze=False)
    for ax, (name, (images, labels)) in zip(axes.flat, sets.items(), strict=True):
        flat = np.asarray(images, dtype=np.float32).reshape(len(images), -1)
        perplexity = min(30.0, (len(flat) - 1) / 3)
        points = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(flat)
        scatter = ax.scatter(points[:, 0], points[:, 1], c=np.asarray(labels), cmap="tab10", s=6, vmin=-0.5, vmax=9.5)
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(scatter, ax=axes.ravel().tolist(), ticks=range(10), label="class", fraction=0.03)
    fig.suptitle(title)
    return fig
