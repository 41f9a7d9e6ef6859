"""An honest robustness report: the per-example worst case over PGD, APGD-CE, APGD-DLR and Square.

Every member attacks every test image on its own (:func:`ensemble_outcomes`), so each member's
accuracy is measured as well as the worst case: an image counts as robust only if the model
classifies it correctly clean and under every member. :func:`ensemble_report` gives each
accuracy with its Wilson interval and checks for gradient masking.

**The gradient-masking rule.** Square (:mod:`robustness.attacks.square`) uses no gradient, so a white-box
member (PGD, APGD-CE, APGD-DLR) should do at least as well as it; where a white-box member leaves
the model *more* accurate than Square does, its gradients mislead it. On the same images the two
accuracies are paired: with ``b`` images robust under the member but broken by Square and ``c`` the
other way round, the difference is ``(b - c) / n``, and without a real difference ``b - c`` varies by
about ``sqrt(b + c)`` (McNemar's test). The member is flagged when ``b - c - 1 > 2 * sqrt(b + c)``:
the difference, less one image (the continuity correction), exceeds two standard errors
``sqrt(b + c) / n``, i.e. lies beyond the noise of ``n`` images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ..runtime import frozen_eval, model_device, progress
from ..stats import wilson_interval
from .apgd import APGD
from .norms import Norm, check_count, check_number, geometry
from .registry import Attack, make_attack
from .square import Square

WHITE_BOX = ("pgd", "apgd-ce", "apgd-dlr")
MEMBERS = (*WHITE_BOX, "square")
MASKING_SE = 2.0  # a white-box member above Square by more than this many standard errors is flagged


@dataclass(frozen=True)
class Ensemble:
    """The four attacks at one ``eps`` and ``norm``: PGD (``pgd_steps`` steps of 2.5 eps / steps,
    ``pgd_restarts`` random starts), APGD-CE and APGD-DLR (``apgd_steps`` iterations each) and Square
    (``square_queries`` queries); every random draw seeded by ``seed``."""

    eps: float
    norm: Norm = "linf"
    pgd_steps: int = 20
    pgd_restarts: int = 1
    apgd_steps: int = 100
    square_queries: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        check_number("eps", self.eps)
        geometry(self.norm)
        for name in ("pgd_steps", "pgd_restarts", "apgd_steps", "square_queries"):
            check_count(name, getattr(self, name), 1)
        check_count("seed", self.seed, 0)

    @property
    def tag(self) -> str:
        """A file-name-safe label, e.g. ``ensemble-linf_eps0.1``."""
        return f"ensemble-{self.norm}_eps{self.eps:g}"

    def members(self) -> dict[str, Attack | Square]:
        """The attacks by name, in the order of :data:`MEMBERS`."""
        return {
            "pgd": make_attack("pgd", self.eps, steps=self.pgd_steps, norm=self.norm, restarts=self.pgd_restarts,
                               seed=self.seed),
            "apgd-ce": APGD(self.eps, self.norm, self.apgd_steps, ("ce",), seed=self.seed),
            "apgd-dlr": APGD(self.eps, self.norm, self.apgd_steps, ("dlr",), seed=self.seed),
            "square": Square(self.eps, self.norm, self.square_queries, seed=self.seed),
        }


def batch_outcomes(model: nn.Module, x: Tensor, y: Tensor, ensemble: Ensemble) -> dict[str, Tensor]:
    """Per example of one batch: correct on the clean image (``clean``), under each member, and under all
    of them (``worst``)."""
    found: dict[str, Tensor] = {}
    for name, attack in progress(ensemble.members().items(), f"{ensemble.tag}: {', '.join(MEMBERS)}"):
        x_adv, clean_logits = attack.with_clean_logits(model, x, y)
        with torch.no_grad():
            found[name] = model(x_adv).argmax(1) == y
        found.setdefault("clean", clean_logits.argmax(1) == y)
    worst = found["clean"].clone()
    for name in MEMBERS:
        worst &= found[name]
    return {"clean": found["clean"], **{name: found[name] for name in MEMBERS}, "worst": worst}


def ensemble_outcomes(model: nn.Module, loader: DataLoader, ensemble: Ensemble) -> dict[str, np.ndarray]:
    """:func:`batch_outcomes` over ``loader``, as boolean arrays of one entry per image."""
    device = model_device(model)
    parts: dict[str, list[np.ndarray]] = {}
    with frozen_eval(model):
        for x_cpu, y_cpu in progress(loader, f"{ensemble.tag}: batches", total=len(loader)):
            x, y = x_cpu.to(device), torch.as_tensor(y_cpu).to(device)
            for name, ok in batch_outcomes(model, x, y, ensemble).items():
                parts.setdefault(name, []).append(ok.cpu().numpy())
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def masking_gap(white: np.ndarray, square: np.ndarray) -> tuple[float, float]:
    """The paired difference ``acc(white) - acc(square)`` of two outcome arrays on the same images and its
    standard error when there is no real difference, ``sqrt(b + c) / n`` (McNemar's)."""
    n = len(white)
    b = int(np.sum(white & ~square))
    c = int(np.sum(~white & square))
    return (b - c) / n, math.sqrt(b + c) / n


def ensemble_report(outcomes: dict[str, np.ndarray], ci: float = 0.95) -> list[dict[str, Any]]:
    """One row per accuracy (clean, each member, worst case): ``accuracy`` with its Wilson interval, and
    for each white-box member the gap above Square, its standard error and the gradient-masking flag
    (the rule in the module docstring)."""
    n = len(outcomes["clean"])
    rows = []
    for name in ("clean", *MEMBERS, "worst"):
        correct = int(outcomes[name].sum())
        lo, hi = wilson_interval(correct, n, ci)
        row: dict[str, Any] = {"attack": name, "accuracy": correct / max(n, 1), "lo": lo, "hi": hi, "n": n,
                               "above_square": "", "se": "", "masking": ""}
        if name in WHITE_BOX:
            gap, se = masking_gap(outcomes[name], outcomes["square"])
            masked = gap - 1 / n > MASKING_SE * se  # continuity-corrected McNemar at about 2 sigma
            row |= {"above_square": gap, "se": se, "masking": "POSSIBLE" if masked else "no"}
        rows.append(row)
    return rows


def masking_flag(rows: list[dict[str, Any]]) -> str | None:
    """The warning a report's rows call for, or ``None``: which white-box members lie above Square."""
    flagged = [row["attack"] for row in rows if row["masking"] == "POSSIBLE"]
    if not flagged:
        return None
    return (f"possible gradient masking: {', '.join(flagged)} leave(s) the model more accurate than the "
            f"gradient-free Square attack by more than {MASKING_SE:g} standard errors; trust the worst case, "
            "not a white-box number")
