"""The images a filtering study measures every checkpoint on, loaded once (:func:`study_data`).

A fixed, seeded evaluation subset of the test split; with ``calibrate_eps``, a disjoint
seeded subset of the test split, never scored, on which each checkpoint's eps is
calibrated; with ``bn="recalibrate"``, a fixed seeded subset of the training split on
which BatchNorm statistics are re-estimated at every point of every sweep.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Subset

from ..data import load_dataset, loader_to_tensors, make_loader
from ..errors import InvalidArgument

if TYPE_CHECKING:
    from .plan import StudyConfig


def held_out(config: StudyConfig) -> int:
    """How many test images are held out for eps calibration (none without ``calibrate_eps``)."""
    return config.eps_images if config.calibrate_eps is not None else 0


@dataclass(frozen=True)
class StudyData:
    """The images a study measures every checkpoint on, loaded once: the evaluation set ``(x, y)`` on the
    device, the BatchNorm images (``None`` with ``bn="frozen"``), and the held-out test images
    eps is calibrated on (``None`` without ``calibrate_eps``)."""

    x: Tensor
    y: Tensor
    bn_images: Tensor | None
    eps_images: DataLoader | None


def split_test_images(config: StudyConfig) -> tuple[Subset, Subset]:
    """The evaluation and eps-calibration subsets of the test split: disjoint, fixed by ``config.seed``.

    One seeded permutation of the test split: its first ``eps_images`` (with
    ``calibrate_eps``) are held out, the next ``subset`` (default: all the rest) are evaluated.
    Without held-out images this is the evaluation set of ``make_loader(subset=..., seed=...)``.
    """
    test = load_dataset(config.dataset, train=False, root=config.data_root)
    n, held = len(test), held_out(config)
    if config.subset is not None and config.subset < 1:
        raise InvalidArgument(f"subset must be a positive number of test images, got {config.subset}")
    if held and held + (config.subset or 1) > n:
        raise InvalidArgument(
            f"the {config.dataset} test split has {n} images: not enough for {held} held out for eps calibration "
            f"(eps_images) and {config.subset or 'at least 1'} to evaluate (subset); lower either"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed)).tolist()
    evaluated = order[held:] if config.subset is None else order[held:held + config.subset]
    return Subset(test, sorted(evaluated)), Subset(test, sorted(order[:held]))


def evaluation_set(config: StudyConfig, device: torch.device) -> tuple[Tensor, Tensor]:
    """The study's evaluation images and labels on ``device``, loaded once for every checkpoint."""
    x, y = loader_to_tensors(make_loader(split_test_images(config)[0], config.batch_size))
    x, y = x.to(device), y.to(device=device, dtype=torch.long)
    return (x.contiguous(memory_format=torch.channels_last) if config.channels_last else x), y


def study_data(config: StudyConfig, device: torch.device) -> StudyData:
    """Every image set the study needs (:class:`StudyData`)."""
    x, y = evaluation_set(config, device)
    bn_images = eps_images = None
    if config.bn == "recalibrate":
        train = load_dataset(config.dataset, train=True, root=config.data_root)
        if config.bn_images > len(train):
            raise InvalidArgument(f"bn_images={config.bn_images}, but the {config.dataset} training split has "
                                  f"{len(train)} images: lower it")
        bn_images = loader_to_tensors(make_loader(train, config.batch_size, subset=config.bn_images,
                                                  seed=config.seed))[0].to(device)
        if config.channels_last:
            bn_images = bn_images.contiguous(memory_format=torch.channels_last)
    if config.calibrate_eps is not None:
        eps_images = make_loader(split_test_images(config)[1], config.batch_size)
    return StudyData(x, y, bn_images, eps_images)
