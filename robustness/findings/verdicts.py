"""The verdict rules of the findings page, as pure functions of intervals and counts.

Every claim ends in one word of a fixed vocabulary, reached by a rule the page prints beside it:
**confirmed**, **refuted**, **undecided** (the intervals allow either) or **untestable** (the design cannot
decide it, whatever the data: too much overlap, too few checkpoints, nothing defined). Depth comparisons may also
be **uninformative** (an interval over the whole range of ρ), and the settings check is **within tolerance** or
**tolerance exceeded**. Each function returns a :class:`Verdict`: the outcome, its rule as a sentence, the branch
that decided it with its numbers, and those numbers for the page's tables. The rules are checked in the order
the rule sentence gives them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from ..errors import InvalidArgument
from ..retraining import MAX_OVERLAP
from ..scoring import CONFIDENT, interval_label
from ..stats import agreed_sign, benjamini_hochberg, sign_test
from ..vocab import DEFAULT_TAU, Label

CONFIRMED, REFUTED, UNDECIDED, UNTESTABLE = "confirmed", "refuted", "undecided", "untestable"
UNINFORMATIVE = "uninformative"
WITHIN, EXCEEDED = "within tolerance", "tolerance exceeded"
WEAK = 0.2  # a κ or ρ whose interval lies below this shows at most slight agreement
ALPHA = 0.05  # the false-discovery rate of Benjamini–Hochberg and the level of the sign test


class Estimate(NamedTuple):
    """A number with its interval; NaN when undefined."""

    value: float
    lo: float
    hi: float

    @property
    def defined(self) -> bool:
        """Whether the value and both ends are numbers (an end may be infinite)."""
        return not any(math.isnan(v) for v in self)


@dataclass(frozen=True)
class Verdict:
    """The ``outcome`` of a rule, the ``rule`` as the page states it, the ``reason`` (the branch that decided, with
    its numbers) and those ``numbers``."""

    outcome: str
    rule: str
    reason: str
    numbers: dict[str, Any] = field(default_factory=dict)


LABELS_RULE = ("over the layers' consensus labels against the random null: untestable when no layer has a defined "
               "label; confirmed when fragile, robust and antifragile each label at least one layer; refuted when "
               "one of them labels no layer and no layer is uncertain (every layer decided, so it cannot hide among "
               "them); undecided otherwise")


def labels_verdict(counts: Mapping[str, int]) -> Verdict:
    """(a): does filtering sort the layers into all three labels? ``counts``: layers per consensus label
    (fragile, robust, antifragile, uncertain, undefined), from the random-null scores' seed-level intervals."""
    found = {label: int(counts.get(label, 0)) for label in (*CONFIDENT, "uncertain", "undefined")}
    text = ", ".join(f"{n} {label}" for label, n in found.items())
    missing = [label for label in CONFIDENT if not found[label]]
    if not any(found[label] for label in (*CONFIDENT, "uncertain")):
        return Verdict(UNTESTABLE, LABELS_RULE, f"no layer has a defined label ({text})", found)
    if not missing:
        return Verdict(CONFIRMED, LABELS_RULE, f"every label occurs: {text}", found)
    if not found["uncertain"]:
        return Verdict(REFUTED, LABELS_RULE, f"no layer is {' or '.join(missing)} and none is uncertain: {text}",
                       found)
    return Verdict(UNDECIDED, LABELS_RULE, f"no layer is {' or '.join(missing)} yet, {found['uncertain']} uncertain: "
                                           f"{text}", found)


INVARIANCE_RULE = ("over every pair compared: untestable when no κ and no partial ρ is defined; refuted when some "
                   "κ's or partial ρ's interval lies wholly below {weak:g} (at most slight agreement beyond chance, or "
                   "beyond depth); confirmed when every κ is defined and every κ's and partial ρ's interval lies "
                   "above 0; undecided otherwise")


def invariance_verdict(kappas: Sequence[Estimate], partials: Sequence[Estimate], weak: float = WEAK) -> Verdict:
    """(b): are the labels and scores a property of the layer? ``kappas``: Cohen's κ of each pair's labels (NaN when
    one label covers every layer); ``partials``: each pair's Spearman ρ with depth partialled out."""
    kappas, partials = [Estimate(*k) for k in kappas], [Estimate(*p) for p in partials]
    rule = INVARIANCE_RULE.format(weak=weak)
    defined = [e for e in (*kappas, *partials) if e.defined]
    numbers = {"kappa_undefined": sum(not k.defined for k in kappas), "pairs": len(kappas),
               "kappa_range": _range([k.value for k in kappas]), "partial_range": _range([p.value for p in partials])}
    text = (f"κ {numbers['kappa_range']} ({numbers['kappa_undefined']} of {len(kappas)} undefined), partial ρ "
            f"{numbers['partial_range']}")
    if not defined:
        return Verdict(UNTESTABLE, rule, f"nothing defined: {text}", numbers)
    weak_ones = [e for e in defined if e.hi < weak]
    if weak_ones:
        return Verdict(REFUTED, rule, f"{len(weak_ones)} interval(s) below {weak:g}: {text}", numbers)
    if all(k.defined for k in kappas) and all(e.defined and e.lo > 0 for e in (*kappas, *partials)):
        return Verdict(CONFIRMED, rule, f"every interval above 0: {text}", numbers)
    return Verdict(UNDECIDED, rule, text, numbers)


RETRAINING_RULE = (f"untestable when a stratified random set shares more than {MAX_OVERLAP:.0%} of the chosen layers "
                   f"in expectation (the design's overlap, fixed before any set is drawn: no outcome could separate "
                   f"them); confirmed when the interval of chosen minus random "
                   f"lies wholly above the equivalence margin {{margin:g}}; refuted when it lies wholly below it (any "
                   f"gain is smaller than the margin); undecided when it contains the margin")


def retraining_verdict(difference: Estimate, overlap: float, margin: float) -> Verdict:
    """(c), one comparison: ``difference`` is chosen minus random sets (an interval over seeds, sets and images),
    ``overlap`` the mean share of the chosen layers in a random set, ``margin`` the equivalence margin fixed before
    the run."""
    difference = Estimate(*difference)
    if not margin >= 0:
        raise InvalidArgument(f"the equivalence margin is a number >= 0, got {margin!r}: fix it in the settings")
    rule = RETRAINING_RULE.format(margin=margin)
    numbers = {"diff": difference.value, "lo": difference.lo, "hi": difference.hi, "overlap": overlap,
               "margin": margin}
    text = (f"{difference.value:+.3f} [{difference.lo:+.3f}, {difference.hi:+.3f}], overlap {overlap:.0%}, margin "
            f"{margin:g}")
    if math.isnan(overlap) or overlap > MAX_OVERLAP or not difference.defined:
        return Verdict(UNTESTABLE, rule, text, numbers)
    if difference.lo > margin:
        return Verdict(CONFIRMED, rule, text, numbers)
    if difference.hi < margin:
        return Verdict(REFUTED, rule, text, numbers)
    return Verdict(UNDECIDED, rule, text, numbers)


COMBINED_RULE = ("over the comparisons the claim names: confirmed when every one is confirmed; untestable when every "
                 "one is untestable; refuted when some are refuted and none confirmed; undecided otherwise")


def combined_verdict(verdicts: Mapping[str, Verdict]) -> Verdict:
    """One verdict from several comparisons of one claim (``{what: Verdict}``, e.g. FGSM and PGD, both regimes)."""
    outcomes = [v.outcome for v in verdicts.values()]
    reason = "; ".join(f"{what}: {v.outcome} ({v.reason})" for what, v in verdicts.items())
    numbers = {what: v.outcome for what, v in verdicts.items()}
    if not outcomes or all(o == UNTESTABLE for o in outcomes):
        return Verdict(UNTESTABLE, COMBINED_RULE, reason or "no comparison", numbers)
    if all(o == CONFIRMED for o in outcomes):
        return Verdict(CONFIRMED, COMBINED_RULE, reason, numbers)
    if REFUTED in outcomes and CONFIRMED not in outcomes:
        return Verdict(REFUTED, COMBINED_RULE, reason, numbers)
    return Verdict(UNDECIDED, COMBINED_RULE, reason, numbers)


REGIME_RULE = ("Benjamini–Hochberg at {alpha:g} over every (layer, initialisation) score difference; a layer counts "
               "as moved when every initialisation's difference survives it with one sign. Untestable when no "
               "difference is defined; confirmed when some layer moved; refuted when every difference's interval "
               "lies within ±{margin:g}; undecided otherwise")


def regime_verdict(diff: np.ndarray, lo: np.ndarray, hi: np.ndarray, p: np.ndarray, margin: float = DEFAULT_TAU,
                   alpha: float = ALPHA) -> Verdict:
    """(d): does adversarial training move the scores? Arrays of shape ``(layers, initialisations)``: each
    difference (standard minus adversarial), its interval and its two-sided bootstrap p-value."""
    diff, lo, hi, p = (np.asarray(a, dtype=float) for a in (diff, lo, hi, p))
    rule = REGIME_RULE.format(alpha=alpha, margin=margin)
    q, reject = benjamini_hochberg(p, alpha)
    moved = agreed_sign(diff, reject)
    defined = ~np.isnan(p)
    numbers = {"tests": int(defined.sum()), "significant": int(reject.sum()), "moved": int((moved != 0).sum()),
               "moved_up": int((moved > 0).sum()), "moved_down": int((moved < 0).sum()),
               "uncorrected": int((p[defined] <= alpha).sum()), "q": q, "sign": moved}
    text = (f"{numbers['uncorrected']} of {numbers['tests']} differences at p <= {alpha:g}, {numbers['significant']} "
            f"after Benjamini–Hochberg; {numbers['moved']} layers moved with one sign in every initialisation "
            f"({numbers['moved_up']} up, {numbers['moved_down']} down)")
    if not defined.any():
        return Verdict(UNTESTABLE, rule, "no difference is defined", numbers)
    if numbers["moved"]:
        return Verdict(CONFIRMED, rule, text, numbers)
    if np.all((lo[defined] >= -margin) & (hi[defined] <= margin)):
        return Verdict(REFUTED, rule, f"{text}; every interval within ±{margin:g}", numbers)
    return Verdict(UNDECIDED, rule, text, numbers)


PROBE_RULE = ("over the checkpoints' partial ρ(score, drop) with depth held out: untestable when there are too few "
              "for the sign test to reach {alpha:g}; confirmed when the sign test finds more negative ρ than chance "
              "at {alpha:g} and no interval lies above 0; refuted when it finds more positive ρ, or when every "
              "interval lies above −{weak:g} (no checkpoint shows even a weak negative relation); undecided otherwise")


def probe_verdict(partials: Sequence[Estimate], alpha: float = ALPHA, weak: float = WEAK) -> Verdict:
    """(e): do filtering and the probe agree on which layers matter? ``partials``: per checkpoint, Spearman's ρ of
    filtering score and accuracy drop with depth held out (agreement shows as ρ < 0: a fragile layer drops much)."""
    found = [Estimate(*e) for e in partials if Estimate(*e).defined]
    positive, negative, p = sign_test(np.array([e.value for e in found]))
    numbers = {"checkpoints": len(found), "negative": negative, "positive": positive, "sign_p": p,
               "below_0": sum(e.hi < 0 for e in found), "above_0": sum(e.lo > 0 for e in found),
               "range": _range([e.value for e in found])}
    text = (f"{len(found)} checkpoints, partial ρ {numbers['range']}: {negative} negative, {positive} positive (sign "
            f"test p = {p:.3f}); {numbers['below_0']} intervals below 0, {numbers['above_0']} above")
    rule = PROBE_RULE.format(alpha=alpha, weak=weak)
    if 2 * 0.5 ** len(found) >= alpha:
        return Verdict(UNTESTABLE, rule, f"{text}; the sign test cannot reach {alpha:g} with {len(found)}", numbers)
    if p < alpha and negative > positive and not numbers["above_0"]:
        return Verdict(CONFIRMED, rule, text, numbers)
    if (p < alpha and positive > negative) or all(e.lo > -weak for e in found):
        return Verdict(REFUTED, rule, text, numbers)
    return Verdict(UNDECIDED, rule, text, numbers)


def bin_labels(bins: Mapping[str, Estimate], tau: float = DEFAULT_TAU) -> dict[str, Label]:
    """Each depth bin's label from its own interval (:func:`robustness.scoring.interval_label`), not from its
    layers' labels."""
    return {name: interval_label(Estimate(*e).lo, Estimate(*e).hi, tau) for name, e in bins.items()}


DEPTH_RULE = ("uninformative when the interval spans the whole range [−1, +1]; untestable when undefined; confirmed "
              "when it lies above 0; refuted when below; undecided otherwise")


def depth_verdict(rho: Estimate) -> Verdict:
    """A depth comparison (e.g. ρ of two regimes' bin scores, or of a score with depth): ``uninformative`` when its
    interval reaches both −1 and +1, as a ρ over a handful of bins does."""
    rho = Estimate(*rho)
    text = f"ρ {rho.value:+.2f} [{rho.lo:+.2f}, {rho.hi:+.2f}]"
    if not rho.defined:
        return Verdict(UNTESTABLE, DEPTH_RULE, "ρ undefined", {})
    if rho.lo <= -1 + 1e-9 and rho.hi >= 1 - 1e-9:
        return Verdict(UNINFORMATIVE, DEPTH_RULE, text, {})
    outcome = CONFIRMED if rho.lo > 0 else REFUTED if rho.hi < 0 else UNDECIDED
    return Verdict(outcome, DEPTH_RULE, text, {})


SETTINGS_RULE = ("within tolerance when every score changes by at most {tolerance:g} and no label changes; tolerance "
                 "exceeded otherwise")


def settings_verdict(largest: Mapping[str, float], labels_changed: Mapping[str, int], tolerance: float) -> Verdict:
    """The settings check: ``largest[comparison]`` is the largest score change of that comparison (e.g. thresholds,
    BatchNorm images, both) and ``labels_changed[comparison]`` how many labels it changed."""
    exceeded = [f"{what} {largest[what]:.3f}" + (f", {labels_changed.get(what, 0)} labels changed"
                                                 if labels_changed.get(what, 0) else "")
                for what in largest if largest[what] > tolerance or labels_changed.get(what, 0)]
    numbers = {"largest": dict(largest), "labels_changed": dict(labels_changed), "tolerance": tolerance}
    rule = SETTINGS_RULE.format(tolerance=tolerance)
    if exceeded:
        return Verdict(EXCEEDED, rule, f"beyond {tolerance:g} or changing a label: {'; '.join(exceeded)}",
                       numbers)
    return Verdict(WITHIN, rule, f"every change at most {tolerance:g}, no label changed", numbers)


def _range(values: Sequence[float]) -> str:
    found = [v for v in values if not math.isnan(v)]
    return f"{min(found):+.2f} to {max(found):+.2f}" if found else "undefined"
