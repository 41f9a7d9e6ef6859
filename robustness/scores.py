"""Filtering scores (SPEC 4): how a layer's accuracy responds to synaptic filtering.

For a sweep of ``T`` thresholds, ``t̂ = linspace(0, 1, T)`` is the position in the
sweep, ``Â = A / A_ref`` the accuracy relative to the unfiltered model and
``ρ = 1 − removed_fraction`` the fraction of filtered weights still present. With the
baseline ``B`` (``1`` for ``"unfiltered"``, ``ρ`` for ``"density"``)::

    clean        φ_c = ∫₀¹ (Â_clean − B) dt̂
    adversarial  φ_a = ∫₀¹ (Â_adv − B) dt̂
    difference   φ_Δ = ∫₀¹ (Â_adv − Â_clean) dt̂

each integrated with Simpson's rule over the ``T`` points. A score below ``−τ``
labels the layer *fragile*, within ``±τ`` *robust*, above ``+τ`` *antifragile*; a
score that is NaN (its reference accuracy is below the floor) is *undefined*.

A study's scores become one table per (filter, scope, attack, score): layers ×
checkpoint epochs, each cell the mean over the initialisations found.
"""

from __future__ import annotations

import csv
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy.integrate import simpson

from . import paths
from .errors import DataNotFoundError, InvalidArgument
from .files import atomic_path
from .filters import KINDS, canonical_kind
from .sweep import SweepResult, load_results

Score = Literal["clean", "adversarial", "difference"]
Baseline = Literal["unfiltered", "density"]
Label = Literal["fragile", "robust", "antifragile", "uncertain", "undefined"]

SCORES: tuple[Score, ...] = ("clean", "adversarial", "difference")
BASELINES: tuple[Baseline, ...] = ("unfiltered", "density")
DEFAULT_TAU = 0.05
DEFAULT_FLOOR = 0.05


def label(score: float, tau: float = DEFAULT_TAU) -> Label:
    """``fragile`` below ``−tau``, ``robust`` within ``±tau`` (ends included), ``antifragile`` above ``+tau``."""
    if math.isnan(score):
        return "undefined"
    if score < -tau:
        return "fragile"
    if score > tau:
        return "antifragile"
    return "robust"


def _check_options(baseline: str, tau: float, floor: float) -> None:
    if baseline not in BASELINES:
        raise InvalidArgument(f"unknown baseline {baseline!r}: choose unfiltered or density")
    if not tau >= 0:
        raise InvalidArgument(f"tau must be a non-negative number, got {tau}")
    if not floor > 0:
        raise InvalidArgument(f"the reference-accuracy floor must be positive, got {floor}")


def _relative(curve: Sequence[float], ref: float, floor: float, where: str, what: str) -> np.ndarray:
    """``curve / ref``, or NaNs with a warning when ``ref`` is below ``floor``."""
    if ref < floor:
        warnings.warn(
            f"{where}: the unfiltered model's {what} accuracy {ref:.4f} is below the floor {floor}, so its "
            f"{what} score is undefined (NaN); for the adversarial score, use a weaker attack (smaller eps, "
            f"e.g. calibrated with --calibrate-eps 0.5)",
            RuntimeWarning,
            stacklevel=3,
        )
        return np.full(len(curve), np.nan)
    return np.asarray(curve, dtype=float) / ref


def filtering_scores(
    result: SweepResult, baseline: Baseline = "unfiltered", tau: float = DEFAULT_TAU, floor: float = DEFAULT_FLOOR
) -> dict[str, Any]:
    """The clean, adversarial and difference scores of one sweep, their labels, and ``tau``.

    Returns ``{"clean": φ_c, "adversarial": φ_a, "difference": φ_Δ, "labels": {score:
    label}, "tau": tau, "baseline": baseline}``. A reference accuracy below ``floor``
    makes the scores that need it NaN (label ``"undefined"``) and warns, naming the layer.
    """
    _check_options(baseline, tau, floor)
    n = len(result.thresholds)
    if n < 2:
        raise InvalidArgument(
            f"a sweep needs at least 2 thresholds to be scored, this one has {n}: rerun the filter command "
            f"with --thresholds 3 or more"
        )
    for name in ("clean_acc", "adv_acc", "removed_fraction"):
        if len(getattr(result, name)) != n:
            raise InvalidArgument(f"the sweep's {name} has {len(getattr(result, name))} values for {n} thresholds")
    where = f"layer {result.layer!r}" if result.layer is not None else f"the global {result.kind} sweep"
    t = np.linspace(0.0, 1.0, n)
    base = np.ones(n) if baseline == "unfiltered" else 1.0 - np.asarray(result.removed_fraction, dtype=float)
    clean = _relative(result.clean_acc, result.ref_clean_acc, floor, where, "clean")
    adv = _relative(result.adv_acc, result.ref_adv_acc, floor, where, "adversarial")
    scores = {
        "clean": float(simpson(clean - base, x=t)),
        "adversarial": float(simpson(adv - base, x=t)),
        "difference": float(simpson(adv - clean, x=t)),
    }
    return {**scores, "labels": {k: label(v, tau) for k, v in scores.items()}, "tau": tau, "baseline": baseline}


def layer_scores(
    results: Mapping[str, SweepResult],
    baseline: Baseline = "unfiltered",
    tau: float = DEFAULT_TAU,
    floor: float = DEFAULT_FLOOR,
) -> dict[str, dict[str, Any]]:
    """:func:`filtering_scores` of each layer of one checkpoint's local sweeps, keyed by module name.

    This per-checkpoint scores table is what :func:`robustness.retrain.select_layers` reads.
    """
    return {name: filtering_scores(result, baseline, tau, floor) for name, result in results.items()}


def consensus_labels(
    per_init: Mapping[int, Mapping[str, Mapping[str, Any]]], score: Score
) -> dict[str, Label]:
    """One label per layer over initialisations: the label every initialisation gives it, else ``uncertain``.

    ``per_init[init][layer]`` is a :func:`filtering_scores` dict (e.g. :func:`layer_scores` of each
    initialisation's sweeps of one checkpoint epoch). A layer missing from some initialisation is uncertain.
    """
    if score not in SCORES:
        raise InvalidArgument(f"unknown score {score!r}: choose one of {', '.join(SCORES)}")
    if not per_init:
        raise InvalidArgument("no initialisation's scores to aggregate: run the filter command first")
    layers = list(dict.fromkeys(name for per_layer in per_init.values() for name in per_layer))
    out: dict[str, Label] = {}
    for name in layers:
        found = {per_layer[name]["labels"][score] if name in per_layer else None for per_layer in per_init.values()}
        out[name] = found.pop() if len(found) == 1 and None not in found else "uncertain"
    return out


@dataclass
class ScoresTable:
    """One score over layers × checkpoint epochs for one filter, scope and attack.

    ``values[i, j]`` is the score of ``layers[i]`` at ``epochs[j]``, the mean over
    ``inits`` (NaN when any of them is undefined); ``labels`` follow from ``tau``.
    """

    score: Score
    kind: str
    scope: paths.Scope
    attack: str
    baseline: Baseline
    tau: float
    layers: list[str]
    epochs: list[int]
    inits: list[int]
    values: np.ndarray

    @property
    def labels(self) -> list[list[Label]]:
        """The label of every cell, in the layout of ``values``."""
        return [[label(float(v), self.tau) for v in row] for row in self.values]

    def rows(self) -> list[dict[str, Any]]:
        """One dict per layer: its score and label at every epoch (for printing)."""
        out = []
        for name, row, row_labels in zip(self.layers, self.values, self.labels, strict=True):
            cells: dict[str, Any] = {"layer": name}
            for epoch, value, lab in zip(self.epochs, row, row_labels, strict=True):
                cells[f"epoch_{epoch}"] = float(value)
                cells[f"epoch_{epoch}_label"] = lab
            out.append(cells)
        return out

    def title(self) -> str:
        """A one-line description: score, filter, scope, attack, baseline and ``tau``."""
        return (f"{self.score} score, {self.kind} filter, {self.scope} scope, {self.attack}, "
                f"baseline {self.baseline}, tau={self.tau:g}")

    def tag(self) -> str:
        """What tells this table's file apart from others of the same score and filter."""
        return f"{self.attack}_{self.baseline}"


def build_tables(
    scored: Mapping[tuple[int, int], Mapping[str, Mapping[str, Any]]],
    *,
    kind: str,
    scope: paths.Scope,
    attack: str,
    baseline: Baseline = "unfiltered",
    tau: float = DEFAULT_TAU,
) -> dict[Score, ScoresTable]:
    """The layers × epochs table of each score from per-checkpoint scores.

    ``scored[(init, epoch)][layer]`` is a :func:`filtering_scores` dict. Layers keep
    their first-seen order; a cell missing for some initialisation averages the others.
    """
    if not scored:
        raise InvalidArgument("no sweep results to build a scores table from: run the filter command first")
    layers = list(dict.fromkeys(name for per_layer in scored.values() for name in per_layer))
    epochs = sorted({epoch for _, epoch in scored})
    inits = sorted({init for init, _ in scored})
    tables = {}
    for score in SCORES:
        values = np.full((len(layers), len(epochs)), np.nan)
        for i, name in enumerate(layers):
            for j, epoch in enumerate(epochs):
                cell = [per_layer[name][score] for (_, e), per_layer in scored.items()
                        if e == epoch and name in per_layer]
                if cell:
                    values[i, j] = float(np.mean(cell))
        tables[score] = ScoresTable(score, kind, scope, attack, baseline, tau, layers, epochs, inits, values)
    return tables


def study_tables(
    arch: str,
    dataset: str,
    kind: str,
    scope: paths.Scope,
    *,
    baseline: Baseline = "unfiltered",
    tau: float = DEFAULT_TAU,
    floor: float = DEFAULT_FLOOR,
    root: str | Path = paths.DEFAULT_MODELS_ROOT,
    attack: str | None = None,
) -> dict[str, dict[Score, ScoresTable]]:
    """Score every result file of one filter and scope of a study: ``{attack_tag: {score: table}}``.

    ``attack`` (a tag such as ``"fgsm_eps0.1"``) keeps only that attack's results.
    Empty when the filter command has not written any result yet.
    """
    tables = {}
    for tag, units in paths.list_sweep_results(arch, dataset, kind, scope, root).items():
        if attack is None or tag == attack:
            scored = {checkpoint: layer_scores(load_results(path)[1], baseline, tau, floor)
                      for checkpoint, path in units.items()}
            tables[tag] = build_tables(scored, kind=kind, scope=scope, attack=tag, baseline=baseline, tau=tau)
    return tables


def score_study(
    arch: str,
    dataset: str,
    *,
    kinds: Sequence[str] = KINDS,
    scopes: Sequence[paths.Scope] = ("local", "global"),
    baseline: Baseline = "unfiltered",
    tau: float = DEFAULT_TAU,
    floor: float = DEFAULT_FLOOR,
    root: str | Path = paths.DEFAULT_MODELS_ROOT,
    attack: str | None = None,
) -> list[ScoresTable]:
    """Build and save (CSV, atomically) every scores table of a study; return the tables.

    One table per (filter, scope, attack, score) that has result files. Raises
    :class:`DataNotFoundError`, naming the command that writes them, when there are none.
    """
    _check_options(baseline, tau, floor)
    kinds = [canonical_kind(k) for k in kinds]
    tables = [
        table
        for kind in kinds
        for scope in scopes
        for per_score in study_tables(arch, dataset, kind, scope, baseline=baseline, tau=tau, floor=floor, root=root,
                                      attack=attack).values()
        for table in per_score.values()
    ]
    if not tables:
        which = f" for attack {attack}" if attack else ""
        raise DataNotFoundError(
            f"no filtering results{which} under {paths.model_dir(arch, dataset, root)} for filter(s) "
            f"{', '.join(kinds)} and scope(s) {', '.join(scopes)}: run python -m robustness filter --arch {arch} "
            f"--dataset {dataset} --filter all --scope both --attack fgsm -e EPS first"
        )
    for table in tables:
        save_table(table, arch, dataset, root)
    return tables


def save_table(table: ScoresTable, arch: str, dataset: str, root: str | Path = paths.DEFAULT_MODELS_ROOT) -> Path:
    """Write ``table`` as CSV (atomically) to :func:`robustness.paths.scores_table_path`.

    The first line is a ``#`` comment with the score, filter, scope, attack, baseline,
    ``tau`` and initialisations; then one row per layer with each epoch's score and label.
    """
    path = paths.scores_table_path(arch, dataset, table.kind, table.scope, table.score, root, tag=table.tag())
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        f.write(
            f"# score={table.score} filter={table.kind} scope={table.scope} attack={table.attack} "
            f"baseline={table.baseline} tau={table.tau!r} inits={','.join(map(str, table.inits))}\n"
        )
        rows = table.rows()
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: repr(v) if isinstance(v, float) else v for k, v in row.items()} for row in rows)
    return path


def read_table(path: str | Path) -> ScoresTable:
    """Read a table written by :func:`save_table`."""
    with open(path, newline="") as f:
        meta = dict(item.split("=", 1) for item in f.readline().lstrip("# ").split())
        rows = list(csv.DictReader(f))
    epochs = [int(c[len("epoch_"):]) for c in rows[0] if c.startswith("epoch_") and not c.endswith("_label")]
    values = np.array([[float(row[f"epoch_{e}"]) for e in epochs] for row in rows])
    return ScoresTable(
        meta["score"], meta["filter"], meta["scope"], meta["attack"], meta["baseline"], float(meta["tau"]),
        [row["layer"] for row in rows], epochs, [int(i) for i in meta["inits"].split(",")], values,
    )
