"""Training: the trainer with resume and DDP (``trainer``) and its learning-curve figure (``figures``).
"""

from .adversarial import AdvTraining, adversarial_batch, claim_regime, from_settings, regime_meta, regime_tag
from .figures import plot_learning_curves
from .trainer import TrainConfig, build_optimizer, checkpoint_accuracies, init_seed, train, training_config

__all__ = [
    "AdvTraining", "adversarial_batch", "claim_regime", "from_settings", "regime_meta", "regime_tag",
    "plot_learning_curves", "TrainConfig",
    "build_optimizer", "init_seed", "train", "training_config", "checkpoint_accuracies",
]
