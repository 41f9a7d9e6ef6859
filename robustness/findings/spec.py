"""What a study covers, as one composed, frozen object: :class:`StudySpec`, its presets, and its file.

A spec nests the objects the toolkit already has instead of copying their fields: the training
config (:class:`~robustness.training.TrainConfig`, and the adversarial regime's
:class:`~robustness.training.AdvTraining`), the sweep (:class:`~robustness.study.StudyConfig`: attack,
thresholds, grid, BatchNorm images, random null, ...), how scores are computed
(:class:`~robustness.scoring.Scoring`), the retraining comparison
(:class:`~robustness.retraining.RetrainingStudy`) and, for the demo, the defense's evaluation
(:class:`~robustness.defense.DefenseEvaluation`). Where a run writes and on what device is not part of
it (:class:`Place`): those do not change a number.

A spec is saved beside the results as ``spec.json`` and read back (:mod:`robustness.findings.specfile`).
:data:`PRESETS` holds ``smoke`` (seconds, for the tests), ``demo`` (``make demo``),
``findings`` (``make findings``: the full-size study on ``mnist5k``) and ``paper`` (the original study's
sizes, for a GPU).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from .. import paths
from ..attacks import FGSM
from ..defense import Defense, DefenseEvaluation
from ..errors import InvalidArgument
from ..retraining import RetrainingStudy
from ..scoring import Scoring
from ..study import StudyConfig
from ..training import AdvTraining, TrainConfig, regime_tag
from ..vocab import ROLES, SCORES, Score
from .field_report import FieldReport
from .retrain_power import PowerRetraining

# Six layers spread over ResNet-18's depth, for the settings check: the stem, one convolution of each
# stage (a shortcut among them) and the classifier.
CHECK_LAYERS = ("conv1", "layer1.1.conv1", "layer2.0.downsample.0", "layer3.0.conv2", "layer4.1.conv2", "fc")
# ResNet-18 from input to output, for the demo: the stem, the first convolutions of stages 2 and 4, the classifier.
DEMO_LAYERS = ("conv1", "layer2.0.conv1", "layer4.0.conv1", "fc")

@dataclass(frozen=True)
class SizeCheck:
    """The settings check: ``layers`` swept again at ``thresholds`` thresholds and ``bn_images`` BatchNorm images;
    a score change above ``tolerance`` (or a changed label) says the run's sizes do not stand."""

    layers: tuple[str, ...] | None = CHECK_LAYERS
    thresholds: int = 25
    bn_images: int = 1000
    tolerance: float = 0.02


@dataclass(frozen=True)
class Recheck:
    """The PGD re-check (``steps``, ``restarts``) at the final epoch of ``inits``: the findings run sweeps every layer
    (:mod:`robustness.findings.pgd_scores`); the demo re-checks the layers FGSM calls robust or antifragile, ``limit``
    of them, the most robust-looking (``None``: all)."""

    inits: tuple[int, ...] = (1,)
    steps: int = 10
    restarts: int = 1
    limit: int | None = None


@dataclass(frozen=True)
class DepthComparison:
    """A second architecture, ``arch``, beside the main one on ``bins`` bins of normalised depth (skipped when it is
    the main one)."""

    arch: str = "mnist_cnn"
    bins: int = 4


@dataclass(frozen=True)
class NullStudy:
    """The headline sweeps: the final epoch of every initialisation of both regimes on the quantile grid (x = the
    fraction of a layer's weights removed) against the random null model with ``masks`` masks, BatchNorm re-estimated,
    at the eps the high-pass study calibrated for that checkpoint; Init_1 of both regimes once more at the one
    ``common_eps``; and the whole-layer ablation of every layer of those checkpoints. ``sequential`` stops a layer
    once its random-null labels are decided (Bonferroni over ``looks`` planned looks)."""

    masks: int = 3
    common_eps: float = 0.1
    sequential: bool = True
    looks: int = 3


@dataclass(frozen=True)
class Sources:
    """Models from elsewhere in place of training (:func:`robustness.models.load_model`'s sources: this package's
    checkpoint, a plain state_dict of the spec's arch, ``torchvision:…``, ``robustbench:…``), by regime: ``standard``
    and ``adversarial`` (``None``: trained). Such a regime is one model, studied as one initialisation at one epoch
    (epoch 0 in its own ``From_…`` folder, :func:`robustness.paths.source_dir_name`); the steps that need several
    initialisations, an epoch-0 checkpoint or a training history skip it
    (:data:`robustness.findings.outside.SKIPPED`)."""

    standard: str | None = None
    adversarial: str | None = None

    def __post_init__(self) -> None:
        for role in ROLES:
            if getattr(self, role) == "":
                raise InvalidArgument(f"sources.{role} is empty: name a model file or a source such as "
                                      f"robustbench:NAME:DATASET:THREAT, or leave it out (null) to train")

    @property
    def given(self) -> bool:
        """Whether a regime comes from elsewhere."""
        return any(getattr(self, role) is not None for role in ROLES)


@dataclass(frozen=True)
class StudySpec:
    """A whole study. ``train`` is the training of every regime (its ``adv`` is replaced by each of
    :attr:`regimes`' settings), ``sweep`` the high-pass local study of every layer at the swept epochs
    (``early_epoch`` and ``train.epochs``), ``retraining`` the comparison made for each of ``retrain_scores``;
    ``defense`` is the demo's defense evaluation (``None``: none)."""

    preset: str
    train: TrainConfig
    adversarial: AdvTraining
    sweep: StudyConfig
    scoring: Scoring
    retraining: RetrainingStudy
    early_epoch: int = 1
    lowpass_inits: tuple[int, ...] = (1,)
    check: SizeCheck = SizeCheck()
    recheck: Recheck = Recheck()
    probe_threshold: float = 0.05
    depth: DepthComparison = DepthComparison()
    retrain_scores: tuple[Score, ...] = ("adversarial", "difference")
    defense_arch: str = "mnist_cnn"
    defense_epochs: int = 3
    defense_subset: int = 50
    defense: DefenseEvaluation | None = None
    null: NullStudy = NullStudy()
    power_retraining: PowerRetraining = PowerRetraining()
    field_report: FieldReport = FieldReport()
    sources: Sources = Sources()

    def __post_init__(self) -> None:
        t = self.train
        t.validate()
        if self.preset not in PRESETS_TEXT:
            raise InvalidArgument(f"unknown preset {self.preset!r}: choose one of {', '.join(PRESETS_TEXT)}")
        if not self.adversarial.active:
            raise InvalidArgument("the study compares standard training with adversarial training: give the "
                                  "adversarial regime (e.g. --adv-train pgd --eps 0.1)")
        for name, ours, theirs in (("arch", t.arch, self.sweep.arch), ("dataset", t.dataset, self.sweep.dataset),
                                   ("arch", t.arch, self.retraining.arch),
                                   ("dataset", t.dataset, self.retraining.dataset)):
            if ours != theirs:
                raise InvalidArgument(f"the spec's {name} is {ours!r} for training but {theirs!r} elsewhere: change "
                                      f"it with StudySpec.with_model (or --{name}), which sets it everywhere")
        if self.retraining.scoring != self.scoring:
            raise InvalidArgument("the retraining's scoring is the spec's: set StudySpec.scoring only")
        if t.adv.active:
            raise InvalidArgument("train is the standard regime (its adv is none): give the adversarial one as "
                                  "StudySpec.adversarial")
        if not 0 <= self.early_epoch <= t.epochs:
            raise InvalidArgument(f"early_epoch must lie in [0, train.epochs={t.epochs}], got {self.early_epoch}")
        for name, chosen in (("lowpass_inits", self.lowpass_inits), ("recheck.inits", self.recheck.inits)):
            if not set(chosen) <= set(range(1, t.inits + 1)):
                raise InvalidArgument(f"{name} {chosen} names initialisations beyond train.inits={t.inits}")
        if self.sweep.thresholds < 2 or (self.check.thresholds - 1) % (self.sweep.thresholds - 1):
            raise InvalidArgument(f"check.thresholds - 1 ({self.check.thresholds - 1}) must be a multiple of "
                                  f"sweep.thresholds - 1 ({self.sweep.thresholds - 1}): the sweep's grid must be a "
                                  f"sub-grid of the check's")
        if unknown := set(self.retrain_scores) - set(SCORES):
            raise InvalidArgument(f"unknown retrain_scores {sorted(unknown)}: choose from {', '.join(SCORES)}")
        self.sweep.validate()
        if self.null.masks < 3 or not self.null.common_eps > 0 or self.null.looks < 1:
            raise InvalidArgument(f"null needs masks >= 3, common_eps > 0 and looks >= 1, got {self.null}")

    @property
    def regimes(self) -> tuple[str, str]:
        """The two training regimes' tags: standard, then the adversarial one."""
        return paths.STANDARD, regime_tag(self.adversarial)

    @property
    def swept_epochs(self) -> tuple[int, ...]:
        """The checkpoint epochs every initialisation is swept at: the earlier one, then the final one."""
        return tuple(sorted({self.early_epoch, self.train.epochs}))

    def source(self, regime: str) -> str | None:
        """The model from elsewhere ``regime`` (a tag of :attr:`regimes`) is studied on, or ``None`` (trained)."""
        return getattr(self.sources, ROLES[self.regimes.index(regime)])

    def inits_of(self, regime: str) -> tuple[int, ...]:
        """The initialisations of ``regime``: every one trained, or the one model from elsewhere."""
        return (1,) if self.source(regime) else tuple(range(1, self.train.inits + 1))

    def epochs_of(self, regime: str) -> tuple[int, ...]:
        """The checkpoint epochs ``regime`` is swept at: :attr:`swept_epochs`, or epoch 0 of a model from
        elsewhere."""
        return (0,) if self.source(regime) else self.swept_epochs

    def final_of(self, regime: str) -> int:
        """The final epoch of ``regime``'s checkpoints (0 for a model from elsewhere)."""
        return self.epochs_of(regime)[-1]

    def with_model(self, arch: str | None = None, dataset: str | None = None) -> StudySpec:
        """The spec for another architecture and/or dataset (set in every nested object alike)."""
        model = {k: v for k, v in (("arch", arch), ("dataset", dataset)) if v is not None}
        return replace(self, train=replace(self.train, **model), sweep=replace(self.sweep, **model),
                       retraining=replace(self.retraining, **model))

    def with_seed(self, seed: int) -> StudySpec:
        """The spec with ``seed`` for every random choice (training, images, bootstrap, retraining, defense)."""
        scoring = replace(self.scoring, seed=seed)
        defense = None if self.defense is None else replace(self.defense, seed=seed)
        return replace(self, train=replace(self.train, seed=seed), sweep=replace(self.sweep, seed=seed),
                       scoring=scoring, retraining=replace(self.retraining, seed=seed, scoring=scoring),
                       defense=defense)

@dataclass(frozen=True)
class Place:
    """Where a run reads and writes, and on what it computes (none of it changes a number): the checkpoints
    and results under ``models_root``, the page, its table and figures under ``out``."""

    models_root: str
    out: str
    device: str = "auto"
    data_root: str = str(paths.DEFAULT_DATA_ROOT)

    def regime_root(self, regime: str) -> str:
        """The models root of ``regime``'s checkpoints and results."""
        return str(paths.regime_root(self.models_root, regime))

    @property
    def figures(self) -> Path:
        """The folder of the page's figures (PNG) and its table."""
        return Path(self.out) / "findings"

    @property
    def page(self) -> Path:
        """The generated page."""
        return Path(self.out) / "findings.md"

    @property
    def table(self) -> Path:
        """The table of every number the page cites."""
        return self.figures / "findings.csv"

    @property
    def plots(self) -> Path:
        """The run's scratch figures (each command's own)."""
        return Path(self.models_root) / "plots"


def default_place(preset: str, models_root: str | None = None, out: str | None = None, **where: str) -> Place:
    """A preset's place: its own models root under ``saved_models/`` (the findings preset's is the committed run's,
    ``saved_models/Findings``), the page in a ``page`` folder inside it."""
    own = paths.FINDINGS_MODELS_ROOT
    root = models_root or str(own if preset == "findings" else own.with_name(f"{own.name}-{preset}"))
    return Place(models_root=root, out=out or str(Path(root) / "page"), **where)


def _findings() -> StudySpec:
    seed = 0
    scoring = Scoring(tau=0.05, n_boot=1000, seed=seed)
    return StudySpec(
        preset="findings",
        train=TrainConfig(arch="resnet18", dataset="mnist5k", inits=3, epochs=3, seed=seed),
        adversarial=AdvTraining("pgd", 0.1, steps=5),
        sweep=StudyConfig(attack=FGSM(0.1), arch="resnet18", dataset="mnist5k", kinds=("highpass",),
                          scopes=("local",), thresholds=9, subset=300, seed=seed, calibrate_eps=0.5, eps_images=300,
                          bn="recalibrate", bn_images=500, channels_last=True),
        scoring=scoring,
        retraining=RetrainingStudy("resnet18", "mnist5k", "highpass", "adversarial", inits=(1,), scoring=scoring,
                                   seeds=3, random_sets=5, subset=1000, pgd_steps=5, seed=seed),
        # What fits the 2-hour budget on 2 cores (the page states each cut): the final epoch only (the random-null
        # sweeps and the ablation in place of the early epoch's sweeps and probes); 300 evaluated images (the
        # page states what the cut costs the headline labels, from each interval's image share); no low-pass sweep
        # (the random null asks whether the order matters); the top/bottom-k retraining in place of the
        # retraining of every layer some label chose (whose chosen and random sets overlap by more than half).
        early_epoch=3, lowpass_inits=(), retrain_scores=(),
    )


def _smoke() -> StudySpec:
    s = _findings().with_model(arch="mnist_cnn")
    scoring = replace(s.scoring, n_boot=100)
    return replace(
        s, preset="smoke", train=replace(s.train, inits=2, epochs=2, subset=1000), early_epoch=1,
        lowpass_inits=(1,), retrain_scores=("adversarial", "difference"),
        adversarial=AdvTraining("pgd", 0.1, steps=1),
        sweep=replace(s.sweep, subset=60, eps_images=60, calibrate_eps=0.3, thresholds=3, bn_images=60),
        scoring=scoring, check=SizeCheck(layers=None, thresholds=5, bn_images=120), recheck=Recheck(steps=2),
        depth=DepthComparison(bins=2), null=replace(s.null, sequential=False),  # 60 images: nothing to stop early
        power_retraining=PowerRetraining(random_sets=2, seeds=2, train_images=60, test_images=40, adv_steps=1,
                                         pgd_steps=2),
        field_report=FieldReport(eps=(0.1, 0.2), images=20, pgd_steps=2, apgd_steps=2, square_queries=5,
                                 curve_images=20, curve_pgd_steps=2),
        retraining=replace(s.retraining, scoring=scoring, seeds=2, random_sets=1, subset=100, pgd_steps=2),
        defense=replace(_demo().defense, defense=Defense(0.2, 0.05, 2, 0.2, "linf", 2), apgd_steps=5,
                        square_queries=100), defense_epochs=1, defense_subset=16)


def _demo() -> StudySpec:
    s = _findings()
    eps = 0.2
    return replace(
        s, preset="demo", train=replace(s.train, epochs=2), early_epoch=1,
        sweep=replace(s.sweep, subset=500, layers=DEMO_LAYERS), recheck=Recheck(steps=10, limit=1),
        retraining=replace(s.retraining, subset=200, pgd_steps=3), retrain_scores=("adversarial",),
        power_retraining=PowerRetraining(random_sets=2, seeds=2, train_images=100, test_images=100),
        field_report=FieldReport(eps=(0.1,), images=50, curve_images=100),
        # Each APGD iteration through the defense at test time runs it whole (def_steps x (steps + 2) passes):
        # 25 iterations instead of AutoAttack's 100 keep the test-time column within the demo's budget.
        defense=DefenseEvaluation(Defense(eps, 0.05, 5, eps, "linf", 5), apgd_steps=25, square_queries=1000,
                                  skip=("test-time/oracle",), square_threats=("preemptive",), seed=s.train.seed))


def _paper() -> StudySpec:
    """The original study's sizes (CIFAR-10, 25 thresholds, every layer, 3 initialisations): a GPU's work."""
    s = _findings().with_model(dataset="cifar10")
    return replace(
        s, preset="paper", train=TrainConfig.from_recipe("cifar", arch="resnet18", dataset="cifar10", inits=3,
                                                         epochs=30, seed=s.train.seed),
        lowpass_inits=(1,), retrain_scores=("adversarial", "difference"),
        adversarial=AdvTraining("pgd", 8 / 255, steps=7), early_epoch=10,
        sweep=replace(s.sweep, thresholds=25, eps_images=500, bn_images=1000, subset=2000),
        check=replace(s.check, thresholds=49, bn_images=2000), depth=DepthComparison(arch="shufflenet_v2_x1_0"),
        retraining=replace(s.retraining, subset=10000, pgd_steps=10))


PRESETS_TEXT = {
    "smoke": "every step in a minute on a CPU (a tiny CNN, 2 initialisations): for tests and a first try",
    "demo": "the demo's sizes (make demo): ResNet-18 on mnist5k, 4 layers, 2 epochs, in about 10 minutes",
    "findings": "the full-size study on mnist5k (make findings): ResNet-18, every layer, 2 hours on 2 cores",
    "paper": "the original study's sizes for a GPU: ResNet-18 on CIFAR-10, 25 thresholds, every layer, 3 inits",
}
PRESETS = {"smoke": _smoke, "demo": _demo, "findings": _findings, "paper": _paper}


def preset(name: str) -> StudySpec:
    """The spec of preset ``name`` (:data:`PRESETS_TEXT` says what each is)."""
    if name not in PRESETS:
        raise InvalidArgument(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()
