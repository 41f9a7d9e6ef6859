"""The geometry of the attack norms and the checks every attack makes on its arguments.

A :class:`Geometry` says how one norm starts, steps, projects and measures a
perturbation; :data:`GEOMETRIES` holds the L∞ and the L2 one, and every attack
(:mod:`robustness.attacks.gradient`, :mod:`robustness.attacks.apgd`) and the defensive perturbation
(:mod:`robustness.defense.perturbation`) goes through them. The checks turn bad arguments (a negative
eps, unnormalised images, labels out of range) into one clear :class:`InvalidArgument`.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import Tensor, nn

from ..errors import InvalidArgument
from ..runtime import model_device
from ..vocab import Norm

TINY = 1e-10  # keeps divisions by a zero-norm gradient or perturbation finite


class Geometry(Protocol):
    """How one norm starts, steps, projects and measures a perturbation."""

    def random_start(self, x: Tensor, eps: float, generator: torch.Generator) -> Tensor:
        """A random perturbation inside the eps-ball, one per example, drawn on the CPU with ``generator``
        (so the same seed gives the same start on every device)."""

    def step(self, x: Tensor, grad: Tensor, alpha: float) -> Tensor:
        """``x`` moved by ``alpha`` along the steepest-ascent direction of ``grad`` in this norm."""

    def project(self, delta: Tensor, eps: float) -> Tensor:
        """``delta`` projected onto the eps-ball, per example."""

    def size(self, delta: Tensor) -> Tensor:
        """The norm of each example's perturbation, shape ``(N,)``."""


class Linf:
    """The L∞ ball: sign steps, coordinate-wise clipping."""

    def random_start(self, x: Tensor, eps: float, generator: torch.Generator) -> Tensor:
        u = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        return (2 * u - 1) * eps

    def step(self, x: Tensor, grad: Tensor, alpha: float) -> Tensor:
        return x + alpha * grad.sign()

    def project(self, delta: Tensor, eps: float) -> Tensor:
        return delta.clamp(-eps, eps)

    def size(self, delta: Tensor) -> Tensor:
        return delta.flatten(1).abs().amax(1)


class L2:
    """The L2 ball: normalised-gradient steps, radial shrinking."""

    def random_start(self, x: Tensor, eps: float, generator: torch.Generator) -> Tensor:
        # Uniform in the ball: a uniform direction and a radius eps * U^(1/d).
        direction = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        direction = direction / expand(self.size(direction) + TINY, x)
        u = torch.rand(x.shape[0], generator=generator, dtype=x.dtype).to(x.device)
        radius = eps * u ** (1 / x[0].numel())
        return direction * expand(radius, x)

    def step(self, x: Tensor, grad: Tensor, alpha: float) -> Tensor:
        return x + alpha * grad / expand(self.size(grad) + TINY, grad)

    def project(self, delta: Tensor, eps: float) -> Tensor:
        factor = torch.clamp(eps / self.size(delta).clamp_min(TINY), max=1.0)
        return delta * expand(factor, delta)

    def size(self, delta: Tensor) -> Tensor:
        return delta.flatten(1).norm(p=2, dim=1)


GEOMETRIES: dict[Norm, Geometry] = {"linf": Linf(), "l2": L2()}


def expand(per_example: Tensor, like: Tensor) -> Tensor:
    """Reshape an ``(N,)`` tensor to broadcast against ``(N, C, H, W)``."""
    return per_example.view(-1, *([1] * (like.dim() - 1)))


def geometry(norm: str) -> Geometry:
    """The geometry of ``norm`` ("linf" or "l2")."""
    if norm not in GEOMETRIES:
        raise InvalidArgument(f"unknown norm {norm!r}: use one of {', '.join(GEOMETRIES)}")
    return GEOMETRIES[norm]


def check_number(name: str, value: float, minimum: float = 0.0) -> None:
    """An error unless ``value`` is a finite number at least ``minimum``."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < minimum:
        raise InvalidArgument(f"{name} must be a finite number >= {minimum:g}, got {value!r}")


def check_count(name: str, value: int, minimum: int) -> None:
    """An error unless ``value`` is an integer at least ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InvalidArgument(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_batch(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Validate images and labels; return both on the model's device, detached."""
    if not isinstance(x, Tensor) or x.dim() != 4 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise InvalidArgument(f"x must be a float tensor of shape (N, C, H, W), got {shape}: add a batch dimension")
    y = torch.as_tensor(y)
    if y.is_floating_point() or y.is_complex() or (len(y) and y.min() < 0):
        raise InvalidArgument(f"y must hold class indices (integers >= 0), got dtype {y.dtype}")
    if y.dim() != 1 or len(y) != len(x):
        raise InvalidArgument(f"y must hold one label per image: x has {len(x)} images, y has shape {tuple(y.shape)}")
    if not ((x >= 0) & (x <= 1)).all():
        raise InvalidArgument(
            f"images must lie in [0, 1], got values in [{x.min().item():.3g}, {x.max().item():.3g}]: "
            "pass unnormalised images (the models normalise inside)"
        )
    device = model_device(model)
    return x.detach().to(device), y.to(device=device, dtype=torch.long)


def check_labels(logits: Tensor, y: Tensor) -> Tensor:
    """``logits``, after checking that every label names one of its classes."""
    if len(y) and y.max() >= logits.shape[1]:
        raise InvalidArgument(f"label {y.max().item()} out of range for a model with {logits.shape[1]} classes")
    return logits


def run_suffix(restarts: int, seed: int) -> str:
    """The end of an iterative attack's tag: ``_r<restarts>`` beyond one start, ``_s<seed>`` for a nonzero seed."""
    return (f"_r{restarts}" if restarts > 1 else "") + (f"_s{seed}" if seed else "")
