"""The demo's table and pages: the committed README block and docs/demo.md are what the committed demo table renders
to; planted tables render to the cells they must; the block is rewritten between its markers and nowhere else."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from robustness.errors import InvalidArgument
from robustness.findings import Place, preset
from robustness.findings.collect import settings_rows
from robustness.findings.demo_page import (
    BEGIN,
    END,
    SHIPPED,
    DemoPages,
    current_block,
    demo_rows,
    readme_block,
    render_demo,
    with_block,
    write_demo_pages,
)
from robustness.findings.table import COLUMNS, row

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
TABLE, PAGE = ROOT / SHIPPED.table, ROOT / SHIPPED.page


def test_the_committed_demo_pages_are_the_committed_table_rendered() -> None:
    """README.md's demo block and docs/demo.md are exactly what docs/demo/demo.csv renders to: edit one, and this
    fails. (Until `make demo` has written the table once, the README's block is the hand-typed one: skipped.)"""
    if not TABLE.is_file():
        pytest.skip(f"no committed demo table at {SHIPPED.table} yet: `make demo` writes it")
    table = pd.read_csv(TABLE)
    assert current_block(README.read_text()) == readme_block(table)
    assert PAGE.read_text() == render_demo(table)


def test_the_readme_holds_the_demo_block_and_stays_short() -> None:
    text = README.read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1 and text.index(BEGIN) < text.index(END)
    assert len(README.read_bytes()) < 12_000
    top = text.split("```bash\n", 1)[1].split("```", 1)[0]  # the set-up-free commands at the top
    assert [line.split()[:2] for line in top.splitlines()] == [["make", "demo"], ["make", "test"]]


def _planted() -> pd.DataFrame:
    """A demo table of two layers and two initialisations whose cells are known by construction."""
    spec = preset("demo")
    record = {"steps": {"training": {"seconds": 47.0, "runs": 1}, "sweeps": {"seconds": 351.4, "runs": 2}}}
    rows = [*settings_rows(spec, Place("m", "o", device="cpu"), record), row("setting", "cores", text="2")]
    where = {"arch": "resnet18", "regime": "standard", "epoch": 2}
    for init, eps in ((1, 0.07371), (2, 0.0938)):
        rows += [row("checkpoint", "eps", eps, init=init, **where),
                 row("checkpoint", "clean accuracy", 0.962, 0.941, 0.976, init=init, **where),
                 row("checkpoint", "adversarial accuracy", 0.514, 0.47, 0.558, init=init, **where)]
    scores = {("conv1", "clean"): ((0.1, "robust"), (0.3, "robust")),
              ("conv1", "adversarial"): ((-0.2, "fragile"), (0.0, "uncertain")),
              ("conv1", "difference"): ((-0.3, "fragile"), (-0.2, "fragile")),
              ("fc", "clean"): ((0.4, "antifragile"), (0.4, "antifragile")),
              ("fc", "adversarial"): ((0.5, "antifragile"), (0.3, "antifragile")),
              ("fc", "difference"): ((0.1, "uncertain"), (0.1, "uncertain"))}
    for (layer, score), found in scores.items():
        for init, (value, label) in enumerate(found, 1):
            rows.append(row("score", f"highpass {score}", value, value - 0.1, value + 0.1, label=label, init=init,
                            layer=layer, **where))
    cell = {"init": 1, "layer": "fc", **where}
    rows += [row("recheck", "adversarial", label="antifragile", other_label="robust", **cell),
             row("recheck", "gain", 0.02, flagged=True, **cell), row("recheck", "se", 0.005, **cell)]
    rows += [row("over inits", "adversarial agreement", 0.5, 0.0, 1.0, "Init_1 vs Init_2", **where),
             row("over inits", "adversarial rho", 1.0, math.nan, math.nan, "Init_1 vs Init_2", **where)]
    rows += [row("defense", "worst_case", 0.38, 0.26, 0.52, "preemptive/predicted"),
             row("defense", "gain", 0.28, 0.16, 0.42, "preemptive/predicted"),
             row("defense", "white-box - square", -0.1, -0.2, 0.0, "preemptive/predicted"),
             *(row("defense distance", f"worst_case {k}", v, text="preemptive/predicted")
               for k, v in (("mean", 0.39), ("max", 0.4), ("bound", 0.4)))]
    retrain = {"arch": "resnet18", "regime": "standard", "init": 1, "epoch": 2}
    for variant, layers, fgsm, vs in (("none", "", 0.512, None), ("robust+antifragile", "fc", 0.509, (-0.003, 0.004))):
        rows += [row("retrain by adversarial", m, fgsm, text=variant, layer=layers, **retrain)
                 for m in ("clean", "fgsm", "pgd")]
        if vs:
            rows.append(row("retrain by adversarial", "fgsm vs random", vs[0], -0.01, 0.02, variant, layer=layers,
                            **retrain))
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return pd.read_csv(pd.io.common.StringIO(frame.to_csv(index=False)))  # as the CSV reads back


def test_a_planted_table_renders_to_its_cells() -> None:
    block = readme_block(_planted())
    assert block.startswith(BEGIN) and block.endswith(END)
    assert "6 min 38 s of computing on cpu, 2 cores: training 47 s, sweeps 5 min 51 s" in block
    assert "| Init_1, epoch 2 | 0.0737 | 0.962 [0.941, 0.976] | 0.514 [0.470, 0.558] |" in block
    # mean ± SD over the initialisations, one letter per initialisation, the consensus only when all agree
    assert "| `conv1` | +0.200 ± 0.141 RR → **robust** | -0.100 ± 0.141 FU → **uncertain** |" in block
    assert "| **confident** | 2 of 2 | 1 of 2 | 1 of 2 |" in block
    assert "labels FGSM → PGD: adversarial antifragile → robust;" in block
    assert "+0.020 (SE 0.005), beyond 2 SE: FGSM overstates" in block
    assert "4 layers at 9 thresholds on 500 other test images" in block and "τ = 0.05." in block


def test_the_page_renders_the_defense_invariance_and_retraining() -> None:
    page = render_demo(_planted())
    assert "| worst_case | 0.380 [0.260, 0.520] |" in page and "| gain | +0.280 [+0.160, +0.420] |" in page
    assert "| white-box - square | -0.100 [-0.200, +0.000] |" in page  # not flagged: no masking mark
    assert "| worst_case | 0.390 / 0.400 ≤ 0.4 |" in page
    assert "| Init_1 vs Init_2 | adversarial | 0.50 [0.00, 1.00] | +1.00 |" in page
    assert "is indistinguishable from retraining as many random layers" in page
    assert "labels every initialisation agrees on): `fc`." in page
    assert "| `sweep.thresholds` | `9` |" in page


def test_the_block_is_rewritten_between_its_markers_only(tmp_path: Path) -> None:
    text = f"top\n{BEGIN}\nhand-typed\n{END}\nbottom\n"
    assert with_block(text, f"{BEGIN}\nnew\n{END}", "R") == f"top\n{BEGIN}\nnew\n{END}\nbottom\n"
    with pytest.raises(InvalidArgument, match="lacks the demo block's marker lines"):
        with_block("no markers\n", "x", "README.md")
    readme = tmp_path / "README.md"
    readme.write_text(text)
    pages = DemoPages(str(tmp_path / "docs"), readme=str(readme))
    with pytest.raises(InvalidArgument, match="run `python -m robustness demo` first"):
        write_demo_pages(pages)
    frame = _planted()
    assert write_demo_pages(pages, frame) == [pages.table, pages.page, readme]
    assert write_demo_pages(pages, frame) == [] and write_demo_pages(pages) == []  # nothing changed: nothing written
    table = pd.read_csv(pages.table)
    assert current_block(readme.read_text()) == readme_block(table) and pages.page.read_text() == render_demo(table)
    assert readme.read_text().startswith("top\n") and readme.read_text().endswith("\nbottom\n")


def test_demo_rows_keep_every_number_typed() -> None:
    """What the demo computed goes into typed columns: labels and flags in their own columns, nothing packed."""
    table = SimpleNamespace(scope="local", kind="highpass", score="adversarial", layers=["fc"], epochs=[2],
                            inits=[1, 2], init_labels=[[["robust", None]]], per_init=np.array([[[0.25, 0.3]]]),
                            lo=np.array([[[0.2, 0.1]]]), hi=np.array([[[0.3, 0.5]]]),
                            checkpoints={(1, 2): {"eps": 0.07, "n_images": 500, "ref_clean_acc": 0.9,
                                                  "ref_clean_lo": 0.8, "ref_clean_hi": 0.95, "ref_adv_acc": 0.5,
                                                  "ref_adv_lo": 0.4, "ref_adv_hi": 0.6}})
    comparison = SimpleNamespace(pairs=[{"a": "Init_1", "b": "Init_2", "score": "adversarial", "agreement": 1.0,
                                         "agreement_lo": 0.5, "agreement_hi": 1.0, "rho": 0.8, "rho_lo": 0.1,
                                         "rho_hi": 1.0}])
    recheck = [{"init": 1, "epoch": 2, "filter": "highpass", "layer": "fc", "fgsm adversarial": "robust",
                "fgsm difference": "uncertain", "pgd adversarial": "fragile", "pgd difference": "uncertain",
                "gain": 0.03, "se": 0.01, "flagged": True}]
    defense = {"preemptive/predicted": {"worst_case": 0.4, "intervals": {"worst_case": [0.3, 0.5]}, "gain": 0.2,
                                        "gain_interval": [0.1, 0.3], "masking_gap": 0.1,
                                        "masking_gap_interval": [0.05, 0.2], "gradient_masking": True,
                                        "distances": {"worst_case": {"mean": 0.3, "max": 0.4, "bound": 0.4}}}}
    retraining = [{"variant": "none", "layers": [], "clean": 0.9, "fgsm": 0.5, "pgd": 0.4},
                  {"variant": "robust+antifragile", "layers": ["fc", "conv1"], "clean": 0.9, "fgsm": 0.52, "pgd": 0.41,
                   "fgsm_vs_none": 0.02, "fgsm_vs_none_lo": -0.01, "fgsm_vs_none_hi": 0.05}]
    frame = demo_rows(preset("smoke"), Place("m", "o", device="cpu"), {"steps": {}}, tables=[table], recheck=recheck,
                      comparison=comparison, defense=defense, retraining=retraining)
    assert list(frame.columns) == list(COLUMNS)
    scores = frame[frame.section == "score"]
    assert scores.value.tolist() == [0.25] and scores.label.tolist() == ["robust"]  # the unlabelled cell is left out
    assert frame[(frame.section == "checkpoint") & (frame.quantity == "clean accuracy")][["value", "lo", "hi"]].values \
        .tolist() == [[0.9, 0.8, 0.95]]
    rechecked = frame[frame.section == "recheck"].set_index("quantity")
    assert rechecked.loc["adversarial", ["label", "other_label"]].tolist() == ["robust", "fragile"]
    assert bool(rechecked.loc["gain", "flagged"]) and rechecked.loc["se", "value"] == 0.01
    masking = frame[frame.quantity == "white-box - square"]
    assert masking.flagged.tolist() == [True] and masking.text.tolist() == ["preemptive/predicted"]
    assert frame[frame.section == "over inits"].text.tolist() == ["Init_1 vs Init_2"] * 2
    chosen = frame[(frame.section == "retrain by adversarial") & (frame.text == "robust+antifragile")]
    assert set(chosen.layer) == {"fc conv1"} and "fgsm vs none" in set(chosen.quantity)
    assert {"train.arch", "scoring.baseline", "device used", "cores"} <= set(frame[frame.section == "setting"].quantity)
