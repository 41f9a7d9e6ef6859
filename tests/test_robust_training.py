"""Planted truths on an adversarially trained mnist_cnn: what any honest attack must find on a robust model.

The model is trained once for the module (PGD-AT, eps 0.15, 3 steps, 3 epochs on 2,000 images: about a
minute of CPU time) and attacked on 200 test images; the standard model is the session's ``trained_cnn``.
The training eps is 0.15 rather than 0.1 because a standard mnist_cnn already keeps about 70% of these
images at eps 0.1 under APGD, which leaves a small model trained for seconds too little room to be "far
above" it; at 0.15 the standard model falls much further.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from robustness import paths
from robustness.attacks import MEMBERS, Ensemble, ensemble_outcomes, make_attack, masking_gap
from robustness.data import make_loader
from robustness.models import load_checkpoint
from robustness.stats import wilson_interval
from robustness.training import AdvTraining, TrainConfig, train

pytestmark = pytest.mark.slow

EPS = 0.15
N = 200


@pytest.fixture(scope="module")
def robust_cnn(tmp_path_factory: pytest.TempPathFactory) -> nn.Module:
    root: Path = tmp_path_factory.mktemp("robust")
    config = TrainConfig(arch="mnist_cnn", dataset="mnist5k", epochs=3, subset=2000, models_root=str(root),
                         device="cpu", adv=AdvTraining("pgd", EPS, steps=3))
    train(config)
    model, meta = load_checkpoint(paths.checkpoint_path("mnist_cnn", "mnist5k", 1, 3, root, regime=config.regime))
    assert meta["regime"] == "pgd-linf-eps0.15"
    return model


@pytest.fixture(scope="module")
def images(mnist5k_test: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = mnist5k_test
    return x[:N], y[:N]


def _correct(model: nn.Module, attack, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    x_adv = attack(model, x, y)
    with torch.no_grad():
        return (model(x_adv).argmax(1) == y).numpy()


def _within_noise(higher: np.ndarray, lower: np.ndarray) -> bool:
    """Whether accuracy ``higher`` exceeds ``lower`` by no more than 2 paired SE and one image (the ensemble's
    gradient-masking rule)."""
    gap, se = masking_gap(higher, lower)
    return gap <= 2 * se + 1 / len(higher)


def test_robust_accuracy_falls_to_zero_as_eps_grows_to_half(robust_cnn, images) -> None:
    x, y = images
    found = [_correct(robust_cnn, make_attack("apgd", eps, steps=20), x, y) for eps in (0.0, EPS, 0.3, 0.4, 0.5)]
    accuracies = [f.mean() for f in found]
    assert accuracies[0] > 0.85 and accuracies[1] > 0.5  # clean, and at the training eps
    assert all(_within_noise(after, before) for before, after in zip(found, found[1:], strict=False))
    assert accuracies[-1] == 0.0  # at 0.5 every digit can be moved to the same grey image


def test_more_pgd_steps_never_raise_accuracy(robust_cnn, images) -> None:
    x, y = images
    found = [_correct(robust_cnn, make_attack("pgd", EPS, steps=k), x, y) for k in (1, 3, 10, 40)]
    assert all(_within_noise(after, before) for before, after in zip(found, found[1:], strict=False))
    assert found[-1].mean() < found[0].mean()


def test_ensemble_worst_case_is_below_every_member_per_example(robust_cnn, images) -> None:
    x, y = images
    found = ensemble_outcomes(robust_cnn, make_loader(torch.utils.data.TensorDataset(x, y), 100),
                              Ensemble(EPS, pgd_steps=10, apgd_steps=20, square_queries=300))
    for name in ("clean", *MEMBERS):
        assert np.all(found["worst"] <= found[name])
    assert 0.4 < found["worst"].mean() < found["clean"].mean()


def test_adversarial_training_raises_apgd_accuracy_far_above_the_standard_models(robust_cnn, trained_cnn,
                                                                                  images) -> None:
    x, y = images
    apgd = make_attack("apgd", EPS, steps=50)
    robust, standard = _correct(robust_cnn, apgd, x, y).sum(), _correct(trained_cnn, apgd, x, y).sum()
    assert robust / N > standard / N + 0.2
    assert wilson_interval(int(robust), N)[0] > wilson_interval(int(standard), N)[1]
