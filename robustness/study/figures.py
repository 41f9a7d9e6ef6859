"""The figures of a scored study, drawn from its tables and result files and saved under ``plots/``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.figure import Figure

from .. import paths
from ..figures import draw_and_save, scores_plot_name, sweep_plot_name
from ..filtering import load_results, plot_global_curves, plot_layer_grid
from ..scoring import attack_label, plot_scores

if TYPE_CHECKING:
    from ..scoring import ScoresTable


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
        name = scores_plot_name(arch, dataset, kind, scope, attack, first.scoring.baseline)
        title = f"{model}: {kind} filter, {scope}, baseline {first.scoring.baseline}"
        saved.append(save(partial(plot_scores, per_score, title), name, units.values()))
        newest = {init: (epoch, units[init, epoch]) for init, epoch in units}  # units are sorted: the last wins
        for init, (epoch, path) in newest.items():
            if scope == "global":
                global_curves.setdefault((attack, init, epoch), {})[kind] = path
                continue
            name = sweep_plot_name(arch, dataset, kind, "local", init, epoch, attack)
            meta, results = load_results(path)
            title = f"{model}, Init_{init} epoch {epoch}: local {kind} filter, {attack_label(attack, meta['eps'])}"
            saved.append(save(partial(plot_layer_grid, results, title), name, [path]))
    for (attack, init, epoch), files in global_curves.items():
        name = sweep_plot_name(arch, dataset, None, "global", init, epoch, attack)
        loaded = {kind: load_results(path) for kind, path in files.items()}
        eps = [meta["eps"] for meta, _ in loaded.values()]
        title = f"{model}, Init_{init} epoch {epoch}: global filters, {attack_label(attack, eps)}"
        curves = {kind: results["global"] for kind, (_, results) in loaded.items()}
        saved.append(save(partial(plot_global_curves, curves, title), name, files.values()))
    return saved
