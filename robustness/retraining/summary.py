"""What retraining runs measured, summarised: one row per variant, and the rows as text.

Each run gives :data:`RunOutcomes`, whether each test image is classified correctly (clean
and under each attack). :func:`summarise` turns the runs of every variant into the mean ±
SD over runs and the differences from ``none`` and from the mean of the random sets, with
paired bootstrap intervals over the images; :func:`format_comparison` prints them.
The runs themselves come from :mod:`robustness.retraining.comparison`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..report import format_table
from ..stats import bootstrap_counts, percentile_interval, resampled_mean

RunOutcomes = dict[str, np.ndarray]  # metric ("clean", "fgsm", "pgd") -> per test image, correct or not

RANDOM_MEAN = "random (mean)"


def summarise(
    outcomes: Mapping[str, Sequence[RunOutcomes]],
    variants: Mapping[str, Sequence[str]],
    sizes: Mapping[str, int],
    *,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One row per variant (and ``random (mean)``, the mean of the random sets, when there are any).

    ``outcomes[variant]`` holds one :data:`RunOutcomes` per run, runs aligned across variants.
    Per metric ``m``: ``m`` and ``m_sd``, the mean and SD (ddof 1) over runs of the accuracy;
    ``m_vs_none`` and ``m_vs_random`` (the mean of the random sets), differences of the
    run-mean accuracy, each with ``_lo``/``_hi``: the percentile interval at ``ci`` of the
    paired bootstrap over the images — each of ``n_boot`` resamples (seeded by ``seed``)
    recomputes every variant's every run on the same images. Also: the number of layers,
    their parameters, mean depth (0 = first layer, 1 = last) and how many of them are in
    ``robust+antifragile``.
    """
    randoms = [v for v in variants if v.startswith("random-")]
    metrics = list(next(iter(outcomes.values()))[0])
    stacked = {v: {m: np.stack([r[m] for r in runs]).astype(float) for m in metrics} for v, runs in outcomes.items()}
    groups: dict[str, list[str]] = {v: [v] for v in variants}
    if randoms:
        groups[RANDOM_MEAN] = randoms
        stacked[RANDOM_MEAN] = {m: np.mean([stacked[v][m] for v in randoms], axis=0) for m in metrics}
    counts = bootstrap_counts(next(iter(stacked.values()))[metrics[0]].shape[1], n_boot, seed)
    # accuracy per run, and the mean over runs under every resample of the images
    acc = {name: {m: per_run[m].mean(axis=1) for m in metrics} for name, per_run in stacked.items()}
    boot = {name: {m: resampled_mean(per_run[m], counts).mean(axis=1) for m in metrics}
            for name, per_run in stacked.items()}
    references = {label: ref for label, ref in (("none", "none"), ("random", RANDOM_MEAN)) if ref in stacked}
    rows = []
    for name, members in groups.items():
        described = [_describe(variants[v], variants.get("robust+antifragile", []), sizes) for v in members]
        row: dict[str, Any] = {"variant": name}
        row |= {k: described[0][k] if len(members) == 1 else float(np.mean([d[k] for d in described]))
                for k in described[0]}
        row["runs"] = len(acc[name][metrics[0]])
        for m in metrics:
            row[m] = float(acc[name][m].mean())
            row[f"{m}_sd"] = float(acc[name][m].std(ddof=1)) if row["runs"] > 1 else float("nan")
            for label, ref in references.items():
                lo, hi = percentile_interval(boot[name][m] - boot[ref][m], ci)
                row[f"{m}_vs_{label}"] = row[m] - float(acc[ref][m].mean())
                row[f"{m}_vs_{label}_lo"], row[f"{m}_vs_{label}_hi"] = float(lo), float(hi)
        row["layers"] = list(variants[name]) if name in variants else []
        rows.append(row)
    return rows


def _describe(layers: Sequence[str], chosen: Sequence[str], sizes: Mapping[str, int]) -> dict[str, float]:
    """Size and depth of a layer set: layers, parameters, mean relative depth, layers shared with ``chosen``."""
    order = list(sizes)
    depth = [order.index(name) / max(len(order) - 1, 1) for name in layers]
    return {"n_layers": len(layers), "params": sum(sizes[name] for name in layers),
            "depth": float(np.mean(depth)) if depth else float("nan"), "shared": len(set(layers) & set(chosen))}


def format_comparison(rows: Sequence[Mapping[str, Any]]) -> str:
    """The comparison as text, one table per metric: each variant's size, depth, mean ± SD over runs and its
    differences from ``none`` and from the random sets' mean, with their intervals."""
    metrics = [m for m in ("clean", "fgsm", "pgd") if m in rows[0]]
    references = {"none": "none", "random": RANDOM_MEAN}
    tables = []
    for m in metrics:
        table = []
        for row in rows:
            cells = {"variant": row["variant"], "layers": f"{row['n_layers']:g}", "params": f"{row['params']:,.0f}",
                     "depth": "-" if np.isnan(row["depth"]) else f"{row['depth']:.2f}", "runs": row["runs"],
                     m: f"{row[m]:.3f} ± {row[f'{m}_sd']:.3f}"}
            for label, ref in references.items():
                if f"{m}_vs_{label}" in row:
                    cells[f"vs {label} [CI]"] = "-" if row["variant"] == ref else (
                        f"{row[f'{m}_vs_{label}']:+.3f} [{row[f'{m}_vs_{label}_lo']:+.3f}, "
                        f"{row[f'{m}_vs_{label}_hi']:+.3f}]")
            table.append(cells)
        tables.append(f"{m} accuracy: mean ± SD over runs; differences with paired bootstrap intervals\n"
                      + format_table(table))
    return "\n\n".join(tables)
