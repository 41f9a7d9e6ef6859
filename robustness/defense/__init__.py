"""The defensive perturbation: the algorithm (``perturbation``), its honest evaluation (``evaluation``),
what the evaluation reports (``report``), defended data sets (``data``) and the t-SNE figure (``figures``).
"""

from .data import defend_splits, load_defended, load_or_train, save_defended, tsne_figure
from .evaluation import DefenseEvaluation, defense_table, evaluate_defense, threat_images, undefended_images
from .figures import plot_tsne
from .perturbation import Defense, StraightThrough, defensive_perturbation
from .report import (
    ATTACKED_ROWS,
    ROWS,
    UNDEFENDED_ROWS,
    WHITE_BOX_ROWS,
    defense_figure,
    distance_bounds,
    format_results,
    per_example_worst_case,
    result_rows,
    summarise_defense,
)
from .square import DefendedClassifier, square_through_defense

__all__ = [
    "save_defended", "load_defended", "defend_splits", "tsne_figure", "load_or_train", "undefended_images",
    "threat_images", "defense_table", "evaluate_defense", "DefenseEvaluation", "plot_tsne", "Defense",
    "defensive_perturbation", "StraightThrough", "ROWS", "ATTACKED_ROWS", "UNDEFENDED_ROWS", "per_example_worst_case",
    "distance_bounds", "summarise_defense", "result_rows", "format_results", "defense_figure", "WHITE_BOX_ROWS",
    "DefendedClassifier", "square_through_defense",
]
