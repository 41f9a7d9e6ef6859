"""The re-initialisation probe against planted truths and a straightforward reference implementation."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from reference import recalibrate_by_hand
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from robustness.attacks import FGSM
from robustness.errors import InvalidArgument
from robustness.filtering import local_analysis
from robustness.models import build_model
from robustness.probes import ProbeResult, accuracy_drop, probe_agreement, reinitialise, rerandomise, verdict, verdicts
from robustness.scoring import Scoring, layer_scores

DIM = 32


class Planted(nn.Module):
    """Images of ``DIM`` pixels, class 1 iff pixel 0 > pixel 1. ``ignored`` runs but its output is thrown away;
    every prediction passes through ``bottleneck`` (trained: a diagonal whose pixel 0 and 1 entries are the
    smallest weights, so a high-pass filter removes them first; at epoch 0: zero, so the logits are constant)."""

    def __init__(self, trained: bool) -> None:
        super().__init__()
        self.ignored = nn.Linear(DIM, DIM)
        self.bottleneck = nn.Linear(DIM, DIM)
        self.classifier = nn.Linear(DIM, 2)
        with torch.no_grad():
            self.bottleneck.bias.zero_()
            self.bottleneck.weight.copy_(torch.diag(torch.linspace(1.0, 2.0, DIM)) if trained else 0.0)
            if trained:
                self.bottleneck.weight[0, 0] = self.bottleneck.weight[1, 1] = 0.1
            self.classifier.weight.zero_()
            self.classifier.bias.zero_()
            self.classifier.weight[1, :2] = torch.tensor([5.0, -5.0])
            self.classifier.weight[0, :2] = torch.tensor([-5.0, 5.0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)
        self.ignored(h)
        return self.classifier(self.bottleneck(h))


def planted_data(n: int = 200, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose pixels 0 and 1 differ by at least 0.2 (FGSM at eps 0.05 cannot flip them)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(4 * n, DIM, generator=g)
    x = x[(x[:, 0] - x[:, 1]).abs() > 0.2][:n]
    return x.view(n, 1, 4, DIM // 4), (x[:, 0] > x[:, 1]).long()


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_state(model: nn.Module, saved: dict[str, torch.Tensor]) -> None:
    now = model.state_dict()
    assert now.keys() == saved.keys() and all(torch.equal(now[k], saved[k]) for k in saved)


def test_ignored_layer_is_robust_and_bottleneck_critical_to_every_probe() -> None:
    model, initial, data = Planted(trained=True), Planted(trained=False), planted_data()
    attack = FGSM(0.05)
    reinit = reinitialise(model, initial, data, attack)
    rerandom = rerandomise(model, data, attack, seeds=(0, 1, 2))
    for results in (reinit, rerandom):
        assert results["ignored"].ref_clean_acc == results["ignored"].ref_adv_acc == 1.0
        assert results["ignored"].clean_acc == results["ignored"].adv_acc == 1.0
        for which in ("clean", "adv"):
            ignored, bottleneck = verdicts(results, which, 0.05, n_boot=200)["ignored"], verdicts(
                results, which, 0.05, n_boot=200)["bottleneck"]
            assert (ignored["drop"], ignored["lo"], ignored["hi"], ignored["verdict"]) == (0.0, 0.0, 0.0, "robust")
            assert bottleneck["verdict"] == "critical" and bottleneck["lo"] > 0.2
    # Re-initialised to zero, the bottleneck makes the logits constant: every image is called class 0.
    share_of_class_0 = float((data[1] == 0).float().mean())
    assert reinit["bottleneck"].clean_acc == reinit["bottleneck"].adv_acc == pytest.approx(share_of_class_0)
    assert rerandom["bottleneck"].clean_correct.shape == (3, 200) and rerandom["ignored"].seeds == (0, 1, 2)
    # Synaptic filtering (high-pass, scored against the unfiltered model) says the same.
    sweeps = local_analysis(model, data, "highpass", attack, 9, layers=["ignored", "bottleneck"])
    scores = layer_scores(sweeps, scoring=Scoring(baseline="unfiltered", n_boot=200))
    assert all(scores["ignored"]["labels"][s] == "robust" for s in ("clean", "adversarial", "difference"))
    assert scores["bottleneck"]["labels"]["clean"] == scores["bottleneck"]["labels"]["adversarial"] == "fragile"
    frame, summary = probe_agreement(scores, reinit, score="adversarial", n_boot=200)
    assert list(frame.verdict) == ["robust", "critical"] and list(frame.label) == ["robust", "fragile"]
    assert list(frame.agree) == [True, True] and summary["agreement"] == 1.0 and summary["n_confident"] == 2


def test_model_comes_back_bitwise_also_on_an_exception() -> None:
    model, initial, data = Planted(trained=True), Planted(trained=False), planted_data(40)
    saved = state(model)
    reinitialise(model, initial, data, FGSM(0.05))
    rerandomise(model, data, FGSM(0.05), seeds=(3,))
    assert_same_state(model, saved)
    calls = []

    def failing(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 2:  # the first probed layer: its weights are replaced now
            raise RuntimeError("boom")
        return x

    with pytest.raises(RuntimeError, match="boom"):
        reinitialise(model, initial, data, failing)
    assert_same_state(model, saved)
    assert model.training  # the mode is restored too


def test_reinitialised_layer_is_the_epoch_0_layer_bitwise_and_equal_weights_change_nothing() -> None:
    torch.manual_seed(0)
    model, initial, data = Planted(trained=True), Planted(trained=False), planted_data(40)
    seen = {}

    def spying(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        seen.setdefault(len(seen), {k: v.detach().clone() for k, v in m.bottleneck.named_parameters()})
        return x

    reinitialise(model, initial, data, spying, layers=["bottleneck"])
    probed = seen[1]  # call 0: the reference, call 1: the probed model
    assert torch.equal(probed["weight"], initial.bottleneck.weight) and torch.equal(probed["bias"],
                                                                                    initial.bottleneck.bias)
    same = reinitialise(model, copy.deepcopy(model), data, FGSM(0.05))
    for result in same.values():
        assert np.array_equal(result.clean_correct, result.ref_clean_correct)
        assert np.array_equal(result.adv_correct, result.ref_adv_correct)
        assert accuracy_drop(result, n_boot=100) == (0.0, 0.0, 0.0)


class SmallBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 8, 3, stride=2)
        self.bn2 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


def reference_probe(model: nn.Module, initial: nn.Module, name: str, x, y, calibration, eps: float):
    """The straightforward way: a copy of the model with the epoch-0 layer loaded, BatchNorm statistics
    re-estimated by hand (cumulative average over batches of 100), then clean and FGSM outcomes by hand."""
    probed = copy.deepcopy(model)
    probed.get_submodule(name).load_state_dict(initial.get_submodule(name).state_dict())
    recalibrate_by_hand(probed, calibration)
    x = x.clone().requires_grad_(True)
    logits = probed(x)
    grad, = torch.autograd.grad(nn.functional.cross_entropy(logits, y), x)
    x_adv = (x + eps * grad.sign()).clamp(0, 1).detach()
    with torch.no_grad():
        return (logits.argmax(1) == y).numpy(), (probed(x_adv).argmax(1) == y).numpy()


@pytest.mark.parametrize("arch", ["small", pytest.param("resnet18", marks=pytest.mark.slow)])
def test_probe_equals_a_straightforward_reference(mnist5k_test, arch: str) -> None:
    torch.manual_seed(1)
    build = SmallBN if arch == "small" else lambda: build_model("resnet18", "mnist5k")
    model, initial = build().eval(), build().eval()
    with torch.no_grad():  # a trained-looking model: other weights and statistics than epoch 0
        for p in model.parameters():
            p.mul_(3.0).add_(0.1)
        model.bn1.running_mean.fill_(0.3)
    x, y = mnist5k_test[0][:300], mnist5k_test[1][:300].long()
    calibration = mnist5k_test[0][500:750]
    saved = state(model)
    layers = ["conv1", "conv2", "fc"] if arch == "small" else ["conv1", "layer2.0.downsample.0", "layer3.1.conv2", "fc"]
    results = reinitialise(model, initial, DataLoader(TensorDataset(x, y), batch_size=128), FGSM(0.1), layers,
                           calibration=DataLoader(TensorDataset(calibration), batch_size=50))
    assert_same_state(model, saved)
    assert list(results) == layers
    for name in layers:
        clean, adv = reference_probe(model, initial, name, x, y, calibration, 0.1)
        assert np.array_equal(results[name].clean_correct, clean) and np.array_equal(results[name].adv_correct, adv)
        assert results[name].clean_acc == clean.mean() and results[name].adv_acc == adv.mean()


def test_results_round_trip_and_bad_input_is_one_clear_error() -> None:
    model, initial, data = Planted(trained=True), Planted(trained=False), planted_data(20)
    results = rerandomise(model, data, FGSM(0.05), layers=["bottleneck"], seeds=(4, 5))
    back = ProbeResult.from_sweep(results["bottleneck"].to_sweep(DIM * DIM + DIM))
    assert back.seeds == (4, 5) and np.array_equal(back.clean_correct, results["bottleneck"].clean_correct)
    assert back.clean_acc == results["bottleneck"].clean_acc
    with pytest.raises(InvalidArgument, match="unknown layer"):
        reinitialise(model, initial, data, FGSM(0.05), layers=["nope"])
    other = Planted(trained=False)
    other.bottleneck = nn.Linear(DIM, 3)
    with pytest.raises(InvalidArgument, match="does not fit"):
        reinitialise(model, other, data, FGSM(0.05))
    with pytest.raises(InvalidArgument, match="distinct seeds"):
        rerandomise(model, data, FGSM(0.05), seeds=(1, 1))
    assert verdict(0.06, 0.2) == "critical" and verdict(0.0, 0.05) == "robust" and verdict(0.01, 0.3) == "uncertain"


def test_rerandomise_draws_per_seed_and_keeps_the_global_random_state(monkeypatch) -> None:
    model, data = Planted(trained=True), planted_data(40)
    draws = []
    original = nn.Linear.reset_parameters

    def recording(module: nn.Linear) -> None:  # each draw, read as it is made
        original(module)
        draws.append(module.weight.detach().clone())

    monkeypatch.setattr(nn.Linear, "reset_parameters", recording)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    rerandomise(model, data, FGSM(0.05), layers=["bottleneck"], seeds=(4, 5))
    rerandomise(model, data, FGSM(0.05), layers=["bottleneck"], seeds=(4,))
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random state, as it was
    assert len(draws) == 3 and not torch.equal(draws[0], draws[1])  # another seed, another draw
    assert torch.equal(draws[0], draws[2])  # the same seed, the same draw
