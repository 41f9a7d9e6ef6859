"""Normalised depth: execution order, not definition order; ResNet-18's 21 layers from 0 to 1."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustness.errors import InvalidArgument
from robustness.models import (
    arch_depths,
    bin_name,
    build_model,
    depth_bins,
    execution_order,
    filterable_layers,
    layer_depths,
    model_depths,
)


class Backwards(nn.Module):
    """Layers defined in the opposite order to the one they run in; ``unused`` never runs."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(6, 3)
        self.unused = nn.Linear(6, 6)
        self.middle = nn.Linear(4, 6)
        self.stem = nn.Conv2d(1, 1, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.middle(self.stem(x).flatten(1)))


def test_depth_follows_execution_not_definition() -> None:
    model = Backwards()
    assert [name for name, _ in filterable_layers(model)] == ["head", "unused", "middle", "stem"]
    assert layer_depths(model, torch.zeros(1, 1, 4, 4)) == {"stem": 0.0, "middle": 0.5, "head": 1.0}
    assert model.training  # the mode is restored, the hooks removed
    assert not any(m._forward_hooks for m in model.modules())


def test_resnet18_has_21_layers_from_0_to_1_in_execution_order() -> None:
    depths = arch_depths("resnet18", "mnist5k")
    assert len(depths) == 21 and list(depths.values()) == pytest.approx([i / 20 for i in range(21)])
    names = list(depths)
    assert names[0] == "conv1" and names[-1] == "fc" and depths["fc"] == 1.0
    # In a block the two convolutions run before its shortcut's (torchvision's BasicBlock.forward).
    assert names.index("layer2.0.conv2") < names.index("layer2.0.downsample.0") < names.index("layer2.1.conv1")
    # The same order as a real forward pass of a built model (not on the meta device).
    model = build_model("resnet18", "mnist5k")
    assert execution_order(model, torch.zeros(1, 1, 28, 28)) == names
    assert model_depths(model, (1, 28, 28)) == depths


def test_bins_are_stated_and_cover_0_to_1() -> None:
    assert list(depth_bins(4)) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert [bin_name(d, 4) for d in (0.0, 0.25, 0.7, 1.0)] == ["d 0.00-0.25", "d 0.25-0.50", "d 0.50-0.75",
                                                                "d 0.75-1.00"]
    with pytest.raises(InvalidArgument):
        bin_name(1.2)
    with pytest.raises(InvalidArgument):
        depth_bins(0)
