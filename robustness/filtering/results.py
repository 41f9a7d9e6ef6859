"""What a sweep records, and its files: a JSON of numbers beside an ``.npz`` of per-image outcomes.

A result file ``<name>.json`` holds ``{"meta": ..., "results": [...]}``, each result a
:meth:`SweepResult.to_dict` (per-threshold accuracies, losses, removed counts: no arrays).
Beside it, ``<name>.npz`` holds every result's per-image outcomes as packed bits: for a
result keyed ``key`` (its layer, or ``"global"``) and an outcome array ``field``, the entry
``key/field`` is ``np.packbits`` of the flattened booleans and ``key/field.shape`` its shape.
The ``.npz`` is written first and the JSON last, so an existing JSON marks a finished unit.

:func:`to_frame` reads every result file of a checkpoint tree into one long pandas table.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import paths
from ..errors import DataNotFoundError
from ..files import load_json, save_json, save_npz
from ..stats import wilson_interval

if TYPE_CHECKING:
    import pandas as pd

OUTCOMES: tuple[str, ...] = (
    "clean_correct", "adv_correct", "ref_clean_correct", "ref_adv_correct", "null_clean_correct", "null_adv_correct",
)


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Clean and adversarial accuracy and mean cross-entropy of one model on one evaluation set, and per
    image whether it was classified correctly (``clean_correct``, ``adv_correct``: bool arrays of shape ``(n,)``).

    The accuracies are the means of the per-image arrays, exactly.
    """

    clean_acc: float
    adv_acc: float
    clean_loss: float
    adv_loss: float
    clean_correct: np.ndarray
    adv_correct: np.ndarray

    @classmethod
    def join(cls, parts: list[Evaluation]) -> Evaluation:
        """One evaluation of the images of ``parts`` (blocks of images, in order): outcomes concatenated,
        accuracies their means, losses the image-weighted means."""
        if len(parts) == 1:
            return parts[0]
        sizes = np.array([len(p.clean_correct) for p in parts], dtype=float)
        clean, adv = (np.concatenate([getattr(p, name) for p in parts]) for name in ("clean_correct", "adv_correct"))
        clean_loss, adv_loss = (float(np.dot(sizes, [getattr(p, name) for p in parts]) / sizes.sum())
                                for name in ("clean_loss", "adv_loss"))
        return cls(float(clean.mean()), float(adv.mean()), clean_loss, adv_loss, clean, adv)

    def prefix(self, n: int) -> Evaluation:
        """The outcomes and accuracies of the first ``n`` images; the losses stay those of all images (they are
        not recorded per image)."""
        clean, adv = self.clean_correct[:n], self.adv_correct[:n]
        return Evaluation(float(clean.mean()), float(adv.mean()), self.clean_loss, self.adv_loss, clean, adv)


@dataclass(eq=False)
class SweepResult:
    """One threshold sweep: per-threshold lists, per-image outcomes, and the unfiltered reference.

    ``removed`` counts the filtered weights set to zero at each threshold and
    ``removed_fraction`` divides it by ``total``, the number of weights the filter
    acts on (one layer's for a local sweep, all filterable layers' for a global one).
    ``layer`` is the module name for a local sweep and ``None`` for a global one;
    ``grid`` is ``"value"`` (thresholds evenly spaced in weight value) or ``"quantile"``
    (evenly spaced in the fraction of weights removed). ``reuse`` says how a local sweep that reuses the
    unfiltered prefix (:mod:`robustness.filtering.reuse`) was computed: ``prefix_passes``, the batches whose prefix ran
    once for all thresholds, and ``fallback``, why full passes ran instead (``None`` when the prefix was used);
    ``None`` where reuse did not apply. ``passes`` counts the image passes the sweep ran: ``bn`` images through a
    BatchNorm re-estimation, ``clean`` images through a clean forward pass, ``attack`` images attacked (for
    FGSM one forward and backward pass, then the adversarial forward pass), each summed over the distinct points.
    ``reuse`` and ``passes`` are left out of ``==``: they say how the numbers were computed, not what they are.

    ``sequential`` (``None`` for a sweep of all images) records a sequential sweep
    (:class:`robustness.scoring.sequential.Sequential`): its stopping rule and settings, ``n`` the images it could
    have evaluated, ``ends`` the number of images at each planned look, and ``look`` (1-based) and ``images``
    where it stopped, ``decided`` whether every label it reports was decided there. Its per-image arrays (and
    the reference's) then hold the first ``images`` images of the evaluation order only: the others were not
    evaluated (they are absent, never counted wrong); the reference's losses are over all ``n``.

    Per-image outcomes (numpy bool arrays; ``None`` when not recorded, e.g. in a
    hand-made result): ``clean_correct``/``adv_correct`` of shape ``(T, n)``, one row per
    threshold, with ``clean_acc[t] == clean_correct[t].mean()`` exactly;
    ``ref_clean_correct``/``ref_adv_correct`` of shape ``(n,)`` for the unfiltered model;
    ``null_clean_correct``/``null_adv_correct`` of shape ``(M, T, n)`` for the random null
    model's ``M`` masks (``None`` when it was not computed).
    """

    kind: str
    layer: str | None
    total: int
    ref_clean_acc: float
    ref_adv_acc: float
    ref_clean_loss: float
    ref_adv_loss: float
    thresholds: list[float] = field(default_factory=list)
    clean_acc: list[float] = field(default_factory=list)
    adv_acc: list[float] = field(default_factory=list)
    clean_loss: list[float] = field(default_factory=list)
    adv_loss: list[float] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    removed_fraction: list[float] = field(default_factory=list)
    grid: str = "value"
    reuse: dict[str, Any] | None = None
    passes: dict[str, int] | None = None
    sequential: dict[str, Any] | None = None
    clean_correct: np.ndarray | None = None
    adv_correct: np.ndarray | None = None
    ref_clean_correct: np.ndarray | None = None
    ref_adv_correct: np.ndarray | None = None
    null_clean_correct: np.ndarray | None = None
    null_adv_correct: np.ndarray | None = None

    @property
    def key(self) -> str:
        """How a result file keys this sweep: its layer, or ``"global"``."""
        return self.layer or "global"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of everything but the per-image arrays."""
        return {f.name: _copy(getattr(self, f.name)) for f in fields(self) if f.name not in OUTCOMES}

    def outcomes(self) -> dict[str, np.ndarray]:
        """The per-image arrays that are set, by field name."""
        return {name: getattr(self, name) for name in OUTCOMES if getattr(self, name) is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any], outcomes: dict[str, np.ndarray] | None = None) -> SweepResult:
        """The inverse of :meth:`to_dict` (and :meth:`outcomes`)."""
        return cls(**data, **(outcomes or {}))

    @classmethod
    def start(cls, kind: str, layer: str | None, total: int, reference: Evaluation, grid: str = "value") -> SweepResult:
        """An empty sweep whose reference is the unfiltered model's ``reference``."""
        return cls(
            kind, layer, total, reference.clean_acc, reference.adv_acc, reference.clean_loss, reference.adv_loss,
            grid=grid, clean_correct=np.zeros((0, len(reference.clean_correct)), dtype=bool),
            adv_correct=np.zeros((0, len(reference.adv_correct)), dtype=bool),
            ref_clean_correct=reference.clean_correct, ref_adv_correct=reference.adv_correct,
        )

    def record(self, threshold: float, evaluation: Evaluation, removed: int) -> None:
        """Append the point measured at ``threshold`` with ``removed`` weights set to zero."""
        self.thresholds.append(threshold)
        self.clean_acc.append(evaluation.clean_acc)
        self.adv_acc.append(evaluation.adv_acc)
        self.clean_loss.append(evaluation.clean_loss)
        self.adv_loss.append(evaluation.adv_loss)
        self.removed.append(removed)
        self.removed_fraction.append(removed / self.total)
        self.clean_correct = np.concatenate([self.clean_correct, evaluation.clean_correct[None]])
        self.adv_correct = np.concatenate([self.adv_correct, evaluation.adv_correct[None]])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SweepResult):
            return NotImplemented
        mine, theirs = self.outcomes(), other.outcomes()
        return (
            {**self.to_dict(), "reuse": None, "passes": None} == {**other.to_dict(), "reuse": None, "passes": None}
            and mine.keys() == theirs.keys()
            and all(np.array_equal(mine[k], theirs[k]) for k in mine)
        )

    __hash__ = None  # type: ignore[assignment]  (mutable, compared by value)


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


def outcomes_path(path: str | os.PathLike) -> Path:
    """The ``.npz`` of per-image outcomes that belongs to the result file ``path``."""
    return Path(path).with_suffix(".npz")


def save_results(meta: dict[str, Any], results: list[SweepResult], path: str | os.PathLike) -> Path:
    """Write a result file: the per-image outcomes to ``<path>.npz`` first, then ``meta`` and the
    results to the JSON ``path`` (each atomically); return ``path``."""
    arrays: dict[str, np.ndarray] = {}
    for result in results:
        for name, array in result.outcomes().items():
            arrays[f"{result.key}/{name}"] = np.packbits(np.asarray(array, dtype=bool).ravel())
            arrays[f"{result.key}/{name}.shape"] = np.asarray(array.shape, dtype=np.int64)
    save_npz(outcomes_path(path), **arrays)
    return save_json({"meta": meta, "results": [r.to_dict() for r in results]}, path)


def _unpack(npz: Any, key: str) -> dict[str, np.ndarray]:
    out = {}
    for name in OUTCOMES:
        if f"{key}/{name}" in npz:
            shape = tuple(int(s) for s in npz[f"{key}/{name}.shape"])
            bits = np.unpackbits(npz[f"{key}/{name}"], count=int(np.prod(shape)))
            out[name] = bits.astype(bool).reshape(shape)
    return out


def _check_shapes(result: SweepResult) -> None:
    """Raise ``ValueError`` unless the per-image arrays are absent, or all there (the null pair optional)
    with shapes that fit the sweep's thresholds and each other."""
    arrays = result.outcomes()
    if not arrays:
        return
    n, T = next(iter(arrays.values())).shape[-1], len(result.thresholds)
    expected = {"clean_correct": (T, n), "adv_correct": (T, n), "ref_clean_correct": (n,), "ref_adv_correct": (n,)}
    if "null_clean_correct" in arrays or "null_adv_correct" in arrays:
        masks = len(arrays.get("null_clean_correct", arrays.get("null_adv_correct")))
        expected |= {"null_clean_correct": (masks, T, n), "null_adv_correct": (masks, T, n)}
    shapes = {k: a.shape for k, a in arrays.items()}
    if shapes != expected:
        raise ValueError(f"per-image arrays {shapes} do not fit {T} thresholds and each other")


RERUN = "the same filter command"


def load_result_json(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON part of a result file, ``{"meta": ..., "results": [...]}``; a file that is truncated, damaged or
    of another shape raises :class:`DataNotFoundError` saying to delete it and rerun the filter command."""
    data = load_json(path, rerun=RERUN)
    if not isinstance(data, dict) or not isinstance(data.get("meta"), dict) or not isinstance(data.get("results"),
                                                                                              list):
        raise DataNotFoundError(f"{path} is unreadable (not a result file: no meta and results): delete {path} and "
                                f"rerun {RERUN} to recompute it")
    return data


def load_results(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, SweepResult]]:
    """Read a result file and its per-image outcomes: ``(meta, results)``, results keyed by layer name, or
    ``"global"`` for a global sweep.

    ``meta`` holds the settings of the study that wrote it (arch, dataset, init, epoch, kind,
    scope, attack tag, eps, attack_params, bn, grid, thresholds, ...: see ``docs/sweeps.md``).
    A JSON whose ``.npz`` is missing or unreadable raises :class:`DataNotFoundError`.
    """
    data = load_result_json(path)
    npz_path = outcomes_path(path)
    try:
        with np.load(npz_path) as npz:
            results = [SweepResult.from_dict(r, _unpack(npz, r["layer"] or "global")) for r in data["results"]]
        for result in results:
            _check_shapes(result)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        problem = "is missing" if not npz_path.is_file() else f"is unreadable ({err})"
        raise DataNotFoundError(
            f"{npz_path}, the per-image outcomes of {path}, {problem}: delete {path} and rerun {RERUN} to "
            f"recompute it"
        ) from err
    return data["meta"], {r.key: r for r in results}


# One row per point of every sweep: what :func:`to_frame` returns.
FRAME_COLUMNS: tuple[str, ...] = (
    "arch", "dataset", "source", "init", "epoch", "filter", "scope", "attack", "eps", "bn", "grid", "layer",
    "depth", "threshold", "removed_fraction", "n_images", "clean_acc", "clean_lo", "clean_hi", "adv_acc", "adv_lo",
    "adv_hi", "ref_clean_acc", "ref_adv_acc", "null_clean_acc", "null_adv_acc",
)


def result_files(root: str | os.PathLike = paths.DEFAULT_MODELS_ROOT) -> list[Path]:
    """Every sweep result file under the checkpoint tree ``root`` (PGD re-checks included), in a fixed order."""
    return [path for arch, dataset in paths.list_models(root) for kind in paths.LOCAL_DIRS
            for scope in ("local", "global")
            for units in paths.list_sweep_results(arch, dataset, kind, scope, root).values()
            for path in units.values()]


def frame_rows(meta: dict[str, Any], results: dict[str, SweepResult], ci: float = 0.95) -> list[dict[str, Any]]:
    """The :data:`FRAME_COLUMNS` rows of one result file (:func:`load_results`): one per threshold of each
    sweep, its clean and adversarial accuracy with Wilson intervals (coverage ``ci``) over its ``n_images``
    images; the random null model's accuracy (mean over its masks) is NaN where it was not computed."""
    rows = []
    for key, result in results.items():
        n = len(result.ref_clean_correct) if result.ref_clean_correct is not None else 0
        null = {what: np.asarray(array).mean(axis=(0, 2)) if array is not None else None
                for what, array in (("clean", result.null_clean_correct), ("adv", result.null_adv_correct))}
        for t, threshold in enumerate(result.thresholds):
            row = {"arch": meta.get("arch"), "dataset": meta.get("dataset"), "source": meta.get("source"),
                   "init": meta.get("init"), "epoch": meta.get("epoch"), "filter": result.kind,
                   "scope": meta.get("scope"), "attack": meta.get("attack"), "eps": meta.get("eps", np.nan),
                   "bn": meta.get("bn", "frozen"), "grid": result.grid, "layer": key,
                   "depth": meta.get("depth", {}).get(key, np.nan), "threshold": threshold,
                   "removed_fraction": result.removed_fraction[t], "n_images": n}
            for what, acc in (("clean", result.clean_acc[t]), ("adv", result.adv_acc[t])):
                row[f"{what}_acc"] = acc
                row[f"{what}_lo"], row[f"{what}_hi"] = wilson_interval(round(acc * n), n, ci)
            row |= {"ref_clean_acc": result.ref_clean_acc, "ref_adv_acc": result.ref_adv_acc,
                    **{f"null_{what}_acc": float(v[t]) if v is not None else np.nan for what, v in null.items()}}
            rows.append(row)
    return rows


def to_frame(models_root: str | os.PathLike = paths.DEFAULT_MODELS_ROOT, ci: float = 0.95) -> pd.DataFrame:
    """Every sweep result under ``models_root`` as one long pandas table, one row per (result file, layer,
    threshold) with the columns of :data:`FRAME_COLUMNS` (:func:`frame_rows`): architecture, dataset, the
    model's source (empty for this package's checkpoints), init, epoch, filter, scope, attack tag, eps,
    BatchNorm mode, grid, layer (``"global"`` for a global sweep), its normalised depth (:mod:`robustness.models.depth`;
    NaN for a global sweep or a file written before depths were recorded), threshold, removed fraction, and clean and
    adversarial accuracy with their Wilson intervals; empty (with those columns) when there is no result."""
    import pandas as pd  # noqa: PLC0415 (only the tables need it)

    rows = [row for path in result_files(models_root) for row in frame_rows(*load_results(path), ci=ci)]
    return pd.DataFrame(rows, columns=list(FRAME_COLUMNS))


def file_summary(path: str | os.PathLike) -> dict[str, Any]:
    """One line about a result file, as the filter command prints it: its checkpoint, settings, number of
    sweeps and unfiltered accuracies."""
    meta, results = load_results(path)
    first = next(iter(results.values()))
    return {"init": meta["init"], "epoch": meta["epoch"], "filter": meta["kind"], "scope": meta["scope"],
            "attack": meta["attack"], "eps": meta["eps"], "bn": meta.get("bn", "frozen"), "grid": first.grid,
            "null": meta.get("null_masks", 0), "sweeps": len(results), "ref clean": first.ref_clean_acc,
            "ref adv": first.ref_adv_acc, "file": str(path)}
