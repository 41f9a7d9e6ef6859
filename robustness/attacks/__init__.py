"""Attacks and robustness evaluation: the norm geometry every attack uses (``norms``), FGSM and PGD
(``gradient``), APGD via torchattacks (``apgd``), attacks by name (``registry``), clean and adversarial
accuracy over a loader and eps calibration (``evaluation``).

To add an attack: a module here built on ``norms``, and its name in ``registry.make_attack``.
"""

from .apgd import APGD
from .ensemble import MEMBERS, Ensemble, ensemble_outcomes, ensemble_report, masking_flag, masking_gap
from .evaluation import accuracy, calibrate_eps, eps_sweep, evaluate, intervals
from .figures import plot_eps_sweep
from .gradient import FGSM, PGD, fgsm, pgd
from .norms import GEOMETRIES, check_batch, check_count, check_labels, check_number, geometry
from .registry import Attack, make_attack
from .square import Square

__all__ = [
    "APGD", "Ensemble", "MEMBERS", "ensemble_outcomes", "ensemble_report", "masking_flag", "masking_gap", "evaluate",
    "intervals", "accuracy", "eps_sweep", "calibrate_eps", "plot_eps_sweep", "FGSM", "PGD", "fgsm", "pgd",
    "GEOMETRIES", "geometry", "check_batch", "check_labels", "check_count", "check_number", "Attack", "make_attack",
    "Square",
]
