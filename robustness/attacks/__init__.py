"""Attacks and robustness evaluation: the norm geometry every attack uses (``norms``), FGSM and PGD
(``gradient``), APGD via torchattacks (``apgd``), attacks by name (``registry``), clean and adversarial
accuracy over a loader and eps calibration (``evaluation``).

To add an attack: a module here built on ``norms``, and its name in ``registry.make_attack``.
"""

from .apgd import APGD
from .evaluation import accuracy, calibrate_eps, eps_sweep, evaluate, intervals
from .figures import plot_eps_sweep
from .gradient import FGSM, PGD, fgsm, pgd
from .norms import GEOMETRIES, check_batch, check_labels, geometry
from .registry import Attack, make_attack

__all__ = [
    "APGD", "evaluate", "intervals", "accuracy", "eps_sweep", "calibrate_eps", "plot_eps_sweep", "FGSM", "PGD",
    "fgsm", "pgd", "GEOMETRIES", "geometry", "check_batch", "check_labels", "Attack", "make_attack",
]
