"""The plan printed before a study computes anything: each step's forward and backward passes and its predicted time.

A step's work is counted in **units**, each one kind of real work on one image of one architecture
(:data:`UNITS`): a training step's image, an attack pass (forward and back to the input), a forward pass, a
point of a local sweep (the clean pass, FGSM and the attacked pass, reusing the unfiltered prefix as the sweep
does) and a BatchNorm re-estimation image (forward only). Each step declares its units in one function of
:data:`WORK` (a new step adds its function there and its settings to :data:`REDUCE`), from the spec's sizes
alone. A short timing pass (:func:`time_units`) runs a few real units of each kind on the run's device at the
run's batch sizes and memory format, after a warm-up, and the plan scales them by the counts. The counts are
upper bounds where the work depends on results: the PGD step counts every layer as if none were written.
:func:`check_budget` refuses a plan over ``--budget``, naming what to reduce.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from ..attacks import FGSM
from ..data import SPLIT_SIZES, dataset_info
from ..errors import InvalidArgument
from ..filtering import local_analysis, recalibrate_batchnorm, select_layers
from ..models import build_model
from ..runtime import channels_last, pick_device
from .spec import Place, StudySpec, preset

CALIBRATION_STEPS = 12  # bisection steps of an eps calibration, each an FGSM pass over the held-out images
# A local sweep re-estimates BatchNorm after the filtered layer only: over every layer, about half the network.
SUFFIX_SHARE = 0.5
# what to reduce when a step is over the budget
REDUCE = {"train": "train.epochs, train.inits or train.subset", "sweep": "sweep.thresholds, sweep.subset, "
          "sweep.bn_images or sweep.layers",
          "random-null": "null.masks, train.inits or sweep.subset (null.sequential stops decided layers early)",
          "ablate": "sweep.subset or sweep.bn_images", "check": "check.layers, check.thresholds or check.bn_images",
          "recheck": "recheck.steps or recheck.limit", "pgd": "recheck.steps, recheck.restarts or recheck.inits",
          "probe": "sweep.subset or sweep.bn_images",
          "report": "field_report.images, field_report.eps, field_report.square_queries or field_report.curve_images",
          "retrain": "retraining.seeds, retraining.random_sets or retraining.subset",
          "power": "power_retraining.seeds, power_retraining.random_sets or power_retraining.train_images",
          "defense": "defense.apgd_steps, defense.square_queries or defense_subset"}
# unit -> (forward passes, backward passes) per image
UNITS = {"train": (1, 1), "attack": (1, 1), "forward": (1, 0), "point": (3, 1), "bn": (1, 0)}
BLOCK = 100  # images per timed unit (a sweep's BatchNorm batch)

Work = Counter  # (unit, arch) -> images


@dataclass(frozen=True)
class StepPlan:
    """One step's work, in images per ``(unit, arch)`` (:data:`UNITS`), and the predicted seconds."""

    name: str
    work: dict[tuple[str, str], int]
    seconds: float = 0.0

    @property
    def passes(self) -> tuple[int, int]:
        """The images through a model forward, and back (to the input or the weights)."""
        return tuple(sum(UNITS[unit][i] * n for (unit, _), n in self.work.items()) for i in (0, 1))


@dataclass(frozen=True)
class _Sizes:
    """The sizes every step's count reads: training and evaluated images, and each architecture's layers."""

    n_train: int
    n_test: int
    evaluated: int
    layers: dict[str, int]
    swept: int  # layers of the main sweep
    masks: int  # the filter's mask and the random null's

    @classmethod
    def of(cls, s: StudySpec) -> _Sizes:
        t = s.train
        n_train, n_test = SPLIT_SIZES[t.dataset]
        layers = {a: len(select_layers(build_model(a, t.dataset))) for a in {t.arch, s.depth.arch}}
        return cls(n_train=min(t.subset or n_train, n_train), n_test=n_test,
                   evaluated=min(s.sweep.subset or n_test, n_test - s.sweep.eps_images), layers=layers,
                   swept=len(s.sweep.layers) if s.sweep.layers is not None else layers[t.arch],
                   masks=s.sweep.null_masks + 1 if s.sweep.random_baseline else 1)


def _sweep(work: Work, arch: str, n: int, layers: int, thresholds: int, bn: int, attack_steps: int = 1,
           times: int = 1) -> None:
    """One checkpoint's local sweep over ``layers``, ``times`` over: the unfiltered reference (a point with BatchNorm
    re-estimated over the whole network), then at each threshold of each layer a point whose BatchNorm is
    re-estimated after the layer only (the prefix's once per layer); an attack of ``attack_steps`` > 1 (PGD) adds
    its further passes to each point."""
    points = layers * thresholds + 1
    work["point", arch] += times * points * n
    work["attack", arch] += times * points * n * (attack_steps - 1)
    work["bn", arch] += times * round(bn * (1 + layers * (thresholds * SUFFIX_SHARE + 1 - SUFFIX_SHARE)))


def _calibration(work: Work, s: StudySpec, arch: str, times: int) -> None:
    """``times`` eps calibrations: each bisection step an FGSM pass over the held-out images."""
    n = times * s.sweep.eps_images * CALIBRATION_STEPS
    work["attack", arch] += n
    work["forward", arch] += n


def _train_work(s: StudySpec, z: _Sizes, work: Work) -> None:
    """Both regimes (the adversarial one attacks every batch; a model from elsewhere is not trained) and the depth
    architecture, every epoch evaluated."""
    t = s.train
    k = s.adversarial.steps or (10 if s.adversarial.method == "pgd" else 1)
    regimes = [(t.arch, steps) for regime, steps in zip(s.regimes, (0, k), strict=True) if not s.source(regime)]
    trained = regimes + ([(s.depth.arch, 0)] if s.depth.arch != t.arch else [])
    for arch, steps in trained:
        work["train", arch] += t.inits * t.epochs * z.n_train
        work["attack", arch] += t.inits * t.epochs * z.n_train * steps
        work["forward", arch] += t.inits * t.epochs * z.n_test


def _sweep_work(s: StudySpec, z: _Sizes, work: Work) -> None:
    """The high-pass sweeps of both regimes at the swept epochs, the low-pass ones and the depth architecture's."""
    arch, w = s.train.arch, s.sweep
    checkpoints = 2 * (s.train.inits * len(s.swept_epochs) + len(s.lowpass_inits))
    _sweep(work, arch, z.evaluated, z.swept, w.thresholds, w.bn_images, times=checkpoints * z.masks)
    _calibration(work, s, arch, checkpoints)
    if s.depth.arch != arch:
        _sweep(work, s.depth.arch, z.evaluated, z.layers[s.depth.arch], w.thresholds, w.bn_images,
               times=s.train.inits * z.masks)
        _calibration(work, s, s.depth.arch, s.train.inits)


def _check_work(s: StudySpec, z: _Sizes, work: Work) -> None:
    """The settings check: both regimes' final Init_1, the check's layers, thresholds and BatchNorm images."""
    layers = len(s.check.layers) if s.check.layers is not None else z.layers[s.train.arch]
    _sweep(work, s.train.arch, z.evaluated, layers, s.check.thresholds, s.check.bn_images, times=2)
    _calibration(work, s, s.train.arch, 2)


def _pgd_work(s: StudySpec, z: _Sizes, work: Work) -> None:
    """Every swept layer of the re-check's final checkpoints (both regimes) swept again under PGD (an upper bound:
    sweeps already written are read back)."""
    _sweep(work, s.train.arch, z.evaluated, z.swept, s.sweep.thresholds, s.sweep.bn_images,
           s.recheck.steps * s.recheck.restarts, times=2 * len(s.recheck.inits))


def _report_work(s: StudySpec, z: _Sizes, work: Work) -> None:
    """The training curves (every saved epoch, epoch 0 too, clean and under PGD) and the four attacks on the final
    checkpoints at each eps: PGD and both APGD losses back to the input, Square's queries forward (an upper bound:
    an image already broken costs no more)."""
    r, arch = s.field_report, s.train.arch
    checkpoints = 2 * len(r.inits)
    curve = checkpoints * r.curve_images * (s.train.epochs + 1)
    work["forward", arch] += 2 * curve
    work["attack", arch] += curve * r.curve_pgd_steps
    attacked = checkpoints * len(r.eps) * r.images
    work["attack", arch] += attacked * (r.pgd_steps + 2 * r.apgd_steps)
    work["forward", arch] += attacked * (4 + r.square_queries)


def _power_work(s: StudySpec, z: _Sizes, work: Work) -> None:
    """The top-k and bottom-k sets and their random sets, each retrained clean and on PGD batches over every seed,
    then tested clean and under PGD (the unretrained model too)."""
    p, arch = s.power_retraining, s.train.arch
    runs = (2 + 2 * p.random_sets) * p.seeds * p.epochs * min(p.train_images or z.n_train, z.n_train)
    work["train", arch] += 2 * runs
    work["attack", arch] += runs * p.adv_steps
    tested = 2 * (3 + 2 * p.random_sets) * p.seeds * min(p.test_images or z.n_test, z.n_test)
    work["forward", arch] += 2 * tested
    work["attack", arch] += tested * p.pgd_steps


def _whole_network(work: Work, s: StudySpec, z: _Sizes, checkpoints: int) -> None:
    """Every layer of ``checkpoints`` checkpoints probed (and the unprobed reference): BatchNorm re-estimated, clean,
    FGSM and attacked passes through the whole network."""
    probes = checkpoints * (z.layers[s.train.arch] + 1)
    work["bn", s.train.arch] += probes * s.sweep.bn_images
    work["forward", s.train.arch] += probes * 2 * z.evaluated
    work["attack", s.train.arch] += probes * z.evaluated


def _null_work(s: StudySpec, z: _Sizes, work: Work) -> None:
    """The random-null sweeps at the checkpoints' calibrated eps (every initialisation's final epoch, both regimes)
    and Init_1 of both regimes at the common eps: the filter's mask and ``null.masks`` random ones at every point
    (an upper bound when sequential evaluation stops decided layers early)."""
    _sweep(work, s.train.arch, z.evaluated, z.swept, s.sweep.thresholds, s.sweep.bn_images,
           times=2 * (s.train.inits + 1) * (s.null.masks + 1))


def _ablate_work(s: StudySpec, z: _Sizes, work: Work) -> None:
    """Every layer of every final-epoch checkpoint of both regimes zeroed."""
    _whole_network(work, s, z, 2 * s.train.inits)


def _probe_work(s: StudySpec, z: _Sizes, work: Work) -> None:
    """Every layer of every swept checkpoint of both regimes re-initialised."""
    _whole_network(work, s, z, 2 * s.train.inits * len(s.swept_epochs))


def _retrain_work(s: StudySpec, z: _Sizes, work: Work) -> None:
    """Each retraining (the chosen layers, their complement, all layers and the random sets, per seed), tested
    clean, under FGSM and under PGD."""
    r = s.retraining
    scores = len(s.retrain_scores)
    work["train", s.train.arch] += scores * (3 + r.random_sets) * r.seeds * r.epochs * min(r.subset or z.n_train,
                                                                                            z.n_train)
    tested = scores * (4 + r.random_sets) * r.seeds * z.evaluated
    work["forward", s.train.arch] += 2 * tested
    work["attack", s.train.arch] += (1 + r.pgd_steps) * tested


# Each step's count, in the order the run takes them: a new step adds its function here and its settings to REDUCE.
WORK: dict[str, Callable[[StudySpec, _Sizes, Work], None]] = {
    "train": _train_work, "sweep": _sweep_work, "random-null": _null_work, "ablate": _ablate_work,
    "check": _check_work, "pgd": _pgd_work, "probe": _probe_work, "report": _report_work, "retrain": _retrain_work,
    "power": _power_work,
}


def _demo_train(s: StudySpec, z: _Sizes, work: Work) -> None:
    """The demo trains the standard regime only."""
    t = s.train
    work["train", t.arch] += t.inits * t.epochs * z.n_train
    work["forward", t.arch] += t.inits * t.epochs * z.n_test


def _demo_sweep(s: StudySpec, z: _Sizes, work: Work) -> None:
    """The demo sweeps the final epoch of every initialisation, one regime."""
    w = s.sweep
    _sweep(work, s.train.arch, z.evaluated, z.swept, w.thresholds, w.bn_images, times=s.train.inits * z.masks)
    _calibration(work, s, s.train.arch, s.train.inits)


def _demo_recheck(s: StudySpec, z: _Sizes, work: Work) -> None:
    """The demo's PGD re-check, one regime: ``recheck.limit`` of the swept layers (every one when unset)."""
    _sweep(work, s.train.arch, z.evaluated, min(s.recheck.limit or z.swept, z.swept), s.sweep.thresholds,
           s.sweep.bn_images, s.recheck.steps * s.recheck.restarts, times=len(s.recheck.inits))


def _defense_work(s: StudySpec, z: _Sizes, work: Work) -> None:
    """The defense's evaluation: its model trained (unless the study's), then per column of its table the defense
    (``def_steps x (steps + 2)`` attack passes) on every image and the ensemble's attacks, each APGD iteration through
    the whole defense at test time; Square's queries are forward passes."""
    e, arch, n = s.defense, s.defense_arch, s.defense_subset
    if e is None:
        return
    d = e.defense
    defended = d.def_steps * (d.steps + 2)
    if arch != s.train.arch:
        work["train", arch] += s.defense_epochs * z.n_train
    for threat in e.threats:
        for label in e.labels:
            if f"{threat}/{label}" in e.skip:
                continue
            iterations = sum(e.apgd_steps if a.startswith("apgd") else d.steps for a in e.ensemble if a != "square")
            through = defended if threat == "test-time" else 1
            work["attack", arch] += n * (defended + e.restarts * iterations * through)
            if "square" in e.ensemble and threat in e.square_threats:
                work["forward", arch] += n * e.square_queries


def _demo_retrain(s: StudySpec, z: _Sizes, work: Work) -> None:
    """The demo retrains for its first score only."""
    _retrain_work(replace(s, retrain_scores=s.retrain_scores[:1]), z, work)


# The demo's steps (make demo): one regime, the defense evaluated.
DEMO_WORK: dict[str, Callable[[StudySpec, _Sizes, Work], None]] = {
    "train": _demo_train, "sweep": _demo_sweep, "recheck": _demo_recheck, "defense": _defense_work,
    "retrain": _demo_retrain,
}


def make_plan(s: StudySpec, work: dict[str, Callable[[StudySpec, _Sizes, Work], None]] | None = None) -> list[
        StepPlan]:
    """Every step's work (``work``: the steps' counts, default :data:`WORK`; seconds still 0: :func:`predict` fills
    them)."""
    z = _Sizes.of(s)
    steps = []
    for name, count in (work or WORK).items():
        found: Work = Counter()
        count(s, z, found)
        steps.append(StepPlan(name, dict(found)))
    return steps


def _seconds(run: Callable[[], object], device: torch.device, repeats: int = 2) -> float:
    """The median seconds of ``run`` over ``repeats`` calls after a warm-up call (the first pays for allocation,
    kernel choice and tracing, which the real run pays once)."""
    found = []
    for _ in range(repeats + 1):
        tic = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize()
        found.append(time.perf_counter() - tic)
    return statistics.median(found[1:])


def _arch_units(s: StudySpec, arch: str, device: torch.device) -> dict[str, float]:
    """The seconds per image of each unit of ``arch``, from real units at the run's batch sizes and memory format
    (a sweep point on as many images as the run's, up to :data:`BLOCK`: a small model's point is mostly fixed
    cost)."""
    shape = dataset_info(s.train.dataset).shape
    model = build_model(arch, s.train.dataset).to(device)
    x, y = torch.rand(BLOCK, *shape, device=device), torch.randint(0, 10, (BLOCK,), device=device)
    batch = torch.rand(s.train.batch_size, *shape, device=device)
    labels = torch.randint(0, 10, (s.train.batch_size,), device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

    def train_step() -> None:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(batch), labels).backward()
        optimizer.step()

    found = {"train": _seconds(train_step, device) / len(batch)}
    model.eval()
    model.requires_grad_(False)
    if s.sweep.channels_last and len(shape) == 3:
        x, = channels_last(model, x)

    def attack() -> None:
        xa = x.detach().requires_grad_(True)
        torch.nn.functional.cross_entropy(model(xa), y).backward()

    def forward() -> None:
        with torch.no_grad():
            model(x)

    layers = [name for name, _ in select_layers(model)]
    middle = layers[len(layers) // 2]
    found["attack"] = _seconds(attack, device) / BLOCK
    found["forward"] = _seconds(forward, device) / BLOCK
    # one mid-depth layer's sweep as the run makes it (reusing the prefix), BatchNorm kept: the reference and two
    # thresholds' points (the layer's cut, paid once per layer in a run, is shared by three points here)
    n = min(_Sizes.of(s).evaluated, BLOCK)
    found["point"] = _seconds(lambda: local_analysis(model, (x[:n], y[:n]), "highpass", FGSM(0.1), 2, layers=[middle],
                                                     batch_size=s.sweep.batch_size), device, repeats=1) / (3 * n)
    found["bn"] = _seconds(lambda: recalibrate_batchnorm(model, x), device) / BLOCK
    return found


def time_units(s: StudySpec, archs: set[str], device: str) -> dict[tuple[str, str], float]:
    """Per ``(unit, arch)`` of ``archs``, the seconds per image on ``device`` (:func:`_arch_units`)."""
    where = pick_device(device)
    return {(unit, arch): seconds for arch in sorted(archs) for unit, seconds in _arch_units(s, arch, where).items()}


def predict(s: StudySpec, at: Place, work: dict[str, Callable[[StudySpec, _Sizes, Work], None]] | None = None) -> list[
        StepPlan]:
    """The plan (of ``work``'s steps, default :data:`WORK`) with each step's predicted seconds on the run's device
    (from :func:`time_units`)."""
    steps = make_plan(s, work)
    per_image = time_units(s, {arch for p in steps for _, arch in p.work}, at.device)
    return [replace(p, seconds=sum(n * per_image[key] for key, n in p.work.items())) for p in steps]


def plan_text(s: StudySpec, at: Place, steps: list[StepPlan]) -> str:
    """The plan as printed: one line per step, then the total."""
    lines = [f"plan of the {s.preset} preset ({s.train.arch} on {s.train.dataset}, device {pick_device(at.device)}; "
             f"steps already written are read back, not recomputed; the re-check at most):",
             f"  {'step':<8} {'forward passes':>16} {'backward passes':>16} {'predicted':>11}"]
    for p in steps:
        forward, backward = p.passes
        lines.append(f"  {p.name:<8} {forward:>16,} {backward:>16,} {p.seconds:>9.0f} s")
    total = sum(p.seconds for p in steps)
    lines.append(f"  {'total':<8} {'':>16} {'':>16} {total:>9.0f} s ({total / 60:.1f} min)")
    return "\n".join(lines)


def smallest_plan(s: StudySpec, at: Place) -> float:
    """The predicted seconds of the smallest plan for ``s``'s model and data on the run's device: the smoke
    preset's."""
    smoke = replace(preset("smoke").with_model(s.train.arch, s.train.dataset), sources=s.sources)
    return sum(p.seconds for p in predict(smoke, at))


def check_budget(steps: list[StepPlan], budget_minutes: float | None,
                 smallest: Callable[[], float] | None = None) -> None:
    """Refuse a plan predicted over ``budget_minutes``: below ``smallest()`` (the smallest plan's predicted seconds,
    :func:`smallest_plan`), say so and how long it takes; else name the largest step and the settings that size
    it."""
    if budget_minutes is None:
        return
    if not budget_minutes > 0:
        raise InvalidArgument(f"--budget is in minutes and must be positive, got {budget_minutes}")
    total = sum(p.seconds for p in steps)
    if total > 60 * budget_minutes:
        least = smallest() if smallest is not None else 0.0
        if least > 60 * budget_minutes:
            raise InvalidArgument(
                f"--budget {budget_minutes:g} min is below the smallest plan, the smoke preset's for this model, "
                f"predicted to take {least / 60:.1f} min on this device: choose --preset smoke and a --budget of at "
                f"least {least / 60:.1f} min")
        largest = max(steps, key=lambda p: p.seconds)
        raise InvalidArgument(
            f"the plan is predicted to take {total / 60:.1f} min, over the budget of {budget_minutes:g} min: the "
            f"largest step is {largest.name} ({largest.seconds / 60:.1f} min); reduce {REDUCE[largest.name]} "
            f"(in a --spec file), or choose a smaller --preset, or raise --budget")
