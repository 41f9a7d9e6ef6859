"""The main job in tiny settings: every step runs, and a rerun writes nothing."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from robustness.demo import run_demo
from robustness.figures import tsne_plot_name
from robustness.findings import Place, preset
from robustness.findings.demo_page import STEPS, render_demo

pytestmark = pytest.mark.slow  # the whole demo, twice


def test_demo_runs_every_step_and_a_rerun_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = preset("smoke")
    spec = replace(spec, recheck=replace(spec.recheck, limit=1))  # as the demo preset: the most robust-looking layer
    at = Place(str(tmp_path / "saved_models"), str(tmp_path / "plots"), device="cpu")
    first = run_demo(spec, at)
    names = {Path(p).name for p in first["written"]}
    assert "MnistCNN_MNIST5K_2epochs.ckpt" in names
    assert {"Step_minmax", "reports", "retraining"} <= {Path(p).parent.name for p in first["written"]}
    tsne = tsne_plot_name(spec.defense_arch, spec.train.dataset, "linf", "predicted")
    assert {f"{tsne}.png", f"{tsne}.pdf"} <= names and any("_scores_" in n for n in names)
    assert any(n.startswith("compare_") for n in names) and any("pgd_recheck" in n for n in names)
    assert set(first["eps"]) == {"Init_1", "Init_2"} and all(0 < eps < 1 for eps in first["eps"].values())
    # Every local label of both initialisations is counted, confident or not.
    assert all(sum(counts.values()) == 4 for counts in first["labels"].values())
    assert len(first["recheck"]) == 1  # the one most robust-looking layer of Init_1
    # The oracle mode, which no deployed system can use, only preemptively; Square there and on the undefended model.
    assert set(first["defense"]) == {"preemptive/predicted", "preemptive/oracle", "test-time/predicted"}
    assert "square" in first["defense"]["preemptive/oracle"] and "square" not in first["defense"]["test-time/predicted"]
    assert "undefended_square" not in first["defense"]["test-time/predicted"]
    assert [row["variant"] for row in first["retraining"]][:4] == ["none", "robust+antifragile", "all", "fragile"]

    second = run_demo(spec, at)
    assert second["written"] == []
    assert second["eps"] == first["eps"] and second["labels"] == first["labels"]
    assert second["recheck"] == first["recheck"] and second["defense"] == first["defense"]
    assert second["changed"] == []  # the table and its page too
    out = capsys.readouterr().out
    assert "everything was reused" in out and "| **confident** |" in out
    assert "## Invariance across initialisations" in out
    # The table holds what the run computed, and the page printed and written is that table rendered.
    page = tmp_path / "saved_models" / "page"
    table = pd.read_csv(page / "demo" / "demo.csv")
    assert (page / "demo.md").read_text() == render_demo(table) and render_demo(table) in out
    assert set(table[table.section == "time"].quantity) == set(STEPS)
    assert 0 < len(table[table.section == "score"]) <= 2 * 4 * 3  # 2 initialisations, 4 layers, 3 scores
