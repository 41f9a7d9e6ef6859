"""Studies over many checkpoints: what a study covers and where its files go (``plan``), the images it
measures on (``images``), the one ``run_study`` (``runner``), the PGD re-check (``recheck``) and the
figures of a scored study (``figures``).
"""

from .figures import plot_study
from .images import StudyData, split_test_images, study_data
from .plan import (
    StudyConfig,
    StudyPlan,
    attack_params,
    attack_tag,
    checkpoints,
    make_plan,
    plan_units,
    recorded_eps,
    result_path,
)
from .recheck import candidates, fgsm_gain, recheck_results, recheck_study
from .runner import merge_results, run_recheck, run_study, run_units

__all__ = [
    "plot_study", "StudyData", "split_test_images", "study_data", "StudyConfig", "StudyPlan", "make_plan",
    "plan_units", "attack_params", "attack_tag", "recorded_eps", "result_path", "checkpoints", "candidates",
    "fgsm_gain", "recheck_study", "recheck_results", "run_units", "merge_results", "run_study", "run_recheck",
]
