"""The checkpoint file: its format, and reading it back as a model or as the whole training state.

A checkpoint is one ``torch.save`` file (written by :func:`robustness.training.trainer.train`, under
the layout of :mod:`robustness.paths`) holding a dict: ``format`` (:data:`CHECKPOINT_FORMAT`),
``arch``, ``dataset``, ``init``, ``epoch``, ``seed``, the model's ``state_dict``, the
``optimizer`` and ``scheduler`` states, the torch ``rng`` state, the ``history`` so far and
the training ``config``, and the training ``regime`` tag with its ``adv_training`` settings
(:mod:`robustness.training.adversarial`; a file without them is standard). Every tensor is on the
CPU. Files are read with ``weights_only=True`` (:mod:`robustness.weights`) and then moved to the device, so a device
this machine lacks is reported as such, never as a damaged file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import paths
from ..errors import CheckpointError
from ..finite import check_finite_state
from ..runtime import choose_device
from ..vocab import DATASETS
from ..weights import load_torch_file
from .registry import MODELS, build_model

CHECKPOINT_FORMAT = "robustness-checkpoint/1"
STANDARD_SETTINGS: dict[str, Any] = {"method": "none"}  # the regime settings of standard training
# What every checkpoint of this package holds (``scheduler`` and ``config`` may be absent from older ones).
CHECKPOINT_FIELDS = ("arch", "dataset", "init", "epoch", "seed", "state_dict", "optimizer", "rng", "history")


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
        raise CheckpointError(f"{path} is not a checkpoint written by this package (robustness.training)")
    check_fields(ckpt, path)
    for key, wanted in (("arch", arch), ("dataset", dataset)):
        if wanted is not None and ckpt[key] != wanted:
            raise CheckpointError(
                f"{path} holds a {ckpt['arch']} for {ckpt['dataset']}, not a {arch or ckpt['arch']} for "
                f"{dataset or ckpt['dataset']}: pick the checkpoint of the model you asked for"
            )
    check_architecture(ckpt, path)
    check_finite_state(ckpt["state_dict"], path)
    device = choose_device(str(map_location)).device
    return ckpt if device.type == "cpu" else to_device(ckpt, device)


def check_fields(ckpt: Mapping[str, Any], path: str | Path) -> None:
    """Raise :class:`CheckpointError` unless the checkpoint dict ``ckpt`` holds every field of
    :data:`CHECKPOINT_FIELDS`, a known architecture and dataset, and a state_dict of tensors."""
    missing = [key for key in CHECKPOINT_FIELDS if key not in ckpt]
    if missing:
        raise CheckpointError(f"{path} carries the checkpoint format tag but lacks {', '.join(missing)}: it was not "
                              f"written by robustness.training (or was altered); train it again")
    if ckpt["arch"] not in MODELS or ckpt["dataset"] not in DATASETS:
        raise CheckpointError(f"{path} names architecture {ckpt['arch']!r} for dataset {ckpt['dataset']!r}, which "
                              f"this package does not know: it was not written by this version of robustness.training")
    state = ckpt["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds no state_dict of tensors: it was not written by robustness.training")


def check_architecture(ckpt: Mapping[str, Any], path: str | Path) -> None:
    """Raise :class:`CheckpointError` unless the weights of ``ckpt`` are those of the architecture it names:
    the same parameter and buffer names, of the same shapes (compared with a model built on the meta device,
    without memory or random draws)."""
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        expected = {k: v.shape for k, v in build_model(ckpt["arch"], ckpt["dataset"]).state_dict().items()}
    state = ckpt["state_dict"]
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in state if k in expected and state[k].shape != expected[k]]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{path} names a {ckpt['arch']} for {ckpt['dataset']} but its weights do not fit one: {len(missing)} "
            f"missing {missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}, {len(wrong)} of another shape "
            f"{wrong[:3]}; it was altered or written for another model: train it again"
        )


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


def standard_meta() -> dict[str, Any]:
    """``{"regime": "standard", "regime_settings": {"method": "none"}}``: what a file without them means."""
    return {"regime": paths.STANDARD, "regime_settings": dict(STANDARD_SETTINGS)}


def checkpoint_regime(ckpt: dict[str, Any]) -> dict[str, Any]:
    """``{"regime": tag, "regime_settings": dict}`` of a checkpoint dict; one written before regimes existed
    is standard."""
    if "regime" not in ckpt:
        return standard_meta()
    return {"regime": ckpt["regime"], "regime_settings": ckpt["adv_training"]}
