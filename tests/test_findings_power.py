"""(c) with power (robustness.findings.retrain_power): the step on a tiny model, its rows, its verdict branches."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from robustness.errors import InvalidArgument
from robustness.findings import Place, preset
from robustness.findings.retrain_power import (
    SECTION,
    PowerRetraining,
    power_claim,
    power_rows,
    power_section,
    run_power_retraining,
)
from robustness.findings.steps import train_config
from robustness.findings.table import COLUMNS, row
from robustness.findings.tables import Page
from robustness.models import build_model, filterable_layers
from robustness.training import train


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory):
    """The smoke spec (one initialisation) and a place holding its standard regime's checkpoints."""
    root = tmp_path_factory.mktemp("power")
    s = preset("smoke")
    s = replace(s, train=replace(s.train, inits=1), lowpass_inits=(1,))
    at = Place(str(root / "models"), str(root / "out"), device="cpu")
    train(train_config(s, at, 0))
    return s, at


def _scores(s) -> dict[str, float]:
    layers = [name for name, _ in filterable_layers(build_model(s.train.arch, s.train.dataset))]
    return {x: float(i) for i, x in enumerate(reversed(layers))}  # the first layer scores highest


def test_the_step_writes_rows_resumes_and_says_untestable_when_k_overlaps(smoke) -> None:
    s, at = smoke
    s = replace(s, power_retraining=replace(s.power_retraining, k=1))
    result = run_power_retraining(s, at, _scores(s))
    # mnist_cnn's layers fall in depth bins of one layer each: a stratified random set of k = 1 is the chosen
    # layer itself (overlap 100 %), so only top and bottom train: 2 sets x 2 seeds x 2 retrainings
    assert result["runs"] == 2 * 2 * 2
    assert {c["retraining"] for c in result["comparisons"]} == {"standard", "pgd-linf-eps0.1"}
    assert result["variants"]["top"] == ["conv1"]
    again = run_power_retraining(s, at, _scores(s))
    assert again == result, "a rerun reads the result back"
    rows = power_rows(s, at)
    assert set(pd.DataFrame(rows).columns) <= set(COLUMNS)
    page = Page(pd.DataFrame(rows, columns=list(COLUMNS)))
    text = "\n".join(power_section(page))
    assert "margin, fixed before the run: **0.01**" in text
    for c in result["comparisons"]:
        assert -1 <= c["lo"] <= c["diff"] <= c["hi"] <= 1
    assert all(c["overlap"] == 1.0 for c in result["comparisons"])
    assert power_claim(page).outcome == "untestable"


def test_scores_must_cover_every_layer(smoke) -> None:
    s, at = smoke
    with pytest.raises(InvalidArgument, match="no random-null score"):
        run_power_retraining(s, at, {"conv1": 1.0})


def test_the_settings_refuse_nonsense() -> None:
    with pytest.raises(InvalidArgument, match="margin"):
        PowerRetraining(margin=-0.1)
    with pytest.raises(InvalidArgument, match="random_sets"):
        PowerRetraining(random_sets=1)


def _planted(diff: tuple[float, float, float], overlap: float, margin: float = 0.01, k: int = 2) -> Page:
    where = {"arch": "a", "init": 1, "epoch": 3}
    rows = [row(SECTION, name, value, **where) for name, value in
            (("k", k), ("margin", margin), ("seeds", 5), ("epochs", 1), ("random sets", 10), ("train images", 500),
             ("test images", math.nan), ("eps", 0.1))]
    rows.append(row(SECTION, "seconds per run", 2.0, text="10", **where))
    for regime in ("standard", "pgd"):
        for chosen in ("top", "bottom"):
            cell = {**where, "regime": regime, "layer": "x y"}
            # the drawn sets' overlap differs from the design's: the verdict follows the design
            rows += [row(SECTION, "overlap", overlap + 0.05, text=chosen, **cell),
                     row(SECTION, "design overlap", overlap, text=chosen, **cell)]
            for metric in ("clean", "pgd"):
                rows += [row(SECTION, f"{metric} difference", *diff, chosen, **cell)]
                rows += [row(SECTION, f"{metric} {what}", 0.5, text=chosen, **cell)
                         for what in ("chosen", "random", "none")]
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return Page(frame)


@pytest.mark.parametrize(("diff", "overlap", "verdict"), [
    ((0.05, 0.02, 0.08), 0.3, "confirmed"),
    ((0.05, 0.02, 0.08), 0.6, "untestable"),  # more than half shared: untestable whatever the interval
    ((-0.02, -0.04, 0.0), 0.3, "refuted"),
    ((0.01, -0.01, 0.03), 0.3, "undecided"),
    ((0.015, 0.005, 0.02), 0.5, "undecided"),  # at exactly one half still testable (drawn: 55 %); contains the margin
])
def test_the_section_verdict_follows_overlap_and_margin(diff, overlap, verdict) -> None:
    page = _planted(diff, overlap)
    assert power_claim(page).outcome == verdict
    text = "\n".join(power_section(page))
    assert f"**{verdict}**" in text and "**0.01**" in text
    assert f"| {overlap:.0%} ({overlap + 0.05:.0%}) |" in text


def test_no_testable_k_is_untestable_in_the_section() -> None:
    page = _planted((0.05, 0.02, 0.08), 0.3, k=0)
    assert "**untestable**" in "\n".join(power_section(page))


def test_rows_of_a_planted_result_file(tmp_path: Path) -> None:
    s, at = preset("smoke"), Place(str(tmp_path), str(tmp_path / "out"))
    from robustness.files import save_json
    from robustness.findings.retrain_power import power_folder

    comparisons = [{"retraining": r, "chosen": c, "metric": m, "overlap": 0.25, "diff": 0.03, "lo": 0.01, "hi": 0.05,
                    "chosen_acc": 0.9, "random_acc": 0.87, "none_acc": 0.85}
                   for r in ("standard", "pgd") for c in ("top", "bottom") for m in ("clean", "pgd")]
    save_json({"settings": {"k": 2, "eps": 0.1, "spec": {"margin": 0.02, "seeds": 5, "epochs": 1, "random_sets": 10,
                                                           "train_images": None, "test_images": 300}},
               "variants": {"top": ["conv1", "conv2"], "bottom": ["fc1", "fc2"]}, "comparisons": comparisons, "runs": 4,
               "seconds": 10.0}, power_folder(at) / "result-x.json")
    frame = pd.DataFrame(power_rows(s, at), columns=list(COLUMNS))
    top = frame[(frame.text == "top") & (frame.quantity == "pgd difference") & (frame.regime == "pgd")].iloc[0]
    assert (top.value, top.lo, top.hi, top.layer) == (0.03, 0.01, 0.05, "conv1 conv2")
    assert frame[frame.quantity == "seconds per run"].value.iloc[0] == 2.5
    assert math.isnan(frame[frame.quantity == "train images"].value.iloc[0])
    # mnist_cnn has one layer per stage: a stratified random set is the chosen set itself by design (overlap 1),
    # whatever the drawn sets' recorded 0.25
    design = frame[frame.quantity == "design overlap"]
    assert len(design) == 4 and (design.value == 1.0).all()
    assert power_claim(Page(frame)).outcome == "untestable"


def test_adversarial_retraining_trains_on_the_trainers_adversarial_batches() -> None:
    """One batch, one step: retraining with ``adv`` equals an Adam step on adversarial_batch's images (same random
    start), and differs from clean retraining; method none is clean retraining bitwise."""
    import copy

    import torch
    import torch.nn.functional as F

    from robustness.retraining import selective_retrain
    from robustness.training import AdvTraining, adversarial_batch

    torch.manual_seed(0)
    model = build_model("mnist_cnn", "mnist5k")
    x, y = torch.rand(8, 1, 28, 28), torch.arange(8) % 10
    loader = [(x, y)]
    adv = AdvTraining("pgd", 0.1, steps=2)

    def retrained(how) -> torch.Tensor:
        m = copy.deepcopy(model)
        selective_retrain(m, loader, ["fc2"], lr=0.01, seed=3, adv=how)
        return m.fc2.weight.detach()

    reference = copy.deepcopy(model)
    torch.manual_seed(3)  # selective_retrain seeds every generator with its seed before the first batch
    reference.train()
    images = adversarial_batch(reference, x, y, adv, adv.eps)
    optimizer = torch.optim.Adam(reference.fc2.parameters(), lr=0.01)
    F.cross_entropy(reference(images), y).backward()
    optimizer.step()
    assert torch.allclose(retrained(adv), reference.fc2.weight.detach(), atol=1e-6)
    assert not torch.equal(retrained(adv), retrained(None))
    assert torch.equal(retrained(AdvTraining()), retrained(None))
