"""Model registry and :func:`build_model`.

Every model takes images in ``[0, 1]``: the dataset's mean/std normalisation is a
``normalize`` submodule applied before anything else (by a forward pre-hook, so the
layers keep torchvision's names: ``conv1``, ``layer1.0.conv1``, ``fc``).

``resnet18_cifar`` and ``resnet50_cifar`` are the ResNets with the stem used for 32x32
images: a 3x3 stride-1 first convolution and no max-pool, so ``layer1`` sees the full
resolution instead of a quarter of it (torchvision's stem is 7x7 stride 2 plus a max-pool,
made for 224x224 ImageNet images).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import nn
from torchvision import models as tvm

from ..data import dataset_info
from ..errors import InvalidArgument
from ..vocab import ARCHS

Builder = Callable[[int, int, tuple[int, int, int]], nn.Module]
MODELS: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    """Add a builder ``(in_channels, num_classes, shape) -> nn.Module`` to the registry under ``name``, one of
    :data:`robustness.vocab.ARCHS` (a new architecture is named there first, and given a folder in
    :mod:`robustness.paths`)."""
    if name not in ARCHS:
        raise InvalidArgument(f"{name!r} is not an architecture of robustness.vocab.ARCHS: name it there first")

    def add(builder: Builder) -> Builder:
        MODELS[name] = builder
        return builder

    return add


def _stem(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """``conv`` rebuilt for ``in_channels`` input channels, other settings kept."""
    if conv.in_channels == in_channels:
        return conv
    return nn.Conv2d(
        in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None
    )


def _resnet(factory: Callable[..., tvm.ResNet], stem: Literal["torchvision", "cifar"]) -> Builder:
    def build(in_channels: int, num_classes: int, shape: tuple[int, int, int]) -> nn.Module:
        net = factory(num_classes=num_classes)
        if stem == "cifar":
            net.conv1 = nn.Conv2d(in_channels, net.conv1.out_channels, 3, 1, 1, bias=False)
            net.maxpool = nn.Identity()
        else:
            net.conv1 = _stem(net.conv1, in_channels)
        return net

    return build


register("resnet18")(_resnet(tvm.resnet18, "torchvision"))
register("resnet50")(_resnet(tvm.resnet50, "torchvision"))
register("resnet18_cifar")(_resnet(tvm.resnet18, "cifar"))
register("resnet50_cifar")(_resnet(tvm.resnet50, "cifar"))


@register("squeezenet1_1")
def _squeezenet(in_channels: int, num_classes: int, shape: tuple[int, int, int]) -> nn.Module:
    net = tvm.squeezenet1_1(num_classes=num_classes)
    net.features[0] = _stem(net.features[0], in_channels)
    return net


def _shufflenet(factory: Callable[..., tvm.ShuffleNetV2]) -> Builder:
    def build(in_channels: int, num_classes: int, shape: tuple[int, int, int]) -> nn.Module:
        net = factory(num_classes=num_classes)
        net.conv1[0] = _stem(net.conv1[0], in_channels)
        return net

    return build


register("shufflenet_v2_x1_0")(_shufflenet(tvm.shufflenet_v2_x1_0))
register("shufflenet_v2_x0_5")(_shufflenet(tvm.shufflenet_v2_x0_5))


class MnistCNN(nn.Module):
    """The defensive-perturbation project's small CNN: conv 32, conv 64, max-pool, FC 128, FC n."""

    def __init__(self, in_channels: int, num_classes: int, shape: tuple[int, int, int]):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        flat = 64 * ((shape[1] - 4) // 2) * ((shape[2] - 4) // 2)
        self.fc1 = nn.Linear(flat, 128)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


register("mnist_cnn")(MnistCNN)


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel; mean and std are buffers, saved with the model."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _normalize_input(module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return (module.normalize(args[0]), *args[1:])


def with_normalization(net: nn.Module, mean: Sequence[float], std: Sequence[float]) -> nn.Module:
    """``net`` made to take ``[0, 1]`` images: a ``normalize`` submodule (``(x - mean) / std``, saved
    with the weights) runs first by a forward pre-hook, so the other layers keep their names."""
    net.normalize = Normalize(tuple(mean), tuple(std))
    net.register_forward_pre_hook(_normalize_input)
    return net


def build_model(arch: str, dataset: str) -> nn.Module:
    """A fresh (randomly initialised) ``arch`` for ``dataset`` that takes ``[0, 1]`` images.

    The stem takes the dataset's channel count and the head its class count. Seed
    torch first (``runtime.seed_everything``) for a reproducible initialisation.
    """
    if arch not in MODELS:
        raise InvalidArgument(f"unknown architecture {arch!r}: choose one of {', '.join(MODELS)}")
    info = dataset_info(dataset)
    return with_normalization(MODELS[arch](info.shape[0], info.num_classes, info.shape), info.mean, info.std)


def filterable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The ``Conv2d`` and ``Linear`` layers whose ``.weight`` synaptic filtering acts on, in module order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
