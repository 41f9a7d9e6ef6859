"""Training regimes in result files: which regime a result belongs to, and whether two results can be compared.

A result file's meta records the training regime of the model it measured (``"regime"``:
``"standard"``, or a tag such as ``"pgd-linf-eps0.1"``, with its ``"regime_settings"``); a file
without the key was written for a standard model. Two sweeps are compared layer by layer only
when they measured the *same evaluation images* (the same dataset, seed, subset and held-out
count, and as many images) and their eps was calibrated to the *same target accuracy*: the
attack's strength sets the unfiltered adversarial accuracy every score is relative to, so
sweeps at different targets measure different things.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from .errors import InvalidArgument

STANDARD = "standard"
# The meta keys that fix which test images a study evaluated (robustness.study_images.split_test_images).
IMAGE_KEYS: tuple[str, ...] = ("dataset", "seed", "subset", "calibration_images")


def regime_of(meta: Mapping[str, Any]) -> str:
    """The training regime a result file's ``meta`` records (``"standard"`` when it records none)."""
    return str(meta.get("regime") or STANDARD)


def regime_kwargs(function: Callable[..., Any], regime: str) -> dict[str, str]:
    """The keyword that passes ``regime`` on to a :mod:`robustness.paths` function: ``{"regime": regime}`` when
    the function takes one, nothing for the standard regime when it does not; another regime there is an error
    (this layout has no place for it)."""
    if "regime" in inspect.signature(function).parameters:
        return {"regime": regime}
    if regime == STANDARD:
        return {}
    raise InvalidArgument(f"this checkpoint tree's layout has no place for the training regime {regime!r}: only "
                          f"'{STANDARD}' models are found here")


def check_same_images(a: Mapping[str, Any], b: Mapping[str, Any], n_a: int, n_b: int, names: tuple[str, str]) -> None:
    """Raise :class:`InvalidArgument` unless the result metas ``a`` and ``b`` (of ``n_a`` and ``n_b`` images)
    evaluated the same images."""
    differ = {key: (a.get(key), b.get(key)) for key in IMAGE_KEYS if a.get(key) != b.get(key)}
    if n_a != n_b:
        differ["images"] = (n_a, n_b)
    if differ:
        detail = ", ".join(f"{key} {x!r} vs {y!r}" for key, (x, y) in differ.items())
        raise InvalidArgument(
            f"{names[0]} and {names[1]} were not measured on the same evaluation images ({detail}): a paired "
            f"comparison needs the same images; rerun the filter command of one with the other's --seed, --subset "
            f"and --calibration-images"
        )


def calibration_target(a: Mapping[str, Any], b: Mapping[str, Any], names: tuple[str, str]) -> float:
    """The target accuracy both results' eps was calibrated to; :class:`InvalidArgument` when either was not
    calibrated or the targets differ."""
    targets = (a.get("calibrate_eps"), b.get("calibrate_eps"))
    if None in targets or targets[0] != targets[1]:
        raise InvalidArgument(
            f"{names[0]} and {names[1]} are not calibrated to the same target accuracy (calibrate_eps "
            f"{targets[0]!r} vs {targets[1]!r}): scores are relative to the unfiltered adversarial accuracy, which "
            f"the attack's eps sets, so run the filter command of both with the same --calibrate-eps TARGET"
        )
    return float(targets[0])
