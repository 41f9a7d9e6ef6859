"""Local sweeps that reuse the unfiltered prefix: the numbers of a full pass per threshold, bitwise."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from fitting import adam_fit
from torch import nn

from robustness.attacks import FGSM, fgsm
from robustness.data import load_dataset, loader_to_tensors, make_loader
from robustness.errors import InvalidArgument
from robustness.filtering import evaluate_point, local_analysis, split_model, trace
from robustness.models import build_model, filterable_layers
from robustness.runtime import autocast, channels_last, seed_everything

EPS = 0.1
RESNET_LAYERS = ["layer1.0.conv2", "layer2.0.downsample.0", "fc"]


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    """A ResNet-18 after 20 Adam steps on mnist5k (a few seconds; well above chance), in eval mode."""
    seed_everything(0)
    return adam_fit(build_model("resnet18", "mnist5k"), 1000, 1e-3)


@pytest.fixture(scope="module")
def images(mnist5k_test) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
    """40 test images to evaluate_point (batches of 25 and 15), and 130 training images to calibrate on."""
    x, y = mnist5k_test
    cal = loader_to_tensors(make_loader(load_dataset("mnist5k", train=True), 1000, subset=130, seed=2))[0]
    return (x[:40], y[:40]), cal


def both_ways(model: nn.Module, data, layers: list[str], **options) -> tuple[dict, dict]:
    """The sweeps with and without reuse, and the model left bitwise as it was."""
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = local_analysis(model, data, "highpass", FGSM(EPS), 3, layers=layers, batch_size=25, **options)
    plain = local_analysis(model, data, "highpass", FGSM(EPS), 3, layers=layers, batch_size=25, reuse=False,
                           **options)
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())
    return fast, plain


@pytest.mark.slow
@pytest.mark.parametrize(("bn", "grid"), [("frozen", "value"), ("recalibrate", "quantile")])
def test_reuse_equals_full_passes_on_a_resnet(resnet: nn.Module, images, bn: str, grid: str) -> None:
    data, cal = images
    fast, plain = both_ways(resnet, data, RESNET_LAYERS, grid=grid, bn_images=cal if bn == "recalibrate" else None)
    for layer in RESNET_LAYERS:
        assert fast[layer] == plain[layer], layer  # every number and per-image outcome, bitwise
        # and the prefix was reused: 2 evaluation batches, plus the calibration batches (100, 30) when re-estimated
        assert fast[layer].reuse == {"prefix_passes": 2 + 2 * (bn == "recalibrate"), "fallback": None}, layer
    assert fast["fc"].ref_clean_acc > 0.5 and sum(len(set(fast[k].clean_acc)) > 1 for k in RESNET_LAYERS) >= 2


def test_reuse_equals_full_passes_on_mnist_cnn_with_the_null_model(trained_cnn: nn.Module, images) -> None:
    fast, plain = both_ways(trained_cnn, images[0], ["conv1", "conv2", "fc1"], grid="value", null_masks=2)
    assert all(fast[k] == plain[k] for k in fast) and fast["fc1"].null_adv_correct.shape == (2, 3, 40)
    # the cut was used, not silently replaced by full passes: one prefix pass per batch of 25 (40 images: 2)
    assert all(fast[k].reuse == {"prefix_passes": 2, "fallback": None} for k in fast)
    assert all(plain[k].reuse is None for k in plain)


@pytest.mark.slow
def test_several_thresholds_per_pass_give_the_same_numbers(resnet: nn.Module, images) -> None:
    data, cal = images
    layers = ["layer1.0.conv1", "layer3.0.conv2"]
    one = local_analysis(resnet, data, "pulse", FGSM(EPS), 5, layers=layers, bn_images=cal, batch_size=25)
    three = local_analysis(resnet, data, "pulse", FGSM(EPS), 5, layers=layers, bn_images=cal, batch_size=25,
                           thresholds_per_pass=3)  # groups of 3 and 2
    for layer in layers:
        a, b = one[layer], three[layer]
        assert np.array_equal(a.clean_correct, b.clean_correct) and np.array_equal(a.adv_correct, b.adv_correct)
        assert a.clean_loss == pytest.approx(b.clean_loss, abs=1e-6)
        assert a.adv_loss == pytest.approx(b.adv_loss, abs=1e-6)
    with pytest.raises(InvalidArgument, match="thresholds_per_pass"):
        local_analysis(resnet, data, "pulse", FGSM(EPS), 5, layers=layers, thresholds_per_pass=0)


def test_the_prefix_runs_once_per_batch(trained_cnn: nn.Module, images) -> None:
    """Sweeping fc2 with reuse, conv1 runs twice for the reference, once per batch with the input gradient's
    graph kept, and once per threshold for the adversarial images; a full pass runs it twice per threshold."""
    calls = []
    model = copy.deepcopy(trained_cnn)
    conv1_forward = model.conv1.forward
    model.conv1.forward = lambda x: calls.append(len(x)) or conv1_forward(x)
    local_analysis(model, images[0], "highpass", FGSM(EPS), 3, layers=["fc2"], batch_size=1000)
    assert calls == [40] * (2 + 1 + 3)
    calls.clear()
    local_analysis(model, images[0], "highpass", FGSM(EPS), 3, layers=["fc2"], batch_size=1000, reuse=False)
    assert calls == [40] * (2 + 2 * 3)


def test_a_point_whose_mask_equals_the_one_before_is_copied(trained_cnn: nn.Module, images) -> None:
    """fc2's weights planted at +-0.1 only: high-pass thresholds -0.1, -0.05, 0, 0.05 all remove exactly the
    negative weights, so the sweep evaluates 2 distinct points, and the copies equal a direct evaluation."""
    data = images[0]
    model = copy.deepcopy(trained_cnn)
    with torch.no_grad():
        model.fc2.weight.copy_(0.1 * model.fc2.weight.sign())
    calls = []

    def counting_fgsm(net, x, y):
        calls.append(1)
        return fgsm(net, x, y, EPS)

    result = local_analysis(model, data, "highpass", counting_fgsm, 5, layers=["fc2"], batch_size=1000)["fc2"]
    assert result.thresholds == pytest.approx([-0.1, -0.05, 0.0, 0.05, 0.1])
    negative = int((model.fc2.weight < 0).sum())
    assert result.removed == [negative] * 4 + [1280] and len(calls) == 1 + 2  # reference + 2 distinct points
    filtered = copy.deepcopy(model)
    with torch.no_grad():
        filtered.fc2.weight.clamp_(min=0)
    direct = evaluate_point(filtered, *data, FGSM(EPS))
    for t in range(4):
        assert np.array_equal(result.adv_correct[t], direct.adv_correct) and result.adv_loss[t] == direct.adv_loss
    fast = local_analysis(model, data, "highpass", FGSM(EPS), 5, layers=["fc2"], batch_size=1000)["fc2"]
    assert fast.adv_acc == result.adv_acc and fast.clean_loss == result.clean_loss


@pytest.mark.parametrize("arch", ["resnet18", pytest.param("resnet50", marks=pytest.mark.slow), "squeezenet1_1",
                                  "shufflenet_v2_x0_5", "mnist_cnn"])
def test_every_registry_model_cuts_exactly_at_every_layer(arch: str, mnist5k_test) -> None:
    """The prefix and suffix of every cut give the model's own logits, bitwise (2 images, random weights)."""
    seed_everything(0)
    model = build_model(arch, "mnist5k").eval()
    x = mnist5k_test[0][:2]
    with torch.no_grad():
        expected = model(x)
        traced = trace(model)
        for name, m in filterable_layers(model):
            split = split_model(model, name, traced)
            assert not isinstance(split, str), f"{name}: {split}"
            assert torch.equal(split.outputs(split.prefix(x), [m.weight], None), expected), name


def test_a_cut_that_would_not_be_exact_falls_back_with_the_reason(trained_cnn: nn.Module, images) -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3, padding=1)
            self.fc = nn.Linear(784, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.conv(self.conv(x)).flatten(1))

    assert split_model(Twice(), "conv") == "conv runs 2 times in a forward pass"
    model = copy.deepcopy(trained_cnn)
    hook = model.conv2.register_forward_hook(lambda *_: None)
    assert split_model(model, "fc1").startswith("modules have hooks (conv2)")
    # the sweep still runs, a full pass per threshold, with the numbers of reuse=False
    fast, plain = both_ways(model, images[0], ["fc1"])
    assert fast["fc1"] == plain["fc1"]
    assert fast["fc1"].reuse == {"prefix_passes": 0, "fallback": "modules have hooks (conv2)"}  # and says why
    hook.remove()
    assert not isinstance(split_model(model, "fc1"), str)


@pytest.mark.slow
def test_bf16_and_channels_last_with_reuse_and_several_thresholds_per_pass(resnet: nn.Module, images) -> None:
    """The GPU options on CPU: under bf16 autocast and channels-last, reuse gives the numbers of full passes, and
    2 thresholds per pass the same per-image outcomes."""
    data, cal = images
    model = copy.deepcopy(resnet)
    x, cal = channels_last(model, data[0], cal)
    options = {"layers": ["layer2.0.conv1"], "bn_images": cal, "batch_size": 25}
    with autocast(torch.device("cpu"), "bf16"):
        fast = local_analysis(model, (x, data[1]), "lowpass", FGSM(EPS), 3, **options)["layer2.0.conv1"]
        plain = local_analysis(model, (x, data[1]), "lowpass", FGSM(EPS), 3, reuse=False, **options)["layer2.0.conv1"]
        paired = local_analysis(model, (x, data[1]), "lowpass", FGSM(EPS), 3, thresholds_per_pass=2,
                                **options)["layer2.0.conv1"]
    assert fast == plain
    assert np.array_equal(paired.clean_correct, fast.clean_correct)
    assert np.array_equal(paired.adv_correct, fast.adv_correct)
    assert paired.adv_loss == pytest.approx(fast.adv_loss, abs=1e-4)
