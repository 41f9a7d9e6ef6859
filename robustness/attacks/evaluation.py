"""Clean and adversarial evaluation of a model on a loader.

:func:`evaluate` is the one loop over a loader; :func:`accuracy`, :func:`eps_sweep`
and :func:`calibrate_eps` are built on it; :func:`intervals` gives the Wilson interval
of each accuracy it returns. Every attack of :mod:`robustness.attacks` works here,
APGD included (``"apgd"``: APGD-CE and APGD-DLR, an image robust only if it survives both).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..errors import InvalidArgument
from ..finite import count_nonfinite, logits_error
from ..runtime import frozen_eval, model_device, progress
from ..stats import wilson_interval
from ..vocab import AttackName
from .norms import GEOMETRIES
from .registry import Attack, make_attack

AttackFactory = Callable[[float], Attack]


def evaluate(model: nn.Module, loader: DataLoader, attack: Attack | None = None) -> dict[str, float]:
    """Clean and adversarial metrics of ``model`` over ``loader``.

    Returns ``clean_acc``, ``robust_acc`` (accuracy on the attack's images),
    ``success_rate`` (the fraction of initially correct examples the attack turns
    wrong), ``mean_norm`` and ``max_norm`` (size of the perturbation in the attack's
    norm) and ``n`` (number of examples). Without an attack, the adversarial images
    are the clean ones: robust = clean accuracy, success rate and norms 0. APGD returns
    ``x`` itself for the images it does not fool, so its norms count those as 0.

    An empty loader raises :class:`InvalidArgument`; logits that are NaN or infinite on any image raise
    :class:`~robustness.errors.NonFiniteError` (:func:`robustness.finite.logits_error`).
    """
    if len(loader) == 0:
        raise InvalidArgument("the loader is empty: give at least one image to evaluate")
    device = model_device(model)
    n = clean_correct = adv_correct = flipped = nonfinite = 0
    probe = None  # a batch whose logits were not finite, to find the layer
    norm_sum = norm_max = 0.0
    desc = f"evaluate {attack.tag}" if attack is not None else "evaluate"
    with frozen_eval(model):
        for x_cpu, y_cpu in progress(loader, desc, total=len(loader)):
            x, y = x_cpu.to(device), torch.as_tensor(y_cpu).to(device)
            clean_ok, adv_ok, sizes, bad = _outcomes(model, x, y, attack)
            if bad.item():
                nonfinite, probe = nonfinite + bad.item(), probe if probe is not None else x
            n += len(y)
            clean_correct += clean_ok.sum().item()
            adv_correct += adv_ok.sum().item()
            flipped += (clean_ok & ~adv_ok).sum().item()
            norm_sum += sizes.sum().item()
            norm_max = max(norm_max, sizes.max().item() if len(sizes) else 0.0)
        if nonfinite:
            raise logits_error(model, probe, nonfinite, n)
    return {
        "clean_acc": clean_correct / max(n, 1),
        "robust_acc": adv_correct / max(n, 1),
        "success_rate": flipped / max(clean_correct, 1),
        "mean_norm": norm_sum / max(n, 1),
        "max_norm": norm_max,
        "n": n,
    }


def _outcomes(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per example of one batch: correct on the clean image, correct on the attack's, perturbation size; and
    how many images of the batch got non-finite clean or adversarial logits."""
    if attack is None:
        with torch.no_grad():
            logits = model(x)
        correct = logits.argmax(1) == y
        return correct, correct, torch.zeros(len(x), device=x.device), count_nonfinite(logits)
    x_adv, clean_logits = attack.with_clean_logits(model, x, y)
    with torch.no_grad():
        adv_logits = model(x_adv)
    bad = count_nonfinite(torch.cat([clean_logits.detach(), adv_logits], 1))
    return clean_logits.argmax(1) == y, adv_logits.argmax(1) == y, GEOMETRIES[attack.norm].size(x_adv - x), bad


def intervals(result: dict[str, float], ci: float = 0.95) -> dict[str, tuple[float, float]]:
    """The Wilson interval (coverage ``ci``) of ``clean_acc`` and ``robust_acc`` in a result of :func:`evaluate`."""
    n = int(result["n"])
    return {key: wilson_interval(round(result[key] * n), n, ci) for key in ("clean_acc", "robust_acc")}


def accuracy(model: nn.Module, loader: DataLoader) -> float:
    """Clean top-1 accuracy of ``model`` over ``loader``, in eval mode (mode restored after)."""
    return evaluate(model, loader)["clean_acc"]


def _factory(attack: AttackName | AttackFactory, params: dict[str, Any]) -> AttackFactory:
    """An eps -> attack function from an attack name and its other parameters, or the factory itself."""
    if callable(attack):
        if params:
            raise InvalidArgument(f"attack parameters {sorted(params)} go with an attack name, not a factory")
        return attack
    make_attack(attack, 0.0, **params)  # fails early on a bad name or parameter
    return lambda eps: make_attack(attack, eps, **params)


def eps_sweep(
    model: nn.Module,
    loader: DataLoader,
    epsilons: Iterable[float],
    attack: AttackName | AttackFactory = "fgsm",
    **params: Any,
) -> list[dict[str, Any]]:
    """One :func:`evaluate` row per eps: ``{"eps", "attack", clean_acc, robust_acc, ...}``.

    ``attack`` is a name for :func:`attacks.make_attack` (``"fgsm"``, ``"pgd"``, ``"apgd"``, ...;
    its other parameters in ``params``, e.g. ``steps=10, norm="l2"``; PGD's ``alpha`` defaults
    to 2.5 eps/steps) or a function ``eps -> attack``.
    """
    factory = _factory(attack, params)
    rows = []
    for eps in progress(list(epsilons), "eps sweep"):
        attack_at_eps = factory(eps)
        rows.append({"eps": eps, "attack": attack_at_eps.tag, **evaluate(model, loader, attack_at_eps)})
    return rows


def calibrate_eps(
    model: nn.Module,
    loader: DataLoader,
    target_acc: float,
    attack: AttackName | AttackFactory = "fgsm",
    *,
    hi: float = 1.0,
    tol: float = 0.01,
    max_iter: int = 20,
    **params: Any,
) -> float:
    """The eps at which the attack leaves ``model`` a robust accuracy of ``target_acc`` (± ``tol``).

    Bisection on ``[0, hi]``, assuming robust accuracy falls as eps grows. Returns the
    first eps tried whose accuracy is within ``tol`` of the target, or after ``max_iter``
    halvings the end of the final bracket whose accuracy is closer to the target.
    """
    if not 0 <= target_acc <= 1:
        raise InvalidArgument(f"target_acc must be in [0, 1], got {target_acc}")
    if tol <= 0 or max_iter < 1 or hi <= 0:
        raise InvalidArgument(f"need tol > 0, max_iter >= 1 and hi > 0, got tol={tol}, max_iter={max_iter}, hi={hi}")
    factory = _factory(attack, params)
    clean = accuracy(model, loader)
    if clean < target_acc - tol:
        raise InvalidArgument(f"clean accuracy {clean:.4f} is already below target {target_acc}: lower the target")
    if clean <= target_acc + tol:
        return 0.0
    acc_hi = evaluate(model, loader, factory(hi))["robust_acc"]
    if acc_hi > target_acc + tol:
        raise InvalidArgument(f"eps={hi} still leaves accuracy {acc_hi:.4f} > target {target_acc}: raise hi")
    if abs(acc_hi - target_acc) <= tol:
        return hi
    lo, acc_lo = 0.0, clean
    for _ in progress(range(max_iter), "calibrate eps"):
        mid = (lo + hi) / 2
        acc_mid = evaluate(model, loader, factory(mid))["robust_acc"]
        if abs(acc_mid - target_acc) <= tol:
            return mid
        if acc_mid > target_acc:
            lo, acc_lo = mid, acc_mid
        else:
            hi, acc_hi = mid, acc_mid
    return lo if abs(acc_lo - target_acc) < abs(acc_hi - target_acc) else hi
