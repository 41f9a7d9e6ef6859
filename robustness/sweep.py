"""Local and global synaptic-filtering sweeps, and the runner over many checkpoints (SPEC 4).

A sweep sets a filter's threshold to each point of a grid and, at every point,
evaluates clean and adversarial accuracy and loss, regenerating the attack against
the filtered model. Filtering happens in place on the model's own weights: one spare
copy of the layers being filtered is kept and copied back after the sweep, also
when it ends by an exception or Ctrl-C, so the weights are bitwise what they were.

The runner (:func:`run_study`) turns (initialisations x epochs x filters x scopes
x layers) into a deterministic list of :class:`Unit`. A global unit writes its
result file directly; a local unit (one layer) writes a part file, and the parts
of one (checkpoint, filter) are merged into its result file once every layer is
there. Every write is atomic and finished units are skipped, so a killed run,
rerun, only computes what is missing, and no two units ever write the same file.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from functools import partial
from itertools import groupby
from pathlib import Path
from typing import Any, get_args

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from . import paths
from .data import load_dataset, loader_to_tensors, make_loader
from .errors import CheckpointError, InvalidArgument
from .files import load_json
from .filters import KINDS, AlphaRange, canonical_kind, filter_mask, global_range, half_width, thresholds, weight_range
from .models import build_model, filterable_layers
from .results import Evaluation, SweepResult, load_results, outcomes_path, save_results  # noqa: F401 (re-exported)
from .runtime import (
    Precision,
    autocast,
    channels_last,
    check_precision,
    frozen_eval,
    model_device,
    pick_device,
    progress,
)

Attack = Callable[[nn.Module, Tensor, Tensor], Tensor]
EvalData = DataLoader | tuple[Tensor, Tensor]

SCOPES: tuple[str, ...] = get_args(paths.Scope)
DEFAULT_BATCH = 1000  # images per forward pass during a sweep


# ---------------------------------------------------------------- one configuration


def evaluate(model: nn.Module, x: Tensor, y: Tensor, attack: Attack, batch_size: int = DEFAULT_BATCH) -> Evaluation:
    """Clean and adversarial accuracy and loss of ``model`` on ``(x, y)``: what one point of a sweep records.

    Unlike :func:`robustness.evaluation.evaluate` it also sums the losses, takes tensors
    already on the model's device, and waits for the device once per call, not per batch.
    An attack with ``with_clean_logits`` (FGSM, PGD) shares its first forward pass
    with the clean evaluation: FGSM then costs 2 forward passes and 1 input-gradient
    backward pass per batch, no more.
    """
    shared = getattr(attack, "with_clean_logits", None)
    losses = torch.zeros(2, dtype=torch.float64, device=x.device)  # clean, adversarial loss sums
    clean_ok, adv_ok = [], []
    for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True):
        if shared is not None:
            x_adv, clean_logits = shared(model, xb, yb)
        else:
            with torch.no_grad():
                clean_logits = model(xb)
            x_adv = attack(model, xb, yb)
        with torch.no_grad():
            adv_logits = model(x_adv)
            clean_ok.append(clean_logits.argmax(1) == yb)
            adv_ok.append(adv_logits.argmax(1) == yb)
            losses += torch.stack([
                F.cross_entropy(clean_logits, yb, reduction="sum"), F.cross_entropy(adv_logits, yb, reduction="sum")
            ]).double()
    clean_correct = torch.cat(clean_ok).cpu().numpy() if clean_ok else np.zeros(0, dtype=bool)
    adv_correct = torch.cat(adv_ok).cpu().numpy() if adv_ok else np.zeros(0, dtype=bool)
    clean_loss, adv_loss = (losses / max(len(y), 1)).tolist()
    return Evaluation(_mean(clean_correct), _mean(adv_correct), clean_loss, adv_loss, clean_correct, adv_correct)


def _mean(correct: np.ndarray) -> float:
    """The accuracy of per-image outcomes: exactly ``correct.mean()`` (0 for no images)."""
    return float(correct.mean()) if len(correct) else 0.0


# ---------------------------------------------------------------- sweeps


@contextmanager
def _filtering(weights: list[Tensor]) -> Iterator[Callable[[str, float, float], int]]:
    """Keep one spare copy of ``weights`` and yield ``set_filter(kind, alpha, h) -> removed``,
    which sets them to their filtered originals in place; copy the originals back on exit."""
    originals = [w.detach().clone() for w in weights]

    def set_filter(kind: str, alpha: float, h: float) -> int:
        removed = torch.zeros((), dtype=torch.long, device=originals[0].device)
        with torch.no_grad():
            for w, original in zip(weights, originals, strict=True):
                mask = filter_mask(original, kind, alpha, h)
                w.copy_(original).masked_fill_(mask, 0)
                removed += mask.sum()
        return int(removed)

    try:
        yield set_filter
    finally:
        with torch.no_grad():
            for w, original in zip(weights, originals, strict=True):
                w.copy_(original)


def _sweep(
    model: nn.Module, modules: list[nn.Module], layer: str | None, kind: str, *, lo: float, hi: float, count: int,
    attack: Attack, x: Tensor, y: Tensor, reference: Evaluation, batch_size: int,
) -> SweepResult:
    """Filter ``modules`` together at each of ``count`` thresholds over ``[lo, hi]`` and evaluate."""
    weights = [m.weight for m in modules]
    result = SweepResult.start(kind, layer, sum(w.numel() for w in weights), reference)
    h = half_width(lo, hi, count)
    with _filtering(weights) as set_filter:
        for alpha in progress(thresholds(kind, lo, hi, count), f"{kind} {layer or 'global'}"):
            removed = set_filter(kind, alpha, h)
            result.record(alpha, evaluate(model, x, y, attack, batch_size), removed)
    return result


def select_layers(model: nn.Module, layers: Sequence[str] | None = None) -> list[tuple[str, nn.Module]]:
    """The filterable layers named in ``layers`` (default: all), in module order."""
    available = filterable_layers(model)
    if layers is None:
        return available
    names = [name for name, _ in available]
    unknown = [name for name in layers if name not in names]
    if unknown:
        raise InvalidArgument(f"unknown layer(s) {', '.join(unknown)}: the filterable layers are {', '.join(names)}")
    return [(name, m) for name, m in available if name in layers]


def _tensors(data: EvalData, device: torch.device) -> tuple[Tensor, Tensor]:
    """The evaluation set as two tensors on ``device`` (loaded once, then evaluated in large batches)."""
    x, y = data if isinstance(data, tuple) else loader_to_tensors(data)
    return x.to(device), torch.as_tensor(y).to(device=device, dtype=torch.long)


def local_analysis(
    model: nn.Module, data: EvalData, kind: str, attack: Attack, thresholds: int = 25, *,
    layers: Sequence[str] | None = None, batch_size: int = DEFAULT_BATCH, reference: Evaluation | None = None,
) -> dict[str, SweepResult]:
    """Filter one layer at a time over its own ``[min W, max W]``; one sweep per layer, keyed by module name.

    ``data`` is a DataLoader or an ``(x, y)`` pair; ``attack`` is any ``(model, x, y) -> x_adv``,
    regenerated at every threshold; ``layers`` restricts the sweep to those module names;
    ``reference`` is the unfiltered model's :func:`evaluate`, when already known.
    """
    kind = canonical_kind(kind)
    chosen = select_layers(model, layers)
    with frozen_eval(model):
        x, y = _tensors(data, model_device(model))
        if reference is None:
            reference = evaluate(model, x, y, attack, batch_size)
        sweeps = {}
        for name, m in progress(chosen, "layers") if len(chosen) > 1 else chosen:
            lo, hi = weight_range([m.weight])
            sweeps[name] = _sweep(model, [m], name, kind, lo=lo, hi=hi, count=thresholds, attack=attack, x=x, y=y,
                                  reference=reference, batch_size=batch_size)
        return sweeps


def global_analysis(
    model: nn.Module, data: EvalData, kind: str, attack: Attack, thresholds: int = 25, *,
    alpha_range: AlphaRange = (-1.0, 1.0), batch_size: int = DEFAULT_BATCH, reference: Evaluation | None = None,
) -> SweepResult:
    """Filter every filterable layer at once with the same threshold over ``alpha_range``
    (default ``(-1, 1)``, as in the original study; ``"auto"``: the global min/max weight)."""
    kind = canonical_kind(kind)
    lo, hi = global_range(model, alpha_range)
    modules = [m for _, m in filterable_layers(model)]
    with frozen_eval(model):
        x, y = _tensors(data, model_device(model))
        if reference is None:
            reference = evaluate(model, x, y, attack, batch_size)
        return _sweep(model, modules, None, kind, lo=lo, hi=hi, count=thresholds, attack=attack, x=x, y=y,
                      reference=reference, batch_size=batch_size)


# ---------------------------------------------------------------- studies over checkpoints


@dataclass(frozen=True)
class StudyConfig:
    """What a filtering study covers. ``attack`` needs a ``tag`` and an ``eps`` (``robustness.attacks``).

    ``inits``/``epochs`` of ``None`` take every initialisation folder and every
    checkpoint found under ``models_root``. ``calibrate_eps`` (a target adversarial
    accuracy) replaces the attack's eps by the one that calibrates the newest selected
    checkpoint of the first initialisation to it. ``subset`` picks a fixed, seeded
    part of the test split as evaluation set. ``precision="bf16"`` (autocast, recorded
    in the result files) and ``channels_last`` are GPU speed options
    (:func:`runtime.autocast`, :func:`runtime.channels_last`).
    """

    attack: Any
    arch: str = "resnet18"
    dataset: str = "mnist5k"
    inits: tuple[int, ...] | None = None
    epochs: tuple[int, ...] | None = None
    kinds: tuple[str, ...] = KINDS
    scopes: tuple[str, ...] = SCOPES
    thresholds: int = 25
    layers: tuple[str, ...] | None = None
    alpha_range: AlphaRange = (-1.0, 1.0)
    subset: int | None = None
    seed: int = 0
    calibrate_eps: float | None = None
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
        if self.calibrate_eps is not None and not 0 <= self.calibrate_eps <= 1:
            raise InvalidArgument(f"calibrate_eps is a target accuracy in [0, 1], got {self.calibrate_eps}")
        kinds = tuple(dict.fromkeys(canonical_kind(k) for k in self.kinds))
        return replace(self, kinds=kinds, scopes=tuple(dict.fromkeys(self.scopes)))


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


def result_path(config: StudyConfig, init: int, epoch: int, kind: str, scope: str) -> Path:
    """The result file of one (checkpoint, filter, scope, attack)."""
    return paths.sweep_result_path(
        config.arch, config.dataset, init, epoch, kind, scope, config.attack.tag, config.models_root
    )


def unit_path(config: StudyConfig, unit: Unit) -> Path:
    """The file a unit writes: its result file (global) or its layer's part file (local)."""
    final = result_path(config, unit.init, unit.epoch, unit.kind, unit.scope)
    return final if unit.layer is None else paths.sweep_part_path(final, unit.layer)


def _meta(config: StudyConfig, unit: Unit) -> dict[str, Any]:
    meta = {
        "arch": config.arch, "dataset": config.dataset, "init": unit.init, "epoch": unit.epoch,
        "kind": unit.kind, "scope": unit.scope, "attack": config.attack.tag, "eps": config.attack.eps,
        "calibrate_eps": config.calibrate_eps, "thresholds": config.thresholds, "subset": config.subset,
        "seed": config.seed, "precision": config.precision,
    }
    if unit.scope == "global":
        meta["alpha_range"] = config.alpha_range if config.alpha_range == "auto" else list(config.alpha_range)
    else:
        meta["layers"] = list(config.layers) if config.layers else None
    return meta


def _is_done(config: StudyConfig, unit: Unit) -> bool:
    """Whether the unit's result is already written; a file from a different study set-up is an error."""
    final = result_path(config, unit.init, unit.epoch, unit.kind, unit.scope)
    for path in dict.fromkeys([final, unit_path(config, unit)]):
        if path.is_file():
            found, expected = load_json(path)["meta"], _meta(config, unit)
            if found != expected:
                diff = {k: found.get(k) for k in expected if found.get(k) != expected[k]}
                raise InvalidArgument(
                    f"{path} was written by a different study set-up ({diff}): delete it, or rerun with "
                    f"the same options or another --models-root"
                )
            return True
    return False


def _evaluation_loader(config: StudyConfig) -> DataLoader:
    """The test split, or its fixed, seeded ``subset``."""
    test = load_dataset(config.dataset, train=False, root=config.data_root)
    return make_loader(test, config.batch_size, subset=config.subset, seed=config.seed)


def evaluation_set(config: StudyConfig, device: torch.device) -> tuple[Tensor, Tensor]:
    """The study's evaluation images and labels on ``device``, loaded once for every checkpoint."""
    x, y = _tensors(_evaluation_loader(config), device)
    return (x.contiguous(memory_format=torch.channels_last) if config.channels_last else x), y


def load_model(config: StudyConfig, path: Path, device: torch.device) -> nn.Module:
    """The checkpoint at ``path`` on ``device``, in channels-last format when the study asks for it."""
    from .train import load_checkpoint  # noqa: PLC0415 (train imports evaluation; keep this module light)

    model, _ = load_checkpoint(path, config.arch, config.dataset, map_location=device)
    if config.channels_last:
        channels_last(model)
    return model


def run_unit(
    config: StudyConfig, unit: Unit, model: nn.Module, data: tuple[Tensor, Tensor], reference: Evaluation
) -> Path:
    """Run one unit on its checkpoint's ``model`` (frozen, on the device of ``data``) and write its file atomically."""
    shared = {"batch_size": config.batch_size, "reference": reference}
    if unit.scope == "local":
        (result,) = local_analysis(
            model, data, unit.kind, config.attack, config.thresholds, layers=[unit.layer], **shared
        ).values()
    else:
        result = global_analysis(
            model, data, unit.kind, config.attack, config.thresholds, alpha_range=config.alpha_range, **shared
        )
    return save_results(_meta(config, unit), [result], unit_path(config, unit))


def run_units(config: StudyConfig, units: Sequence[Unit], data: tuple[Tensor, Tensor] | None = None) -> list[Path]:
    """Run the units not yet written, loading each checkpoint once; return the files of all of them.

    ``units`` may be any part of :func:`plan_units` (e.g. one rank's share): a unit
    only ever writes its own file. ``data`` is :func:`evaluation_set`, when loaded.
    """
    config = config.validate()
    device = pick_device(config.device)
    found = checkpoints(config)
    for (init, epoch), group in groupby(units, key=lambda u: u.checkpoint):
        todo = [u for u in group if not _is_done(config, u)]
        if not todo:
            continue
        if data is None:
            data = evaluation_set(config, device)
        model = load_model(config, found[init, epoch], device)
        with frozen_eval(model), autocast(device, config.precision):
            reference = evaluate(model, *data, config.attack, config.batch_size)
            for unit in progress(todo, f"Init_{init} epoch {epoch}"):
                run_unit(config, unit, model, data, reference)
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
            save_results(loaded[0][0], [r for _, part in loaded for r in part.values()], final)
        if scope == "local" and final.is_file():
            folder = parts[0].parent
            shutil.rmtree(folder, ignore_errors=True)
            with suppress(OSError):  # .parts/ goes once no other (checkpoint, filter) has parts left in it
                folder.parent.rmdir()
        if final.is_file():
            written.append(final)
    return written


def calibrated(config: StudyConfig) -> StudyConfig:
    """``config`` with the attack's eps calibrated to ``config.calibrate_eps`` (unchanged when that is ``None``).

    Calibrates on the newest selected checkpoint of the first initialisation, over the study's evaluation set.
    """
    if config.calibrate_eps is None:
        return config
    from .evaluation import calibrate_eps  # noqa: PLC0415

    found = checkpoints(config)
    first = min(init for init, _ in found)
    newest = max(epoch for init, epoch in found if init == first)
    device = pick_device(config.device)
    model = load_model(config, found[first, newest], device)
    with autocast(device, config.precision):
        eps = calibrate_eps(
            model, _evaluation_loader(config), config.calibrate_eps, partial(_with_eps, config.attack)
        )
    return replace(config, attack=_with_eps(config.attack, eps))


def _with_eps(attack: Any, eps: float) -> Any:
    """``attack`` at budget ``eps``; a PGD step size keeps its ratio to eps."""
    if hasattr(attack, "alpha") and attack.eps > 0:
        return replace(attack, eps=eps, alpha=attack.alpha * eps / attack.eps)
    return replace(attack, eps=eps)


def run_study(config: StudyConfig) -> list[Path]:
    """Run a whole study, checkpoint by checkpoint; return its result files.

    Rerunning after an interruption computes only the units whose files are missing
    and ends with the same files as an uninterrupted run.
    """
    config = calibrated(config.validate())
    todo = [u for u in plan_units(config) if not _is_done(config, u)]
    data = evaluation_set(config, pick_device(config.device)) if todo else None
    groups = [list(g) for _, g in groupby(todo, key=lambda u: u.checkpoint)]
    for group in progress(groups, "checkpoints", leave=True):
        run_units(config, group, data)
        merge_results(config, [group[0].checkpoint])
    return merge_results(config)
