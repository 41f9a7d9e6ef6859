"""Synaptic-filtering sweeps and studies: one import for all of it.

The work is split by concern: :mod:`robustness.analysis` sweeps one model
(:func:`local_analysis`, :func:`global_analysis`), :mod:`robustness.results` holds what a
sweep records and reads and writes result files, :mod:`robustness.batchnorm` re-estimates
BatchNorm statistics, :mod:`robustness.plan` says what a study covers and where its files
go (:class:`StudyConfig`), and :mod:`robustness.study` runs it over many checkpoints
(:func:`run_study`, :func:`run_recheck`). Every public name of those modules is importable
from here.
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
from .plan import (
    BN_MODES,
    RECHECK,
    SCOPES,
    StudyConfig,
    StudyData,
    StudyPlan,
    Unit,
    attack_params,
    attack_tag,
    checkpoints,
    evaluation_set,
    is_done,
    load_model,
    make_plan,
    plan_units,
    result_path,
    split_test_images,
    study_data,
    unit_path,
    with_eps,
)
from .results import Evaluation, SweepResult, load_results, outcomes_path, save_results
from .study import (
    CheckpointRun,
    checkpoint_eps,
    checkpoint_epsilons,
    merge_results,
    run_recheck,
    run_study,
    run_unit,
    run_units,
)

__all__ = [
    "BN_MODES", "DEFAULT_BATCH", "RECHECK", "SCOPES", "Attack", "Calibration", "CheckpointRun", "EvalData",
    "Evaluation", "StudyConfig", "StudyData", "StudyPlan", "SweepResult", "Unit", "attack_params", "attack_tag",
    "batchnorm_layers", "checkpoint_eps", "checkpoint_epsilons", "checkpoints", "evaluate", "evaluation_set",
    "global_analysis", "is_done", "load_model", "load_results", "local_analysis", "make_plan", "measure_reference",
    "merge_results", "null_ranks", "outcomes_path", "plan_units", "preserved_batchnorm", "recalibrate_batchnorm",
    "result_path", "run_recheck", "run_study", "run_unit", "run_units", "save_results", "select_layers",
    "split_test_images", "study_data", "unit_path", "with_eps",
]
