"""Sweeps of one model: equal to a deep-copy reference, restored after errors, speed options agree."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustness.attacks import FGSM, fgsm
from robustness.errors import InvalidArgument
from robustness.filtering import apply_filter, global_analysis, half_width, local_analysis, threshold_grid
from robustness.runtime import autocast, channels_last

EPS = 0.1


@pytest.fixture(scope="module")
def data(mnist5k_test: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """100 test images."""
    x, y = mnist5k_test
    return x[:100], y[:100]


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_bitwise_equal(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert all(torch.equal(after[k], v) and after[k].dtype == v.dtype for k, v in before.items())


def deep_copy_reference(model: nn.Module, data, layer: str, kind: str, count: int) -> dict[str, list]:
    """The original study's way: a fresh deep copy of the model per threshold, FGSM on batches of 50."""
    x, y = data
    weight = dict(model.named_modules())[layer].weight.detach()
    lo, hi = weight.min().item(), weight.max().item()
    out: dict[str, list] = {"clean_acc": [], "adv_acc": [], "removed": [], "clean_correct": [], "adv_correct": []}
    for alpha in threshold_grid(kind, lo, hi, count):
        filtered = copy.deepcopy(model)
        state = copy.deepcopy(filtered.state_dict())
        state[f"{layer}.weight"] = apply_filter(weight, kind, alpha, half_width(lo, hi, count))
        filtered.load_state_dict(state)
        clean, adv = [], []
        for xb, yb in zip(x.split(50), y.split(50), strict=True):
            x_grad = xb.clone().requires_grad_(True)
            logits = filtered(x_grad)
            F.cross_entropy(logits, yb).backward()
            x_adv = (x_grad + EPS * x_grad.grad.sign()).clamp(0, 1).detach()
            clean += (logits.argmax(1) == yb).tolist()
            with torch.no_grad():
                adv += (filtered(x_adv).argmax(1) == yb).tolist()
        out["clean_acc"].append(sum(clean) / len(y))
        out["adv_acc"].append(sum(adv) / len(y))
        out["clean_correct"].append(clean)
        out["adv_correct"].append(adv)
        out["removed"].append(int((state[f"{layer}.weight"] == 0).sum() - (weight == 0).sum()))
    return out


@pytest.mark.parametrize(("kind", "layers"), [("highpass", ["conv1", "fc2"]), ("lowpass", ["fc2"]),
                                              ("pulse", ["conv1"])])
def test_local_sweep_equals_deep_copy_reference(trained_cnn: nn.Module, data, kind: str, layers: list[str]) -> None:
    before = snapshot(trained_cnn)
    results = local_analysis(trained_cnn, data, kind, FGSM(EPS), thresholds=4, layers=layers)
    assert list(results) == layers
    for layer, result in results.items():
        expected = deep_copy_reference(trained_cnn, data, layer, kind, 4)
        assert result.clean_acc == expected["clean_acc"]
        assert result.adv_acc == expected["adv_acc"]
        assert result.removed == expected["removed"]
        assert result.clean_correct.tolist() == expected["clean_correct"]
        assert result.adv_correct.tolist() == expected["adv_correct"]
        assert result.layer == layer and result.kind == kind and len(result.thresholds) == 4
        assert result.total == dict(trained_cnn.named_modules())[layer].weight.numel()
    assert_bitwise_equal(trained_cnn, before)


def test_reference_and_direction(trained_cnn: nn.Module, data) -> None:
    result = local_analysis(trained_cnn, data, "step_maxmin", FGSM(EPS), thresholds=5, layers=["fc1"])["fc1"]
    assert result.kind == "lowpass"
    assert result.thresholds == sorted(result.thresholds, reverse=True)
    assert result.removed == sorted(result.removed) and result.removed_fraction[-1] == 1.0
    # The reference is the unfiltered model: clean accuracy is the model's own; FGSM lowers it.
    with torch.no_grad():
        own = (trained_cnn(data[0]).argmax(1) == data[1]).float().mean().item()
    assert result.ref_clean_acc == pytest.approx(own, abs=1e-6)
    assert result.ref_adv_acc < result.ref_clean_acc - 0.05


def test_global_highpass_top_threshold_removes_every_filtered_weight(trained_cnn: nn.Module, data) -> None:
    result = global_analysis(trained_cnn, data, "highpass", FGSM(EPS), thresholds=3, alpha_range="auto")
    total = sum(m.weight.numel() for m in (trained_cnn.conv1, trained_cnn.conv2, trained_cnn.fc1, trained_cnn.fc2))
    assert result.layer is None and result.total == total
    assert result.removed[-1] == total and result.removed_fraction[-1] == 1.0
    assert 1 <= result.removed[0] < total // 1000  # the bottom threshold removes only the global minimum
    default = global_analysis(trained_cnn, data, "pulse", FGSM(EPS), thresholds=3)
    assert default.thresholds == [-1.0, 0.0, 1.0]


def test_attack_without_shared_forward_gives_the_same_numbers(trained_cnn: nn.Module, data) -> None:
    shared = local_analysis(trained_cnn, data, "pulse", FGSM(EPS), thresholds=3, layers=["conv2"])["conv2"]
    plain = local_analysis(trained_cnn, data, "pulse", functools.partial(fgsm, eps=EPS), thresholds=3,
                           layers=["conv2"])["conv2"]
    assert shared == plain


def test_fgsm_configuration_costs_two_forwards(trained_cnn: nn.Module, data) -> None:
    calls = []
    hook = trained_cnn.register_forward_hook(lambda *_: calls.append(1))
    try:
        local_analysis(trained_cnn, data, "highpass", FGSM(EPS), thresholds=3, layers=["fc2"], batch_size=1000)
    finally:
        hook.remove()
    assert len(calls) == 2 * (1 + 3)  # reference + 3 thresholds, one batch each


class Boom(Exception):
    pass


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
@pytest.mark.parametrize("scope", ["local", "global"])
def test_weights_restored_after_an_exception_mid_sweep(trained_cnn: nn.Module, data, error, scope) -> None:
    before = snapshot(trained_cnn)
    flags = [p.requires_grad for p in trained_cnn.parameters()]
    trained_cnn.train()
    calls = []

    def attack(model, x, y):
        calls.append(1)
        if len(calls) == 3:  # reference, threshold 1, then fail at threshold 2 with the weights filtered
            raise error
        return fgsm(model, x, y, EPS)

    with pytest.raises(error):
        if scope == "local":
            local_analysis(trained_cnn, data, "highpass", attack, thresholds=5, layers=["conv2", "fc1"])
        else:
            global_analysis(trained_cnn, data, "highpass", attack, thresholds=5)
    assert len(calls) == 3
    assert_bitwise_equal(trained_cnn, before)
    assert trained_cnn.training and [p.requires_grad for p in trained_cnn.parameters()] == flags
    trained_cnn.eval()


def test_unknown_layer_and_kind(trained_cnn: nn.Module, data) -> None:
    with pytest.raises(InvalidArgument, match=r"layer1\.0\.conv1.*conv1, conv2, fc1, fc2"):
        local_analysis(trained_cnn, data, "highpass", FGSM(EPS), layers=["layer1.0.conv1"])
    with pytest.raises(InvalidArgument, match="highpass, lowpass, pulse"):
        local_analysis(trained_cnn, data, "notch", FGSM(EPS))
    with pytest.raises(InvalidArgument, match="highpass, lowpass, pulse"):
        global_analysis(trained_cnn, data, "notch", FGSM(EPS))


@pytest.mark.slow
def test_channels_last_and_bf16_agree_with_fp32(trained_cnn: nn.Module, data) -> None:
    """The GPU speed options change the numbers by rounding only. Channels-last: the same accuracies, losses
    within 1e-4. bf16 autocast: accuracies within 0.03 (3 of the 100 images) at every threshold."""
    model = copy.deepcopy(trained_cnn)
    fp32 = local_analysis(model, data, "highpass", FGSM(EPS), 5, layers=["conv2"])["conv2"]
    with autocast(torch.device("cpu"), "bf16"):
        bf16 = local_analysis(model, data, "highpass", FGSM(EPS), 5, layers=["conv2"])["conv2"]
    (x,) = channels_last(model, data[0])
    assert model.conv2.weight.is_contiguous(memory_format=torch.channels_last)
    last = local_analysis(model, (x, data[1]), "highpass", FGSM(EPS), 5, layers=["conv2"])["conv2"]
    assert last.clean_acc == fp32.clean_acc and last.adv_acc == fp32.adv_acc
    assert last.clean_loss == pytest.approx(fp32.clean_loss, abs=1e-4)
    assert bf16.clean_loss != fp32.clean_loss  # autocast did run in bf16
    for field in ("clean_acc", "adv_acc"):
        assert max(abs(a - b) for a, b in zip(getattr(bf16, field), getattr(fp32, field), strict=True)) <= 0.03
    assert bf16.removed == fp32.removed
