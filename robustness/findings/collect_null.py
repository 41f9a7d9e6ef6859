"""The findings table's rows from the random-null sweeps and the whole-layer ablation (issue 32's headline).

Per regime and layer: the consensus scores over initialisations against the random null and against the density
baseline (both from the same quantile-grid sweeps), each with its seed-level interval
(:func:`robustness.scoring.layer_consensus`, the hierarchical bootstrap); every initialisation's own score;
Cohen's κ and Spearman's ρ (raw and with depth partialled out) between each pair of initialisations; the
standard-minus-adversarial difference per layer and initialisation with its bootstrap p-value (at the calibrated
eps and at the one common eps); the ablation's accuracy drop per initialisation and over them; and per checkpoint
ρ(score, drop), raw and partial.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from itertools import combinations
from typing import Any

import numpy as np

from ..data import SPLIT_SIZES
from ..filtering import SweepResult, load_results
from ..models import arch_depths
from ..probes import ProbeResult, load_probes
from ..scoring import Scoring, filtering_scores, image_draws, label_agreement, layer_consensus, score_correlation
from ..stats import (
    bootstrap_counts,
    bootstrap_p_value,
    cluster_draws,
    cluster_interval,
    percentile_interval,
    resampled_mean,
    standard_error,
)
from ..study import result_path
from ..vocab import SCORES
from .spec import Place, StudySpec
from .steps import (
    null_checkpoints,
    null_config,
    null_scoring,
    probed_regimes,
    run_ablations,
    shared_inits,
    study_config,
    study_depths,
)
from .table import row

# the steps that write these rows (the page names them when missing)
NULL_STEP, ABLATE_STEP = "random-null", "ablate"
# per consensus random-null score, the share of its interval's variance the evaluation images contribute
IMAGE_SHARE, AVAILABLE = "null image share", "available images"


def null_sweeps(s: StudySpec, at: Place, regime: str, init: int, eps: float | None = None) -> dict[str, SweepResult]:
    """The random-null sweeps of one final-epoch checkpoint, by layer (``eps``: the common eps's; default the
    calibrated one's)."""
    config = null_config(s, at, regime, init, eps)
    return load_results(result_path(config, init, s.final_of(regime), "highpass", "local"))[1]


def null_scores(s: StudySpec, at: Place) -> dict[str, float]:
    """The standard regime's consensus random-null adversarial score of every layer at the final epoch, over the
    initialisations (what the retraining with power ranks the layers by)."""
    per_init = [null_sweeps(s, at, s.regimes[0], init) for init in s.inits_of(s.regimes[0])]
    return {layer: float(c["adversarial"]) for layer, c in layer_consensus(per_init, null_scoring(s)).items()}


def _consensus(section: str, found: Mapping[str, Mapping[str, Any]], depths: Mapping[str, float],
               **where: Any) -> list[dict[str, Any]]:
    return [row(section, score, c[score], *c["ci"][score], label=c["labels"][score], layer=layer,
                depth=depths[layer], **where) for layer, c in found.items() for score in SCORES]


def _pairs(per_init: Sequence[Mapping[str, Mapping[str, Any]]], depths: Mapping[str, float], s: StudySpec,
           **where: Any) -> list[dict[str, Any]]:
    """κ and ρ (raw, partial) of each pair of initialisations' per-layer random-null labels and scores."""
    rows = []
    layers = list(per_init[0])
    depth = np.array([depths[x] for x in layers])
    for (i, a), (j, b) in combinations(enumerate(per_init, 1), 2):
        pair = f"Init_{i} vs Init_{j}"
        for score in SCORES:
            agree = label_agreement([a[x]["labels"][score] for x in layers], [b[x]["labels"][score] for x in layers],
                                    ci=s.scoring.ci, n_boot=s.scoring.n_boot, seed=s.scoring.seed)
            rho = score_correlation(np.array([a[x][score] for x in layers]), np.array([b[x][score] for x in layers]),
                                    depth, ci=s.scoring.ci, n_boot=s.scoring.n_boot, seed=s.scoring.seed)
            rows += [row("null pairs", f"{score} share", agree["share"], agree["share_lo"], agree["share_hi"], pair,
                         **where),
                     row("null pairs", f"{score} kappa", agree["kappa"], agree["kappa_lo"], agree["kappa_hi"], pair,
                         **where),
                     row("null pairs", f"{score} rho", rho["rho"], rho["rho_lo"], rho["rho_hi"], pair, **where),
                     row("null pairs", f"{score} partial rho", rho["partial"], rho["partial_lo"], rho["partial_hi"],
                         pair, **where)]
    return rows


def _differences(section: str, a: Mapping[str, SweepResult], b: Mapping[str, SweepResult], scoring: Scoring,
                 depths: Mapping[str, float], **where: Any) -> list[dict[str, Any]]:
    """Per layer, each score of ``a`` minus ``b`` with its percentile interval and two-sided bootstrap p-value. Both
    are resampled with the same seed: on the same images (as both regimes are) the draws are paired; where a
    sequential sweep stopped one of them early they are independent, which widens the interval."""
    rows = []
    for layer in (x for x in a if x in b):
        (pa, da), (pb, db) = image_draws(a[layer], scoring, scoring.seed), image_draws(b[layer], scoring, scoring.seed)
        draws = da - db
        lo, hi = percentile_interval(draws, scoring.ci)
        p = bootstrap_p_value(draws)
        for k, score in enumerate(SCORES):
            cell = {"layer": layer, "depth": depths[layer], **where}
            rows += [row(section, f"{score} difference", pa[k] - pb[k], lo[k], hi[k], **cell),
                     row(section, f"{score} difference p", p[k], **cell)]
    return rows


def null_rows(s: StudySpec, at: Place) -> list[dict[str, Any]]:
    """Every row of the random-null sweeps (see the module docstring)."""
    depths = {regime: study_depths(study_config(s, at, regime)) for regime in s.regimes}
    scoring, density = null_scoring(s), replace(s.scoring, baseline="density")
    epoch, rows = s.train.epochs, []
    sweeps = {(regime, init): null_sweeps(s, at, regime, init) for regime, init, _ in null_checkpoints(s)}
    for regime in s.regimes:
        where = {"arch": s.train.arch, "regime": regime, "epoch": s.final_of(regime)}
        per_init = [sweeps[regime, init] for init in s.inits_of(regime)]
        if len(per_init) > 1:  # a consensus needs two initialisations (the skipped rows say so)
            consensus = layer_consensus(per_init, scoring)
            rows += _consensus("null score", consensus, depths[regime], **where)
            rows += [row(IMAGE_SHARE, score, c["image_share"][score], layer=layer, depth=depths[regime][layer],
                         **where) for layer, c in consensus.items() for score in SCORES]
            rows += _consensus("density score", layer_consensus(per_init, density), depths[regime], **where)
        scored = []
        for init, found in enumerate(per_init, 1):
            scored.append({layer: filtering_scores(r, scoring) for layer, r in found.items()})
            for layer, f in scored[-1].items():
                rows += [row("null init score", score, f[score], *f["ci"][score], str(f["n_images"]),
                             label=f["labels"][score], init=init, layer=layer, depth=depths[regime][layer],
                             **where) for score in SCORES]
        rows += _pairs(scored, depths[regime], s, **where)
    rows.append(row(IMAGE_SHARE, AVAILABLE, SPLIT_SIZES[s.train.dataset][1] - s.sweep.eps_images,
                    arch=s.train.arch, epoch=epoch))
    standard, adversarial = s.regimes
    pair = {"arch": s.train.arch, "regime": f"{standard} - {adversarial}", "epoch": epoch}
    for init in shared_inits(s):
        rows += _differences("null regime", sweeps[standard, init], sweeps[adversarial, init], scoring,
                             depths[standard], init=init, **pair)
    common = {regime: null_sweeps(s, at, regime, 1, s.null.common_eps) for regime in s.regimes}
    rows += _differences("common eps", common[standard], common[adversarial], scoring, depths[standard], init=1,
                         text=f"{s.null.common_eps:g}", **pair)
    for regime, found in common.items():
        rows += [row("common eps", score, f[score], *f["ci"][score], f"{s.null.common_eps:g}", label=f["labels"][score],
                     arch=s.train.arch, regime=regime, init=1, epoch=s.final_of(regime), layer=layer,
                     depth=depths[regime][layer])
                 for layer, f in ((x, filtering_scores(r, scoring)) for x, r in found.items()) for score in SCORES]
    return rows


def _drop_draws(result: ProbeResult, which: str, n_boot: int, seed: int) -> tuple[float, np.ndarray]:
    """An ablated layer's accuracy drop (reference minus ablated) and its ``n_boot`` paired image resamples."""
    probed = np.atleast_2d(getattr(result, f"{which}_correct"))
    ref = np.asarray(getattr(result, f"ref_{which}_correct"))
    counts = bootstrap_counts(len(ref), n_boot, seed)
    return float(ref.mean() - probed.mean()), resampled_mean(ref, counts) - resampled_mean(probed, counts).mean(1)


def ablation_rows(s: StudySpec, at: Place) -> list[dict[str, Any]]:
    """The whole-layer ablation: each layer's clean and adversarial accuracy drop per initialisation (paired
    bootstrap over the images) and over the initialisations (hierarchical bootstrap, as the consensus scores);
    per checkpoint ρ(random-null adversarial score, adversarial drop), raw and with depth partialled out."""
    files = run_ablations(s, at)
    depths = arch_depths(s.train.arch, s.train.dataset)
    scoring, n_boot, seed = null_scoring(s), s.scoring.n_boot, s.scoring.seed
    rows = []
    for regime in probed_regimes(s):
        where = {"arch": s.train.arch, "regime": regime, "epoch": s.train.epochs}
        probes = [load_probes(files[regime, init, s.train.epochs])[1] for init in s.inits_of(regime)]
        for layer in probes[0]:
            for which, name in (("clean", "clean drop"), ("adv", "adversarial drop")):
                found = [_drop_draws(p[layer], which, n_boot, seed + i) for i, p in enumerate(probes)]
                for init, (drop, draws) in enumerate(found, 1):
                    rows.append(row("ablation", name, drop, *percentile_interval(draws, s.scoring.ci), init=init,
                                    layer=layer, depth=depths[layer], **where))
                if len(found) > 1:
                    inner = np.stack([d for _, d in found])[..., None]
                    point = np.array([np.mean([d for d, _ in found])])
                    lo, hi = cluster_interval(point, cluster_draws(inner, n_boot, seed), len(found), s.scoring.ci,
                                              within=(standard_error(inner.transpose(1, 0, 2)) ** 2).mean(0))
                    rows.append(row("ablation consensus", name, point[0], lo[0], hi[0], layer=layer,
                                    depth=depths[layer], **where))
        for init, p in enumerate(probes, 1):
            sweeps = null_sweeps(s, at, regime, init)
            layers = [x for x in p if x in sweeps]
            score = np.array([filtering_scores(sweeps[x], scoring)["adversarial"] for x in layers])
            drop = np.array([_drop_draws(p[x], "adv", 1, seed)[0] for x in layers])
            rho = score_correlation(score, drop, np.array([depths[x] for x in layers]), ci=s.scoring.ci,
                                    n_boot=n_boot, seed=seed)
            rows += [row("ablation rho", "rho", rho["rho"], rho["rho_lo"], rho["rho_hi"], init=init, **where),
                     row("ablation rho", "partial rho", rho["partial"], rho["partial_lo"], rho["partial_hi"],
                         init=init, **where)]
    return rows
