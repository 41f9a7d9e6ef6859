"""Models: the architectures by name (``registry``: ``build_model``), the checkpoint file
(``checkpoints``) and models from elsewhere: torchvision, timm, RobustBench, plain state_dicts
(``sources``).

To add an architecture: ``registry``; a model source: ``sources``.
"""

from .checkpoints import (
    CHECKPOINT_FORMAT,
    STANDARD_SETTINGS,
    checkpoint_model,
    checkpoint_regime,
    current_lr,
    load_checkpoint,
    read_checkpoint,
    standard_meta,
    to_device,
)
from .depth import DEFAULT_BINS, arch_depths, bin_name, depth_bins, execution_order, layer_depths, model_depths
from .registry import MODELS, build_model, filterable_layers, register, with_normalization
from .sources import check_fits, load_model

__all__ = [
    "CHECKPOINT_FORMAT", "to_device", "read_checkpoint", "load_checkpoint", "checkpoint_model", "current_lr",
    "STANDARD_SETTINGS", "standard_meta", "checkpoint_regime", "arch_depths", "depth_bins", "DEFAULT_BINS",
    "bin_name", "layer_depths", "model_depths", "execution_order", "MODELS", "register", "with_normalization",
    "build_model", "filterable_layers", "load_model", "check_fits",
]
