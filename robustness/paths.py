"""The one module that knows where files go: the default roots and the layout of ``saved_models/``
(a figure's name under ``plots/`` comes from :mod:`robustness.figures`).

Roots (each overridable per call, and by ``--models-root``, ``--data-root``, ``--plots-root``):
:data:`DEFAULT_MODELS_ROOT` ``saved_models/``, :data:`DEFAULT_DATA_ROOT` ``Dataset/``,
:data:`DEFAULT_PLOTS_ROOT` ``plots/``. The layout::

    saved_models/<Arch>/<DATASET>/
        Init_<i>/<Arch>_<DATASET>_<epoch>epochs.ckpt          a checkpoint (robustness.models.checkpoints)
        Init_<i>/history.json                                 its training history
        {Step_minmax,Step_maxmin,Pulse_minmax}/               local sweeps (high-pass, low-pass, pulse filter):
            Init_<i>_<epoch>epochs_<attack>.json  (+ .npz)    one result file per checkpoint and attack
            .parts/<result>/<layer>.json                      one layer's part, until merged
            scores_<score>_<attack>_<baseline>.csv            layers x epochs score table
            scores_pgd_recheck_<attack>_<baseline>.csv        the PGD re-check of robust-looking layers
        global_data/                                          global sweeps, the same names prefixed by the filter
        {Probe_reinit,Probe_rerandom,Probe_ablate}/Init_<i>_<epoch>epochs_<attack>.json  (+ .npz)  probes
        retraining/<epoch>epochs_<filter>_<score>_<attack>_<digest>.json  (+ .csv, and a folder of runs)
        Defensive_<norm>/<split>[_oracle].npz                 defended images and labels
        reports/<name>.json                                   small summaries a rerun reuses
    saved_models/From_<source>/<DATASET>/...                  a model from elsewhere (source_dir_name)
    saved_models/Regime_<tag>/<Arch>/<DATASET>/...            an adversarially trained model (regime_root):
        regime.json   + everything above                      its training regime's settings, then the same layout
    plots/<figure name>.png  (+ .pdf)                         names from the *_plot_name functions of robustness.figures

A training regime has a tag (:func:`robustness.training.regime_tag`): ``standard`` lives where it
always did; any other, e.g. ``pgd-linf-eps0.1``, has the whole per-model tree under ``Regime_<tag>/``, so
every function here that takes an arch and a dataset takes ``regime=`` too, and a root from
:func:`regime_root` may stand for it in any other function or module.

Every sweep result ``<name>.json`` (and part file) has its per-image outcomes in ``<name>.npz``
beside it. Other modules and documents point here rather than repeat this.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from pathlib import Path

from .errors import CheckpointError, InvalidArgument
from .vocab import ARCHS, DATASETS, Scope

ARCH_DIRS: dict[str, str] = {
    "resnet18": "ResNet18",
    "resnet50": "ResNet50",
    "resnet18_cifar": "ResNet18_cifar",
    "resnet50_cifar": "ResNet50_cifar",
    "squeezenet1_1": "SqueezeNet",
    "shufflenet_v2_x1_0": "ShuffleNet",
    "shufflenet_v2_x0_5": "ShuffleNet_x0_5",
    "mnist_cnn": "MnistCNN",
}
DATASET_DIRS: dict[str, str] = {
    "mnist": "MNIST",
    "cifar10": "CIFAR10",
    "tinyimagenet": "ImageNet",
    "mnist5k": "MNIST5K",
}
if set(ARCH_DIRS) != set(ARCHS) or set(DATASET_DIRS) != set(DATASETS):
    raise ImportError("the folder names of robustness.paths must cover exactly the names of robustness.vocab")
# Local analysis folders keep the original study's names; the global one is shared.
LOCAL_DIRS: dict[str, str] = {"highpass": "Step_minmax", "lowpass": "Step_maxmin", "pulse": "Pulse_minmax"}
GLOBAL_DIR = "global_data"

RECHECK = "_recheck_of_"  # in the attack tag of a PGD re-check: <pgd tag>_recheck_of_<fgsm tag>

# The <Arch> folder of a model from elsewhere (robustness.models.sources) starts with this.
SOURCE_DIR_PREFIX = "From_"

DEFAULT_MODELS_ROOT = Path("saved_models")
DEFAULT_DATA_ROOT = Path("Dataset")
DEFAULT_PLOTS_ROOT = Path("plots")
FINDINGS_MODELS_ROOT = DEFAULT_MODELS_ROOT / "Findings"  # the findings run's own tree (robustness.findings)


STANDARD = "standard"  # the regime tag of standard training
REGIME_PREFIX = "Regime_"  # the folder of another regime: Regime_<tag>
_REGIME_TAG = re.compile(r"(pgd|fast|trades)-(linf|l2)-eps(\d+(?:\.\d+)?(?:e-?\d+)?)")


def check_regime_tag(regime: str) -> str:
    """``regime`` if it is a well-formed tag (``standard`` or ``<method>-<norm>-eps<eps>``), else one error."""
    if regime != STANDARD and not _REGIME_TAG.fullmatch(str(regime)):
        raise InvalidArgument(f"{regime!r} is not a regime tag: use standard or <method>-<norm>-eps<eps> such as "
                              f"pgd-linf-eps0.1 (the tag robustness train prints for --adv-train)")
    return regime


def train_flags(regime: str) -> str:
    """The ``robustness train`` options that train into ``regime`` (empty for standard), for error messages."""
    m = _REGIME_TAG.fullmatch(check_regime_tag(regime))
    return "" if m is None else f" --adv-train {m.group(1)} --adv-norm {m.group(2)} --adv-eps {m.group(3)}"


def regime_root(root: str | Path = DEFAULT_MODELS_ROOT, regime: str = STANDARD) -> Path:
    """The root under which ``regime``'s per-model trees lie: ``root`` itself for standard training,
    ``root/Regime_<tag>`` for any other (a root that any function or module taking a models root accepts)."""
    return Path(root) if check_regime_tag(regime) == STANDARD else Path(root) / f"{REGIME_PREFIX}{regime}"


def regime_file(arch: str, dataset: str, root: str | Path = DEFAULT_MODELS_ROOT, *, regime: str = STANDARD) -> Path:
    """``Regime_<tag>/<Arch>/<DATASET>/regime.json``: the settings the regime's checkpoints were trained with
    (standard training writes none)."""
    return model_dir(arch, dataset, root, regime=regime) / "regime.json"


def list_regimes(arch: str, dataset: str, root: str | Path = DEFAULT_MODELS_ROOT) -> list[str]:
    """The regimes with a folder for ``arch`` on ``dataset`` under ``root``: standard first (when its folder
    exists), then the others' tags, sorted."""
    found = [STANDARD] if model_dir(arch, dataset, root).is_dir() else []
    for folder in sorted(Path(root).glob(f"{REGIME_PREFIX}*")):
        tag = folder.name.removeprefix(REGIME_PREFIX)
        if _REGIME_TAG.fullmatch(tag) and model_dir(arch, dataset, root, regime=tag).is_dir():
            found.append(tag)
    return found


def check_regime(arch: str, dataset: str, regime: str, root: str | Path = DEFAULT_MODELS_ROOT) -> Path:
    """The regime root (:func:`regime_root`) of ``regime`` for ``arch`` on ``dataset``, after checking it holds
    checkpoints: one error naming the regimes found and the command that trains this one otherwise."""
    check_regime_tag(regime)
    if regime == STANDARD:
        return regime_root(root, regime)  # missing standard checkpoints keep their own messages
    folder = model_dir(arch, dataset, root, regime=regime)
    train_it = f"python -m robustness train --arch {arch} --dataset {dataset}{train_flags(regime)}"
    if not folder.is_dir():
        found = ", ".join(list_regimes(arch, dataset, root)) or "none"
        raise CheckpointError(f"no regime {regime!r} for {arch} on {dataset} under {root} (regimes found: {found}): "
                              f"pick one of those with --regime, or train it first ({train_it})")
    if not any(list_checkpoints(arch, dataset, i, root, regime=regime) for i in list_inits(arch, dataset, root,
                                                                                             regime=regime)):
        raise CheckpointError(f"the regime folder {folder} holds no checkpoints: train it ({train_it}), or delete "
                              "the folder")
    return regime_root(root, regime)


def _lookup(table: dict[str, str], key: str, what: str) -> str:
    try:
        return table[key]
    except KeyError:
        raise InvalidArgument(f"unknown {what} {key!r}: choose one of {', '.join(table)}") from None


def model_dir(arch: str, dataset: str, root: str | Path = DEFAULT_MODELS_ROOT, *, regime: str = STANDARD) -> Path:
    """``saved_models/<Arch>/<DATASET>`` (``saved_models/Regime_<tag>/<Arch>/<DATASET>`` for another regime)."""
    return regime_root(root, regime) / arch_dir_name(arch) / _lookup(DATASET_DIRS, dataset, "dataset")


def init_dir(arch: str, dataset: str, init: int, root: str | Path = DEFAULT_MODELS_ROOT, *,
             regime: str = STANDARD) -> Path:
    """``saved_models/<Arch>/<DATASET>/Init_<init>`` (initialisations count from 1)."""
    return model_dir(arch, dataset, root, regime=regime) / f"Init_{init}"


def checkpoint_path(arch: str, dataset: str, init: int, epoch: int, root: str | Path = DEFAULT_MODELS_ROOT, *,
                    regime: str = STANDARD) -> Path:
    """The checkpoint of ``init`` after ``epoch`` epochs."""
    name = f"{ARCH_DIRS[arch]}_{DATASET_DIRS[dataset]}_{epoch}epochs.ckpt"
    return init_dir(arch, dataset, init, root, regime=regime) / name


def history_path(arch: str, dataset: str, init: int, root: str | Path = DEFAULT_MODELS_ROOT, *,
                 regime: str = STANDARD) -> Path:
    """The per-epoch loss/accuracy record of ``init``."""
    return init_dir(arch, dataset, init, root, regime=regime) / "history.json"


def list_checkpoints(arch: str, dataset: str, init: int, root: str | Path = DEFAULT_MODELS_ROOT, *,
                     regime: str = STANDARD) -> dict[int, Path]:
    """The checkpoints written for ``init``, keyed by epoch, in epoch order."""
    folder = init_dir(arch, dataset, init, root, regime=regime)
    pattern = re.compile(rf"{re.escape(ARCH_DIRS[arch])}_{re.escape(DATASET_DIRS[dataset])}_(\d+)epochs\.ckpt")
    found = {int(m.group(1)): p for p in folder.glob("*.ckpt") if (m := pattern.fullmatch(p.name))}
    return dict(sorted(found.items()))


def find_checkpoint(
    arch: str, dataset: str, init: int, epoch: int | None = None, root: str | Path = DEFAULT_MODELS_ROOT, *,
    regime: str = STANDARD,
) -> tuple[int, Path]:
    """The epoch and path of ``init``'s checkpoint at ``epoch`` (default: the newest); when it is missing, an
    error that lists the epochs there, or says to train first."""
    found = list_checkpoints(arch, dataset, init, root, regime=regime)
    if not found:
        raise CheckpointError(f"no checkpoint of Init_{init} under {model_dir(arch, dataset, root, regime=regime)}: "
                              f"train first (python -m robustness train --arch {arch} --dataset {dataset}"
                              f"{train_flags(regime)})")
    epoch = max(found) if epoch is None else epoch
    if epoch not in found:
        raise CheckpointError(f"{init_dir(arch, dataset, init, root, regime=regime)} has no checkpoint at epoch "
                              f"{epoch}: the epochs there are {', '.join(map(str, found))}")
    return epoch, found[epoch]


def list_inits(arch: str, dataset: str, root: str | Path = DEFAULT_MODELS_ROOT, *,
               regime: str = STANDARD) -> list[int]:
    """The initialisations that have a folder, in order."""
    folder = model_dir(arch, dataset, root, regime=regime)
    return sorted(int(p.name[5:]) for p in folder.glob("Init_*") if p.name[5:].isdigit())


def analysis_dir(arch: str, dataset: str, kind: str, scope: Scope, root: str | Path = DEFAULT_MODELS_ROOT, *,
                 regime: str = STANDARD) -> Path:
    """Where sweep results go: ``Step_minmax/`` … for local analysis, ``global_data/`` for global."""
    if scope == "global":
        return model_dir(arch, dataset, root, regime=regime) / GLOBAL_DIR
    if scope == "local":
        return model_dir(arch, dataset, root, regime=regime) / _lookup(LOCAL_DIRS, kind, "filter")
    raise InvalidArgument(f"unknown scope {scope!r}: choose local or global")


def sweep_result_path(
    arch: str, dataset: str, init: int, epoch: int, kind: str, scope: Scope, attack_tag: str,
    root: str | Path = DEFAULT_MODELS_ROOT, *, regime: str = STANDARD,
) -> Path:
    """One result file per (checkpoint, filter, scope, attack, eps); ``attack_tag`` names attack and eps."""
    prefix = "" if scope == "local" else f"{kind}_"
    name = f"{prefix}Init_{init}_{epoch}epochs_{attack_tag}.json"
    return analysis_dir(arch, dataset, kind, scope, root, regime=regime) / name


def list_sweep_results(
    arch: str, dataset: str, kind: str, scope: Scope, root: str | Path = DEFAULT_MODELS_ROOT, *,
    regime: str = STANDARD,
) -> dict[str, dict[tuple[int, int], Path]]:
    """The result files of one filter and scope, as ``{attack_tag: {(init, epoch): path}}``, sorted.

    The inverse of :func:`sweep_result_path`.
    """
    prefix = "" if scope == "local" else f"{kind}_"
    pattern = re.compile(rf"{re.escape(prefix)}Init_(\d+)_(\d+)epochs_(.+)\.json")
    found: dict[str, dict[tuple[int, int], Path]] = {}
    for path in sorted(analysis_dir(arch, dataset, kind, scope, root, regime=regime).glob("*.json")):
        if m := pattern.fullmatch(path.name):
            found.setdefault(m.group(3), {})[(int(m.group(1)), int(m.group(2)))] = path
    return {tag: dict(sorted(units.items())) for tag, units in sorted(found.items())}


PROBE_DIRS: dict[str, str] = {"reinit": "Probe_reinit", "rerandom": "Probe_rerandom", "ablate": "Probe_ablate"}


def probe_dir(arch: str, dataset: str, kind: str, root: str | Path = DEFAULT_MODELS_ROOT, *,
              regime: str = STANDARD) -> Path:
    """Where re-initialisation (``Probe_reinit/``), re-randomisation (``Probe_rerandom/``) or ablation
    (``Probe_ablate/``) probe results go."""
    return model_dir(arch, dataset, root, regime=regime) / _lookup(PROBE_DIRS, kind, "probe kind")


def probe_result_path(arch: str, dataset: str, init: int, epoch: int, kind: str, attack_tag: str,
                      root: str | Path = DEFAULT_MODELS_ROOT, *, regime: str = STANDARD) -> Path:
    """One probe result file per (checkpoint, probe kind, attack): ``Init_<i>_<epoch>epochs_<attack>.json``."""
    return probe_dir(arch, dataset, kind, root, regime=regime) / f"Init_{init}_{epoch}epochs_{attack_tag}.json"


def list_probe_results(arch: str, dataset: str, kind: str, root: str | Path = DEFAULT_MODELS_ROOT, *,
                       regime: str = STANDARD) -> dict[str, dict[tuple[int, int], Path]]:
    """The probe result files of one kind, as ``{attack_tag: {(init, epoch): path}}``, sorted (the inverse of
    :func:`probe_result_path`)."""
    pattern = re.compile(r"Init_(\d+)_(\d+)epochs_(.+)\.json")
    found: dict[str, dict[tuple[int, int], Path]] = {}
    for path in sorted(probe_dir(arch, dataset, kind, root, regime=regime).glob("*.json")):
        if m := pattern.fullmatch(path.name):
            found.setdefault(m.group(3), {})[(int(m.group(1)), int(m.group(2)))] = path
    return {tag: dict(sorted(units.items())) for tag, units in sorted(found.items())}


def list_models(root: str | Path = DEFAULT_MODELS_ROOT) -> list[tuple[str, str]]:
    """The ``(arch, dataset)`` keys of every ``<Arch>/<DATASET>`` folder under ``root``, sorted; a model from
    elsewhere's ``arch`` key is its folder name (:func:`source_dir_name`)."""
    arch_keys = {folder: key for key, folder in ARCH_DIRS.items()}
    dataset_keys = {folder: key for key, folder in DATASET_DIRS.items()}
    found = []
    for folder in Path(root).glob("*/*"):
        arch = arch_keys.get(folder.parent.name)
        if arch is None and folder.parent.name.startswith(SOURCE_DIR_PREFIX):
            arch = folder.parent.name
        if arch is not None and folder.name in dataset_keys and folder.is_dir():
            found.append((arch, dataset_keys[folder.name]))
    return sorted(found)


def sweep_part_path(result_path: Path, layer: str) -> Path:
    """The part file of one layer of a local result file: ``<folder>/.parts/<result name>/<layer>.json``.

    The layers of a local sweep may be computed by different processes; each writes its
    own part, and the parts are merged into ``result_path`` once all exist.
    """
    return result_path.parent / ".parts" / result_path.stem / f"{layer}.json"


def scores_table_path(
    arch: str, dataset: str, kind: str, scope: Scope, score: str, root: str | Path = DEFAULT_MODELS_ROOT,
    tag: str = "", *, regime: str = STANDARD,
) -> Path:
    """The layers x epochs CSV table of one filtering score; ``tag`` names the attack and baseline."""
    prefix = "" if scope == "local" else f"{kind}_"
    suffix = f"_{tag}" if tag else ""
    return analysis_dir(arch, dataset, kind, scope, root, regime=regime) / f"{prefix}scores_{score}{suffix}.csv"


def retrain_result_path(
    arch: str, dataset: str, epoch: int, *, kind: str, score: str, attack_tag: str, digest: str,
    root: str | Path = DEFAULT_MODELS_ROOT, regime: str = STANDARD,
) -> Path:
    """The selective-retraining comparison at one checkpoint epoch (``.json``; a ``.csv`` twin and a folder of
    per-run outcomes share its stem); ``digest`` tells apart runs with different settings."""
    name = f"{epoch}epochs_{kind}_{score}_{attack_tag}_{digest}.json"
    return model_dir(arch, dataset, root, regime=regime) / "retraining" / name


def defense_dir(arch: str, dataset: str, norm: str, root: str | Path = DEFAULT_MODELS_ROOT, *,
                regime: str = STANDARD) -> Path:
    """``saved_models/<Arch>/<DATASET>/Defensive_<norm>``: defended images and labels per split."""
    return model_dir(arch, dataset, root, regime=regime) / f"Defensive_{norm}"


def defense_data_path(
    arch: str, dataset: str, norm: str, split: str, label: str, root: str | Path = DEFAULT_MODELS_ROOT, *,
    regime: str = STANDARD,
) -> Path:
    """``Defensive_<norm>/<split>.npz`` (``<split>_oracle.npz`` when the defense used the true labels)."""
    suffix = "_oracle" if label == "oracle" else ""
    return defense_dir(arch, dataset, norm, root, regime=regime) / f"{split}{suffix}.npz"


def report_path(arch: str, dataset: str, name: str, root: str | Path = DEFAULT_MODELS_ROOT, *,
                regime: str = STANDARD) -> Path:
    """``saved_models/<Arch>/<DATASET>/reports/<name>.json``: a small summary a run reuses on rerun."""
    return model_dir(arch, dataset, root, regime=regime) / "reports" / f"{name}.json"


def arch_dir_name(arch: str) -> str:
    """The ``<Arch>`` folder name of an architecture key (a :func:`source_dir_name` is its own)."""
    if arch.startswith(SOURCE_DIR_PREFIX):
        return arch
    return _lookup(ARCH_DIRS, arch, "architecture")


def source_dir_name(source: str | Path) -> str:
    """The folder a model from elsewhere has in place of ``<Arch>``: ``From_`` and the source with every
    character but letters, digits, ``.``, ``-`` and ``_`` made ``_`` (``From_robustbench_Wong2020Fast_cifar10_Linf``);
    a file is named by its stem and the first 10 hex digits of its content's SHA-256
    (``From_weights_3f2a9c01de``), so other weights never share a folder, wherever the file lies.
    """
    path = Path(source)
    if path.is_file():
        stat = path.stat()
        name = f"{path.stem}_{_digest(str(path.resolve()), stat.st_mtime_ns, stat.st_size)}"
    else:
        name = str(source)
    return SOURCE_DIR_PREFIX + re.sub(r"[^A-Za-z0-9._-]", "_", name)


@lru_cache(maxsize=64)
def _digest(path: str, mtime_ns: int, size: int) -> str:
    """The first 10 hex digits of the SHA-256 of a file (cached while its time and size stay the same)."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:10]


def dataset_dir_name(dataset: str) -> str:
    """The ``<DATASET>`` folder name of a dataset key."""
    return _lookup(DATASET_DIRS, dataset, "dataset")
