"""The training figures: learning curves."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure


def plot_learning_curves(histories: dict[int, list[dict[str, float]]], title: str) -> Figure:
    """Train loss and test accuracy per epoch, one line per initialisation."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.5))
    for init, history in histories.items():
        epochs = [row["epoch"] for row in history]
        ax_loss.plot(epochs, [row["train_loss"] for row in history], marker="o", label=f"Init_{init}")
        ax_acc.plot(epochs, [row["test_acc"] for row in history], marker="o", label=f"Init_{init}")
    ax_loss.set(xlabel="epoch", ylabel="train loss", title=title)
    ax_acc.set(xlabel="epoch", ylabel="test accuracy", title=title)
    ax_acc.legend()
    fig.tight_layout()
    return fig
