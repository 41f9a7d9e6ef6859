"""The random null model and the quantile grid inside sweeps, against direct computations."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from robustness.attacks import FGSM, fgsm
from robustness.errors import InvalidArgument
from robustness.filtering import evaluate_point, global_analysis, local_analysis, null_ranks
from robustness.models import filterable_layers

EPS = 0.1


@pytest.fixture(scope="module")
def data(mnist5k_test) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = mnist5k_test
    return x[:150], y[:150]


def test_null_ranks_are_seeded_nested_random_choices() -> None:
    weights = [torch.zeros(4, 5), torch.zeros(30)]
    ranks = null_ranks(weights, seed=0, index=0, name="fc1")
    assert [r.shape for r in ranks] == [w.shape for w in weights]
    flat = torch.cat([r.flatten() for r in ranks])
    assert sorted(flat.tolist()) == list(range(50))  # a permutation: rank < r picks exactly r weights
    assert all(int(sum((r < k).sum() for r in ranks)) == k for k in range(51))
    same = null_ranks(weights, seed=0, index=0, name="fc1")
    assert all(torch.equal(a, b) for a, b in zip(ranks, same, strict=True))
    for other in (null_ranks(weights, 0, 1, "fc1"), null_ranks(weights, 1, 0, "fc1"), null_ranks(weights, 0, 0, "fc2")):
        assert not torch.equal(torch.cat([r.flatten() for r in other]), flat)
    # nested: the weights removed at r = 10 are among those removed at r = 20
    assert ((flat < 10) <= (flat < 20)).all()
    # uniform over many masks: every weight is in the first 10 about 10/50 of the time
    hits = sum((torch.cat([r.flatten() for r in null_ranks(weights, 0, i, "x")]) < 10).float() for i in range(500))
    assert hits.min() > 60 and hits.max() < 140  # mean 100, binomial SD 9


@pytest.mark.slow
def test_null_model_removes_the_filter_s_count_and_equals_a_direct_computation(trained_cnn: nn.Module, data) -> None:
    zeros_seen = []

    def attack(model, x, y):
        zeros_seen.append(int((model.conv2.weight == 0).sum()))
        return fgsm(model, x, y, EPS)

    assert (trained_cnn.conv2.weight != 0).all()
    before = trained_cnn.conv2.weight.clone()
    result = local_analysis(trained_cnn, data, "pulse", attack, thresholds=3, layers=["conv2"], null_masks=2,
                            seed=3)["conv2"]
    assert torch.equal(trained_cnn.conv2.weight, before)
    assert result.null_clean_correct.shape == result.null_adv_correct.shape == (2, 3, 150)
    # calls: reference, 3 filter points, then mask 0 at the 3 counts, mask 1 at the 3 counts
    assert zeros_seen == [0, *result.removed, *result.removed, *result.removed]
    assert len(set(result.removed)) > 1
    for index in range(2):
        ranks = null_ranks([before], 3, index, "conv2")[0]
        for t, removed in enumerate(result.removed):
            model = copy.deepcopy(trained_cnn)
            with torch.no_grad():
                model.conv2.weight.masked_fill_(ranks < removed, 0)
            point = evaluate_point(model, *data, FGSM(EPS))
            assert np.array_equal(result.null_clean_correct[index, t], point.clean_correct)
            assert np.array_equal(result.null_adv_correct[index, t], point.adv_correct)
    # the threshold's choice of weights matters at some point: the filter and the null model differ there
    assert not np.array_equal(result.clean_correct, result.null_clean_correct[0])


def test_global_null_model_draws_over_every_layer(trained_cnn: nn.Module, data) -> None:
    result = global_analysis(trained_cnn, data, "highpass", FGSM(EPS), thresholds=3, null_masks=1)
    assert result.null_adv_correct.shape == (1, 3, 150)
    # everything removed at the last threshold: the null model is the filter there
    assert result.removed[-1] == result.total
    assert np.array_equal(result.null_clean_correct[0, -1], result.clean_correct[-1])
    # in the middle, the null model removes as many weights as the filter, drawn over every layer together
    middle = result.removed[1]
    assert 0 < middle < result.total
    modules = [m for _, m in filterable_layers(trained_cnn)]
    ranks = null_ranks([m.weight for m in modules], 0, 0, None)
    model = copy.deepcopy(trained_cnn)
    with torch.no_grad():
        for m, rank in zip([m for _, m in filterable_layers(model)], ranks, strict=True):
            m.weight.masked_fill_(rank < middle, 0)
    assert sum(int((r < middle).sum()) for r in ranks) == middle
    assert {name for (name, m), r in zip(filterable_layers(model), ranks, strict=True) if (r < middle).any()} == {
        name for name, _ in filterable_layers(model)}
    point = evaluate_point(model, *data, FGSM(EPS))
    assert np.array_equal(result.null_clean_correct[0, 1], point.clean_correct)
    assert np.array_equal(result.null_adv_correct[0, 1], point.adv_correct)
    with pytest.raises(InvalidArgument, match="null_masks"):
        global_analysis(trained_cnn, data, "highpass", FGSM(EPS), thresholds=3, null_masks=-1)


@pytest.mark.parametrize("kind", ["highpass", "lowpass", "pulse"])
def test_quantile_sweep_removes_t_hat_of_the_layer(trained_cnn: nn.Module, data, kind: str) -> None:
    result = local_analysis(trained_cnn, data, kind, FGSM(EPS), thresholds=5, layers=["fc2"], grid="quantile")["fc2"]
    n = result.total
    assert result.grid == "quantile" and n == 1280
    if kind == "pulse":
        assert result.removed == [256] * 5  # five equal-count bands
    else:
        assert result.removed == [0, 320, 640, 960, 1280]  # t̂ = 0, 1/4, ..., 1 of the layer's weights
        # nothing removed: the first point is the unfiltered model, image by image
        assert np.array_equal(result.clean_correct[0], result.ref_clean_correct)
        assert np.array_equal(result.adv_correct[0], result.ref_adv_correct)


def test_global_quantile_grid_pools_every_layer(trained_cnn: nn.Module, data) -> None:
    result = global_analysis(trained_cnn, data, "lowpass", FGSM(EPS), thresholds=3, grid="quantile",
                             alpha_range=(5.0, 6.0))  # the value range plays no part
    assert result.removed_fraction == pytest.approx([0.0, 0.5, 1.0], abs=1 / result.total)
    with pytest.raises(InvalidArgument, match="unknown grid"):
        global_analysis(trained_cnn, data, "lowpass", FGSM(EPS), grid="log")
