"""Models from elsewhere, behind one entry point: :func:`load_model`.

A *source* names where the weights come from::

    saved_models/ResNet18/MNIST5K/Init_1/ResNet18_MNIST5K_5epochs.ckpt   this package's checkpoint
    weights.pt                        a plain state_dict (with arch= and dataset=)
    torchvision:resnet18:IMAGENET1K_V1   torchvision's weights (the weights part defaults to DEFAULT)
    timm:resnet18.a1_in1k             timm's pretrained weights (from the Hugging Face hub)
    robustbench:Wong2020Fast:cifar10:Linf   a RobustBench model-zoo entry (name:dataset:threat model)

Every model comes back in eval mode and takes images in ``[0, 1]``: the normalisation its
weights were trained with (the dataset's mean/std, or the one torchvision's or timm's weights
name) is a ``normalize`` submodule run first, as in this package's own models; RobustBench's
models normalise inside already. The metadata records the source, so result files can name it.

Downloads go to each library's own cache (``TORCH_HOME``, ``HF_HOME``) or, for RobustBench, to
``cache_dir/<dataset>/<threat>/<name>.pt``; without network, a file put there in the library's
format is used as it is. Every file is read with ``weights_only=True``. timm and RobustBench are
optional: ``pip install "robustness-toolkit[timm]"`` or ``[robustbench]``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from .. import paths
from ..data import dataset_info
from ..errors import CheckpointError, InvalidArgument
from ..finite import check_finite_state
from ..runtime import choose_device
from ..weights import load_torch_file, unreadable_file_error, weights_only_loads
from .checkpoints import CHECKPOINT_FORMAT, load_checkpoint
from .registry import build_model, with_normalization

Meta = dict[str, Any]


@dataclass(frozen=True)
class Request:
    """What :func:`load_model` was asked for, as each loader receives it."""

    source: str
    spec: str  # the source without its ``prefix:``
    arch: str | None
    dataset: str | None
    cache_dir: Path


Loader = Callable[[Request], tuple[nn.Module, Meta]]
SOURCES: dict[str, Loader] = {}


def register(prefix: str) -> Callable[[Loader], Loader]:
    """Add a loader for sources written ``prefix:...``."""

    def add(loader: Loader) -> Loader:
        SOURCES[prefix] = loader
        return loader

    return add


def load_model(
    source: str | Path,
    *,
    arch: str | None = None,
    dataset: str | None = None,
    device: str | torch.device = "cpu",
    cache_dir: str | Path | None = None,
) -> tuple[nn.Module, Meta]:
    """The model ``source`` names (see the module docstring), in eval mode on ``device``, taking
    ``[0, 1]`` images, and its metadata: ``source``, ``kind`` (the loader), ``arch``, ``dataset``,
    ``num_classes``, ``input_shape`` and, where the source says, ``mean``/``std``.

    A file is this package's checkpoint (``arch``/``dataset``, when given, must match) or a plain
    ``state_dict`` (``arch`` and ``dataset`` then say what to build). ``cache_dir`` is where RobustBench
    models are kept (default ``saved_models/robustbench``).
    """
    target = choose_device(str(device)).device  # an unusable device is named before anything loads
    source = str(source)
    prefix, sep, spec = source.partition(":")
    if not sep or prefix not in SOURCES:
        prefix, spec = "file", source
    root = Path(cache_dir) if cache_dir is not None else paths.DEFAULT_MODELS_ROOT / "robustbench"
    model, meta = SOURCES[prefix](Request(source, spec, arch, dataset, root))
    return model.to(target).eval(), {"source": source, "kind": prefix, **meta}


def check_fits(meta: Meta, dataset: str) -> None:
    """Raise :class:`InvalidArgument` unless the model :func:`load_model` described with ``meta`` takes
    ``dataset``'s images (as many channels) and predicts its classes (as many)."""
    info = dataset_info(dataset)
    classes, shape = meta.get("num_classes"), meta.get("input_shape")
    problems = []
    if classes is not None and classes != info.num_classes:
        problems.append(f"predicts {classes} classes, {dataset} has {info.num_classes}")
    if shape is not None and shape[0] != info.shape[0]:
        problems.append(f"takes {shape[0]}-channel images, {dataset}'s have {info.shape[0]}")
    if problems:
        raise InvalidArgument(f"{meta['source']} cannot be evaluated on {dataset}: it {' and '.join(problems)}; "
                              f"choose the dataset it was trained for (--dataset)")


# ---------------------------------------------------------------- files


@register("file")
def _file(req: Request) -> tuple[nn.Module, Meta]:
    path = Path(req.spec)
    content = load_torch_file(path)
    if isinstance(content, dict) and content.get("format") == CHECKPOINT_FORMAT:
        model, meta = load_checkpoint(path, req.arch, req.dataset)
        return model, {**meta, **_shape_meta(meta["dataset"])}
    if req.arch is None or req.dataset is None:
        raise InvalidArgument(f"{path} is a plain state_dict, not this package's checkpoint: say which model it "
                              f"holds with arch= and dataset= (--arch, --dataset)")
    state = content.get("state_dict", content) if isinstance(content, dict) else content
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds no state_dict (a dict of tensors, or one under 'state_dict')")
    check_finite_state(state, path)
    model = build_model(req.arch, req.dataset)
    _load_state(model, {k.removeprefix("module."): v for k, v in state.items()}, path, req)
    return model, {"arch": req.arch, "dataset": req.dataset, **_shape_meta(req.dataset)}


def _load_state(model: nn.Module, state: dict[str, torch.Tensor], path: Path, req: Request) -> None:
    """Load ``state`` into ``model``; the normalisation buffers may be absent (the dataset's are kept)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.startswith("normalize.")]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in state if k in expected and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{path} does not fit a {req.arch} for {req.dataset}: {len(missing)} weights missing "
            f"{missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}, {len(wrong)} of another shape "
            f"{wrong[:3]}: check --arch and --dataset"
        )
    model.load_state_dict({**expected, **state})


def _shape_meta(dataset: str) -> Meta:
    info = dataset_info(dataset)
    return {"num_classes": info.num_classes, "input_shape": info.shape, "mean": info.mean, "std": info.std}


# ---------------------------------------------------------------- torchvision


@register("torchvision")
def _torchvision(req: Request) -> tuple[nn.Module, Meta]:
    from torchvision import models as tvm  # noqa: PLC0415

    name, _, weights_name = req.spec.partition(":")
    if name not in tvm.list_models(module=tvm):
        raise InvalidArgument(f"unknown torchvision classification model {name!r} in {req.source!r}: "
                              f"e.g. resnet18, resnet50, vgg16, convnext_tiny (torchvision.models.list_models())")
    choices = tvm.get_model_weights(name)
    try:
        weights = choices[weights_name or "DEFAULT"]
    except KeyError:
        raise InvalidArgument(f"torchvision has no weights {weights_name!r} for {name}: use one of "
                              f"{', '.join(w.name for w in choices)} or DEFAULT") from None
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name
    model = _third_party(lambda: tvm.get_model(name, weights=weights), weights.url, str(cached))
    preset = weights.transforms()
    crop = preset.crop_size[0]
    meta = {"arch": name, "dataset": "imagenet", "weights": weights.name,
            "num_classes": len(weights.meta["categories"]), "input_shape": (3, crop, crop),
            "mean": tuple(preset.mean), "std": tuple(preset.std)}
    return with_normalization(model, preset.mean, preset.std), meta


# ---------------------------------------------------------------- timm


@register("timm")
def _timm(req: Request) -> tuple[nn.Module, Meta]:
    timm = _optional("timm", "timm")
    if not timm.is_model(req.spec):
        raise InvalidArgument(f"unknown timm model {req.spec!r}: e.g. resnet18.a1_in1k (timm.list_models())")
    cfg = timm.models.get_pretrained_cfg(req.spec)
    if cfg is not None and cfg.hf_hub_id:
        hub_cache = importlib.import_module("huggingface_hub.constants").HF_HUB_CACHE
        origin = f"the Hugging Face hub ({cfg.hf_hub_id})"
        cached = f"{hub_cache}/models--{cfg.hf_hub_id.replace('/', '--')}/ (the Hugging Face cache layout)"
    else:
        origin = cached = cfg.url if cfg is not None else req.spec
    model = _third_party(lambda: timm.create_model(req.spec, pretrained=True), origin, cached)
    cfg = model.pretrained_cfg
    meta = {"arch": req.spec, "dataset": "imagenet" if cfg.get("num_classes") == 1000 else None,
            "num_classes": model.num_classes, "input_shape": tuple(cfg["input_size"]),
            "mean": tuple(cfg["mean"]), "std": tuple(cfg["std"])}
    return with_normalization(model, cfg["mean"], cfg["std"]), meta


# ---------------------------------------------------------------- RobustBench


@register("robustbench")
def _robustbench(req: Request) -> tuple[nn.Module, Meta]:
    fields = req.spec.split(":")
    if len(fields) != 3:
        raise InvalidArgument(f"a RobustBench source is robustbench:NAME:DATASET:THREAT, e.g. "
                              f"robustbench:Wong2020Fast:cifar10:Linf; got {req.source!r}")
    name, dataset, threat = fields
    utils = _robustbench_utils()
    from robustbench.model_zoo import model_dicts  # noqa: PLC0415 (optional dependency)
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel  # noqa: PLC0415

    try:
        zoo = model_dicts[BenchmarkDataset(dataset)][ThreatModel(threat)]
    except (ValueError, KeyError):
        raise InvalidArgument(f"RobustBench has no {dataset}/{threat} leaderboard: datasets "
                              f"{', '.join(d.value for d in BenchmarkDataset)}, threat models "
                              f"{', '.join(t.value for t in ThreatModel)}") from None
    if name not in zoo:
        raise InvalidArgument(f"RobustBench has no model {name!r} for {dataset}/{threat}: e.g. "
                              f"{', '.join(list(zoo)[:4])} (see robustbench.github.io)")
    cached = req.cache_dir / dataset / threat / f"{name}.pt"
    model = _third_party(lambda: utils.load_model(name, req.cache_dir, dataset, threat),
                         "RobustBench's model zoo (Google Drive)", str(cached))
    classes = {"cifar10": 10, "cifar100": 100, "imagenet": 1000}[dataset]
    shape = (3, 224, 224) if dataset == "imagenet" else (3, 32, 32)
    return model, {"arch": name, "dataset": dataset, "threat_model": threat, "num_classes": classes,
                   "input_shape": shape}


def _robustbench_utils() -> Any:
    """``robustbench.utils``. The PyPI release (1.1.1) imports ``autoattack`` but depends on the package
    that installs it as ``pyautoattack``: that one is aliased when the other is absent."""
    try:
        importlib.import_module("autoattack")
    except ImportError:
        try:
            shim = importlib.import_module("pyautoattack")
        except ImportError:
            pass
        else:
            sys.modules["autoattack"] = shim
            sys.modules["autoattack.state"] = importlib.import_module("pyautoattack.state")
    _optional("robustbench", "robustbench")
    return importlib.import_module("robustbench.utils")


# ---------------------------------------------------------------- shared


def _optional(module: str, extra: str) -> Any:
    """Import an optional dependency, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise InvalidArgument(f"{module} is not installed ({err}): pip install \"robustness-toolkit[{extra}]\" "
                              f"(or pip install -e \".[{extra}]\" in a checkout)") from None


def _third_party(build: Callable[[], nn.Module], origin: str, cached: str) -> nn.Module:
    """``build()`` with every torch.load weights-only; a failed download or a damaged cached file
    becomes a :class:`CheckpointError` naming where the file comes from and where it is kept."""
    try:
        with weights_only_loads():
            return build()
    except OSError as err:
        raise CheckpointError(f"could not get the weights from {origin} ({type(err).__name__}: {err}); "
                              f"without network, put the file at {cached}") from None
    except Exception as err:
        problem = unreadable_file_error(cached, err)
        if problem is None:
            raise
        raise problem from None
