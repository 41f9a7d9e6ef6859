"""Attacks by name: :func:`make_attack` builds any attack of the package from its name and budget.

As a reusable, file-nameable object::

    attack = make_attack("pgd", eps=2.0, alpha=0.25, steps=10, norm="l2")
    x_adv = attack(model, x, y)          # attack.tag == "pgd-l2_eps2_a0.25_k10"
    strong = make_attack("apgd", eps=8/255)  # APGD-CE and APGD-DLR, 100 iterations each
"""

from __future__ import annotations

from collections.abc import Callable
from typing import get_args

from torch import Tensor, nn

from ..errors import InvalidArgument
from ..vocab import ATTACKS, AttackName, Norm
from .apgd import APGD, ApgdLoss
from .gradient import FGSM, PGD
from .norms import check_count, check_number

# Any attack: called as ``x_adv = attack(model, x, y)`` (every attack of this package, and torchattacks-style ones).
Attack = Callable[[nn.Module, Tensor, Tensor], Tensor]


def make_attack(
    name: AttackName,
    eps: float,
    alpha: float | None = None,
    steps: int | None = None,
    *,
    norm: Norm = "linf",
    random_start: bool = True,
    restarts: int = 1,
    seed: int = 0,
) -> FGSM | PGD | APGD:
    """An attack by name.

    PGD: ``steps`` defaults to 10 and ``alpha`` to ``2.5 * eps / steps`` (Madry et al.). APGD
    (``"apgd"``: CE and DLR, worst case per example; ``"apgd-ce"``, ``"apgd-dlr"``: one loss):
    ``steps`` defaults to 100; it sets its own step size and always starts at a random point, so
    ``alpha`` and ``random_start=False`` are errors.
    """
    if name == "fgsm":
        if norm != "linf":
            raise InvalidArgument(f"FGSM is an L∞ attack, got norm={norm!r}: use pgd or apgd for the L2 norm")
        return FGSM(eps)
    if name == "pgd":
        steps = 10 if steps is None else steps
        check_count("steps", steps, 1)
        check_number("eps", eps)
        alpha = 2.5 * eps / steps if alpha is None else alpha
        return PGD(eps, alpha, steps, norm, random_start, restarts, seed)
    if name in ("apgd", "apgd-ce", "apgd-dlr"):
        if alpha is not None or not random_start:
            raise InvalidArgument("APGD adapts its own step size from a random start: drop alpha / random_start")
        losses = get_args(ApgdLoss) if name == "apgd" else (name.removeprefix("apgd-"),)
        return APGD(eps, norm, 100 if steps is None else steps, losses, restarts, seed)
    raise InvalidArgument(f"unknown attack {name!r}: use one of {', '.join(ATTACKS)}")
