"""The defense works, Square (score-based) in the ensemble, and the sanity checks of Carlini et al. (2019).

Fast tier: a few images of mnist5k and the 2-epoch ``trained_cnn``; every check fails on a defense
whose objective had the wrong sign, on a Square that read gradients, or on an evaluation whose
worst case rose with the attacker's strength."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchattacks
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from robustness.attacks import PGD, Square, geometry
from robustness.defense import (
    WHITE_BOX_ROWS,
    DefendedClassifier,
    Defense,
    defense_figure,
    evaluate_defense,
    format_results,
    result_rows,
    square_through_defense,
    summarise_defense,
)
from robustness.defense.evaluation import _ADAPTIVE_SEED, _ATTACK_SEED

BATCH = 40
EPS, ALPHA, STEPS, DEF_STEPS = 0.2, 0.05, 5, 5


def _correct(model: nn.Module, images: Tensor, y: Tensor) -> np.ndarray:
    with torch.no_grad():
        return (model(images).argmax(1) == y).numpy()


def _loader(x: Tensor, y: Tensor) -> DataLoader:
    return DataLoader(TensorDataset(x, y), batch_size=len(y))


# ---------------------------------------------------------------- the defense works


def test_defense_lowers_the_loss_of_its_target(trained_cnn, batch) -> None:
    """Planted: the defense minimises the loss of ŷ; with the objective's sign flipped, it would raise it."""
    x, _ = batch
    defense = Defense(EPS, ALPHA, STEPS, EPS, def_steps=DEF_STEPS)
    with torch.no_grad():
        target = trained_cnn(x).argmax(1)
        before = F.cross_entropy(trained_cnn(x), target, reduction="none")
        after = F.cross_entropy(trained_cnn(defense(trained_cnn, x)), target, reduction="none")
    assert after.sum() < 0.5 * before.sum()
    assert (after <= before + 1e-6).float().mean() >= 0.9


def test_rows_by_hand_and_the_defense_beats_the_attack_it_is_tuned_against(trained_cnn, batch) -> None:
    """``defended_attacked`` and ``transfer`` of both threat models rebuilt from Defense and PGD alone, and the
    defended system more accurate under the attack than the undefended model (a wrong-sign defense is not)."""
    x, y = batch
    defense = Defense(EPS, ALPHA, STEPS, EPS, def_steps=DEF_STEPS)
    attack = PGD(EPS, ALPHA, STEPS, seed=_ATTACK_SEED)  # the evaluation's non-adaptive attack, seed 0
    x_def, x_adv = defense(trained_cnn, x, seed=0), attack(trained_cnn, x, y)
    by_hand = {
        "preemptive": {"defended_attacked": attack(trained_cnn, x_def, y),
                       "transfer": (x_def + (x_adv - x)).clamp(0, 1)},
        "test-time": dict.fromkeys(("defended_attacked", "transfer"), defense(trained_cnn, x_adv, seed=0)),
    }
    attacked = _correct(trained_cnn, x_adv, y).mean()
    for threat, rows in by_hand.items():
        result = evaluate_defense(trained_cnn, _loader(x, y), threat=threat, eps=EPS, alpha=ALPHA, steps=STEPS,
                                  budget=EPS, def_steps=DEF_STEPS, ensemble=(), n_boot=100)
        for row, images in rows.items():
            assert result[row] == _correct(trained_cnn, images, y).mean(), (threat, row)
        assert result["attacked"] == attacked
    preemptive = _correct(trained_cnn, by_hand["preemptive"]["defended_attacked"], y).mean()
    assert preemptive >= attacked + 0.2  # the non-adaptive attack on D(x) fails where it fooled x


def test_predicted_mode_defense_keeps_clean_accuracy(trained_cnn, batch) -> None:
    x, y = batch
    x_def = Defense(EPS, ALPHA, STEPS, EPS, def_steps=DEF_STEPS)(trained_cnn, x)
    assert _correct(trained_cnn, x_def, y).mean() >= _correct(trained_cnn, x, y).mean()


# ---------------------------------------------------------------- Square


class _NoGradient(nn.Module):
    """A model that fails the test if it is ever run with gradients on (Square must only query it)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        assert not torch.is_grad_enabled() and not x.requires_grad, "Square asked for a gradient"
        return self.model(x)


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.2), ("l2", 3.0)])
def test_square_only_queries_stays_in_the_ball_and_is_torchattacks(trained_cnn, batch, norm, eps) -> None:
    x, y = batch[0][:20], batch[1][:20]
    attack = Square(eps, norm, queries=300, seed=5)
    state = torch.random.get_rng_state()
    x_sq = attack(_NoGradient(trained_cnn), x, y)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's random state is kept
    sizes = geometry(norm).size(x_sq - x)
    assert sizes.max() <= eps + 1e-5 and x_sq.min() >= 0 and x_sq.max() <= 1
    assert _correct(trained_cnn, x_sq, y).mean() <= _correct(trained_cnn, x, y).mean() - 0.15  # it attacks
    theirs = torchattacks.Square(trained_cnn, norm={"linf": "Linf", "l2": "L2"}[norm], eps=eps, n_queries=300,
                                 seed=5, loss="margin")(x, y)
    assert torch.equal(x_sq, theirs)


def test_test_time_square_is_the_pipelines(trained_cnn, batch) -> None:
    """The test-time Square row is the accuracy of x -> model(D(x)) on the images Square found by querying
    that very pipeline (the defense deployed with the evaluation's seed)."""
    x, y = batch[0][:8], batch[1][:8]
    defense = Defense(0.3, 0.1, 1, 0.3, def_steps=2)
    pipeline = DefendedClassifier(trained_cnn, defense, seed=0)
    with torch.no_grad():
        assert torch.equal(pipeline(x), trained_cnn(defense(trained_cnn, x, seed=0)))
    # the evaluation's Square draws from the adaptive attacks' seeds (evaluate_defense's seed 0)
    x_sq = square_through_defense(trained_cnn, x, y, defense, Square(0.3, queries=40, seed=_ADAPTIVE_SEED), seed=0)
    with torch.no_grad():
        by_hand = (pipeline(x_sq).argmax(1) == y).float().mean().item()
    result = evaluate_defense(trained_cnn, _loader(x, y), threat="test-time", eps=0.3, alpha=0.1, steps=1,
                              budget=0.3, def_steps=2, ensemble=("square",), square_queries=40, n_boot=100)
    assert result["square"] == pytest.approx(by_hand)
    assert result["worst_case"] <= result["square"]  # Square counts in the per-example worst case


class _Quantised(nn.Module):
    """A model behind a rounding of its input: every gradient is zero (planted gradient masking)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(torch.round(x * 4) / 4)


def test_gradient_masking_is_flagged_only_where_square_beats_the_white_box(trained_cnn, batch) -> None:
    x, y = batch
    settings = dict(eps=0.3, alpha=0.1, steps=3, budget=0.3, def_steps=2, restarts=1, apgd_steps=5,
                    square_queries=1000, n_boot=500)
    masked = evaluate_defense(_Quantised(trained_cnn), _loader(x, y), **settings)
    assert masked["square"] < masked["white_box_worst_case"] - 0.3
    assert masked["gradient_masking"] and masked["masking_gap_interval"][0] > 0
    assert masked["worst_case"] <= masked["square"]
    assert "POSSIBLE GRADIENT MASKING" in format_results({"preemptive/predicted": masked})
    legend = defense_figure({"preemptive/predicted": masked}).axes[0].get_legend().get_texts()
    assert [t.get_text() for t in legend] == ["preemptive/predicted (possible gradient masking)"]
    honest = evaluate_defense(trained_cnn, _loader(x, y), **settings)
    assert not honest["gradient_masking"]
    assert "POSSIBLE" not in format_results({"preemptive/predicted": honest})


# ---------------------------------------------------------------- sanity checks (Carlini et al., 2019)

SANITY = dict(alpha=0.1, steps=3, def_steps=2, restarts=1, apgd_steps=5, square_queries=100, n_boot=100)


@pytest.mark.parametrize("threat", ["preemptive", "test-time"])
def test_unbounded_eps_drives_the_worst_case_to_zero(trained_cnn, batch, threat) -> None:
    x, y = batch[0][:12], batch[1][:12]
    ensemble = ("pgd", "apgd-ce") if threat == "preemptive" else ("pgd",)
    result = evaluate_defense(trained_cnn, _loader(x, y), threat=threat, eps=1.0, alpha=0.5, steps=5, budget=1.0,
                              def_steps=2, restarts=1, apgd_steps=5, ensemble=ensemble, n_boot=100)
    assert result["worst_case"] == 0 and result["undefended_worst_case"] == 0


def test_worst_case_never_rises_with_eps(trained_cnn, batch) -> None:
    x, y = batch[0][:20], batch[1][:20]
    worst = [evaluate_defense(trained_cnn, _loader(x, y), eps=eps, budget=0.2, **SANITY)["worst_case"]
             for eps in (0.05, 0.15, 0.3)]
    assert all(b <= a + 1 / len(y) for a, b in zip(worst, worst[1:], strict=False))
    assert worst[-1] < worst[0]


@pytest.mark.slow  # about 12 s on 2 quiet cores
def test_more_iterations_never_raise_the_worst_case(trained_cnn, batch) -> None:
    """APGD 5 -> 25 iterations, Square 100 -> 400 queries, PGD 1 -> 3 restarts; the defense itself unchanged."""
    x, y = batch[0][:20], batch[1][:20]
    short = evaluate_defense(trained_cnn, _loader(x, y), eps=0.15, budget=0.15, **SANITY)
    long = evaluate_defense(trained_cnn, _loader(x, y), eps=0.15, budget=0.15,
                            **{**SANITY, "apgd_steps": 25, "square_queries": 400, "restarts": 3})
    assert long["worst_case"] <= short["worst_case"] + 1 / len(y)  # within one image
    assert long["white_box_worst_case"] <= short["white_box_worst_case"] + 1 / len(y)


def test_defended_clean_accuracy_and_its_interval_stand_beside_the_robust_one() -> None:
    n = 20
    correct = {row: np.arange(n) % 4 != 0 for row in ("clean", "defended_clean", "attacked", *WHITE_BOX_ROWS,
                                                      "square")}
    result = summarise_defense(correct, {row: np.zeros(n) for row in correct}, Defense(0.2, 0.05, 2, 0.2), n_boot=50)
    assert result["defended_clean"] == 0.75 and len(result["intervals"]["defended_clean"]) == 2
    rows = [row["row"] for row in result_rows({"preemptive/predicted": result})]
    assert rows.index("defended_clean") < rows.index("worst_case")
    table = format_results({"preemptive/predicted": result}).splitlines()
    clean_line = next(line for line in table if line.split()[:1] == ["defended_clean"])
    assert "0.750 [" in clean_line and any(line.split()[:1] == ["worst_case"] for line in table)
