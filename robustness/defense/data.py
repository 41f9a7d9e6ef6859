"""Defended data sets and what is built on them: defended train/valid splits written to ``.npz``
and read back, t-SNE maps of clean, adversarial and defended images, and the original
project's model trained (or reused) as the default model to defend."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn
from torch.utils.data import DataLoader

from .. import paths
from ..data import load_dataset, make_loader
from ..errors import DataNotFoundError
from ..files import save_npz
from ..models import load_checkpoint
from ..runtime import pick_device, progress
from ..training import TrainConfig, train
from .evaluation import threat_images
from .figures import plot_tsne
from .perturbation import Defense

Split = Literal["train", "valid"]


def defend_loader(model: nn.Module, loader: DataLoader, defense: Defense, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Defend every image of ``loader``; return ``(defended images, true labels)`` on the CPU."""
    xs, ys = [], []
    for x, y in progress(loader, f"defend ({defense.label} labels)", leave=True):
        xs.append(defense(model, x, y, seed).cpu())
        ys.append(torch.as_tensor(y).cpu())
    return torch.cat(xs), torch.cat(ys)


def save_defended(path: str | Path, images: Tensor, labels: Tensor, defense: Defense) -> Path:
    """Write defended images (float32), their true labels and the defense's settings to ``.npz``, atomically."""
    settings = {k: np.asarray(v if v is not None else math.inf) for k, v in asdict(defense).items()}
    return save_npz(path, images=images.cpu().numpy().astype(np.float32), labels=labels.cpu().numpy(), **settings)


def load_defended(path: str | Path) -> tuple[Tensor, Tensor]:
    """Read a file written by :func:`save_defended`: ``(images, labels)``."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"no defended data at {path}: write it with python -m robustness defend --save-data")
    with np.load(path, allow_pickle=False) as data:
        return torch.from_numpy(data["images"]), torch.from_numpy(data["labels"])


def defend_splits(
    model: nn.Module,
    defense: Defense,
    arch: str,
    dataset: str,
    *,
    subset: int | None = None,
    batch_size: int = 100,
    seed: int = 0,
    models_root: str | Path = paths.DEFAULT_MODELS_ROOT,
    data_root: str | Path = paths.DEFAULT_DATA_ROOT,
) -> dict[Split, Path]:
    """Defend the train and test (``valid``) split, or a seeded ``subset`` of each, and save them
    under ``Defensive_<norm>/`` (:func:`paths.defense_data_path`); return the files written."""
    written: dict[Split, Path] = {}
    for split in get_args(Split):
        loader = make_loader(load_dataset(dataset, split == "train", data_root), batch_size, subset=subset, seed=seed)
        images, labels = defend_loader(model, loader, defense, seed)
        path = paths.defense_data_path(arch, dataset, defense.norm, split, defense.label, models_root)
        written[split] = save_defended(path, images, labels, defense)
    return written


def tsne_figure(model: nn.Module, x: Tensor, y: Tensor, defense: Defense, seed: int = 0) -> Figure:
    """t-SNE maps of clean, adversarial, defended and defended-then-attacked images (preemptive threat)."""
    images = threat_images(model, x, y, defense, threat="preemptive", ensemble=(), seed=seed)
    labels = torch.as_tensor(y).cpu()
    sets = {name.replace("_", " "): (images[name].cpu(), labels)
            for name in ("clean", "attacked", "defended_clean", "defended_attacked")}
    oracle = " [ORACLE: true labels]" if defense.oracle else ""
    budget = "unbounded" if math.isinf(defense.bound) else f"{defense.bound:g}"
    title = (f"PGD-{defense.norm} eps {defense.eps:g}, defense budget {budget}, "
             f"{defense.label} labels{oracle}")
    return plot_tsne(sets, title, seed)


def load_or_train(
    arch: str = "mnist_cnn",
    dataset: str = "mnist5k",
    *,
    epochs: int = 10,
    seed: int = 0,
    device: str = "auto",
    models_root: str | Path = paths.DEFAULT_MODELS_ROOT,
    data_root: str | Path = paths.DEFAULT_DATA_ROOT,
) -> nn.Module:
    """The original project's model: ``arch`` trained on ``dataset`` with Adam (lr 5e-4, batch 100)
    into the checkpoint tree (``saved_models/<Arch>/<DATASET>/Init_1/``), or reused from there when
    already trained; in eval mode."""
    config = TrainConfig(arch=arch, dataset=dataset, epochs=epochs, lr=5e-4, batch_size=100, seed=seed,
                         device=device, models_root=str(models_root), data_root=str(data_root))
    train(config, resume=True)
    path = paths.checkpoint_path(arch, dataset, 1, epochs, models_root)
    model, _ = load_checkpoint(path, arch, dataset, map_location=pick_device(device))
    return model
