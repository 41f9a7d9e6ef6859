"""Selective retraining: continue training only chosen layers, the way the trainer trains.

:func:`selective_retrain` continues training a model as :func:`robustness.training.trainer.train`
does — the whole model in train mode, the trainer's optimiser, cross-entropy — except
that only the parameters of the chosen modules have gradients and sit in the
optimiser. So every other parameter is bitwise unchanged, while BatchNorm's running
statistics (buffers, not parameters) follow the batches, as they do in the trainer:
a layer that changes shifts the activations after it, and BatchNorm keeps normalising
them with the statistics of the network as it now is.

Given the checkpoint's optimiser state, the optimiser continues where the trainer
stopped: Adam's step count and moments of the chosen parameters are restored (the
slice of the saved state that belongs to them). A fresh Adam instead moves every
weight by about ``lr`` on each of its first steps whatever its gradient, and together
with frozen BatchNorm statistics that collapses a trained network — an artefact of the
procedure, not an effect of the layers chosen.

:func:`plan_variants` names the layer sets that :mod:`robustness.retraining.comparison` compares, and
:func:`matched_random_sets` draws its controls: random sets of the same number of layers,
as close as possible in parameter count.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..data import augment
from ..errors import CheckpointError, InvalidArgument
from ..models import filterable_layers
from ..runtime import frozen_eval, model_device, progress, seed_everything
from ..training import AdvTraining, TrainConfig, adversarial_batch, build_optimizer
from ..vocab import SCORES


def _named_modules(model: nn.Module, layers: Sequence[str]) -> list[nn.Module]:
    modules = dict(model.named_modules())
    unknown = [name for name in layers if name not in modules or name == ""]
    if unknown:
        valid = ", ".join(name for name, _ in filterable_layers(model))
        raise InvalidArgument(f"no module named {', '.join(map(repr, unknown))} in the model: use one of {valid}")
    return [modules[name] for name in layers]


def chosen_parameters(model: nn.Module, layers: Sequence[str]) -> list[nn.Parameter]:
    """The parameters of the modules named in ``layers``, in the order of ``model.parameters()``."""
    wanted = {id(p) for m in _named_modules(model, layers) for p in m.parameters()}
    return [p for p in model.parameters() if id(p) in wanted]


def optimizer_slice(state: Mapping[str, Any], model: nn.Module, params: Sequence[nn.Parameter]) -> dict[str, Any]:
    """The part of ``state`` (an optimiser ``state_dict`` over all of ``model.parameters()``, as the
    trainer saves it) that belongs to ``params``, renumbered as an optimiser over ``params`` alone numbers it.

    An optimiser's state dict keys each parameter's state by its position in the optimiser's
    parameter list, so position ``i`` of the full model becomes position ``j`` of ``params``.
    """
    full = list(model.parameters())
    groups = state.get("param_groups", []) if isinstance(state, Mapping) else []
    if len(groups) != 1 or len(groups[0]["params"]) != len(full):
        covered = sum(len(g["params"]) for g in groups)
        raise CheckpointError(
            f"the optimiser state covers {covered} parameters in {len(groups)} group(s), but the model has "
            f"{len(full)} in one: it was not saved by the trainer for this architecture; retrain without it"
        )
    position = {id(p): i for i, p in enumerate(full)}
    saved = state["state"]
    sliced = {}
    for j, p in enumerate(params):
        key = groups[0]["params"][position[id(p)]]
        if key in saved:
            shapes = {name: tuple(v.shape) for name, v in saved[key].items() if torch.is_tensor(v) and v.dim()}
            if any(shape != tuple(p.shape) for shape in shapes.values()):
                raise CheckpointError(f"the optimiser state of parameter {key} has shapes {shapes}, the parameter "
                                      f"{tuple(p.shape)}: the state belongs to another model")
            # copies: the optimiser updates its state in place, and the caller's state must stay as saved
            sliced[j] = {name: v.clone() if torch.is_tensor(v) else v for name, v in saved[key].items()}
    return {"state": sliced, "param_groups": [{**groups[0], "params": list(range(len(params)))}]}


def retrain_optimizer(
    model: nn.Module,
    params: Sequence[nn.Parameter],
    *,
    lr: float,
    optimizer_state: Mapping[str, Any] | None = None,
    training: TrainConfig | None = None,
) -> torch.optim.Optimizer:
    """The trainer's optimiser (:func:`robustness.training.trainer.build_optimizer` of ``training``, the checkpoint's
    config: Adam by default) over ``params`` at ``lr``, with the slice of ``optimizer_state`` (the
    checkpoint's ``"optimizer"``) that belongs to them, when given."""
    optimizer = build_optimizer(params, replace(training or TrainConfig(), lr=lr))
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_slice(optimizer_state, model, params))
        for group in optimizer.param_groups:  # loading restores the saved lr; an explicit one wins
            group["lr"] = lr
    return optimizer


def selective_retrain(
    model: nn.Module,
    train_loader: DataLoader,
    layers: Sequence[str],
    *,
    epochs: int = 1,
    lr: float = 1e-3,
    seed: int = 0,
    optimizer_state: Mapping[str, Any] | None = None,
    training: TrainConfig | None = None,
    adv: AdvTraining | None = None,
) -> nn.Module:
    """Train only the parameters of the modules named in ``layers``, as the trainer trains; return ``model``.

    Trains in place for ``epochs`` passes over ``train_loader`` with the whole model in
    train mode (BatchNorm running statistics follow the batches), cross-entropy, and
    the trainer's optimiser at ``lr`` over the chosen parameters, continuing from
    ``optimizer_state`` (the checkpoint's ``"optimizer"``) when given; ``training`` (the
    checkpoint's :class:`~robustness.training.trainer.TrainConfig`) picks the optimiser and, when its
    recipe augments, the random crops and flips (drawn from ``seed``). Every other
    parameter stays bitwise unchanged. The model's modes and ``requires_grad`` flags
    are restored afterwards, also on an exception. ``seed`` seeds every generator
    before the first batch (the loader's shuffling too, unless it has its own generator). With an active
    ``adv`` each batch is replaced by its adversarial examples at ``adv.eps`` (made as the trainer makes them,
    :func:`robustness.training.adversarial_batch`): adversarial retraining.
    """
    if not layers:
        raise InvalidArgument("no layers to retrain: name at least one module (e.g. 'fc')")
    if epochs < 1:
        raise InvalidArgument(f"epochs must be at least 1, got {epochs}")
    if not lr > 0:
        raise InvalidArgument(f"lr must be positive, got {lr}")
    params = chosen_parameters(model, layers)
    optimizer = retrain_optimizer(model, params, lr=lr, optimizer_state=optimizer_state, training=training)
    crops = torch.Generator().manual_seed(seed) if training is not None and training.augment else None
    device = model_device(model)
    seed_everything(seed)
    with frozen_eval(model):  # records every mode and requires_grad flag, and restores them on exit
        model.train()
        for p in params:
            p.requires_grad_(True)
        for epoch in progress(range(1, epochs + 1), "retrain", total=epochs):
            for batch, labels in progress(train_loader, f"retrain epoch {epoch}"):
                optimizer.zero_grad(set_to_none=True)
                images = (augment(batch, crops) if crops is not None else batch).to(device)
                targets = torch.as_tensor(labels).to(device)
                if adv is not None and adv.active:
                    images = adversarial_batch(model, images, targets, adv, adv.eps)
                F.cross_entropy(model(images), targets).backward()
                optimizer.step()
    return model


def labelled_layers(
    scores_table: Mapping[str, Mapping[str, Any]], score: str, labels: Sequence[str] = ("robust", "antifragile")
) -> list[str]:
    """The layers whose label for ``score`` is one of ``labels``, in table order.

    ``scores_table`` maps module names to :func:`robustness.scoring.scores.filtering_scores`
    dicts (as :func:`robustness.scoring.scores.layer_scores` returns for one checkpoint).
    """
    if score not in SCORES:
        raise InvalidArgument(f"unknown score {score!r}: choose one of {', '.join(SCORES)}")
    return [name for name, scores in scores_table.items() if scores["labels"][score] in labels]




def layer_sizes(model: nn.Module) -> dict[str, int]:
    """The number of parameters (weight and bias) of every Conv2d/Linear layer, in module order."""
    return {name: sum(p.numel() for p in m.parameters()) for name, m in filterable_layers(model)}


def matched_random_sets(
    sizes: Mapping[str, int], chosen: Sequence[str], count: int = 5, *, seed: int = 0, draws: int = 1000
) -> list[list[str]]:
    """``count`` random layer sets of ``len(chosen)`` layers, the closest to ``chosen`` in parameter count.

    Candidates are every set of that many layers of ``sizes`` (layer -> parameters, in
    model order) when there are at most ``draws`` of them, else ``draws`` sets drawn
    uniformly at random (seeded; repeats dropped). The set ``chosen`` itself is excluded;
    the ``count`` candidates with the smallest ``|params(set) - params(chosen)|`` are kept,
    ties broken by a seeded random order. Each set lists its layers in model order. Fewer
    than ``count`` come back when fewer other sets exist (none when ``chosen`` is empty).
    """
    names = list(sizes)
    unknown = [name for name in chosen if name not in sizes]
    if unknown:
        raise InvalidArgument(f"unknown layer(s) {', '.join(unknown)}: the layers are {', '.join(names)}")
    if count < 0 or draws < 1:
        raise InvalidArgument(f"need count >= 0 and draws >= 1, got count={count}, draws={draws}")
    k = len(chosen)
    if k == 0 or count == 0:
        return []
    rng = np.random.default_rng(seed)
    if math.comb(len(names), k) <= draws:
        candidates = [tuple(c) for c in itertools.combinations(range(len(names)), k)]
        candidates = [candidates[i] for i in rng.permutation(len(candidates))]
    else:
        drawn = (tuple(sorted(rng.choice(len(names), k, replace=False).tolist())) for _ in range(draws))
        candidates = list(dict.fromkeys(drawn))
    target = sum(sizes[name] for name in chosen)
    excluded = tuple(sorted(names.index(name) for name in chosen))
    candidates = [c for c in candidates if c != excluded]
    candidates.sort(key=lambda c: abs(sum(sizes[names[i]] for i in c) - target))  # stable: ties keep random order
    return [[names[i] for i in c] for c in candidates[:count]]


# (variant, labels of the layers it retrains; None = every Conv2d/Linear layer)
VARIANTS: tuple[tuple[str, tuple[str, ...] | None], ...] = (
    ("none", ()),
    ("robust+antifragile", ("robust", "antifragile")),
    ("all", None),
    ("fragile", ("fragile",)),
)


def plan_variants(
    labels: Mapping[str, str], sizes: Mapping[str, int], *, random_sets: int = 5, seed: int = 0
) -> dict[str, list[str]]:
    """The layers each variant retrains: the fixed :data:`VARIANTS`, then ``random-1`` … ``random-K``.

    ``labels`` maps layers to their label (e.g. :func:`robustness.scoring.scores.consensus_labels`),
    ``sizes`` every Conv2d/Linear layer to its parameter count, in model order
    (:func:`layer_sizes`). Layer lists follow model order.
    """
    unknown = [name for name in labels if name not in sizes]
    if unknown:
        raise InvalidArgument(f"labelled layer(s) {', '.join(unknown)} are not layers of this model")
    plan = {
        variant: list(sizes) if wanted is None else [name for name in sizes if labels.get(name) in wanted]
        for variant, wanted in VARIANTS
    }
    drawn = matched_random_sets(sizes, plan["robust+antifragile"], random_sets, seed=seed)
    return plan | {f"random-{i}": layers for i, layers in enumerate(drawn, 1)}
