"""Sweeps with planted per-image outcomes, for the scores, tables, plots and compare tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from robustness.filtering import SweepResult


def nested(accuracies: Sequence[float] | np.ndarray, n: int) -> np.ndarray:
    """Per-image outcomes whose accuracy is exactly each of ``accuracies`` (images ``0 … k−1`` correct):
    shape ``accuracies.shape + (n,)``."""
    accuracies = np.asarray(accuracies, dtype=float)
    counts = np.rint(accuracies * n)
    assert np.allclose(counts / n, accuracies, atol=1e-12), "a planted accuracy must be a multiple of 1/n"
    return np.arange(n) < counts[..., None]


def sweep_from_outcomes(
    clean: np.ndarray, adv: np.ndarray, ref_clean: np.ndarray, ref_adv: np.ndarray, removed_fraction, *,
    null_clean: np.ndarray | None = None, null_adv: np.ndarray | None = None, layer: str | None = "conv1",
    kind: str = "highpass",
) -> SweepResult:
    """A sweep whose accuracy lists are the means of the given per-image outcomes."""
    t = len(clean)
    result = SweepResult(
        kind=kind, layer=layer, total=1000, ref_clean_acc=float(ref_clean.mean()), ref_adv_acc=float(ref_adv.mean()),
        ref_clean_loss=0.5, ref_adv_loss=1.5, thresholds=list(np.linspace(-1, 1, t)),
        clean_acc=list(clean.mean(1)), adv_acc=list(adv.mean(1)), clean_loss=[0.5] * t, adv_loss=[1.5] * t,
        removed=[round(1000 * f) for f in removed_fraction], removed_fraction=list(removed_fraction),
    )
    arrays = {"clean_correct": clean, "adv_correct": adv, "ref_clean_correct": ref_clean, "ref_adv_correct": ref_adv,
              "null_clean_correct": null_clean, "null_adv_correct": null_adv}
    for name, value in arrays.items():
        setattr(result, name, value)
    return result


def planted(
    clean_rel, adv_rel, removed_fraction, *, ref_clean: float = 0.8, ref_adv: float = 0.4, n: int = 200,
    layer: str | None = "conv1", kind: str = "highpass", null: bool = False,
) -> SweepResult:
    """A sweep of ``n`` images whose accuracies are exactly ``ref * relative curve`` (nested outcomes);
    ``null=True`` gives it a null model of 2 masks equal to the sweep itself."""
    clean = nested(ref_clean * np.asarray(clean_rel, dtype=float), n)
    adv = nested(ref_adv * np.asarray(adv_rel, dtype=float), n)
    return sweep_from_outcomes(
        clean, adv, nested(ref_clean, n), nested(ref_adv, n), removed_fraction, layer=layer, kind=kind,
        null_clean=np.stack([clean, clean]) if null else None, null_adv=np.stack([adv, adv]) if null else None,
    )


def latent(probabilities: np.ndarray, ref: float, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random outcomes of ``n`` images, each with a latent difficulty ``u ~ U(0, 1)``: correct at a threshold
    whose accuracy is ``p`` iff ``u < p`` (a hard image stays hard), at the reference iff ``u < ref``."""
    u = rng.random(n)
    return u < np.asarray(probabilities, dtype=float)[:, None], u < ref
