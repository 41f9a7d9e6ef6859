"""Models: the architectures by name (``registry``: ``build_model``), the checkpoint file
(``checkpoints``) and models from elsewhere: torchvision, timm, RobustBench, plain state_dicts
(``sources``).

To add an architecture: ``registry``; a model source: ``sources``.
"""

from .checkpoints import CHECKPOINT_FORMAT, checkpoint_model, current_lr, load_checkpoint, read_checkpoint, to_device
from .registry import MODELS, build_model, filterable_layers, register, with_normalization
from .sources import check_fits, load_model

__all__ = [
    "CHECKPOINT_FORMAT", "to_device", "read_checkpoint", "load_checkpoint", "checkpoint_model", "current_lr",
    "MODELS", "register", "with_normalization", "build_model", "filterable_layers", "load_model", "check_fits",
]
