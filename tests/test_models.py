"""Every architecture builds for every dataset, normalising [0, 1] inputs inside."""

from __future__ import annotations

import pytest
import torch

from robustness.data import DATASET_INFO
from robustness.errors import InvalidArgument
from robustness.models import MODELS, build_model, filterable_layers, with_normalization


@pytest.mark.parametrize("dataset", sorted(DATASET_INFO))
@pytest.mark.parametrize("arch", sorted(MODELS))
def test_logits_shape(arch: str, dataset: str) -> None:
    info = DATASET_INFO[dataset]
    model = build_model(arch, dataset).eval()
    with torch.no_grad():
        logits = model(torch.rand(2, *info.shape))
    assert logits.shape == (2, info.num_classes)


def test_normalisation_is_applied_once_inside_the_model() -> None:
    torch.manual_seed(0)
    model = build_model("mnist_cnn", "mnist").eval()
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        direct = model(x)
        model._forward_pre_hooks.clear()
        manual = model((x - 0.1307) / 0.3081)
    assert torch.allclose(direct, manual)


def test_resnet18_has_21_filterable_layers_with_torchvision_names() -> None:
    names = [name for name, _ in filterable_layers(build_model("resnet18", "mnist5k"))]
    assert len(names) == 21 and names[0] == "conv1" and names[-1] == "fc" and "layer1.0.conv1" in names


def test_seeded_builds_are_identical_and_seeds_differ() -> None:
    def weights(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return build_model("resnet18", "mnist5k").fc.weight

    assert torch.equal(weights(1), weights(1)) and not torch.equal(weights(1), weights(2))


def test_unknown_architecture_lists_valid_names() -> None:
    with pytest.raises(InvalidArgument, match="resnet18.*mnist_cnn"):
        build_model("vgg16", "mnist")


@pytest.mark.parametrize("arch", ["resnet18_cifar", "resnet50_cifar"])
def test_cifar_stem_keeps_the_full_resolution_into_layer1(arch: str) -> None:
    """3x3 stride-1 first convolution, no max-pool: layer1 sees 32x32 feature maps (torchvision's stem: 8x8)."""
    sizes = {}
    for name in (arch, arch.removesuffix("_cifar")):
        model = build_model(name, "cifar10").eval()
        model.layer1.register_forward_hook(lambda m, i, out, name=name: sizes.__setitem__(name, out.shape[-2:]))
        with torch.no_grad():
            model(torch.rand(1, 3, 32, 32))
    assert sizes == {arch: (32, 32), arch.removesuffix("_cifar"): (8, 8)}
    model = build_model(arch, "mnist5k")
    assert (model.conv1.in_channels, model.conv1.kernel_size, model.conv1.stride) == (1, (3, 3), (1, 1))
    assert isinstance(model.maxpool, torch.nn.Identity)


def test_with_normalization_wraps_any_network() -> None:
    net = with_normalization(torch.nn.Flatten(), (0.5, 0.25), (0.5, 2.0))
    x = torch.rand(2, 2, 1, 1)
    assert torch.allclose(net(x), torch.stack([(x[:, 0] - 0.5) / 0.5, (x[:, 1] - 0.25) / 2.0], 1).flatten(1))
    assert set(net.state_dict()) == {"normalize.mean", "normalize.std"}
