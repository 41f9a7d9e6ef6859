"""Running the re-initialisation probe over a study's checkpoints, its result files and its heatmap.

:func:`run_probes` probes every selected checkpoint of a study (initialisations x epochs) with
:func:`robustness.probes.reinit.reinitialise` (each checkpoint against the epoch-0 checkpoint of its own
``Init_<i>`` folder), :func:`robustness.probes.reinit.rerandomise` or :func:`robustness.probes.ablate.ablate`, on
the images a filtering study with the same ``seed``/``subset``/``bn_images`` evaluates
(:mod:`robustness.study.images`). It
writes one result file per (checkpoint, probe kind, attack) where :mod:`robustness.paths` says,
in the sweeps' format (a JSON beside an ``.npz`` of per-image outcomes, written atomically,
each layer a one-point "sweep" per draw: :meth:`ProbeResult.to_sweep`); a rerun skips the files
already written and refuses one written with other settings. :func:`drop_matrix` reads them
back as a layers x epochs table of accuracy drops with intervals, the heatmap's data.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .. import paths
from ..errors import CheckpointError, InvalidArgument
from ..files import load_json
from ..filtering import load_results, save_results
from ..models import arch_depths, load_checkpoint
from ..runtime import pick_device, progress
from ..study import StudyConfig, attack_params, checkpoints, study_data
from ..training import regime_meta
from .ablate import ablate
from .reinit import DEFAULT_SEEDS, PROBE_KINDS, ProbeKind, ProbeResult, accuracy_drop, reinitialise, rerandomise


@dataclass(frozen=True)
class ProbeConfig:
    """A probe study: ``kind`` (``reinit``, ``rerandom`` with ``seeds``, or ``ablate``) over the checkpoints and images
    ``study`` selects (its attack, inits, epochs, layers, subset, seed, bn, bn_images, roots, device; its filters,
    scopes and thresholds are not used). The study's ``models_root`` is the root of the models' training regime
    (:func:`robustness.paths.regime_root`), whose tag and settings every result file records."""

    study: StudyConfig
    kind: ProbeKind = "reinit"
    seeds: tuple[int, ...] = DEFAULT_SEEDS

    def validate(self) -> ProbeConfig:
        """The config with its study validated; :class:`InvalidArgument` on a bad kind or eps calibration."""
        if self.kind not in PROBE_KINDS:
            raise InvalidArgument(f"unknown probe kind {self.kind!r}: choose {' or '.join(PROBE_KINDS)}")
        if self.study.calibrate_eps is not None:
            raise InvalidArgument("the probe takes a fixed eps (--eps), not --calibrate-eps")
        return replace(self, study=self.study.validate())

    def path(self, init: int, epoch: int) -> Path:
        """The result file of one checkpoint."""
        s = self.study
        return paths.probe_result_path(s.arch, s.dataset, init, epoch, self.kind, s.attack.tag, s.models_root)

    def settings(self, init: int, epoch: int) -> dict[str, Any]:
        """The meta a result file of this probe records, which a rerun must match."""
        s = self.study
        return {"arch": s.arch, "dataset": s.dataset, "init": init, "epoch": epoch, "probe": self.kind,
                "attack": s.attack.tag, "eps": s.attack.eps, "attack_params": attack_params(s.attack),
                "calibrate_eps": None, "calibration_images": 0, "subset": s.subset, "seed": s.seed, "bn": s.bn,
                "bn_images": s.bn_images if s.bn == "recalibrate" else 0,
                "seeds": list(self.seeds) if self.kind == "rerandom" else [],
                "layers": list(s.layers) if s.layers else None, **regime_meta(s.arch, s.dataset, s.models_root)}


def _finished(config: ProbeConfig, init: int, epoch: int) -> bool:
    path = config.path(init, epoch)
    if not path.is_file():
        return False
    found, expected = load_json(path)["meta"], config.settings(init, epoch)
    diff = {k: found.get(k) for k in expected if found.get(k) != expected[k]}
    if diff:
        raise InvalidArgument(f"{path} was written by a probe with other settings ({diff}): delete it, or rerun "
                              f"with the same options or another --models-root")
    return True


def run_probes(config: ProbeConfig) -> list[Path]:
    """Probe every checkpoint ``config`` selects that has no result file yet; return all their result files."""
    config = config.validate()
    s = replace(config.study, device=str(pick_device(config.study.device)))
    found = checkpoints(s)
    pending = [c for c in found if not _finished(config, *c)]
    if pending:
        device = pick_device(s.device)
        data = study_data(s, device)
        depths = arch_depths(s.arch, s.dataset)
        for init, epoch in progress(pending, f"{config.kind} probe checkpoints", leave=True):
            model, _ = load_checkpoint(found[init, epoch], s.arch, s.dataset, map_location=device)
            if config.kind == "reinit":
                initial = _initial_model(s, init, device)
                results = reinitialise(model, initial, (data.x, data.y), s.attack, s.layers, data.bn_images)
            elif config.kind == "ablate":
                results = ablate(model, (data.x, data.y), s.attack, s.layers, data.bn_images)
            else:
                results = rerandomise(model, (data.x, data.y), s.attack, s.layers, data.bn_images, config.seeds)
            modules = dict(model.named_modules())
            sweeps = [r.to_sweep(sum(p.numel() for p in modules[name].parameters(recurse=False)))
                      for name, r in results.items()]
            first = next(iter(results.values()))
            meta = {**config.settings(init, epoch), "depth": {name: depths[name] for name in results},
                    "ref_clean_acc": first.ref_clean_acc, "ref_adv_acc": first.ref_adv_acc}
            save_results(meta, sweeps, config.path(init, epoch))
    return [config.path(*c) for c in found]


def _initial_model(s: StudyConfig, init: int, device: Any) -> Any:
    """The epoch-0 checkpoint of ``Init_<init>``: the reference of re-initialisation."""
    available = paths.list_checkpoints(s.arch, s.dataset, init, s.models_root)
    if 0 not in available:
        raise CheckpointError(
            f"{paths.init_dir(s.arch, s.dataset, init, s.models_root)} has no epoch-0 checkpoint, which "
            f"re-initialisation resets layers to: train it again with python -m robustness train (it writes one), "
            f"or use --kind rerandom"
        )
    return load_checkpoint(available[0], s.arch, s.dataset, map_location=device)[0]


def load_probes(path: str | Path) -> tuple[dict[str, Any], dict[str, ProbeResult]]:
    """A probe result file read back: ``(meta, {layer: ProbeResult})``."""
    meta, sweeps = load_results(path)
    return meta, {name: ProbeResult.from_sweep(result) for name, result in sweeps.items()}


def drop_matrix(
    arch: str, dataset: str, kind: ProbeKind, init: int, attack: str | None = None, *,
    which: Literal["clean", "adv"] = "adv", root: str | Path = paths.DEFAULT_MODELS_ROOT,
    **bootstrap: Any,
) -> pd.DataFrame:
    """The accuracy drop of every probed layer at every probed epoch of ``Init_<init>``: a long table with
    columns ``layer, depth, epoch, drop, lo, hi, ref_acc, acc`` (:func:`robustness.probes.reinit.accuracy_drop`),
    layers in execution order. ``attack`` is the result files' attack tag (default: the only one there)."""
    tags = paths.list_probe_results(arch, dataset, kind, root)
    if attack is None and len(tags) > 1:
        raise InvalidArgument(f"several attacks were probed ({', '.join(tags)}): pick one with --attack-tag")
    units = tags.get(attack, {}) if attack is not None else next(iter(tags.values()), {})
    files = {epoch: path for (i, epoch), path in units.items() if i == init}
    if not files:
        raise InvalidArgument(f"no {kind} probe results of Init_{init} under "
                              f"{paths.probe_dir(arch, dataset, kind, root)}: run python -m robustness probe "
                              f"--arch {arch} --dataset {dataset} --kind {kind} first")
    rows = []
    for epoch, path in files.items():
        meta, results = load_probes(path)
        for name, result in results.items():
            drop, lo, hi = accuracy_drop(result, which, **bootstrap)
            rows.append({"layer": name, "depth": meta.get("depth", {}).get(name, np.nan), "epoch": epoch,
                         "drop": drop, "lo": lo, "hi": hi, "ref_acc": getattr(result, f"ref_{which}_acc"),
                         "acc": getattr(result, f"{which}_acc")})
    return pd.DataFrame(rows).sort_values(["depth", "epoch"], kind="stable").reset_index(drop=True)


def plot_probe_heatmap(frame: pd.DataFrame, title: str, threshold: float = 0.05) -> Figure:
    """Layers (rows, by depth) x epochs (columns) coloured by the accuracy drop of :func:`drop_matrix`; a cell
    whose interval lies wholly above ``threshold`` (critical) is marked with a dot."""
    import matplotlib.pyplot as plt  # noqa: PLC0415

    grid = frame.pivot_table(index="layer", columns="epoch", values="drop", sort=False)
    depth = frame.groupby("layer")["depth"].first()
    low = frame.pivot_table(index="layer", columns="epoch", values="lo", sort=False).loc[grid.index, grid.columns]
    fig, ax = plt.subplots(figsize=(max(5.0, 2.0 + 0.55 * grid.shape[1]), 1.6 + 0.28 * grid.shape[0]))
    image = ax.imshow(grid.to_numpy(), cmap="magma_r", vmin=min(0.0, float(np.nanmin(grid))), vmax=1.0,
                      aspect="auto")
    rows, cols = np.nonzero(low.to_numpy() > threshold)
    ax.scatter(cols, rows, s=8, color="tab:cyan")
    ax.set(xticks=range(grid.shape[1]), xticklabels=grid.columns, yticks=range(grid.shape[0]),
           yticklabels=[f"{name} (d {depth[name]:.2f})" for name in grid.index], xlabel="checkpoint epoch probed",
           ylabel="layer (normalised depth d)")
    ax.xaxis.label.set_size(8)
    ax.yaxis.label.set_size(8)
    ax.tick_params(labelsize=6)
    bar = fig.colorbar(image, ax=ax)
    bar.set_label("accuracy drop (reference - probed)", fontsize=7)
    ax.set_title(f"{title}\ndots: critical (the drop's interval lies above {threshold:g})", fontsize=7)
    fig.tight_layout()
    return fig


def probe_rows(path: str | Path, **bootstrap: Any) -> list[dict[str, Any]]:
    """One printable row per layer of a probe result file: clean and adversarial accuracy and their drops
    with intervals."""
    meta, results = load_probes(path)
    rows = []
    for name, result in progress(results.items(), "intervals"):
        row: dict[str, Any] = {"epoch": meta["epoch"], "layer": name, "depth": f"{meta['depth'][name]:.2f}"}
        for which in ("clean", "adv"):
            drop, lo, hi = accuracy_drop(result, which, **bootstrap)
            row[which] = f"{getattr(result, f'{which}_acc'):.3f} (ref {getattr(result, f'ref_{which}_acc'):.3f})"
            row[f"{which} drop"] = f"{drop:+.3f} [{lo:+.3f}, {hi:+.3f}]"
        rows.append(row)
    return rows
