"""The computing steps of a study, each resumable: what a step finds written it reads back.

Every step calls the toolkit's own commands' functions (training, sweeps, re-check, probe, retraining)
with the objects its :class:`~robustness.findings.spec.StudySpec` nests, placed where its
:class:`~robustness.findings.spec.Place` says; the page is made from the files they write
(:mod:`robustness.findings.collect`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from .. import paths
from ..attacks import FGSM
from ..distributed import is_main, shard
from ..errors import DataNotFoundError
from ..filtering import load_result_json
from ..models import arch_depths
from ..probes import ProbeConfig, run_probes
from ..retraining import RetrainingStudy, run_comparison
from ..scoring import Scoring, Sequential
from ..study import StudyConfig, attack_tag, recorded_eps, result_path, run_study
from ..training import TrainConfig, claim_regime, train
from ..vocab import Score
from .spec import Place, StudySpec

CHECK_FOLDER = "settings_check"  # a model from elsewhere's settings check, apart from its main sweep (same source)


def train_config(s: StudySpec, at: Place, regime: int, **changes: Any) -> TrainConfig:
    """The training of regime ``regime`` (0 standard, 1 the adversarial one) into the run's models root."""
    adv = s.train.adv if regime == 0 else s.adversarial
    return replace(s.train, adv=adv, models_root=at.models_root, data_root=at.data_root, device=at.device, **changes)


def train_models(s: StudySpec, at: Place) -> None:
    """Train what is missing: ``arch`` standard and adversarially (a regime from elsewhere is not trained), and the
    depth architecture standard, with a checkpoint at every epoch (epoch 0 too: the re-initialisation probe's
    reference)."""
    for number, regime in enumerate(s.regimes):
        if not s.source(regime):
            train(train_config(s, at, number))
        elif number == 1 and is_main():  # the model's results record the regime the spec says it was trained in
            claim_regime(s.adversarial, study_config(s, at, regime).tree_arch, s.train.dataset, at.models_root)
    if compares_depth(s):
        train(train_config(s, at, 0, arch=s.depth.arch))


def compares_depth(s: StudySpec) -> bool:
    """Whether the study compares the depth architecture with the trained standard regime's."""
    return s.depth.arch != s.train.arch and not s.source(paths.STANDARD)


def study_config(s: StudySpec, at: Place, regime: str, **changes: Any) -> StudyConfig:
    """The high-pass local study of ``regime`` (the spec's sweep): every initialisation at the swept epochs (a model
    from elsewhere: its one model), eps calibrated per checkpoint on held-out test images, BatchNorm re-estimated at
    every threshold."""
    config = replace(s.sweep, inits=s.inits_of(regime), epochs=s.epochs_of(regime), source=s.source(regime),
                     models_root=at.regime_root(regime), data_root=at.data_root, device=at.device)
    return replace(config, **changes)


def depth_config(s: StudySpec, at: Place) -> StudyConfig:
    """The study of the depth architecture (standard) at its final epoch, for the normalised-depth comparison."""
    return study_config(s, at, paths.STANDARD, arch=s.depth.arch, epochs=(s.train.epochs,))


def run_sweeps(s: StudySpec, at: Place) -> None:
    """Every sweep of the run: high-pass over every layer of every initialisation at both epochs in both regimes,
    low-pass at the final epoch of ``lowpass_inits``, and the depth architecture's high-pass."""
    for regime in s.regimes:
        run_study(study_config(s, at, regime))
        if inits := lowpass_inits(s, regime):
            run_study(study_config(s, at, regime, kinds=("lowpass",), inits=inits, epochs=(s.final_of(regime),)))
    if compares_depth(s):
        run_study(depth_config(s, at))


def shared_inits(s: StudySpec) -> tuple[int, ...]:
    """The initialisations both regimes have (the regimes are compared init by init)."""
    return tuple(i for i in s.inits_of(s.regimes[0]) if i in s.inits_of(s.regimes[1]))


def study_depths(config: StudyConfig) -> dict[str, float]:
    """Each layer's normalised depth in the model ``config`` studies: its architecture's, or for a model from
    elsewhere the depths its high-pass sweep recorded."""
    if config.source is None:
        return arch_depths(config.arch, config.dataset)
    return load_result_json(result_path(config, 1, 0, "highpass", "local"))["meta"]["depth"]


def lowpass_inits(s: StudySpec, regime: str) -> tuple[int, ...]:
    """The initialisations of ``regime`` swept low-pass at the final epoch."""
    return tuple(i for i in s.lowpass_inits if i in s.inits_of(regime))


def checkpoint_eps(s: StudySpec, at: Place, regime: str, init: int, epoch: int) -> float:
    """The eps the high-pass study calibrated for a checkpoint (read from its result files)."""
    eps = recorded_eps(study_config(s, at, regime), init, epoch)
    if eps is None:
        raise DataNotFoundError(f"the {regime} Init_{init} epoch {epoch} checkpoint has no sweep yet: run the "
                                f"findings command (its sweep step) first")
    return float(eps)


def null_scoring(s: StudySpec) -> Scoring:
    """The spec's scoring against the random null model (the headline labels)."""
    return replace(s.scoring, baseline="random")


def null_checkpoints(s: StudySpec) -> list[tuple[str, int, int]]:
    """The checkpoints of the random-null sweeps: every initialisation of both regimes at the final epoch, as
    ``(regime, init, epoch)``."""
    return [(regime, init, s.final_of(regime)) for regime in s.regimes for init in s.inits_of(regime)]


def probed_regimes(s: StudySpec) -> tuple[str, ...]:
    """The regimes the probes (ablation, re-initialisation) cover: those trained here (they read this package's
    checkpoints, and the re-initialisation the epoch-0 one)."""
    return tuple(regime for regime in s.regimes if not s.source(regime))


def null_config(s: StudySpec, at: Place, regime: str, init: int, eps: float | None = None) -> StudyConfig:
    """The random-null sweep of one final-epoch checkpoint: high-pass, local, every layer, on the quantile grid with
    ``null.masks`` masks, at ``eps`` (default the eps its high-pass study calibrated; the common eps gives its own
    files), sequential when the spec says so."""
    final = s.final_of(regime)
    eps = checkpoint_eps(s, at, regime, init, final) if eps is None else eps
    sequential = Sequential(null_scoring(s), looks=s.null.looks) if s.null.sequential else None
    return study_config(s, at, regime, attack=FGSM(eps), calibrate_eps=None, inits=(init,), epochs=(final,),
                        kinds=("highpass",), scopes=("local",), grid="quantile", random_baseline=True,
                        null_masks=s.null.masks, sequential=sequential)


def run_null_sweeps(s: StudySpec, at: Place) -> None:
    """The random-null sweeps of every final-epoch checkpoint, then Init_1 of both regimes at the common eps."""
    for regime, init, _ in null_checkpoints(s):
        run_study(null_config(s, at, regime, init))
    for regime in s.regimes:
        run_study(null_config(s, at, regime, 1, s.null.common_eps))


def ablation_config(s: StudySpec, at: Place, regime: str, init: int) -> ProbeConfig:
    """The whole-layer ablation of one final-epoch checkpoint at the eps its high-pass study calibrated."""
    return replace(probe_config(s, at, regime, init, s.train.epochs), kind="ablate")


def run_ablations(s: StudySpec, at: Place) -> dict[tuple[str, int, int], Path]:
    """Ablate every layer of every final-epoch checkpoint trained here; their result files by ``(regime, init,
    epoch)``."""
    return {key: run_probes(ablation_config(s, at, key[0], key[1]))[0] for key in ablated(s)}


def ablated(s: StudySpec) -> list[tuple[str, int, int]]:
    """The checkpoints of the ablation, as ``(regime, init, epoch)``: the random-null sweeps' of
    :func:`probed_regimes`."""
    return [key for key in null_checkpoints(s) if key[0] in probed_regimes(s)]


def deal_ablations(s: StudySpec, at: Place) -> None:
    """The ablation step: under torchrun each process ablates its share of the checkpoints (round-robin)."""
    for regime, init, _ in shard(ablated(s)):
        run_probes(ablation_config(s, at, regime, init))


def check_config(s: StudySpec, at: Place, regime: str) -> StudyConfig:
    """The settings check of ``regime``: its final Init_1 checkpoint studied as a model from elsewhere (so its files
    lie apart from the main study's) over the check's layers, thresholds and BatchNorm images, on the same images,
    its eps calibrated to the same target on the same held-out images (with its own BatchNorm images: the check
    compares the whole setting). A model from elsewhere is its own source, its check in a folder of its own."""
    root, source = at.regime_root(regime), s.source(regime)
    if source is None:
        source = str(paths.checkpoint_path(s.train.arch, s.train.dataset, 1, s.train.epochs, root))
    else:
        root = str(Path(root) / CHECK_FOLDER)
    return study_config(s, at, regime, inits=None, epochs=None, source=source, layers=s.check.layers,
                        thresholds=s.check.thresholds, bn_images=s.check.bn_images, models_root=root)


def run_checks(s: StudySpec, at: Place) -> None:
    """The settings check of both regimes."""
    for regime in s.regimes:
        run_study(check_config(s, at, regime))


def probe_config(s: StudySpec, at: Place, regime: str, init: int, epoch: int) -> ProbeConfig:
    """The re-initialisation probe of one checkpoint at the eps its high-pass study calibrated."""
    eps = checkpoint_eps(s, at, regime, init, epoch)
    study = study_config(s, at, regime, attack=FGSM(eps), calibrate_eps=None, inits=(init,), epochs=(epoch,))
    return ProbeConfig(study, "reinit")


def run_all_probes(s: StudySpec, at: Place) -> dict[tuple[str, int, int], Path]:
    """Probe every swept checkpoint of both regimes; their result files by ``(regime, init, epoch)``."""
    return {key: run_probes(probe_config(s, at, *key))[0] for key in probed(s)}


def probed(s: StudySpec) -> list[tuple[str, int, int]]:
    """The checkpoints of the re-initialisation probe, as ``(regime, init, epoch)``: every swept one of
    :func:`probed_regimes`."""
    return [(regime, init, epoch) for regime in probed_regimes(s) for init in s.inits_of(regime)
            for epoch in s.epochs_of(regime)]


def deal_probes(s: StudySpec, at: Place) -> None:
    """The probe step: under torchrun each process probes its share of the swept checkpoints (round-robin)."""
    for key in shard(probed(s)):
        run_probes(probe_config(s, at, *key))


def retraining_study(s: StudySpec, at: Place, score: Score) -> RetrainingStudy:
    """Selective retraining of the standard regime's final Init_1, the layers chosen by the ``score`` labels every
    initialisation agrees on (its own figure goes to the run's scratch plots; the page draws its own)."""
    return replace(s.retraining, score=score, scoring=s.scoring, epoch=s.train.epochs, test_subset=s.sweep.subset,
                   attack_tag=attack_tag(study_config(s, at, paths.STANDARD)), device=at.device,
                   models_root=at.models_root, data_root=at.data_root, plots_root=str(at.plots))


def retrained_scores(s: StudySpec) -> tuple[Score, ...]:
    """The scores whose labels choose layers to retrain: the spec's, none when the standard regime is a model from
    elsewhere (retraining continues this package's training of its checkpoint)."""
    return () if s.source(paths.STANDARD) else s.retrain_scores


def run_retraining(s: StudySpec, at: Place) -> dict[str, list[dict[str, Any]]]:
    """The selective-retraining comparisons, by score (their rows; resumable run by run)."""
    return {score: run_comparison(retraining_study(s, at, score))[0] for score in retrained_scores(s)}
