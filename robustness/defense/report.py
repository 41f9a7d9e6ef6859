"""What the defense evaluation reports: per-example worst cases, intervals, the gain, distances, tables.

The worst case is taken *per example*: an image counts as robust only if it is classified
correctly in every attacked row. The minimum of the rows' accuracies is not enough: two
attacks that each fool a different 40 % of the images leave 60 % by the minimum, but only
20 % survive both. The undefended model's worst case under the same ensemble is the
reference: ``gain = worst_case - undefended_worst_case``, with a paired bootstrap interval
(both worst cases are recomputed on the same resampled images).

Gradient masking: Square (score-based) never reads a gradient, so where the defended system's
worst case over the white-box rows alone lies above its accuracy under Square, the white-box
attacks are failing for want of a useful gradient, not for want of adversarial images. The rule:
a column is flagged ``possible gradient masking`` when the paired bootstrap interval of
``white_box_worst_case - square`` lies entirely above 0 (a difference of a few images among many
is noise, and is not flagged).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ..errors import InvalidArgument
from ..report import format_table
from ..stats import bootstrap_counts, percentile_interval, resampled_mean, wilson_interval

if TYPE_CHECKING:
    from .perturbation import Defense

# Every row the evaluation can report, in table order; a row is missing when its attack is not in the ensemble.
ROWS = ("clean", "attacked", "undefended_pgd", "undefended_apgd_ce", "undefended_apgd_dlr", "undefended_square",
        "undefended_worst_case", "defended_clean", "defended_attacked", "transfer", "adaptive", "apgd_ce", "apgd_dlr",
        "square", "white_box_worst_case", "worst_case")
# The rows in which the defended system is under attack; ``worst_case`` is their per-example AND.
ATTACKED_ROWS = ("defended_attacked", "transfer", "adaptive", "apgd_ce", "apgd_dlr", "square")
# The attacked rows that follow a gradient; ``white_box_worst_case`` is their per-example AND.
WHITE_BOX_ROWS = ATTACKED_ROWS[:-1]
# The same for the undefended model; ``undefended_worst_case`` is their per-example AND.
UNDEFENDED_ROWS = ("attacked", "undefended_pgd", "undefended_apgd_ce", "undefended_apgd_dlr", "undefended_square")


def per_example_worst_case(correct: Mapping[str, np.ndarray], rows: Sequence[str]) -> np.ndarray:
    """Per image, whether it is correct in every one of ``rows`` that ``correct`` holds (boolean array)."""
    present = [np.asarray(correct[row], dtype=bool) for row in rows if row in correct]
    if not present:
        raise InvalidArgument(f"none of the rows {list(rows)} was evaluated: got {sorted(correct)}")
    return np.logical_and.reduce(present)


def distance_bounds(eps: float, budget: float) -> dict[str, float]:
    """How far each row's images may lie from ``x`` in the attack's norm: 0 for ``clean``, ``eps`` for an
    attack on ``x``, ``budget`` for ``D(x)``, and ``budget + eps`` for a defended image that is also attacked
    (in either order); ``inf`` with an unbounded defense."""
    bounds = {"clean": 0.0, "defended_clean": budget}
    bounds.update(dict.fromkeys(UNDEFENDED_ROWS, eps))
    bounds.update(dict.fromkeys(ATTACKED_ROWS, budget + eps))
    return bounds


def summarise_defense(
    correct: Mapping[str, np.ndarray],
    distance: Mapping[str, np.ndarray],
    defense: Defense,
    *,
    ci: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    **meta: Any,
) -> dict[str, Any]:
    """One column of the defense table from per-image outcomes: ``correct[row]`` (booleans) and
    ``distance[row]`` (the image's distance from ``x``), every row over the same images.

    Returns each row's accuracy, ``worst_case`` and ``undefended_worst_case`` (per example over
    :data:`ATTACKED_ROWS` and :data:`UNDEFENDED_ROWS`), ``intervals`` (row: Wilson interval at
    coverage ``ci``), ``gain`` and ``gain_interval`` (paired bootstrap percentile interval,
    ``n_boot`` resamples seeded by ``seed``), ``distances`` (row: mean, max and the bound of
    :func:`distance_bounds`), the defense's ``label``, ``oracle``, ``norm``, ``eps`` and ``budget``
    (``inf`` when unbounded), ``examples``, ``ci``, and ``meta`` as given. JSON-ready. With a ``square``
    row also ``white_box_worst_case`` (over :data:`WHITE_BOX_ROWS`), ``masking_gap`` (its excess over
    ``square``) with ``masking_gap_interval`` (paired bootstrap) and ``gradient_masking`` (the module's rule).
    """
    outcomes = {row: np.asarray(v, dtype=bool) for row, v in correct.items()}
    outcomes["worst_case"] = per_example_worst_case(outcomes, ATTACKED_ROWS)
    outcomes["undefended_worst_case"] = per_example_worst_case(outcomes, UNDEFENDED_ROWS)
    if "square" in outcomes:
        outcomes["white_box_worst_case"] = per_example_worst_case(outcomes, WHITE_BOX_ROWS)
    n = len(outcomes["clean"])
    rows = [row for row in ROWS if row in outcomes]
    result: dict[str, Any] = {row: float(outcomes[row].mean()) for row in rows}
    result["intervals"] = {row: list(wilson_interval(int(outcomes[row].sum()), n, ci)) for row in rows}
    gain = outcomes["worst_case"].astype(float) - outcomes["undefended_worst_case"]
    lo, hi = percentile_interval(resampled_mean(gain, bootstrap_counts(n, n_boot, seed)), ci)
    result.update(gain=float(gain.mean()), gain_interval=[float(lo), float(hi)])
    if "square" in outcomes:
        gap = outcomes["white_box_worst_case"].astype(float) - outcomes["square"]
        lo, hi = percentile_interval(resampled_mean(gap, bootstrap_counts(n, n_boot, seed + 1)), ci)
        result.update(masking_gap=float(gap.mean()), masking_gap_interval=[float(lo), float(hi)],
                      gradient_masking=bool(lo > 0))
    bounds = distance_bounds(defense.eps, defense.bound)
    result["distances"] = {row: {"mean": float(np.mean(distance[row])), "max": float(np.max(distance[row])),
                                 "bound": bounds[row]} for row in rows if row in distance}
    result.update(label=defense.label, oracle=defense.oracle, norm=defense.norm, eps=defense.eps,
                  budget=defense.bound, examples=n, ci=ci, **meta)
    return result


def result_rows(results: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The evaluation of :func:`robustness.defense.evaluation.defense_table` as one flat row per (threat, label, row),
    for a CSV or a data frame: the accuracy with its interval (``lo``, ``hi``) and the images' distance from
    ``x`` (mean, max, bound); each column's ``gain`` is a row too, with its bootstrap interval."""
    out = []
    for key, res in results.items():
        threat, _, label = key.partition("/")
        common = {"threat": threat, "label": label, "oracle": res.get("oracle"), "norm": res.get("norm"),
                  "eps": res.get("eps"), "budget": res.get("budget"), "examples": res.get("examples"),
                  "ci": res.get("ci")}
        for row in (r for r in ROWS if r in res):
            lo, hi = res.get("intervals", {}).get(row, (math.nan, math.nan))
            distance = res.get("distances", {}).get(row, {})
            out.append({**common, "row": row, "accuracy": res[row], "lo": lo, "hi": hi,
                        **{f"distance_{k}": distance.get(k, math.nan) for k in ("mean", "max", "bound")}})
        if "gain" in res:
            out.append({**common, "row": "gain", "accuracy": res["gain"], "lo": res["gain_interval"][0],
                        "hi": res["gain_interval"][1]})
    return out


def _accuracy_cell(result: Mapping[str, Any], row: str) -> str:
    if row not in result:
        return ""
    interval = result.get("intervals", {}).get(row)
    return f"{result[row]:.3f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")


def _distance_cell(result: Mapping[str, Any], row: str) -> str:
    d = result.get("distances", {}).get(row)
    return f"{d['mean']:.3f} / {d['max']:.3f} <= {d['bound']:.3g}" if d else ""


def _ensemble_note(result: Mapping[str, Any]) -> str:
    attacks = ", ".join(result["ensemble"]) or "none"
    square = f", Square {result.get('square_queries')} queries" if "square" in result["ensemble"] else ""
    return (f"{attacks} (PGD {result.get('restarts')} restarts, APGD {result.get('apgd_steps')} steps{square}, "
            f"EOT {result.get('eot_samples')} samples)")


def _masking_cell(result: Mapping[str, Any]) -> str:
    if "gradient_masking" not in result:
        return ""
    lo, hi = result["masking_gap_interval"]
    verdict = "POSSIBLE GRADIENT MASKING" if result["gradient_masking"] else "no"
    return f"{verdict}: {result['masking_gap']:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def format_results(results: Mapping[str, Mapping[str, Any]]) -> str:
    """The evaluation as text: accuracy with its interval per row and column, the gain, and the distances.

    Columns of oracle results are headed ``[ORACLE]``, with a note under the table.
    """
    names = {key: f"{key} [ORACLE]" if res.get("oracle") else key for key, res in results.items()}
    rows = [row for row in ROWS if any(row in res for res in results.values())]
    ci = "/".join(sorted({f"{100 * res.get('ci', 0.95):g}%" for res in results.values()})) + " interval"
    table = [{"accuracy": row, **{names[k]: _accuracy_cell(res, row) for k, res in results.items()}} for row in rows]
    if any("gain" in res for res in results.values()):
        table.append({"accuracy": "gain", **{names[k]: (f"{res['gain']:+.3f} [{res['gain_interval'][0]:+.3f}, "
                                                         f"{res['gain_interval'][1]:+.3f}]" if "gain" in res else "")
                                             for k, res in results.items()}})
    if any("gradient_masking" in res for res in results.values()):
        table.append({"accuracy": "white-box - square", **{names[k]: _masking_cell(res) for k, res in results.items()}})
    lines = [f"accuracy [{ci}]", format_table(table)]
    if any("distances" in res for res in results.values()):
        norms = sorted({str(res.get("norm")) for res in results.values()})
        distances = [{"distance from x": row, **{names[k]: _distance_cell(res, row) for k, res in results.items()}}
                     for row in rows if any(row in res.get("distances", {}) for res in results.values())]
        lines += ["", f"distance from x in the attack's norm ({', '.join(norms)}): mean / max <= bound",
                  format_table(distances)]
    lines += ["", "worst_case, undefended_worst_case: per example (an image counts only if it survives every "
                  "attacked row); gain = worst_case - undefended_worst_case, paired bootstrap interval.",
              "A defended image that is also attacked may lie up to budget + eps from x."]
    if any("gradient_masking" in res for res in results.values()):
        lines.append("white-box - square: white_box_worst_case (every attacked row but Square) minus Square's "
                     "accuracy, paired bootstrap interval; possible gradient masking when the interval lies above 0.")
    ensembles = {key: _ensemble_note(res) for key, res in results.items() if "ensemble" in res}
    if len(set(ensembles.values())) == 1:
        lines.append(f"ensemble: {next(iter(ensembles.values()))}")
    else:
        lines += [f"ensemble of {key}: {note}" for key, note in ensembles.items()]
    if any(res.get("oracle") for res in results.values()):
        lines.append("[ORACLE]: the defense used the true test labels, which a deployed system does not have.")
    unbounded = [key for key, res in results.items() if math.isinf(float(res.get("budget", 0)))]
    if unbounded:
        lines.append(f"unbounded defense (budget = inf, as asked) in: {', '.join(unbounded)}")
    return "\n".join(lines)


def defense_figure(results: Mapping[str, Mapping[str, Any]], title: str = "defensive perturbation") -> Figure:
    """Accuracy per row with its interval, one marker per column (oracle columns marked), the worst cases in red."""
    rows = [row for row in ROWS if any(row in res for res in results.values())]
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(rows) * max(1, len(results)) ** 0.5 + 1.5))
    offsets = np.linspace(-0.25, 0.25, len(results)) if len(results) > 1 else [0.0]
    for offset, (key, res) in zip(offsets, results.items(), strict=True):
        ys = [i + offset for i, row in enumerate(rows) if row in res]
        values = [res[row] for row in rows if row in res]
        intervals = [res.get("intervals", {}).get(row, (res[row], res[row])) for row in rows if row in res]
        # Wilson bounds at 0 or 1 may miss the value by a rounding error: never a negative bar.
        err = np.clip([[v - lo for v, (lo, _) in zip(values, intervals, strict=True)],
                       [hi - v for v, (_, hi) in zip(values, intervals, strict=True)]], 0, None)
        label = f"{key} [ORACLE]" if res.get("oracle") else key
        if res.get("gradient_masking"):
            label += " (possible gradient masking)"
        ax.errorbar(values, ys, xerr=err, fmt="o", capsize=2, label=label)
    ax.set_yticks(range(len(rows)), rows)
    for tick in ax.get_yticklabels():
        if tick.get_text().endswith("worst_case"):
            tick.set_color("tab:red")
    ax.invert_yaxis()
    coverage = "/".join(sorted({f"{100 * res.get('ci', 0.95):g}%" for res in results.values()}))
    ax.set(xlabel=f"accuracy ({coverage} interval)", xlim=(-0.02, 1.02), title=title)
    ax.legend(fontsize="small", loc="lower right")
    return fig
