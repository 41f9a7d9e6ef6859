"""Figures for papers, each saved as a PNG and a PDF under ``plots/`` with a name from :mod:`robustness.paths`.

Titles name the attack as a reader would (``FGSM ε = 0.089``, :func:`attack_label`), never by
its file tag; a figure with a colour scale has one, labelled, for all its panels; the label
legend is on the figure; scores show their spread over initialisations. The score figures
are drawn in :mod:`robustness.score_figures`; their names are importable from here too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from . import paths
from .files import atomic_path
from .results import load_results
from .score_figures import (
    LABEL_COLOURS,
    LETTERS,
    attack_label,
    attack_title,
    plot_comparison,
    plot_score_bars,
    plot_score_heatmaps,
    plot_scores,
)

if TYPE_CHECKING:
    from .results import SweepResult
    from .tables import ScoresTable



__all__ = [
    "FORMATS", "LABEL_COLOURS", "LETTERS", "attack_label", "attack_title", "draw_and_save", "plot_comparison",
    "plot_eps_sweep", "plot_global_curves", "plot_layer_grid", "plot_learning_curves", "plot_retraining",
    "plot_score_bars", "plot_score_heatmaps", "plot_scores", "plot_study", "plot_tsne", "save_figure",
]

FORMATS = ("png", "pdf")  # the PNG to look at, the PDF (vector) for a paper


def save_figure(fig: Figure, name: str, root: str | Path = paths.DEFAULT_PLOTS_ROOT) -> Path:
    """Save ``fig`` as ``plots/<name>.png`` (150 dpi) and ``plots/<name>.pdf``, each atomically; return the
    PNG's path. The figure stays open."""
    for fmt in FORMATS:
        with atomic_path(paths.plot_path(name, root, f".{fmt}")) as tmp:
            fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight")
    return paths.plot_path(name, root)


def draw_and_save(
    draw: Callable[[], Figure], name: str, root: str | Path = paths.DEFAULT_PLOTS_ROOT, *,
    keep_if_newer_than: Iterable[str | Path] | None = None,
) -> Path:
    """Draw a figure with ``draw()``, save it as ``name`` and close it; return its path.

    With ``keep_if_newer_than``, an existing figure (PNG and PDF) newer than every one of
    those files is kept and nothing is drawn (as ``make`` decides).
    """
    path = paths.plot_path(name, root)
    saved = [paths.plot_path(name, root, f".{fmt}") for fmt in FORMATS]
    if keep_if_newer_than is not None and all(p.is_file() for p in saved):
        drawn = min(p.stat().st_mtime_ns for p in saved)
        if all(Path(f).stat().st_mtime_ns <= drawn for f in keep_if_newer_than):
            return path
    fig = draw()
    save_figure(fig, name, root)
    plt.close(fig)
    return path


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


def plot_retraining(rows: Sequence[Mapping[str, Any]], title: str) -> Figure:
    """Accuracy of each retraining variant, grouped bars per metric (clean, FGSM, PGD), with error bars of
    one SD over runs; a dashed line marks each metric's accuracy without retraining (the ``none`` row).

    ``rows`` are :func:`robustness.retrain.summarise` rows: ``variant``, ``n_layers``, ``params`` and,
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


def plot_study(
    arch: str,
    dataset: str,
    tables: Sequence[ScoresTable],
    *,
    models_root: str | Path = paths.DEFAULT_MODELS_ROOT,
    plots_root: str | Path = paths.DEFAULT_PLOTS_ROOT,
    redraw: bool = True,
) -> list[Path]:
    """Save (and close) the figures of a scored study; return their paths.

    For each (filter, scope, attack) of ``tables``: its three scores (:func:`plot_scores`);
    for the newest checkpoint of each initialisation, the local per-layer grid and the
    global curves of every filter side by side. ``redraw=False`` keeps a figure that is
    newer than the result files it shows (right only while ``tables`` were scored with the
    same options as when it was drawn).
    """
    arch_name, data_name = paths.arch_dir_name(arch), paths.dataset_dir_name(dataset)
    model = f"{arch_name} on {data_name}"

    def save(draw: Callable[[], Figure], name: str, inputs: Iterable[Path]) -> Path:
        return draw_and_save(draw, name, plots_root, keep_if_newer_than=None if redraw else inputs)

    groups: dict[tuple[str, str, str], dict[str, ScoresTable]] = {}
    for table in tables:
        groups.setdefault((table.kind, table.scope, table.attack), {})[table.score] = table
    saved = []
    global_curves: dict[tuple[str, int, int], dict[str, Path]] = {}
    for (kind, scope, attack), per_score in groups.items():
        first = next(iter(per_score.values()))
        units = paths.list_sweep_results(arch, dataset, kind, scope, models_root)[attack]
        name = paths.scores_plot_name(arch, dataset, kind, scope, attack, first.baseline)
        title = f"{model}: {kind} filter, {scope}, baseline {first.baseline}"
        saved.append(save(partial(plot_scores, per_score, title), name, units.values()))
        newest = {init: (epoch, units[init, epoch]) for init, epoch in units}  # units are sorted: the last wins
        for init, (epoch, path) in newest.items():
            if scope == "global":
                global_curves.setdefault((attack, init, epoch), {})[kind] = path
                continue
            name = paths.sweep_plot_name(arch, dataset, kind, "local", init, epoch, attack)
            meta, results = load_results(path)
            title = f"{model}, Init_{init} epoch {epoch}: local {kind} filter, {attack_label(attack, meta['eps'])}"
            saved.append(save(partial(plot_layer_grid, results, title), name, [path]))
    for (attack, init, epoch), files in global_curves.items():
        name = paths.sweep_plot_name(arch, dataset, None, "global", init, epoch, attack)
        loaded = {kind: load_results(path) for kind, path in files.items()}
        eps = [meta["eps"] for meta, _ in loaded.values()]
        title = f"{model}, Init_{init} epoch {epoch}: global filters, {attack_label(attack, eps)}"
        curves = {kind: results["global"] for kind, (_, results) in loaded.items()}
        saved.append(save(partial(plot_global_curves, curves, title), name, files.values()))
    return saved


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
