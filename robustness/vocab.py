"""The package's vocabulary: the few valid choices of every option, the registries' names and the defaults.

One place, torch-free, so that the library and the command line (whose ``--help`` must not load torch)
import the same names. Each choice is a ``Literal`` type for the signatures and a tuple of its values for
checks and ``choices=``. The registries (:data:`robustness.models.MODELS`, :data:`robustness.data.DATASET_INFO`,
the folder names of :mod:`robustness.paths`) are keyed by these names and refuse any other.
"""

from __future__ import annotations

from typing import Literal, get_args

# The registries' names.
Arch = Literal["resnet18", "resnet50", "resnet18_cifar", "resnet50_cifar", "squeezenet1_1", "shufflenet_v2_x1_0",
               "shufflenet_v2_x0_5", "mnist_cnn"]
ARCHS: tuple[str, ...] = get_args(Arch)
DatasetName = Literal["mnist", "cifar10", "tinyimagenet", "mnist5k"]
DATASETS: tuple[str, ...] = get_args(DatasetName)

# Attacks.
Norm = Literal["linf", "l2"]
NORMS: tuple[str, ...] = get_args(Norm)
AttackName = Literal["fgsm", "pgd", "apgd", "apgd-ce", "apgd-dlr"]
ATTACKS: tuple[str, ...] = get_args(AttackName)

# Synaptic filtering.
FilterKind = Literal["highpass", "lowpass", "pulse"]
FILTERS: tuple[str, ...] = get_args(FilterKind)
Grid = Literal["value", "quantile"]
GRIDS: tuple[str, ...] = get_args(Grid)
Scope = Literal["local", "global"]
SCOPES: tuple[str, ...] = get_args(Scope)
BatchNormMode = Literal["recalibrate", "frozen"]
BN_MODES: tuple[str, ...] = get_args(BatchNormMode)

# Scores and their labels.
Score = Literal["clean", "adversarial", "difference"]
SCORES: tuple[str, ...] = get_args(Score)
Baseline = Literal["density", "unfiltered", "random"]
BASELINES: tuple[str, ...] = get_args(Baseline)
Label = Literal["fragile", "robust", "antifragile", "uncertain", "undefined"]
LABELS: tuple[str, ...] = get_args(Label)
DEFAULT_BASELINE: Baseline = "density"
DEFAULT_TAU = 0.05  # an interval within ±tau is robust
DEFAULT_FLOOR = 0.05  # a reference accuracy below it leaves a score undefined
DEFAULT_CI = 0.95  # coverage of every interval
DEFAULT_BOOT = 1000  # paired bootstrap resamples of the images

# The two regimes a study compares, by role (a model from elsewhere per role: findings --checkpoint ROLE=PATH).
Role = Literal["standard", "adversarial"]
ROLES: tuple[str, ...] = get_args(Role)

# The defense.
LabelMode = Literal["predicted", "oracle"]
Threat = Literal["preemptive", "test-time"]

# Where a model runs.
Precision = Literal["fp32", "bf16"]
DEVICE_HELP = "auto (cuda, xla, mps, cpu in that order), cpu, cuda, cuda:N, mps, xla (default auto)"
