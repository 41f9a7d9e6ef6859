"""The random-null and ablation rows of the findings table, built from a tiny set of planted result files whose
labels are known by construction, and the page's sections and verdicts rendered from them (or from a table that
lacks them)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robustness.filtering import SweepResult, save_results
from robustness.findings import Place, collect_null, make_plan, preset, steps
from robustness.findings.figures import raw_curve_layers
from robustness.findings.sections_null import (
    ablation_section,
    images_section,
    null_invariance_section,
    null_regime_section,
    null_section,
    verdict_ablation,
    verdict_invariance,
    verdict_labels,
    verdict_regimes,
)
from robustness.findings.table import COLUMNS, row
from robustness.findings.tables import Page
from robustness.models import arch_depths
from robustness.probes import ProbeResult
from robustness.study import result_path

N, EPS = 400, 0.1
HALF = np.arange(N) % 2 == 0  # every other image
# per layer of the standard model, the filter's outcomes at the middle of the quantile grid (x = 0.5): all correct
# (it keeps more than the null's half: antifragile), the null's own half (robust) or none (fragile)
STANDARD = {"conv1": np.ones(N, bool), "conv2": HALF, "fc1": np.ones(N, bool), "fc2": np.zeros(N, bool)}
EXPECTED = {"conv1": "antifragile", "conv2": "robust", "fc1": "antifragile", "fc2": "fragile"}


def _sweep(layer: str, middle: np.ndarray) -> SweepResult:
    """A 3-point quantile-grid sweep: every image correct at x = 0, ``middle`` at x = 0.5, none at x = 1; the 3
    null masks keep every other image at x = 0.5."""
    filtered = np.stack([np.ones(N, bool), middle, np.zeros(N, bool)])
    null = np.stack([np.stack([np.ones(N, bool), HALF, np.zeros(N, bool)])] * 3)
    acc = [float(c.mean()) for c in filtered]
    return SweepResult("highpass", layer, 100, 1.0, 1.0, 0.0, 0.0, thresholds=[0.0, 0.5, 1.0], clean_acc=acc,
                       adv_acc=acc, clean_loss=[0.0] * 3, adv_loss=[0.0] * 3, removed=[0, 50, 100],
                       removed_fraction=[0.0, 0.5, 1.0], grid="quantile", clean_correct=filtered,
                       adv_correct=filtered.copy(), ref_clean_correct=np.ones(N, bool),
                       ref_adv_correct=np.ones(N, bool), null_clean_correct=null, null_adv_correct=null.copy())


def _ablated(layer: str, dropped: bool) -> SweepResult:
    outcome = np.zeros(N, bool) if dropped else np.ones(N, bool)
    return ProbeResult(layer, "ablate", float(outcome.mean()), float(outcome.mean()), outcome, outcome, 1.0, 1.0,
                       np.ones(N, bool), np.ones(N, bool)).to_sweep(100)


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, object, Place]:
    """The smoke spec with 3 initialisations, its random-null and ablation files planted: the standard model's
    layers are antifragile, robust, antifragile, fragile against the null; every adversarially trained layer is
    exactly the null (robust); zeroing ``conv1`` costs every image, any other layer none."""
    s = replace(preset("smoke"), train=replace(preset("smoke").train, inits=3))
    at = Place(str(tmp_path_factory.mktemp("models")), str(tmp_path_factory.mktemp("out")))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(steps, "checkpoint_eps", lambda *_: EPS)
        ablations = {}
        for regime, init, epoch in steps.null_checkpoints(s):
            sweeps = [_sweep(x, STANDARD[x] if regime == "standard" else HALF) for x in STANDARD]
            for eps in (None, s.null.common_eps):
                config = steps.null_config(s, at, regime, init, eps)
                save_results({}, sweeps, result_path(config, init, epoch, "highpass", "local"))
            path = steps.ablation_config(s, at, regime, init).path(init, epoch)
            save_results({}, [_ablated(x, x == "conv1") for x in STANDARD], path)
            ablations[regime, init, epoch] = path
        mp.setattr(collect_null, "run_ablations", lambda *_: ablations)
        rows = collect_null.null_rows(s, at) + collect_null.ablation_rows(s, at)
    return pd.DataFrame(rows, columns=list(COLUMNS)), s, at


def test_the_consensus_labels_are_the_planted_ones(planted) -> None:
    frame, _, _ = planted
    got = frame[(frame.section == "null score") & (frame.quantity == "adversarial")]
    standard = got[got.regime == "standard"]
    assert dict(zip(standard.layer, standard.label, strict=True)) == EXPECTED
    assert set(got[got.regime != "standard"].label) == {"robust"}
    adversarial = got[got.regime != "standard"]
    assert np.abs(adversarial[["value", "lo", "hi"]].to_numpy()).max() < 1e-12
    # Simpson over x = 0, 0.5, 1 of (filter - null) = (0 + 4 * 0.5 + 0) / 6 for an antifragile layer
    assert got[(got.regime == "standard") & (got.layer == "conv1")].value.iloc[0] == pytest.approx(1 / 3)
    density = frame[(frame.section == "density score") & (frame.quantity == "adversarial") & (frame.layer == "fc2")]
    assert density.value.tolist() == pytest.approx([-1 / 3, 0.0], abs=1e-12)  # (0 + 4 * (0 - 0.5) + 0) / 6; null


def test_kappa_is_one_for_identical_labels_and_undefined_for_one_label(planted) -> None:
    frame, _, _ = planted
    kappa = frame[(frame.section == "null pairs") & (frame.quantity == "adversarial kappa")]
    assert len(kappa) == 2 * 3  # both regimes, 3 pairs of initialisations
    assert (kappa[kappa.regime == "standard"].value == 1).all()
    assert kappa[kappa.regime != "standard"].value.isna().all()


def test_regime_differences_and_ablation_drops(planted) -> None:
    frame, _, _ = planted
    diff = frame[(frame.section == "null regime") & (frame.quantity == "adversarial difference")]
    assert len(diff) == 4 * 3 and len(frame[frame.section == "common eps"]) > 0
    fc2 = diff[diff.layer == "fc2"]
    assert fc2.value.tolist() == pytest.approx([-1 / 3] * 3) and (fc2.hi < 0).all()
    drops = frame[(frame.section == "ablation consensus") & (frame.quantity == "adversarial drop")]
    assert dict(zip(drops[drops.regime == "standard"].layer, drops[drops.regime == "standard"].value,
                    strict=True)) == {"conv1": 1.0, "conv2": 0.0, "fc1": 0.0, "fc2": 0.0}
    assert len(frame[(frame.section == "ablation rho") & (frame.quantity == "partial rho")]) == 2 * 3


def _page(frame: pd.DataFrame) -> Page:
    settings = {"train.arch": "mnist_cnn", "train.inits": "3", "sweep.thresholds": "3", "null.masks": "3",
                "null.common_eps": "0.1", "null.sequential": "True", "null.looks": "3", "scoring.tau": "0.05"}
    rows = [row("setting", k, text=v) for k, v in settings.items()]
    rows += [row("checkpoint", "eps", EPS, arch="mnist_cnn", regime=r, init=1, epoch=2)
             for r in ("standard", "pgd-linf-eps0.1")]
    return Page(pd.concat([pd.DataFrame(rows, columns=list(COLUMNS)), frame], ignore_index=True))


def test_the_sections_render_the_planted_rows(planted) -> None:
    page = _page(planted[0])
    text = "\n".join(null_section(page))
    assert "| `conv1` | 0.00 |" in text and "**A**" in text and "**F**" in text and "raw_curves.png" in text
    assert "undefined (one label on every layer)" in "\n".join(null_invariance_section(page))
    assert "Moved: `conv1` (+)" in "\n".join(null_regime_section(page))
    assert "partial ρ" in "\n".join(ablation_section(page))
    assert verdict_labels(page).numbers == {"standard": "confirmed", "pgd-linf-eps0.1": "refuted"}
    assert verdict_regimes(page).numbers["same target accuracy"] == "confirmed"
    # κ of the adversarially trained model is undefined (every layer robust), so (b) cannot be confirmed
    assert verdict_invariance(page).outcome == "undecided"
    # its scores are all 0, so ρ(score, drop) is undefined there: 3 checkpoints are too few for the sign test
    assert verdict_ablation(page).outcome == "untestable" and "cannot reach" in verdict_ablation(page).reason


def test_the_images_section_narrows_each_interval_by_its_image_share() -> None:
    # 100 of 400 images: an interval all image noise (share 1) would halve, sqrt(1 - 3/4); one all seed (share 0)
    # would not move. [0.04, 0.10] about 0.07 halves to [0.055, 0.085]: uncertain becomes antifragile (tau 0.05).
    where = {"arch": "mnist_cnn", "regime": "standard", "epoch": 2}
    rows = [row("setting", "scoring.tau", text="0.05"), row("checkpoint", "images", 100, init=1, **where),
            row(collect_null.IMAGE_SHARE, collect_null.AVAILABLE, 400, arch="mnist_cnn", epoch=2)]
    for layer, share in (("conv1", 1.0), ("fc", 0.0)):
        rows += [row("null score", "adversarial", 0.07, 0.04, 0.10, label="uncertain", layer=layer, **where),
                 row(collect_null.IMAGE_SHARE, "adversarial", share, layer=layer, **where)]
    text = "\n".join(images_section(Page(pd.DataFrame(rows, columns=list(COLUMNS)))))
    assert "100 of the 400 test images" in text
    assert "standard: a median 50% (largest 100%), narrowing by a median 25% (at most 50%)" in text
    assert "changes 1 of 2 labels (standard `conv1` adversarial)" in text


def test_a_table_without_the_new_rows_says_which_step_writes_them() -> None:
    page = _page(pd.DataFrame(columns=list(COLUMNS)))
    for section, step in ((null_section, "random-null"), (null_invariance_section, "random-null"),
                          (null_regime_section, "random-null"), (ablation_section, "random-null")):
        lines = [x for x in section(page) if x]
        assert len(lines) == 2 and f"the `{step}` step writes them" in lines[1]
    assert verdict_labels(page).outcome == "untestable" and "random-null" in verdict_labels(page).reason


def test_the_plan_counts_the_new_steps() -> None:
    s = preset("smoke")  # mnist_cnn: 4 layers, every one swept
    found = {p.name: p.work for p in make_plan(s)}
    arch, layers, n = s.train.arch, 4, 60  # evaluated images
    assert min(s.sweep.subset, 1000 - s.sweep.eps_images) == n
    # both regimes: every initialisation at its eps and Init_1 at the common eps, the filter's mask and each null mask
    runs = 2 * (s.train.inits + 1) * (s.null.masks + 1)
    assert found["random-null"][("point", arch)] == runs * (layers * s.sweep.thresholds + 1) * n
    probes = 2 * s.train.inits * (layers + 1)  # both regimes' final checkpoints: each layer zeroed, and the reference
    assert found["ablate"][("bn", arch)] == probes * s.sweep.bn_images
    assert found["ablate"][("attack", arch)] == probes * n and found["ablate"][("forward", arch)] == 2 * probes * n


def test_raw_curve_layers_are_the_stem_a_mid_shortcut_and_the_classifier() -> None:
    assert raw_curve_layers(arch_depths("resnet18", "mnist5k")) == ["conv1", "layer3.0.downsample.0", "fc"]


def test_a_missing_file_is_not_silently_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(steps, "checkpoint_eps", lambda *_: EPS)
    with pytest.raises(Exception, match="Init_1"):
        collect_null.null_sweeps(preset("smoke"), Place(str(tmp_path), str(tmp_path)), "standard", 1)
