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
recomputes every variant × run accuracy (:mod:`robustness.retrain_summary`). Layers are
chosen by labels agreed on by every initialisation (:func:`robustness.scores.consensus_labels`).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from . import paths
from .adversarial import regime_meta
from .attacks import FGSM, make_attack
from .checkpoint import checkpoint_model, current_lr, read_checkpoint
from .data import load_dataset, loader_to_tensors, make_loader
from .errors import DataNotFoundError, InvalidArgument
from .files import load_json, save_csv, save_json, save_npz
from .filters import canonical_kind
from .models import build_model
from .plots import attack_label, draw_and_save, plot_retraining
from .results import load_results
from .retrain_summary import RANDOM_MEAN, Outcomes, format_comparison, summarise
from .runtime import frozen_eval, model_device, pick_device, progress
from .scores import DEFAULT_FLOOR, DEFAULT_TAU, SCORES, Baseline, consensus_labels, layer_scores
from .selective import VARIANTS, labelled_layers, layer_sizes, plan_variants, select_layers, selective_retrain
from .train import TrainConfig, training_config

__all__ = [  # the algorithm's and the summary's names are importable from here too, as they were before
    "RANDOM_MEAN", "VARIANTS", "Outcomes", "attack_from_meta", "compare_retraining", "evaluation_attacks",
    "format_comparison", "per_image_outcomes", "plan_variants", "retrain_runs", "run_comparison", "labelled_layers",
    "select_layers", "selective_retrain", "summarise",
]

Attack = Callable[[nn.Module, Tensor, Tensor], Tensor]
def attack_from_meta(meta: Mapping[str, Any]) -> Attack:
    """The attack a sweep result file was computed with, from its ``meta``.

    FGSM is rebuilt from the tag and the exact ``eps``; any other attack needs
    ``meta["attack_params"]``, the keyword arguments of :func:`robustness.attacks.make_attack`
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
) -> Outcomes:
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
) -> dict[str, list[Outcomes]]:
    """Retrain a copy of ``model`` for every variant and seed and evaluate it: ``{variant: [outcomes per seed]}``.

    Seed ``s`` shuffles ``train_data`` in batches of ``batch_size`` with a generator seeded
    by ``s``, the same order for every variant. A variant without layers is ``model`` itself;
    variants with the same layers share one run. With ``folder``, each (variant, seed) is
    written as ``<variant>_<tag>_seed<s>.npz`` as it finishes and read back instead of rerun.
    ``model`` is left unchanged.
    """
    x, y = test_data[0].to(model_device(model)), torch.as_tensor(test_data[1]).to(model_device(model))
    done: dict[tuple[tuple[str, ...], int], Outcomes] = {}
    found: dict[str, list[Outcomes]] = {variant: [] for variant in variants}
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
                                  optimizer_state=optimizer_state, training=training)
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
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """The whole comparison for one model in memory: :func:`plan_variants` from ``labels`` (layer -> label),
    :func:`retrain_runs` over ``seeds``, :func:`summarise`. ``seed`` draws the random sets and the resamples.
    ``model`` is left unchanged."""
    sizes = layer_sizes(model)
    variants = plan_variants(labels, sizes, random_sets=random_sets, seed=seed)
    runs = retrain_runs(model, train_data, test_data, variants, attacks=attacks, seeds=seeds, epochs=epochs, lr=lr,
                        batch_size=batch_size, optimizer_state=optimizer_state, training=training)
    return summarise(runs, variants, sizes, n_boot=n_boot, ci=ci, seed=seed)


def run_comparison(
    arch: str,
    dataset: str,
    inits: int | Sequence[int] | None = None,
    epoch: int | None = None,
    *,
    kind: str,
    score: str,
    attack_tag: str | None = None,
    baseline: Baseline = "density",
    tau: float = DEFAULT_TAU,
    floor: float = DEFAULT_FLOOR,
    seeds: int = 3,
    random_sets: int = 5,
    epochs: int = 1,
    lr: float | None = None,
    batch_size: int | None = None,
    subset: int | None = None,
    test_subset: int | None = None,
    pgd_steps: int = 10,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    device: str = "auto",
    models_root: str | Path = paths.DEFAULT_MODELS_ROOT,
    data_root: str | Path = paths.DEFAULT_DATA_ROOT,
    plots_root: str | Path = paths.DEFAULT_PLOTS_ROOT,
) -> tuple[list[dict[str, Any]], Path]:
    """The comparison at checkpoint ``epoch`` (default: the newest with local ``kind`` results), from files.

    Labels: :func:`robustness.scores.consensus_labels` of the ``score`` over every
    initialisation with a local ``kind`` result of ``attack_tag`` at ``epoch`` (the tag may
    be left out when only one attack was run). Retrained: the checkpoint of each of
    ``inits`` (default: those same initialisations), each with its own optimiser state,
    lr and batch size (``lr``/``batch_size`` override them), for ``epochs`` epochs over the
    train split (or its seeded ``subset``), once per seed ``seed … seed + seeds − 1``.
    Evaluated on the test split (or its seeded ``test_subset``) by :func:`evaluation_attacks`.
    Writes the rows of :func:`summarise` as JSON and CSV and the per-run outcomes (one
    ``.npz`` per variant, init and seed, as each finishes) under
    ``saved_models/<Arch>/<DATASET>/retraining/``, and a bar plot; a rerun with the same
    settings reuses them, an interrupted one computes only the missing runs. Returns the
    rows and the plot's path.
    """
    if score not in SCORES:
        raise InvalidArgument(f"unknown score {score!r}: choose one of {', '.join(SCORES)}")
    for name, value, least in (("seeds", seeds, 1), ("random_sets", random_sets, 0), ("epochs", epochs, 1),
                               ("pgd_steps", pgd_steps, 1), ("n_boot", n_boot, 1)):
        if value < least:
            raise InvalidArgument(f"{name} must be at least {least}, got {value}")
    kind = canonical_kind(kind)
    epoch, attack_tag, sources = _local_results(arch, dataset, epoch, kind=kind, attack_tag=attack_tag,
                                                root=models_root)
    loaded = {init: load_results(path) for init, path in sources.items()}
    meta = next(iter(loaded.values()))[0]
    labels = consensus_labels(
        {init: layer_scores(results, baseline=baseline, tau=tau, floor=floor) for init, (_, results) in loaded.items()},
        score,
    )
    retrained = sorted(sources) if inits is None else sorted({inits} if isinstance(inits, int) else set(inits))
    checkpoints = {init: read_checkpoint(paths.checkpoint_path(arch, dataset, init, epoch, models_root), arch, dataset)
                   for init in retrained}
    training_configs = {init: training_config(ckpt) for init, ckpt in checkpoints.items()}
    sizes = layer_sizes(build_model(arch, dataset))
    variants = plan_variants(labels, sizes, random_sets=random_sets, seed=seed)
    run_settings = {
        "arch": arch, "dataset": dataset, "epoch": epoch, "filter": kind, "score": score, "attack": attack_tag,
        "eps": meta["eps"], "baseline": baseline, "tau": tau, "floor": floor, "label_inits": sorted(sources),
        "inits": retrained, "seeds": list(range(seed, seed + seeds)), "epochs": epochs,
        "lr": {str(i): current_lr(ckpt) if lr is None else lr for i, ckpt in checkpoints.items()},
        "batch_size": {str(i): c.batch_size if batch_size is None else batch_size
                       for i, c in training_configs.items()},
        "subset": subset, "test_subset": test_subset, "pgd_steps": pgd_steps, "seed": seed, "variants": variants,
    }
    digest = hashlib.sha1(json.dumps(run_settings, sort_keys=True).encode()).hexdigest()[:10]
    out = paths.retrain_result_path(arch, dataset, epoch, kind=kind, score=score, attack_tag=attack_tag,
                                    digest=digest, root=models_root)
    settings = {**run_settings, "n_boot": n_boot, "ci": ci}
    if out.is_file() and load_json(out)["settings"] == settings:
        rows = load_json(out)["rows"]
    else:
        torch_device = pick_device(device)
        train_data = make_loader(load_dataset(dataset, True, data_root), subset=subset, seed=seed).dataset
        test = loader_to_tensors(make_loader(load_dataset(dataset, False, data_root), 1000, subset=test_subset,
                                             seed=seed))
        attacks = evaluation_attacks(meta, pgd_steps, seed)
        runs: dict[str, list[Outcomes]] = {variant: [] for variant in variants}
        for init, ckpt in checkpoints.items():
            model = checkpoint_model(ckpt, torch_device)
            found = retrain_runs(
                model, train_data, test, variants, attacks=attacks, seeds=settings["seeds"], epochs=epochs,
                lr=settings["lr"][str(init)], batch_size=settings["batch_size"][str(init)],
                optimizer_state=ckpt["optimizer"], training=training_configs[init],
                folder=out.with_suffix(""), tag=f"Init_{init}",
            )
            for variant, outcomes in found.items():
                runs[variant] += outcomes
        rows = summarise(runs, variants, sizes, n_boot=n_boot, ci=ci, seed=seed)
        # the regime is the folder's (models_root is a regime root), so it stays out of the settings' digest
        save_json({"settings": settings, **regime_meta(arch, dataset, models_root), "labels": labels, "rows": rows},
                  out)
        _save_csv(rows, out.with_suffix(".csv"))
    title = (f"{paths.arch_dir_name(arch)} {paths.dataset_dir_name(dataset)} epoch {epoch}: retraining by {kind} "
             f"{score} labels ({attack_label(attack_tag, [m['eps'] for m, _ in loaded.values()])}, τ = {tau:g}); "
             f"error bars: SD over {rows[0]['runs']} runs "
             f"({', '.join(f'Init_{i}' for i in retrained)} × {seeds} seeds)")
    name = paths.retrain_plot_name(arch, dataset, epoch, kind=kind, score=score, attack_tag=attack_tag, digest=digest)
    return rows, draw_and_save(lambda: plot_retraining(rows, title), name, plots_root, keep_if_newer_than=[out])


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
