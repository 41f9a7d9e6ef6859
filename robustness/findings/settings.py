"""What the findings run covers: :class:`FindingsSettings`, its sizes and where it writes.

The defaults are the full-size study on ``mnist5k`` that ``make findings`` runs: ResNet-18 trained
standard and with PGD adversarial training, three initialisations each, every layer swept at two
epochs; the sizes (thresholds, BatchNorm images) are the ones its settings check supports
(:mod:`robustness.findings.check`). :meth:`FindingsSettings.smoke` is the same run in seconds,
for the tests.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .. import paths
from ..training import AdvTraining, regime_tag
from ..vocab import Score

# Six layers spread over ResNet-18's depth, for the settings check: the stem, one convolution of each
# stage (a shortcut among them) and the classifier.
CHECK_LAYERS = ("conv1", "layer1.1.conv1", "layer2.0.downsample.0", "layer3.0.conv2", "layer4.1.conv2", "fc")


@dataclass(frozen=True)
class FindingsSettings:
    """The sizes of the findings run; the defaults fit in 2 hours on a 2-core CPU (``make findings``)."""

    arch: str = "resnet18"
    dataset: str = "mnist5k"
    inits: int = 3
    epochs: int = 3
    early_epoch: int = 1  # the earlier checkpoint swept beside the final one
    train_subset: int | None = None
    adv: AdvTraining = AdvTraining("pgd", 0.1, steps=5)
    # the evaluation images: every test image not held out for eps calibration
    eval_subset: int | None = None
    eps_images: int = 300
    target_adv_acc: float = 0.5
    thresholds: int = 9
    bn_images: int = 500
    lowpass_inits: tuple[int, ...] = (1,)
    # the settings check: the full setting on a subset of layers of each regime's final Init_1
    check_layers: tuple[str, ...] | None = CHECK_LAYERS
    check_thresholds: int = 25
    check_bn_images: int = 1000
    score_tolerance: float = 0.02
    recheck_inits: tuple[int, ...] = (1,)
    recheck_steps: int = 10
    recheck_restarts: int = 1
    depth_arch: str = "mnist_cnn"  # beside arch on the normalised-depth axis
    depth_bins: int = 4
    # the labels a retrained set is chosen by: the adversarial score's (the default of the retrain command) and the
    # difference score's (adversarial minus clean: what filtering does to robustness beyond accuracy)
    retrain_scores: tuple[Score, ...] = ("adversarial", "difference")
    retrain_seeds: int = 3
    retrain_random_sets: int = 5
    retrain_subset: int = 1000
    retrain_pgd_steps: int = 5
    probe_threshold: float = 0.05
    n_boot: int = 1000
    tau: float = 0.05
    seed: int = 0
    device: str = "auto"
    models_root: str = str(paths.FINDINGS_MODELS_ROOT)
    docs_root: str = "docs"

    @classmethod
    def smoke(cls, **overrides: Any) -> FindingsSettings:
        """Tiny settings for the tests: every step of the run in a minute."""
        tiny = dict(arch="mnist_cnn", inits=2, epochs=2, train_subset=1000, target_adv_acc=0.3,
                    adv=AdvTraining("pgd", 0.1, steps=1), eval_subset=60, eps_images=60, thresholds=3,
                    bn_images=60, check_layers=None, check_thresholds=5, check_bn_images=120, recheck_steps=2,
                    depth_arch="mnist_cnn", depth_bins=2, retrain_seeds=2, retrain_random_sets=1, retrain_subset=100,
                    retrain_pgd_steps=2, n_boot=100)
        return replace(cls(), **{**tiny, **overrides})

    @property
    def regimes(self) -> tuple[str, str]:
        """The two training regimes' tags: standard, then the adversarial one."""
        return paths.STANDARD, regime_tag(self.adv)

    def regime_root(self, regime: str) -> str:
        """The models root of ``regime``'s checkpoints and results."""
        return str(paths.regime_root(self.models_root, regime))

    @property
    def swept_epochs(self) -> tuple[int, ...]:
        """The checkpoint epochs every initialisation is swept at: the earlier one, then the final one."""
        return tuple(sorted({self.early_epoch, self.epochs}))

    @property
    def figures(self) -> Path:
        """The folder of the page's figures (PNG)."""
        return Path(self.docs_root) / "findings"

    @property
    def page(self) -> Path:
        """The generated page."""
        return Path(self.docs_root) / "findings.md"

    @property
    def table(self) -> Path:
        """The compact table of every number the page cites."""
        return self.figures / "findings.csv"
