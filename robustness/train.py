"""Training of ``N`` initialisations with checkpoints, history and resume (SPEC 2).

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
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from . import distributed, paths
from .data import dataset_info, load_dataset, make_loader
from .errors import CheckpointError, InvalidArgument
from .evaluation import accuracy
from .files import save_json, save_torch
from .models import MODELS, build_model
from .runtime import pick_device, progress, seed_everything

CHECKPOINT_FORMAT = "robustness-checkpoint/1"


@dataclass
class TrainConfig:
    """What to train and how; defaults are the original study's (Adam, lr 1e-3, batch 100)."""

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
    models_root: str = "saved_models"
    data_root: str = "Dataset"
    download: bool = False

    def validate(self) -> None:
        """Raise :class:`InvalidArgument` for a value no run could use."""
        if self.arch not in MODELS:
            raise InvalidArgument(f"unknown architecture {self.arch!r}: choose one of {', '.join(MODELS)}")
        dataset_info(self.dataset)
        for name in ("inits", "epochs", "save_every", "batch_size"):
            if getattr(self, name) < 1 and not (name == "epochs" and self.epochs == 0):
                raise InvalidArgument(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise InvalidArgument(f"lr must be positive, got {self.lr}")


def build_optimizer(params: Iterable[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser ``config`` trains with (Adam at ``config.lr``); selective retraining rebuilds it
    over fewer parameters and restores its state from a checkpoint."""
    return torch.optim.Adam(params, lr=config.lr)


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
    world = distributed.world_size()
    if config.batch_size % world:
        raise InvalidArgument(
            f"batch size {config.batch_size} is the global batch, split evenly over the {world} processes: "
            f"pass a multiple of {world}, e.g. --batch-size {-(-config.batch_size // world) * world}"
        )
    train_loader_data = load_dataset(config.dataset, True, config.data_root, config.download)
    test_loader = make_loader(load_dataset(config.dataset, False, config.data_root, config.download), 500)
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


def _train_init(config, init, device, train_data, test_loader, resume) -> list[dict[str, float]]:
    seed = init_seed(config.seed, init)
    seed_everything(seed)  # on every rank alike: one initialisation, and RNG streams that stay equal
    model = build_model(config.arch, config.dataset).to(device)
    optimizer = build_optimizer(model.parameters(), config)
    history: list[dict[str, float]] = []
    start = 0
    # every rank resumes from the checkpoints rank 0 finds
    existing = distributed.on_main(
        lambda: paths.list_checkpoints(config.arch, config.dataset, init, config.models_root) if resume else {}
    )
    usable = [e for e in existing if e <= config.epochs]
    if usable:
        start = usable[-1]
        ckpt = distributed.on_all(lambda: read_checkpoint(existing[start], config.arch, config.dataset))
        model.load_state_dict(ckpt["state_dict"])
        optimizer.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["rng"])
        history = list(ckpt["history"])
    if start == 0 and 0 not in existing and distributed.is_main():
        _save(config, init, seed, 0, model, optimizer, history)
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
        net.train()
        tic = time.perf_counter()
        loss_sum = correct = seen = 0.0
        for images, targets in progress(loader, f"epoch {epoch}"):
            x = images.to(device, non_blocking=True)
            y = torch.as_tensor(targets).to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cuda", enabled=use_amp):
                logits = net(x)
                loss = loss_fn(logits, y)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
        loss_sum, correct, seen = distributed.all_sum([loss_sum, correct, seen], device)
        # Rank 0 evaluates the model it saves (its BatchNorm statistics are those DDP gives the other ranks),
        # with its CPU RNG forked so that the test loader's draw keeps its stream equal to the other ranks'.
        with torch.random.fork_rng(devices=[], enabled=distributed.world_size() > 1):
            test_acc, seconds = distributed.on_main(
                lambda: (accuracy(model, test_loader), time.perf_counter() - tic)  # noqa: B023 (called at once)
            )
        history.append(
            {"epoch": epoch, "train_loss": loss_sum / seen, "train_acc": correct / seen, "test_acc": test_acc,
             "seconds": seconds}
        )
        if distributed.is_main():
            save_json(history, paths.history_path(config.arch, config.dataset, init, config.models_root))
            if epoch in keep:
                _save(config, init, seed, epoch, model, optimizer, history)
    return history


def checkpoint_accuracies(config: TrainConfig) -> list[dict[str, Any]]:
    """Test accuracy of every checkpoint written for ``config``, one row per (init, epoch)."""
    device = pick_device(config.device)
    test_loader = make_loader(load_dataset(config.dataset, False, config.data_root, config.download), 500)
    rows = []
    for init in range(1, config.inits + 1):
        found = paths.list_checkpoints(config.arch, config.dataset, init, config.models_root)
        for epoch, path in progress(found.items(), f"Init_{init} checkpoints", len(found)):
            model, _ = load_checkpoint(path, config.arch, config.dataset, map_location=device)
            rows.append({"init": init, "epoch": epoch, "test_acc": accuracy(model, test_loader)})
    return rows


def _save(config: TrainConfig, init: int, seed: int, epoch: int, model: nn.Module, optimizer, history) -> Path:
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "arch": config.arch,
        "dataset": config.dataset,
        "init": init,
        "epoch": epoch,
        "seed": seed,
        "state_dict": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": torch.get_rng_state(),  # every rank's: seeded alike, they draw the same numbers
        "history": list(history),
        "config": asdict(config),
    }
    path = paths.checkpoint_path(config.arch, config.dataset, init, epoch, config.models_root)
    save_json(history, paths.history_path(config.arch, config.dataset, init, config.models_root))
    return save_torch(ckpt, path)


def read_checkpoint(
    path: str | Path, arch: str | None = None, dataset: str | None = None, map_location="cpu"
) -> dict[str, Any]:
    """The whole checkpoint dict (weights, optimiser state, RNG, history, config), checked like
    :func:`load_checkpoint`; for what needs more than the model, e.g. resuming or retraining."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: train one first (python -m robustness train ...)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for a damaged or foreign file
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(err).__name__}): it may be corrupt or truncated; "
            f"delete it and train again"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a checkpoint written by this package (robustness.train)")
    for key, wanted in (("arch", arch), ("dataset", dataset)):
        if wanted is not None and ckpt[key] != wanted:
            raise CheckpointError(
                f"{path} holds a {ckpt['arch']} for {ckpt['dataset']}, not a {arch or ckpt['arch']} for "
                f"{dataset or ckpt['dataset']}: pick the checkpoint of the model you asked for"
            )
    return ckpt


def load_checkpoint(
    path: str | Path, arch: str | None = None, dataset: str | None = None, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a checkpoint (``weights_only=True``) and return ``(model in eval mode, metadata)``.

    ``arch``/``dataset``, when given, must match the checkpoint's. A missing,
    corrupt or foreign file raises :class:`CheckpointError` naming it.
    """
    ckpt = read_checkpoint(path, arch, dataset, map_location)
    model = build_model(ckpt["arch"], ckpt["dataset"])
    model.load_state_dict(ckpt["state_dict"])
    model.to(map_location).eval()
    meta = {k: ckpt[k] for k in ("arch", "dataset", "init", "epoch", "seed", "history")}
    meta["path"] = str(path)
    return model, meta
