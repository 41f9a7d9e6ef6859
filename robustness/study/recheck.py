"""The PGD re-check: is a layer that FGSM calls robust or antifragile only hiding the gradient?

Filtering a layer can weaken the input gradient that FGSM follows, and a weaker attack
looks like robustness. Every layer whose FGSM adversarial or difference label is robust
or antifragile is therefore swept again with PGD-L∞ (20 steps, 2 restarts by default),
at the same eps, thresholds and images (:func:`robustness.study.runner.run_recheck`).

PGD is stronger than FGSM everywhere, at the unfiltered model too, so the two are
compared by what filtering does to each: the *gain* of FGSM over PGD ::

    g = ∫₀¹ [(A_fgsm(t̂) − A_fgsm,ref) − (A_pgd(t̂) − A_pgd,ref)] dt̂

(Simpson's rule on the same grid), with its standard error from the paired bootstrap over
the images (the same resamples for both attacks). ``g > 2 SE`` flags the layer: under
filtering, FGSM accuracy rises, or falls less, than PGD accuracy, beyond the noise.
The re-checked layer's PGD labels are reported beside the FGSM ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import paths
from ..attacks import FGSM, make_attack
from ..errors import InvalidArgument
from ..files import save_csv
from ..filtering import SweepResult, load_results
from ..scoring import DEFAULT_SCORING, Scoring, describe, filtering_scores, integrate, layer_scores, outcomes
from ..stats import bootstrap_counts, percentile_interval, resampled_mean, standard_error
from ..vocab import DEFAULT_BOOT, DEFAULT_CI
from .plan import StudyConfig, attack_tag
from .runner import run_recheck

RECHECKED = ("robust", "antifragile")  # FGSM labels that call for a re-check
ON_SCORES = ("adversarial", "difference")


def candidates(scored: Mapping[str, Mapping[str, Any]], limit: int | None = None) -> list[str]:
    """The layers of one checkpoint's :func:`robustness.scoring.scores.layer_scores` that FGSM labels robust or
    antifragile on the adversarial or difference score, in module order; with ``limit``, only that many,
    those with the highest adversarial score (the most robust-looking) first."""
    found = [name for name, s in scored.items() if any(s["labels"][k] in RECHECKED for k in ON_SCORES)]
    if limit is None:
        return found
    kept = sorted(found, key=lambda name: -scored[name]["adversarial"])[:limit]
    return [name for name in found if name in kept]


def fgsm_gain(
    fgsm: SweepResult, pgd: SweepResult, *, ci: float = DEFAULT_CI, n_boot: int = DEFAULT_BOOT, seed: int = 0
) -> dict[str, Any]:
    """The gain ``g`` of FGSM over PGD under filtering, its bootstrap SE and interval, and the flag ``g > 2 SE``.

    Both sweeps must be of the same layer, thresholds and images (the unfiltered clean outcomes must match).
    """
    a, b = outcomes(fgsm), outcomes(pgd)
    if fgsm.layer != pgd.layer or not np.array_equal(fgsm.thresholds, pgd.thresholds) \
            or not np.array_equal(a.ref_clean, b.ref_clean):
        raise InvalidArgument(
            f"the PGD re-check of {describe(pgd)} is not of the same layer, thresholds and images as the FGSM sweep "
            f"of {describe(fgsm)}: delete the PGD result file and rerun the re-check"
        )
    shift = np.stack([a.adv, b.adv])  # (2, T, n)
    reference = np.stack([a.ref_adv, b.ref_adv])  # (2, n)

    def gain(counts: np.ndarray) -> np.ndarray:
        acc, ref = resampled_mean(shift, counts), resampled_mean(reference, counts)  # (draws, 2, T), (draws, 2)
        drop = acc - ref[..., None]
        return integrate(drop[:, 0] - drop[:, 1])

    point = float(gain(np.ones((1, a.n), dtype=np.int64))[0])
    draws = gain(bootstrap_counts(a.n, n_boot, seed))
    se = float(standard_error(draws))
    lo, hi = percentile_interval(draws, ci)
    # The tolerance keeps rounding (1e-17) from flagging two sweeps that fall exactly alike.
    return {"gain": point, "se": se, "ci": (float(lo), float(hi)), "flagged": bool(point > 2 * se + 1e-12)}


def recheck_rows(
    fgsm: Mapping[str, SweepResult], scored: Mapping[str, Mapping[str, Any]], pgd: Mapping[str, SweepResult],
    scoring: Scoring = DEFAULT_SCORING,
) -> list[dict[str, Any]]:
    """One row per re-checked layer of one checkpoint: FGSM and PGD labels, the gain, its SE and the flag.

    ``scored`` is :func:`robustness.scoring.layer_scores` of the FGSM sweeps, scored as ``scoring`` says.
    """
    rows = []
    for name, result in pgd.items():
        pgd_labels = filtering_scores(result, scoring)["labels"]
        g = fgsm_gain(fgsm[name], result, ci=scoring.ci, n_boot=scoring.n_boot, seed=scoring.seed)
        rows.append({"layer": name, **{f"fgsm {k}": scored[name]["labels"][k] for k in ON_SCORES},
                     **{f"pgd {k}": pgd_labels[k] for k in ON_SCORES}, "gain": g["gain"], "se": g["se"],
                     "flagged": g["flagged"]})
    return rows


def recheck_study(
    config: StudyConfig, *, steps: int = 20, restarts: int = 2, scoring: Scoring = DEFAULT_SCORING,
    checkpoints: Sequence[tuple[int, int]] | None = None, limit: int | None = None,
) -> list[dict[str, Any]]:
    """Re-check with PGD every layer the study's FGSM local sweeps label robust or antifragile (adversarial or
    difference score); return one row per re-checked layer and save them as CSV beside the scores tables.

    Runs :func:`robustness.study.runner.run_recheck` (resumable: finished PGD sweeps are read back, not rerun) per
    filter of ``config`` on the checkpoints whose FGSM result files exist (or only ``checkpoints``); ``limit``
    re-checks at most that many layers per checkpoint (:func:`candidates`).
    """
    rows = []
    for kind in config.kinds:
        found = {}
        for path in paths.list_sweep_results(config.tree_arch, config.dataset, kind, "local",
                                             config.models_root).get(attack_tag(config), {}).values():
            meta, results = load_results(path)
            if checkpoints is None or (meta["init"], meta["epoch"]) in checkpoints:
                found[meta["init"], meta["epoch"]] = results, layer_scores(results, scoring)
        todo = {c: candidates(scored, limit) for c, (_, scored) in found.items() if candidates(scored)}
        written = run_recheck(replace(config, kinds=(kind,)), todo, steps=steps, restarts=restarts) if todo else {}
        kind_rows = [{"init": init, "epoch": epoch, "filter": kind, **row}
                     for (init, epoch), path in written.items()
                     for row in recheck_rows(*found[init, epoch], load_results(path)[1], scoring)]
        if kind_rows:
            save_recheck(kind_rows, config, scoring.baseline)
        rows += kind_rows
    return rows


def config_from_meta(meta: Mapping[str, Any], **runtime: Any) -> StudyConfig:
    """The FGSM study that wrote a local result file with ``meta``, for :func:`recheck_study`; ``runtime`` sets
    what files do not record (``models_root``, ``data_root``, ``device``, ``channels_last``, ``batch_size``)."""
    needed = ("arch", "dataset", "kind", "thresholds", "grid", "layers", "subset", "seed", "calibrate_eps",
              "calibration_images", "bn", "bn_images", "null_masks", "precision")
    missing = [key for key in needed if key not in meta]
    if missing:
        raise InvalidArgument(f"a result file's meta lacks {', '.join(missing)}, which the PGD re-check needs: rerun "
                              f"the filter command to rewrite it, or leave out --recheck")
    # A calibrated study records no attack parameters: its eps is found per checkpoint (and read back).
    attack = make_attack(**meta["attack_params"]) if "attack_params" in meta else FGSM(1.0)
    # Counts a mode does not use are recorded as 0; the config keeps its defaults for them.
    # (the files name the eps hold-out "calibration_images", as they did before StudyConfig named it eps_images)
    optional = {"eps_images": meta["calibration_images"], "bn_images": meta["bn_images"]}
    return StudyConfig(
        attack=attack, arch=meta["arch"], dataset=meta["dataset"], kinds=(meta["kind"],), scopes=("local",),
        thresholds=meta["thresholds"], grid=meta["grid"], layers=tuple(meta["layers"]) if meta["layers"] else None,
        subset=meta["subset"], seed=meta["seed"], calibrate_eps=meta["calibrate_eps"], bn=meta["bn"],
        random_baseline=meta["null_masks"] > 0, null_masks=meta["null_masks"], precision=meta["precision"],
        source=meta.get("source"),
        **{k: v for k, v in optional.items() if v}, **runtime,
    )


def recheck_results(
    arch: str, dataset: str, *, kinds: Sequence[str], attack: str | None = None,
    root: str | Path = paths.DEFAULT_MODELS_ROOT, runtime: Mapping[str, Any] | None = None, steps: int = 20,
    restarts: int = 2, scoring: Scoring = DEFAULT_SCORING,
) -> list[dict[str, Any]]:
    """:func:`recheck_study` of every FGSM study (attack tag) whose local results of ``kinds`` exist under ``root``
    (or only ``attack``), its set-up read from the result files, with PGD of ``steps`` steps and ``restarts``
    starts, scored as ``scoring`` says."""
    rows = []
    for kind in kinds:
        for tag, units in paths.list_sweep_results(arch, dataset, kind, "local", root).items():
            if tag.startswith("fgsm") and (attack is None or tag == attack):
                meta = load_results(next(iter(units.values())))[0]
                config = config_from_meta(meta, models_root=str(root), **(runtime or {}))
                rows += recheck_study(config, steps=steps, restarts=restarts, scoring=scoring)
    return rows


def save_recheck(rows: Sequence[Mapping[str, Any]], config: StudyConfig, baseline: str) -> Path:
    """Write one filter's re-check rows as a plain CSV beside its scores tables."""
    path = paths.scores_table_path(config.tree_arch, config.dataset, rows[0]["filter"], "local", "pgd_recheck",
                                   config.models_root, tag=f"{attack_tag(config)}_{baseline}")
    return save_csv(rows, path)
