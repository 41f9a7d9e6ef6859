"""The defensive perturbation: the algorithm.

Before an image is classified, a small perturbation ``δ`` is optimised with Adam so
that both the image and a PGD attack on it are classified as ``ŷ``::

    minimise over δ:  L(f(x + δ), ŷ) + L(f(PGD(x + δ, ŷ)), ŷ)
    subject to:       ‖δ‖ ≤ budget (the attack's norm),  x + δ ∈ [0, 1]

``ŷ`` is the model's own prediction on ``x`` (``label="predicted"``, deployable), or
the true label (``label="oracle"``, the original project's setting: it needs labels a
deployed system does not have, and every table marks it). The gradient of the second
term flows through ``x + δ`` into the PGD output with the PGD perturbation treated as
a constant, as in the original.

Cost: one defense call runs ``def_steps × (steps + 2)`` forward/backward passes.

The honest evaluation (threat models, the attack ensemble, the per-example worst case)
is in :mod:`robustness.defense.evaluation` and :mod:`robustness.defense.report`; defended data
sets, their files, t-SNE maps and the default model in :mod:`robustness.defense.data`.
Their public names are importable from this module too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..attacks import PGD, geometry
from ..errors import InvalidArgument
from ..runtime import frozen_eval, model_device, progress
from ..vocab import LabelMode, Norm


@dataclass(frozen=True)
class Defense:
    """A defensive perturbation against PGD(``eps``, ``alpha``, ``steps``, ``norm``), as a callable.

    ``budget`` bounds ``‖δ‖`` in the attack's norm; ``None`` or ``math.inf`` means
    unbounded (the original's setting), which :attr:`bound` reports as ``inf``.
    """

    eps: float
    alpha: float
    steps: int
    budget: float | None
    norm: Norm = "linf"
    def_steps: int = 79
    lr: float = 0.1
    label: LabelMode = "predicted"

    def __post_init__(self) -> None:
        geometry(self.norm)
        PGD(self.eps, self.alpha, self.steps, self.norm)  # validates eps, alpha and steps
        if self.label not in get_args(LabelMode):
            raise InvalidArgument(
                f"unknown label mode {self.label!r}: use 'predicted' (the model's own prediction) "
                "or 'oracle' (the true labels, which must then be passed as y)"
            )
        if self.budget is not None and (not _is_number(self.budget) or math.isnan(self.budget) or self.budget < 0):
            raise InvalidArgument(
                f"budget must be a number >= 0 (or None / inf for an unbounded defense), got {self.budget!r}"
            )
        if not isinstance(self.def_steps, int) or isinstance(self.def_steps, bool) or self.def_steps < 0:
            raise InvalidArgument(f"def_steps must be an integer >= 0, got {self.def_steps!r}")
        if not _is_number(self.lr) or not math.isfinite(self.lr) or self.lr <= 0:
            raise InvalidArgument(f"lr must be a finite number > 0, got {self.lr!r}")

    @property
    def oracle(self) -> bool:
        """Whether the defense reads the true labels (not available at deployment)."""
        return self.label == "oracle"

    @property
    def bound(self) -> float:
        """The budget as a number: ``inf`` when unbounded."""
        return math.inf if self.budget is None else float(self.budget)

    def attack(self, seed: int = 0, restarts: int = 1) -> PGD:
        """The PGD attack this defense is optimised against, with the given seed and restarts."""
        return PGD(self.eps, self.alpha, self.steps, self.norm, restarts=restarts, seed=seed)

    def __call__(
        self, model: nn.Module, x: Tensor, y: Tensor | None = None, seed: int = 0, show_progress: bool = True
    ) -> Tensor:
        """The defended images ``x + δ`` (detached, on the model's device).

        ``y`` is read only in oracle mode. The model's mode and ``requires_grad``
        flags are restored on exit.
        """
        x = _check_images(model, x)
        with frozen_eval(model), torch.enable_grad():
            target = self._target(model, x, y)
            geo = geometry(self.norm)
            delta = torch.zeros_like(x, requires_grad=True)
            optimizer = torch.optim.Adam([delta], lr=self.lr)
            steps = range(self.def_steps)
            for step in progress(steps, "defensive perturbation") if show_progress else steps:
                x_def = (x + delta).clamp(0, 1)
                x_adv = self.attack(seed=seed * self.def_steps + step)(model, x_def.detach(), target)
                # The PGD perturbation is a constant: the gradient reaches δ through x + δ only.
                x_adv = x_def + (x_adv - x_def).detach()
                loss = F.cross_entropy(model(x_def), target, reduction="sum") + F.cross_entropy(
                    model(x_adv), target, reduction="sum"
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    if self.budget is not None and math.isfinite(self.budget):
                        delta.copy_(geo.project(delta, self.budget))
                    # Clipping into [0, 1] moves each pixel towards x, so δ stays in the ball.
                    delta.copy_((x + delta).clamp(0, 1) - x)
            return (x + delta).detach().clamp(0, 1)

    def _target(self, model: nn.Module, x: Tensor, y: Tensor | None) -> Tensor:
        """The label ``ŷ`` the defense steers towards: the prediction, or in oracle mode ``y``."""
        with torch.no_grad():
            logits = model(x)
        if not self.oracle:
            return logits.argmax(1)
        if y is None:
            raise InvalidArgument("label='oracle' uses the true labels: pass y, or use label='predicted'")
        y = torch.as_tensor(y)
        if y.dim() != 1 or len(y) != len(x) or y.is_floating_point() or y.is_complex():
            raise InvalidArgument(f"y must hold one integer label per image: x has {len(x)}, y is {tuple(y.shape)}")
        if len(y) and (y.min() < 0 or y.max() >= logits.shape[1]):
            raise InvalidArgument(f"labels must lie in [0, {logits.shape[1] - 1}], got {y.min()}..{y.max()}")
        return y.to(device=x.device, dtype=torch.long)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_images(model: nn.Module, x: Tensor) -> Tensor:
    """``x`` as a detached ``(N, C, H, W)`` float tensor in ``[0, 1]`` on the model's device."""
    if not isinstance(x, Tensor) or x.dim() != 4 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise InvalidArgument(f"x must be a float tensor of shape (N, C, H, W), got {shape}: add a batch dimension")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise InvalidArgument(
            f"images must lie in [0, 1], got values in [{x.min().item():.3g}, {x.max().item():.3g}]: "
            "pass unnormalised images (the models normalise inside)"
        )
    return x.detach().to(model_device(model))


def defensive_perturbation(
    model: nn.Module,
    x: Tensor,
    *,
    norm: Norm = "linf",
    eps: float,
    alpha: float,
    steps: int,
    budget: float | None,
    def_steps: int = 79,
    lr: float = 0.1,
    label: LabelMode = "predicted",
    y: Tensor | None = None,
    seed: int = 0,
) -> Tensor:
    """The defended images ``x + δ``, with ``δ`` minimising the defense's objective (see :class:`Defense`).

    ``label="predicted"`` never reads ``y``; ``label="oracle"`` needs it. ``budget``
    bounds ``‖δ‖`` in ``norm``; pass ``math.inf`` (or ``None``) to leave it unbounded.
    """
    defense = Defense(eps, alpha, steps, budget, norm, def_steps, lr, label)
    return defense(model, x, y, seed)


class StraightThrough(nn.Module):
    """The defended classifier for an adaptive (BPDA) attack: the forward pass runs the
    defense, the backward pass treats it as the identity, ``x + (defense(x) - x).detach()``.

    The defense starts its inner PGD at random points, so it is random; with several
    ``seeds`` the logits are averaged over that many draws (EOT). ``label`` fixes ``ŷ``
    for every image (how the oracle mode is attacked one true class at a time).
    """

    def __init__(self, model: nn.Module, defense: Defense, seeds: tuple[int, ...], label: int | None = None):
        super().__init__()
        self.model, self.defense, self.seeds, self.label = model, defense, seeds, label

    def forward(self, x: Tensor) -> Tensor:
        y = None if self.label is None else torch.full((len(x),), self.label, dtype=torch.long, device=x.device)
        defended = (self.defense(self.model, x, y, seed, show_progress=False) for seed in self.seeds)
        logits = [self.model(x + (x_def - x).detach()) for x_def in defended]
        return torch.stack(logits).mean(0)


def attack_deployed(
    attack: Callable[[nn.Module, Tensor, Tensor], Tensor], classifier: Callable[[int | None], nn.Module], x: Tensor,
    y: Tensor, oracle: bool,
) -> Tensor:
    """``attack`` on the defended classifier that ``classifier(label)`` builds. A defense that reads the true
    label (oracle mode) needs it per image, so each class is then attacked on its own, with the classifier
    built for that class; otherwise one classifier (``label=None``) serves every image."""
    if not oracle:
        return attack(classifier(None), x, y)
    x_adv = x.clone()
    for c in y.unique().tolist():
        rows = y == c
        x_adv[rows] = attack(classifier(c), x[rows], y[rows])
    return x_adv
