"""Scores under PGD beside FGSM (robustness.findings.pgd_scores): the step on the smoke sweep, rows, section."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

from robustness.findings import Place, preset
from robustness.findings.pgd_scores import AGREEMENT, SECTION, pgd_rows, pgd_section
from robustness.findings.steps import study_config, train_config
from robustness.findings.table import COLUMNS
from robustness.findings.tables import Page
from robustness.study import run_study
from robustness.training import train


@pytest.mark.slow  # trains both regimes and sweeps them: about a minute on 2 busy cores
def test_every_layer_is_swept_with_pgd_and_the_labels_compared(tmp_path) -> None:
    s = preset("smoke")
    s = replace(s, train=replace(s.train, inits=1, epochs=1, subset=300), lowpass_inits=(1,), early_epoch=1)
    at = Place(str(tmp_path / "models"), str(tmp_path / "out"), device="cpu")
    for regime in (0, 1):
        train(train_config(s, at, regime))
    for regime in s.regimes:
        run_study(study_config(s, at, regime))
    frame = pd.DataFrame(pgd_rows(s, at), columns=list(COLUMNS))
    layers = frame[frame.section == SECTION].layer.unique()
    assert sorted(layers) == ["conv1", "conv2", "fc1", "fc2"], "every layer, not only the re-check's candidates"
    agree = frame[frame.section == AGREEMENT]
    assert len(agree) == 2 * 2 * 3  # regimes x scores x (agreement, kappa, changes)
    for (regime, score), group in frame[frame.section == SECTION].assign(
            score=lambda f: f.quantity.str.split().str[-1]).groupby(["regime", "score"]):
        if score == "gain":
            continue
        fgsm = group[group.quantity == f"fgsm {score}"]
        changed = int((fgsm.label != fgsm.other_label).sum())
        row = agree[(agree.regime == regime) & (agree.quantity == f"{score} labels changed")].iloc[0]
        assert row.value == changed and row.text == "4"
        kept = fgsm[(fgsm.label != "undefined") & (fgsm.other_label != "undefined")]
        share = agree[(agree.regime == regime) & (agree.quantity == f"{score} agreement")].value.iloc[0]
        if len(kept) >= 2:
            assert share == (kept.label == kept.other_label).mean()
    again = pd.DataFrame(pgd_rows(s, at), columns=list(COLUMNS))
    pd.testing.assert_frame_equal(again, frame)  # the PGD sweeps are read back: the same rows
    text = "\n".join(pgd_section(Page(frame)))
    assert "Scores under PGD beside FGSM" in text and "labels changed" in text


def test_the_section_says_when_kappa_is_undefined_and_marks_flagged_gains() -> None:
    from robustness.findings.table import row

    cell = {"arch": "a", "regime": "standard", "init": 1, "epoch": 3}
    rows = []
    for score in ("adversarial", "difference"):
        rows += [row(AGREEMENT, f"{score} agreement", 1.0, 1.0, 1.0, **cell),
                 row(AGREEMENT, f"{score} kappa", float("nan"), text="undefined: one label covers every layer",
                     **cell),
                 row(AGREEMENT, f"{score} labels changed", 0, text="2", **cell)]
        for layer in ("x", "y"):
            rows += [row(SECTION, f"fgsm {score}", 0.1, 0.0, 0.2, label="robust", other_label="robust", layer=layer,
                         **cell),
                     row(SECTION, f"pgd {score}", 0.1, 0.0, 0.2, label="robust", layer=layer, **cell)]
    rows += [row(SECTION, "gain", 0.05, 0.01, 0.09, flagged=True, layer="x", **cell),
             row(SECTION, "gain", 0.0, -0.02, 0.02, layer="y", **cell)]
    text = "\n".join(pgd_section(Page(pd.DataFrame(rows, columns=list(COLUMNS)))))
    assert "undefined: one label covers every layer" in text and "0 of 2" in text
    assert "+0.050 [+0.010, +0.090] †" in text and "+0.000 [-0.020, +0.020] |" in text
