"""The computing steps of the findings run, each resumable: what a step finds written it reads back.

Every step calls the toolkit's own commands' functions (training, sweeps, re-check, probe,
retraining) with the settings of :class:`robustness.findings.settings.FindingsSettings`; the
page is made from the files they write (:mod:`robustness.findings.collect`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from .. import paths
from ..attacks import FGSM
from ..errors import DataNotFoundError
from ..probes import ProbeConfig, run_probes
from ..retraining import RetrainingStudy, run_comparison
from ..scoring import Scoring
from ..study import StudyConfig, attack_tag, recheck_study, recorded_eps, run_study
from ..training import TrainConfig, train
from ..vocab import Score
from .settings import FindingsSettings


def scoring(s: FindingsSettings) -> Scoring:
    """How every score of the run is computed: the density baseline, ``tau``, paired bootstrap intervals."""
    return Scoring(tau=s.tau, n_boot=s.n_boot, seed=s.seed)


def train_models(s: FindingsSettings) -> None:
    """Train what is missing: ``arch`` standard and adversarially, and ``depth_arch`` standard, with a checkpoint
    at every epoch (epoch 0 too: the re-initialisation probe's reference)."""
    common = dict(dataset=s.dataset, inits=s.inits, epochs=s.epochs, subset=s.train_subset, seed=s.seed,
                  device=s.device, models_root=s.models_root)
    train(TrainConfig(arch=s.arch, **common))
    train(TrainConfig(arch=s.arch, adv=s.adv, **common))
    if s.depth_arch != s.arch:
        train(TrainConfig(arch=s.depth_arch, **common))


def study_config(s: FindingsSettings, regime: str, **changes: Any) -> StudyConfig:
    """The high-pass local study of ``regime``: every initialisation at the swept epochs, FGSM with eps calibrated
    per checkpoint to ``target_adv_acc`` on held-out test images, BatchNorm re-estimated at every threshold."""
    config = StudyConfig(
        attack=FGSM(0.1), arch=s.arch, dataset=s.dataset, inits=tuple(range(1, s.inits + 1)),
        epochs=s.swept_epochs, kinds=("highpass",), scopes=("local",), thresholds=s.thresholds,
        subset=s.eval_subset, seed=s.seed, calibrate_eps=s.target_adv_acc, eps_images=s.eps_images,
        bn="recalibrate", bn_images=s.bn_images, channels_last=True, device=s.device,
        models_root=s.regime_root(regime))
    return replace(config, **changes)


def depth_config(s: FindingsSettings) -> StudyConfig:
    """The study of ``depth_arch`` (standard) at its final epoch, for the normalised-depth comparison."""
    return study_config(s, paths.STANDARD, arch=s.depth_arch, epochs=(s.epochs,))


def run_sweeps(s: FindingsSettings) -> None:
    """Every sweep of the run: high-pass over every layer of every initialisation at both epochs in both regimes,
    low-pass at the final epoch of ``lowpass_inits``, and the depth architecture's high-pass."""
    for regime in s.regimes:
        run_study(study_config(s, regime))
        run_study(study_config(s, regime, kinds=("lowpass",), inits=s.lowpass_inits, epochs=(s.epochs,)))
    if s.depth_arch != s.arch:
        run_study(depth_config(s))


def checkpoint_eps(s: FindingsSettings, regime: str, init: int, epoch: int) -> float:
    """The eps the high-pass study calibrated for a checkpoint (read from its result files)."""
    eps = recorded_eps(study_config(s, regime), init, epoch)
    if eps is None:
        raise DataNotFoundError(f"the {regime} Init_{init} epoch {epoch} checkpoint has no sweep yet: run the "
                                f"findings command (its sweep step) first")
    return float(eps)


def check_config(s: FindingsSettings, regime: str) -> StudyConfig:
    """The settings check of ``regime``: its final Init_1 checkpoint studied as a model from elsewhere (so its files
    lie apart from the main study's) over ``check_layers`` with ``check_thresholds`` thresholds and
    ``check_bn_images`` BatchNorm images, on the same images, its eps calibrated to the same target on the same
    held-out images (with its own BatchNorm images: the check compares the whole setting)."""
    source = paths.checkpoint_path(s.arch, s.dataset, 1, s.epochs, s.regime_root(regime))
    return study_config(s, regime, inits=None, epochs=None, source=str(source), layers=s.check_layers,
                        thresholds=s.check_thresholds, bn_images=s.check_bn_images)


def run_checks(s: FindingsSettings) -> None:
    """The settings check of both regimes."""
    for regime in s.regimes:
        run_study(check_config(s, regime))


def run_rechecks(s: FindingsSettings) -> list[dict[str, Any]]:
    """The PGD re-check of every layer FGSM calls robust or antifragile at the final epoch of ``recheck_inits``,
    in both regimes; one row per layer, with its regime."""
    rows = []
    for regime in s.regimes:
        found = recheck_study(study_config(s, regime), steps=s.recheck_steps, restarts=s.recheck_restarts,
                              scoring=scoring(s), checkpoints=[(i, s.epochs) for i in s.recheck_inits])
        rows += [{"regime": regime, **row} for row in found]
    return rows


def probe_config(s: FindingsSettings, regime: str, init: int, epoch: int) -> ProbeConfig:
    """The re-initialisation probe of one checkpoint at the eps its high-pass study calibrated."""
    eps = checkpoint_eps(s, regime, init, epoch)
    study = study_config(s, regime, attack=FGSM(eps), calibrate_eps=None, inits=(init,), epochs=(epoch,))
    return ProbeConfig(study, "reinit")


def run_all_probes(s: FindingsSettings) -> dict[tuple[str, int, int], Path]:
    """Probe every swept checkpoint of both regimes; their result files by ``(regime, init, epoch)``."""
    return {(regime, init, epoch): run_probes(probe_config(s, regime, init, epoch))[0]
            for regime in s.regimes for init in range(1, s.inits + 1) for epoch in s.swept_epochs}


def retraining_study(s: FindingsSettings, score: Score) -> RetrainingStudy:
    """Selective retraining of the standard regime's final Init_1, the layers chosen by the ``score`` labels every
    initialisation agrees on (its own figure goes to the run's scratch plots; the page draws its own)."""
    return RetrainingStudy(
        s.arch, s.dataset, "highpass", score, inits=(1,), epoch=s.epochs,
        attack_tag=attack_tag(study_config(s, paths.STANDARD)), scoring=scoring(s), seeds=s.retrain_seeds,
        random_sets=s.retrain_random_sets, subset=s.retrain_subset, test_subset=s.eval_subset,
        pgd_steps=s.retrain_pgd_steps, seed=s.seed, device=s.device, models_root=s.models_root,
        plots_root=str(Path(s.models_root) / "plots"))


def run_retraining(s: FindingsSettings) -> dict[str, list[dict[str, Any]]]:
    """The selective-retraining comparisons, by score (their rows; resumable run by run)."""
    return {score: run_comparison(retraining_study(s, score))[0] for score in s.retrain_scores}
