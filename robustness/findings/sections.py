"""The sections of the findings page below its claims table, each from the findings table alone."""

from __future__ import annotations

import math

import numpy as np

from ..scoring import consensus
from .tables import Page, ci, ordinal, short
from .verdicts import Estimate, bin_labels, depth_verdict, settings_verdict

SCORE_NAMES = ("clean", "adversarial", "difference")


def _figure(name: str, caption: str) -> list[str]:
    return [f"![{caption}](findings/{name}.png)", ""]


def checks_section(page: Page) -> list[str]:
    """The settings check: the full setting against fewer thresholds and fewer BatchNorm images; skipping images."""
    thresholds, bn = page.setting("sweep.thresholds"), page.setting("sweep.bn_images")
    full_t, full_bn = page.setting("check.thresholds"), page.setting("check.bn_images")
    tolerance = float(page.setting("check.tolerance"))
    rows, changes = [], {"thresholds": [], "BatchNorm images": [], "both": []}
    labels_changed = {key: 0 for key in changes}
    checked = page.select("check")
    for (regime, layer), group in checked[checked.layer != ""].groupby(["regime", "layer"], sort=False):
        for score in SCORE_NAMES:
            got = {setting: group[group.quantity == f"{setting} {score}"].iloc[0]
                   for setting in ("full", "thresholds", "chosen")}
            rows.append([regime, layer, score, *(f"{ci(r.value, r.lo, r.hi)} {short(r.label)}" for r in got.values())])
            for key, (a, b) in {"thresholds": ("full", "thresholds"), "BatchNorm images": ("thresholds", "chosen"),
                                "both": ("full", "chosen")}.items():
                delta = abs(got[a].value - got[b].value)
                changes[key].append(0.0 if math.isnan(delta) else delta)
                labels_changed[key] += got[a].label != got[b].label
    n = len(rows)
    summary = [[key, f"{max(values):.3f}", f"{np.mean(values):.3f}", f"{labels_changed[key]} of {n}"]
               for key, values in changes.items()]
    eps = [[r.regime, f"{r.value:.4f}"] for r in checked[checked.quantity == "full eps"].itertuples()]
    eps_run = {r.regime: f"{r.value:.4f}" for r in checked[checked.quantity == "chosen eps"].itertuples()}
    skip = page.select("skip")
    saved = skip[skip.quantity == "misclassified clean"].value.max()
    skip_text = []
    for regime, group in skip.groupby("regime", sort=False):
        q = {r.quantity: r.value for r in group.itertuples()}
        skip_text.append(
            f"- {regime}: {q['misclassified clean']:.1%} of the (threshold, image) pairs of the final epoch's "
            f"high-pass sweeps are misclassified clean; {q['of those correct after FGSM']:.1%} of those are "
            f"classified correctly after FGSM, and counting them as misclassified changes an adversarial score by "
            f"at most {q['largest adversarial score change']:.3f}.")
    stride = ordinal((int(full_t) - 1) // (int(thresholds) - 1))
    full = checked[checked.quantity.str.startswith("full ") & (checked.layer != "")]
    half_width = float(((full.hi - full.lo) / 2).mean())
    checked_verdict = settings_verdict({key: max(values) for key, values in changes.items()}, labels_changed,
                                       tolerance)
    verdict = (f"Verdict: **{checked_verdict.outcome}** ({checked_verdict.rule}): {checked_verdict.reason}."
               + ("" if checked_verdict.outcome == "within tolerance" else
                  " The run's sizes do not stand for the labels near the ±tau boundary: they carry that caveat."))
    return [
        "## The sizes, and the evidence for them",
        "",
        *_left_out(page),
        f"The full setting is {full_t} thresholds per sweep and BatchNorm statistics re-estimated on {full_bn} "
        f"training images; the run uses {thresholds} thresholds and {bn} images, which is what makes every layer of "
        f"{page.swept_checkpoints()} checkpoints fit in the budget. The check sweeps {len(checked.layer.unique()) - 1} "
        f"layers spread over the depth of each regime's final Init_1 at the full setting, on the same "
        f"{page.images()} evaluation images, and compares three ways: *thresholds* reads the full sweep at every "
        f"{stride} threshold only (the run's grid is exactly that sub-grid, so this isolates Simpson's rule on fewer "
        f"points); *BatchNorm images* compares that with the run's own sweep (same grid; only the BatchNorm images "
        f"differ, and the eps they calibrate); *both* compares the run with the full setting. Tolerance: "
        f"{tolerance:g} on every score, no label changed.",
        "",
        *page.markdown(["compared", "largest score change", "mean change", "labels changed"], summary),
        "",
        f"{verdict} For scale: the checked scores' 95 % intervals have a mean half-width of {half_width:.3f}.",
        "",
        "Eps calibrated at the full setting: " + ", ".join(f"{r} {e} (run: {eps_run[r]})" for r, e in eps) + ".",
        "",
        "<details><summary>Every checked score (F fragile, R robust, A antifragile, U uncertain)</summary>",
        "",
        *page.markdown(["regime", "layer", "score", f"full: {full_t} thresholds, {full_bn} BN images",
                        f"{thresholds} thresholds, {full_bn} BN images",
                        f"run: {thresholds} thresholds, {bn} BN images"], rows, "lllrrr"),
        "",
        "</details>",
        "",
        f"**Images.** Every one of the {page.images()} evaluation images is attacked (none of them among the "
        f"{page.setting('sweep.eps_images')} held out for eps calibration). Adversarial accuracy here counts every "
        f"image, so an image misclassified clean can still count as correct after the attack, and skipping it is not "
        f"exact:",
        "",
        *skip_text,
        "",
        f"Skipping those images would save at most {saved:.1%} of the attacks (and be exact only where no such image "
        f"turns correct): too little for a second code path, so every image is attacked.",
        "",
    ]


def _left_out(page: Page) -> list[str]:
    """What the spec leaves out of the full design to fit its budget, one item each (nothing when it leaves out
    nothing)."""
    items = []
    if page.setting("early_epoch") == page.setting("train.epochs"):
        items.append("only the final epoch is swept and probed (the random-null sweeps and the whole-layer ablation "
                     "take the time an earlier epoch's sweeps would): the over-epochs half of (b) is not tested")
    if page.setting("lowpass_inits") in ("", "()"):
        items.append("no low-pass sweep: against the random null the question is whether the high-pass order "
                     "matters at all, which the null answers for the one filter")
    if page.setting("retrain_scores") in ("", "()"):
        items.append("no retraining of every layer a label chose: such a set shares most of its layers with any "
                     "random set, so (c) is tested by the top/bottom-k retraining only")
    if not items:
        return []
    return ["What this run leaves out of the full design, to fit its budget:", "", *(f"- {x}." for x in items), ""]


def _mean_sd(values: list[float]) -> str:
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return "-"
    sd = f" ± {np.std(finite, ddof=1):.3f}" if len(finite) > 1 else ""
    return f"{np.mean(finite):+.3f}{sd}"


def score_cell(values: list[float], labels: list[str]) -> str:
    """A layer's score over the initialisations: mean ± SD, each one's label (a letter), then the consensus."""
    return f"{_mean_sd(values)} {''.join(map(short, labels))} → **{consensus(labels)}**"


def labels_section(page: Page) -> list[str]:
    """(a): each checkpoint's eps and accuracy; per regime the final epoch's scores and labels of every layer."""
    arch = page.setting("train.arch")
    checkpoints = []
    for (regime, init, epoch), group in page.select("checkpoint", arch=arch).groupby(["regime", "init", "epoch"],
                                                                                        sort=False):
        q = {r.quantity: r for r in group.itertuples()}
        checkpoints.append([regime, f"{int(init)}", f"{int(epoch)}", f"{q['eps'].value:.4f}",
                            _acc(q["clean accuracy"]), _acc(q["adversarial accuracy"])])
    out = [
        "## The value grid against the density baseline (the swept epochs)",
        "",
        f"Each checkpoint's FGSM eps is calibrated so that the unfiltered model reaches adversarial accuracy "
        f"{page.setting('sweep.calibrate_eps')} on {page.setting('sweep.eps_images')} held-out test images; "
        f"accuracies on the "
        f"{page.images()} evaluation images, with Wilson intervals:",
        "",
        *page.markdown(["regime", "init", "epoch", "eps", "clean accuracy", "adversarial accuracy"], checkpoints,
                       "lrrrrr"),
        "",
        f"High-pass scores at the final epoch ({page.setting('scoring.baseline')} baseline, tau "
        f"{page.setting('scoring.tau')}): mean ± SD over the "
        f"initialisations, each initialisation's label, then the consensus (the label all give, else uncertain). "
        f"The low-pass column is Init_1's adversarial label. Against the density baseline, *antifragile* means "
        f"that a layer keeps its (relative) accuracy longer than its weights as the threshold rises, *robust* that "
        f"accuracy falls as the weights do, *fragile* that it falls faster; a layer inside a residual block can lose "
        f"every weight and still pass its input on through the shortcut.",
        "",
    ]
    for regime in page.regimes:
        rows = []
        cells = {score: page.cell_labels(regime, score, page.final) for score in SCORE_NAMES}
        lowpass = page.cell_labels(regime, "adversarial", page.final, kind="lowpass")
        scores = page.select("score", arch=arch, regime=regime, epoch=page.final)
        for layer in cells["adversarial"]:
            row = [f"`{layer}`", f"{scores[scores.layer == layer].depth.iloc[0]:.2f}"]
            for score in SCORE_NAMES:
                values = scores[(scores.layer == layer) & (scores.quantity == f"highpass {score}")].value.tolist()
                row.append(score_cell(values, cells[score][layer]))
            row.append(short(lowpass[layer][0]) if layer in lowpass else "")
            rows.append(row)
        counts = page.consensus_counts(regime, "adversarial")
        early = page.consensus_counts(regime, "adversarial", page.epochs()[0])
        out += [f"**{regime}**, epoch {page.final}: adversarial consensus "
                + ", ".join(f"{counts.get(lab, 0)} {lab}" for lab in ("fragile", "robust", "antifragile", "uncertain"))
                + f" (epoch {page.epochs()[0]}: "
                + ", ".join(f"{early.get(lab, 0)} {lab}" for lab in ("fragile", "robust", "antifragile", "uncertain"))
                + ")", "",
                *page.markdown(["layer", "d", "clean", "adversarial", "difference", "low-pass"], rows, "lrrrrl"), "",
                *_figure(f"scores_{regime}", f"high-pass scores of the {regime} model")]
    return out


def _acc(r: object) -> str:
    return f"{r.value:.3f} [{r.lo:.3f}, {r.hi:.3f}]"  # type: ignore[attr-defined]


def invariance_section(page: Page) -> list[str]:
    """(b): label agreement and rho over initialisations (each epoch) and over epochs (each initialisation)."""
    rows = []
    for section, where in (("over inits", "epoch"), ("over epochs", "init")):
        chosen = page.select(section)
        for (regime, at, pair), group in chosen.groupby(["regime", where, "text"], sort=False):
            q = {r.quantity: r for r in group.itertuples()}
            for score in SCORE_NAMES:
                a, r = q[f"{score} agreement"], q[f"{score} rho"]
                rows.append([regime, f"{section}: {where} {int(at)}", pair, score, ci(a.value, a.lo, a.hi, 2, ""),
                             ci(r.value, r.lo, r.hi, 2)])
    return ["## Invariance on the value grid (density baseline)", "",
            "Over the layers of two checkpoints: the share given the same label, and Spearman's rho of the scores, "
            "each with a 95 % interval from a bootstrap over the layers.", "",
            *page.markdown(["regime", "compared", "pair", "score", "label agreement", "rho"], rows, "llllrr"), "",
            *([] if len(page.epochs()) > 1 else
              ["Only the final epoch was swept (`early_epoch` equals `train.epochs`): no comparison over epochs.", ""])]


def retraining_section(page: Page) -> list[str]:
    """(c): selective retraining against matched random layer sets, one table per score the layers were chosen by
    (nothing when the run made none: the retraining that can tell tests (c))."""
    if not retraining_sections(page):
        return []
    out = ["## (c) Selective retraining", "",
           f"The standard model's final Init_1 retrained for one epoch of {page.setting('retraining.subset')} training "
           f"images as its trainer would (its optimiser state, learning rate and batch size, BatchNorm in train "
           f"mode), {page.setting('retraining.seeds')} seeds per variant, against "
           f"{page.setting('retraining.random_sets')} "
           f"random layer sets matched in size (the closest in parameter count); mean accuracy over the runs, "
           f"differences with paired bootstrap intervals over the test images. The robust and antifragile layers are "
           f"those every initialisation labels so, by the adversarial score and, separately, by the difference "
           f"score.", ""]
    for section in retraining_sections(page):
        chosen = page.retrained(section, "robust+antifragile")
        shared = page.random_overlap(section)
        overlap = "" if math.isnan(shared) else f"; a random set shares {shared:.0%} of them on average"
        out += [f"**Layers chosen by the {section.removeprefix('retrain by ')} score**: "
                f"{', '.join(f'`{x}`' for x in chosen) or 'none'} ({len(chosen)} layers{overlap}).", "",
                *retraining_table(page, section), "",
                *_figure(f"retraining_{section.removeprefix('retrain by ')}",
                         f"selective retraining by the {section.removeprefix('retrain by ')} labels")]
    return out


def retraining_table(page: Page, section: str) -> list[str]:
    """One retraining comparison as a table: per variant its size, mean accuracies and differences with intervals."""
    rows = []
    for variant, group in page.select(section).groupby("text", sort=False):
        q = {r.quantity: r for r in group.itertuples()}
        size = len(group.layer.iloc[0].split()) if group.layer.iloc[0] else 0
        row = [variant, "" if variant.startswith("random (") else f"{size}",
               *(f"{q[m].value:.3f}" for m in ("clean", "fgsm", "pgd"))]
        row += [ci(q[key].value, q[key].lo, q[key].hi) if key in q else ""
                for key in ("fgsm vs none", "fgsm vs random", "pgd vs random")]
        rows.append(row)
    pgd = f"PGD ({page.setting('retraining.pgd_steps')} steps)"
    return page.markdown(["retrained", "layers", "clean", "FGSM", pgd, "FGSM vs none", "FGSM vs random sets",
                          "PGD vs random sets"], rows)


def retraining_sections(page: Page) -> list[str]:
    """The retraining comparisons' sections (``retrain by <score>``), in table order."""
    return [x for x in dict.fromkeys(page.frame.section) if x.startswith("retrain by ")]


def regime_section(page: Page) -> list[str]:
    """(d): standard minus adversarially trained, per layer and initialisation; agreement; the depth trend."""
    diffs = page.select("regime", quantity=("adversarial difference",))
    rows = []
    for layer, group in diffs.groupby("layer", sort=False):
        cells = [ci(r.value, r.lo, r.hi) for r in group.itertuples()]
        labels = " ".join(f"{r.label}→{r.other_label}" for r in group.itertuples())
        rows.append([f"`{layer}`", f"{group.depth.iloc[0]:.2f}", *cells, labels])
    inits = [f"Init_{int(i)}" for i in diffs.init.unique()]
    pairs = page.select("regime pairs", quantity=tuple(f"{s} {q}" for s in SCORE_NAMES for q in ("agreement", "rho")))
    pair_rows = []
    for (init, score), group in pairs.assign(score=pairs.quantity.str.split().str[0]).groupby(["init", "score"],
                                                                                               sort=False):
        q = {r.quantity.split()[1]: r for r in group.itertuples()}
        agree = q["agreement"]
        pair_rows.append([f"Init_{int(init)}", score, ci(agree.value, agree.lo, agree.hi, 2, ""),
                          ci(q["rho"].value, q["rho"].lo, q["rho"].hi, 2)])
    trend = [[f"Init_{int(r.init)}", ci(r.value, r.lo, r.hi, 2), depth_verdict(Estimate(r.value, r.lo, r.hi)).outcome]
             for r in page.select("regime trend").itertuples()]
    standard, adversarial = page.regimes
    return ["## Standard against adversarial training on the value grid", "",
            f"Adversarial score of the {standard} model minus the {adversarial} model's, layer by layer, both "
            f"calibrated to the same adversarial accuracy on the same images (paired intervals), and the labels "
            f"({standard}→{adversarial}) per initialisation:", "",
            *page.markdown(["layer", "d", *inits, "labels"], rows, "lr" + "r" * len(inits) + "l"), "",
            "Label agreement and rho between the regimes' scores (bootstrap over layers):", "",
            *page.markdown(["", "score", "label agreement", "rho"], pair_rows), "",
            "Where the difference sits: Spearman's rho of the adversarial-score difference with normalised depth "
            "(positive: the standard model's scores exceed the adversarial one's more in deep layers; bootstrap over "
            "layers; *uninformative* when the interval spans [−1, +1]):", "",
            *page.markdown(["", "rho(difference, depth)", "verdict"], trend), "",
            *_figure("regimes", "standard against adversarial training, Init_1")]


def probe_section(page: Page) -> list[str]:
    """(e): the re-initialisation probe beside the filtering labels."""
    summary = page.select("probe agreement")
    rows = []
    for (regime, init, epoch), group in summary.groupby(["regime", "init", "epoch"], sort=False):
        q = {r.quantity: r for r in group.itertuples()}
        agree = q["agreement"]
        rows.append([regime, f"{int(init)}", f"{int(epoch)}", f"{q['eps'].value:.4f}",
                     "-" if math.isnan(agree.value) else f"{agree.value:.2f} of {agree.text}",
                     ci(q["rho"].value, q["rho"].lo, q["rho"].hi, 2)])
    final = page.select("probe", init=1, epoch=page.final)
    layers = []
    for layer, group in final.groupby("layer", sort=False):
        layers.append([f"`{layer}`", f"{group.depth.iloc[0]:.2f}",
                       *(f"{ci(r.value, r.lo, r.hi)} {r.label} / {r.other_label}" for r in group.itertuples())])
    return ["## Filtering against re-initialisation (value grid)", "",
            f"Each layer of each swept checkpoint reset to its epoch-0 weights (BatchNorm re-estimated), at the "
            f"checkpoint's calibrated eps, on the test split's images: a layer is critical when its adversarial-"
            f"accuracy drop's interval lies above {page.setting('probe_threshold')}. Agreement: over the layers both "
            f"call confidently (fragile ↔ critical, robust or antifragile ↔ robust); rho between the high-pass "
            f"adversarial score and the drop (bootstrap over layers).", "",
            *page.markdown(["regime", "init", "epoch", "eps", "agreement (layers)", "rho(score, drop)"], rows,
                           "lrrrrr"), "",
            f"Init_1 at the final epoch, per layer: drop, verdict / filtering label ({' | '.join(page.regimes)}):", "",
            *page.markdown(["layer", "d", *page.regimes], layers), "",
            *_figure("probe", "re-initialisation drops, Init_1")]


def depth_section(page: Page) -> list[str]:
    """``depth_arch`` beside ``arch`` on bins of normalised depth."""
    found = page.select("depth", quantity=("adversarial",))
    if found.empty:
        return []
    tau = float(page.setting("scoring.tau"))
    rows = []
    for (layer, arch), group in found.groupby(["layer", "arch"], sort=False):
        labels = bin_labels({i: Estimate(r.value, r.lo, r.hi) for i, r in enumerate(group.itertuples())}, tau)
        rows.append([layer, arch, *(f"{ci(r.value, r.lo, r.hi)} {short(labels[i])}"
                                    for i, r in enumerate(group.itertuples()))])
    pairs = page.select("depth pairs", quantity=("adversarial agreement", "adversarial rho"))
    pair_rows = []
    for init, group in pairs.groupby("init", sort=False):
        q = {r.quantity: r for r in group.itertuples()}
        a, rho = q["adversarial agreement"], q["adversarial rho"]
        pair_rows.append([f"Init_{int(init)}", ci(a.value, a.lo, a.hi, 2, ""), ci(rho.value, rho.lo, rho.hi, 2),
                          depth_verdict(Estimate(rho.value, rho.lo, rho.hi)).outcome])
    inits = [f"Init_{int(i)}" for i in found.init.unique()]
    return ["## Depth: two architectures on one axis", "",
            f"{page.setting('depth.arch')} beside {page.setting('train.arch')} (standard, final epoch): each layer's "
            f"normalised depth d in [0, 1] (0 the first layer, 1 the classifier); the adversarial scores averaged "
            f"in {page.setting('depth.bins')} equal bins of d (a bin's interval is the mean of its layers' "
            f"intervals), each bin labelled from its own interval (tau {tau:g}).", "",
            *page.markdown(["bin of d", "arch", *inits], rows, "ll" + "r" * len(inits)), "",
            "Between the two architectures' bins (a ρ over a handful of bins whose interval spans [−1, +1] is "
            "*uninformative*):", "",
            *page.markdown(["", "label agreement", "rho", "verdict"], pair_rows), "",
            *_figure("depth", "scores on normalised depth")]
