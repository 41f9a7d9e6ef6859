"""(c) with power: retraining the top-k and bottom-k layers by the random-null score against stratified random k-sets.

The standard model's final Init_1 is retrained (:func:`robustness.retraining.retrain_runs`: the trainer's optimiser
state, learning rate and batch size, BatchNorm in train mode) in two ways, on clean batches (``standard``) and on PGD
batches (the adversarial regime's method at its eps, :attr:`PowerRetraining.adv_steps` steps), for every variant:

- ``top``: the ``k`` layers with the highest random-null score (the filter's order matters most in their favour),
  ``bottom``: the ``k`` lowest;
- ``top random-i`` / ``bottom random-i``: :attr:`PowerRetraining.random_sets` random sets of ``k`` layers with as
  many layers from each stage as the chosen set (:func:`robustness.retraining.stratified_random_sets`);
- ``none``: the checkpoint unretrained (the gain of training alone).

``k`` is the largest for which a stratified random set shares at most half of both the top and the bottom set on
average (:func:`robustness.retraining.largest_testable_k`), unless the settings fix it. Every variant runs with
:attr:`PowerRetraining.seeds` seeds (a seed orders the batches of every variant alike) and is evaluated clean and under
PGD at the adversarial regime's eps (one eps for both retrainings) on the same test images; the difference "chosen
minus random" has an interval that resamples seeds, random sets and images
(:func:`robustness.retraining.runs_difference`), and :func:`robustness.findings.verdicts.retraining_verdict` turns it
into a verdict against the equivalence margin fixed in the settings.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from .. import paths
from ..attacks import check_count, make_attack
from ..data import load_dataset, loader_to_tensors, make_loader
from ..errors import InvalidArgument
from ..files import load_json, save_json
from ..models import arch_depths, build_model, checkpoint_model, current_lr, filterable_layers, read_checkpoint
from ..retraining import (
    expected_overlap,
    largest_testable_k,
    layer_stages,
    overlap_power,
    power_variants,
    retrain_runs,
    runs_difference,
)
from ..runtime import pick_device
from ..training import regime_tag, training_config
from .table import row
from .tables import Page, ci, missing
from .verdicts import (
    COMBINED_RULE,
    RETRAINING_RULE,
    UNTESTABLE,
    Estimate,
    Verdict,
    combined_verdict,
    retraining_verdict,
)

if TYPE_CHECKING:  # the spec nests this module's settings
    from .spec import Place, StudySpec

SECTION = "power retraining"
STEP = "power"  # the run's step that writes the rows (the page names it when they are missing)
CHOSEN = ("top", "bottom")
METRICS = ("clean", "pgd")
FOLDER = "power-retraining"


@dataclass(frozen=True)
class PowerRetraining:
    """The settings of (c) with power, fixed before the run: ``random_sets`` stratified random k-sets per chosen set,
    ``seeds`` seeds per variant, the equivalence ``margin`` (accuracy), ``k`` (``None``: the largest testable),
    ``epochs`` of retraining on ``train_images`` training images, ``test_images`` evaluation images, ``adv_steps`` PGD
    steps per adversarial retraining batch and ``pgd_steps`` of the evaluation PGD.

    The defaults are the findings preset's, sized for about 20 minutes on 2 cores: 2 x (2 + 2 x 10) layer sets x 5
    seeds = 220 runs, about 11 s per standard and adversarial pair with ResNet-18 on mnist5k (measured on a
    4-5x oversubscribed machine, scaled: 500 training images took 22 s clean and 56 s with PGD-3 batches, 200 test
    images under PGD-10 28 s). The step records its seconds per run and the page prints them."""

    random_sets: int = 10
    seeds: int = 5
    margin: float = 0.01
    k: int | None = None
    epochs: int = 1
    train_images: int | None = 200
    test_images: int | None = 150
    adv_steps: int = 2
    pgd_steps: int = 5

    def __post_init__(self) -> None:
        # the interval resamples seeds and sets as clusters: it needs two of each
        for name, least in (("random_sets", 2), ("seeds", 2), ("epochs", 1), ("adv_steps", 1), ("pgd_steps", 1)):
            check_count(f"power_retraining.{name}", getattr(self, name), least)
        if not 0 <= self.margin < 1:
            raise InvalidArgument(f"power_retraining.margin is an accuracy in [0, 1), got {self.margin}")
        for name in ("k", "train_images", "test_images"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise InvalidArgument(f"power_retraining.{name} must be at least 1 (or None), got "
                                      f"{getattr(self, name)}")


def _ranked(scores: Mapping[str, float], layers: list[str]) -> list[str]:
    """``layers`` by score, highest first (ties in model order)."""
    missing = [x for x in layers if x not in scores or math.isnan(float(scores[x]))]
    if missing:
        raise InvalidArgument(f"no random-null score for layer(s) {', '.join(missing)}: give every swept "
                              f"layer's score (the consensus over initialisations)")
    return sorted(layers, key=lambda x: -float(scores[x]))


def power_folder(at: Place) -> Path:
    """Where the step writes: ``<models_root>/power-retraining``."""
    return Path(at.models_root) / FOLDER


def run_power_retraining(s: StudySpec, at: Place, scores: Mapping[str, float]) -> dict[str, Any]:
    """Retrain and compare as the module docstring says, from ``scores`` (layer -> random-null score of the standard
    regime's final epoch, for every layer the study sweeps: ``sweep.layers``); write ``result.json`` (and each run's
    outcomes as it finishes) under :func:`power_folder`; a rerun reads back what exists. Returns the result."""
    p: PowerRetraining = s.power_retraining
    arch, dataset, epoch = s.train.arch, s.train.dataset, s.train.epochs
    ckpt = read_checkpoint(paths.checkpoint_path(arch, dataset, 1, epoch, at.regime_root(paths.STANDARD)), arch,
                           dataset)
    model = checkpoint_model(ckpt, pick_device(at.device))
    stages = study_stages(s, model)
    layers = list(stages)
    ranked = _ranked(scores, layers)
    k = p.k or min(largest_testable_k(ranked, stages), largest_testable_k(ranked[::-1], stages))
    adv = replace(s.adversarial, steps=p.adv_steps, step_size=None, warmup=0)
    settings = {"spec": asdict(p), "k": k, "scores": {x: float(scores[x]) for x in ranked}, "eps": s.adversarial.eps,
                "adv": adv.settings(), "seed": s.train.seed, "n_boot": s.scoring.n_boot, "ci": s.scoring.ci}
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    out = power_folder(at) / f"result-{digest}.json"
    if out.is_file():
        return load_json(out)
    result: dict[str, Any] = {"settings": settings, "comparisons": [], "variants": {}, "runs": 0, "seconds": 0.0}
    if k >= 1:
        variants = {"none": [], **power_variants(ranked, stages, k, p.random_sets, s.train.seed)}
        result["variants"] = variants
        train_data = make_loader(load_dataset(dataset, True, at.data_root), subset=p.train_images,
                                 seed=s.train.seed).dataset
        test = loader_to_tensors(make_loader(load_dataset(dataset, False, at.data_root), 500, subset=p.test_images,
                                             seed=s.train.seed))
        pgd = make_attack("pgd", s.adversarial.eps, steps=p.pgd_steps, norm=s.adversarial.norm, seed=s.train.seed)
        config = training_config(ckpt)
        seeds = list(range(s.train.seed, s.train.seed + p.seeds))
        for name, how in ((paths.STANDARD, None), (regime_tag(adv), adv)):
            folder = power_folder(at) / digest
            todo = _untrained(variants, seeds, folder, name)
            tic = time.perf_counter()
            runs = retrain_runs(model, train_data, test, variants, attacks={"pgd": pgd}, seeds=seeds, epochs=p.epochs,
                                lr=current_lr(ckpt), batch_size=config.batch_size, optimizer_state=ckpt["optimizer"],
                                training=config, folder=folder, tag=name, adv=how)
            result["seconds"] += time.perf_counter() - tic
            result["runs"] += todo
            for chosen in CHOSEN:
                randoms = [v for v in variants if v.startswith(f"{chosen} random-")]
                overlap = overlap_power(variants[chosen], [variants[v] for v in randoms])["mean"]
                for metric in METRICS:
                    d = runs_difference(runs, chosen, randoms, metric, n_boot=s.scoring.n_boot, ci=s.scoring.ci,
                                        seed=s.train.seed)
                    result["comparisons"].append(
                        {"retraining": name, "chosen": chosen, "metric": metric, "overlap": overlap, **d,
                         "chosen_acc": float(sum(r[metric].mean() for r in runs[chosen]) / len(seeds)),
                         "random_acc": float(sum(r[metric].mean() for v in randoms for r in runs[v])
                                             / (len(seeds) * len(randoms))),
                         "none_acc": float(runs["none"][0][metric].mean())})
    save_json(result, out)
    return result


def study_stages(s: StudySpec, model: nn.Module | None = None) -> dict[str, str]:
    """The stage of every layer the study sweeps (``sweep.layers``, ``None``: every one), in the model's order
    (``model``: the study's architecture, built when not given)."""
    model = build_model(s.train.arch, s.train.dataset) if model is None else model
    swept = s.sweep.layers
    layers = [name for name, _ in filterable_layers(model) if swept is None or name in swept]
    return layer_stages(layers, arch_depths(s.train.arch, s.train.dataset))


def _untrained(variants: Mapping[str, list[str]], seeds: list[int], folder: Path, tag: str) -> int:
    """How many retraining runs :func:`retrain_runs` will compute: the distinct (layers, seed) pairs with layers
    whose outcomes no variant of those layers has written yet (for the cost per run)."""
    names: dict[tuple[str, ...], list[str]] = {}
    for variant, layers in variants.items():
        if layers:
            names.setdefault(tuple(layers), []).append(variant)
    return sum(not any((folder / f"{v}_{tag}_seed{seed}.npz").is_file() for v in found)
               for found in names.values() for seed in seeds)


def power_rows(s: StudySpec, at: Place) -> list[dict[str, Any]]:
    """The findings table's rows of the step's newest result: per retraining (``regime``: how it retrained) and
    chosen set (``text``: top or bottom, ``layer``: its layers), the overlap, each metric's difference from the random
    sets with its interval and the accuracies; and the run's k, margin, seeds, sets, images and cost per run."""
    found = sorted(power_folder(at).glob("result-*.json"), key=lambda f: f.stat().st_mtime)
    if not found:
        return []
    result = load_json(found[-1])
    settings, spec = result["settings"], result["settings"]["spec"]
    where = {"arch": s.train.arch, "init": 1, "epoch": s.train.epochs}
    per_run = result["seconds"] / result["runs"] if result["runs"] else math.nan
    rows = [row(SECTION, "k", settings["k"], **where), row(SECTION, "margin", spec["margin"], **where),
            row(SECTION, "seeds", spec["seeds"], **where), row(SECTION, "epochs", spec["epochs"], **where),
            row(SECTION, "random sets", spec["random_sets"], **where),
            row(SECTION, "train images", _count(spec["train_images"]), **where),
            row(SECTION, "test images", _count(spec["test_images"]), **where),
            row(SECTION, "eps", settings["eps"], **where), row(SECTION, "seconds per run", per_run,
                                                                 text=str(result["runs"]), **where)]
    stages = study_stages(s) if result["comparisons"] else {}
    for c in result["comparisons"]:
        cell = {**where, "regime": c["retraining"], "layer": " ".join(result["variants"][c["chosen"]])}
        if c["metric"] == METRICS[0]:
            rows += [row(SECTION, "overlap", c["overlap"], text=c["chosen"], **cell),
                     row(SECTION, "design overlap", expected_overlap(result["variants"][c["chosen"]], stages),
                         text=c["chosen"], **cell)]
        rows += [row(SECTION, f"{c['metric']} difference", c["diff"], c["lo"], c["hi"], c["chosen"], **cell),
                 row(SECTION, f"{c['metric']} chosen", c["chosen_acc"], text=c["chosen"], **cell),
                 row(SECTION, f"{c['metric']} random", c["random_acc"], text=c["chosen"], **cell),
                 row(SECTION, f"{c['metric']} none", c["none_acc"], text=c["chosen"], **cell)]
    return rows


def _count(n: int | None) -> float:
    return math.nan if n is None else float(n)


def power_verdicts(page: Page) -> dict[str, Verdict]:
    """Each comparison's verdict (``"<retraining> <chosen> <metric>"``) from its table rows and the run's margin."""
    rows = page.select(SECTION)
    if rows.empty:
        return {}
    margin = float(rows[rows.quantity == "margin"].value.iloc[0])
    found = {}
    for (regime, chosen), group in rows[rows.text.isin(CHOSEN)].groupby(["regime", "text"], sort=False):
        q = {r.quantity: r for r in group.itertuples()}
        for metric in METRICS:
            d = q[f"{metric} difference"]
            found[f"{regime} {chosen} {metric}"] = retraining_verdict(Estimate(d.value, d.lo, d.hi),
                                                                      q["design overlap"].value, margin)
    return found


CLAIM_RULE = (f"the top k layers by the random-null score against their stratified random k-sets, accuracy under "
              f"PGD, after standard and after adversarial retraining; each: "
              f"{RETRAINING_RULE.replace('{margin:g}', 'fixed before the run')}; the two together: {COMBINED_RULE}")


def power_claim(page: Page) -> Verdict:
    """(c)'s verdict: the top-k set against its random sets under PGD, both retrainings combined
    (:func:`robustness.findings.verdicts.combined_verdict`), with the rule as the page states it (:data:`CLAIM_RULE`);
    untestable without a testable k or without the step's rows."""
    if page.select(SECTION).empty:
        return Verdict(UNTESTABLE, CLAIM_RULE, f"this table has no rows for it: the `{STEP}` step writes them")
    verdicts = {what: v for what, v in power_verdicts(page).items() if what.endswith(" top pgd")}
    return replace(combined_verdict(verdicts), rule=CLAIM_RULE)


def power_section(page: Page) -> list[str]:
    """(c) with power, as Markdown: the design and its sizes, one line per comparison with its verdict, the rule."""
    rows = page.select(SECTION)
    if rows.empty:
        return ["## (c) Retraining that can tell", "", *missing("the retraining with power", STEP)]
    q = {r.quantity: r for r in rows[~rows.text.isin(CHOSEN)].itertuples()}
    value = {name: q[name].value for name in q}
    k, margin = int(value["k"]), value["margin"]
    n, eps = int(value["epochs"]), value["eps"]
    head = ["## (c) Retraining that can tell", "",
            f"The standard model's final Init_1, retrained for {n} epoch(s) of {_n(value['train images'])} training "
            f"images as its trainer would (clean batches: *standard*; PGD batches at eps {eps:g}: adversarial), only "
            f"the top {k} and the bottom {k} layers by the random-null score, each against "
            f"{int(value['random sets'])} random sets of {k} layers with as many from each stage, "
            f"{int(value['seeds'])} seeds per variant; accuracy on {_n(value['test images'])} test images, clean and "
            f"under PGD at eps {eps:g}. k is the largest for which a random set shares at most half of the chosen "
            f"layers on average. The intervals of chosen minus random resample seeds, random sets and images. "
            f"Equivalence margin, fixed before the run: **{margin:g}**. Cost: "
            f"{ci(value['seconds per run'], math.nan, math.nan, 1, '')} s per retraining run "
            f"({q['seconds per run'].text} runs computed).", ""]
    if k < 1:
        return [*head, "No k keeps the overlap at or below one half: every comparison is **untestable**.", ""]
    verdicts = power_verdicts(page)
    table = []
    for (regime, chosen), group in rows[rows.text.isin(CHOSEN)].groupby(["regime", "text"], sort=False):
        g = {r.quantity: r for r in group.itertuples()}
        for metric in METRICS:
            d = g[f"{metric} difference"]
            table.append([regime, chosen, f"{g['design overlap'].value:.0%} ({g['overlap'].value:.0%})", metric,
                          f"{g[f'{metric} none'].value:.3f}", f"{g[f'{metric} chosen'].value:.3f}",
                          f"{g[f'{metric} random'].value:.3f}", ci(d.value, d.lo, d.hi),
                          f"**{verdicts[f'{regime} {chosen} {metric}'].outcome}**"])
    layers = {chosen: rows[rows.text == chosen].layer.iloc[0] for chosen in CHOSEN}
    rule = next(iter(verdicts.values())).rule
    claim = power_claim(page)
    return [*head, *(f"- {chosen} {k}: {', '.join(f'`{x}`' for x in layers[chosen].split())}" for chosen in CHOSEN),
            "", *page.markdown(["retraining", "chosen", "overlap: design (drawn)", "accuracy", "not retrained",
                                "chosen", "random sets", "chosen − random", "verdict"], table), "",
            f"Rule: {rule}. The claim (top {k} under PGD, both retrainings): **{claim.outcome}**.", ""]


def _n(value: float) -> str:
    return "all" if math.isnan(value) else f"{int(value)}"
