"""Saving figures: each as a PNG (to look at) and a PDF (vector, for a paper) under ``plots/``, with a name
from :mod:`robustness.paths`, written atomically. The figures themselves are drawn in each stage's own
``figures`` module (:mod:`robustness.filtering.figures`, :mod:`robustness.scoring.figures`, ...).

Titles name the attack as a reader would (``FGSM ε = 0.089``, :func:`robustness.scoring.attack_label`),
never by its file tag; a figure with a colour scale has one, labelled, for all its panels; the label
legend is on the figure; scores show their spread over initialisations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from . import paths
from .files import atomic_path

__all__ = ["FORMATS", "draw_and_save", "save_figure"]

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
