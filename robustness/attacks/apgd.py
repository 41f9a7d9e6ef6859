"""APGD (Croce & Hein, 2020): APGD-CE and APGD-DLR, run by torchattacks, worst case per example.

APGD is PGD with a step size that adapts itself (halved when the loss stops improving, with
momentum), so it needs no ``alpha`` and is much harder to under-tune than PGD; with the DLR
loss, which is invariant to the scale of the logits, it also resists the gradient masking
that makes cross-entropy attacks look weak. It is the strong attack of an honest evaluation.
The iterations are torchattacks' (the reference implementation's port); this module wraps
them in the package's interface (:class:`APGD` is called like :class:`~robustness.attacks.gradient.PGD`)
and its guarantees: model frozen and restored, inputs checked, caller's random state kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from ..errors import InvalidArgument
from ..runtime import frozen_eval
from ..vocab import Norm
from .norms import check_batch, check_count, check_labels, check_number, geometry, run_suffix

ApgdLoss = Literal["ce", "dlr"]

_LOSSES: tuple[ApgdLoss, ...] = ("ce", "dlr")


@dataclass(frozen=True)
class APGD:
    """Auto-PGD (Croce & Hein, 2020) with the cross-entropy (``"ce"``) and the difference-of-logits-ratio
    (``"dlr"``) loss, in the L∞ or L2 ball; the per-example worst case over ``losses``.

    Each loss is one run of torchattacks' ``APGD`` (``steps`` iterations, ``restarts`` restarts, its
    own step-size schedule, random start seeded by ``seed``). An image counts as robust only if every
    loss leaves it correctly classified: the returned image is the first loss's adversarial image
    that fools the model, or ``x`` itself where none does (and where the clean image is already
    misclassified). The losses after the first attack only the images still correctly classified.
    DLR needs at least 3 classes. The caller's random state is left as found.
    """

    eps: float
    norm: Norm = "linf"
    steps: int = 100
    losses: tuple[ApgdLoss, ...] = _LOSSES
    restarts: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        check_number("eps", self.eps)
        check_count("steps", self.steps, 1)
        check_count("restarts", self.restarts, 1)
        check_count("seed", self.seed, 0)
        geometry(self.norm)
        if not self.losses or len(set(self.losses)) != len(self.losses) or set(self.losses) - set(_LOSSES):
            raise InvalidArgument(f"losses must be distinct names from {_LOSSES}, got {self.losses!r}")

    @property
    def tag(self) -> str:
        """A file-name-safe label, e.g. ``apgd-linf_eps0.03_k100`` (``apgd-ce-linf...`` for one loss)."""
        name = "apgd" if len(self.losses) == len(_LOSSES) else "-".join(("apgd", *self.losses))
        return f"{name}-{self.norm}_eps{self.eps:g}_k{self.steps}" + run_suffix(self.restarts, self.seed)

    def with_clean_logits(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(x_adv, clean_logits)``; the clean logits come from one forward pass before the attack."""
        x, y = check_batch(model, x, y)
        with frozen_eval(model):
            with torch.no_grad():
                clean_logits = check_labels(model(x), y)
            if "dlr" in self.losses and clean_logits.shape[1] < 3:
                raise InvalidArgument(
                    f"the DLR loss compares the three largest logits, but the model has {clean_logits.shape[1]} "
                    "classes: use losses=('ce',) (make_attack('apgd-ce', ...))"
                )
            best, fooled = x.clone(), clean_logits.argmax(1) != y
            if self.eps == 0:
                return best, clean_logits
            for loss in self.losses:
                todo = (~fooled).nonzero().squeeze(1)
                if len(todo) == 0:
                    break
                x_adv = self._run(model, x[todo], y[todo], loss)
                with torch.no_grad():
                    now_fooled = model(x_adv).argmax(1) != y[todo]
                best[todo[now_fooled]] = x_adv[now_fooled]
                fooled[todo] = now_fooled
            return best, clean_logits

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """The adversarial images."""
        return self.with_clean_logits(model, x, y)[0]

    def _run(self, model: nn.Module, x: Tensor, y: Tensor, loss: ApgdLoss) -> Tensor:
        """torchattacks' APGD with one loss on a checked batch (model frozen). It reseeds the global
        generators with ``seed``, so their state is forked and restored around it."""
        import torchattacks  # noqa: PLC0415 (imported on first use: it is slow to import)

        attack = torchattacks.APGD(model, norm={"linf": "Linf", "l2": "L2"}[self.norm], eps=self.eps,
                                   steps=self.steps, n_restarts=self.restarts, seed=self.seed, loss=loss)
        with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
            return attack(x, y)
