"""Every architecture builds for every dataset, normalising [0, 1] inputs inside."""

from __future__ import annotations

import pytest
import torch

from robustness.data import DATASETS
from robustness.errors import InvalidArgument
from robustness.models import MODELS, build_model, filterable_layers


@pytest.mark.parametrize("dataset", sorted(DATASETS))
@pytest.mark.parametrize("arch", sorted(MODELS))
def test_logits_shape(arch: str, dataset: str) -> None:
    info = DATASETS[dataset]
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
