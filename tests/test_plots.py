"""The filtering figures: drawn from synthetic sweeps and tables, saved as real PNG files."""

from __future__ import annotations

import math
import os

import matplotlib.pyplot as plt
import numpy as np

from robustness.plots import (
    draw_and_save,
    plot_global_curves,
    plot_layer_grid,
    plot_retraining,
    plot_score_heatmaps,
    save_figure,
)
from robustness.scores import build_tables
from robustness.sweep import SweepResult

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _sweep(layer: str | None, kind: str = "highpass", n: int = 5) -> SweepResult:
    t = np.linspace(0, 1, n)
    return SweepResult(kind, layer, 10, 0.9, 0.5, 0.3, 1.2, list(np.linspace(-1, 1, n)), list(0.9 * (1 - t)),
                       list(0.5 * (1 - t**2)), [0.3] * n, [1.2] * n, [round(10 * v) for v in t], list(t))


def _is_png(path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_SIGNATURE


def test_every_filtering_figure_is_saved_as_png(tmp_path) -> None:
    before = set(plt.get_fignums())
    layers = ["conv1", "layer1.0.conv1", "layer1.0.conv2", "layer1.0.downsample.0", "fc"]
    grid = plot_layer_grid({name: _sweep(name) for name in layers}, "local highpass")
    assert [ax.get_title() for ax in grid.axes if ax.get_title()] == layers  # one titled panel per layer
    curves = plot_global_curves({k: _sweep(None, k) for k in ("highpass", "lowpass", "pulse")}, "global")
    nan_cell = {"clean": math.nan, "adversarial": 0.2, "difference": -0.2, "labels": {}}
    scored = {(1, 0): {"conv1": nan_cell, "fc": {**nan_cell, "clean": 0.01}}, (1, 2): {"conv1": nan_cell}}
    heatmaps = plot_score_heatmaps(build_tables(scored, kind="highpass", scope="local", attack="fgsm_eps0.1"), "h")
    assert "τ = 0.05" in heatmaps.axes[0].get_title()
    bars = plot_retraining([{"variant": "none", "n_layers": 0, "params": 0, "clean": 0.9, "clean_sd": 0.0,
                             "fgsm": 0.4, "fgsm_sd": 0.0},
                            {"variant": "all", "n_layers": 5, "params": 9e5, "clean": 0.95, "clean_sd": 0.01,
                             "fgsm": 0.5, "fgsm_sd": math.nan}], "retraining")
    for i, fig in enumerate((grid, curves, heatmaps, bars)):
        assert _is_png(save_figure(fig, f"figure_{i}", tmp_path))
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
