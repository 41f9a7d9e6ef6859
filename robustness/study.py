"""The filtering study: sweeps over many checkpoints, written to resumable result files (SPEC 4).

:func:`run_study` turns (initialisations x epochs x filters x scopes x layers) into a
deterministic list of :class:`Unit`. A global unit writes its result file directly; a
local unit (one layer) writes a part file, and the parts of one (checkpoint, filter) are
merged into its result file once every layer is there. Every write is atomic and
finished units are skipped, so a killed run, rerun, only computes what is missing, and
no two units ever write the same file.

Every checkpoint is measured on the same images: a fixed, seeded evaluation subset of
the test split; with ``calibrate_eps``, a disjoint seeded subset of the test split,
never scored, on which each checkpoint's eps is calibrated; with ``bn="recalibrate"``, a
fixed seeded subset of the training split on which BatchNorm statistics are
re-estimated at every point of every sweep.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass, is_dataclass, replace
from functools import partial
from itertools import groupby
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

from . import paths
from .analysis import DEFAULT_BATCH, Attack, global_analysis, local_analysis, measure_reference, select_layers
from .data import load_dataset, loader_to_tensors, make_loader
from .errors import CheckpointError, InvalidArgument
from .files import load_json
from .filters import KINDS, AlphaRange, Grid, canonical_kind, check_grid
from .models import build_model
from .results import Evaluation, load_results, save_results
from .runtime import Precision, autocast, channels_last, check_precision, frozen_eval, pick_device, progress

SCOPES: tuple[str, ...] = get_args(paths.Scope)
BatchNormMode = Literal["recalibrate", "frozen"]
BN_MODES: tuple[str, ...] = get_args(BatchNormMode)
RECHECK = "_recheck_of_"  # in the attack tag of a PGD re-check: <pgd tag>_recheck_of_<fgsm tag>


@dataclass(frozen=True)
class StudyConfig:
    """What a filtering study covers. ``attack`` needs a ``tag`` and an ``eps`` (``robustness.attacks``).

    ``inits``/``epochs`` of ``None`` take every initialisation folder and every checkpoint
    found under ``models_root``. ``subset`` picks a fixed, seeded part of the test split as
    evaluation set (default: all of it that is not held out). ``calibrate_eps`` (a target
    adversarial accuracy) replaces the attack's eps, per checkpoint, by the one at which
    that checkpoint's unfiltered model reaches it, found on ``calibration_images`` held-out
    test images that are never scored. ``bn="recalibrate"`` re-estimates the BatchNorm
    statistics at every point (and for the reference) on ``bn_images`` training images;
    ``"frozen"`` keeps the checkpoint's. ``grid`` is ``"value"`` or ``"quantile"``
    (:mod:`robustness.filters`). ``random_baseline`` adds the random null model with
    ``null_masks`` masks (it multiplies the work by ``null_masks + 1``). ``recheck_of``
    (set by :func:`run_recheck`) takes each checkpoint's eps from the local results of that
    attack tag. ``precision="bf16"`` (autocast, recorded in the result files) and
    ``channels_last`` are GPU speed options (:func:`runtime.autocast`, :func:`runtime.channels_last`).
    """

    attack: Any
    arch: str = "resnet18"
    dataset: str = "mnist5k"
    inits: tuple[int, ...] | None = None
    epochs: tuple[int, ...] | None = None
    kinds: tuple[str, ...] = KINDS
    scopes: tuple[str, ...] = SCOPES
    thresholds: int = 25
    grid: Grid = "value"
    layers: tuple[str, ...] | None = None
    alpha_range: AlphaRange = (-1.0, 1.0)
    subset: int | None = None
    seed: int = 0
    calibrate_eps: float | None = None
    calibration_images: int = 500
    bn: BatchNormMode = "recalibrate"
    bn_images: int = 1000
    random_baseline: bool = False
    null_masks: int = 5
    recheck_of: str | None = None
    batch_size: int = DEFAULT_BATCH
    precision: Precision = "fp32"
    channels_last: bool = False
    models_root: str = "saved_models"
    data_root: str = "Dataset"
    device: str = "auto"

    def validate(self) -> StudyConfig:
        """Return the config with filter names made canonical; raise :class:`InvalidArgument` on a bad value."""
        for name in ("tag", "eps"):
            if not hasattr(self.attack, name):
                raise InvalidArgument(
                    f"the attack has no .{name}, which names its result files: build it with "
                    f"robustness.attacks.make_attack (or FGSM/PGD)"
                )
        unknown = [s for s in self.scopes if s not in SCOPES]
        if unknown or not self.scopes:
            raise InvalidArgument(f"unknown scope(s) {unknown or '(none)'}: choose from {', '.join(SCOPES)}")
        if self.thresholds < 2:
            raise InvalidArgument(f"a sweep needs at least 2 thresholds, got {self.thresholds}")
        if self.batch_size < 1:
            raise InvalidArgument(f"batch_size must be at least 1, got {self.batch_size}")
        check_precision(self.precision)
        check_grid(self.grid)
        if self.bn not in BN_MODES:
            raise InvalidArgument(f"unknown BatchNorm mode {self.bn!r}: choose recalibrate or frozen")
        if not _count(self.bn_images, 2):
            raise InvalidArgument(f"bn_images is the number of training images BatchNorm statistics are "
                                  f"re-estimated on, at least 2, got {self.bn_images!r}")
        if not _count(self.null_masks, 1 if self.random_baseline else 0):
            raise InvalidArgument(f"null_masks must be a whole number >= 1 for the random baseline, got "
                                  f"{self.null_masks!r}")
        if self.calibrate_eps is not None:
            if not 0 <= self.calibrate_eps <= 1:
                raise InvalidArgument(f"calibrate_eps is a target accuracy in [0, 1], got {self.calibrate_eps}")
            if not _count(self.calibration_images, 1):
                raise InvalidArgument(f"calibration_images (held-out test images eps is calibrated on) must be "
                                      f"at least 1, got {self.calibration_images!r}")
            if not is_dataclass(self.attack):
                raise InvalidArgument("calibrate_eps needs an attack whose eps can be changed: FGSM or PGD")
        kinds = tuple(dict.fromkeys(canonical_kind(k) for k in self.kinds))
        if self.recheck_of is not None and (len(kinds) != 1 or tuple(self.scopes) != ("local",)):
            raise InvalidArgument("a re-check covers one filter and local sweeps only")
        return replace(self, kinds=kinds, scopes=tuple(dict.fromkeys(self.scopes)))


def _count(value: object, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


@dataclass(frozen=True, order=True)
class Unit:
    """One piece of work: a filter on one checkpoint, over one layer (local) or all of them (global)."""

    init: int
    epoch: int
    kind: str
    scope: str
    layer: str | None = None

    @property
    def checkpoint(self) -> tuple[int, int]:
        """``(init, epoch)``."""
        return self.init, self.epoch


def checkpoints(config: StudyConfig) -> dict[tuple[int, int], Path]:
    """The checkpoints a study covers, keyed by ``(init, epoch)``, in order."""
    inits = config.inits or paths.list_inits(config.arch, config.dataset, config.models_root)
    found: dict[tuple[int, int], Path] = {}
    for init in inits:
        available = paths.list_checkpoints(config.arch, config.dataset, init, config.models_root)
        missing = [e for e in config.epochs or () if e not in available]
        if not available or missing:
            what = f"epoch(s) {missing}" if available else "checkpoint"
            raise CheckpointError(
                f"{paths.init_dir(config.arch, config.dataset, init, config.models_root)} has no {what} "
                f"(found epochs {list(available)}): train first with python -m robustness train "
                f"--arch {config.arch} --dataset {config.dataset}, or select existing ones"
            )
        found |= {(init, e): available[e] for e in config.epochs or available}
    if not found:
        raise CheckpointError(
            f"no initialisation under {paths.model_dir(config.arch, config.dataset, config.models_root)}: "
            f"train first with python -m robustness train --arch {config.arch} --dataset {config.dataset}"
        )
    return found


def plan_units(config: StudyConfig) -> list[Unit]:
    """Every unit of the study, checkpoint by checkpoint, in a fixed order."""
    config = config.validate()
    names = [name for name, _ in select_layers(build_model(config.arch, config.dataset), config.layers)]
    return [
        Unit(init, epoch, kind, scope, layer)
        for init, epoch in checkpoints(config)
        for kind in config.kinds
        for scope in config.scopes
        for layer in (names if scope == "local" else [None])
    ]


# ---------------------------------------------------------------- the attack and its files


def _with_eps(attack: Any, eps: float) -> Any:
    """``attack`` at budget ``eps``; a PGD step size keeps its ratio to eps."""
    if hasattr(attack, "alpha") and attack.eps > 0:
        return replace(attack, eps=eps, alpha=attack.alpha * eps / attack.eps)
    return replace(attack, eps=eps)


def attack_params(attack: Any) -> dict[str, Any]:
    """Everything :func:`robustness.attacks.make_attack` needs to rebuild ``attack``: ``make_attack(**params)``."""
    if is_dataclass(attack):
        return {"name": type(attack).__name__.lower(), **asdict(attack)}
    return {"name": attack.tag, "eps": attack.eps}


def attack_tag(config: StudyConfig) -> str:
    """The attack part of the study's file names: the attack's own tag (``fgsm_eps0.1``); with ``calibrate_eps``
    the eps is replaced by the target (``fgsm_acc0.5``; a PGD step ``a`` is then per unit of eps); a re-check
    is ``<PGD tag without eps>_recheck_of_<FGSM tag>``."""
    if config.recheck_of is not None:
        return _with_eps(config.attack, 1.0).tag.replace("_eps1", "", 1) + RECHECK + config.recheck_of
    if config.calibrate_eps is not None:
        return _with_eps(config.attack, 1.0).tag.replace("_eps1", f"_acc{config.calibrate_eps:g}", 1)
    return config.attack.tag


def _eps_is_measured(config: StudyConfig) -> bool:
    """Whether eps differs per checkpoint (calibrated, or read from the results a re-check re-checks)."""
    return config.calibrate_eps is not None or config.recheck_of is not None


def result_path(config: StudyConfig, init: int, epoch: int, kind: str, scope: str) -> Path:
    """The result file of one (checkpoint, filter, scope, attack)."""
    return paths.sweep_result_path(
        config.arch, config.dataset, init, epoch, kind, scope, attack_tag(config), config.models_root
    )


def unit_path(config: StudyConfig, unit: Unit) -> Path:
    """The file a unit writes: its result file (global) or its layer's part file (local)."""
    final = result_path(config, unit.init, unit.epoch, unit.kind, unit.scope)
    return final if unit.layer is None else paths.sweep_part_path(final, unit.layer)


def _held_out(config: StudyConfig) -> int:
    """How many test images are held out for eps calibration (none without ``calibrate_eps``)."""
    return config.calibration_images if config.calibrate_eps is not None else 0


def _settings(config: StudyConfig, unit: Unit) -> dict[str, Any]:
    """The part of a result file's meta that the study's set-up decides: a rerun must match it."""
    meta = {
        "arch": config.arch, "dataset": config.dataset, "init": unit.init, "epoch": unit.epoch,
        "kind": unit.kind, "scope": unit.scope, "attack": attack_tag(config), "calibrate_eps": config.calibrate_eps,
        "calibration_images": _held_out(config), "thresholds": config.thresholds, "grid": config.grid,
        "subset": config.subset, "seed": config.seed, "precision": config.precision, "bn": config.bn,
        "bn_images": config.bn_images if config.bn == "recalibrate" else 0,
        "null_masks": config.null_masks if config.random_baseline else 0,
    }
    if not _eps_is_measured(config):
        meta |= {"eps": config.attack.eps, "attack_params": attack_params(config.attack)}
    if config.recheck_of is not None:
        meta["recheck_of"] = config.recheck_of
    if unit.scope == "global" and config.grid == "value":
        meta["alpha_range"] = config.alpha_range if config.alpha_range == "auto" else list(config.alpha_range)
    if unit.scope == "local":
        meta["layers"] = list(config.layers) if config.layers else None
    return meta


def _check_meta(config: StudyConfig, unit: Unit, path: Path) -> dict[str, Any]:
    """The meta of ``path``, a file of ``unit``; an error when a different study set-up wrote it."""
    found, expected = load_json(path)["meta"], _settings(config, unit)
    diff = {k: found.get(k) for k in expected if found.get(k) != expected[k]}
    if diff:
        raise InvalidArgument(
            f"{path} was written by a different study set-up ({diff}): delete it, or rerun with "
            f"the same options or another --models-root"
        )
    return found


def _done(config: StudyConfig, unit: Unit) -> Path | None:
    """The file that holds the unit's result, once written (checked against the study's set-up)."""
    final = result_path(config, unit.init, unit.epoch, unit.kind, unit.scope)
    for path in dict.fromkeys([final, unit_path(config, unit)]):
        if path.is_file():
            _check_meta(config, unit, path)
            return path
    return None


def is_done(config: StudyConfig, unit: Unit) -> bool:
    """Whether the unit's result is already written; a file from a different study set-up is an error."""
    return _done(config, unit) is not None


# ---------------------------------------------------------------- images


@dataclass(frozen=True)
class StudyData:
    """The images a study measures every checkpoint on, loaded once: the evaluation set ``(x, y)`` on the
    device, the BatchNorm calibration images (``None`` with ``bn="frozen"``), and the held-out test images
    eps is calibrated on (``None`` without ``calibrate_eps``)."""

    x: Tensor
    y: Tensor
    bn_images: Tensor | None
    eps_images: DataLoader | None


def _test_split(config: StudyConfig) -> tuple[Subset, Subset]:
    """The evaluation and eps-calibration subsets of the test split: disjoint, fixed by ``config.seed``.

    One seeded permutation of the test split: its first ``calibration_images`` (with
    ``calibrate_eps``) are held out, the next ``subset`` (default: all the rest) are evaluated.
    Without held-out images this is the evaluation set of ``make_loader(subset=..., seed=...)``.
    """
    test = load_dataset(config.dataset, train=False, root=config.data_root)
    n, held = len(test), _held_out(config)
    if config.subset is not None and config.subset < 1:
        raise InvalidArgument(f"subset must be a positive number of test images, got {config.subset}")
    if held and held + (config.subset or 1) > n:
        raise InvalidArgument(
            f"the {config.dataset} test split has {n} images: not enough for {held} held out for eps calibration "
            f"(calibration_images) and {config.subset or 'at least 1'} to evaluate (subset); lower either"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed)).tolist()
    evaluated = order[held:] if config.subset is None else order[held:held + config.subset]
    return Subset(test, sorted(evaluated)), Subset(test, sorted(order[:held]))


def evaluation_set(config: StudyConfig, device: torch.device) -> tuple[Tensor, Tensor]:
    """The study's evaluation images and labels on ``device``, loaded once for every checkpoint."""
    x, y = loader_to_tensors(make_loader(_test_split(config)[0], config.batch_size))
    x, y = x.to(device), y.to(device=device, dtype=torch.long)
    return (x.contiguous(memory_format=torch.channels_last) if config.channels_last else x), y


def study_data(config: StudyConfig, device: torch.device) -> StudyData:
    """Every image set the study needs (:class:`StudyData`)."""
    x, y = evaluation_set(config, device)
    bn_images = eps_images = None
    if config.bn == "recalibrate":
        train = load_dataset(config.dataset, train=True, root=config.data_root)
        if config.bn_images > len(train):
            raise InvalidArgument(f"bn_images={config.bn_images}, but the {config.dataset} training split has "
                                  f"{len(train)} images: lower it")
        bn_images = loader_to_tensors(make_loader(train, config.batch_size, subset=config.bn_images,
                                                  seed=config.seed))[0].to(device)
        if config.channels_last:
            bn_images = bn_images.contiguous(memory_format=torch.channels_last)
    if config.calibrate_eps is not None:
        eps_images = make_loader(_test_split(config)[1], config.batch_size)
    return StudyData(x, y, bn_images, eps_images)


def load_model(config: StudyConfig, path: Path, device: torch.device) -> nn.Module:
    """The checkpoint at ``path`` on ``device``, in channels-last format when the study asks for it."""
    from .train import load_checkpoint  # noqa: PLC0415 (train imports evaluation; keep this module light)

    model, _ = load_checkpoint(path, config.arch, config.dataset, map_location=device)
    if config.channels_last:
        channels_last(model)
    return model


# ---------------------------------------------------------------- eps per checkpoint


def _recorded_eps(config: StudyConfig, init: int, epoch: int) -> float | None:
    """The eps the study already used for a checkpoint, from any finished unit of it (``None`` if none)."""
    units = [u for u in plan_units(config) if u.checkpoint == (init, epoch)]
    return next((load_json(path)["meta"]["eps"] for u in units if (path := _done(config, u))), None)


def _rechecked_eps(config: StudyConfig, init: int, epoch: int) -> float:
    """The eps of the local results a re-check re-checks."""
    source = paths.sweep_result_path(config.arch, config.dataset, init, epoch, config.kinds[0], "local",
                                     config.recheck_of, config.models_root)
    if not source.is_file():
        raise InvalidArgument(f"{source} is missing: run the {config.recheck_of} study of this checkpoint first")
    return float(load_json(source)["meta"]["eps"])


def checkpoint_eps(
    config: StudyConfig, init: int, epoch: int, data: StudyData, model: nn.Module | None = None
) -> float:
    """The eps the study uses on checkpoint ``(init, epoch)``.

    The attack's own eps; for a re-check, the eps of the results it re-checks; with
    ``calibrate_eps``, the eps already recorded for this checkpoint, or else the one found by
    bisection (:func:`robustness.evaluation.calibrate_eps`) on the held-out test images, with
    the unfiltered model's BatchNorm statistics as its sweeps measure it (re-estimated with
    ``bn="recalibrate"``). ``model`` is the loaded checkpoint, when it is.
    """
    if config.recheck_of is not None:
        return _rechecked_eps(config, init, epoch)
    if config.calibrate_eps is None:
        return config.attack.eps
    recorded = _recorded_eps(config, init, epoch)
    if recorded is not None:
        return recorded
    from .batchnorm import preserved_batchnorm, recalibrate_batchnorm  # noqa: PLC0415
    from .evaluation import calibrate_eps  # noqa: PLC0415

    device = data.x.device
    if model is None:
        model = load_model(config, checkpoints(config)[init, epoch], device)
    with frozen_eval(model), preserved_batchnorm(model), autocast(device, config.precision):
        if data.bn_images is not None:
            recalibrate_batchnorm(model, data.bn_images)
        try:
            return calibrate_eps(model, data.eps_images, config.calibrate_eps, partial(_with_eps, config.attack))
        except InvalidArgument as err:
            raise InvalidArgument(
                f"checkpoint Init_{init} epoch {epoch}: {err}, give a fixed eps instead of calibrate_eps, or leave "
                f"this checkpoint out (--epochs)"
            ) from None


def checkpoint_epsilons(
    config: StudyConfig, selected: Iterable[tuple[int, int]], data: StudyData
) -> dict[tuple[int, int], float]:
    """:func:`checkpoint_eps` of each selected ``(init, epoch)``."""
    return {(init, epoch): checkpoint_eps(config, init, epoch, data) for init, epoch in selected}


# ---------------------------------------------------------------- running and merging


@dataclass(frozen=True)
class CheckpointRun:
    """What every unit of one checkpoint shares: its attack (at its eps) and its unfiltered reference."""

    attack: Attack
    reference: Evaluation


def run_unit(config: StudyConfig, unit: Unit, model: nn.Module, data: StudyData, run: CheckpointRun) -> Path:
    """Run one unit on its checkpoint's ``model`` (frozen, on the device of ``data``) and write its files."""
    shared = {"batch_size": config.batch_size, "reference": run.reference, "calibration": data.bn_images,
              "grid": config.grid, "null_masks": config.null_masks if config.random_baseline else 0,
              "seed": config.seed}
    evaluated = (data.x, data.y)
    if unit.scope == "local":
        (result,) = local_analysis(
            model, evaluated, unit.kind, run.attack, config.thresholds, layers=[unit.layer], **shared
        ).values()
    else:
        result = global_analysis(
            model, evaluated, unit.kind, run.attack, config.thresholds, alpha_range=config.alpha_range, **shared
        )
    meta = {**_settings(config, unit), "eps": run.attack.eps, "attack_params": attack_params(run.attack),
            "ref_clean_acc": run.reference.clean_acc, "ref_adv_acc": run.reference.adv_acc}
    return save_results(meta, [result], unit_path(config, unit))


def run_units(
    config: StudyConfig, units: Sequence[Unit], data: StudyData | None = None,
    epsilons: Mapping[tuple[int, int], float] | None = None,
) -> list[Path]:
    """Run the units not yet written, loading each checkpoint once; return the files of all of them.

    ``units`` may be any part of :func:`plan_units` (e.g. one rank's share): a unit
    only ever writes its own file. ``data`` is :func:`study_data`, when loaded;
    ``epsilons`` the :func:`checkpoint_eps` of some checkpoints, when known.
    """
    config = config.validate()
    device = pick_device(config.device)
    found = checkpoints(config)
    for (init, epoch), group in groupby(units, key=lambda u: u.checkpoint):
        todo = [u for u in group if not is_done(config, u)]
        if not todo:
            continue
        data = data or study_data(config, device)
        model = load_model(config, found[init, epoch], device)
        with frozen_eval(model), autocast(device, config.precision):
            eps = (epsilons or {}).get((init, epoch))
            attack = _with_eps(config.attack, checkpoint_eps(config, init, epoch, data, model) if eps is None else eps)
            reference = measure_reference(model, (data.x, data.y), attack, batch_size=config.batch_size,
                                          calibration=data.bn_images)
            for unit in progress(todo, f"Init_{init} epoch {epoch}"):
                run_unit(config, unit, model, data, CheckpointRun(attack, reference))
    return [unit_path(config, u) for u in units]


def merge_results(config: StudyConfig, only: Sequence[tuple[int, int]] | None = None) -> list[Path]:
    """Write the result file of every local (checkpoint, filter) whose layer parts all exist, then delete
    the parts; return the study's result files that exist. ``only`` limits it to those ``(init, epoch)``.

    Call it from one process (e.g. rank 0 after a barrier): it is the only writer of local result files.
    """
    units = [u for u in plan_units(config) if only is None or u.checkpoint in only]
    written = []
    for (init, epoch, kind, scope), group in groupby(units, key=lambda u: (u.init, u.epoch, u.kind, u.scope)):
        final = result_path(config, init, epoch, kind, scope)
        parts = [unit_path(config, u) for u in group]
        if scope == "local" and not final.is_file() and all(p.is_file() for p in parts):
            loaded = [load_results(p) for p in parts]
            metas = {str({k: meta[k] for k in meta if k not in ("ref_clean_acc", "ref_adv_acc")}) for meta, _ in loaded}
            if len(metas) > 1:
                raise InvalidArgument(f"the layer parts under {parts[0].parent} disagree on their set-up or eps: "
                                      f"delete that folder and rerun")
            save_results(loaded[0][0], [r for _, part in loaded for r in part.values()], final)
        if scope == "local" and final.is_file():
            folder = parts[0].parent
            shutil.rmtree(folder, ignore_errors=True)
            with suppress(OSError):  # .parts/ goes once no other (checkpoint, filter) has parts left in it
                folder.parent.rmdir()
        if final.is_file():
            written.append(final)
    return written


def run_study(config: StudyConfig) -> list[Path]:
    """Run a whole study, checkpoint by checkpoint; return its result files.

    Each checkpoint's eps is settled first (calibrated where needed), so a checkpoint that
    cannot reach the target fails before any sweep runs. Rerunning after an interruption
    computes only the units whose files are missing and ends with the same files as an
    uninterrupted run.
    """
    config = config.validate()
    todo = [u for u in plan_units(config) if not is_done(config, u)]
    if not todo:
        return merge_results(config)
    data = study_data(config, pick_device(config.device))
    groups = [list(g) for _, g in groupby(todo, key=lambda u: u.checkpoint)]
    epsilons = checkpoint_epsilons(config, [group[0].checkpoint for group in groups], data)
    for group in progress(groups, "checkpoints", leave=True):
        run_units(config, group, data, epsilons)
        merge_results(config, [group[0].checkpoint])
    return merge_results(config)


def run_recheck(
    config: StudyConfig, layers: Mapping[tuple[int, int], Sequence[str]], *, steps: int = 20, restarts: int = 2,
) -> dict[tuple[int, int], Path]:
    """Re-check layers of an FGSM study with PGD: for each ``(init, epoch)`` in ``layers``, a local sweep of
    exactly those layers under PGD-L∞ at the eps that checkpoint's FGSM results used.

    ``config`` is the FGSM study (one filter: call once per filter); its local result file
    of each checkpoint must exist. The re-check uses ``steps`` iterations of step
    ``2.5 eps / steps`` with a random start and ``restarts`` restarts (seeded by
    ``config.seed``), and the study's thresholds, grid, BatchNorm mode and images
    (evaluation, BatchNorm and held-out ones alike), without the random null model. Each
    checkpoint's re-check is its own resumable result file, tagged
    ``pgd-linf_a<2.5/steps>_k<steps>_r<restarts>_recheck_of_<FGSM tag>``; returns their paths
    (checkpoints with no layers are skipped).
    """
    from .attacks import FGSM, make_attack  # noqa: PLC0415

    config = config.validate()
    if len(config.kinds) != 1:
        raise InvalidArgument(f"a re-check covers one filter, the config has {config.kinds}: call once per filter")
    if not isinstance(config.attack, FGSM) or config.recheck_of is not None:
        raise InvalidArgument("run_recheck re-checks the results of an FGSM study: give that study's config")
    pgd = make_attack("pgd", 1.0, steps=steps, restarts=restarts, seed=config.seed)
    written = {}
    for (init, epoch), names in layers.items():
        if not names:
            continue
        if _done(config, Unit(init, epoch, config.kinds[0], "local")) is None:
            raise InvalidArgument(f"the FGSM local {config.kinds[0]} results of Init_{init} epoch {epoch} are not "
                                  f"complete: run the FGSM study first")
        recheck = replace(config, attack=pgd, inits=(init,), epochs=(epoch,), scopes=("local",), layers=tuple(names),
                          random_baseline=False, recheck_of=attack_tag(config))
        (written[init, epoch],) = run_study(recheck)
    return written
