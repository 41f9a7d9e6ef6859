"""The page's sections on the random-null sweeps and the whole-layer ablation, and the verdicts (a), (b), (d), (e)
reached from their rows by the rules of :mod:`robustness.findings.verdicts`.

A table made before those steps existed (an older or partial run) has no such rows: each section then says so in
one line, naming the step that writes them, and its claim is untestable from that table.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from ..scoring import CONFIDENT, interval_label
from .collect_null import ABLATE_STEP, AVAILABLE, IMAGE_SHARE, NULL_STEP
from .tables import Page, ci, missing, short
from .verdicts import (
    UNTESTABLE,
    Estimate,
    Verdict,
    combined_verdict,
    invariance_verdict,
    labels_verdict,
    probe_verdict,
    regime_verdict,
)

SCORE_NAMES = ("clean", "adversarial", "difference")
LABELS = (*CONFIDENT, "uncertain", "undefined")

MEANINGS = [
    "What a label means, against each baseline (an interval wholly below −tau, within ±tau, above +tau):",
    "",
    "- **Against the random null** (the headline): *fragile* — removing the weights in the filter's order (lowest "
    "values first) costs more accuracy than removing as many weights at random; *robust* — the order does not matter "
    "beyond how many weights go; *antifragile* — the filter's order keeps more accuracy than a random one.",
    "- **Against the density baseline**: *fragile* — accuracy falls faster than the layer's weights do; *robust* — it "
    "falls as they do; *antifragile* — it stays up longer than the weights, which is what a layer the network can do "
    "without (a residual branch, BatchNorm re-estimated) shows whatever the filter.",
    "- **Whole-layer ablation** (the layer zeroed, BatchNorm re-estimated): the accuracy drop says whether the "
    "network can do without the layer at all; a drop near 0 explains a density score near its ceiling.",
    "",
]


def has_null(page: Page) -> bool:
    """Whether the table holds the random-null sweeps' rows."""
    return not page.select("null score").empty


def has_ablation(page: Page) -> bool:
    """Whether the table holds the whole-layer ablation's rows."""
    return not page.select("ablation consensus").empty or not page.select("ablation").empty


def _estimates(rows: object) -> list[Estimate]:
    return [Estimate(r.value, r.lo, r.hi) for r in rows.itertuples()]  # type: ignore[attr-defined]


def null_counts(page: Page, regime: str, score: str, section: str = "null score") -> Counter[str]:
    """Layers per consensus label of ``score`` in ``regime`` (seed-level intervals)."""
    return Counter(page.select(section, regime=regime, quantity=score).label)


def verdict_labels(page: Page) -> Verdict:
    """(a): the three labels counted from the random-null consensus of the adversarial score, in each regime."""
    if not has_null(page):
        return _untestable(NULL_STEP)
    return combined_verdict({regime: labels_verdict(null_counts(page, regime, "adversarial"))
                             for regime in page.regimes})


def verdict_invariance(page: Page) -> Verdict:
    """(b): κ of each pair of initialisations' random-null labels and their scores' partial ρ (depth held out)."""
    if not has_null(page):
        return _untestable(NULL_STEP)
    kappas = page.select("null pairs", quantity=tuple(f"{s} kappa" for s in SCORE_NAMES))
    partials = page.select("null pairs", quantity=tuple(f"{s} partial rho" for s in SCORE_NAMES))
    return invariance_verdict(_estimates(kappas), _estimates(partials))


def _regime(page: Page, section: str) -> Verdict:
    rows = page.select(section, quantity="adversarial difference")
    p = page.select(section, quantity="adversarial difference p")
    layers, inits = list(dict.fromkeys(rows.layer)), sorted({int(i) for i in rows.init})
    shape = (len(layers), len(inits))
    arrays = {name: np.full(shape, np.nan) for name in ("diff", "lo", "hi", "p")}
    for frame, names in ((rows, ("diff", "lo", "hi")), (p, ("p",))):
        for r in frame.itertuples():
            at = layers.index(r.layer), inits.index(int(r.init))
            for name, value in zip(names, (r.value, r.lo, r.hi), strict=False):
                arrays[name][at] = value
    return regime_verdict(arrays["diff"], arrays["lo"], arrays["hi"], arrays["p"], float(page.setting("scoring.tau")))


def verdict_regimes(page: Page) -> Verdict:
    """(d): Benjamini–Hochberg over layers × initialisations at the same target accuracy, and Init_1 at one common
    eps; the adversarial score against the random null."""
    if not has_null(page):
        return _untestable(NULL_STEP)
    return combined_verdict({"same target accuracy": _regime(page, "null regime"),
                             f"common eps {page.setting('null.common_eps')}": _regime(page, "common eps")})


def verdict_ablation(page: Page) -> Verdict:
    """(e): the sign test over checkpoints of ρ(random-null adversarial score, ablation drop), depth held out."""
    if not has_null(page) or not has_ablation(page):
        return _untestable(ABLATE_STEP if has_null(page) else NULL_STEP)
    return probe_verdict(_estimates(page.select("ablation rho", quantity="partial rho")))


def _untestable(step: str) -> Verdict:
    return Verdict(UNTESTABLE, "", f"this table has no rows for it: the `{step}` step writes them")


def null_section(page: Page) -> list[str]:
    """The headline: each layer's random-null consensus (seed-level interval), its density label and its ablation
    drop, per regime, with the raw curves' figure."""
    out = ["## (a) The labels against the random null", ""]
    if not has_null(page):
        return out + missing("the random-null sweeps", NULL_STEP)
    masks = page.setting("null.masks")
    out += [f"The final epoch of every initialisation, high-pass on the quantile grid (x = the fraction of the "
            f"layer's weights removed, {page.setting('sweep.thresholds')} points), each point against {masks} random "
            f"masks removing as many weights (attack regenerated), BatchNorm re-estimated, at the checkpoint's "
            f"calibrated eps. A consensus score is the mean over the initialisations; its 95 % interval resamples "
            f"the initialisations and, within each, the images (hierarchical bootstrap, Student's t with I − 1 "
            f"degrees of freedom): with {page.setting('train.inits')} initialisations it is wide, and the label "
            f"follows it. The density column scores the same sweeps against the density baseline (on this grid it "
            f"integrates to exactly 0.5). Sequential evaluation: {_sequential(page)}.", ""]
    for regime in page.regimes:
        scores = page.select("null score", regime=regime)
        density = page.select("density score", regime=regime, quantity="adversarial")
        drops = page.select("ablation consensus", regime=regime, quantity="adversarial drop")
        rows = []
        for layer, group in scores.groupby("layer", sort=False):
            q = {r.quantity: r for r in group.itertuples()}
            d = density[density.layer == layer]
            drop = drops[drops.layer == layer]
            rows.append([f"`{layer}`", f"{group.depth.iloc[0]:.2f}",
                         *(f"{ci(q[s].value, q[s].lo, q[s].hi)} **{short(q[s].label)}**" for s in SCORE_NAMES),
                         f"{ci(d.value.iloc[0], d.lo.iloc[0], d.hi.iloc[0])} {short(d.label.iloc[0])}"
                         if len(d) else "",
                         ci(drop.value.iloc[0], drop.lo.iloc[0], drop.hi.iloc[0]) if len(drop) else "-"])
        counts = {s: null_counts(page, regime, s) for s in SCORE_NAMES}
        dens = null_counts(page, regime, "adversarial", "density score")
        out += [f"**{regime}**: random-null consensus " + "; ".join(
                    f"{s} " + ", ".join(f"{c.get(lab, 0)} {lab}" for lab in LABELS if c.get(lab, 0))
                    for s, c in counts.items())
                + " (density baseline, adversarial: " + ", ".join(f"{dens.get(lab, 0)} {lab}" for lab in LABELS
                                                                  if dens.get(lab, 0)) + ")", "",
                *page.markdown(["layer", "d", "clean (null)", "adversarial (null)", "difference (null)",
                                "adversarial (density)", "ablation: adversarial drop"], rows, "lrrrrrr"), ""]
    if not has_ablation(page):
        out += missing("the whole-layer ablation", ABLATE_STEP)
    return out + ["![relative accuracy against the fraction removed, with the density line and the random null's "
                  "band](findings/raw_curves.png)", ""]


def _sequential(page: Page) -> str:
    used = page.select("null init score", quantity="adversarial")
    if page.setting("null.sequential") != "True" or used.empty:
        return "off, every layer on every image"
    n = used.text.astype(int)
    return (f"on ({page.setting('null.looks')} planned looks, Bonferroni): a layer stops once its random-null labels "
            f"are decided; {int((n < n.max()).sum())} of {len(n)} (layer, checkpoint) sweeps stopped early, using "
            f"{n.sum() / (len(n) * n.max()):.0%} of the images in all. The rule guarantees each initialisation's own "
            f"interval (level 1 − 0.05/looks at every look); the seed-level interval resamples the images each "
            f"initialisation's sweep evaluated")


def null_invariance_section(page: Page) -> list[str]:
    """(b) against the random null: each pair of initialisations' raw share, κ and ρ (raw and partial)."""
    out = ["## (b) Invariance over initialisations, against the random null", ""]
    if not has_null(page):
        return out + missing("the random-null sweeps", NULL_STEP)
    rows = []
    for (regime, pair), group in page.select("null pairs").groupby(["regime", "text"], sort=False):
        q = {r.quantity: r for r in group.itertuples()}
        for s in SCORE_NAMES:
            k = q[f"{s} kappa"]
            kappa = ci(k.value, k.lo, k.hi, 2) if k.value == k.value else "undefined (one label on every layer)"
            rows.append([regime, pair, s, ci(q[f"{s} share"].value, q[f"{s} share"].lo, q[f"{s} share"].hi, 2, ""),
                         kappa, ci(q[f"{s} rho"].value, q[f"{s} rho"].lo, q[f"{s} rho"].hi, 2),
                         ci(q[f"{s} partial rho"].value, q[f"{s} partial rho"].lo, q[f"{s} partial rho"].hi, 2)])
    v = verdict_invariance(page)
    return out + ["Each pair of initialisations, over the layers: the share given the same label, Cohen's κ (the "
                  "share beyond chance), Spearman's ρ of the scores and the partial ρ with normalised depth held out "
                  "(a score that only tracks depth agrees over initialisations for that reason alone); intervals "
                  "from a bootstrap over the layers. The value grid's over-epoch comparison is further below.", "",
                  *page.markdown(["regime", "pair", "score", "share", "κ", "ρ", "partial ρ"], rows, "lllrrrr"), "",
                  f"Verdict: **{v.outcome}** — {v.reason}.", ""]


def null_regime_section(page: Page) -> list[str]:
    """(d) against the random null: Benjamini–Hochberg over layers × initialisations; the common eps."""
    out = ["## (d) Standard against adversarial training, against the random null", ""]
    if not has_null(page):
        return out + missing("the random-null sweeps", NULL_STEP)
    same, common = _regime(page, "null regime"), _regime(page, "common eps")
    moved = same.numbers["sign"]
    layers = list(dict.fromkeys(page.select("null regime", quantity="adversarial difference").layer))
    named = [f"`{x}` ({'+' if m > 0 else '−'})" for x, m in zip(layers, moved, strict=True) if m]
    eps = page.select("common eps", quantity="adversarial difference")
    return out + [f"Adversarial score against the random null, standard minus adversarial, per layer and "
                  f"initialisation, with a two-sided bootstrap p-value; at the same target accuracy (each checkpoint's "
                  f"calibrated eps): {same.reason}. Moved: {', '.join(named) or 'none'}.", "",
                  f"At one common eps {page.setting('null.common_eps')} (Init_1 of each regime, {len(eps)} layers): "
                  f"{common.reason}.", ""]


def ablation_section(page: Page) -> list[str]:
    """(e) against the ablation: per checkpoint ρ(random-null adversarial score, adversarial drop), raw and
    partial."""
    out = ["## (e) Filtering against whole-layer ablation", ""]
    if not has_null(page) or not has_ablation(page):
        return out + missing("the whole-layer ablation", ABLATE_STEP if has_null(page) else NULL_STEP)
    rows = []
    for (regime, init), group in page.select("ablation rho").groupby(["regime", "init"], sort=False):
        q = {r.quantity: r for r in group.itertuples()}
        rows.append([regime, f"{int(init)}", ci(q["rho"].value, q["rho"].lo, q["rho"].hi, 2),
                     ci(q["partial rho"].value, q["partial rho"].lo, q["partial rho"].hi, 2)])
    v = verdict_ablation(page)
    return out + ["Per final-epoch checkpoint, Spearman's ρ between each layer's random-null adversarial score and "
                  "its adversarial-accuracy drop when zeroed (agreement shows as ρ < 0: a fragile layer drops much), "
                  "and the partial ρ with depth held out; intervals from a bootstrap over the layers.", "",
                  *page.markdown(["regime", "init", "ρ(score, drop)", "partial ρ"], rows, "lrrr"), "",
                  f"Verdict: **{v.outcome}** — {v.reason}.", ""]


def images_section(page: Page) -> list[str]:
    """What evaluating fewer images than the test split holds costs the random-null labels: the share of each
    consensus interval's variance the images contribute, how far all of them would narrow it, and how many labels
    narrowing every interval by that much (about its point) would change."""
    shares = page.select(IMAGE_SHARE)
    if shares.empty:
        return []
    used, available = page.images(), int(shares[shares.quantity == AVAILABLE].value.iloc[0])
    if used >= available:
        return []
    tau = float(page.setting("scoring.tau"))
    scores = page.select("null score").set_index(["regime", "layer", "quantity"])
    out, changed, total = [], [], 0
    defined = shares[(shares.quantity != AVAILABLE) & shares.value.notna()]
    for regime, group in defined.groupby("regime", sort=False):
        share = group.value.to_numpy()
        narrow = np.sqrt(1 - share * (1 - used / available))
        out.append(f"{regime}: a median {np.median(share):.0%} (largest {share.max():.0%}), narrowing by a median "
                   f"{1 - np.median(narrow):.0%} (at most {1 - narrow.min():.0%})")
        for r, factor in zip(group.itertuples(), narrow, strict=True):
            s = scores.loc[(regime, r.layer, r.quantity)]
            if np.isnan(s.lo):
                continue
            half = (s.hi - s.lo) / 2 * factor
            total += 1
            if interval_label(s.value - half, s.value + half, tau) != s.label:
                changed.append(f"{regime} `{r.layer}` {r.quantity}")
    mostly = ("the initialisations, which more images do not narrow" if np.median(defined.value) < 0.5 else
              "the images, which more of them would narrow")
    return [f"**Evaluation images.** The sweeps evaluate {used} of the {available} test images not held out for eps "
            f"calibration: a cut that fits the budget. Per random-null consensus score (every layer and score), the "
            f"share of its interval's variance that the images contribute, and how far all {available} would narrow "
            f"it: " + "; ".join(out) + f". Most of the width comes from {mostly}. Narrowing every interval about its "
            f"point by its own factor changes {len(changed)} of {total} labels"
            + (f" ({', '.join(changed)})" if changed else "") + ": that is what the cut costs the headline labels.",
            ""]
