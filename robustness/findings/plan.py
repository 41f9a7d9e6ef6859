"""The plan printed before a study computes anything: each step's forward and backward passes and its predicted time.

:func:`make_plan` counts, per step, the images that go forward through a model and those whose gradient
goes back (an attack's or a training step's), from the spec's sizes alone; a short timing pass
(:func:`time_passes`: a few batches of random images through each architecture on the run's device) turns
them into seconds. The counts are upper bounds where the work depends on results (the sweeps count no reuse of the
unfiltered prefix, Square every query, a sequential random null no early stop). :func:`check_budget`
refuses a plan over ``--budget``, naming what to reduce.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import torch

from ..data import dataset_info
from ..errors import InvalidArgument
from ..filtering import select_layers
from ..models import build_model
from ..runtime import pick_device
from .spec import Place, StudySpec

# (train, test) images of each dataset's split
SPLIT_SIZES = {"mnist": (60000, 10000), "cifar10": (50000, 10000), "tinyimagenet": (80000, 20000),
               "mnist5k": (4000, 1000)}
CALIBRATION_STEPS = 12  # bisection steps of an eps calibration, each an FGSM pass over the held-out images
# what to reduce when a step is over the budget
REDUCE = {"train": "train.epochs, train.inits or train.subset", "sweep": "sweep.thresholds, sweep.subset, "
          "sweep.bn_images or sweep.layers",
          "random-null": "null.masks, train.inits or sweep.subset (null.sequential stops decided layers early)",
          "ablate": "sweep.subset or sweep.bn_images", "check": "check.layers, check.thresholds or check.bn_images",
          "pgd": "recheck.steps, recheck.restarts or recheck.inits", "probe": "sweep.subset or sweep.bn_images",
          "report": "field_report.images, field_report.eps, field_report.square_queries or field_report.curve_images",
          "retrain": "retraining.seeds, retraining.random_sets or retraining.subset",
          "power": "power_retraining.seeds, power_retraining.random_sets or power_retraining.train_images"}


@dataclass(frozen=True)
class StepPlan:
    """One step's work, by architecture: images through a model forward, back to the input (an attack's step) and
    back to the weights (a training step), and the predicted seconds."""

    name: str
    forward: dict[str, int]
    backward: dict[str, int]
    weight_backward: dict[str, int]
    seconds: float = 0.0


def _sweep(layers: int, thresholds: int, bn: int, images: int, attack_steps: int = 1) -> tuple[int, int]:
    """Passes of one checkpoint's sweep over ``layers``: BatchNorm re-estimation, the clean pass, the attack's
    passes (forward and back) and the attacked pass, at every threshold and once for the reference."""
    points = layers * thresholds + 1
    return points * (bn + images * (2 + attack_steps)), points * images * attack_steps


def _calibration(s: StudySpec) -> tuple[int, int]:
    n = s.sweep.eps_images * CALIBRATION_STEPS
    return 2 * n, n


def make_plan(s: StudySpec) -> list[StepPlan]:
    """Every step's passes (seconds still 0: :func:`predict` fills them)."""
    t, arch, depth = s.train, s.train.arch, s.depth.arch
    n_train, n_test = SPLIT_SIZES[t.dataset]
    n_train = min(t.subset or n_train, n_train)
    evaluated = min(s.sweep.subset or n_test, n_test - s.sweep.eps_images)
    layers = {a: len(select_layers(build_model(a, t.dataset))) for a in {arch, depth}}
    main = len(s.sweep.layers) if s.sweep.layers is not None else layers[arch]
    masks = s.sweep.null_masks + 1 if s.sweep.random_baseline else 1
    passes: dict[str, list[dict[str, int]]] = {k: [{}, {}, {}] for k in REDUCE}

    def add(step: str, a: str, f: int, b: int, times: int = 1, w: int = 0) -> None:
        for counts, n in zip(passes[step], (f, b, w), strict=True):
            counts[a] = counts.get(a, 0) + n * times

    k = s.adversarial.steps or (10 if s.adversarial.method == "pgd" else 1)
    for regime_steps in (0, k):  # standard, then adversarial: the attack's passes on every batch
        add("train", arch, t.epochs * (n_train * (1 + regime_steps) + n_test), t.epochs * n_train * regime_steps,
            t.inits, w=t.epochs * n_train)
    if depth != arch:
        add("train", depth, t.epochs * (n_train + n_test), 0, t.inits, w=t.epochs * n_train)
    per_checkpoint = [a + b for a, b in zip(_sweep(main, s.sweep.thresholds, s.sweep.bn_images, evaluated),
                                            _calibration(s), strict=True)]
    checkpoints = t.inits * len(s.swept_epochs) + len(s.lowpass_inits)
    add("sweep", arch, per_checkpoint[0] * masks, per_checkpoint[1] * masks, 2 * checkpoints)
    if depth != arch:
        f, b = _sweep(layers[depth], s.sweep.thresholds, s.sweep.bn_images, evaluated)
        add("sweep", depth, (f + _calibration(s)[0]) * masks, (b + _calibration(s)[1]) * masks, t.inits)
    f, b = _sweep(main, s.sweep.thresholds, s.sweep.bn_images, evaluated)  # an upper bound when sequential
    add("random-null", arch, f * (s.null.masks + 1), b * (s.null.masks + 1), 2 * (t.inits + 1))
    f, b = _sweep(layers[arch], 1, s.sweep.bn_images, evaluated)
    add("ablate", arch, f, b, 2 * t.inits)
    checked = len(s.check.layers) if s.check.layers is not None else layers[arch]
    f, b = _sweep(checked, s.check.thresholds, s.check.bn_images, evaluated)
    add("check", arch, f + _calibration(s)[0], b + _calibration(s)[1], 2)
    f, b = _sweep(main, s.sweep.thresholds, s.sweep.bn_images, evaluated, s.recheck.steps * s.recheck.restarts)
    add("pgd", arch, f, b, 2 * len(s.recheck.inits))
    f, b = _sweep(layers[arch], 1, s.sweep.bn_images, evaluated)
    add("probe", arch, f, b, 2 * t.inits * len(s.swept_epochs))
    fr = s.field_report  # every saved epoch's curve (epoch 0 too), then the four attacks on the final checkpoint
    curve = fr.curve_images * (t.epochs + 1)
    attacked = fr.pgd_steps + 2 * fr.apgd_steps
    add("report", arch, curve * (2 + fr.curve_pgd_steps), curve * fr.curve_pgd_steps, 2 * len(fr.inits))
    add("report", arch, fr.images * (4 + attacked + fr.square_queries), fr.images * attacked,
        2 * len(fr.inits) * len(fr.eps))
    r = s.retraining
    trained = (3 + r.random_sets) * r.seeds * r.epochs * min(r.subset or n_train, n_train)
    tested = (4 + r.random_sets) * r.seeds * evaluated
    add("retrain", arch, trained + tested * (3 + r.pgd_steps), tested * (1 + r.pgd_steps), len(s.retrain_scores),
        w=trained)
    p = s.power_retraining  # the chosen and random sets retrained clean and with PGD batches; each variant tested
    runs = (2 + 2 * p.random_sets) * p.seeds * p.epochs * min(p.train_images or n_train, n_train)
    tested = 2 * (3 + 2 * p.random_sets) * p.seeds * min(p.test_images or n_test, n_test)
    add("power", arch, runs * (2 + p.adv_steps) + tested * (2 + p.pgd_steps), runs * p.adv_steps + tested * p.pgd_steps,
        w=2 * runs)
    return [StepPlan(name, *passes[name]) for name in REDUCE]


def time_passes(archs: set[str], dataset: str, device: str, batch: int = 128, repeats: int = 2) -> dict[
        str, tuple[float, float, float]]:
    """Per architecture, the seconds per image on ``device`` of a forward pass (no gradient), of a backward pass to
    the input (an attack's) and of one to the weights (a training step's, BatchNorm in train mode): the fastest of
    ``repeats`` batches of random images after a warm-up batch (the fastest, since other work on the machine only
    ever slows a batch down)."""
    where = pick_device(device)
    shape = dataset_info(dataset).shape
    found = {}
    for arch in sorted(archs):
        model = build_model(arch, dataset).to(where)
        x = torch.rand(batch, *shape, device=where)
        found[arch] = tuple(min(_seconds(model, x, kind) for _ in range(repeats + 1)) / batch
                            for kind in ("forward", "input", "weights"))
        forward = found[arch][0]
        found[arch] = (forward, max(found[arch][1] - forward, 0.0), max(found[arch][2] - forward, 0.0))
    return found


def _seconds(model: torch.nn.Module, x: torch.Tensor, kind: str) -> float:
    """The seconds of one batch: forward only, or forward and backward to the input or to the weights."""
    model.train(kind == "weights")
    model.requires_grad_(kind == "weights")
    tic = time.perf_counter()
    if kind == "forward":
        with torch.no_grad():
            model(x)
    else:
        model(x.detach().requires_grad_(kind == "input")).sum().backward()
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - tic


def predict(s: StudySpec, at: Place) -> list[StepPlan]:
    """The plan with each step's predicted seconds on the run's device (from :func:`time_passes`)."""
    steps = make_plan(s)
    per_image = time_passes({s.train.arch, s.depth.arch}, s.train.dataset, at.device)
    return [replace(p, seconds=sum(n * per_image[a][i] for i, counts in enumerate(
        (p.forward, p.backward, p.weight_backward)) for a, n in counts.items())) for p in steps]


def plan_text(s: StudySpec, at: Place, steps: list[StepPlan]) -> str:
    """The plan as printed: one line per step, then the total."""
    lines = [f"plan of the {s.preset} preset ({s.train.arch} on {s.train.dataset}, device {pick_device(at.device)}; "
             f"steps already written are read back, not recomputed):",
             f"  {'step':<11} {'forward passes':>16} {'backward passes':>16} {'predicted':>11}"]
    for p in steps:
        backward = sum(p.backward.values()) + sum(p.weight_backward.values())
        lines.append(f"  {p.name:<11} {sum(p.forward.values()):>16,} {backward:>16,} {p.seconds:>9.0f} s")
    total = sum(p.seconds for p in steps)
    lines.append(f"  {'total':<11} {'':>16} {'':>16} {total:>9.0f} s ({total / 60:.1f} min)")
    return "\n".join(lines)


def check_budget(steps: list[StepPlan], budget_minutes: float | None) -> None:
    """Refuse a plan predicted over ``budget_minutes``: name the largest step and the settings that size it."""
    if budget_minutes is None:
        return
    if not budget_minutes > 0:
        raise InvalidArgument(f"--budget is in minutes and must be positive, got {budget_minutes}")
    total = sum(p.seconds for p in steps)
    if total > 60 * budget_minutes:
        largest = max(steps, key=lambda p: p.seconds)
        raise InvalidArgument(
            f"the plan is predicted to take {total / 60:.1f} min, over the budget of {budget_minutes:g} min: the "
            f"largest step is {largest.name} ({largest.seconds / 60:.1f} min); reduce {REDUCE[largest.name]} "
            f"(in a --spec file), or choose a smaller --preset, or raise --budget")
