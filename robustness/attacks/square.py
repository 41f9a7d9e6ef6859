"""The Square attack (Andriushchenko et al., 2020), run by torchattacks: the black-box check of an evaluation.

Square needs no gradient: it queries the model's logits at random square-shaped perturbations of
the eps-ball's vertices (L∞) or of localised L2 bumps, and keeps a change when it lowers the margin
loss (the true logit minus the largest other). Gradient masking (shattered, vanishing or noisy
gradients) blinds PGD and APGD but not Square, so a model that white-box attacks leave more
accurate than Square does is not robust, only hard to differentiate: the ensemble report
(:mod:`robustness.attacks.ensemble`) flags it. The queries are torchattacks' (the reference
implementation's port); this module wraps them in the package's interface, as :mod:`robustness.attacks.apgd`
does APGD: model frozen and restored, inputs checked, caller's random state kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..runtime import frozen_eval, progress_bar
from .norms import Norm, check_batch, check_count, check_labels, check_number, geometry, run_suffix


@dataclass(frozen=True)
class Square:
    """Square attack with the margin loss in the L∞ or L2 ball: ``queries`` model queries per image and
    restart (at least 1,000 for an honest number; 5,000 is the reference's default), ``p_init`` the initial
    fraction of pixels a square covers, random draws seeded by ``seed``. Images the model already gets
    wrong keep the clean image; so do those the attack does not fool."""

    eps: float
    norm: Norm = "linf"
    queries: int = 1000
    restarts: int = 1
    p_init: float = 0.8
    seed: int = 0

    def __post_init__(self) -> None:
        check_number("eps", self.eps)
        check_count("queries", self.queries, 1)
        check_count("restarts", self.restarts, 1)
        check_count("seed", self.seed, 0)
        check_number("p_init", self.p_init)
        geometry(self.norm)

    @property
    def tag(self) -> str:
        """A file-name-safe label, e.g. ``square-linf_eps0.1_q1000``."""
        return f"square-{self.norm}_eps{self.eps:g}_q{self.queries}" + run_suffix(self.restarts, self.seed)

    def with_clean_logits(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(x_adv, clean_logits)``; the clean logits come from one forward pass before the attack."""
        x, y = check_batch(model, x, y)
        with frozen_eval(model):
            with torch.no_grad():
                clean_logits = check_labels(model(x), y)
            if self.eps == 0:
                return x.clone(), clean_logits
            return self._run(model, x, y), clean_logits

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """The adversarial images (``x`` itself for an empty batch)."""
        if len(x) == 0:
            return x.detach().clone()
        return self.with_clean_logits(model, x, y)[0]

    def _run(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """torchattacks' Square on a checked batch (model frozen), with a progress bar over its queries. It
        reseeds the global generators with ``seed``, so their state is forked and restored around it."""
        import torchattacks  # noqa: PLC0415 (imported on first use: it is slow to import)

        with progress_bar(f"square {self.norm} eps {self.eps:g}: queries", self.queries * self.restarts) as bar:
            attack = torchattacks.Square(_Counted(model, bar), norm={"linf": "Linf", "l2": "L2"}[self.norm],
                                         eps=self.eps, n_queries=self.queries, n_restarts=self.restarts,
                                         p_init=self.p_init, loss="margin", seed=self.seed)
            with torch.no_grad(), torch.random.fork_rng(devices=range(torch.cuda.device_count())):
                return attack(x, y)


class _Counted(nn.Module):
    """``model`` with each forward pass counted on ``bar``: Square makes one query of the batch per pass (and
    one first pass per restart, which the bar's total leaves out)."""

    def __init__(self, model: nn.Module, bar: Any):
        super().__init__()
        self.model, self.bar = model, bar
        self.training = model.training  # torchattacks reads the mode and restores it: it must see the model's

    def forward(self, x: Tensor) -> Tensor:
        """The model's logits; one more query on the bar."""
        self.bar.update(1)
        return self.model(x)
