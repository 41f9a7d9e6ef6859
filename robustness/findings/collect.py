"""Every number the findings page cites, read from the run's result files into one long table.

One row per number: its ``section`` (what part of the study), the model it belongs to (``arch``,
``regime``, ``init``, ``epoch``, ``layer`` and the layer's normalised ``depth``), the ``quantity``, its
``value`` with an interval ``[lo, hi]`` where it has one, and a ``text`` (a label, a verdict, a setting).
:func:`collect` builds it; the page is made from this table alone (:mod:`robustness.findings.page`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from .. import paths
from ..models import arch_depths
from ..probes import load_probes, probe_agreement
from ..runtime import pick_device
from ..scoring import (
    ScoresTable,
    binned_sets,
    checkpoint_scores,
    compare,
    compare_regimes,
    rank_correlation,
    regime_result,
    score_study,
    study_sets,
)
from ..study import attack_tag
from ..vocab import SCORES
from .collect_null import ablation_rows, null_rows
from .field_report import field_rows
from .outside import skipped_rows
from .pgd_scores import pgd_rows
from .retrain_power import power_rows
from .spec import Place, StudySpec
from .specfile import spec_dict
from .steps import (
    compares_depth,
    depth_config,
    run_all_probes,
    run_retraining,
    shared_inits,
    study_config,
    study_depths,
)
from .table import COLUMNS, row


def settings_rows(s: StudySpec, at: Place, record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every setting of the spec, nested ones by their dotted names (``sweep.thresholds``, ``scoring.baseline``),
    the device used, and the seconds each step spent computing."""
    rows = [row("setting", name, text=_setting(name, value)) for name, value in flat_settings(spec_dict(s)).items()]
    rows.append(row("setting", "device used", text=str(pick_device(at.device))))
    rows += [row("time", step, entry["seconds"], entry.get("load", math.nan), text=str(entry["runs"]))
             for step, entry in record["steps"].items()]
    return rows


def flat_settings(spec: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A spec's settings (:meth:`StudySpec.to_dict`) by dotted name."""
    found: dict[str, Any] = {}
    for key, value in spec.items():
        if isinstance(value, Mapping) and "class" not in value:
            found.update(flat_settings(value, f"{prefix}{key}."))
        else:
            found[f"{prefix}{key}"] = value
    return found


def _setting(name: str, value: Any) -> str:
    """A setting as the page prints it: a list as its items, ``None`` as ``all`` for a subset or layers; an attack
    as its class and fields."""
    if value is None:
        return "all" if name.endswith(("subset", "layers")) else "none"
    if isinstance(value, Mapping):
        return f"{value['class']}(" + ", ".join(f"{k}={v}" for k, v in value.items() if k != "class") + ")"
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


def score_rows(s: StudySpec, at: Place) -> list[dict[str, Any]]:
    """Every local score of every swept checkpoint (both filters, both regimes, the depth architecture) with its
    interval and label, and each checkpoint's eps and unfiltered accuracies."""
    rows = []
    studies = [(s.train.arch, regime, study_config(s, at, regime)) for regime in s.regimes]
    if compares_depth(s):
        studies.append((s.depth.arch, paths.STANDARD, depth_config(s, at)))
    for arch, regime, config in studies:
        tables = score_study(config.tree_arch, s.train.dataset, kinds=("highpass", "lowpass"), scopes=("local",),
                             root=config.models_root, attack=attack_tag(config), scoring=s.scoring)
        rows += scores_table_rows(tables, study_depths(config), arch=arch, regime=regime)
    return rows


def scores_table_rows(tables: Sequence[ScoresTable], depths: Mapping[str, float] | None = None,
                      **where: Any) -> list[dict[str, Any]]:
    """The rows of local scores tables: every score of every layer, epoch and initialisation with its interval,
    label and the layer's normalised depth (NaN without ``depths``); then each checkpoint's eps, images and
    unfiltered accuracies with their intervals (from the first table). ``where``: the model's columns."""
    rows = []
    for t in tables:
        for i, layer in enumerate(t.layers):
            for j, epoch in enumerate(t.epochs):
                for k, init in enumerate(t.inits):
                    if t.init_labels[i][j][k] is not None:
                        rows.append(row("score", f"{t.kind} {t.score}", t.per_init[i, j, k], t.lo[i, j, k],
                                         t.hi[i, j, k], label=t.init_labels[i][j][k], init=init, epoch=epoch,
                                         layer=layer, depth=(depths or {}).get(layer, math.nan), **where))
    for (init, epoch), info in tables[0].checkpoints.items():
        cell = {"init": init, "epoch": epoch, **where}
        rows += [row("checkpoint", "eps", info["eps"], **cell),
                 row("checkpoint", "images", info["n_images"], **cell),
                 row("checkpoint", "clean accuracy", info["ref_clean_acc"], info["ref_clean_lo"],
                      info["ref_clean_hi"], **cell),
                 row("checkpoint", "adversarial accuracy", info["ref_adv_acc"], info["ref_adv_lo"],
                      info["ref_adv_hi"], **cell)]
    return rows


def pair_rows(section: str, comparison: Any, **where: Any) -> list[dict[str, Any]]:
    """Label agreement and Spearman's rho (with its interval over layers) of each pair of a comparison."""
    rows = []
    for p in comparison.pairs:
        pair = f"{p['a']} vs {p['b']}"
        rows += [row(section, f"{p['score']} agreement", p["agreement"], p["agreement_lo"], p["agreement_hi"],
                      pair, **where),
                 row(section, f"{p['score']} rho", p["rho"], p["rho_lo"], p["rho_hi"], pair, **where)]
    return rows


def invariance_rows(s: StudySpec, at: Place) -> list[dict[str, Any]]:
    """Invariance of the high-pass scores over initialisations (at each swept epoch) and over epochs (per
    initialisation), in both regimes."""
    rows = []
    for regime in s.regimes:
        if s.source(regime):  # one model: nothing to compare (the page says so, from the skipped rows)
            continue
        config, where = study_config(s, at, regime), {"arch": s.train.arch, "regime": regime}
        sets = dict(arch=s.train.arch, dataset=s.train.dataset, kind="highpass", attack=attack_tag(config),
                    root=config.models_root, scoring=s.scoring)
        for epoch in s.swept_epochs:
            found = study_sets(by="init", epoch=epoch, **sets)
            rows += pair_rows("over inits", compare(found, scoring=s.scoring), epoch=epoch, **where)
        if len(s.swept_epochs) > 1:
            for init in range(1, s.train.inits + 1):
                found = study_sets(by="epoch", init=init, **sets)
                rows += pair_rows("over epochs", compare(found, scoring=s.scoring), init=init, **where)
    return rows


def regime_rows(s: StudySpec, at: Place) -> list[dict[str, Any]]:
    """Standard minus adversarially trained, layer by layer, per initialisation at the final epoch; and the rank
    correlation of the adversarial-score difference with depth (interval from a bootstrap over layers)."""
    rows = []
    standard, adversarial = s.regimes
    for init in shared_inits(s):
        loaded = [regime_result(config.tree_arch, s.train.dataset, "highpass", init, s.final_of(regime), regime,
                                attack=attack_tag(config), root=at.models_root)
                  for regime, config in ((r, study_config(s, at, r)) for r in s.regimes)]
        result = compare_regimes(*loaded, names=s.regimes, scoring=s.scoring)
        cell = {"arch": s.train.arch, "regime": f"{standard} - {adversarial}", "init": init, "epoch": s.train.epochs}
        for r in result.frame.itertuples():
            rows.append(row("regime", f"{r.score} difference", r.diff, r.diff_lo, r.diff_hi,
                             label=r.a_label, other_label=r.b_label, layer=r.layer, depth=r.depth, **cell))
        rows += pair_rows("regime pairs", result.comparison, **cell)
        adv = result.frame[result.frame.score == "adversarial"]
        rho, lo, hi = rank_correlation(adv.depth.to_numpy(float), adv["diff"].to_numpy(float), 0.95, s.scoring.n_boot,
                                       s.train.seed)
        rows.append(row("regime trend", "adversarial difference vs depth rho", rho, lo, hi, **cell))
    return rows


def probe_rows(s: StudySpec, at: Place) -> list[dict[str, Any]]:
    """The re-initialisation probe of every swept checkpoint: each layer's adversarial-accuracy drop with its
    verdict, beside the high-pass adversarial label; the agreement and rho per checkpoint."""
    rows = []
    for (regime, init, epoch), path in run_all_probes(s, at).items():
        meta, probes = load_probes(path)
        tag = attack_tag(study_config(s, at, regime))
        scores = checkpoint_scores(s.train.arch, s.train.dataset, "highpass", init, epoch, attack=tag,
                                   root=at.regime_root(regime), scoring=s.scoring)
        frame, summary = probe_agreement(scores, probes, threshold=s.probe_threshold, depths=meta["depth"],
                                         n_boot=s.scoring.n_boot, seed=s.train.seed)
        cell = {"arch": s.train.arch, "regime": regime, "init": init, "epoch": epoch}
        rows += [row("probe", "adversarial drop", r.drop, r.drop_lo, r.drop_hi, label=r.verdict,
                      other_label=r.label,
                      layer=r.layer, depth=r.depth, **cell) for r in frame.itertuples()]
        rows += [row("probe agreement", "agreement", summary["agreement"], text=str(summary["n_confident"]), **cell),
                 row("probe agreement", "rho", summary["rho"], summary["rho_lo"], summary["rho_hi"], **cell),
                 row("probe agreement", "eps", meta["eps"], **cell)]
    return rows


def depth_rows(s: StudySpec, at: Place) -> list[dict[str, Any]]:
    """``arch`` beside ``depth_arch`` (standard, final epoch, each initialisation) on bins of normalised depth."""
    if not compares_depth(s):
        return []
    rows = []
    for init in range(1, s.train.inits + 1):
        sets = {}
        for arch, config in ((s.train.arch, study_config(s, at, paths.STANDARD)), (s.depth.arch, depth_config(s, at))):
            scored = checkpoint_scores(arch, s.train.dataset, "highpass", init, s.train.epochs,
                                       attack=attack_tag(config),
                                       root=config.models_root, scoring=s.scoring)
            sets[arch] = (scored, arch_depths(arch, s.train.dataset))
        result = compare(binned_sets(sets, s.depth.bins), scoring=s.scoring)
        for score in SCORES:
            for a, arch in enumerate(result.names):
                for b, name in enumerate(result.layers):
                    lo, hi = result.intervals[score][a, b]
                    rows.append(row("depth", score, result.values[score][a, b], lo, hi,
                                     label=result.labels[score][a][b],
                                     arch=arch, regime=paths.STANDARD, init=init, epoch=s.train.epochs, layer=name))
        rows += pair_rows("depth pairs", result, init=init, epoch=s.train.epochs, regime=paths.STANDARD)
    return rows


def retraining_rows(s: StudySpec, at: Place) -> list[dict[str, Any]]:
    """Selective retraining, per score whose labels chose the layers: per variant and metric, the mean accuracy
    over runs and the differences from no retraining and from the matched random sets, with their intervals."""
    cell = {"arch": s.train.arch, "regime": paths.STANDARD, "init": 1, "epoch": s.train.epochs}
    return [r for score, found in run_retraining(s, at).items() for r in variant_rows(f"retrain by {score}", found,
                                                                                      **cell)]


def variant_rows(section: str, found: Sequence[Mapping[str, Any]], **where: Any) -> list[dict[str, Any]]:
    """The rows of one retraining comparison (:func:`robustness.retraining.run_comparison`'s): per variant (its
    layers in ``layer``) and metric, the mean accuracy over runs and the differences from no retraining and from the
    matched random sets, with their intervals."""
    rows = []
    for r in found:
        cell = {**where, "layer": " ".join(r["layers"])}
        for m in ("clean", "fgsm", "pgd"):
            rows.append(row(section, m, r[m], text=r["variant"], **cell))
            for ref in ("none", "random"):
                if f"{m}_vs_{ref}" in r:
                    rows.append(row(section, f"{m} vs {ref}", r[f"{m}_vs_{ref}"], r[f"{m}_vs_{ref}_lo"],
                                    r[f"{m}_vs_{ref}_hi"], r["variant"], **cell))
    return rows


def collect(s: StudySpec, at: Place, record: Mapping[str, Any]) -> pd.DataFrame:
    """The whole table: every number the page cites, from the run's files (each step reads back what it wrote)."""
    from .check import check_rows, skip_rows  # noqa: PLC0415 (check reads the same files; kept apart for size)

    steps = (settings_rows, score_rows, null_rows, ablation_rows, field_rows, check_rows, skip_rows, invariance_rows,
             pgd_rows, regime_rows, probe_rows, depth_rows, retraining_rows, power_rows, skipped_rows)
    rows = [r for step in steps for r in (step(s, at, record) if step is settings_rows else step(s, at))]
    return pd.DataFrame(rows, columns=list(COLUMNS))
