"""The defense evaluation: per-example worst case, intervals, the paired gain, distances, the ensemble, the table."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torch.utils.data import DataLoader, TensorDataset

from robustness.attacks import PGD, geometry
from robustness.defense import (
    ATTACKED_ROWS,
    UNDEFENDED_ROWS,
    Defense,
    DefenseEvaluation,
    defense_figure,
    defense_table,
    distance_bounds,
    evaluate_defense,
    format_results,
    per_example_worst_case,
    summarise_defense,
    threat_images,
    undefended_images,
)
from robustness.figures import save_figure
from robustness.stats import bootstrap_counts, wilson_interval

N = 10


def _fooled(*images: int) -> np.ndarray:
    """Per image of N: correct, except the ones named."""
    correct = np.ones(N, dtype=bool)
    correct[list(images)] = False
    return correct


# Planted: every attacked row fools a different set of images, so each row alone leaves >= 80 % correct,
# but only the images no row fools survive them all.
PLANTED = {
    "clean": _fooled(), "defended_clean": _fooled(),
    "attacked": _fooled(0, 1), "undefended_pgd": _fooled(2, 3), "undefended_apgd_ce": _fooled(4),
    "undefended_apgd_dlr": _fooled(5, 6, 7),
    "defended_attacked": _fooled(0), "transfer": _fooled(1, 2), "adaptive": _fooled(3), "apgd_ce": _fooled(),
    "apgd_dlr": _fooled(4, 5),
}


# The white-box rows only: Square is left out of the ensemble here, as a caller may.
ATTACKED = [row for row in ATTACKED_ROWS if row in PLANTED]
UNDEFENDED = [row for row in UNDEFENDED_ROWS if row in PLANTED]


def test_worst_case_is_the_per_example_and_of_the_attacked_rows() -> None:
    result = summarise_defense(PLANTED, {row: np.zeros(N) for row in PLANTED}, Defense(0.2, 0.05, 2, 0.2), n_boot=500)
    assert min(result[row] for row in ATTACKED) == 0.8  # what the minimum of per-row averages said
    assert result["worst_case"] == 4 / N  # 1 - the union of the disjoint fooled sets {0, ..., 5}
    assert result["undefended_worst_case"] == 2 / N
    assert all(result["worst_case"] <= result[row] for row in ATTACKED)
    assert result["intervals"]["worst_case"] == list(wilson_interval(4, N))
    assert result["intervals"]["apgd_ce"] == list(wilson_interval(N, N))
    # Images 6 and 7 survive every attack on the defended model but not on the undefended one.
    assert result["gain"] == pytest.approx(2 / N)


def test_gain_interval_matches_a_direct_bootstrap() -> None:
    result = summarise_defense(PLANTED, {row: np.zeros(N) for row in PLANTED}, Defense(0.2, 0.05, 2, 0.2), n_boot=500,
                       seed=4)
    defended = np.all([PLANTED[row] for row in ATTACKED], axis=0)
    undefended = np.all([PLANTED[row] for row in UNDEFENDED], axis=0)
    gains = []
    for counts in bootstrap_counts(N, 500, seed=4):  # each resample: the images drawn, with repeats
        drawn = np.repeat(np.arange(N), counts)
        gains.append(defended[drawn].mean() - undefended[drawn].mean())
    assert result["gain_interval"] == pytest.approx(list(np.percentile(gains, [2.5, 97.5])))
    assert result["gain_interval"][0] <= result["gain"] <= result["gain_interval"][1]


def test_rows_missing_from_the_ensemble_are_left_out_of_the_worst_case() -> None:
    partial = {row: v for row, v in PLANTED.items() if row not in ("apgd_dlr", "undefended_apgd_dlr")}
    assert per_example_worst_case(partial, ATTACKED_ROWS).tolist() == _fooled(0, 1, 2, 3).tolist()
    with pytest.raises(Exception, match="none of the rows"):
        per_example_worst_case({"clean": _fooled()}, ATTACKED_ROWS)


def test_distance_bounds() -> None:
    bounds = distance_bounds(0.2, 0.1)
    assert bounds["clean"] == 0 and bounds["defended_clean"] == 0.1
    assert all(bounds[row] == 0.2 for row in UNDEFENDED_ROWS)
    assert all(bounds[row] == pytest.approx(0.3) for row in ATTACKED_ROWS)
    unbounded = distance_bounds(0.2, math.inf)
    assert unbounded["defended_clean"] == unbounded["apgd_ce"] == math.inf and unbounded["attacked"] == 0.2


SETTINGS = {"restarts": 2, "apgd_steps": 3, "square_queries": 50}


@pytest.mark.slow
def test_table_matches_a_direct_computation(trained_cnn, batch) -> None:
    """Every row, worst case and distance of defense_table, recomputed from the images by hand."""
    x, y = batch
    loader = DataLoader(TensorDataset(x, y), batch_size=len(y))
    defense = Defense(0.2, 0.1, 2, 0.1, def_steps=2)
    results = defense_table(trained_cnn, loader, DefenseEvaluation(defense, labels=("predicted",), **SETTINGS))
    settings = SETTINGS
    undefended = undefended_images(trained_cnn, x, y, defense, **settings)
    for threat in ("preemptive", "test-time"):
        result = results[f"{threat}/predicted"]
        images = {**threat_images(trained_cnn, x, y, defense, threat=threat, **settings), **undefended}
        with torch.no_grad():
            correct = {row: (trained_cnn(im).argmax(1) == y).numpy() for row, im in images.items()}
        assert {row: result[row] for row in correct} == {row: c.mean() for row, c in correct.items()}
        worst = np.all([correct[row] for row in ATTACKED_ROWS], axis=0)
        undefended_worst = np.all([correct[row] for row in UNDEFENDED_ROWS], axis=0)
        assert result["worst_case"] == worst.mean() <= min(result[row] for row in ATTACKED_ROWS)
        assert result["undefended_worst_case"] == undefended_worst.mean() <= result["attacked"]
        assert result["undefended_worst_case"] <= min(result[row] for row in UNDEFENDED_ROWS)
        assert result["gain"] == pytest.approx(worst.mean() - undefended_worst.mean())
        assert result["clean"] > result["undefended_worst_case"]  # the ensemble does attack
        for row, image in images.items():
            sizes = geometry("linf").size(image - x)
            assert result["distances"][row]["max"] == pytest.approx(sizes.max().item())
            assert result["distances"][row]["max"] <= result["distances"][row]["bound"] + 1e-6
        # the attacked defended images do use the room beyond eps that the defense gives them
        assert result["distances"]["defended_attacked"]["max"] > 0.2 + 1e-3
        assert (result["examples"], result["threat"], result["budget"]) == (12, threat, 0.1)


@pytest.mark.slow
def test_worst_case_no_higher_than_long_pgd_with_many_restarts(trained_cnn, mnist5k_test) -> None:
    """The issue's check at the demo's settings: the minimum of per-row averages (0.52 there) stayed above
    PGD-100 with 10 restarts on the defended images (0.38); the per-example worst case over the ensemble
    must not (here with APGD shortened to 25 steps, on 20 images)."""
    x, y = mnist5k_test[0][:20], mnist5k_test[1][:20]
    settings = {"eps": 0.2, "alpha": 0.05, "steps": 5, "budget": 0.2, "def_steps": 5}
    result = evaluate_defense(trained_cnn, DataLoader(TensorDataset(x, y), batch_size=20), apgd_steps=25, **settings)
    x_def = Defense(0.2, 0.05, 5, 0.2, def_steps=5)(trained_cnn, x, y, seed=0)
    x_adv = PGD(0.2, 0.05, 100, restarts=10, seed=123)(trained_cnn, x_def, y)
    with torch.no_grad():
        long_pgd = (trained_cnn(x_adv).argmax(1) == y).sum().item() / len(y)
    # shortened APGD is not certain to beat PGD-100 x 10 on every image: within one image of the 20
    assert result["worst_case"] <= long_pgd + 1 / len(y)
    assert result["worst_case"] <= min(result[row] for row in ATTACKED_ROWS)


def test_unbounded_defense_reports_inf(trained_cnn, batch) -> None:
    x, y = batch
    loader = DataLoader(TensorDataset(x[:6], y[:6]), batch_size=6)
    result = evaluate_defense(trained_cnn, loader, eps=0.2, alpha=0.1, steps=2, budget=math.inf, def_steps=1,
                              ensemble=())
    assert result["budget"] == math.inf
    assert result["distances"]["defended_clean"]["bound"] == result["distances"]["transfer"]["bound"] == math.inf
    assert {"adaptive", "apgd_ce", "undefended_pgd"}.isdisjoint(result)  # no ensemble, no ensemble rows
    table = format_results({"preemptive/predicted": result})
    assert "<= inf" in table and "unbounded defense (budget = inf, as asked) in: preemptive/predicted" in table


def test_format_results_and_figure(tmp_path) -> None:
    result = summarise_defense(PLANTED, {row: np.full(N, 0.1) for row in PLANTED},
                               Defense(0.2, 0.05, 2, 0.2, label="oracle"), n_boot=200)
    table = format_results({"preemptive/oracle": result})
    assert "preemptive/oracle [ORACLE]" in table and "[ORACLE]: the defense used the true test labels" in table
    lo, hi = wilson_interval(4, N)
    worst_line = next(line for line in table.splitlines() if line.split()[:1] == ["worst_case"])
    assert worst_line.split()[1:] == ["0.400", f"[{lo:.3f},", f"{hi:.3f}]"]
    assert "gain" in table and "0.100 / 0.100 <= 0.4" in table
    legacy = {"clean": 0.9, "worst_case": 0.5, "oracle": False, "budget": 0.2}  # a result without intervals
    assert "0.500" in format_results({"old": legacy})
    fig = defense_figure({"preemptive/oracle": result})
    assert isinstance(fig, Figure)
    assert save_figure(fig, "defense_test", tmp_path).stat().st_size > 0
