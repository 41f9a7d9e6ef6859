"""Refusing models whose numbers are not finite: NaN or infinite weights, and NaN or infinite logits.

``argmax`` of a row of NaN logits is class 0, so a broken model still gets an accuracy (the share of
class 0 in the evaluated images) and, from it, sweeps and labels that look plausible. The package checks
the weights when a model file is read (:func:`check_finite_state`, naming the file and the first
parameter that is not finite) and the logits of every evaluation (:func:`logits_error`, naming the first
layer whose output is not finite), and stops with one :class:`~robustness.errors.NonFiniteError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from .errors import NonFiniteError

PROBE_IMAGES = 16  # images run again, with hooks, to find the first layer whose output is not finite


def first_nonfinite(tensors: Iterable[tuple[str, Tensor]]) -> tuple[str, int, int] | None:
    """``(name, non-finite entries, entries)`` of the first floating-point tensor of ``tensors`` that holds a NaN
    or an infinity; ``None`` when every one is finite."""
    for name, tensor in tensors:
        if isinstance(tensor, Tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
            return name, int((~torch.isfinite(tensor)).sum()), tensor.numel()
    return None


def check_finite_state(state: Mapping[str, Tensor], where: str | Path) -> None:
    """Raise :class:`NonFiniteError` naming ``where`` (the file) and the first parameter or buffer of ``state``
    (a state_dict) that holds NaN or infinite values."""
    found = first_nonfinite(state.items())
    if found is not None:
        name, bad, total = found
        layer = name.rpartition(".")[0] or name
        raise NonFiniteError(
            f"{where}: layer {layer} holds NaN or infinite weights ({name}: {bad} of {total} values), so every "
            f"accuracy measured with it would be meaningless; use an earlier checkpoint, or retrain (e.g. with a "
            f"lower --lr)"
        )


def check_finite_model(model: nn.Module) -> None:
    """Raise :class:`NonFiniteError` naming the first parameter or buffer of ``model`` that holds NaN or infinite
    values (before a sweep: its weight range, and every point, would be meaningless)."""
    found = first_nonfinite(model.state_dict().items())
    if found is not None:
        name, bad, total = found
        raise NonFiniteError(
            f"layer {name.rpartition('.')[0] or name} of the model holds NaN or infinite weights ({name}: {bad} of "
            f"{total} values): a sweep or an accuracy of it would be meaningless; use an earlier checkpoint, or retrain"
        )


def first_nonfinite_layer(model: nn.Module, x: Tensor) -> str | None:
    """The name of the first module (in the order they run) whose output on images ``x`` is not finite; ``None``
    when every module's output is finite (e.g. only an attack's images give NaN)."""
    found: list[str] = []
    names = {m: name for name, m in model.named_modules()}

    def hook(module: nn.Module, _inputs: tuple, output: object) -> None:
        if not found and isinstance(output, Tensor) and output.is_floating_point() and not torch.isfinite(output).all():
            found.append(names[module] or "the model")

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return found[0] if found else None


def logits_error(model: nn.Module, x: Tensor, bad: int, n: int) -> NonFiniteError:
    """The :class:`NonFiniteError` for logits that are NaN or infinite on ``bad`` of ``n`` images, naming the
    model's first non-finite parameter, or else the first layer whose output on ``x`` (the images of a batch
    where it happened) is not finite."""
    weights = first_nonfinite(model.state_dict().items())
    if weights is not None:
        where = f"its weights are not finite (first: {weights[0]})"
    elif (layer := first_nonfinite_layer(model, x[:PROBE_IMAGES])) is not None:
        where = f"layer {layer} is the first whose output is not finite"
    else:
        where = "the clean images give finite logits: the attack's images do not"
    return NonFiniteError(
        f"the model's logits are NaN or infinite on {bad} of {n} images ({where}): an accuracy from them would be "
        f"meaningless (argmax of NaN is class 0); check the model's weights and inputs"
    )


def count_nonfinite(logits: Tensor) -> Tensor:
    """How many rows of ``logits`` hold a NaN or an infinity, on their device (no wait for it)."""
    return (~torch.isfinite(logits)).any(1).sum()
