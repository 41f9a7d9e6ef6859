"""Selective retraining: retraining chosen layers (``selective``), the comparison against matched
random layer sets (``comparison``), its summary (``summary``) and figure (``figures``), and whether a comparison
can tell the chosen layers from random ones (``power``: overlap, stratified random sets, the interval over seeds,
sets and images).
"""

from .comparison import (
    RetrainingResult,
    RetrainingStudy,
    attack_from_meta,
    compare_retraining,
    evaluation_attacks,
    per_image_outcomes,
    retrain_runs,
    retraining_rows,
    run_comparison,
    save_retraining,
)
from .figures import plot_retraining
from .power import (
    MAX_OVERLAP,
    expected_overlap,
    largest_testable_k,
    layer_stages,
    overlap_power,
    power_variants,
    retraining_difference,
    runs_difference,
    stratified_random_sets,
)
from .selective import (
    chosen_parameters,
    labelled_layers,
    layer_sizes,
    matched_random_sets,
    optimizer_slice,
    plan_variants,
    retrain_optimizer,
    selective_retrain,
)
from .summary import format_comparison, summarise

__all__ = [
    "attack_from_meta", "evaluation_attacks", "retrain_runs", "compare_retraining", "run_comparison",
    "RetrainingStudy", "RetrainingResult", "retraining_rows", "save_retraining", "plot_retraining",
    "chosen_parameters", "optimizer_slice", "retrain_optimizer", "selective_retrain", "labelled_layers",
    "layer_sizes", "matched_random_sets", "plan_variants", "summarise", "format_comparison",
    "MAX_OVERLAP", "layer_stages", "stratified_random_sets", "expected_overlap", "largest_testable_k", "overlap_power",
    "retraining_difference", "power_variants", "runs_difference", "per_image_outcomes",
]
