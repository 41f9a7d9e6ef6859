"""The evidence for the run's sizes: fewer thresholds, fewer BatchNorm images, and whether images can be skipped.

The settings check (:func:`robustness.findings.steps.check_config`) sweeps a subset of layers of each
regime's final Init_1 checkpoint at the full setting (``check_thresholds`` thresholds, ``check_bn_images``
BatchNorm images). Three comparisons follow, each as the largest score change and the number of labels
that change:

- **thresholds**: the full sweep's scores against the same sweep read at every k-th threshold only (the value
  grid of ``thresholds`` points is exactly every k-th point of the ``check_thresholds`` grid, so this isolates
  Simpson's rule on fewer points: :func:`every_kth`);
- **BatchNorm images**: the main study's sweeps (``thresholds``, ``bn_images``) against the full sweep read at
  every k-th threshold (the same grid: only the BatchNorm images and the eps they calibrate differ);
- **both**: the main study's sweeps against the full setting.

:func:`skip_rows` asks whether images the filtered model already misclassifies clean need attacking: if robust
accuracy counted only clean-correct images they would not, so it measures how often an image misclassified
clean is classified correctly after FGSM (then skipping it changes the number) and how many attacks skipping
would save.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from ..errors import InvalidArgument
from ..filtering import SweepResult, load_results
from ..scoring import layer_scores
from ..study import result_path
from ..vocab import SCORES
from .spec import Place, StudySpec
from .steps import check_config, study_config
from .table import row

SETTINGS = ("full", "thresholds", "chosen")  # the full sweep; it at every k-th threshold; the main study's


def every_kth(result: SweepResult, k: int) -> SweepResult:
    """``result`` read at every ``k``-th threshold only (the first and the last kept): a sweep on a coarser grid."""
    points = len(result.thresholds)
    if k < 1 or (points - 1) % k:
        raise InvalidArgument(f"a sweep of {points} thresholds has no sub-grid of every {k}-th point")
    keep = slice(None, None, k)
    per_point = ("thresholds", "clean_acc", "adv_acc", "clean_loss", "adv_loss", "removed", "removed_fraction")
    arrays = {name: getattr(result, name)[keep] for name in ("clean_correct", "adv_correct")
              if getattr(result, name) is not None}
    return replace(result, **{name: list(getattr(result, name))[keep] for name in per_point}, **arrays)


def _stride(s: StudySpec, at: Place) -> int:
    """k such that the main grid is every k-th point of the check's grid."""
    if (s.check.thresholds - 1) % (s.sweep.thresholds - 1):
        raise InvalidArgument(f"check_thresholds - 1 ({s.check.thresholds - 1}) must be a multiple of thresholds - 1 "
                              f"({s.sweep.thresholds - 1}): the main grid must be a sub-grid of the check's")
    return (s.check.thresholds - 1) // (s.sweep.thresholds - 1)


def check_rows(s: StudySpec, at: Place) -> list[dict[str, Any]]:
    """Per regime, checked layer and score: the score and label at each setting of :data:`SETTINGS`; per regime
    the eps of the check and of the main study."""
    rows = []
    for regime in s.regimes:
        check = check_config(s, at, regime)
        full_meta, full = load_results(result_path(check, 1, 0, "highpass", "local"))
        final = s.final_of(regime)
        main_meta, main = load_results(result_path(study_config(s, at, regime), 1, final, "highpass", "local"))
        k = _stride(s, at)
        layers = list(full)
        scored = {"full": layer_scores(full, s.scoring),
                  "thresholds": layer_scores({x: every_kth(full[x], k) for x in layers}, s.scoring),
                  "chosen": layer_scores({x: main[x] for x in layers}, s.scoring)}
        where = {"arch": s.train.arch, "regime": regime, "init": 1, "epoch": final}
        for setting, found in scored.items():
            for layer in layers:
                for score in SCORES:
                    lo, hi = found[layer]["ci"][score]
                    rows.append(row("check", f"{setting} {score}", found[layer][score], lo, hi,
                                     label=found[layer]["labels"][score], layer=layer, **where))
        rows += [row("check", "full eps", full_meta["eps"], **where),
                 row("check", "chosen eps", main_meta["eps"], **where)]
    return rows


def skip_rows(s: StudySpec, at: Place) -> list[dict[str, Any]]:
    """Per regime over every high-pass sweep at the final epoch: the share of (threshold, image) pairs misclassified
    clean (the attacks skipping would save), the share of those classified correctly after FGSM, and the largest
    change of an adversarial score if those were counted as misclassified."""
    rows = []
    for regime in s.regimes:
        config = study_config(s, at, regime)
        wrong = leaked = total = 0
        largest = 0.0
        for init in s.inits_of(regime):
            results = load_results(result_path(config, init, s.final_of(regime), "highpass", "local"))[1]
            as_is = layer_scores(results, s.scoring)
            strict = layer_scores({x: _clean_correct_only(r) for x, r in results.items()}, s.scoring)
            for x, r in results.items():
                wrong += int((~r.clean_correct).sum())
                leaked += int((~r.clean_correct & r.adv_correct).sum())
                total += r.clean_correct.size
                change = abs(strict[x]["adversarial"] - as_is[x]["adversarial"])
                largest = max(largest, 0.0 if np.isnan(change) else change)
        where = {"arch": s.train.arch, "regime": regime, "epoch": s.final_of(regime)}
        rows += [row("skip", "misclassified clean", wrong / total, text=str(total), **where),
                 row("skip", "of those correct after FGSM", leaked / max(wrong, 1), text=str(wrong), **where),
                 row("skip", "largest adversarial score change", largest, **where)]
    return rows


def _clean_correct_only(result: SweepResult) -> SweepResult:
    """``result`` with an image counted adversarially correct only where it is also correct clean."""
    adv = result.adv_correct & result.clean_correct
    ref = result.ref_adv_correct & result.ref_clean_correct
    return replace(result, adv_correct=adv, ref_adv_correct=ref, adv_acc=[float(a.mean()) for a in adv],
                   ref_adv_acc=float(ref.mean()))
