"""The gradient attacks FGSM and PGD (L∞ and L2), one-line use in torchattacks style::

    x_adv = fgsm(model, x, y, eps=0.1)
    x_adv = pgd(model, x, y, eps=0.3, alpha=0.03, steps=10, norm="linf")

The geometry of each norm (random start, step, projection, size of a perturbation) and the
argument checks live in :mod:`robustness.attacks.norms`, and every attack goes through them. Attacks run
under :func:`robustness.runtime.frozen_eval`: only the input gets a gradient, and the model's mode
and ``requires_grad`` flags are restored on exit. Images are ``[0, 1]`` tensors of shape
``(N, C, H, W)``; the adversarial images come back on the model's device.

Iterative attacks stop early per example: an example whose iterate is misclassified
keeps that iterate and leaves the batch, so it costs no further passes. An example the
model already gets wrong on the clean image keeps the clean image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..runtime import frozen_eval, needs_fixed_shapes, sync
from ..vocab import Norm
from .norms import GEOMETRIES, check_batch, check_count, check_labels, check_number, expand, geometry, run_suffix

__all__ = ["FGSM", "PGD", "fgsm", "pgd"]


def _loss_grad(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Logits at ``x`` and the gradient of the summed cross-entropy w.r.t. ``x`` (never the parameters)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = check_labels(model(x), y)
        (grad,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), x)
    return logits.detach(), grad


def _fgsm(model: nn.Module, x: Tensor, y: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """FGSM with the clean logits its forward pass yields (the caller has frozen the model)."""
    logits, grad = _loss_grad(model, x, y)
    if eps == 0:
        return x.clone(), logits
    return GEOMETRIES["linf"].step(x, grad, eps).clamp(0, 1), logits


@dataclass(frozen=True)
class FGSM:
    """Fast gradient sign method: ``clamp(x + eps * sign(∇x CE), 0, 1)``, one L∞ step."""

    eps: float
    norm: ClassVar[Norm] = "linf"

    def __post_init__(self) -> None:
        check_number("eps", self.eps)

    @property
    def tag(self) -> str:
        """A file-name-safe label, e.g. ``fgsm_eps0.1``."""
        return f"fgsm_eps{self.eps:g}"

    def with_clean_logits(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(x_adv, clean_logits)`` from one forward and one input-gradient backward pass."""
        x, y = check_batch(model, x, y)
        with frozen_eval(model):
            return _fgsm(model, x, y, self.eps)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """The adversarial images."""
        return self.with_clean_logits(model, x, y)[0]


@dataclass(frozen=True)
class PGD:
    """Projected gradient descent in the L∞ or L2 ball, with early stop and restarts.

    ``random_start`` draws the start uniformly in the eps-ball (seeded by ``seed``);
    ``restarts > 1`` keeps, per example, a misclassifying iterate if any restart finds
    one, else the final iterate with the highest loss.
    """

    eps: float
    alpha: float
    steps: int = 10
    norm: Norm = "linf"
    random_start: bool = True
    restarts: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        check_number("eps", self.eps)
        check_number("alpha", self.alpha)
        check_count("steps", self.steps, 1)
        check_count("restarts", self.restarts, 1)
        check_count("seed", self.seed, 0)
        geometry(self.norm)

    @property
    def tag(self) -> str:
        """A file-name-safe label, e.g. ``pgd-linf_eps0.3_a0.03_k10``."""
        tag = f"pgd-{self.norm}_eps{self.eps:g}_a{self.alpha:g}_k{self.steps}"
        if not self.random_start:
            tag += "_norand"
        return tag + run_suffix(self.restarts, self.seed)

    def with_clean_logits(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(x_adv, clean_logits)``; the clean logits come from a forward pass the attack needs anyway."""
        x, y = check_batch(model, x, y)
        with frozen_eval(model):
            return self._run(model, x, y)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """The adversarial images."""
        return self.with_clean_logits(model, x, y)[0]

    def _run(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """The attack on a checked batch with the model frozen: a first run from x itself (without a random
        start), then random-start runs on the examples not yet fooled, each kept where it does better.

        Every run draws its random start for the whole batch, so an example's start depends only on the
        seed and its position, not on which other examples are already fooled."""
        if self.eps == 0 or self.random_start:
            with torch.no_grad():
                clean_logits = check_labels(model(x), y)
        if self.eps == 0:
            return x.clone(), clean_logits
        need_loss = self.restarts > 1
        if self.random_start:
            best, fooled = x.clone(), clean_logits.argmax(1) != y
            best_loss = torch.full((len(x),), -math.inf, device=x.device)
            runs = self.restarts
        else:
            # The first iterate is x itself, so its forward pass gives the clean logits.
            everyone = torch.ones(len(x), dtype=torch.bool, device=x.device)
            best, fooled, best_loss, clean_logits = self._descend(model, x, y, x, everyone, need_loss)
            runs = self.restarts - 1
        geo = GEOMETRIES[self.norm]
        generator = torch.Generator().manual_seed(self.seed)
        for _ in range(runs):
            if fooled.all():
                break
            todo = ~fooled
            start = (x + geo.random_start(x, self.eps, generator)).clamp(0, 1)
            x_adv, now_fooled, loss, _ = self._descend(model, x, y, start, todo, need_loss)
            better = todo & (now_fooled | (loss > best_loss)) if need_loss else todo
            best = torch.where(expand(better, x), x_adv, best)
            best_loss = torch.where(todo, torch.maximum(best_loss, loss), best_loss)
            fooled = fooled | now_fooled
        return best, clean_logits

    def _descend(
        self, model: nn.Module, x: Tensor, y: Tensor, start: Tensor, active: Tensor, need_loss: bool
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """PGD from ``start`` for the examples where ``active`` is set, with per-example early stop.

        Returns, for the whole batch, the final iterates (``start`` where not active), which examples ended
        misclassified (only iterates that were evaluated count), their loss at the final iterate (``-inf``
        for fooled or inactive examples; computed only with ``need_loss``), and the logits at ``start`` of
        the active examples.

        A fooled example keeps its iterate and stops. On CPU and CUDA it also leaves the batch, so it costs
        no further passes; where shapes must stay fixed (XLA, see :func:`runtime.needs_fixed_shapes`), it stays
        in the batch, frozen by a mask. Both give the same images: each example's iterates depend on it alone.
        """
        geo = GEOMETRIES[self.norm]
        masked = needs_fixed_shapes(x.device)
        out = start.clone()
        fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        loss = torch.full((len(x),), -math.inf, device=x.device)
        # ``rows``: the examples in the working batch; ``live``: which of them are still being attacked.
        rows = torch.arange(len(x), device=x.device) if masked else active.nonzero().squeeze(1)
        live = active.clone() if masked else torch.ones(len(rows), dtype=torch.bool, device=x.device)
        x_t, start_logits = start[rows], None
        for _ in range(self.steps):
            logits, grad = _loss_grad(model, x_t, y[rows])
            if start_logits is None:
                start_logits = logits
            wrong = live & (logits.argmax(1) != y[rows])
            out[rows] = torch.where(expand(wrong, x_t), x_t, out[rows])
            fooled[rows] = fooled[rows] | wrong
            live = live & ~wrong
            if not masked:
                rows, x_t, grad, live = rows[live], x_t[live], grad[live], live[live]
            sync(x.device)
            if not live.any():
                return out, fooled, loss, start_logits
            x_next = (x[rows] + geo.project(geo.step(x_t, grad, self.alpha) - x[rows], self.eps)).clamp(0, 1)
            x_t = torch.where(expand(live, x_t), x_next, x_t)
        out[rows] = torch.where(expand(live, x_t), x_t, out[rows])
        if need_loss:
            with torch.no_grad():
                logits = model(x_t)
            final_wrong = live & (logits.argmax(1) != y[rows])
            fooled[rows] = fooled[rows] | final_wrong
            final_loss = F.cross_entropy(logits, y[rows], reduction="none")
            loss[rows] = torch.where(live, final_loss, loss[rows])
        return out, fooled, loss, start_logits


def fgsm(model: nn.Module, x: Tensor, y: Tensor, eps: float) -> Tensor:
    """FGSM adversarial images: ``clamp(x + eps * sign(∇x CE), 0, 1)``."""
    return FGSM(eps)(model, x, y)


def pgd(  # noqa: PLR0917 (torchattacks-style one-line call)
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    alpha: float,
    steps: int,
    *,
    norm: Norm = "linf",
    random_start: bool = True,
    restarts: int = 1,
    seed: int = 0,
) -> Tensor:
    """PGD adversarial images (see :class:`PGD`)."""
    return PGD(eps, alpha, steps, norm, random_start, restarts, seed)(model, x, y)

