"""Synaptic filtering: the filters and their threshold grids (``filters``), the sweeps of one model
(``sweeps``: ``local_analysis``, ``global_analysis``), what a sweep records and its files (``results``),
how one point is measured (``points``), BatchNorm re-estimation (``batchnorm``), the reuse of the unfiltered
prefix (``reuse``) and the sweep figures (``figures``).

To add a filter: ``filters``.
"""

from .batchnorm import batchnorm_layers, preserved_batchnorm, recalibrate_batchnorm
from .figures import plot_global_curves, plot_layer_grid
from .filters import (
    AlphaRange,
    apply_filter,
    canonical_kind,
    check_grid,
    filter_mask,
    global_range,
    half_width,
    parse_alpha_range,
    quantile_grid,
    threshold_grid,
    thresholds,
    value_grid,
    weight_range,
)
from .points import DEFAULT_BATCH, StoppingRule, evaluate_point
from .results import (
    FRAME_COLUMNS,
    Evaluation,
    SweepResult,
    file_summary,
    load_result_json,
    load_results,
    outcomes_path,
    save_results,
    to_frame,
)
from .reuse import split_model, trace
from .sweeps import (
    BNImages,
    EvalData,
    global_analysis,
    local_analysis,
    measure_reference,
    null_ranks,
    select_layers,
)

__all__ = [
    "batchnorm_layers", "preserved_batchnorm", "recalibrate_batchnorm", "plot_layer_grid", "plot_global_curves",
    "canonical_kind", "filter_mask", "apply_filter", "threshold_grid", "half_width", "weight_range", "AlphaRange",
    "parse_alpha_range", "global_range", "check_grid", "value_grid", "quantile_grid", "thresholds", "Evaluation",
    "SweepResult", "outcomes_path", "save_results", "load_results", "FRAME_COLUMNS", "to_frame", "file_summary",
    "load_result_json", "trace", "split_model", "DEFAULT_BATCH", "evaluate_point", "null_ranks", "select_layers",
    "measure_reference", "local_analysis", "global_analysis", "BNImages", "EvalData", "StoppingRule",
]
