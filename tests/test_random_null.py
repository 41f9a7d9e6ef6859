"""The random-null score recomputed by hand on a model of its own: loop over the quantile grid's thresholds and the
null model's masks, zero the weights in a copy, re-estimate BatchNorm the plain way, evaluate with FGSM written
out, integrate with Simpson's rule, and compare with the toolkit's sweep and score."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from fitting import adam_fit
from reference import outcomes_by_hand, recalibrate_by_hand
from scipy.integrate import simpson
from torch import nn

from robustness.attacks import FGSM
from robustness.filtering import local_analysis, null_ranks
from robustness.scoring import Scoring, filtering_scores

T, MASKS, EPS, SEED = 5, 3, 0.05, 7


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3, stride=2)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 12, 3, stride=2)
        self.bn2 = nn.BatchNorm2d(12)
        self.fc = nn.Linear(12 * 36, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.flatten(1))


def _by_hand(model: nn.Module, layer: str, masks: list[torch.Tensor], x, y, calibration) -> np.ndarray:
    """Clean and adversarial accuracy with each of ``masks`` zeroed in ``layer``'s weight: ``(len(masks), 2)``."""
    found = []
    for mask in masks:
        net = copy.deepcopy(model)
        with torch.no_grad():
            net.get_submodule(layer).weight[mask] = 0.0
        recalibrate_by_hand(net, calibration)
        clean, adv = outcomes_by_hand(net, x, y, EPS)
        found.append([clean.double().mean().item(), adv.double().mean().item()])
    return np.array(found)


@pytest.mark.parametrize("layer", ["conv2", "fc"])
def test_the_random_null_score_equals_a_loop_by_hand(mnist5k_test, layer: str) -> None:
    torch.manual_seed(0)
    model = adam_fit(Tiny(), 500, lr=0.01)
    x, y = mnist5k_test[0][:200], mnist5k_test[1][:200].long()
    calibration = mnist5k_test[0][500:700]
    (sweep,) = local_analysis(model, (x, y), "highpass", FGSM(EPS), T, layers=[layer], bn_images=calibration,
                              grid="quantile", null_masks=MASKS, seed=SEED).values()
    scores = filtering_scores(sweep, Scoring(baseline="random", n_boot=2))

    weight = model.get_submodule(layer).weight.detach()
    n = weight.numel()
    assert len(weight.flatten().unique()) == n  # no ties: the quantile grid removes exactly r weights
    removed = [int(np.floor(k / (T - 1) * n + 0.5)) for k in range(T)]
    assert sweep.removed == removed
    order = weight.flatten().argsort()  # high-pass: the r smallest weights first
    filtered = [torch.zeros(n, dtype=torch.bool).index_fill_(0, order[:r], True).view_as(weight) for r in removed]
    (ranks,) = zip(*(null_ranks([weight], SEED, m, layer) for m in range(MASKS)), strict=True)
    null = [[rank < r for r in removed] for rank in ranks]  # each mask removes as many weights, uniformly at random
    assert all(int(mask.sum()) == r for masks in null for mask, r in zip(masks, removed, strict=True))

    reference = _by_hand(model, layer, [torch.zeros_like(weight, dtype=torch.bool)], x, y, calibration)[0]
    curve = _by_hand(model, layer, filtered, x, y, calibration) / reference  # (T, 2), relative
    base = np.mean([_by_hand(model, layer, masks, x, y, calibration) for masks in null], axis=0) / reference
    t_hat = np.linspace(0, 1, T)
    expected = simpson(curve - base, x=t_hat, axis=0)

    assert (sweep.ref_clean_acc, sweep.ref_adv_acc) == pytest.approx(tuple(reference), abs=1e-12)
    assert np.column_stack([sweep.clean_acc, sweep.adv_acc]) == pytest.approx(curve * reference, abs=1e-12)
    assert (scores["clean"], scores["adversarial"]) == pytest.approx(tuple(expected), abs=1e-9)


def test_a_layer_the_network_ignores_is_antifragile_by_density_and_robust_against_the_null() -> None:
    # The findings' first run: a removable layer sits at the density baseline's ceiling whatever the filter, and
    # at 0 against the random null. The planted model ignores one layer's output entirely.
    from test_probes import Planted, planted_data  # noqa: PLC0415

    model, data = Planted(trained=True), planted_data(100)
    (sweep,) = local_analysis(model, data, "highpass", FGSM(0.05), 9, layers=["ignored"], grid="quantile",
                              null_masks=3).values()
    density = filtering_scores(sweep, Scoring(n_boot=50))
    null = filtering_scores(sweep, Scoring(baseline="random", n_boot=50))
    assert density["adversarial"] == pytest.approx(0.5, abs=0.01) and density["labels"]["adversarial"] == "antifragile"
    assert null["adversarial"] == null["clean"] == 0.0 and null["ci"]["adversarial"] == (0.0, 0.0)
    assert null["labels"]["adversarial"] == "robust"
