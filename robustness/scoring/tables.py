"""Scores tables: one per (filter, scope, attack, score), layers × checkpoint epochs, over initialisations.

Each cell holds every initialisation's score, its interval and its label, and summarises
them as the mean ± SD over initialisations, the consensus label (the label every
initialisation gives, else ``uncertain``) and how many initialisations give the most
common label. A table also records each checkpoint's eps and its unfiltered clean and
adversarial accuracy with Wilson intervals, and the settings that made it (baseline,
``tau``, floor, coverage, resamples, BatchNorm mode, threshold grid).

Saved as a plain CSV, one row per (layer, epoch, initialisation) with every setting in
its own column, so it loads as is into a data frame; :func:`read_table` reads it back.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import paths
from ..errors import DataNotFoundError, InvalidArgument
from ..files import save_csv
from ..filtering import SweepResult, canonical_kind, load_results
from ..paths import RECHECK
from ..report import format_table
from ..stats import wilson_interval
from ..vocab import DEFAULT_CI, FILTERS, SCORES, Label, Score
from .scores import CONFIDENT, DEFAULT_SCORING, Scoring, consensus, images_of, layer_scores, outcomes

if TYPE_CHECKING:
    import pandas as pd

SETTINGS = ("score", "filter", "scope", "attack", "baseline", "tau", "floor", "ci", "n_boot", "seed", "bn", "grid")
CHECKPOINT = ("eps", "n_images", "ref_clean_acc", "ref_clean_lo", "ref_clean_hi", "ref_adv_acc", "ref_adv_lo",
              "ref_adv_hi")


@dataclass
class ScoresTable:
    """One score over layers × checkpoint epochs for one filter, scope and attack.

    ``per_init``, ``lo``, ``hi`` and ``se`` have shape ``(layers, epochs, inits)``: each
    initialisation's score, interval and bootstrap SE (NaN where undefined or missing);
    ``init_labels[i][j][k]`` is its label (``None`` where that initialisation has no such
    cell). ``checkpoints[(init, epoch)]`` holds the columns of :data:`CHECKPOINT`.
    """

    score: Score
    kind: str
    scope: paths.Scope
    attack: str
    scoring: Scoring  # how the scores were computed: baseline, tau, floor, coverage ci, n_boot
    layers: list[str]
    epochs: list[int]
    inits: list[int]
    per_init: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    se: np.ndarray
    init_labels: list[list[list[Label | None]]]
    checkpoints: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    bn: str = "frozen"
    grid: str = "value"
    regime: str = "standard"  # the checkpoints' training regime (robustness.training.regime_tag)

    def _cells(self) -> list[list[list[float]]]:
        """The scores present in each cell (missing initialisations left out)."""
        return [[[float(self.per_init[i, j, k]) for k in range(len(self.inits)) if self.init_labels[i][j][k]]
                 for j in range(len(self.epochs))] for i in range(len(self.layers))]

    @property
    def values(self) -> np.ndarray:
        """The mean over initialisations of each cell (NaN when any of them is undefined)."""
        return np.array([[np.mean(c) if c else np.nan for c in row] for row in self._cells()]).reshape(
            len(self.layers), len(self.epochs))

    @property
    def sd(self) -> np.ndarray:
        """The SD (``ddof=1``) over initialisations of each cell; NaN with fewer than 2."""
        return np.array([[np.std(c, ddof=1) if len(c) > 1 else np.nan for c in row] for row in self._cells()]
                        ).reshape(len(self.layers), len(self.epochs))

    @property
    def labels(self) -> list[list[Label]]:
        """The consensus label of every cell: what every initialisation says, else ``uncertain``."""
        return [[consensus(cell) for cell in row] for row in self.init_labels]

    @property
    def agreement(self) -> list[list[tuple[Label, int]]]:
        """The most common label of every cell (a tie goes to a confident label) and how many initialisations
        give it."""
        def modal(cell: list[Label | None]) -> tuple[Label, int]:
            counts = Counter(lab for lab in cell if lab)
            return max(counts.items(), key=lambda kv: (kv[1], kv[0] in CONFIDENT), default=("undefined", 0))

        return [[modal(cell) for cell in row] for row in self.init_labels]

    def label_counts(self) -> Counter[str]:
        """How many cells get each consensus label."""
        return Counter(lab for row in self.labels for lab in row)

    def title(self) -> str:
        """A one-line description: score, filter, scope, attack, baseline, ``tau`` and the interval's settings."""
        return (f"{self.score} score, {self.kind} filter, {self.scope} scope, {self.attack}, baseline "
                f"{self.scoring.baseline}, tau={self.scoring.tau:g}, {self.scoring.ci:.0%} intervals "
                f"({self.scoring.n_boot} paired resamples of the images), "
                f"BatchNorm {self.bn}, {self.grid} grid, regime {self.regime}")

    def tag(self) -> str:
        """What tells this table's file apart from others of the same score and filter."""
        return f"{self.attack}_{self.scoring.baseline}"

    def rows(self) -> list[dict[str, Any]]:
        """One dict per layer, for printing: per epoch, mean ± SD, each initialisation's interval, and the
        consensus label with how many initialisations give the most common label."""
        values, sd, labels, agreement = self.values, self.sd, self.labels, self.agreement
        out = []
        for i, name in enumerate(self.layers):
            cells: dict[str, Any] = {"layer": name}
            for j, epoch in enumerate(self.epochs):
                spread = "" if math.isnan(sd[i, j]) else f" ± {sd[i, j]:.3f}"
                intervals = [f"[{_signed(self.lo[i, j, k], 2)}, {_signed(self.hi[i, j, k], 2)}]"
                             for k in range(len(self.inits)) if self.init_labels[i][j][k]]
                modal, count = agreement[i][j]
                n = len(self.inits)
                consensus = labels[i][j]
                cells[f"epoch {epoch}"] = f"{_signed(values[i, j], 3)}{spread}"
                cells[f"epoch {epoch} intervals"] = " ".join(intervals)
                cells[f"epoch {epoch} label"] = (f"{consensus} {count}/{n}" if consensus == modal
                                                 else f"{consensus} ({modal} {count}/{n})")
            out.append(cells)
        return out

    def checkpoint_rows(self) -> list[dict[str, Any]]:
        """One dict per checkpoint, for printing: eps and the unfiltered model's accuracies with intervals."""
        pct = f"{self.scoring.ci:.0%}"
        return [{"init": init, "epoch": epoch, "eps": info["eps"], "images": info["n_images"],
                 "clean acc": info["ref_clean_acc"],
                 f"clean {pct} CI": f"[{info['ref_clean_lo']:.3f}, {info['ref_clean_hi']:.3f}]",
                 "adv acc": info["ref_adv_acc"],
                 f"adv {pct} CI": f"[{info['ref_adv_lo']:.3f}, {info['ref_adv_hi']:.3f}]"}
                for (init, epoch), info in sorted(self.checkpoints.items())]

    def records(self) -> list[dict[str, Any]]:
        """One dict per (layer, epoch, initialisation) present, as :func:`save_table` writes it: the settings
        (:data:`SETTINGS`), the initialisation's score, interval, SE and label, the cell's mean, SD, consensus
        label and agreement, and the checkpoint's :data:`CHECKPOINT` columns."""
        settings = dict(zip(SETTINGS, (self.score, self.kind, self.scope, self.attack,
                                       self.scoring.baseline, self.scoring.tau, self.scoring.floor, self.scoring.ci,
                                       self.scoring.n_boot, self.scoring.seed, self.bn, self.grid), strict=True))
        values, sd, labels, agreement = self.values, self.sd, self.labels, self.agreement
        rows = []
        for i, name in enumerate(self.layers):
            for j, epoch in enumerate(self.epochs):
                for k, init in enumerate(self.inits):
                    if not self.init_labels[i][j][k]:
                        continue
                    info = self.checkpoints.get((init, epoch), {})
                    rows.append({
                        **settings, "regime": self.regime, "layer": name, "epoch": epoch, "init": init,
                        "value": self.per_init[i, j, k],
                        "lo": self.lo[i, j, k], "hi": self.hi[i, j, k], "se": self.se[i, j, k],
                        "label": self.init_labels[i][j][k], "mean": values[i, j], "sd": sd[i, j],
                        "consensus": labels[i][j], "modal": agreement[i][j][0], "agree": agreement[i][j][1],
                        **{c: info.get(c, math.nan) for c in CHECKPOINT},
                    })
        return rows

    def text(self) -> str:
        """The table as printed: title, the checkpoints, the layers, and the label counts."""
        counts = self.label_counts()
        confident = sum(counts[lab] for lab in CONFIDENT)
        summary = ", ".join(f"{counts[lab]} {lab}" for lab in (*CONFIDENT, "uncertain", "undefined") if counts[lab])
        return (f"{self.title()}\n{format_table(self.checkpoint_rows())}\n{format_table(self.rows())}\n"
                f"{confident} of {sum(counts.values())} labels confident: {summary}")


def _signed(value: float, digits: int) -> str:
    """``value`` with its sign and ``digits`` decimals, never ``-0.00``."""
    return f"{round(float(value), digits) + 0.0:+.{digits}f}"


def checkpoint_info(meta: Mapping[str, Any], result: SweepResult, coverage: float = DEFAULT_CI) -> dict[str, Any]:
    """The :data:`CHECKPOINT` columns of one result file: eps, unfiltered accuracies with Wilson intervals."""
    found = outcomes(result)
    n = images_of(result)  # a sequential sweep's layer may have stopped early; the reference saw every image
    info: dict[str, Any] = {"eps": float(meta.get("eps", math.nan)), "n_images": n}
    for what, correct in (("clean", found.ref_clean), ("adv", found.ref_adv)):
        k = int(correct.sum()) if n == found.n else round(meta[f"ref_{what}_acc"] * n)
        info[f"ref_{what}_acc"] = k / n
        info[f"ref_{what}_lo"], info[f"ref_{what}_hi"] = wilson_interval(k, n, coverage)
    return info


def build_tables(
    scored: Mapping[tuple[int, int], Mapping[str, Mapping[str, Any]]],
    *,
    kind: str,
    scope: paths.Scope,
    attack: str,
    scoring: Scoring = DEFAULT_SCORING,
    checkpoints: Mapping[tuple[int, int], Mapping[str, Any]] | None = None,
    bn: str = "frozen",
    grid: str = "value",
    regime: str = "standard",
) -> dict[Score, ScoresTable]:
    """The layers × epochs table of each score from per-checkpoint scores.

    ``scored[(init, epoch)][layer]`` is a :func:`robustness.scoring.scores.filtering_scores` dict;
    ``checkpoints[(init, epoch)]`` the :func:`checkpoint_info` of its result file; ``scoring`` the options
    they were scored with. Layers keep their first-seen order.
    """
    if not scored:
        raise InvalidArgument("no sweep results to build a scores table from: run the filter command first")
    layers = list(dict.fromkeys(name for per_layer in scored.values() for name in per_layer))
    epochs = sorted({epoch for _, epoch in scored})
    inits = sorted({init for init, _ in scored})
    tables = {}
    for score in SCORES:
        shape = (len(layers), len(epochs), len(inits))
        arrays = {name: np.full(shape, np.nan) for name in ("per_init", "lo", "hi", "se")}
        init_labels: list[list[list[Label | None]]] = [[[None] * len(inits) for _ in epochs] for _ in layers]
        for (init, epoch), per_layer in scored.items():
            j, k = epochs.index(epoch), inits.index(init)
            for name, cell in per_layer.items():
                i = layers.index(name)
                arrays["per_init"][i, j, k] = cell[score]
                arrays["lo"][i, j, k], arrays["hi"][i, j, k] = cell["ci"][score]
                arrays["se"][i, j, k] = cell["se"][score]
                init_labels[i][j][k] = cell["labels"][score]
        tables[score] = ScoresTable(
            score, kind, scope, attack, scoring, layers, epochs, inits, **arrays, init_labels=init_labels,
            checkpoints={key: dict(info) for key, info in (checkpoints or {}).items()}, bn=bn, grid=grid, regime=regime,
        )
    return tables


def _one(found: Sequence[str], what: str, where: str) -> str:
    """The one value of ``found`` (a setting over the result files); results that differ never mix."""
    values = sorted(set(found))
    if len(values) > 1:
        raise InvalidArgument(f"the {where} results mix {what} {values}: score them separately")
    return values[0]


def study_tables(
    arch: str,
    dataset: str,
    kind: str,
    scope: paths.Scope,
    *,
    root: str | Path = paths.DEFAULT_MODELS_ROOT,
    attack: str | None = None,
    scoring: Scoring = DEFAULT_SCORING,
) -> dict[str, dict[Score, ScoresTable]]:
    """Score every result file of one filter and scope of a study as ``scoring`` says:
    ``{attack_tag: {score: table}}``.

    ``attack`` (a tag such as ``"fgsm_eps0.1"``) keeps only that attack's results; by default every
    attack's but the PGD re-checks' (:mod:`robustness.study.recheck` reports those). Empty when the filter
    command has not written any result yet.
    """
    tables = {}
    for tag, units in paths.list_sweep_results(arch, dataset, kind, scope, root).items():
        if tag != attack and (attack is not None or RECHECK in tag):
            continue
        scored, infos, bn, grid, regime = {}, {}, [], [], []
        for checkpoint, path in units.items():
            meta, results = load_results(path)
            scored[checkpoint] = layer_scores(results, scoring)
            infos[checkpoint] = checkpoint_info(meta, next(iter(results.values())), scoring.ci)
            bn.append(meta.get("bn", "frozen"))  # files written before recalibration existed were frozen
            regime.append(meta.get("regime", paths.STANDARD))  # and those before regimes existed, standard
            grid += [r.grid for r in results.values()]
        where = f"{kind} {scope} {tag}"
        tables[tag] = build_tables(scored, kind=kind, scope=scope, attack=tag, scoring=scoring,
                                   checkpoints=infos, bn=_one(bn, "BatchNorm modes", where),
                                   grid=_one(grid, "threshold grids", where), regime=_one(regime, "regimes", where))
    return tables


def score_study(
    arch: str,
    dataset: str,
    *,
    kinds: Sequence[str] = FILTERS,
    scopes: Sequence[paths.Scope] = ("local", "global"),
    scoring: Scoring = DEFAULT_SCORING,
    root: str | Path = paths.DEFAULT_MODELS_ROOT,
    attack: str | None = None,
) -> list[ScoresTable]:
    """Build and save (CSV, atomically) every scores table of a study; return the tables.

    One table per (filter, scope, attack, score) that has result files. Raises
    :class:`DataNotFoundError`, naming the command that writes them, when there are none.
    """
    kinds = [canonical_kind(k) for k in kinds]
    tables = [
        table
        for kind in kinds
        for scope in scopes
        for per_score in study_tables(arch, dataset, kind, scope, root=root, attack=attack,
                                      scoring=scoring).values()
        for table in per_score.values()
    ]
    if not tables:
        which = f" for attack {attack}" if attack else ""
        model = "with the same --checkpoint or --weights" if arch.startswith(paths.SOURCE_DIR_PREFIX) else \
            f"--arch {arch}"
        raise DataNotFoundError(
            f"no filtering results{which} under {paths.model_dir(arch, dataset, root)} for filter(s) "
            f"{', '.join(kinds)} and scope(s) {', '.join(scopes)}: run python -m robustness filter {model} "
            f"--dataset {dataset} --filter all --scope both first"
        )
    for table in tables:
        save_table(table, arch, dataset, root)
    return tables


def scores_frame(
    models_root: str | Path = paths.DEFAULT_MODELS_ROOT, scoring: Scoring = DEFAULT_SCORING
) -> pd.DataFrame:
    """Every filtering score of every study under ``models_root`` as one long pandas table: the rows of
    :meth:`ScoresTable.records` (score, filter, scope, attack, the settings, layer, epoch, init, the score
    ``value`` with its interval ``lo``/``hi``, SE and label, the consensus over initialisations, the
    checkpoint's eps and unfiltered accuracies with intervals) after ``arch`` and ``dataset`` columns (a
    model from elsewhere's ``arch`` is its folder, :func:`robustness.paths.source_dir_name`), scored as
    ``scoring`` says. PGD re-checks are left out; empty when there is no result."""
    import pandas as pd  # noqa: PLC0415 (only the tables need it)

    rows = [{"arch": arch, "dataset": dataset, **row}
            for arch, dataset in paths.list_models(models_root) for kind in FILTERS for scope in ("local", "global")
            for per_score in study_tables(arch, dataset, kind, scope, root=models_root, scoring=scoring).values()
            for table in per_score.values() for row in table.records()]
    return pd.DataFrame(rows)


def save_table(table: ScoresTable, arch: str, dataset: str, root: str | Path = paths.DEFAULT_MODELS_ROOT) -> Path:
    """Write ``table`` as a plain CSV (:meth:`ScoresTable.records`, atomically) to
    :func:`robustness.paths.scores_table_path`."""
    path = paths.scores_table_path(arch, dataset, table.kind, table.scope, table.score, root, tag=table.tag())
    return save_csv(table.records(), path)


def read_table(path: str | Path) -> ScoresTable:
    """Read a table written by :func:`save_table`."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise InvalidArgument(f"{path} holds no rows: rerun python -m robustness scores to rewrite it")
    first = rows[0]
    layers = list(dict.fromkeys(row["layer"] for row in rows))
    epochs = sorted({int(row["epoch"]) for row in rows})
    inits = sorted({int(row["init"]) for row in rows})
    shape = (len(layers), len(epochs), len(inits))
    arrays = {name: np.full(shape, np.nan) for name in ("value", "lo", "hi", "se")}
    init_labels: list[list[list[Label | None]]] = [[[None] * len(inits) for _ in epochs] for _ in layers]
    checkpoints = {}
    for row in rows:
        i, j, k = layers.index(row["layer"]), epochs.index(int(row["epoch"])), inits.index(int(row["init"]))
        for name, array in arrays.items():
            array[i, j, k] = float(row[name])
        init_labels[i][j][k] = row["label"]
        checkpoints[int(row["init"]), int(row["epoch"])] = {
            c: int(row[c]) if c == "n_images" else float(row[c]) for c in CHECKPOINT}
    return ScoresTable(
        first["score"], first["filter"], first["scope"], first["attack"],
        Scoring(first["baseline"], float(first["tau"]), float(first["floor"]), float(first["ci"]),
                int(first["n_boot"]), int(first.get("seed", 0))),
        layers, epochs, inits, arrays["value"], arrays["lo"], arrays["hi"], arrays["se"], init_labels, checkpoints,
        bn=first["bn"], grid=first["grid"], regime=first.get("regime", paths.STANDARD),
    )
