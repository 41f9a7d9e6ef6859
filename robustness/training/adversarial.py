"""Adversarial training: PGD-AT (Madry et al. 2018) and fast AT (Wong, Rice & Kolter 2020), with an eps warm-up.

:class:`AdvTraining` holds a run's settings (one field of :class:`robustness.training.trainer.TrainConfig`);
:func:`adversarial_batch` replaces a training batch by its adversarial examples, and the trainer
trains on those. The examples are made with the model frozen in eval mode
(:func:`runtime.frozen_eval`: BatchNorm uses and keeps its running statistics, no parameter
gets a gradient), from a uniform random start in the eps-ball, by ``steps`` ascent steps of the
cross-entropy with the norm's geometry (:mod:`robustness.attacks.norms`: the same step and projection as
the evaluation PGD), clamped to ``[0, 1]``. Unlike the evaluation PGD of :mod:`robustness.attacks.gradient`,
no example stops early once misclassified: Madry's inner problem maximises the loss, and an iterate
just past the decision boundary is a weaker training example (that variant is "friendly" AT).

- ``pgd``: ``steps`` steps (default 10) of size ``2.5 * eps / steps``;
- ``fast``: one step of size ``1.25 * eps`` (FGSM from a random start), then the projection;
- warm-up: eps grows linearly over the first ``warmup`` epochs, ``eps * min(1, epoch / warmup)``
  (epoch counted from 1); the step size scales with it.

A regime is named by :func:`regime_tag` (``standard``, ``pgd-linf-eps0.1``, ...); its checkpoints
live in their own folder (:func:`robustness.paths.regime_root`), whose ``regime.json`` records
the settings (:func:`claim_regime`, :func:`regime_meta`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import paths
from ..attacks import GEOMETRIES, check_count, check_number, geometry
from ..errors import InvalidArgument
from ..files import load_json, save_json
from ..models import STANDARD_SETTINGS, standard_meta
from ..runtime import frozen_eval
from ..vocab import Norm

Method = Literal["none", "pgd", "fast"]
METHODS: tuple[str, ...] = get_args(Method)


@dataclass(frozen=True)
class AdvTraining:
    """How each training batch is made adversarial: ``method`` ``none`` (standard training), ``pgd`` or
    ``fast``; ``eps`` in pixel units of ``norm``; ``steps`` (PGD only, default 10); ``step_size`` (default
    ``2.5 * eps / steps`` for PGD, ``1.25 * eps`` for fast AT); ``warmup`` epochs of linear eps ramp."""

    method: Method = "none"
    eps: float = 0.0
    norm: Norm = "linf"
    steps: int | None = None
    step_size: float | None = None
    warmup: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InvalidArgument(f"unknown adversarial training {self.method!r}: choose one of {', '.join(METHODS)}")
        check_number("adversarial training eps", self.eps)
        geometry(self.norm)
        check_count("adversarial training warmup", self.warmup, 0)
        if self.steps is not None:
            check_count("adversarial training steps", self.steps, 1)
        if self.step_size is not None:
            check_number("adversarial training step size", self.step_size)
        if self.method == "none":
            return
        if self.eps == 0:
            raise InvalidArgument(f"{self.method} adversarial training needs eps > 0 (e.g. --eps 0.1 or 8/255); "
                                  "for standard training use --adv-train none")
        if self.method == "fast" and self.steps not in (None, 1):
            raise InvalidArgument(f"fast adversarial training takes one step, got {self.steps} steps: drop "
                                  "--steps, or use --adv-train pgd")

    @property
    def active(self) -> bool:
        """Whether batches are made adversarial at all."""
        return self.method != "none"

    @property
    def k(self) -> int:
        """The number of ascent steps: ``steps`` (default 10) for PGD, 1 for fast AT."""
        return 1 if self.method == "fast" else (self.steps or 10)

    @property
    def alpha(self) -> float:
        """The step size at the full eps."""
        if self.step_size is not None:
            return self.step_size
        return 1.25 * self.eps if self.method == "fast" else 2.5 * self.eps / self.k

    def eps_at(self, epoch: int) -> float:
        """The eps of training epoch ``epoch`` (from 1): the linear warm-up, then ``eps``."""
        if self.warmup == 0:
            return self.eps
        return self.eps * min(1.0, epoch / self.warmup)

    def settings(self) -> dict[str, Any]:
        """The settings as a JSON-able dict, with the defaults resolved (``{"method": "none"}`` for standard)."""
        if not self.active:
            return dict(STANDARD_SETTINGS)
        return {"method": self.method, "eps": self.eps, "norm": self.norm, "steps": self.k, "step_size": self.alpha,
                "warmup": self.warmup}


def from_settings(settings: dict[str, Any] | AdvTraining | None) -> AdvTraining:
    """The :class:`AdvTraining` of a settings dict (as a checkpoint's config stores it); ``None`` is standard."""
    if isinstance(settings, AdvTraining):
        return settings
    return AdvTraining(**(settings or {}))


def regime_tag(adv: AdvTraining) -> str:
    """The regime's name: ``standard`` for method none, else ``<method>-<norm>-eps<eps>`` with eps in at most
    4 significant digits (``pgd-linf-eps0.1``; 8/255 gives ``eps0.03137``)."""
    return paths.STANDARD if not adv.active else f"{adv.method}-{adv.norm}-eps{adv.eps:.4g}"


def adversarial_batch(model: nn.Module, x: Tensor, y: Tensor, adv: AdvTraining, eps: float) -> Tensor:
    """The adversarial examples of one training batch at ``eps`` (the warm-up's, :meth:`AdvTraining.eps_at`):
    random start, ``adv.k`` ascent steps of the summed cross-entropy, each projected onto the eps-ball and
    clamped to ``[0, 1]``. The model is frozen in eval mode meanwhile and left as found. The random start is
    drawn from torch's global generator, so a resumed run (which restores it) draws the same starts."""
    if eps == 0:
        return x
    geo = GEOMETRIES[adv.norm]
    alpha = adv.alpha * eps / adv.eps
    with frozen_eval(model):
        x_adv = (x + geo.random_start(x, eps, torch.default_generator)).clamp(0, 1)
        for _ in range(adv.k):
            x_adv.requires_grad_(True)
            with torch.enable_grad():
                (grad,) = torch.autograd.grad(F.cross_entropy(model(x_adv), y, reduction="sum"), x_adv)
            x_adv = (x + geo.project(geo.step(x_adv.detach(), grad, alpha) - x, eps)).clamp(0, 1)
    return x_adv


def claim_regime(adv: AdvTraining, arch: str, dataset: str, root: str | Path) -> None:
    """Record the settings of a non-standard regime in its folder's ``regime.json``, or check that the ones
    there are the same: one regime folder never mixes checkpoints trained with different settings."""
    tag = regime_tag(adv)
    if tag == paths.STANDARD:
        return
    path = paths.regime_file(arch, dataset, root, regime=tag)
    if not path.is_file():
        save_json(adv.settings(), path)
        return
    found = load_json(path)
    if found != adv.settings():
        raise InvalidArgument(
            f"{path.parent} holds checkpoints of regime {tag} trained with {found}, this run asks for "
            f"{adv.settings()}: train with the same settings, or into another --models-root"
        )


def regime_meta(arch: str, dataset: str, root: str | Path) -> dict[str, Any]:
    """``{"regime": tag, "regime_settings": dict}`` of the models under ``root`` (a root of
    :func:`robustness.paths.regime_root`), for the meta of a result file: standard where no ``regime.json``
    is found (a standard tree, a model from elsewhere)."""
    path = paths.regime_file(arch, dataset, root)
    if not path.is_file():
        return standard_meta()
    settings = load_json(path)
    return {"regime": regime_tag(from_settings(settings)), "regime_settings": settings}
