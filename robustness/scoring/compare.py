"""Invariance: do two or more sets of layer scores label and rank the layers alike?

A *set* is the per-layer scores of one checkpoint (:func:`robustness.scoring.scores.layer_scores`):
sets may differ by epoch, initialisation, dataset or architecture. For every score and
every pair of sets, :func:`compare` reports

- **label agreement**: the fraction of layers given the same label, over the layers whose
  label is defined in both (``uncertain`` counts as a label of its own, so two uncertain
  layers agree), and Cohen's κ (agreement beyond chance), each with a percentile interval from the
  same bootstrap over layers as ρ's, and the *confident agreement*: the same fraction over only the layers
  both sets label confidently (fragile, robust or antifragile), with their number;
- **Spearman's rank correlation** of the point scores over the layers, with a percentile
  interval from a bootstrap over *layers*: ρ is a statistic of the layers, so its
  uncertainty with 10–50 layers comes from which layers there are. Each score's own
  measurement noise (its interval over images) is not part of this interval.

Layers are matched by name (the layers every set has, in the first set's order);
``rename`` maps each set's module names to shared names, for different architectures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .. import paths
from ..errors import DataNotFoundError, InvalidArgument
from ..filtering import load_results
from ..models import DEFAULT_BINS, bin_name
from ..paths import RECHECK
from ..stats import percentile_interval, resampled_indices, spearman
from ..vocab import SCORES, Label, Score
from .consensus import label_agreement, score_correlation
from .scores import CONFIDENT, DEFAULT_SCORING, Scoring, consensus, layer_scores

Scores = Mapping[str, Mapping[str, Any]]  # {layer: filtering_scores dict}


@dataclass
class Comparison:
    """The outcome of :func:`compare`. ``values[score]`` has shape ``(sets, layers)`` and ``intervals[score]``
    ``(sets, layers, 2)``; ``labels[score][s][l]`` is set ``s``'s label of layer ``l``; ``pairs`` holds one
    dict per (score, pair of sets)."""

    names: list[str]
    layers: list[str]
    values: dict[Score, np.ndarray]
    intervals: dict[Score, np.ndarray]
    labels: dict[Score, list[list[Label]]]
    pairs: list[dict[str, Any]]
    tau: float
    coverage: float
    n_boot: int

    def rows(self) -> list[dict[str, Any]]:
        """The pairs, formatted for printing."""
        pct = f"{self.coverage:.0%}"
        return [{"score": p["score"], "sets": f"{p['a']} vs {p['b']}", "layers": p["n_layers"],
                 "labels agree": f"{p['agreement']:.2f} [{p['agreement_lo']:.2f}, {p['agreement_hi']:.2f}]",
                 "confident agree": f"{p['confident_agreement']:.2f} of {p['n_confident']}" if p["n_confident"]
                 else "none confident", "Spearman rho": f"{p['rho']:+.2f}",
                 f"rho {pct} CI": f"[{p['rho_lo']:+.2f}, {p['rho_hi']:+.2f}]"} for p in self.pairs]

    def pair(self, score: Score, a: str, b: str) -> dict[str, Any]:
        """The row of ``score`` for sets ``a`` and ``b`` (either order)."""
        return next(p for p in self.pairs if p["score"] == score and {p["a"], p["b"]} == {a, b})


def _agreement(a: Sequence[Label], b: Sequence[Label]) -> tuple[float, float, int]:
    """Label agreement over the layers defined in both, confident agreement and the number of confident layers."""
    defined = [(x, y) for x, y in zip(a, b, strict=True) if "undefined" not in (x, y)]
    confident = [(x, y) for x, y in defined if x in CONFIDENT and y in CONFIDENT]

    def share(pairs: list[tuple[Label, Label]]) -> float:
        return sum(x == y for x, y in pairs) / len(pairs) if pairs else float("nan")

    return share(defined), share(confident), len(confident)


def rank_correlation(a: np.ndarray, b: np.ndarray, ci: float, n_boot: int, seed: int) -> tuple[float, float, float]:
    """Spearman's ρ of ``a`` and ``b`` over the layers both define (finite), and its percentile interval
    (coverage ``ci``) from ``n_boot`` seeded resamples of those layers; NaN with fewer than 3."""
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if len(a) < 3:
        return float("nan"), float("nan"), float("nan")
    draws = resampled_indices(len(a), n_boot, seed)
    lo, hi = percentile_interval(spearman(a[draws], b[draws]), ci)
    return float(spearman(a, b)), float(lo), float(hi)


def compare(
    sets: Mapping[str, Scores],
    *,
    rename: Mapping[str, Mapping[str, str]] | None = None,
    layers: Sequence[str] | None = None,
    scoring: Scoring = DEFAULT_SCORING,
    depths: Mapping[str, float] | None = None,
) -> Comparison:
    """Label agreement and Spearman's ρ (with a bootstrap interval over layers) of every score, for every
    pair of ``sets`` (``{name: {layer: filtering_scores dict}}``, two or more).

    ``rename[name]`` maps that set's layer names to shared ones; ``layers`` picks the shared names to
    compare (default: those every set has, at least 3). The rank correlations' intervals take ``scoring``'s
    coverage, resamples and seed. Each pair also has Cohen's κ of the labels with its interval (``kappa_note`` says
    why it is undefined, when it is: :func:`robustness.scoring.consensus.label_agreement`) and, with ``depths``
    (shared layer name -> normalised depth), the partial ρ with depth held out (``partial``, ``partial_lo``,
    ``partial_hi``: :func:`robustness.scoring.consensus.score_correlation`).
    """
    if len(sets) < 2:
        raise InvalidArgument(f"compare needs at least two sets of scores, got {len(sets)}")
    ci, n_boot, seed = scoring.ci, scoring.n_boot, scoring.seed
    renamed = {name: {(rename or {}).get(name, {}).get(layer, layer): s for layer, s in scored.items()}
               for name, scored in sets.items()}
    first = next(iter(renamed.values()))
    common = [layer for layer in first if all(layer in scored for scored in renamed.values())]
    if layers is not None:
        missing = {name: [x for x in layers if x not in scored] for name, scored in renamed.items()}
        if any(missing.values()):
            raise InvalidArgument(f"layers missing from some sets: {({k: v for k, v in missing.items() if v})}")
        common = list(layers)
    if len(common) < 3:
        raise InvalidArgument(
            f"the sets have {len(common)} layer(s) in common ({', '.join(common) or 'none'}); a rank correlation "
            f"needs at least 3: map the layer names onto shared ones with rename= (--layer-map on the command line)"
        )
    taus = {s["tau"] for scored in renamed.values() for s in scored.values()}
    if len(taus) > 1:
        raise InvalidArgument(f"the sets were labelled with different tau {sorted(taus)}: score them alike")
    names = list(renamed)
    values = {score: np.array([[renamed[n][x][score] for x in common] for n in names], dtype=float)
              for score in SCORES}
    intervals = {score: np.array([[renamed[n][x]["ci"][score] for x in common] for n in names], dtype=float)
                 for score in SCORES}
    labels = {score: [[renamed[n][x]["labels"][score] for x in common] for n in names] for score in SCORES}
    pairs = []
    for score in SCORES:
        for i, a in enumerate(names):
            for j in range(i + 1, len(names)):
                _, confident, n_confident = _agreement(labels[score][i], labels[score][j])
                agree = label_agreement(labels[score][i], labels[score][j], ci=ci, n_boot=n_boot, seed=seed)
                rho, lo, hi = rank_correlation(values[score][i], values[score][j], ci, n_boot, seed)
                pair = {"score": score, "a": a, "b": names[j], "n_layers": len(common),
                        "agreement": agree["share"], "agreement_lo": agree["share_lo"],
                        "agreement_hi": agree["share_hi"], "confident_agreement": confident,
                        "n_confident": n_confident, "kappa": agree["kappa"], "kappa_lo": agree["kappa_lo"],
                        "kappa_hi": agree["kappa_hi"], "kappa_note": agree["kappa_note"],
                        "rho": rho, "rho_lo": lo, "rho_hi": hi}
                if depths is not None:
                    found = score_correlation(values[score][i], values[score][j], [depths[x] for x in common],
                                              ci=ci, n_boot=n_boot, seed=seed)
                    pair |= {key: found[key] for key in ("partial", "partial_lo", "partial_hi")}
                pairs.append(pair)
    return Comparison(names, common, values, intervals, labels, pairs, taus.pop(), ci, n_boot)


def _wanted(tag: str, attack: str | None) -> bool:
    """Whether results of ``tag`` are compared: ``attack``'s, or by default any but the PGD re-checks'."""
    return tag == attack if attack is not None else RECHECK not in tag


def checkpoint_scores(
    arch: str, dataset: str, kind: str, init: int, epoch: int, *, attack: str | None = None,
    root: str | Path = paths.DEFAULT_MODELS_ROOT, scoring: Scoring = DEFAULT_SCORING,
) -> Scores:
    """:func:`robustness.scoring.scores.layer_scores` of one checkpoint's local sweeps of filter ``kind``.

    ``attack`` is the result's attack tag (default: the only one that checkpoint has, PGD re-checks left
    out), scored as ``scoring`` says.
    """
    found = {tag: units[init, epoch] for tag, units in paths.list_sweep_results(arch, dataset, kind, "local", root)
             .items() if (init, epoch) in units and _wanted(tag, attack)}
    if len(found) != 1:
        what = "no local" if not found else f"several ({', '.join(found)}: pick one with --attack-tag)"
        raise DataNotFoundError(
            f"{what} {kind} results{f' for {attack}' if attack else ''} of Init_{init} epoch {epoch} under "
            f"{paths.model_dir(arch, dataset, root)}: run python -m robustness filter --arch {arch} --dataset "
            f"{dataset} --filter {kind} --scope local --inits {init} --checkpoint-epochs {epoch}"
        )
    return layer_scores(load_results(next(iter(found.values())))[1], scoring)


def named_set(
    spec: str, kind: str, *, attack: str | None = None, root: str | Path = paths.DEFAULT_MODELS_ROOT,
    scoring: Scoring = DEFAULT_SCORING,
) -> tuple[str, Scores]:
    """One set of scores named ``NAME=ARCH:DATASET:INIT:EPOCH[:ATTACK]`` (e.g. ``mnist=resnet18:mnist5k:1:2``):
    its name and :func:`checkpoint_scores` (``attack`` unless the spec names one)."""
    name, _, where = spec.partition("=")
    fields = where.split(":")
    if not name or len(fields) not in (4, 5) or not all(f.isdigit() for f in fields[2:4]):
        raise InvalidArgument(f"a set is NAME=ARCH:DATASET:INIT:EPOCH[:ATTACK], got {spec!r}")
    arch, dataset, init, epoch = fields[0], fields[1], int(fields[2]), int(fields[3])
    return name, checkpoint_scores(arch, dataset, kind, init, epoch, attack=fields[4] if len(fields) == 5 else attack,
                                   root=root, scoring=scoring)


def study_sets(
    arch: str, dataset: str, kind: str, *, by: Literal["init", "epoch"], init: int | None = None,
    epoch: int | None = None, attack: str | None = None, root: str | Path = paths.DEFAULT_MODELS_ROOT,
    scoring: Scoring = DEFAULT_SCORING,
) -> dict[str, Scores]:
    """The sets of one study to compare: its initialisations at one epoch (``by="init"``, default: the newest
    epoch they all have) or one initialisation's epochs (``by="epoch"``, default ``Init_1``)."""
    units = {checkpoint for tag, found in paths.list_sweep_results(arch, dataset, kind, "local", root).items()
             if _wanted(tag, attack) for checkpoint in found}
    if by == "init":
        inits = sorted({i for i, _ in units})
        shared = [e for e in sorted({e for _, e in units}) if all((i, e) in units for i in inits)]
        epoch = epoch if epoch is not None else (shared[-1] if shared else None)
        chosen = [(i, epoch) for i in inits if (i, epoch) in units]
        name = "Init_{0}"
    elif by == "epoch":
        init = init if init is not None else 1
        chosen = sorted(c for c in units if c[0] == init)
        name = "epoch {1}"
    else:
        raise InvalidArgument(f"compare by 'init' or 'epoch', got {by!r}")
    if len(chosen) < 2:
        raise DataNotFoundError(
            f"fewer than two {kind} local results to compare by {by} under {paths.model_dir(arch, dataset, root)} "
            f"(found checkpoints {sorted(units)}): run python -m robustness filter --arch {arch} --dataset {dataset} "
            f"--filter {kind} --scope local over more initialisations or epochs"
        )
    return {name.format(i, e): checkpoint_scores(arch, dataset, kind, i, e, attack=attack, root=root, scoring=scoring)
            for i, e in chosen}


def binned_sets(
    sets: Mapping[str, tuple[Scores, Mapping[str, float]]], bins: int = DEFAULT_BINS
) -> dict[str, Scores]:
    """Each set's layer scores pooled into depth bins: ``{name: {bin name: scores dict}}`` for
    :func:`robustness.scoring.compare.compare`. ``sets[name]`` is ``(layer scores, {layer: depth})``; a bin's score is
    the mean of its layers' scores (NaN ones left out), its interval the mean of their intervals, its label the
    one all its layers share (else ``uncertain``). Bins are ``bins`` equal intervals of ``[0, 1]``."""
    out: dict[str, Scores] = {}
    for name, (scored, depths) in sets.items():
        missing = [layer for layer in scored if layer not in depths]
        if missing:
            raise InvalidArgument(f"set {name!r}: no depth for layer(s) {', '.join(missing)}")
        groups: dict[str, list[Mapping[str, Any]]] = {}
        for layer, s in sorted(scored.items(), key=lambda item: depths[item[0]]):
            groups.setdefault(bin_name(depths[layer], bins), []).append(s)
        out[name] = {label: _pooled(members) for label, members in groups.items()}
    return out


def _pooled(members: list[Mapping[str, Any]]) -> dict[str, Any]:
    def mean(values: list[float]) -> float:
        finite = [v for v in values if math.isfinite(v)]
        return float(np.mean(finite)) if finite else math.nan

    return {**{score: mean([m[score] for m in members]) for score in SCORES},
            "ci": {score: (mean([m["ci"][score][0] for m in members]), mean([m["ci"][score][1] for m in members]))
                   for score in SCORES},
            "labels": {score: consensus([m["labels"][score] for m in members]) for score in SCORES},
            "tau": members[0]["tau"], "layers": len(members)}
