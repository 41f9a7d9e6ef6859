"""The re-initialisation probe: how much a trained layer matters, asked by resetting it.

Zhang, Bengio & Singer ("Are All Layers Created Equal?", JMLR 2022) probe a layer by putting
its parameters back to where training started and measuring the network's accuracy:

- **re-initialisation** (:func:`reinitialise`): the layer's parameters (weight and, when it has
  one, bias) are copied from the same initialisation's epoch-0 checkpoint;
- **re-randomisation** (:func:`rerandomise`): the layer gets a fresh draw of its initialiser
  (the module's own ``reset_parameters``) under a recorded seed, several seeds.

Everything else is measured as a sweep measures a point (:func:`robustness.filtering.sweeps.measure_reference`):
with ``calibration`` images, the BatchNorm running statistics are re-estimated for the probed
weights before evaluating (``None`` keeps the checkpoint's), the attack is regenerated against
the probed model, and every image's outcome is kept. The unprobed model, measured the same way
(its statistics re-estimated too), is the reference. The model comes back bitwise as it was,
parameters and buffers, also when an exception is raised.

A layer is **critical** when the interval of its accuracy drop (reference minus probed, a
paired bootstrap over the evaluation images: :func:`accuracy_drop`) lies wholly above a stated
threshold, **robust** when it lies wholly at or below it, **uncertain** otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from ..attacks import Attack
from ..data import loader_to_tensors
from ..errors import InvalidArgument
from ..filtering import DEFAULT_BATCH, BNImages, EvalData, Evaluation, SweepResult, measure_reference, select_layers
from ..runtime import model_device, progress
from ..stats import bootstrap_counts, percentile_interval, resampled_mean

ProbeKind = Literal["reinit", "rerandom", "ablate"]
PROBE_KINDS: tuple[ProbeKind, ...] = ("reinit", "rerandom", "ablate")
DEFAULT_SEEDS: tuple[int, ...] = (0, 1, 2)
DEFAULT_THRESHOLD = 0.05
Verdict = Literal["critical", "robust", "uncertain", "undefined"]


@dataclass(frozen=True, eq=False)
class ProbeResult:
    """One layer probed. ``clean_acc``/``adv_acc``: the probed model's accuracies (for re-randomisation, the
    mean over the seeds' draws); ``clean_correct``/``adv_correct``: per image, correct or not, shape ``(n,)``
    for re-initialisation and ablation, ``(S, n)`` for ``S`` re-randomisation seeds; ``ref_*``: the unprobed
    (recalibrated) model's accuracies and per-image outcomes ``(n,)``; ``seeds``: the seeds of the draws
    (empty for re-initialisation and ablation)."""

    layer: str
    kind: ProbeKind
    clean_acc: float
    adv_acc: float
    clean_correct: np.ndarray
    adv_correct: np.ndarray
    ref_clean_acc: float
    ref_adv_acc: float
    ref_clean_correct: np.ndarray
    ref_adv_correct: np.ndarray
    seeds: tuple[int, ...] = ()

    def to_sweep(self, total: int) -> SweepResult:
        """The result as a :class:`SweepResult` of one point per draw (threshold = seed, 0 for re-initialisation),
        so that it is written and read with the sweeps' files (:func:`robustness.filtering.results.save_results`);
        ``total`` is the number of parameters replaced."""
        clean, adv = np.atleast_2d(self.clean_correct), np.atleast_2d(self.adv_correct)
        draws = len(clean)
        return SweepResult(
            self.kind, self.layer, total, self.ref_clean_acc, self.ref_adv_acc, float("nan"), float("nan"),
            thresholds=[float(s) for s in self.seeds] or [0.0], clean_acc=[float(c.mean()) for c in clean],
            adv_acc=[float(a.mean()) for a in adv], clean_loss=[float("nan")] * draws, adv_loss=[float("nan")] * draws,
            removed=[total] * draws, removed_fraction=[1.0] * draws, grid="probe", clean_correct=clean,
            adv_correct=adv, ref_clean_correct=self.ref_clean_correct, ref_adv_correct=self.ref_adv_correct,
        )

    @classmethod
    def from_sweep(cls, result: SweepResult) -> ProbeResult:
        """The inverse of :meth:`to_sweep`."""
        single = result.kind != "rerandom"  # one draw: re-initialisation or ablation
        clean, adv = result.clean_correct, result.adv_correct
        return cls(
            result.layer or "global", result.kind,  # type: ignore[arg-type]
            float(np.mean(clean)), float(np.mean(adv)), clean[0] if single else clean, adv[0] if single else adv,
            result.ref_clean_acc, result.ref_adv_acc, result.ref_clean_correct, result.ref_adv_correct,
            () if single else tuple(int(s) for s in result.thresholds),
        )


@contextmanager
def restored(model: nn.Module) -> Iterator[None]:
    """Run the body, then copy every parameter and buffer of ``model`` back bitwise, also when it raises."""
    saved = {name: t.detach().clone() for name, t in model.state_dict(keep_vars=True).items()}
    try:
        yield
    finally:
        with torch.no_grad():
            for name, tensor in model.state_dict(keep_vars=True).items():
                tensor.copy_(saved[name])


def _parameters(module: nn.Module) -> dict[str, nn.Parameter]:
    return dict(module.named_parameters(recurse=False))


def _images(data: EvalData, calibration: BNImages | None, device: torch.device) -> tuple[EvalData, Tensor | None]:
    """The evaluation set and calibration images as tensors on ``device``, loaded once for every layer."""
    x, y = data if isinstance(data, tuple) else loader_to_tensors(data)
    images = calibration if calibration is None or isinstance(calibration, Tensor) else (
        calibration[0] if isinstance(calibration, tuple) else
        torch.cat([b[0] if isinstance(b, (tuple, list)) else b for b in calibration]))  # labels, if any, unused
    return (x.to(device), torch.as_tensor(y).to(device=device, dtype=torch.long)), (
        None if images is None else images.to(device))


Replace = Callable[[str, nn.Module, int | None], None]  # puts new parameters into one layer (seed or None)


def _probe(
    model: nn.Module, loader: EvalData, attack: Attack, layers: Sequence[str] | None, calibration: BNImages | None,
    kind: ProbeKind, replace: Replace, seeds: Sequence[int], batch_size: int,
) -> dict[str, ProbeResult]:
    """Measure the reference, then each layer with its parameters replaced by ``replace`` once per seed."""
    chosen = select_layers(model, layers)
    with restored(model):
        data, images = _images(loader, calibration, model_device(model))
        measure = partial(measure_reference, model, data, attack, batch_size=batch_size, bn_images=images)
        reference = measure()
        out = {}
        for name, module in progress(chosen, f"{kind} probe") if len(chosen) > 1 else chosen:
            draws: list[Evaluation] = []
            for seed in seeds:
                with restored(module):
                    replace(name, module, seed)
                    draws.append(measure())
            clean = np.stack([d.clean_correct for d in draws])
            adv = np.stack([d.adv_correct for d in draws])
            if kind != "rerandom":
                clean, adv = clean[0], adv[0]
            out[name] = ProbeResult(
                name, kind, float(clean.mean()), float(adv.mean()), clean, adv, reference.clean_acc,
                reference.adv_acc, reference.clean_correct, reference.adv_correct,
                tuple(int(s) for s in seeds) if kind == "rerandom" else (),
            )
        return out


def reinitialise(
    model: nn.Module, initial_model: nn.Module, loader: EvalData, attack: Attack, layers: Sequence[str] | None = None,
    calibration: BNImages | None = None,
) -> dict[str, ProbeResult]:
    """Re-initialise each filterable layer of ``model`` (all, or those named in ``layers``) in turn: its
    parameters are replaced by ``initial_model``'s (the same initialisation's epoch-0 checkpoint), the BatchNorm
    statistics re-estimated on ``calibration`` (training images: a DataLoader, an ``(x, y)`` pair or images;
    ``None`` keeps them frozen), and clean and adversarial accuracy measured on ``loader`` (a DataLoader or an
    ``(x, y)`` pair) with ``attack`` regenerated against the probed model.

    Returns ``{layer: ProbeResult}`` with ``clean_acc``, ``adv_acc``, per-image ``clean_correct``,
    ``adv_correct`` and the unprobed (recalibrated) model's ``ref_clean_acc``, ``ref_adv_acc``. ``model``
    comes back bitwise unchanged (parameters and buffers), also on an exception; ``initial_model`` is only read.
    """
    initial = dict(initial_model.named_modules())
    for name, module in select_layers(model, layers):
        theirs = _parameters(initial[name]) if name in initial else {}
        mine = _parameters(module)
        if theirs.keys() != mine.keys() or any(theirs[k].shape != p.shape for k, p in mine.items()):
            raise InvalidArgument(
                f"the initial model's layer {name!r} does not fit the model's ({_shapes(mine)} vs {_shapes(theirs)}): "
                f"give the epoch-0 checkpoint of the same architecture and initialisation"
            )

    def replace(name: str, module: nn.Module, _seed: int | None) -> None:
        source = _parameters(initial[name])
        with torch.no_grad():
            for key, parameter in _parameters(module).items():
                parameter.copy_(source[key])

    return _probe(model, loader, attack, layers, calibration, "reinit", replace, [0], DEFAULT_BATCH)


def _shapes(parameters: Mapping[str, nn.Parameter]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(p.shape) for k, p in parameters.items()}


def rerandomise(
    model: nn.Module, loader: EvalData, attack: Attack, layers: Sequence[str] | None = None,
    calibration: BNImages | None = None, seeds: Sequence[int] = DEFAULT_SEEDS,
) -> dict[str, ProbeResult]:
    """Re-randomise each filterable layer of ``model`` in turn, once per seed: its parameters are a fresh draw
    of its initialiser (the module's own ``reset_parameters`` with torch seeded by ``seed``; the global random
    state is left as it was); otherwise as :func:`reinitialise`. The result's per-image outcomes have one row
    per seed and its accuracies are their means."""
    if not seeds or len(set(seeds)) != len(seeds):
        raise InvalidArgument(f"re-randomisation needs one or more distinct seeds, got {list(seeds)}")

    def replace(name: str, module: nn.Module, seed: int | None) -> None:
        if not hasattr(module, "reset_parameters"):
            raise InvalidArgument(f"layer {name!r} ({type(module).__name__}) has no reset_parameters to redraw it")
        device = model_device(model)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(int(seed or 0))
            module.reset_parameters()

    return _probe(model, loader, attack, layers, calibration, "rerandom", replace, list(seeds), DEFAULT_BATCH)


def accuracy_drop(
    result: ProbeResult, which: Literal["clean", "adv"] = "adv", ci: float = 0.95, n_boot: int = 1000, seed: int = 0,
) -> tuple[float, float, float]:
    """The accuracy drop of a probed layer, reference minus probed (``which``: clean or adversarial accuracy),
    and its percentile interval from a paired bootstrap over the images (each resample recomputes the reference
    and the probed accuracy, averaged over the draws, on the same images): ``(drop, lo, hi)``."""
    if which not in ("clean", "adv"):
        raise InvalidArgument(f"which accuracy drops: 'clean' or 'adv', got {which!r}")
    probed = np.atleast_2d(getattr(result, f"{which}_correct"))
    ref = np.asarray(getattr(result, f"ref_{which}_correct"))
    counts = bootstrap_counts(len(ref), n_boot, seed)
    draws = resampled_mean(ref, counts) - resampled_mean(probed, counts).mean(1)
    lo, hi = percentile_interval(draws, ci)
    return float(ref.mean() - probed.mean()), float(lo), float(hi)


def verdict(lo: float, hi: float, threshold: float = DEFAULT_THRESHOLD) -> Verdict:
    """``critical`` if the drop's interval ``[lo, hi]`` lies wholly above ``threshold``, ``robust`` if wholly at
    or below it, ``uncertain`` if it straddles it, ``undefined`` for NaN."""
    if np.isnan(lo) or np.isnan(hi):
        return "undefined"
    return "critical" if lo > threshold else "robust" if hi <= threshold else "uncertain"


def verdicts(
    results: Mapping[str, ProbeResult], which: Literal["clean", "adv"] = "adv", threshold: float = DEFAULT_THRESHOLD,
    **bootstrap: Any,
) -> dict[str, dict[str, Any]]:
    """Per layer ``{"drop", "lo", "hi", "verdict", "threshold"}`` (:func:`accuracy_drop`, :func:`verdict`);
    ``bootstrap`` takes ``ci``, ``n_boot`` and ``seed`` (every layer gets the same resamples)."""
    out = {}
    for name, result in results.items():
        drop, lo, hi = accuracy_drop(result, which, **bootstrap)
        out[name] = {"drop": drop, "lo": lo, "hi": hi, "verdict": verdict(lo, hi, threshold), "threshold": threshold}
    return out
