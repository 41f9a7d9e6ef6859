"""The attack figures: robust accuracy against eps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure


def plot_eps_sweep(
    rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Mapping[str, Any]]], title: str
) -> Figure:
    """Robust accuracy against eps (rows of :func:`evaluation.eps_sweep`), clean accuracy dashed.

    ``rows`` is one sweep, or several keyed by their legend label (e.g. ``{"FGSM": ..., "PGD": ...}``).
    """
    sweeps = rows if isinstance(rows, Mapping) else {"adversarial": rows}
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, sweep in sweeps.items():
        ax.plot([r["eps"] for r in sweep], [r["robust_acc"] for r in sweep], "o-", ms=3, label=label)
    first = next(iter(sweeps.values()))
    ax.axhline(first[0]["clean_acc"], color="0.5", ls="--", lw=1, label="clean")
    ax.set(xlabel="eps", ylabel="accuracy", ylim=(0, 1.02), title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
