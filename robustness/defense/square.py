"""Square (Andriushchenko et al., 2020), the query-only member of the defense evaluation's ensemble.

Square is a random search over square-shaped perturbations at the corners of the eps-ball that
keeps a change only when it lowers the margin ``f_y - max_{k != y} f_k``: it reads the scores
and never a gradient. A defense that works by hiding or scrambling its gradient (gradient
masking) fools every white-box attack but not Square, which is how Croce et al. (2022) broke
test-time defenses of this kind. It runs here in both threat models:

- *preemptive* and on the undefended model: Square on the model, from ``D(x)`` or ``x``;
- *test-time*: Square queries the whole deployed system ``x -> f(D(x))``
  (:class:`DefendedClassifier`), with the defense's own seed, as a user of the deployed system
  would; the row's images are then ``D(x')`` for Square's ``x'``, classified like every other row.

The attack itself is :class:`robustness.attacks.Square` (torchattacks' port of the reference
implementation, with the package's guarantees: model frozen and restored, caller's random state kept);
this module runs it against the deployed system.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..attacks import Square
from .perturbation import Defense, attack_deployed

SQUARE_QUERIES = 1000  # the least that counts as a Square evaluation (AutoAttack runs 5,000)


class DefendedClassifier(nn.Module):
    """The deployed system ``x -> model(defense(x))`` as one classifier, for a query-only attacker.

    The defense runs with ``seed`` (the deployed one), so the scores are exactly what the deployed
    system returns. ``label`` fixes the defense's ``ŷ`` for every image (oracle mode, one true class
    at a time); ``None`` lets a predicted-label defense use the model's prediction.
    """

    def __init__(self, model: nn.Module, defense: Defense, seed: int, label: int | None = None):
        super().__init__()
        self.model, self.defense, self.seed, self.label = model, defense, seed, label

    def forward(self, x: Tensor) -> Tensor:
        """The logits of the defended images."""
        y = None if self.label is None else torch.full((len(x),), self.label, dtype=torch.long, device=x.device)
        return self.model(self.defense(self.model, x, y, self.seed, show_progress=False))


def square_through_defense(
    model: nn.Module, x: Tensor, y: Tensor, defense: Defense, attack: Square, seed: int
) -> Tensor:
    """Square's ``x'`` against the whole pipeline ``x -> model(defense(x))`` (deployed with ``seed``; per class
    in oracle mode)."""
    return attack_deployed(attack, lambda c: DefendedClassifier(model, defense, seed, c), x, y, defense.oracle)
