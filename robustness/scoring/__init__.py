"""Scores and labels of the sweeps: the score formula and its intervals (``scores``), tables over
layers, epochs and initialisations (``tables``), invariance across initialisations, epochs or sets
(``compare``), consensus scores over initialisations with seed-level intervals and agreement over layers
(``consensus``), sequential evaluation's stopping rule (``sequential``) and the score figures (``figures``).

To change the score formula: ``scores``.
"""

from .compare import (
    Comparison,
    Scores,
    binned_sets,
    checkpoint_scores,
    compare,
    named_set,
    rank_correlation,
    study_sets,
)
from .consensus import (
    KAPPA_UNDEFINED,
    consensus_scores,
    image_draws,
    image_p_values,
    label_agreement,
    layer_consensus,
    score_correlation,
)
from .figures import LABEL_COLOURS, attack_label, plot_comparison, plot_score_bars, plot_score_heatmaps, plot_scores
from .regimes import (
    RegimeComparison,
    calibration_target,
    check_same_images,
    compare_regimes,
    plot_regimes,
    regime_of,
    regime_result,
)
from .scores import (
    CONFIDENT,
    DEFAULT_SCORING,
    Scoring,
    consensus,
    consensus_labels,
    describe,
    filtering_scores,
    integrate,
    interval_label,
    interval_labels,
    label,
    layer_scores,
    look_scoring,
    outcomes,
    score_intervals,
)
from .sequential import Sequential
from .tables import (
    CHECKPOINT,
    ScoresTable,
    build_tables,
    read_table,
    save_table,
    score_study,
    scores_frame,
    study_tables,
)

__all__ = [
    "Comparison", "compare", "rank_correlation", "checkpoint_scores", "named_set", "study_sets", "binned_sets",
    "Scores", "attack_label", "plot_score_heatmaps", "LABEL_COLOURS", "plot_score_bars", "plot_scores",
    "plot_comparison", "compare_regimes", "RegimeComparison", "regime_result", "plot_regimes", "regime_of",
    "check_same_images", "calibration_target", "label", "interval_label", "outcomes", "describe", "integrate",
    "filtering_scores", "layer_scores", "consensus", "consensus_labels", "CONFIDENT", "Scoring", "DEFAULT_SCORING",
    "CHECKPOINT", "ScoresTable", "build_tables", "study_tables", "score_study", "scores_frame", "save_table",
    "read_table", "consensus_scores", "layer_consensus", "image_draws", "image_p_values", "label_agreement",
    "score_correlation", "KAPPA_UNDEFINED", "Sequential", "look_scoring", "score_intervals", "interval_labels",
]
