"""The figures of filtering scores: per layer and epoch (heatmaps), at one epoch (bars), and compared
across initialisations, epochs or sets; saved by :func:`robustness.figures.save_figure`.

Attacks are named as a reader would (:func:`attack_label`), the whole figure shares one
labelled colour scale, the label legend is on the figure, and every score shows its spread
over initialisations (agreement counts and interval widths, or each initialisation's value
with its interval).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ..paths import RECHECK
from ..vocab import SCORES, Label

if TYPE_CHECKING:
    from .compare import Comparison
    from .tables import ScoresTable


LETTERS = {"fragile": "F", "robust": "R", "antifragile": "A", "uncertain": "?", "undefined": "–"}


def attack_label(tag: str, eps: float | Iterable[float] | None = None) -> str:
    """An attack's file tag as a reader would write it: ``fgsm_eps0.0893555`` -> ``FGSM ε = 0.089``.

    ``eps`` (one value, or several, shown as a range) replaces the tag's own; a calibrated tag
    (``fgsm_acc0.5``) without ``eps`` reads ``FGSM, ε for 50% accuracy``; a PGD re-check
    (``pgd-linf_k20_r2_recheck_of_fgsm_acc0.5``) reads ``PGD-L∞ re-check of FGSM ...``.
    """
    tag, _, rechecked = tag.partition(RECHECK)
    parts = tag.split("_")
    name = parts[0].upper().replace("-LINF", "-L∞")
    values = sorted({float(eps)} if isinstance(eps, (int, float)) else set(eps or ()))
    values = [v for v in values if math.isfinite(v)]
    if not values and (found := re.fullmatch(r"eps(.+)", next((p for p in parts if p.startswith("eps")), ""))):
        values = [float(found.group(1))]
    if values:
        label = f"{name} ε = {values[0]:.2g}" + (f"–{values[-1]:.2g}" if len(values) > 1 else "")
    elif target := next((p[3:] for p in parts if p.startswith("acc")), None):
        label = f"{name}, ε for {float(target):.0%} accuracy"
    else:
        label = name
    return f"{label} re-check of {attack_label(rechecked)}" if rechecked else label


def attack_title(table: ScoresTable) -> str:
    """The attack of a scores table with its eps, e.g. ``FGSM ε = 0.089`` (a range when checkpoints differ)."""
    return attack_label(table.attack, [info["eps"] for info in table.checkpoints.values()])


def plot_score_heatmaps(tables: Mapping[str, ScoresTable], title: str) -> Figure:
    """Heatmaps of scores over layers × epochs, one panel per table (e.g. the three scores of one filter).

    Colour: the mean over initialisations on one diverging scale for the whole figure (red fragile, blue
    antifragile, grey undefined), ``±τ`` marked on the colour bar. Each cell shows its consensus label's
    letter (F, R, A, ``?`` uncertain, hatched; – undefined), how many initialisations give the most common
    label, and the mean half-width of their intervals; the legend is on the figure.
    """
    first = next(iter(tables.values()))
    n_epochs = max(len(t.epochs) for t in tables.values())
    n_layers = max(len(t.layers) for t in tables.values())
    size = (1.8 + (1.2 + 0.8 * n_epochs) * len(tables), 1.8 + 0.36 * n_layers)
    fig, axes = plt.subplots(1, len(tables), figsize=size, squeeze=False, sharey=True, layout="constrained")
    finite = np.concatenate([np.abs(t.values[np.isfinite(t.values)]) for t in tables.values()])
    limit = max(float(finite.max()) if finite.size else 0.0, 2 * first.scoring.tau, 1e-3)
    cmap = plt.get_cmap("RdBu").with_extremes(bad="0.8")
    for ax, table in zip(axes.flat, tables.values(), strict=False):
        image = ax.imshow(np.ma.masked_invalid(table.values), cmap=cmap, vmin=-limit, vmax=limit, aspect="auto")
        with np.errstate(invalid="ignore"):
            half = (table.hi - table.lo) / 2
        for (i, j), value in np.ndenumerate(table.values):
            lab, (modal, count) = table.labels[i][j], table.agreement[i][j]
            n = len(table.inits)
            agree = f" {count}/{n}" if lab == modal else f" {LETTERS[modal]}{count}/{n}"
            text = LETTERS[lab] + (agree if n > 1 else "")
            widths = half[i, j][np.isfinite(half[i, j])]
            if widths.size:
                text += f"\n±{widths.mean():.2f}"
            if lab == "uncertain":
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", lw=0, color="0.4"))
            ax.text(j, i, text, ha="center", va="center", fontsize=6, linespacing=0.9,
                    color="white" if abs(value) > 0.6 * limit else "black")
        ax.set_xticks(range(len(table.epochs)), [str(e) for e in table.epochs])
        ax.set_yticks(range(len(table.layers)), table.layers, fontsize=7)
        ax.set_xlabel("epoch")
        ax.set_title(f"{table.score} score", fontsize=10)
    bar = fig.colorbar(image, ax=axes.ravel().tolist(), fraction=0.04)
    bar.set_label(f"score, mean over initialisations (baseline {first.scoring.baseline})", fontsize=8)
    for level in (-first.scoring.tau, first.scoring.tau):
        bar.ax.axhline(level, color="k", lw=0.8)
    fig.suptitle(f"{title}\n{attack_title(first)}, τ = {first.scoring.tau:g}, BatchNorm {first.bn}", fontsize=10)
    legend = (f"F fragile (interval below −τ)   R robust (within ±τ)   A antifragile (above +τ)   ? uncertain "
              f"(hatched)   – undefined\nk/n: initialisations giving the label (? A2/3: uncertain, 2 of 3 say "
              f"antifragile);   ±: mean half-width of their {first.scoring.ci:.0%} intervals")
    fig.get_layout_engine().set(h_pad=0.1)
    fig.supxlabel(legend, fontsize=7)
    return fig


LABEL_COLOURS: dict[Label, str] = {"fragile": "tab:red", "robust": "0.6", "antifragile": "tab:blue",
                                   "uncertain": "white", "undefined": "white"}


def plot_score_bars(tables: Mapping[str, ScoresTable], title: str) -> Figure:
    """Scores of one checkpoint epoch as horizontal bars, one panel per table (e.g. the three scores of one filter).

    Each layer's bar is the mean over initialisations, coloured by the consensus label (red fragile, grey
    robust, blue antifragile, white hatched uncertain); each initialisation is a dot with its interval as a
    line, so the spread over initialisations is on the figure; the band is ``±τ``. The legend is on the figure.
    """
    first = next(iter(tables.values()))
    n_layers = max(len(t.layers) for t in tables.values())
    fig, axes = plt.subplots(1, len(tables), figsize=(1.8 + 3.2 * len(tables), 1.6 + 0.32 * n_layers),
                             squeeze=False, sharey=True, layout="constrained")
    for ax, table in zip(axes.flat, tables.values(), strict=False):
        rows = np.arange(len(table.layers))
        labels = [row[0] for row in table.labels]
        ax.axvspan(-table.scoring.tau, table.scoring.tau, color="0.92", zorder=0)
        ax.axvline(0, color="0.4", lw=0.6, zorder=1)
        ax.barh(rows, np.nan_to_num(table.values[:, 0]), height=0.7, zorder=2, edgecolor="0.3", linewidth=0.5,
                color=[LABEL_COLOURS[lab] for lab in labels],
                hatch=["///" if lab == "uncertain" else "" for lab in labels])
        n = len(table.inits)
        for k in range(n):
            offset = (k - (n - 1) / 2) * 0.5 / max(n, 1)
            ax.errorbar(table.per_init[:, 0, k], rows + offset, fmt="o", ms=2.5, color="k", lw=0.7, zorder=3,
                        xerr=np.abs(np.stack([table.lo[:, 0, k], table.hi[:, 0, k]]) - table.per_init[:, 0, k]))
        for i, lab in enumerate(labels):
            if lab == "undefined":
                ax.text(0, i, " undefined", va="center", fontsize=6, color="0.4")
        ax.set_yticks(rows, table.layers, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(f"{table.score} score (baseline {table.scoring.baseline})", fontsize=8)
        ax.set_title(f"{table.score} score", fontsize=10)
    handles = [plt.Rectangle((0, 0), 1, 1, facecolor=LABEL_COLOURS[lab], edgecolor="0.3",
                             hatch="///" if lab == "uncertain" else "", label=lab)
               for lab in ("fragile", "robust", "antifragile", "uncertain")]
    handles += [plt.Rectangle((0, 0), 1, 1, color="0.92", label=f"±τ = ±{first.scoring.tau:g}"),
                plt.Line2D([], [], marker="o", ms=3, color="k", lw=0.7,
                           label=f"each initialisation, {first.scoring.ci:.0%} interval")]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=7, frameon=False)
    fig.suptitle(f"{title}\n{attack_title(first)}, epoch {first.epochs[0]}, {len(first.inits)} initialisation(s), "
                 f"τ = {first.scoring.tau:g}, BatchNorm {first.bn}", fontsize=10)
    return fig


def plot_scores(tables: Mapping[str, ScoresTable], title: str) -> Figure:
    """:func:`plot_score_bars` when the tables cover one checkpoint epoch, else :func:`plot_score_heatmaps`."""
    if all(len(t.epochs) == 1 for t in tables.values()):
        return plot_score_bars(tables, title)
    return plot_score_heatmaps(tables, title)


def plot_comparison(comparison: Comparison, title: str) -> Figure:
    """Each set's scores against the first set's, one panel per (other set, score): ρ with its interval and the
    label agreement in each panel's title; filled points share the first set's label, hollow ones differ, grey
    bars are each score's own interval."""
    others = comparison.names[1:]
    fig, axes = plt.subplots(len(others), len(SCORES), figsize=(3.6 * len(SCORES), 3.3 * len(others)),
                             squeeze=False)
    tau, base = comparison.tau, comparison.names[0]
    for row, other in zip(axes, others, strict=True):
        k = comparison.names.index(other)
        for ax, score in zip(row, SCORES, strict=True):
            x, y = comparison.values[score][0], comparison.values[score][k]
            same = np.array([a == b for a, b in zip(comparison.labels[score][0], comparison.labels[score][k],
                                                     strict=True)])
            box = comparison.intervals[score]
            ax.errorbar(x, y, xerr=np.abs(box[0].T - x), yerr=np.abs(box[k].T - y), fmt="none", ecolor="0.8", lw=0.6,
                        zorder=0)
            ax.scatter(x[same], y[same], s=18, color="tab:blue", label="same label")
            ax.scatter(x[~same], y[~same], s=18, facecolors="none", edgecolors="tab:red", label="different label")
            for name, xi, yi in zip(comparison.layers, x, y, strict=True):
                ax.annotate(name, (xi, yi), fontsize=5, xytext=(2, 2), textcoords="offset points", color="0.35")
            finite = np.concatenate([x[np.isfinite(x)], y[np.isfinite(y)], [-tau, tau]])
            lim = (finite.min() - 0.05, finite.max() + 0.05)
            ax.plot(lim, lim, color="0.6", lw=0.8)
            for level in (-tau, tau):
                ax.axhline(level, color="0.6", ls=":", lw=0.8)
                ax.axvline(level, color="0.6", ls=":", lw=0.8)
            ax.set(xlim=lim, ylim=lim, xlabel=f"{base}", ylabel=f"{other}")
            p = comparison.pair(score, base, other)
            ax.set_title(f"{score}: ρ = {p['rho']:+.2f} [{p['rho_lo']:+.2f}, {p['rho_hi']:+.2f}]\n"
                         f"labels agree {p['agreement']:.0%} (confident {p['confident_agreement']:.0%} "
                         f"of {p['n_confident']})", fontsize=8)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.suptitle(f"{title}\nρ: Spearman, {comparison.coverage:.0%} interval from resampling layers; "
                 f"bars: each score's interval over images; dotted: ±τ = {tau:g}", fontsize=9)
    fig.tight_layout()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=8)
    return fig
