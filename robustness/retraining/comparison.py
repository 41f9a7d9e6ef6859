"""Selective retraining, compared with controls (the study's application of the layer labels).

Each *variant* retrains one set of layers with :func:`selective_retrain` (the trainer's
protocol: train mode, the checkpoint's optimiser state, its lr and batch size):

- ``none``: the checkpoint as it is;
- ``robust+antifragile``: the layers labelled robust or antifragile;
- ``all``: every Conv2d/Linear layer;
- ``fragile``: the layers labelled fragile;
- ``random-1`` … ``random-K``: random sets of as many layers as ``robust+antifragile``,
  the closest to it in parameter count (:func:`matched_random_sets`), the control for
  the size of the set.

Every variant runs once per seed (the seed orders the training batches, the same order
for every variant) from each chosen checkpoint, and every retrained model is evaluated on
the test images, clean and under FGSM and PGD at the eps of the filtering results, keeping
each image's outcome. Per variant the table gives the mean ± SD over runs of each
accuracy and the difference from ``none`` and from the mean of the random sets, with a
paired bootstrap interval over test images pooled over runs: one resample of the images
recomputes every variant × run accuracy (:mod:`robustness.retraining.summary`). Layers are
chosen by labels agreed on by every initialisation (:func:`robustness.scoring.scores.consensus_labels`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from .. import paths
from ..attacks import FGSM, Attack, make_attack
from ..data import load_dataset, loader_to_tensors, make_loader
from ..errors import DataNotFoundError, InvalidArgument
from ..figures import draw_and_save, retrain_plot_name
from ..files import load_json, save_csv, save_json, save_npz
from ..filtering import canonical_kind, load_results
from ..models import build_model, checkpoint_model, current_lr, read_checkpoint
from ..runtime import frozen_eval, model_device, pick_device, progress
from ..scoring import DEFAULT_SCORING, Scoring, attack_label, consensus_labels, layer_scores
from ..training import AdvTraining, TrainConfig, regime_meta, training_config
from ..vocab import SCORES, Score
from .figures import plot_retraining
from .selective import layer_sizes, plan_variants, selective_retrain
from .summary import RunOutcomes, summarise

__all__ = [
    "RetrainingResult", "RetrainingStudy", "attack_from_meta", "compare_retraining", "evaluation_attacks",
    "per_image_outcomes", "retrain_runs", "retraining_rows", "run_comparison", "save_retraining",
]

def attack_from_meta(meta: Mapping[str, Any]) -> Attack:
    """The attack a sweep result file was computed with, from its ``meta``.

    FGSM is rebuilt from the tag and the exact ``eps``; any other attack needs
    ``meta["attack_params"]``, the keyword arguments of :func:`robustness.attacks.registry.make_attack`
    (e.g. ``{"name": "pgd", **dataclasses.asdict(attack)}``).
    """
    if str(meta["attack"]).startswith("fgsm"):
        return FGSM(float(meta["eps"]))
    if "attack_params" in meta:
        return make_attack(**meta["attack_params"])
    raise InvalidArgument(
        f"the result file records attack {meta['attack']!r} by its tag only, which does not rebuild it: "
        f"run the filtering with FGSM (--attack fgsm) for the retraining comparison"
    )


def evaluation_attacks(meta: Mapping[str, Any], pgd_steps: int = 10, seed: int = 0) -> dict[str, Attack]:
    """The attacks every retrained model is evaluated with, at the eps and norm of a sweep's ``meta``:
    ``fgsm`` (L∞ only) and ``pgd`` (``pgd_steps`` steps of 2.5 eps/steps, random start seeded by ``seed``)."""
    norm = getattr(attack_from_meta(meta), "norm", "linf")
    eps = float(meta["eps"])
    pgd = {"pgd": make_attack("pgd", eps, steps=pgd_steps, norm=norm, seed=seed)}
    return {"fgsm": FGSM(eps), **pgd} if norm == "linf" else pgd


def per_image_outcomes(
    model: nn.Module, x: Tensor, y: Tensor, attacks: Mapping[str, Attack], batch_size: int = 500
) -> RunOutcomes:
    """Whether ``model`` classifies each image correctly: ``clean`` and under each of ``attacks``
    (regenerated against ``model``), as boolean arrays over the images. Runs frozen, in eval mode."""
    device = model_device(model)
    found: dict[str, list[Tensor]] = {"clean": [], **{name: [] for name in attacks}}
    with frozen_eval(model):
        for x_cpu, y_cpu in zip(x.split(batch_size), y.split(batch_size), strict=True):
            xb, yb = x_cpu.to(device), y_cpu.to(device)
            inputs = {"clean": xb, **{name: attack(model, xb, yb) for name, attack in attacks.items()}}
            with torch.no_grad():
                for name, images in inputs.items():
                    found[name].append(model(images).argmax(1) == yb)
    return {name: torch.cat(parts).cpu().numpy() for name, parts in found.items()}


def retrain_runs(
    model: nn.Module,
    train_data: Dataset,
    test_data: tuple[Tensor, Tensor],
    variants: Mapping[str, Sequence[str]],
    *,
    attacks: Mapping[str, Attack],
    seeds: Sequence[int] = (0, 1, 2),
    epochs: int = 1,
    lr: float = 1e-3,
    batch_size: int = 100,
    optimizer_state: Mapping[str, Any] | None = None,
    training: TrainConfig | None = None,
    folder: Path | None = None,
    tag: str = "",
    adv: AdvTraining | None = None,
) -> dict[str, list[RunOutcomes]]:
    """Retrain a copy of ``model`` for every variant and seed and evaluate it: ``{variant: [outcomes per seed]}``.

    Seed ``s`` shuffles ``train_data`` in batches of ``batch_size`` with a generator seeded
    by ``s``, the same order for every variant. A variant without layers is ``model`` itself;
    variants with the same layers share one run. With ``folder``, each (variant, seed) is
    written as ``<variant>_<tag>_seed<s>.npz`` as it finishes and read back instead of rerun. An active ``adv``
    retrains adversarially (:func:`selective_retrain`). ``model`` is left unchanged.
    """
    x, y = test_data[0].to(model_device(model)), torch.as_tensor(test_data[1]).to(model_device(model))
    done: dict[tuple[tuple[str, ...], int], RunOutcomes] = {}
    found: dict[str, list[RunOutcomes]] = {variant: [] for variant in variants}
    todo = [(variant, seed) for variant in variants for seed in seeds]
    for variant, seed in progress(todo, f"retraining runs {tag}".strip(), total=len(todo), leave=True):
        layers = tuple(variants[variant])
        key = (layers, seed if layers else 0)
        path = folder / "_".join(filter(None, [variant, tag, f"seed{seed}.npz"])) if folder else None
        if key not in done and path is not None and path.is_file():
            with np.load(path) as saved:
                done[key] = {name: saved[name] for name in saved.files}
        if key not in done:
            trained = model
            if layers:
                trained = copy.deepcopy(model)
                order = torch.Generator().manual_seed(seed)
                loader = make_loader(train_data, batch_size, shuffle=True, generator=order)
                selective_retrain(trained, loader, layers, epochs=epochs, lr=lr, seed=seed,
                                  optimizer_state=optimizer_state, training=training, adv=adv)
            done[key] = per_image_outcomes(trained, x, y, attacks)
        if path is not None and not path.is_file():
            save_npz(path, **done[key])
        found[variant].append(done[key])
    return found


def compare_retraining(
    model: nn.Module,
    train_data: Dataset,
    test_data: tuple[Tensor, Tensor],
    labels: Mapping[str, str],
    *,
    attacks: Mapping[str, Attack],
    seeds: Sequence[int] = (0, 1, 2),
    random_sets: int = 5,
    epochs: int = 1,
    lr: float = 1e-3,
    batch_size: int = 100,
    optimizer_state: Mapping[str, Any] | None = None,
    training: TrainConfig | None = None,
    scoring: Scoring = DEFAULT_SCORING,
) -> list[dict[str, Any]]:
    """The whole comparison for one model in memory: :func:`plan_variants` from ``labels`` (layer -> label),
    :func:`retrain_runs` over ``seeds``, :func:`summarise` with ``scoring``'s coverage and resamples.
    ``scoring.seed`` draws the random sets and the resamples. ``model`` is left unchanged."""
    sizes = layer_sizes(model)
    variants = plan_variants(labels, sizes, random_sets=random_sets, seed=scoring.seed)
    runs = retrain_runs(model, train_data, test_data, variants, attacks=attacks, seeds=seeds, epochs=epochs, lr=lr,
                        batch_size=batch_size, optimizer_state=optimizer_state, training=training)
    return summarise(runs, variants, sizes, n_boot=scoring.n_boot, ci=scoring.ci, seed=scoring.seed)


@dataclass(frozen=True)
class RetrainingStudy:
    """What a retraining comparison from files covers, checked when made.

    Labels: :func:`robustness.scoring.consensus_labels` of the ``score`` over every initialisation with a local
    ``kind`` result of ``attack_tag`` at checkpoint ``epoch`` (default: the newest with such results; the tag
    may be left out when only one attack was run), scored as ``scoring`` says. Retrained: the checkpoint of
    each of ``inits`` (default: those same initialisations), each with its own optimiser state, lr and batch
    size (``lr``/``batch_size`` override them), for ``epochs`` epochs over the train split (or its seeded
    ``subset``), once per seed ``seed … seed + seeds − 1``; ``random_sets`` matched random layer sets per
    labelled set. Evaluated on the test split (or its seeded ``test_subset``) by :func:`evaluation_attacks`
    with ``pgd_steps``. ``seed`` also draws the random sets, the subsets and the resamples of the summary.
    """

    arch: str
    dataset: str
    kind: str
    score: Score
    inits: tuple[int, ...] | None = None
    epoch: int | None = None
    attack_tag: str | None = None
    scoring: Scoring = DEFAULT_SCORING
    seeds: int = 3
    random_sets: int = 5
    epochs: int = 1
    lr: float | None = None
    batch_size: int | None = None
    subset: int | None = None
    test_subset: int | None = None
    pgd_steps: int = 10
    seed: int = 0
    device: str = "auto"
    models_root: str | Path = paths.DEFAULT_MODELS_ROOT
    data_root: str | Path = paths.DEFAULT_DATA_ROOT
    plots_root: str | Path = paths.DEFAULT_PLOTS_ROOT

    def __post_init__(self) -> None:
        if self.score not in SCORES:
            raise InvalidArgument(f"unknown score {self.score!r}: choose one of {', '.join(SCORES)}")
        for name, least in (("seeds", 1), ("random_sets", 0), ("epochs", 1), ("pgd_steps", 1)):
            if getattr(self, name) < least:
                raise InvalidArgument(f"{name} must be at least {least}, got {getattr(self, name)}")
        if self.lr is not None and not 0 < self.lr < math.inf:
            raise InvalidArgument(f"lr must be a finite number > 0 (or None: the checkpoint's), got {self.lr}")
        if self.batch_size is not None and self.batch_size < 1:
            raise InvalidArgument(f"batch_size must be at least 1 (or None: the checkpoint's), got {self.batch_size}")
        object.__setattr__(self, "kind", canonical_kind(self.kind))


@dataclass
class RetrainingResult:
    """What :func:`retraining_rows` measured: the :func:`summarise` ``rows``, the layer ``labels`` they retrain
    by, the ``settings`` that decide them, where they are written (``path``), what the figure's title says, and the
    training ``regime`` of the checkpoints (the folder's, so it stays out of the settings' digest)."""

    rows: list[dict[str, Any]]
    labels: dict[str, str]
    settings: dict[str, Any]
    path: Path
    title: str
    plot_name: str
    regime: dict[str, Any]


def retraining_rows(study: RetrainingStudy) -> RetrainingResult:
    """Compute the comparison ``study`` describes: the rows of :func:`summarise`, from the files when a run with
    the same settings wrote them, else by retraining (the per-run outcomes are written as each run finishes,
    one ``.npz`` per variant, init and seed under ``saved_models/<Arch>/<DATASET>/retraining/``, so an
    interrupted comparison computes only the missing runs)."""
    s = study
    epoch, attack_tag, sources = _local_results(s.arch, s.dataset, s.epoch, kind=s.kind, attack_tag=s.attack_tag,
                                                root=s.models_root)
    loaded = {init: load_results(path) for init, path in sources.items()}
    meta = next(iter(loaded.values()))[0]
    labels = consensus_labels({init: layer_scores(results, s.scoring) for init, (_, results) in loaded.items()},
                              s.score)
    retrained = sorted(sources) if s.inits is None else sorted(set(s.inits))
    checkpoints = {init: read_checkpoint(paths.checkpoint_path(s.arch, s.dataset, init, epoch, s.models_root),
                                         s.arch, s.dataset) for init in retrained}
    training_configs = {init: training_config(ckpt) for init, ckpt in checkpoints.items()}
    sizes = layer_sizes(build_model(s.arch, s.dataset))
    variants = plan_variants(labels, sizes, random_sets=s.random_sets, seed=s.seed)
    run_settings = {
        "arch": s.arch, "dataset": s.dataset, "epoch": epoch, "filter": s.kind, "score": s.score,
        "attack": attack_tag, "eps": meta["eps"], "baseline": s.scoring.baseline, "tau": s.scoring.tau,
        "floor": s.scoring.floor, "label_inits": sorted(sources), "inits": retrained,
        "seeds": list(range(s.seed, s.seed + s.seeds)), "epochs": s.epochs,
        "lr": {str(i): current_lr(ckpt) if s.lr is None else s.lr for i, ckpt in checkpoints.items()},
        "batch_size": {str(i): c.batch_size if s.batch_size is None else s.batch_size
                       for i, c in training_configs.items()},
        "subset": s.subset, "test_subset": s.test_subset, "pgd_steps": s.pgd_steps, "seed": s.seed,
        "variants": variants,
    }
    digest = hashlib.sha1(json.dumps(run_settings, sort_keys=True).encode()).hexdigest()[:10]
    out = paths.retrain_result_path(s.arch, s.dataset, epoch, kind=s.kind, score=s.score, attack_tag=attack_tag,
                                    digest=digest, root=s.models_root)
    settings = {**run_settings, "n_boot": s.scoring.n_boot, "ci": s.scoring.ci}
    if out.is_file() and load_json(out)["settings"] == settings:
        rows = load_json(out)["rows"]
    else:
        torch_device = pick_device(s.device)
        train_data = make_loader(load_dataset(s.dataset, True, s.data_root), subset=s.subset, seed=s.seed).dataset
        test = loader_to_tensors(make_loader(load_dataset(s.dataset, False, s.data_root), 1000,
                                             subset=s.test_subset, seed=s.seed))
        attacks = evaluation_attacks(meta, s.pgd_steps, s.seed)
        runs: dict[str, list[RunOutcomes]] = {variant: [] for variant in variants}
        for init, ckpt in checkpoints.items():
            model = checkpoint_model(ckpt, torch_device)
            found = retrain_runs(
                model, train_data, test, variants, attacks=attacks, seeds=settings["seeds"], epochs=s.epochs,
                lr=settings["lr"][str(init)], batch_size=settings["batch_size"][str(init)],
                optimizer_state=ckpt["optimizer"], training=training_configs[init],
                folder=out.with_suffix(""), tag=f"Init_{init}",
            )
            for variant, outcomes in found.items():
                runs[variant] += outcomes
        rows = summarise(runs, variants, sizes, n_boot=s.scoring.n_boot, ci=s.scoring.ci, seed=s.seed)
    title = (f"{paths.arch_dir_name(s.arch)} {paths.dataset_dir_name(s.dataset)} epoch {epoch}: retraining by "
             f"{s.kind} {s.score} labels ({attack_label(attack_tag, [m['eps'] for m, _ in loaded.values()])}, "
             f"τ = {s.scoring.tau:g}); error bars: SD over {rows[0]['runs']} runs "
             f"({', '.join(f'Init_{i}' for i in retrained)} × {s.seeds} seeds)")
    name = retrain_plot_name(s.arch, s.dataset, epoch, kind=s.kind, score=s.score, attack_tag=attack_tag,
                                   digest=digest)
    return RetrainingResult(rows, labels, settings, out, title, name, regime_meta(s.arch, s.dataset, s.models_root))


def save_retraining(result: RetrainingResult) -> Path:
    """Write ``result``'s rows, labels and settings as JSON (and the rows as CSV) beside its runs, atomically;
    a result read back from those files is left as it is."""
    written = result.path.is_file() and load_json(result.path)["settings"] == result.settings
    if not written:
        save_json({"settings": result.settings, **result.regime, "labels": result.labels, "rows": result.rows},
                  result.path)
        _save_csv(result.rows, result.path.with_suffix(".csv"))
    return result.path


def run_comparison(study: RetrainingStudy) -> tuple[list[dict[str, Any]], Path]:
    """The comparison ``study`` describes, from files: :func:`retraining_rows`, written by
    :func:`save_retraining`, and its bar plot drawn under ``study.plots_root`` (kept while newer than the
    rows). Returns the rows and the plot's path."""
    result = retraining_rows(study)
    path = save_retraining(result)
    plot = draw_and_save(lambda: plot_retraining(result.rows, result.title), result.plot_name, study.plots_root,
                         keep_if_newer_than=[path])
    return result.rows, plot


def _local_results(
    arch: str, dataset: str, epoch: int | None, *, kind: str, attack_tag: str | None, root: str | Path
) -> tuple[int, str, dict[int, Path]]:
    """``(epoch, attack tag, {init: result file})`` of the local ``kind`` results to label layers with,
    with a clear error when they are missing or several attacks make the choice ambiguous."""
    found = paths.list_sweep_results(arch, dataset, kind, "local", root)
    if attack_tag is not None:
        found = {attack_tag: found[attack_tag]} if attack_tag in found else {}
    if epoch is None and found:
        epoch = max(e for units in found.values() for _, e in units)
    at_epoch = {tag: {i: p for (i, e), p in units.items() if e == epoch} for tag, units in found.items()}
    at_epoch = {tag: units for tag, units in at_epoch.items() if units}
    command = (f"python -m robustness filter --arch {arch} --dataset {dataset} --filter {kind} --scope local "
               f"--attack fgsm -e EPS" + (f" --checkpoint-epochs {epoch}" if epoch is not None else ""))
    if not at_epoch:
        which = f" for attack {attack_tag}" if attack_tag else ""
        at = f" at epoch {epoch}" if epoch is not None else ""
        raise DataNotFoundError(f"no local {kind} results{which}{at} under {paths.model_dir(arch, dataset, root)}: "
                                f"run {command} first")
    if len(at_epoch) > 1:
        raise InvalidArgument(f"results of several attacks exist at epoch {epoch} ({', '.join(at_epoch)}): "
                              f"pick one with --attack-tag")
    ((tag, units),) = at_epoch.items()
    return epoch, tag, units


def _save_csv(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """The comparison rows as CSV (layers joined by spaces), atomically."""
    return save_csv([{**row, "layers": " ".join(row["layers"])} for row in rows], path)
