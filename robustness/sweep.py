"""Synaptic-filtering sweeps and studies (SPEC 4): one import for all of it.

The work is split by concern: :mod:`robustness.analysis` sweeps one model
(:func:`local_analysis`, :func:`global_analysis`), :mod:`robustness.results` holds what a
sweep records and reads and writes result files, :mod:`robustness.batchnorm` re-estimates
BatchNorm statistics, and :mod:`robustness.study` runs a study over many checkpoints
(:class:`StudyConfig`, :func:`run_study`, :func:`run_recheck`). Every public name of those
modules is importable from here.
"""

from .analysis import (
    DEFAULT_BATCH,
    Attack,
    Calibration,
    EvalData,
    evaluate,
    global_analysis,
    local_analysis,
    measure_reference,
    null_ranks,
    select_layers,
)
from .batchnorm import batchnorm_layers, preserved_batchnorm, recalibrate_batchnorm
from .results import Evaluation, SweepResult, load_results, outcomes_path, save_results
from .study import (
    BN_MODES,
    RECHECK,
    SCOPES,
    CheckpointRun,
    StudyConfig,
    StudyData,
    Unit,
    attack_params,
    attack_tag,
    checkpoint_eps,
    checkpoint_epsilons,
    checkpoints,
    evaluation_set,
    is_done,
    load_model,
    merge_results,
    plan_units,
    result_path,
    run_recheck,
    run_study,
    run_unit,
    run_units,
    study_data,
    unit_path,
)

__all__ = [
    "BN_MODES", "DEFAULT_BATCH", "RECHECK", "SCOPES", "Attack", "Calibration", "CheckpointRun", "EvalData",
    "Evaluation", "StudyConfig", "StudyData", "SweepResult", "Unit", "attack_params", "attack_tag",
    "batchnorm_layers", "checkpoint_eps", "checkpoint_epsilons", "checkpoints", "evaluate", "evaluation_set",
    "global_analysis", "is_done", "load_model", "load_results", "local_analysis", "measure_reference", "merge_results",
    "null_ranks", "outcomes_path", "plan_units", "preserved_batchnorm", "recalibrate_batchnorm", "result_path",
    "run_recheck", "run_study", "run_unit", "run_units", "save_results", "select_layers", "study_data", "unit_path",
]
