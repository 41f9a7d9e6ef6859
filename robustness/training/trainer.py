"""Training of ``N`` initialisations with checkpoints, history and resume.

Each initialisation ``i`` (counted from 1) gets its own seed, ``seed * 1000 + i``.
A checkpoint is written at epoch 0, every ``save_every`` epochs and at the last
epoch; it holds everything needed to resume bitwise: weights, optimiser state, the
torch RNG state and the history so far. The shuffling order of epoch ``e`` depends
only on the seed and ``e``, so a resumed run sees the same batches.

Under ``torchrun`` with N processes, training uses DistributedDataParallel: each
process takes every N-th example of the epoch's shuffled order in batches of
``batch_size / N``, so the N batches of one step make one global batch of
``batch_size`` (the optimiser sees the same batch size, learning rate and number of
steps per epoch as a single process). Only rank 0 evaluates and writes files.

Two recipes: ``adam`` (the original study's: Adam, lr 1e-3, batch 100, no augmentation) and
``cifar`` (SGD with momentum 0.9 and weight decay 5e-4, lr 0.1 on a cosine schedule over the
run's epochs, batch 128, random crops with 4 pixels of padding and horizontal flips). The
schedule's state is in every checkpoint and the augmentation of epoch ``e`` is drawn from a
generator seeded with the seed and ``e``, so a resumed run stays bitwise equal.

The checkpoint file's contents, and reading it back, are described in :mod:`robustness.models.checkpoints`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .. import distributed, paths
from ..attacks import accuracy
from ..data import augment, dataset_info, load_dataset, make_loader
from ..errors import DataNotFoundError, InvalidArgument
from ..files import load_json, remove_stale_temporaries, save_json, save_torch, writable_folder

# current_lr, load_checkpoint and read_checkpoint were defined here first; users still import them from here.
from ..models import (
    CHECKPOINT_FORMAT,
    MODELS,
    build_model,
    checkpoint_regime,
    load_checkpoint,
    read_checkpoint,
    to_device,
)
from ..runtime import pick_device, progress, seed_everything, sync
from .adversarial import AdvTraining, adversarial_batch, claim_regime, from_settings, regime_tag

Recipe = Literal["adam", "cifar"]
RECIPES: dict[str, dict[str, Any]] = {
    "adam": {},  # the TrainConfig defaults
    "cifar": dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4, schedule="cosine", augment=True,
                  batch_size=128),
}
# What a resumed run must share with the checkpoint it continues: every setting that changes its numbers
# (the optimiser state and schedule are restored from the file, so a different value would be silently
# ignored; the training images, seed, lr and batch size would make a checkpoint of two runs in one).
_RESUME_FIELDS = ("optimizer", "momentum", "weight_decay", "schedule", "augment", "subset", "seed", "lr", "batch_size",
                  "amp")


@dataclass
class TrainConfig:
    """What to train and how; defaults are the original study's (Adam, lr 1e-3, batch 100).
    :meth:`from_recipe` gives the ``cifar`` recipe (see the module docstring)."""

    arch: str = "resnet18"
    dataset: str = "mnist5k"
    inits: int = 1
    epochs: int = 10
    save_every: int = 1
    batch_size: int = 100
    lr: float = 1e-3
    seed: int = 0
    device: str = "auto"
    amp: bool = False
    subset: int | None = None
    models_root: str = str(paths.DEFAULT_MODELS_ROOT)
    data_root: str = str(paths.DEFAULT_DATA_ROOT)
    download: bool = False
    optimizer: Literal["adam", "sgd"] = "adam"
    momentum: float = 0.9  # SGD only
    weight_decay: float = 0.0
    schedule: Literal["constant", "cosine"] = "constant"  # cosine: from lr to 0 over the epochs, per epoch
    augment: bool = False  # random crop (4 pixels of padding) and horizontal flip
    adv: AdvTraining = field(default_factory=AdvTraining)  # adversarial training (robustness.training.adversarial)

    @property
    def regime(self) -> str:
        """The regime tag of the run (``standard`` without adversarial training): which folder it trains into."""
        return regime_tag(self.adv)

    @classmethod
    def from_recipe(cls, recipe: Recipe, **settings: Any) -> TrainConfig:
        """A config with ``recipe``'s optimiser, schedule, augmentation, lr and batch size; ``settings``
        (arch, dataset, epochs, ... or any of those) override them."""
        if recipe not in RECIPES:
            raise InvalidArgument(f"unknown recipe {recipe!r}: choose one of {', '.join(RECIPES)}")
        return cls(**{**RECIPES[recipe], **settings})

    def validate(self) -> None:
        """Raise :class:`InvalidArgument` for a value no run could use."""
        if self.arch not in MODELS:
            raise InvalidArgument(f"unknown architecture {self.arch!r}: choose one of {', '.join(MODELS)}")
        dataset_info(self.dataset)
        for name in ("inits", "epochs", "save_every", "batch_size"):
            if getattr(self, name) < 1 and not (name == "epochs" and self.epochs == 0):
                raise InvalidArgument(f"{name} must be at least 1, got {getattr(self, name)}")
        if not math.isfinite(self.lr) or self.lr <= 0:
            raise InvalidArgument(f"lr must be a finite number > 0, got {self.lr}")
        if self.seed < 0:
            raise InvalidArgument(f"seed must be an integer >= 0, got {self.seed}")
        if self.subset is not None and self.subset < 1:
            raise InvalidArgument(f"subset must be at least 1 image (or None: all), got {self.subset}")
        if self.optimizer not in ("adam", "sgd"):
            raise InvalidArgument(f"unknown optimizer {self.optimizer!r}: use adam or sgd")
        if self.schedule not in ("constant", "cosine"):
            raise InvalidArgument(f"unknown schedule {self.schedule!r}: use constant or cosine")
        if not isinstance(self.adv, AdvTraining):
            raise InvalidArgument(f"adv must be an AdvTraining, got {type(self.adv).__name__}")
        if not 0 <= self.momentum < 1 or not 0 <= self.weight_decay < math.inf:
            raise InvalidArgument(f"momentum must lie in [0, 1) and weight_decay be >= 0, got {self.momentum} "
                                  f"and {self.weight_decay}")


def build_optimizer(params: Iterable[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser ``config`` trains with (Adam, or SGD with momentum, at ``config.lr`` and
    ``config.weight_decay``); selective retraining rebuilds it over fewer parameters and restores
    its state from a checkpoint."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The learning-rate schedule of ``config``, stepped once per epoch: ``None`` for a constant rate,
    or cosine from ``config.lr`` at epoch 0 to 0 at ``config.epochs``."""
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(config.epochs, 1))
    return None


def init_seed(seed: int, init: int) -> int:
    """The seed of initialisation ``init`` in a run seeded with ``seed``."""
    return seed * 1000 + init


def save_epochs(epochs: int, save_every: int) -> list[int]:
    """The epochs that get a checkpoint: 0, every ``save_every``, and the last."""
    return sorted({0, epochs, *range(save_every, epochs + 1, save_every)})


def train(config: TrainConfig, resume: bool = True) -> dict[int, list[dict[str, float]]]:
    """Train ``config.inits`` initialisations; return each one's history, keyed by init.

    With ``resume`` (default) an initialisation continues from its newest checkpoint
    and one already trained to ``config.epochs`` is skipped. Under ``torchrun``, every
    process calls it and gets the same histories (see the module docstring).
    """
    config.validate()
    writable_folder(config.models_root)  # before any epoch is spent
    world = distributed.world_size()
    if config.batch_size % world:
        raise InvalidArgument(
            f"batch size {config.batch_size} is the global batch, split evenly over the {world} processes: "
            f"pass a multiple of {world}, e.g. --batch-size {-(-config.batch_size // world) * world}"
        )
    train_loader_data = load_dataset(config.dataset, True, config.data_root, config.download)
    test_loader = make_loader(load_dataset(config.dataset, False, config.data_root, config.download), 500)
    if distributed.is_main():
        claim_regime(config.adv, config.arch, config.dataset, config.models_root)
    with distributed.process_group(pick_device(config.device)) as device:
        return {
            init: _train_init(config, init, device, train_loader_data, test_loader, resume)
            for init in range(1, config.inits + 1)
        }


def _epoch_loader(
    train_data: Dataset, config: TrainConfig, seed: int, epoch: int, *, rank: int = 0, world_size: int = 1
) -> DataLoader:
    """The training batches of ``epoch``: the fixed ``config.subset``, shuffled by a generator seeded
    with ``(seed, epoch)``; with ``world_size`` > 1, process ``rank``'s every ``world_size``-th example
    in batches of ``batch_size / world_size`` (a DistributedSampler seeded alike, at ``set_epoch(epoch)``)."""
    order = torch.Generator().manual_seed(seed * 100_003 + epoch)
    loader = make_loader(train_data, config.batch_size, shuffle=True, subset=config.subset, seed=seed, generator=order)
    if world_size == 1:
        return loader
    sampler = DistributedSampler(loader.dataset, world_size, rank, shuffle=True, seed=seed * 100_003)
    sampler.set_epoch(epoch)
    return DataLoader(loader.dataset, config.batch_size // world_size, sampler=sampler, generator=order,
                      pin_memory=loader.pin_memory)


def _augment_generator(seed: int, epoch: int, rank: int) -> torch.Generator:
    """The generator of epoch ``epoch``'s augmentation on process ``rank``: a function of the three alone."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0]))


def training_config(ckpt: Mapping[str, Any]) -> TrainConfig:
    """The :class:`TrainConfig` a checkpoint dict (:func:`read_checkpoint`) was trained with; fields an
    older checkpoint lacks take their defaults."""
    known = {f.name for f in fields(TrainConfig)}
    saved = {k: v for k, v in ckpt.get("config", {}).items() if k in known}
    return TrainConfig(**{**saved, "adv": from_settings(saved.get("adv"))})


def _check_resumable(ckpt: dict[str, Any], config: TrainConfig, path: Path) -> None:
    """Refuse to continue a checkpoint trained with another setting that changes its numbers (training subset,
    seed, lr, batch size, mixed precision, optimiser, schedule, augmentation, regime) than ``config``'s."""
    regime = checkpoint_regime(ckpt)
    if regime["regime_settings"] != config.adv.settings():
        raise InvalidArgument(
            f"{path} was trained in regime {regime['regime']} ({regime['regime_settings']}), this run asks for "
            f"{config.regime} ({config.adv.settings()}): resume it with the same --adv-train, --norm, --eps, --steps "
            f"and --adv-warmup, or start over "
            f"(--no-resume) or train into another --models-root"
        )
    saved = asdict(training_config(ckpt))
    for key in _RESUME_FIELDS:
        if saved[key] != getattr(config, key):
            raise InvalidArgument(
                f"{path} was trained with {key}={saved[key]!r}, this run asks for {getattr(config, key)!r}: "
                f"resume it with the same {key} (and recipe), or start over (--no-resume) or train into another "
                f"--models-root"
            )
    if config.schedule == "cosine" and saved["epochs"] != config.epochs:
        raise InvalidArgument(
            f"{path} is part of a {saved['epochs']}-epoch cosine schedule, this run asks for {config.epochs} epochs: "
            f"resume with --epochs {saved['epochs']}, or start over (--no-resume) or train into another --models-root"
        )


def _train_init(config, init, device, train_data, test_loader, resume) -> list[dict[str, float]]:
    seed = init_seed(config.seed, init)
    seed_everything(seed)  # on every rank alike: one initialisation, and RNG streams that stay equal
    model = build_model(config.arch, config.dataset).to(device)
    optimizer = build_optimizer(model.parameters(), config)
    scheduler = build_scheduler(optimizer, config)  # before the optimiser's state is restored: it sets the lr
    history: list[dict[str, float]] = []
    start = 0
    # every rank resumes from the checkpoints rank 0 finds
    existing = distributed.on_main(
        lambda: paths.list_checkpoints(config.arch, config.dataset, init, config.models_root, regime=config.regime)
        if resume else {}
    )
    folder = paths.init_dir(config.arch, config.dataset, init, config.models_root, regime=config.regime)
    if distributed.is_main() and folder.is_dir():  # a checkpoint write killed before its rename left a temporary
        remove_stale_temporaries(folder)
    usable = [e for e in existing if e <= config.epochs]
    if usable:
        start = usable[-1]
        ckpt = distributed.on_all(lambda: read_checkpoint(existing[start], config.arch, config.dataset))
        _check_resumable(ckpt, config, existing[start])
        model.load_state_dict(ckpt["state_dict"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["rng"])
        history = list(ckpt["history"])
        if distributed.is_main():  # a kill after an epoch's history line, before its checkpoint: forget that line
            _sync_history(config, init, history)
    if start == 0 and 0 not in existing and distributed.is_main():
        _save(config, init, seed, 0, model, optimizer, scheduler, history)
    if start >= config.epochs:
        return history
    net = distributed.wrap(model, device)

    use_amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    loss_fn = nn.CrossEntropyLoss()
    keep = save_epochs(config.epochs, config.save_every)
    for epoch in progress(range(start + 1, config.epochs + 1), f"Init_{init}", config.epochs - start, leave=True):
        loader = _epoch_loader(
            train_data, config, seed, epoch, rank=distributed.rank(), world_size=distributed.world_size()
        )
        crops = _augment_generator(seed, epoch, distributed.rank())
        net.train()
        tic = time.perf_counter()
        # summed on the device: no host round trip per step (one would cut every XLA step in two)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        seen = 0
        for images, targets in progress(loader, f"epoch {epoch}"):
            x = (augment(images, crops) if config.augment else images).to(device, non_blocking=True)
            y = torch.as_tensor(targets).to(device, non_blocking=True)
            if config.adv.active:  # made with the unwrapped model in eval mode, trained on in train mode
                x = adversarial_batch(model, x, y, config.adv, config.adv.eps_at(epoch))
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cuda", enabled=use_amp):
                logits = net(x)
                loss = loss_fn(logits, y)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_sum += loss.detach().double() * len(y)
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
            sync(device)
        if scheduler is not None:
            scheduler.step()
        loss_total, correct_total, seen = distributed.all_sum([loss_sum.item(), correct.item(), seen], device)
        # Rank 0 evaluates the model it saves (its BatchNorm statistics are those DDP gives the other ranks),
        # with its CPU RNG forked so that the test loader's draw keeps its stream equal to the other ranks'.
        with torch.random.fork_rng(devices=[], enabled=distributed.world_size() > 1):
            test_acc, seconds = distributed.on_main(
                lambda: (accuracy(model, test_loader), time.perf_counter() - tic)  # noqa: B023 (called at once)
            )
        history.append(
            {"epoch": epoch, "train_loss": loss_total / seen, "train_acc": correct_total / seen, "test_acc": test_acc,
             "seconds": seconds, **({"train_eps": config.adv.eps_at(epoch)} if config.adv.active else {})}
        )
        if distributed.is_main():
            if epoch in keep:
                _save(config, init, seed, epoch, model, optimizer, scheduler, history)
            else:
                save_json(history, paths.history_path(config.arch, config.dataset, init, config.models_root,
                                                      regime=config.regime))
    return history


def checkpoint_accuracies(config: TrainConfig) -> list[dict[str, Any]]:
    """Test accuracy of every checkpoint written for ``config``, one row per (init, epoch)."""
    device = pick_device(config.device)
    test_loader = make_loader(load_dataset(config.dataset, False, config.data_root, config.download), 500)
    rows = []
    for init in range(1, config.inits + 1):
        found = paths.list_checkpoints(config.arch, config.dataset, init, config.models_root, regime=config.regime)
        for epoch, path in progress(found.items(), f"Init_{init} checkpoints", len(found)):
            model, _ = load_checkpoint(path, config.arch, config.dataset, map_location=device)
            rows.append({"init": init, "epoch": epoch, "test_acc": accuracy(model, test_loader)})
    return rows


def _save(config: TrainConfig, init: int, seed: int, epoch: int, model: nn.Module, optimizer, scheduler,
          history) -> Path:
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "arch": config.arch,
        "dataset": config.dataset,
        "init": init,
        "epoch": epoch,
        "seed": seed,
        "state_dict": to_device(model.state_dict(), torch.device("cpu")),  # loadable without the device it ran on
        "optimizer": to_device(optimizer.state_dict(), torch.device("cpu")),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "rng": torch.get_rng_state(),  # every rank's: seeded alike, they draw the same numbers
        "history": list(history),
        "config": {**asdict(config), "adv": config.adv.settings()},
        "regime": config.regime,
        "adv_training": config.adv.settings(),
    }
    path = save_torch(ckpt, paths.checkpoint_path(config.arch, config.dataset, init, epoch, config.models_root,
                                                  regime=config.regime))
    # the checkpoint first: history.json never lists a checkpoint epoch whose checkpoint is not written
    save_json(history, paths.history_path(config.arch, config.dataset, init, config.models_root, regime=config.regime))
    return path


def _sync_history(config: TrainConfig, init: int, history: list[dict[str, float]]) -> None:
    """Rewrite ``history.json`` as the history of the checkpoint a run resumes from, when it lists more epochs
    (written before a kill stopped the run short of the next checkpoint)."""
    path = paths.history_path(config.arch, config.dataset, init, config.models_root, regime=config.regime)
    try:
        listed = load_json(path) if path.is_file() else None
    except DataNotFoundError:  # truncated by the kill: rewritten below
        listed = None
    if listed != history:
        save_json(history, path)
