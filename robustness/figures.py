"""Saving figures: each as a PNG (to look at) and a PDF (vector, for a paper) under ``plots/``, written
atomically, with a name from the ``*_plot_name`` functions here (one per figure the package draws). The
figures themselves are drawn in each stage's own
``figures`` module (:mod:`robustness.filtering.figures`, :mod:`robustness.scoring.figures`, ...).

Titles name the attack as a reader would (``FGSM ε = 0.089``, :func:`robustness.scoring.attack_label`),
never by its file tag; a figure with a colour scale has one, labelled, for all its panels; the label
legend is on the figure; scores show their spread over initialisations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from . import paths
from .files import atomic_path
from .vocab import Scope

__all__ = [
    "FORMATS", "draw_and_save", "save_figure", "plot_path", "plot_name", "learning_curves_plot_name",
    "scores_plot_name", "sweep_plot_name", "comparison_plot_name", "sets_comparison_plot_name", "probe_plot_name",
    "regime_plot_name", "retrain_plot_name", "tsne_plot_name", "defense_plot_name",
]

FORMATS = ("png", "pdf")  # the PNG to look at, the PDF (vector) for a paper


def save_figure(fig: Figure, name: str, root: str | Path = paths.DEFAULT_PLOTS_ROOT, *,
                formats: Sequence[str] = FORMATS) -> Path:
    """Save ``fig`` as ``plots/<name>.png`` (150 dpi) and ``plots/<name>.pdf`` (or only ``formats``), each
    atomically; return the PNG's path. The figure stays open."""
    for fmt in formats:
        with atomic_path(plot_path(name, root, f".{fmt}")) as tmp:
            fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight")
    return plot_path(name, root)


def draw_and_save(
    draw: Callable[[], Figure], name: str, root: str | Path = paths.DEFAULT_PLOTS_ROOT, *,
    keep_if_newer_than: Iterable[str | Path] | None = None, formats: Sequence[str] = FORMATS,
) -> Path:
    """Draw a figure with ``draw()``, save it as ``name`` (in ``formats``) and close it; return its path.

    With ``keep_if_newer_than``, an existing figure (every format) newer than every one of
    those files is kept and nothing is drawn (as ``make`` decides).
    """
    path = plot_path(name, root)
    saved = [plot_path(name, root, f".{fmt}") for fmt in formats]
    if keep_if_newer_than is not None and all(p.is_file() for p in saved):
        drawn = min(p.stat().st_mtime_ns for p in saved)
        if all(Path(f).stat().st_mtime_ns <= drawn for f in keep_if_newer_than):
            return path
    fig = draw()
    save_figure(fig, name, root, formats=formats)
    plt.close(fig)
    return path


def plot_path(name: str, root: str | Path = paths.DEFAULT_PLOTS_ROOT, suffix: str = ".png") -> Path:
    """``plots/<name>.png`` (or another ``suffix``); the folder is created if needed."""
    path = Path(root) / f"{name}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def plot_name(*parts: object) -> str:
    """Join the parts of a figure name, e.g. ``plot_name("ResNet18", "MNIST5K", "local", "highpass")``; the
    ``*_plot_name`` functions below name each figure the package draws."""
    return "_".join(str(p) for p in parts if p is not None and p != "")


def _model_plot_name(arch: str, dataset: str, *parts: object) -> str:
    return plot_name(paths.arch_dir_name(arch), paths.dataset_dir_name(dataset), *parts)


def learning_curves_plot_name(arch: str, dataset: str, *, regime: str = paths.STANDARD) -> str:
    """``<Arch>_<DATASET>_learning_curves`` (``..._learning_curves_<tag>`` for another regime): the training
    histories of every initialisation."""
    tag = None if paths.check_regime_tag(regime) == paths.STANDARD else regime
    return _model_plot_name(arch, dataset, "learning_curves", tag)


def scores_plot_name(arch: str, dataset: str, kind: str, scope: Scope, attack: str, baseline: str) -> str:
    """``<Arch>_<DATASET>_<scope>_<filter>_scores_<attack>_<baseline>``: the filtering scores of a study."""
    return _model_plot_name(arch, dataset, scope, kind, "scores", attack, baseline)


def sweep_plot_name(arch: str, dataset: str, kind: str | None, scope: Scope, init: int, epoch: int,
                    attack: str) -> str:
    """The sweeps of one checkpoint: ``<Arch>_<DATASET>_local_<filter>_Init_<i>_<e>epochs_<attack>``, or
    ``<Arch>_<DATASET>_global_Init_<i>_<e>epochs_<attack>`` (every filter in one figure: ``kind`` unused)."""
    return _model_plot_name(arch, dataset, scope, kind if scope == "local" else None, f"Init_{init}",
                            f"{epoch}epochs", attack)


def comparison_plot_name(arch: str, dataset: str, by: str, kind: str, baseline: str) -> str:
    """``compare_<Arch>_<DATASET>_by_<by>_<filter>_<baseline>``: local scores compared across ``by``
    (``init``, ``epoch`` or ``set``)."""
    return plot_name("compare", paths.arch_dir_name(arch), paths.dataset_dir_name(dataset), f"by_{by}", kind, baseline)


def sets_comparison_plot_name(names: list[str], kind: str, baseline: str) -> str:
    """``compare_<set>_<set>..._<filter>_<baseline>``: local scores compared across named sets of results."""
    return plot_name("compare", *names, kind, baseline)


def probe_plot_name(arch: str, dataset: str, kind: str, init: int, attack: str, which: str) -> str:
    """``<Arch>_<DATASET>_probe_<kind>_Init_<i>_<attack>_<which>``: the layer x epoch heatmap of a probe's
    accuracy drop (``which``: clean or adv)."""
    return _model_plot_name(arch, dataset, "probe", kind, f"Init_{init}", attack, which)


def regime_plot_name(arch: str, dataset: str, kind: str, regimes: list[str], baseline: str) -> str:
    """``compare_<Arch>_<DATASET>_by_regime_<regime>_<regime>_<filter>_<baseline>``: two training regimes'
    scores against normalised depth."""
    return plot_name("compare", paths.arch_dir_name(arch), paths.dataset_dir_name(dataset), "by_regime", *regimes, kind,
                     baseline)


def retrain_plot_name(arch: str, dataset: str, epoch: int, *, kind: str, score: str, attack_tag: str,
                      digest: str) -> str:
    """``<Arch>_<DATASET>_retrain_<epoch>epochs_<filter>_<score>_<attack>_<digest>``: the figure of the
    comparison in :func:`robustness.paths.retrain_result_path`."""
    return _model_plot_name(arch, dataset, "retrain", f"{epoch}epochs", kind, score, attack_tag, digest)


def tsne_plot_name(arch: str, dataset: str, norm: str, label: str) -> str:
    """``<Arch>_<DATASET>_tsne_defense_<norm>_<label>``: t-SNE maps of clean, adversarial and defended images
    (``label``: the defense's label mode, ``predicted`` or ``oracle``)."""
    return _model_plot_name(arch, dataset, "tsne", f"defense_{norm}", label)


def defense_plot_name(arch: str, dataset: str, norm: str) -> str:
    """``<Arch>_<DATASET>_defense_<norm>``: the defense's evaluation."""
    return _model_plot_name(arch, dataset, "defense", norm)
