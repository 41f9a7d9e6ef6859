"""The demo's table and its pages (``python -m robustness demo``, ``make demo``), made as the findings page is.

:func:`demo_rows` gathers what the demo computed into the findings table's typed columns
(:mod:`robustness.findings.table`): its settings and step times, each checkpoint's eps and accuracies, every local
score with its interval and label, the PGD re-check, the invariance pairs, the defense's rows and the retraining
comparison. :func:`render_demo` (the page, ``docs/demo.md``) and :func:`readme_block` (the README's demo tables,
between :data:`BEGIN` and :data:`END`) are made from that table alone, with the findings page's machinery
(:class:`~robustness.findings.tables.Page`, its sections' cells and tables), so :func:`write_demo_pages` can rewrite
both from the committed CSV and a test can compare them with it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .. import paths
from ..defense import ROWS, result_rows
from ..errors import InvalidArgument
from ..files import write_if_changed
from ..scoring import CONFIDENT, Comparison, ScoresTable
from .collect import pair_rows, scores_table_rows, settings_rows, variant_rows
from .sections import retraining_sections, retraining_table, score_cell
from .spec import Place, StudySpec
from .table import COLUMNS, row, table_csv
from .tables import Page, ci

BEGIN = "<!-- demo tables: `python -m robustness demo --page` writes them from docs/demo/demo.csv -->"
END = "<!-- end of the demo tables -->"
SCORE_NAMES = ("clean", "adversarial", "difference")
KIND = "highpass"
RETRAIN_SCORE = "adversarial"  # the score whose labels choose the layers the demo retrains
STEPS = ("training", "sweeps", "scores", "re-check and invariance", "defense", "retraining")  # the demo's, in order


@dataclass(frozen=True)
class DemoPages:
    """Where the demo's page (``<out>/demo.md``) and its table (``<out>/demo/demo.csv``) go, and the README whose
    demo block is rewritten (``None``: none)."""

    out: str
    readme: str | None = None

    @property
    def page(self) -> Path:
        """The generated page."""
        return Path(self.out) / "demo.md"

    @property
    def table(self) -> Path:
        """The table of every number the page and the README's block cite."""
        return Path(self.out) / "demo" / "demo.csv"


SHIPPED = DemoPages("docs", readme="README.md")  # make demo's: the committed page, table and README block


def demo_rows(s: StudySpec, at: Place, record: Mapping[str, Any], *, tables: Sequence[ScoresTable],
              recheck: Sequence[Mapping[str, Any]], comparison: Comparison,
              defense: Mapping[str, Mapping[str, Any]], retraining: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The demo's table: the spec's settings, the device and its cores, the seconds each step computed
    (``record``), then the rows of the local scores ``tables``, the ``recheck``, the ``comparison`` of the
    initialisations, the ``defense`` and the ``retraining`` comparison."""
    where = {"arch": s.train.arch, "regime": paths.STANDARD}
    rows = [*settings_rows(s, at, record), row("setting", "cores", text=str(os.cpu_count())),
            *scores_table_rows([t for t in tables if t.scope == "local"], **where)]
    for r in recheck:
        cell = {"init": r["init"], "epoch": r["epoch"], "layer": r["layer"], **where}
        rows += [row("recheck", key.removeprefix("fgsm "), label=r[key], other_label=r[f"pgd {key[5:]}"], **cell)
                 for key in r if key.startswith("fgsm ")]
        rows += [row("recheck", "gain", r["gain"], flagged=r["flagged"], **cell), row("recheck", "se", r["se"], **cell)]
    rows += pair_rows("over inits", comparison, epoch=s.train.epochs, **where)
    for d in result_rows(defense):
        key = f"{d['threat']}/{d['label']}"
        rows.append(row("defense", d["row"], d["accuracy"], d["lo"], d["hi"], key))
        if not math.isnan(d.get("distance_mean", math.nan)):
            rows += [row("defense distance", f"{d['row']} {k}", d[f"distance_{k}"], text=key)
                     for k in ("mean", "max", "bound")]
    for key, res in defense.items():
        if "masking_gap" in res:
            rows.append(row("defense", "white-box - square", res["masking_gap"], *res["masking_gap_interval"], key,
                            flagged=res["gradient_masking"]))
    rows += variant_rows(f"retrain by {RETRAIN_SCORE}", retraining, init=(s.retraining.inits or (1,))[0],
                         epoch=s.train.epochs, **where)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _duration(seconds: float) -> str:
    """``47 s`` or ``5 min 51 s``."""
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def _command(page: Page) -> str:
    """The command that made the table: ``make demo`` for the demo preset."""
    preset = page.setting("preset")
    return "`make demo` (the `demo` preset" if preset == "demo" else f"`python -m robustness demo --preset {preset}` ("


def _intro(page: Page) -> list[str]:
    """What the demo ran, with each step's computing time, from the settings and time rows."""
    times = page.select("time")
    spent = (f"{_duration(times.value.sum())} of computing on {page.setting('device used')}, "
             f"{page.setting('cores')} cores: "
             + ", ".join(f"{r.quantity} {_duration(r.value)}" for r in times.itertuples())
             if len(times) else "every result reused")
    layers = page.setting("sweep.layers")
    count = "every" if layers == "all" else f"{len(layers.split(', '))}"
    return [f"{_command(page)}; {spent}): {page.setting('train.arch')} on {page.setting('train.dataset')}, "
            f"{page.setting('train.inits')} initialisations × {page.setting('train.epochs')} epochs; FGSM eps "
            f"calibrated per checkpoint to {float(page.setting('sweep.calibrate_eps')):.0%} adversarial accuracy on "
            f"{page.setting('sweep.eps_images')} held-out test images; the high-pass filter swept over {count} layers "
            f"at {page.setting('sweep.thresholds')} thresholds on {page.setting('sweep.subset')} other test images, "
            f"BatchNorm re-estimated on {page.setting('sweep.bn_images')} training images at every point; scores "
            f"against the {page.setting('scoring.baseline')} baseline, {page.setting('scoring.n_boot')} paired "
            f"bootstrap resamples, τ = {float(page.setting('scoring.tau')):g}.", ""]


def _tables(page: Page) -> list[str]:
    """Each checkpoint's eps and accuracies; each layer's scores over the initialisations; the PGD re-check."""
    level = f"{float(page.setting('scoring.ci')):.0%}"
    checkpoints = []
    for (init, epoch), group in page.select("checkpoint").groupby(["init", "epoch"], sort=False):
        q = {r.quantity: r for r in group.itertuples()}
        checkpoints.append([f"Init_{int(init)}, epoch {int(epoch)}", f"{q['eps'].value:.4f}",
                            *(ci(q[k].value, q[k].lo, q[k].hi, 3, "") for k in ("clean accuracy",
                                                                                "adversarial accuracy"))])
    final, standard = int(page.setting("train.epochs")), paths.STANDARD
    cells = {score: page.cell_labels(standard, score, final) for score in SCORE_NAMES}
    scores = page.select("score", epoch=final)
    rows = [[f"`{layer}`", *(score_cell(scores[(scores.layer == layer) & (scores.quantity == f"{KIND} {score}")]
                                        .value.tolist(), cells[score][layer]) for score in SCORE_NAMES)]
            for layer in cells["adversarial"]]
    counts = {score: page.consensus_counts(standard, score, final) for score in SCORE_NAMES}
    rows.append(["**confident**", *(f"{sum(c[lab] for lab in CONFIDENT)} of {sum(c.values())}"
                                    for c in counts.values())])
    return [*page.markdown(["checkpoint", "eps", f"clean accuracy [{level}]", f"FGSM accuracy [{level}]"],
                           checkpoints, "lrll"), "",
            "Wilson intervals. Scores: mean ± SD over the initialisations, each one's label (Fragile, Robust, "
            "Antifragile, Uncertain) → the one all give, else uncertain:", "",
            *page.markdown(["layer", *SCORE_NAMES], rows, "llll"), "", *_recheck(page)]


def _recheck(page: Page) -> list[str]:
    """The PGD re-check of the most robust-looking layers, in words."""
    found = page.select("recheck")
    starts = int(page.setting("recheck.restarts"))
    steps = f"PGD ({page.setting('recheck.steps')} steps, {starts} start{'s' * (starts != 1)})"
    if not len(found):
        return [f"No layer was called robust or antifragile by FGSM: {steps} had nothing to re-check.", ""]
    out = []
    for (init, layer), group in found.groupby(["init", "layer"], sort=False):
        q = {r.quantity: r for r in group.itertuples()}
        labels = ", ".join(f"{score} {q[score].label} → {q[score].other_label}"
                           for score in ("adversarial", "difference") if score in q)
        verdict = "beyond 2 SE: FGSM overstates its robustness" if q["gain"].flagged else "within 2 SE"
        out.append(f"{steps} re-check of Init_{int(init)}'s `{layer}`, labels FGSM → PGD: {labels}; FGSM's gain "
                   f"over PGD {q['gain'].value:+.3f} (SE {q['se'].value:.3f}), {verdict}.")
    return [" ".join(out), ""]


def readme_block(frame: pd.DataFrame) -> str:
    """The README's demo tables (between :data:`BEGIN` and :data:`END`) of a demo table."""
    page = Page(frame)
    return "\n".join([BEGIN, *_intro(page), *_tables(page), END])


def render_demo(frame: pd.DataFrame) -> str:
    """The demo's page (Markdown) of a demo table."""
    page = Page(frame)
    command = "python -m robustness demo --preset demo" if page.setting("preset") == "demo" else \
        f"python -m robustness demo --preset {page.setting('preset')}"
    out = ["# What the demo finds", "",
           f"Generated by `{command}` from the table [demo/demo.csv](demo/demo.csv), which holds every number "
           f"below; do not edit by hand (`python -m robustness demo --page` rewrites this page and the README's demo "
           f"tables from that table). The study spec's presets: [study.md](study.md).", "",
           *_intro(page), "## Checkpoints and filtering scores", "", *_tables(page), *_invariance(page),
           *_retraining(page), *_defense(page), *_settings(page)]
    return "\n".join(out).rstrip() + "\n"


def _invariance(page: Page) -> list[str]:
    """Label agreement and rho between each pair of initialisations."""
    found = page.select("over inits")
    rows = []
    for (pair, score), group in found.assign(score=found.quantity.str.split().str[0]).groupby(["text", "score"],
                                                                                             sort=False):
        q = {r.quantity.split()[1]: r for r in group.itertuples()}
        rows.append([pair, score, ci(q["agreement"].value, q["agreement"].lo, q["agreement"].hi, 2, ""),
                     ci(q["rho"].value, q["rho"].lo, q["rho"].hi, 2)])
    return ["## Invariance across initialisations", "",
            "Per pair of initialisations and score: the share of layers given the same label, and Spearman's rho "
            "between the scores (intervals from a bootstrap over layers):", "",
            *page.markdown(["pair", "score", "label agreement", "rho"], rows, "llrr"), ""]


def _retraining(page: Page) -> list[str]:
    """The retraining comparison, the layers it chose, and what the robust and antifragile ones did."""
    section = retraining_sections(page)[0]
    chosen = page.retrained(section, "robust+antifragile")
    vs = page.select(section, text="robust+antifragile", quantity="fgsm vs random")
    if not len(vs):
        verdict = ""
    else:
        lo, hi = float(vs.lo.iloc[0]), float(vs.hi.iloc[0])
        word = "better than" if lo > 0 else "worse than" if hi < 0 else "indistinguishable from"
        verdict = (f"Under FGSM, retraining the robust and antifragile layers is {word} retraining as many random "
                   f"layers (the interval of the difference {'excludes' if lo > 0 or hi < 0 else 'includes'} 0).")
    return ["## Selective retraining", "",
            f"Init_1 retrained for one epoch of {page.setting('retraining.subset')} training images as its trainer "
            f"would (BatchNorm in train mode, its Adam state, lr and batch size), {page.setting('retraining.seeds')} "
            f"seeds per variant, against {page.setting('retraining.random_sets')} random layer sets matched in size, "
            f"on {page.setting('sweep.subset')} test images; mean accuracy over the runs, differences with paired "
            f"bootstrap intervals. The robust and antifragile layers (high-pass "
            f"{section.removeprefix('retrain by ')} labels every initialisation agrees on): "
            f"{', '.join(f'`{x}`' for x in chosen) or 'none'}.", "",
            *retraining_table(page, section), "", verdict, ""]


def _defense(page: Page) -> list[str]:
    """The defensive perturbation: every row's accuracy per column, the gain, the masking check, the distances."""
    found = page.select("defense")
    columns = list(dict.fromkeys(found.text))
    order = [*ROWS, "gain", "white-box - square"]
    rows = []
    for name in sorted(dict.fromkeys(found.quantity), key=order.index):
        cells = {r.text: ci(r.value, r.lo, r.hi, 3, "+" if name in order[-2:] else "")
                 + (" **masking**" if r.flagged else "") for r in found[found.quantity == name].itertuples()}
        rows.append([name, *(cells.get(c, "") for c in columns)])
    distances = page.select("defense distance")
    spread = []
    for name in dict.fromkeys(q.rsplit(" ", 1)[0] for q in distances.quantity):
        q = {(r.quantity.rsplit(" ", 1)[1], r.text): r.value for r in distances.itertuples()
             if r.quantity.rsplit(" ", 1)[0] == name}
        spread.append([name, *(f"{q['mean', c]:.3f} / {q['max', c]:.3f} ≤ {q['bound', c]:.3g}" if ("mean", c) in q
                               else "" for c in columns)])
    d = "defense.defense."
    return ["## Defensive perturbation", "",
            f"The {page.setting('defense_arch')} ({page.setting('defense_epochs')} epochs) defended by PGD-"
            f"{page.setting(d + 'norm')} eps {page.setting(d + 'eps')} with budget {page.setting(d + 'budget')}, "
            f"{page.setting('defense_subset')} test images; per example, the worst case over the ensemble "
            f"({page.setting('defense.ensemble')}; PGD with {page.setting('defense.restarts')} restarts, APGD "
            f"{page.setting('defense.apgd_steps')} iterations, Square {page.setting('defense.square_queries')} "
            f"queries in {page.setting('defense.square_threats')} only), the undefended model attacked by the same "
            f"ensemble. Not run: {page.setting('defense.skip')} (the oracle mode uses the true labels, which no "
            f"deployed system has). Accuracy with Wilson intervals; the gain (defended minus undefended worst case) "
            f"and white-box − Square (flagged **masking** when its interval lies above 0) with paired bootstrap "
            f"intervals. At the standard MNIST budget, with Square through the whole defense and its inference cost: "
            f"[defense.md](defense.md).", "",
            *page.markdown(["", *columns], rows, "l" + "l" * len(columns)), "",
            "Distance of the images from the clean ones in the attack's norm, mean / max ≤ bound (a defended image "
            "that is also attacked may lie up to budget + eps away):", "",
            *page.markdown(["", *columns], spread, "l" + "l" * len(columns)), ""]


def _settings(page: Page) -> list[str]:
    """Each step's computing time and every setting of the spec."""
    times = [[r.quantity, _duration(r.value), r.text] for r in page.select("time").itertuples()]
    return ["## The run", "",
            "Computing time per step (summed over the runs that computed something; a rerun with every file present "
            "computes nothing):", "",
            *page.markdown(["step", "time", "runs"], times), "", "Settings:", "", *page.settings_table(), ""]


def with_block(text: str, block: str, where: str) -> str:
    """``text`` with the part from :data:`BEGIN` to :data:`END` replaced by ``block`` (``where`` names the file)."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise InvalidArgument(f"{where} lacks the demo block's marker lines {BEGIN!r} and {END!r}: put them where the "
                              f"demo's tables go")
    return text[:start] + block + text[end + len(END):]


def current_block(text: str) -> str:
    """The demo block of a README's ``text``, markers included ('' without them)."""
    start, end = text.find(BEGIN), text.find(END)
    return text[start:end + len(END)] if 0 <= start < end else ""


def write_demo_pages(pages: DemoPages, frame: pd.DataFrame | None = None) -> list[Path]:
    """Write ``frame`` (when given) as the demo's table, then rewrite the page and the README's demo block from the
    table as written; the files that changed."""
    if frame is not None and write_if_changed(table_csv(frame), pages.table):
        changed = [pages.table]
    else:
        changed = []
    if not pages.table.is_file():
        raise InvalidArgument(f"no demo table at {pages.table}: run `python -m robustness demo` first (it writes it)")
    table = pd.read_csv(pages.table)
    if write_if_changed(render_demo(table), pages.page):
        changed.append(pages.page)
    if pages.readme is not None:
        readme = Path(pages.readme)
        if write_if_changed(with_block(readme.read_text(), readme_block(table), str(readme)), readme):
            changed.append(readme)
    return changed
