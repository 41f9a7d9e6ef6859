"""Regimes a study does not train: a model from elsewhere per regime (``--checkpoint``/``--weights``, the spec's
:class:`~robustness.findings.spec.Sources`) and a regime already trained under the models root (``--regime``).

Both are checked before any work (:func:`check_sources`, :func:`trained_regime`): a model that does not load as the
spec's architecture, or does not fit its dataset, and a regime folder without the checkpoints the study sweeps are one
error each. A model from elsewhere is one model, so the steps that need several initialisations, an epoch-0
checkpoint or a training history skip it; :func:`skipped_rows` says which and why, one row each, and the page prints
them (:func:`skipped_lines`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .. import paths
from ..errors import CheckpointError, InvalidArgument
from ..files import load_json
from ..models import check_fits, load_model
from ..training import from_settings, regime_tag
from ..vocab import ROLES
from .table import row

if TYPE_CHECKING:
    from .spec import Place, StudySpec
    from .tables import Page

SECTION = "skipped"
ONE_MODEL = "--checkpoint or --weights gives one model"
# What the study skips for a regime from elsewhere, and why (item: reason).
SKIPPED = {
    "train": "a model from elsewhere is studied as it is, not trained",
    "consensus scores over initialisations (the hierarchical bootstrap: random null, density baseline, ablation)":
        f"needs at least 2 initialisations; {ONE_MODEL}",
    "invariance over initialisations and over epochs (b)":
        f"needs at least 2 initialisations and 2 epochs; {ONE_MODEL}",
    "ablate": "the whole-layer ablation probes this package's checkpoints of the spec's arch from the regime's tree; "
              "a model from elsewhere is not among them",
    "probe": "the re-initialisation probe resets a layer to its epoch-0 weights; a model from elsewhere has no "
             "epoch-0 checkpoint",
    "training curves": "need a checkpoint of every epoch and the training history; a model from elsewhere has neither",
}
# What the study skips when the standard regime is from elsewhere (the steps build on its training).
SKIPPED_STANDARD = {
    "retrain": "selective retraining continues the standard regime's training from its checkpoint with the spec's "
               "training settings; a model from elsewhere was not trained with them",
    "power": "the retraining with power continues the standard regime's training, as retrain does",
    "depth": "compares the standard regime's trained initialisations with the depth architecture's, trained alike; a "
             "model from elsewhere was not trained alike",
}
REGIMES_PAIRED = "the regimes are compared initialisation by initialisation; only Init_1 has a model in both"


def check_sources(s: StudySpec) -> None:
    """Load every model from elsewhere the spec names (:func:`robustness.models.load_model`, on the CPU: a file must
    hold the spec's architecture) and check that it fits the spec's dataset: the loader's error, or one naming the
    dataset, before any work."""
    for regime in s.regimes:
        source = s.source(regime)
        if source is None:
            continue
        check_fits(load_model(source, arch=s.train.arch, dataset=s.train.dataset)[1], s.train.dataset)


def trained_regime(s: StudySpec, at: Place, tag: str) -> StudySpec:
    """``s`` whose adversarial regime is ``tag``, already trained under ``at.models_root`` (its settings read from
    the regime's ``regime.json``): one :class:`CheckpointError` before any work when the folder lacks a checkpoint
    the study sweeps (or the epoch-0 one the probe needs), naming the folder looked in and the fix."""
    if paths.check_regime_tag(tag) == paths.STANDARD:
        raise InvalidArgument("--regime names the adversarial regime already trained (e.g. pgd-linf-eps0.1): the "
                              "standard one is the study's other")
    t = s.train
    folder = paths.model_dir(t.arch, t.dataset, at.models_root, regime=tag)
    settings = paths.regime_file(t.arch, t.dataset, at.models_root, regime=tag)
    needed = [(i, e) for i in range(1, t.inits + 1) for e in sorted({0, *s.swept_epochs})]
    missing = [(i, e) for i, e in needed
               if e not in paths.list_checkpoints(t.arch, t.dataset, i, at.models_root, regime=tag)]
    if missing or not settings.is_file():
        shown = ", ".join(f"Init_{i} epoch {e}" for i, e in missing[:3]) + (" ..." if len(missing) > 3 else "")
        train = paths.command_options(t.arch, t.dataset, paths.regime_root(at.models_root, tag), train=True)
        raise CheckpointError(
            f"--regime {tag}: {folder} lacks {shown or 'its regime.json'} of the checkpoints the study sweeps: train "
            f"them first (python -m robustness train {train} --n-inits {t.inits} --epochs {t.epochs}), or give "
            f"--checkpoint adversarial=PATH")
    adversarial = from_settings(load_json(settings))
    if regime_tag(adversarial) != tag:
        raise CheckpointError(f"{settings} records the regime {regime_tag(adversarial)}, not {tag}: the folder was "
                              f"renamed; train {tag} afresh")
    return replace(s, adversarial=adversarial)


def skipped_rows(s: StudySpec, at: Place) -> list[dict[str, Any]]:
    """One row per item the study skips for a regime from elsewhere (``quantity`` the item, ``text`` why)."""
    rows = []
    for regime in s.regimes:
        if s.source(regime) is None:
            continue
        where = {"arch": s.train.arch, "regime": regime}
        rows += [row(SECTION, item, text=reason, **where) for item, reason in SKIPPED.items()]
        if regime == paths.STANDARD:
            rows += [row(SECTION, item, text=reason, **where) for item, reason in SKIPPED_STANDARD.items()]
    if s.sources.given and s.train.inits > 1 and not all(s.source(regime) for regime in s.regimes):
        rows.append(row(SECTION, "regime comparison beyond Init_1", text=REGIMES_PAIRED, arch=s.train.arch,
                        regime=" - ".join(s.regimes)))
    return rows


def skipped_lines(page: Page) -> list[str]:
    """The page's lines on what the study skipped for a model from elsewhere, one per item (none without)."""
    found = page.select(SECTION)
    if found.empty:
        return []
    lines = ["Skipped, for a regime studied on a model from elsewhere (`sources` in the settings below):", ""]
    lines += [f"- {r.regime}: {r.quantity}: {r.text}." for r in found.itertuples()]
    return [*lines, ""]


def sources_sentence(page: Page) -> str:
    """The page's clause naming each regime studied on a model from elsewhere (empty when both were trained)."""
    found = [(role, source) for role in ROLES
             if not (rows := page.select("setting", quantity=f"sources.{role}")).empty
             and (source := rows.text.iloc[0]) != "none"]
    return "".join(f" the {role} regime is not trained but the model `{source}` (one initialisation, one epoch);"
                   for role, source in found)
