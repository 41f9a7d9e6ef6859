"""The checkpoint file: its format, and reading it back as a model or as the whole training state.

A checkpoint is one ``torch.save`` file (written by :func:`robustness.train.train`, under
the layout of :mod:`robustness.paths`) holding a dict: ``format`` (:data:`CHECKPOINT_FORMAT`),
``arch``, ``dataset``, ``init``, ``epoch``, ``seed``, the model's ``state_dict``, the
``optimizer`` and ``scheduler`` states, the torch ``rng`` state, the ``history`` so far and
the training ``config``, and the training ``regime`` tag with its ``adv_training`` settings
(:mod:`robustness.adversarial`; a file without them is standard). Every tensor is on the CPU. Files are read with
``weights_only=True`` (:mod:`robustness.weights`) and then moved to the device, so a device
this machine lacks is reported as such, never as a damaged file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .adversarial import checkpoint_regime
from .errors import CheckpointError
from .models import build_model
from .runtime import choose_device
from .weights import load_torch_file

CHECKPOINT_FORMAT = "robustness-checkpoint/1"


def to_device(obj: Any, device: torch.device) -> Any:
    """``obj`` with every tensor in its dicts, lists and tuples moved to ``device`` (the same tensor where
    it is there already)."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


def read_checkpoint(
    path: str | Path, arch: str | None = None, dataset: str | None = None, map_location="cpu"
) -> dict[str, Any]:
    """The whole checkpoint dict (weights, optimiser and schedule state, RNG, history, config), checked
    like :func:`load_checkpoint`; for what needs more than the model, e.g. resuming or retraining.

    The file is read on the CPU; its tensors are then moved to ``map_location``."""
    path = Path(path)
    ckpt = load_torch_file(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a checkpoint written by this package (robustness.train)")
    for key, wanted in (("arch", arch), ("dataset", dataset)):
        if wanted is not None and ckpt[key] != wanted:
            raise CheckpointError(
                f"{path} holds a {ckpt['arch']} for {ckpt['dataset']}, not a {arch or ckpt['arch']} for "
                f"{dataset or ckpt['dataset']}: pick the checkpoint of the model you asked for"
            )
    device = choose_device(str(map_location)).device
    return ckpt if device.type == "cpu" else to_device(ckpt, device)


def load_checkpoint(
    path: str | Path, arch: str | None = None, dataset: str | None = None, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a checkpoint (``weights_only=True``, on the CPU) and return ``(model in eval mode on
    map_location, metadata)``; the metadata holds ``regime`` and ``regime_settings``.

    ``arch``/``dataset``, when given, must match the checkpoint's. A missing, damaged or foreign
    file raises :class:`CheckpointError` naming it; a device this machine lacks, :class:`InvalidArgument`
    naming the device (checked first, so a good file is never called corrupt for it).
    """
    device = choose_device(str(map_location)).device
    ckpt = read_checkpoint(path, arch, dataset)
    meta = {k: ckpt[k] for k in ("arch", "dataset", "init", "epoch", "seed", "history")} | checkpoint_regime(ckpt)
    meta["path"] = str(path)
    return checkpoint_model(ckpt, device), meta


def checkpoint_model(ckpt: Mapping[str, Any], device: str | torch.device = "cpu") -> nn.Module:
    """The model a checkpoint dict (:func:`read_checkpoint`) holds, in eval mode on ``device``."""
    model = build_model(ckpt["arch"], ckpt["dataset"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval()


def current_lr(ckpt: Mapping[str, Any]) -> float:
    """The learning rate a checkpoint would continue with: its optimiser's, after any schedule steps."""
    return float(ckpt["optimizer"]["param_groups"][0]["lr"])
