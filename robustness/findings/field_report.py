"""The models as the field reports them: worst-case robust accuracy under four attacks, and training curves.

For the final checkpoint of :attr:`FieldReport.inits` of each regime, at each of :attr:`FieldReport.eps`: clean
accuracy and the per-example worst case over PGD, APGD-CE, APGD-DLR and Square
(:func:`robustness.attacks.ensemble_outcomes`), every accuracy with its Wilson interval and the gradient-masking flag
of :func:`robustness.attacks.ensemble_report` (a white-box member above the gradient-free Square). And the training
curves: the clean and PGD accuracy of every saved epoch's checkpoint (epoch 0 too) on one fixed set of held-out test
images (the trainer's ``history.json`` records clean test accuracy only), PGD at the adversarial regime's eps.

Every checkpoint's outcomes are written as one ``.npz`` as they are computed (a rerun reads them back) under
``<models_root>/field-report/<digest of the settings>/``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from .. import paths
from ..attacks import MEMBERS, Ensemble, check_count, ensemble_outcomes, ensemble_report, make_attack
from ..data import load_dataset, loader_to_tensors, make_loader
from ..errors import InvalidArgument
from ..files import save_npz
from ..models import load_checkpoint, load_model
from ..retraining import per_image_outcomes
from ..runtime import pick_device
from ..stats import wilson_interval
from .table import row
from .tables import Page, ci, missing

if TYPE_CHECKING:  # the spec nests this module's settings
    from .spec import Place, StudySpec

SECTION, CURVES = "field report", "training curve"
STEP = "report"  # the run's step that writes the rows (the page names it when they are missing)
FOLDER = "field-report"
ATTACKS = ("clean", *MEMBERS, "worst")


@dataclass(frozen=True)
class FieldReport:
    """The report's sizes: ``eps`` of every attack, the final checkpoints of ``inits``, ``images`` test images,
    ``pgd_steps``, ``apgd_steps`` and ``square_queries`` of the four attacks; the curves on ``curve_images`` test images
    under PGD with ``curve_pgd_steps`` steps.

    The defaults are the findings preset's, sized for about 10 minutes on 2 cores: the four attacks at
    20 PGD steps, 25 APGD iterations and 300 Square queries took 420 s for 100 images at one eps on an
    untrained ResNet-18 on a 4-5x oversubscribed machine (about 90 s alone); these budgets cost about a third of
    that, x 3 eps x 2 regimes, and a trained model keeps more images for the attacks to work on. The run records
    the step's time; the page states the budgets."""

    eps: tuple[float, ...] = (0.05, 0.1, 0.2)
    inits: tuple[int, ...] = (1,)
    images: int = 100
    pgd_steps: int = 10
    apgd_steps: int = 10
    square_queries: int = 100
    curve_images: int = 200
    curve_pgd_steps: int = 10

    def __post_init__(self) -> None:
        if not self.eps or any(not 0 < e < 1 for e in self.eps):
            raise InvalidArgument(f"field_report.eps are pixel eps in (0, 1), got {self.eps}")
        for name in ("images", "pgd_steps", "apgd_steps", "square_queries", "curve_images", "curve_pgd_steps"):
            check_count(f"field_report.{name}", getattr(self, name), 1)


def report_folder(s: StudySpec, at: Place) -> Path:
    """Where the step writes (its settings' digest in the name: other settings, another folder)."""
    settings = {"report": asdict(s.field_report), "eps": s.adversarial.eps, "norm": s.adversarial.norm,
                "seed": s.train.seed}
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    return Path(at.models_root) / FOLDER / digest


def _outcomes(path: Path, compute: Any) -> dict[str, np.ndarray]:
    """The outcomes in ``path``, or ``compute()``'s, written there."""
    if path.is_file():
        with np.load(path) as saved:
            return {name: saved[name] for name in saved.files}
    found = compute()
    save_npz(path, **found)
    return found


def run_field_report(s: StudySpec, at: Place) -> Path:
    """Compute what is missing of the report (module docstring) for both regimes; the folder it wrote."""
    r, folder = s.field_report, report_folder(s, at)
    device = pick_device(at.device)
    test = load_dataset(s.train.dataset, False, at.data_root)
    loader = make_loader(test, 100, subset=r.images, seed=s.train.seed)
    curve_x, curve_y = loader_to_tensors(make_loader(test, 100, subset=r.curve_images, seed=s.train.seed + 1))
    pgd = make_attack("pgd", s.adversarial.eps, steps=r.curve_pgd_steps, norm=s.adversarial.norm, seed=s.train.seed)
    for regime in s.regimes:
        for init, epoch, model in _checkpoints(s, at, regime, device):
            if not s.source(regime):  # a model from elsewhere has no training to draw
                _outcomes(folder / f"{regime}_Init_{init}_epoch{epoch}_curve.npz",
                          lambda m=model: per_image_outcomes(m, curve_x, curve_y, {"pgd": pgd}))
            if epoch != s.final_of(regime):
                continue
            for eps in r.eps:
                ensemble = Ensemble(eps, s.adversarial.norm, r.pgd_steps, apgd_steps=r.apgd_steps,
                                    square_queries=r.square_queries, seed=s.train.seed)
                _outcomes(folder / f"{regime}_Init_{init}_eps{eps:g}.npz",
                          lambda m=model, e=ensemble: ensemble_outcomes(m, loader, e))
    return folder


def _checkpoints(s: StudySpec, at: Place, regime: str, device: torch.device) -> Iterator[tuple[int, int, nn.Module]]:
    """``(init, epoch, model)`` of every saved checkpoint of the report's initialisations of ``regime`` (a model
    from elsewhere: its one model, Init 1 at epoch 0)."""
    source = s.source(regime)
    if source is not None:
        if 1 in s.field_report.inits:
            yield 1, 0, load_model(source, arch=s.train.arch, dataset=s.train.dataset, device=device)[0]
        return
    for init in s.field_report.inits:
        for epoch, path in paths.list_checkpoints(s.train.arch, s.train.dataset, init, at.regime_root(regime)).items():
            yield init, epoch, load_checkpoint(path, s.train.arch, s.train.dataset, map_location=device)[0]


def field_rows(s: StudySpec, at: Place) -> list[dict[str, Any]]:
    """The report's rows: per regime, initialisation and eps (``text``) each attack's accuracy (``quantity``, the
    attack's name) with its Wilson interval, ``flagged`` where it may mask gradients; per saved epoch the curves'
    clean and PGD accuracy with theirs; and the sizes."""
    r, folder = s.field_report, report_folder(s, at)
    if not folder.is_dir():
        return []
    where = {"arch": s.train.arch}
    rows = [row(SECTION, name, float(getattr(r, name)), **where)
            for name in ("images", "pgd_steps", "apgd_steps", "square_queries", "curve_images", "curve_pgd_steps")]
    rows.append(row(SECTION, "curve eps", s.adversarial.eps, **where))
    for regime in s.regimes:
        for init in r.inits:
            cell = {**where, "regime": regime, "init": init}
            for eps in r.eps:
                path = folder / f"{regime}_Init_{init}_eps{eps:g}.npz"
                if not path.is_file():
                    continue
                with np.load(path) as saved:
                    report = ensemble_report({name: saved[name] for name in saved.files})
                rows += [row(SECTION, x["attack"], x["accuracy"], x["lo"], x["hi"], f"{eps:g}",
                             flagged=x["masking"] == "POSSIBLE", epoch=s.final_of(regime), **cell) for x in report]
            for path in sorted(folder.glob(f"{regime}_Init_{init}_epoch*_curve.npz")):
                epoch = int(path.name.split("epoch")[1].removesuffix("_curve.npz"))
                with np.load(path) as saved:
                    for name in ("clean", "pgd"):
                        n, correct = len(saved[name]), int(saved[name].sum())
                        rows.append(row(CURVES, f"{name} accuracy", correct / n, *wilson_interval(correct, n),
                                        epoch=epoch, **cell))
    return rows


def field_section(page: Page) -> list[str]:
    """The report as Markdown: one table per regime (a row per eps, a column per attack), the masking flags, the
    sizes, and the curves' figure."""
    rows = page.select(SECTION)
    if rows.empty:
        return ["## The models under strong attacks", "", *missing("the models under strong attacks", STEP)]
    size = {r.quantity: r.value for r in rows[rows.text == ""].itertuples()}
    out = ["## The models under strong attacks", "",
           f"Each regime's final checkpoint(s) on {int(size['images'])} test images: clean accuracy, each attack's "
           f"and the per-example worst case over PGD ({int(size['pgd_steps'])} steps), APGD-CE and APGD-DLR "
           f"({int(size['apgd_steps'])} iterations each) and Square ({int(size['square_queries'])} queries); 95 % "
           f"Wilson intervals. A white-box attack marked † leaves the model more accurate than Square by more than two "
           f"standard errors (possible gradient masking: trust the worst case). These are reduced budgets "
           f"(AutoAttack runs 100 APGD iterations and 5000 Square queries): the worst case is an upper bound on the "
           f"robust accuracy.", ""]
    for (regime, init), group in rows[rows.text != ""].groupby(["regime", "init"], sort=False):
        table = []
        for eps, cells in group.groupby("text", sort=False):
            got = {x.quantity: x for x in cells.itertuples()}
            table.append([eps, *(ci(got[a].value, got[a].lo, got[a].hi, sign="") + (" †" if got[a].flagged else "")
                                 for a in ATTACKS)])
        out += [f"**{regime}**, Init_{int(init)}:", "",
                *page.markdown(["eps", "clean", "PGD", "APGD-CE", "APGD-DLR", "Square", "worst case"], table), ""]
    curves = page.select(CURVES)
    if not curves.empty:
        out += [f"Training curves: clean and PGD ({int(size['curve_pgd_steps'])} steps, eps {size['curve eps']:g}) "
                f"accuracy of every saved epoch's checkpoint on {int(size['curve_images'])} held-out test images.", "",
                f"![training curves](findings/{CURVES_FIGURE}.png)", ""]
    return out


CURVES_FIGURE = "training_curves"


def curves_figure(page: Page) -> Figure:
    """The training curves: accuracy against epoch per regime and initialisation, clean solid and PGD dashed, with
    their Wilson intervals as bands (draw with :func:`robustness.figures.draw_and_save` as :data:`CURVES_FIGURE`)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for (regime, init), group in page.select(CURVES).groupby(["regime", "init"], sort=False):
        for quantity, style in (("clean accuracy", "-"), ("pgd accuracy", "--")):
            g = group[group.quantity == quantity].sort_values("epoch")
            line, = ax.plot(g.epoch, g.value, style, marker="o", label=f"{regime} Init_{int(init)} {quantity}")
            ax.fill_between(g.epoch, g.lo, g.hi, color=line.get_color(), alpha=0.15)
    ax.set(xlabel="epoch", ylabel="test accuracy", ylim=(0, 1))
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
