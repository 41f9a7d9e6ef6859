"""Scores under PGD beside FGSM: every layer of the re-check's checkpoints swept again with PGD, and how far the labels
agree.

For the final epoch of each of the re-check's initialisations (:class:`robustness.findings.spec.Recheck`: ``inits``,
``steps``, ``restarts``) of both regimes, every layer the FGSM high-pass sweep covers is swept again with PGD at the
same eps, thresholds and images (:func:`robustness.study.run_recheck`, resumable; its files are the re-check's, so a
layer the re-check already swept is read back). PGD sweeps carry no random null (it would multiply their cost by the
masks), so both attacks' scores here are against the density baseline: per layer the FGSM and PGD adversarial and
difference scores with their labels and the gain of FGSM over PGD (flagged beyond 2 SE), and per regime and score
the labels' raw agreement and Cohen's κ (:func:`robustness.scoring.label_agreement`) and how many labels changed.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..filtering import load_results
from ..scoring import filtering_scores, label_agreement, layer_scores
from ..study import fgsm_gain, result_path, run_recheck
from .steps import study_config
from .table import row
from .tables import Page, ci, missing

if TYPE_CHECKING:
    from .spec import Place, StudySpec

SECTION, AGREEMENT = "pgd scores", "pgd agreement"
STEP = "pgd"  # the run's step that writes the rows (the page names it when they are missing)
SCORES = ("adversarial", "difference")
KIND = "highpass"


def pgd_rows(s: StudySpec, at: Place) -> list[dict[str, Any]]:
    """Sweep what is missing (module docstring) and return the rows: per layer and score (``quantity``) the FGSM
    score with its interval and label and the PGD score's label (``other_label``); per layer the gain (``flagged``
    beyond 2 SE); per regime, initialisation and score the agreement and κ with their intervals and the count of
    changed labels."""
    scoring = replace(s.scoring, baseline="density")
    rows = []
    for regime in s.regimes:
        config, epoch = replace(study_config(s, at, regime), kinds=(KIND,)), s.final_of(regime)
        fgsm = {init: load_results(result_path(config, init, epoch, KIND, "local"))[1]
                for init in s.recheck.inits if init in s.inits_of(regime)}
        written = run_recheck(config, {(init, epoch): list(found) for init, found in fgsm.items()},
                              steps=s.recheck.steps, restarts=s.recheck.restarts)
        for (init, _), path in written.items():
            pgd = load_results(path)[1]
            mine, theirs = layer_scores(fgsm[init], scoring), {x: filtering_scores(r, scoring) for x, r in pgd.items()}
            cell = {"arch": s.train.arch, "regime": regime, "init": init, "epoch": epoch}
            for layer in pgd:
                a, b = mine[layer], theirs[layer]
                for score in SCORES:
                    rows.append(row(SECTION, f"fgsm {score}", a[score], *a["ci"][score],
                                    label=a["labels"][score], other_label=b["labels"][score], layer=layer, **cell))
                    rows.append(row(SECTION, f"pgd {score}", b[score], *b["ci"][score],
                                    label=b["labels"][score], layer=layer, **cell))
                g = fgsm_gain(fgsm[init][layer], pgd[layer], ci=scoring.ci, n_boot=scoring.n_boot, seed=scoring.seed)
                rows.append(row(SECTION, "gain", g["gain"], g["gain"] - 2 * g["se"], g["gain"] + 2 * g["se"],
                                flagged=g["flagged"], layer=layer, **cell))
            for score in SCORES:
                ours = [mine[x]["labels"][score] for x in pgd]
                other = [theirs[x]["labels"][score] for x in pgd]
                agree = label_agreement(ours, other, ci=scoring.ci, n_boot=scoring.n_boot, seed=scoring.seed)
                changed = sum(x != y for x, y in zip(ours, other, strict=True))
                rows += [row(AGREEMENT, f"{score} agreement", agree["share"], agree["share_lo"], agree["share_hi"],
                             **cell),
                         row(AGREEMENT, f"{score} kappa", agree["kappa"], agree["kappa_lo"], agree["kappa_hi"],
                             agree["kappa_note"], **cell),
                         row(AGREEMENT, f"{score} labels changed", changed, text=str(len(ours)), **cell)]
    return rows


def pgd_section(page: Page) -> list[str]:
    """The PGD scores beside FGSM as Markdown: per regime and initialisation the agreement, κ and label changes, then
    every layer's two labels and the gain."""
    agreement = page.select(AGREEMENT)
    if agreement.empty:
        return ["## Scores under PGD beside FGSM", "", *missing("the scores under PGD", STEP)]
    out = ["## Scores under PGD beside FGSM", "",
           "Every layer of the final checkpoint swept again with PGD at FGSM's eps, thresholds and images; both "
           "attacks' scores against the density baseline (PGD sweeps carry no random null). Agreement: the share of "
           "layers with the same label and Cohen's κ, each with a 95 % interval over layers; κ is undefined when one "
           "label covers every layer on both sides. A gain of FGSM over PGD beyond 2 SE is flagged (†): that FGSM "
           "label may come from a weakened gradient.", ""]
    table = []
    for (regime, init), group in agreement.groupby(["regime", "init"], sort=False):
        q = {r.quantity: r for r in group.itertuples()}
        for score in SCORES:
            kappa = q[f"{score} kappa"]
            changed = q[f"{score} labels changed"]
            table.append([regime, f"Init_{int(init)}", score,
                          ci(q[f"{score} agreement"].value, q[f"{score} agreement"].lo, q[f"{score} agreement"].hi,
                             2, ""),
                          kappa.text or ci(kappa.value, kappa.lo, kappa.hi, 2),
                          f"{int(changed.value)} of {changed.text}"])
    out += [*page.markdown(["regime", "init", "score", "agreement", "κ", "labels changed"], table), ""]
    layers = page.select(SECTION)
    detail = []
    for (regime, init, layer), group in layers.groupby(["regime", "init", "layer"], sort=False):
        q = {r.quantity: r for r in group.itertuples()}
        gain = q["gain"]
        detail.append([regime, f"Init_{int(init)}", f"`{layer}`",
                       *(f"{q[f'fgsm {x}'].label} → {q[f'pgd {x}'].label}" for x in SCORES),
                       ci(gain.value, gain.lo, gain.hi) + (" †" if gain.flagged else "")])
    return [*out, "<details><summary>Every layer: FGSM label → PGD label, and the gain ± 2 SE</summary>", "",
            *page.markdown(["regime", "init", "layer", "adversarial", "difference", "gain"], detail), "",
            "</details>", ""]
