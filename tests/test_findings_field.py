"""The models as the field reports them (robustness.findings.field_report): the step on a tiny model, its rows,
its section and figure."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from robustness.errors import InvalidArgument
from robustness.findings import Place, preset
from robustness.findings.field_report import (
    ATTACKS,
    CURVES,
    SECTION,
    FieldReport,
    curves_figure,
    field_rows,
    field_section,
    report_folder,
    run_field_report,
)
from robustness.findings.steps import train_config
from robustness.findings.table import COLUMNS
from robustness.findings.tables import Page
from robustness.training import train


def test_the_step_writes_the_report_and_curves_resumes_and_renders(tmp_path) -> None:
    s = preset("smoke")
    s = replace(s, train=replace(s.train, inits=1, epochs=1, subset=300), lowpass_inits=(1,))
    at = Place(str(tmp_path / "models"), str(tmp_path / "out"), device="cpu")
    train(train_config(s, at, 0))
    train(train_config(s, at, 1))
    folder = run_field_report(s, at)
    written = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.npz")}
    # 2 regimes x (2 eps + 2 curve epochs)
    assert len(written) == 2 * (2 + 2)
    run_field_report(s, at)
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("*.npz")} == written, "a rerun reads back"
    frame = pd.DataFrame(field_rows(s, at), columns=list(COLUMNS))
    report = frame[(frame.section == SECTION) & (frame.text != "")]
    assert len(report) == 2 * 2 * len(ATTACKS)
    for _, group in report.groupby(["regime", "text"]):
        acc = {r.quantity: r.value for r in group.itertuples()}
        # the worst case is at most every member and clean accuracy; every accuracy lies in its interval
        assert acc["worst"] <= min(acc[a] for a in ATTACKS)
    assert ((report.lo <= report.value) & (report.value <= report.hi)).all()
    curves = frame[frame.section == CURVES]
    assert sorted(curves.epoch.unique()) == [0, 1] and len(curves) == 2 * 2 * 2
    page = Page(frame)
    text = "\n".join(field_section(page))
    assert "worst case" in text and "training_curves.png" in text
    assert curves_figure(page).axes


def test_rows_of_planted_outcomes_carry_wilson_intervals_and_the_masking_flag(tmp_path) -> None:
    s = replace(preset("smoke"), field_report=FieldReport(eps=(0.1,), images=100))
    at = Place(str(tmp_path), str(tmp_path / "out"))
    folder = report_folder(s, at)
    n = 100
    ones = np.ones(n, bool)
    square = np.arange(n) < 40  # Square: 40 %; PGD 80 %: far above it, flagged
    outcomes = {"clean": ones, "pgd": np.arange(n) < 80, "apgd-ce": square, "apgd-dlr": square, "square": square,
                "worst": square}
    from robustness.files import save_npz

    for regime in s.regimes:
        save_npz(folder / f"{regime}_Init_1_eps0.1.npz", **outcomes)
    frame = pd.DataFrame(field_rows(s, at), columns=list(COLUMNS))
    pgd = frame[(frame.quantity == "pgd") & (frame.text == "0.1")].iloc[0]
    assert pgd.value == 0.8 and pgd.flagged and 0.7 < pgd.lo < 0.8 < pgd.hi < 0.9
    assert not frame[frame.quantity == "apgd-ce"].flagged.any()
    assert "†" in "\n".join(field_section(Page(frame)))


def test_the_settings_refuse_nonsense() -> None:
    with pytest.raises(InvalidArgument, match="eps"):
        FieldReport(eps=(0.0,))
    with pytest.raises(InvalidArgument, match="square_queries"):
        FieldReport(square_queries=0)
