"""The findings run: its page is its table's (no drift), its evidence helpers are exact, its verdicts follow
their stated rules, and the whole run works end to end and resumes."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from robustness.attacks import FGSM
from robustness.cli import main
from robustness.errors import InvalidArgument
from robustness.filtering import local_analysis
from robustness.findings import Place, every_kth, load_spec, preset, render, run_findings, run_steps, save_spec
from robustness.findings.check import _clean_correct_only
from robustness.findings.retrain_power import SECTION as POWER
from robustness.findings.retrain_power import power_claim
from robustness.findings.table import row
from robustness.findings.tables import Page, ci

ROOT = Path(__file__).resolve().parents[1]
PAGE, TABLE = ROOT / "docs" / "findings.md", ROOT / "docs" / "findings" / "findings.csv"


def test_the_committed_page_is_its_table_rendered() -> None:
    """docs/findings.md is exactly what its committed table renders to: edit one, and this fails."""
    assert TABLE.is_file() and PAGE.is_file()
    assert render(pd.read_csv(TABLE)) == PAGE.read_text()


def test_the_page_cites_its_figures_and_they_exist() -> None:
    cited = set(re.findall(r"\(findings/(\w+)\.png\)", PAGE.read_text()))
    assert {"raw_curves", "training_curves", "scores_standard", "regimes", "probe", "depth"} <= cited
    assert all((TABLE.parent / f"{name}.png").is_file() for name in cited)


# ---------------------------------------------------------------- the evidence for the sizes


def test_every_third_point_of_25_is_the_9_point_sweep(trained_cnn: torch.nn.Module, batch) -> None:
    """Planted truth: the value grid of 9 thresholds is every third point of the 25-point grid, so reading a
    25-point sweep at every third threshold gives the 9-point sweep's numbers exactly."""
    x, y = batch
    fine = local_analysis(trained_cnn, (x, y), "highpass", FGSM(0.1), 25, layers=["conv2"])["conv2"]
    coarse = local_analysis(trained_cnn, (x, y), "highpass", FGSM(0.1), 9, layers=["conv2"])["conv2"]
    read = every_kth(fine, 3)
    np.testing.assert_allclose(read.thresholds, coarse.thresholds, rtol=0, atol=1e-7)
    assert np.array_equal(read.clean_correct, coarse.clean_correct)
    assert np.array_equal(read.adv_correct, coarse.adv_correct)
    assert read.removed == coarse.removed and read.adv_acc == coarse.adv_acc
    assert len(fine.thresholds) == 25  # the original is left whole


def test_every_kth_refuses_a_grid_that_is_not_a_sub_grid(trained_cnn: torch.nn.Module, batch) -> None:
    x, y = batch
    fine = local_analysis(trained_cnn, (x, y), "highpass", FGSM(0.1), 5, layers=["fc2"])["fc2"]
    with pytest.raises(InvalidArgument, match="no sub-grid of every 3-th point"):
        every_kth(fine, 3)


def test_counting_only_clean_correct_images(trained_cnn: torch.nn.Module, batch) -> None:
    """An image misclassified clean but correct after the attack stops counting; nothing else changes."""
    x, y = batch
    result = local_analysis(trained_cnn, (x, y), "highpass", FGSM(0.1), 3, layers=["fc2"])["fc2"]
    result.clean_correct[1, :3] = False
    result.adv_correct[1, :3] = True
    strict = _clean_correct_only(result)
    assert not strict.adv_correct[1, :3].any()
    assert np.array_equal(strict.adv_correct, result.adv_correct & result.clean_correct)
    assert strict.adv_acc[1] == pytest.approx(float((result.adv_correct[1] & result.clean_correct[1]).mean()))


# ---------------------------------------------------------------- verdicts by their rules


def test_claim_c_on_the_page_is_the_power_retraining_verdict_with_its_rule() -> None:
    """(c)'s row and rule are power_claim's; without the power step's rows the claim is untestable and says which
    step writes them."""
    from test_findings_power import _planted

    committed = pd.read_csv(TABLE)
    mine = power_claim(Page(committed))
    assert f"| {mine.reason} | **{mine.outcome}** |" in render(committed)
    others = committed[committed.section != POWER]
    assert "the `power` step writes them | **untestable** |" in render(others)
    planted = _planted((0.05, 0.02, 0.08), 0.3).frame
    claim = power_claim(Page(planted))
    text = render(pd.concat([others, planted], ignore_index=True))
    assert claim.outcome == "confirmed" and f"| {claim.reason} | **confirmed** |" in text
    assert f"- (c) {claim.rule}." in text and "## (c) Retraining that can tell" in text


def test_intervals_print_with_their_sign() -> None:
    assert ci(0.1234, 0.1, 0.15) == "+0.123 [+0.100, +0.150]"
    assert ci(0.5, math.nan, math.nan) == "+0.500"
    assert ci(math.nan, 0, 1) == "-"


def test_a_row_names_only_columns_of_the_table() -> None:
    with pytest.raises(ValueError, match="not columns"):
        row("score", "x", layr="conv1")


# ---------------------------------------------------------------- the whole run


def _checkout_state() -> tuple[str, dict[str, str]]:
    """The checkout's untracked files and the committed page's files (a run must add or change none)."""
    untracked = subprocess.run(["git", "ls-files", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout
    return untracked, {p.name: p.read_bytes().hex() for p in [PAGE, *TABLE.parent.iterdir()]}


@pytest.mark.slow
def test_the_smoke_preset_plans_first_stays_in_its_folders_resumes_and_refuses_another_subset(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The command line end to end: the plan before any work, the page, table, figures and spec in the run's own
    folders (nothing in the checkout), a rerun that recomputes nothing, and a changed subset refused."""
    monkeypatch.chdir(ROOT)  # a relative default would land in the checkout
    before = _checkout_state()
    models, out = tmp_path / "models", tmp_path / "out"
    command = ["findings", "--preset", "smoke", "--models-root", str(models), "--out", str(out), "--device", "cpu"]
    assert main(command) == 0
    printed = capsys.readouterr().out
    assert printed.index("plan of the smoke preset") < printed.index("[1/10]")
    total = re.search(r"total +(\d+) s", printed)
    assert total and int(total.group(1)) > 0
    assert _checkout_state() == before

    s, at = preset("smoke"), Place(str(models), str(out))
    frame = pd.read_csv(at.table)
    assert at.page.read_text() == render(frame)
    assert {"setting", "time", "score", "checkpoint", "check", "skip", "over inits", "over epochs", "regime",
            "regime trend", "probe", "probe agreement", "retrain by adversarial", "retrain by difference", "null score",
            "density score", "null init score", "null pairs", "null regime", "common eps", "ablation",
            "ablation consensus", "ablation rho", "pgd scores", "pgd agreement", "field report", "training curve",
            "power retraining"} <= set(frame.section)
    settings = frame[frame.section == "setting"]
    settings = dict(zip(settings.quantity, settings.text, strict=True))
    assert settings["scoring.baseline"] == "density" and settings["train.subset"] == "1000"  # every nested setting
    assert frame.flagged.dtype == bool
    assert set(frame[frame.section == "regime"].other_label) <= {"fragile", "robust", "antifragile", "uncertain"}
    scores = frame[frame.section == "score"]
    assert set(scores.regime) == set(s.regimes)
    assert ((scores.lo <= scores.value + 1e-9) & (scores.value <= scores.hi + 1e-9)).all()
    eps = frame[(frame.section == "checkpoint") & (frame.quantity == "adversarial accuracy")]
    assert ((eps.value - s.sweep.calibrate_eps).abs() < 0.2).all()  # calibrated (on other images) towards the target
    figures = sorted(at.figures.glob("*.png"))
    assert len(figures) == 8 and {at.figures / "raw_curves.png", at.figures / "training_curves.png"} <= set(figures)
    assert load_spec(models) == s == load_spec(out / "spec.json")
    record = json.loads((models / "run.json").read_text())
    # each timed as it computed
    assert set(record["steps"]) == {"train", "sweep", "random-null", "ablate", "check", "pgd", "probe", "report",
                                    "retrain", "power"}

    page_before, table_before = at.page.read_text(), at.table.read_text()
    figures_before = {p: p.stat().st_mtime_ns for p in figures}
    assert main(command) == 0
    assert json.loads((models / "run.json").read_text()) == record  # nothing recomputed
    assert at.page.read_text() == page_before and at.table.read_text() == table_before
    assert {p: p.stat().st_mtime_ns for p in figures} == figures_before  # not redrawn

    edited = json.loads((models / "spec.json").read_text())
    edited["train"]["subset"] = 500
    (tmp_path / "edited.json").write_text(json.dumps(edited))
    capsys.readouterr()
    assert main([*command, "--spec", str(tmp_path / "edited.json")]) == 2
    assert "first train.subset: 1000 there, 500 in this run" in capsys.readouterr().err


@pytest.mark.slow
def test_under_torchrun_the_steps_are_dealt_and_the_table_equals_one_process(tmp_path: Path) -> None:
    """Two gloo processes share out the sweeps, checks, PGD sweeps and probes (report and retraining on rank 0) of a
    small study on the same checkpoints; the table they write equals one process's, less the seconds."""
    from test_distributed import torchrun

    s = preset("smoke")
    s = replace(s, sweep=replace(s.sweep, layers=("conv1", "conv2", "fc2")), check=replace(s.check, layers=("fc2",)))
    alone = Place(str(tmp_path / "alone"), str(tmp_path / "alone" / "page"), device="cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in torchrun's processes: CPU convolutions round alike only with equal thread counts
    try:
        run_steps(s, alone, only=("train",))
        shutil.copytree(alone.models_root, tmp_path / "sharded")
        run_findings(s, alone)
    finally:
        torch.set_num_threads(threads)
    save_spec(s, tmp_path / "spec")
    out = torchrun("findings", "--spec", str(tmp_path / "spec" / "spec.json"), "--models-root",
                   str(tmp_path / "sharded"), "--out", str(tmp_path / "sharded" / "page"), "--device", "cpu",
                   cwd=tmp_path).stdout
    assert out.count("plan of the smoke preset") == 1, "only rank 0 plans and prints"
    expected, found = (pd.read_csv(Path(root) / "page" / "findings" / "findings.csv")
                       for root in (alone.models_root, tmp_path / "sharded"))
    pd.testing.assert_frame_equal(found[found.section != "time"].reset_index(drop=True),
                                  expected[expected.section != "time"].reset_index(drop=True))
