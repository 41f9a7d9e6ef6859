"""Do the probes agree? Per layer the filtering label beside the re-initialisation verdict
(:mod:`robustness.probes.reinit`), their agreement, and ρ between the filtering score and the accuracy drop."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd

from ..errors import InvalidArgument
from ..scoring import CONFIDENT, Scores, rank_correlation, score_correlation
from ..vocab import DEFAULT_BOOT, DEFAULT_CI, Score
from .reinit import DEFAULT_THRESHOLD, ProbeResult, verdicts

MATCH: dict[str, str] = {"fragile": "critical", "robust": "robust", "antifragile": "robust"}


def probe_agreement(
    scores: Scores, probes: Mapping[str, ProbeResult], *, score: Score = "adversarial",
    which: Literal["clean", "adv"] = "adv", threshold: float = DEFAULT_THRESHOLD,
    depths: Mapping[str, float] | None = None, ci: float = DEFAULT_CI, n_boot: int = DEFAULT_BOOT, seed: int = 0,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per layer, the filtering label of ``score`` beside the probe's verdict on the ``which`` accuracy drop
    (critical when its interval lies wholly above ``threshold``), and whether they agree: fragile goes with
    critical, robust and antifragile with robust; a layer either side leaves uncertain has no agreement (NA).

    Returns ``(frame, summary)``: ``frame`` one row per layer (layer, depth, score, its interval and label, drop,
    its interval and verdict, agree); ``summary`` the agreement over the layers both call confidently, their
    number, Spearman's ρ between filtering score and drop over all layers with its interval over layers
    (a fragile layer has a negative score and a large drop, so agreement shows as ρ < 0), the partial ρ with depth
    held out (``partial``, ``partial_lo``, ``partial_hi``; NaN without ``depths``) and the threshold."""
    layers = [name for name in scores if name in probes]
    if not layers:
        raise InvalidArgument("the filtering scores and the probe share no layer")
    verdict = verdicts({x: probes[x] for x in layers}, which, threshold, ci=ci, n_boot=n_boot, seed=seed)
    rows = []
    for x in layers:
        label, v = scores[x]["labels"][score], verdict[x]
        both = label in CONFIDENT and v["verdict"] in ("critical", "robust")
        rows.append({"layer": x, "depth": float((depths or {}).get(x, np.nan)), "score": scores[x][score],
                     "score_lo": scores[x]["ci"][score][0], "score_hi": scores[x]["ci"][score][1], "label": label,
                     "drop": v["drop"], "drop_lo": v["lo"], "drop_hi": v["hi"], "verdict": v["verdict"],
                     "agree": (MATCH[label] == v["verdict"]) if both else None})
    frame = pd.DataFrame(rows)
    decided = [r["agree"] for r in rows if r["agree"] is not None]
    rho, lo, hi = rank_correlation(frame["score"].to_numpy(float), frame["drop"].to_numpy(float), ci, n_boot, seed)
    partial = score_correlation(frame["score"].to_numpy(float), frame["drop"].to_numpy(float),
                                frame["depth"].to_numpy(float), ci=ci, n_boot=n_boot, seed=seed)
    return frame, {"agreement": float(np.mean(decided)) if decided else math.nan, "n_confident": len(decided),
                   "n_layers": len(rows), "rho": rho, "rho_lo": lo, "rho_hi": hi,
                   **{key: partial[key] for key in ("partial", "partial_lo", "partial_hi")}, "threshold": threshold,
                   "score": score, "which": which, "coverage": ci}
