"""The filtering figures: drawn from synthetic sweeps and tables, saved as real PNG and PDF files."""

from __future__ import annotations

import math
import os

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from robustness.figures import draw_and_save, save_figure
from robustness.filtering import SweepResult, plot_global_curves, plot_layer_grid
from robustness.retraining import plot_retraining
from robustness.scoring import (
    CHECKPOINT,
    LABEL_COLOURS,
    attack_label,
    build_tables,
    plot_score_bars,
    plot_score_heatmaps,
    plot_scores,
)
from robustness.vocab import SCORES

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _sweep(layer: str | None, kind: str = "highpass", n: int = 5) -> SweepResult:
    t = np.linspace(0, 1, n)
    return SweepResult(kind, layer, 10, 0.9, 0.5, 0.3, 1.2, list(np.linspace(-1, 1, n)), list(0.9 * (1 - t)),
                       list(0.5 * (1 - t**2)), [0.3] * n, [1.2] * n, [round(10 * v) for v in t], list(t))


def _cell(value: float, label: str) -> dict:
    return {**{s: value for s in SCORES}, "ci": {s: (value - 0.1, value + 0.1) for s in SCORES},
            "se": {s: 0.05 for s in SCORES}, "labels": {s: label for s in SCORES}}


def _tables(epochs: tuple[int, ...] = (0,)) -> dict:
    """conv1 at each epoch: undefined for Init_1, fragile for Init_2; fc: robust for Init_1 only."""
    scored = {}
    for epoch in epochs:
        scored[1, epoch] = {"conv1": _cell(math.nan, "undefined"), "fc": _cell(0.01, "robust")}
        scored[2, epoch] = {"conv1": _cell(-0.3, "fragile")}
    info = {"eps": 0.0893555, "n_images": 500, **dict.fromkeys(CHECKPOINT[2:], 0.5)}
    return build_tables(scored, kind="highpass", scope="local", attack="fgsm_eps0.0893555", bn="recalibrate",
                        checkpoints={unit: info for unit in scored})


def _is_png(path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_SIGNATURE


def _is_pdf_beside(png) -> bool:
    pdf = png.with_suffix(".pdf")
    return pdf.is_file() and pdf.read_bytes()[:5] == b"%PDF-"


def test_every_filtering_figure_is_saved_as_png(tmp_path) -> None:
    before = set(plt.get_fignums())
    layers = ["conv1", "layer1.0.conv1", "layer1.0.conv2", "layer1.0.downsample.0", "fc"]
    grid = plot_layer_grid({name: _sweep(name) for name in layers}, "local highpass")
    assert [ax.get_title() for ax in grid.axes if ax.get_title()] == layers  # one titled panel per layer
    curves = plot_global_curves({k: _sweep(None, k) for k in ("highpass", "lowpass", "pulse")}, "global")
    heatmaps = plot_score_heatmaps(_tables(), "h")
    assert [ax.get_title() for ax in heatmaps.axes[:3]] == ["clean score", "adversarial score", "difference score"]
    assert len(heatmaps.axes) == 4  # three panels and one colour bar for the whole figure
    assert "FGSM ε = 0.089, τ = 0.05, BatchNorm recalibrate" in heatmaps._suptitle.get_text()
    assert "fgsm_eps" not in heatmaps._suptitle.get_text()
    cells = [t.get_text() for t in heatmaps.axes[0].texts]
    # conv1: Init_1 undefined, Init_2 fragile; fc: robust for Init_1, missing for Init_2. Both uncertain.
    assert cells == ["? F1/2\n±0.10", "? R1/2\n±0.10"]
    assert "? uncertain" in heatmaps._supxlabel.get_text()
    bars = plot_retraining([{"variant": "none", "n_layers": 0, "params": 0, "clean": 0.9, "clean_sd": 0.0,
                             "fgsm": 0.4, "fgsm_sd": 0.0},
                            {"variant": "all", "n_layers": 5, "params": 9e5, "clean": 0.95, "clean_sd": 0.01,
                             "fgsm": 0.5, "fgsm_sd": math.nan}], "retraining")
    for i, fig in enumerate((grid, curves, heatmaps, bars)):
        png = save_figure(fig, f"figure_{i}", tmp_path)
        assert _is_png(png) and _is_pdf_beside(png)
        plt.close(fig)
    assert set(plt.get_fignums()) == before


def test_draw_and_save_keeps_a_figure_newer_than_its_inputs(tmp_path) -> None:
    inputs = tmp_path / "result.json"
    inputs.write_text("{}")
    drawn = []

    def draw():
        drawn.append(1)
        return plot_global_curves({"highpass": _sweep(None)}, "global")

    path = draw_and_save(draw, "curves", tmp_path, keep_if_newer_than=[inputs])
    assert _is_png(path) and len(drawn) == 1 and not list(tmp_path.glob(".*.tmp"))
    assert draw_and_save(draw, "curves", tmp_path, keep_if_newer_than=[inputs]) == path and len(drawn) == 1
    later = path.stat().st_mtime_ns + 10**9
    os.utime(inputs, ns=(later, later))  # the results changed after the figure was drawn
    draw_and_save(draw, "curves", tmp_path, keep_if_newer_than=[inputs])
    draw_and_save(draw, "curves", tmp_path)  # no inputs given: always drawn
    assert len(drawn) == 3
    path.with_suffix(".pdf").unlink()  # a figure is kept only while both of its files are there
    assert _is_pdf_beside(draw_and_save(draw, "curves", tmp_path, keep_if_newer_than=[inputs])) and len(drawn) == 4


def test_attack_labels_read_as_a_reader_would_write_them() -> None:
    assert attack_label("fgsm_eps0.0893555") == "FGSM ε = 0.089"
    assert attack_label("fgsm_acc0.5", [0.0893555, 0.1012, float("nan")]) == "FGSM ε = 0.089–0.1"
    assert attack_label("fgsm_acc0.5") == "FGSM, ε for 50% accuracy"
    assert attack_label("pgd-l2_eps2_a0.25_k10") == "PGD-L2 ε = 2"
    assert attack_label("pgd-linf_a0.833333_k3_r2_recheck_of_fgsm_acc0.5", 0.07) == (
        "PGD-L∞ ε = 0.07 re-check of FGSM, ε for 50% accuracy")


def test_one_epoch_is_drawn_as_bars_with_every_initialisation_and_the_legend_on_the_figure() -> None:
    one, two = _tables(), _tables((0, 3))
    fig = plot_scores(two, "h")
    assert len(fig.axes) == 4 and fig.axes[3].get_ylabel().startswith("score, mean over")  # heatmaps, one bar
    plt.close(fig)
    fig = plot_scores(one, "h")
    assert len(fig.axes) == 3  # bars: one panel per score and no colour scale (the colours are the labels)
    ax = fig.axes[0]
    bars = [p for p in ax.patches if p.get_height() == 0.7]
    # conv1: Init_1 undefined, Init_2 -0.3 -> uncertain with mean NaN, drawn as an empty bar; fc: Init_1 only.
    assert [b.get_width() for b in bars] == [0.0, 0.01] and all(b.get_hatch() == "///" for b in bars)
    dots = [line for line in ax.lines if line.get_marker() == "o"]
    assert len(dots) == 2 and [round(v, 3) for v in dots[1].get_xdata() if np.isfinite(v)] == [-0.3]  # Init_2
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[:4] == ["fragile", "robust", "antifragile", "uncertain"] and "±τ = ±0.05" in legend
    assert "FGSM ε = 0.089, epoch 0, 2 initialisation(s)" in fig._suptitle.get_text()
    plt.close(fig)
    planted = _tables()
    planted["clean"].init_labels[1][0] = ["fragile", "fragile"]  # fc now fragile by both
    (_, fc) = [p for p in plot_score_bars(planted, "h").axes[0].patches if p.get_height() == 0.7]
    assert fc.get_facecolor()[:3] == matplotlib.colors.to_rgb(LABEL_COLOURS["fragile"]) and not fc.get_hatch()
    plt.close("all")
