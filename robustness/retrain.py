"""Selective retraining (SPEC 4, the study's application): retrain only chosen layers.

:func:`selective_retrain` trains the parameters of the named modules and nothing
else. The whole model stays in **eval mode** while it trains: BatchNorm layers
normalise with their stored running statistics and never update them (also those
inside a named module, should one name a whole block), and dropout is off. So every
tensor of the state dict other than the named modules' parameters — BatchNorm running
statistics and ``num_batches_tracked`` included — is bitwise unchanged, and the layers
that do train see the same normalisation as at test time.

:func:`compare_retraining` runs the study's comparison from one checkpoint: no
retraining, the robust + antifragile layers, all layers, the fragile layers only —
each from the same weights, for the same number of steps, with the same seed.
"""

from __future__ import annotations

import copy
import csv
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from . import paths
from .attacks import FGSM, make_attack
from .data import load_dataset, loader_to_tensors, make_loader
from .errors import DataNotFoundError, InvalidArgument
from .files import atomic_path, load_json, save_json
from .filters import canonical_kind
from .models import filterable_layers
from .plots import plot_retraining, save_figure
from .runtime import frozen_eval, model_device, pick_device, progress, seed_everything
from .scores import DEFAULT_FLOOR, DEFAULT_TAU, SCORES, Baseline, layer_scores
from .sweep import evaluate, load_results

Attack = Callable[[nn.Module, Tensor, Tensor], Tensor]

# (variant, labels of the layers it retrains; None = every filterable layer)
VARIANTS: tuple[tuple[str, tuple[str, ...] | None], ...] = (
    ("none", ()),
    ("robust+antifragile", ("robust", "antifragile")),
    ("all", None),
    ("fragile", ("fragile",)),
)


def _named_modules(model: nn.Module, layers: Iterable[str]) -> list[nn.Module]:
    modules = dict(model.named_modules())
    layers = list(layers)
    unknown = [name for name in layers if name not in modules or name == ""]
    if unknown:
        valid = ", ".join(name for name, _ in filterable_layers(model))
        raise InvalidArgument(f"no module named {', '.join(map(repr, unknown))} in the model: use one of {valid}")
    return [modules[name] for name in layers]


def selective_retrain(
    model: nn.Module,
    train_loader: DataLoader,
    layers: Sequence[str],
    *,
    epochs: int = 1,
    lr: float = 1e-3,
    seed: int = 0,
) -> nn.Module:
    """Train only the parameters of the modules named in ``layers`` (Adam, cross-entropy); return ``model``.

    Trains in place for ``epochs`` passes over ``train_loader``, with the model in
    eval mode (see the module docstring); every other state-dict tensor stays
    bitwise unchanged. The model's modes and ``requires_grad`` flags are restored
    after. ``seed`` seeds torch before the first batch (the loader's shuffling
    included, when it uses the global generator).
    """
    if not layers:
        raise InvalidArgument("no layers to retrain: name at least one module (e.g. 'fc')")
    if epochs < 1:
        raise InvalidArgument(f"epochs must be at least 1, got {epochs}")
    if not lr > 0:
        raise InvalidArgument(f"lr must be positive, got {lr}")
    params = list(dict.fromkeys(p for m in _named_modules(model, layers) for p in m.parameters()))
    device = model_device(model)
    seed_everything(seed)
    with frozen_eval(model):
        for p in params:
            p.requires_grad_(True)
        optimizer = torch.optim.Adam(params, lr=lr)
        for epoch in progress(range(1, epochs + 1), "retrain", total=epochs):
            for images, labels in progress(train_loader, f"retrain epoch {epoch}"):
                optimizer.zero_grad(set_to_none=True)
                F.cross_entropy(model(images.to(device)), torch.as_tensor(labels).to(device)).backward()
                optimizer.step()
    return model


def select_layers(
    scores_table: Mapping[str, Mapping[str, Any]], score: str, labels: Sequence[str] = ("robust", "antifragile")
) -> list[str]:
    """The layers whose label for ``score`` is one of ``labels``, in table order.

    ``scores_table`` maps module names to :func:`robustness.scores.filtering_scores`
    dicts (as :func:`robustness.scores.layer_scores` returns for one checkpoint).
    """
    if score not in SCORES:
        raise InvalidArgument(f"unknown score {score!r}: choose one of {', '.join(SCORES)}")
    return [name for name, scores in scores_table.items() if scores["labels"][score] in labels]


def compare_retraining(
    model: nn.Module,
    train_loader: DataLoader,
    test_data: tuple[Tensor, Tensor],
    scores_table: Mapping[str, Mapping[str, Any]],
    *,
    score: str,
    attack: Attack,
    epochs: int = 1,
    lr: float = 1e-3,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Clean and adversarial test accuracy after each retraining variant, one row per variant.

    Variants: ``none``; ``robust+antifragile`` and ``fragile`` (layers chosen by their
    ``score`` label in ``scores_table``); ``all`` (every Conv2d/Linear layer). Each starts
    from a copy of ``model``'s weights and trains ``epochs × len(train_loader)`` steps
    with ``seed``; a variant whose selection is empty trains nothing (``steps`` = 0).
    ``attack`` is regenerated against each retrained model on ``test_data`` (``(x, y)``
    tensors). ``model`` itself is left unchanged.
    """
    rows = []
    for variant, wanted in progress(VARIANTS, "variants", total=len(VARIANTS), leave=True):
        if wanted is None:
            layers = [name for name, _ in filterable_layers(model)]
        else:
            layers = select_layers(scores_table, score, wanted) if wanted else []
        trained = copy.deepcopy(model)
        if layers:
            selective_retrain(trained, train_loader, layers, epochs=epochs, lr=lr, seed=seed)
        device = model_device(trained)
        with frozen_eval(trained):
            result = evaluate(trained, test_data[0].to(device), test_data[1].to(device), attack)
        rows.append({
            "variant": variant,
            "n_layers": len(layers),
            "steps": epochs * len(train_loader) if layers else 0,
            "clean_acc": result.clean_acc,
            "adv_acc": result.adv_acc,
            "layers": layers,
        })
    return rows


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


def run_comparison(
    arch: str,
    dataset: str,
    init: int,
    epoch: int,
    *,
    kind: str,
    score: str,
    attack_tag: str | None = None,
    baseline: Baseline = "unfiltered",
    tau: float = DEFAULT_TAU,
    floor: float = DEFAULT_FLOOR,
    epochs: int = 1,
    lr: float = 1e-3,
    batch_size: int = 100,
    subset: int | None = None,
    test_subset: int | None = None,
    seed: int = 0,
    device: str = "auto",
    models_root: str | Path = paths.DEFAULT_MODELS_ROOT,
    data_root: str | Path = "Dataset",
    plots_root: str | Path = paths.DEFAULT_PLOTS_ROOT,
) -> tuple[list[dict[str, Any]], Path]:
    """The comparison of :func:`compare_retraining` for one checkpoint, from its local sweep results.

    Scores come from the local ``kind`` result file of ``(init, epoch)`` (of ``attack_tag``;
    may be left out when only one attack was run); the adversarial accuracy uses that
    file's attack and eps. Trains on the train split (or its seeded ``subset``), tests on
    the test split (or ``test_subset``). Writes the rows as JSON and CSV (atomically) under
    ``saved_models/<Arch>/<DATASET>/retraining/`` and a bar plot in ``plots/``; a rerun
    with the same settings reads the JSON back instead of training again. Returns the
    rows and the plot's path.
    """
    from .train import load_checkpoint

    if score not in SCORES:
        raise InvalidArgument(f"unknown score {score!r}: choose one of {', '.join(SCORES)}")
    kind = canonical_kind(kind)
    source = _result_file(arch, dataset, init, epoch, kind=kind, attack_tag=attack_tag, root=models_root)
    meta, results = load_results(source)
    settings = {
        "arch": arch, "dataset": dataset, "init": init, "epoch": epoch, "filter": kind, "score": score,
        "attack": meta["attack"], "eps": meta["eps"], "baseline": baseline, "tau": tau, "floor": floor,
        "epochs": epochs, "lr": lr, "batch_size": batch_size, "subset": subset, "test_subset": test_subset,
        "seed": seed,
    }
    out = paths.retrain_result_path(arch, dataset, init, epoch, kind=kind, score=score,
                                     attack_tag=meta["attack"], root=models_root)
    if out.is_file() and load_json(out)["settings"] == settings:
        rows = load_json(out)["rows"]
    else:
        model, _ = load_checkpoint(paths.checkpoint_path(arch, dataset, init, epoch, models_root), arch, dataset,
                                   map_location=pick_device(device))
        train_loader = make_loader(load_dataset(dataset, True, data_root), batch_size, shuffle=True,
                                   subset=subset, seed=seed)
        test = loader_to_tensors(make_loader(load_dataset(dataset, False, data_root), 1000, subset=test_subset,
                                             seed=seed))
        table = layer_scores(results, baseline, tau, floor)
        rows = compare_retraining(model, train_loader, test, table, score=score, attack=attack_from_meta(meta),
                                  epochs=epochs, lr=lr, seed=seed)
        save_json({"settings": settings, "rows": rows}, out)
        _save_csv(rows, out.with_suffix(".csv"))
    title = (f"{paths.arch_dir_name(arch)} {paths.dataset_dir_name(dataset)} Init_{init} epoch {epoch}: retraining "
             f"by {kind} {score} score ({meta['attack']}, tau={tau:g})")
    fig = plot_retraining(rows, title)
    name = paths.plot_name(paths.arch_dir_name(arch), paths.dataset_dir_name(dataset), "retrain", f"Init_{init}",
                           f"{epoch}epochs", kind, score, meta["attack"])
    plot = save_figure(fig, name, plots_root)
    plt.close(fig)
    return rows, plot


def _result_file(
    arch: str, dataset: str, init: int, epoch: int, *, kind: str, attack_tag: str | None, root: str | Path
) -> Path:
    """The local sweep result of one checkpoint and filter, with a clear error when it is missing or ambiguous."""
    found = {tag: units[(init, epoch)] for tag, units in paths.list_sweep_results(arch, dataset, kind, "local", root)
             .items() if (init, epoch) in units}
    command = (f"python -m robustness filter --arch {arch} --dataset {dataset} --inits {init} --epochs {epoch} "
               f"--filter {kind} --scope local --attack fgsm -e EPS")
    if attack_tag is not None:
        if attack_tag not in found:
            raise DataNotFoundError(
                f"no local {kind} result of Init_{init} epoch {epoch} for attack {attack_tag} (found: "
                f"{', '.join(found) or 'none'}): run {command}"
            )
        return found[attack_tag]
    if len(found) != 1:
        if not found:
            raise DataNotFoundError(f"no local {kind} result of Init_{init} epoch {epoch}: run {command} first")
        raise InvalidArgument(f"results of several attacks exist ({', '.join(found)}): pick one with --attack-tag")
    return next(iter(found.values()))


def _save_csv(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """The comparison rows as CSV (layers joined by spaces), atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**row, "layers": " ".join(row["layers"])} for row in rows)
    return path
