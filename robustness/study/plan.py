"""A filtering study's plan: what it covers, the units of work, their files and meta, and its images.

:class:`StudyConfig` says what a study covers; :func:`plan_units` turns (initialisations x
epochs x filters x scopes x layers) into a deterministic list of :class:`Unit`. Each unit
has one file (:func:`unit_path`): a global unit its result file, a local unit (one layer) a
part file, merged into the result file of its (checkpoint, filter) by the runner
(:mod:`robustness.study.runner`). The meta a study writes records its settings
(:func:`settings_meta`), so a rerun with other settings is refused instead of mixed.

Every checkpoint is measured on the same images (:mod:`robustness.study.images`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, is_dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import paths
from ..errors import CheckpointError, InvalidArgument
from ..filtering import DEFAULT_BATCH, AlphaRange, canonical_kind, check_grid, load_result_json, select_layers
from ..models import build_model, load_checkpoint, standard_meta
from ..models import load_model as load_source
from ..paths import RECHECK
from ..runtime import channels_last, check_precision
from ..scoring import Sequential
from ..training import regime_meta
from ..vocab import BN_MODES, FILTERS, SCOPES, BatchNormMode, Grid, Precision
from .images import held_out


@dataclass(frozen=True)
class StudyConfig:
    """What a filtering study covers. ``attack`` (any of :mod:`robustness.attacks`) needs a ``tag`` and an ``eps``.

    ``inits``/``epochs`` of ``None`` take every initialisation folder and every checkpoint
    found under ``models_root``. ``subset`` picks a fixed, seeded part of the test split as
    evaluation set (default: all of it that is not held out). ``calibrate_eps`` (a target
    adversarial accuracy) replaces the attack's eps, per checkpoint, by the one at which
    that checkpoint's unfiltered model reaches it, found on ``eps_images`` held-out
    test images that are never scored. ``bn="recalibrate"`` re-estimates the BatchNorm
    statistics at every point (and for the reference) on ``bn_images`` training images;
    ``"frozen"`` keeps the checkpoint's. ``grid`` is ``"value"`` or ``"quantile"``
    (:mod:`robustness.filtering.filters`). ``random_baseline`` adds the random null model with
    ``null_masks`` masks (it multiplies the work by ``null_masks + 1``). ``recheck_of``
    (set by :func:`run_recheck`) takes each checkpoint's eps from the local results of that
    attack tag. ``precision="bf16"`` (autocast, recorded in the result files) and
    ``channels_last`` are GPU speed options (:func:`runtime.autocast`, :func:`runtime.channels_last`).

    ``source`` studies a model from elsewhere (:func:`robustness.models.load_model`) as one checkpoint, Init 1 at
    epoch 0, in the folder :func:`robustness.paths.source_dir_name` names in place of ``<Arch>``; ``arch``
    is then what a plain ``state_dict`` is loaded into, or the source's own name, for the record.

    ``sequential`` (:class:`robustness.scoring.Sequential`, holding the :class:`~robustness.scoring.Scoring` whose
    labels it decides) evaluates each local sweep's images in blocks and stops a layer once its labels are decided
    (:func:`robustness.filtering.local_analysis`); global sweeps run on every image.
    """

    attack: Any
    arch: str = "resnet18"
    dataset: str = "mnist5k"
    inits: tuple[int, ...] | None = None
    epochs: tuple[int, ...] | None = None
    kinds: tuple[str, ...] = FILTERS
    scopes: tuple[str, ...] = SCOPES
    thresholds: int = 25
    grid: Grid = "value"
    layers: tuple[str, ...] | None = None
    alpha_range: AlphaRange = (-1.0, 1.0)
    subset: int | None = None
    seed: int = 0
    calibrate_eps: float | None = None
    eps_images: int = 500
    bn: BatchNormMode = "recalibrate"
    bn_images: int = 1000
    random_baseline: bool = False
    null_masks: int = 5
    recheck_of: str | None = None
    batch_size: int = DEFAULT_BATCH
    precision: Precision = "fp32"
    channels_last: bool = False
    models_root: str = str(paths.DEFAULT_MODELS_ROOT)
    data_root: str = str(paths.DEFAULT_DATA_ROOT)
    device: str = "auto"
    source: str | None = None
    sequential: Sequential | None = None

    @property
    def tree_arch(self) -> str:
        """The ``arch`` key of the study's folder: ``arch``, or for a model from elsewhere its source's folder."""
        return self.arch if self.source is None else paths.source_dir_name(self.source)

    def validate(self) -> StudyConfig:
        """Return the config with filter names made canonical; raise :class:`InvalidArgument` on a bad value."""
        for name in ("tag", "eps"):
            if not hasattr(self.attack, name):
                raise InvalidArgument(
                    f"the attack has no .{name}, which names its result files: build it with "
                    f"robustness.attacks.registry.make_attack (or FGSM/PGD)"
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
            if not _count(self.eps_images, 1):
                raise InvalidArgument(f"eps_images (held-out test images eps is calibrated on) must be "
                                      f"at least 1, got {self.eps_images!r}")
            if not is_dataclass(self.attack):
                raise InvalidArgument("calibrate_eps needs an attack whose eps can be changed: FGSM or PGD")
        if self.source is not None and (self.inits not in (None, (1,)) or self.epochs not in (None, (0,))):
            raise InvalidArgument(f"a model from elsewhere ({self.source}) is one checkpoint, Init 1 at epoch 0: "
                                  f"leave out inits and epochs (--inits, --checkpoint-epochs)")
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
    """The checkpoints a study covers, keyed by ``(init, epoch)``, in order (a model from elsewhere: its source,
    as ``(1, 0)``)."""
    if config.source is not None:
        return {(1, 0): Path(config.source)}
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


@dataclass(frozen=True)
class StudyPlan:
    """A study planned once: its validated config, its checkpoints (``(init, epoch)`` -> file) and its
    units, checkpoint by checkpoint in a fixed order. The runner makes one and passes it down."""

    config: StudyConfig
    checkpoints: dict[tuple[int, int], Path]
    units: list[Unit]

    def units_of(self, checkpoint: tuple[int, int]) -> list[Unit]:
        """The units of one ``(init, epoch)``."""
        return [u for u in self.units if u.checkpoint == checkpoint]


def make_plan(config: StudyConfig) -> StudyPlan:
    """The :class:`StudyPlan` of ``config``: the checkpoints found on disk, and every unit over them.

    The layer names come from the architecture built on the ``meta`` device (no weights are made)."""
    config = config.validate()
    if config.source is not None:
        names = list(_source_layers(config.source, config.arch, config.dataset, config.layers))
    else:
        with torch.device("meta"):
            model = build_model(config.arch, config.dataset)
        names = [name for name, _ in select_layers(model, config.layers)]
    found = checkpoints(config)
    units = [
        Unit(init, epoch, kind, scope, layer)
        for init, epoch in found
        for kind in config.kinds
        for scope in config.scopes
        for layer in (names if scope == "local" else [None])
    ]
    return StudyPlan(config, found, units)


def plan_units(config: StudyConfig) -> list[Unit]:
    """Every unit of the study, checkpoint by checkpoint, in a fixed order (:attr:`StudyPlan.units`)."""
    return make_plan(config).units


@lru_cache(maxsize=8)
def _source_layers(source: str, arch: str, dataset: str, layers: tuple[str, ...] | None) -> tuple[str, ...]:
    """The filterable layers a model from elsewhere has (loaded once per process to learn them)."""
    return tuple(name for name, _ in select_layers(load_source(source, arch=arch, dataset=dataset)[0], layers))


# ---------------------------------------------------------------- the attack and its files


def with_eps(attack: Any, eps: float) -> Any:
    """``attack`` at budget ``eps``; a PGD step size keeps its ratio to eps."""
    if hasattr(attack, "alpha") and attack.eps > 0:
        return replace(attack, eps=eps, alpha=attack.alpha * eps / attack.eps)
    return replace(attack, eps=eps)


def attack_params(attack: Any) -> dict[str, Any]:
    """Everything :func:`robustness.attacks.make_attack` needs to rebuild ``attack``: ``make_attack(**params)``."""
    if is_dataclass(attack):
        params = {"name": type(attack).__name__.lower(), **asdict(attack)}
        if "losses" in params:  # APGD: make_attack takes its losses in the name
            losses = params.pop("losses")
            params["name"] = "apgd" if len(losses) > 1 else f"apgd-{losses[0]}"
        return params
    return {"name": attack.tag, "eps": attack.eps}


def attack_tag(config: StudyConfig) -> str:
    """The attack part of the study's file names: the attack's own tag (``fgsm_eps0.1``); with ``calibrate_eps``
    the eps is replaced by the target (``fgsm_acc0.5``; a PGD step ``a`` is then per unit of eps); a re-check
    is ``<PGD tag without eps>_recheck_of_<FGSM tag>``."""
    if config.recheck_of is not None:
        return with_eps(config.attack, 1.0).tag.replace("_eps1", "", 1) + RECHECK + config.recheck_of
    if config.calibrate_eps is not None:
        return with_eps(config.attack, 1.0).tag.replace("_eps1", f"_acc{config.calibrate_eps:g}", 1)
    return config.attack.tag


def _eps_is_measured(config: StudyConfig) -> bool:
    """Whether eps differs per checkpoint (calibrated, or read from the results a re-check re-checks)."""
    return config.calibrate_eps is not None or config.recheck_of is not None


def result_path(config: StudyConfig, init: int, epoch: int, kind: str, scope: str) -> Path:
    """The result file of one (checkpoint, filter, scope, attack)."""
    return paths.sweep_result_path(
        config.tree_arch, config.dataset, init, epoch, kind, scope, attack_tag(config), config.models_root
    )


def unit_path(config: StudyConfig, unit: Unit) -> Path:
    """The file a unit writes: its result file (global) or its layer's part file (local)."""
    final = result_path(config, unit.init, unit.epoch, unit.kind, unit.scope)
    return final if unit.layer is None else paths.sweep_part_path(final, unit.layer)


def settings_meta(config: StudyConfig, unit: Unit) -> dict[str, Any]:
    """The part of a result file's meta that the study's set-up decides: a rerun must match it."""
    meta = {
        "arch": config.arch, "dataset": config.dataset, "init": unit.init, "epoch": unit.epoch,
        "kind": unit.kind, "scope": unit.scope, "attack": attack_tag(config), "calibrate_eps": config.calibrate_eps,
        # "calibration_images" is the file format's name of config.eps_images (the eps hold-out)
        "calibration_images": held_out(config), "thresholds": config.thresholds, "grid": config.grid,
        "subset": config.subset, "seed": config.seed, "precision": config.precision, "bn": config.bn,
        "bn_images": config.bn_images if config.bn == "recalibrate" else 0,
        "null_masks": config.null_masks if config.random_baseline else 0,
    }
    meta |= regime_meta(config.tree_arch, config.dataset, config.models_root)
    if not _eps_is_measured(config):
        meta |= {"eps": config.attack.eps, "attack_params": attack_params(config.attack)}
    if config.recheck_of is not None:
        meta["recheck_of"] = config.recheck_of
    if unit.scope == "global" and config.grid == "value":
        meta["alpha_range"] = config.alpha_range if config.alpha_range == "auto" else list(config.alpha_range)
    if unit.scope == "local":
        meta["layers"] = list(config.layers) if config.layers else None
        # None for a sweep of all images: a file written before sequential sweeps existed has none either
        meta["sequential"] = None if config.sequential is None else config.sequential.record()
    return meta


def _check_meta(config: StudyConfig, unit: Unit, path: Path) -> dict[str, Any]:
    """The meta of ``path``, a file of ``unit``; an error when a different study set-up wrote it."""
    found, expected = load_result_json(path)["meta"], settings_meta(config, unit)
    found = {**standard_meta(), **found}  # a file written before regimes existed is standard
    diff = {k: found.get(k) for k in expected if found.get(k) != expected[k]}
    if diff:
        raise InvalidArgument(
            f"{path} was written by a different study set-up ({diff}): delete it, or rerun with "
            f"the same options or another --models-root"
        )
    return found


def finished_file(config: StudyConfig, unit: Unit) -> Path | None:
    """The file that holds the unit's result, once written (checked against the study's set-up)."""
    final = result_path(config, unit.init, unit.epoch, unit.kind, unit.scope)
    for path in dict.fromkeys([final, unit_path(config, unit)]):
        if path.is_file():
            _check_meta(config, unit, path)
            return path
    return None


def is_done(config: StudyConfig, unit: Unit) -> bool:
    """Whether the unit's result is already written; a file from a different study set-up is an error."""
    return finished_file(config, unit) is not None


def load_study_model(config: StudyConfig, path: Path, device: torch.device) -> nn.Module:
    """The checkpoint at ``path`` (or the study's model from elsewhere) on ``device``, in channels-last format
    when the study asks for it."""
    if config.source is not None:
        model, _ = load_source(config.source, arch=config.arch, dataset=config.dataset, device=device)
    else:
        model, _ = load_checkpoint(path, config.arch, config.dataset, map_location=device)
    if config.channels_last:
        channels_last(model)
    return model


# ---------------------------------------------------------------- eps already settled


def recorded_eps(config: StudyConfig, init: int, epoch: int, plan: StudyPlan | None = None) -> float | None:
    """The eps the study already used for a checkpoint, from any finished unit of it (``None`` if none)."""
    units = (plan or make_plan(config)).units_of((init, epoch))
    return next((load_result_json(path)["meta"]["eps"] for u in units if (path := finished_file(config, u))), None)


def rechecked_eps(config: StudyConfig, init: int, epoch: int) -> float:
    """The eps of the local results a re-check re-checks."""
    source = paths.sweep_result_path(config.tree_arch, config.dataset, init, epoch, config.kinds[0], "local",
                                     config.recheck_of, config.models_root)
    if not source.is_file():
        raise InvalidArgument(f"{source} is missing: run the {config.recheck_of} study of this checkpoint first")
    return float(load_result_json(source)["meta"]["eps"])
