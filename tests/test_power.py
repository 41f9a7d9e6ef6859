"""Retraining power: overlap of chosen and random layer sets, sets stratified by stage, and the interval of a
retraining difference over seeds, random sets and images (coverage on a simulated design with a known gain)."""

from __future__ import annotations

import numpy as np
import pytest

from robustness.errors import InvalidArgument
from robustness.models import arch_depths, build_model
from robustness.retraining import (
    MAX_OVERLAP,
    expected_overlap,
    largest_testable_k,
    layer_sizes,
    layer_stages,
    overlap_power,
    power_variants,
    retraining_difference,
    runs_difference,
    stratified_random_sets,
)

RESNET = list(layer_sizes(build_model("resnet18", "mnist5k")))


def test_resnet_stages_come_from_the_module_names() -> None:
    stages = layer_stages(RESNET)
    assert stages["conv1"] == "stem" and stages["fc"] == "head"
    assert stages["layer1.0.conv1"] == "stage 1" and stages["layer4.0.downsample.0"] == "stage 4"
    assert [sum(s == f"stage {i}" for s in stages.values()) for i in range(1, 5)] == [4, 5, 5, 5]
    cnn = arch_depths("mnist_cnn", "mnist5k")
    assert layer_stages(list(cnn), cnn, bins=2) == {"conv1": "d 0.00-0.50", "conv2": "d 0.00-0.50",
                                                "fc1": "d 0.50-1.00", "fc2": "d 0.50-1.00"}
    with pytest.raises(InvalidArgument, match="depth"):
        layer_stages(["a", "b"])


def test_stratified_sets_keep_each_stages_count_and_their_overlap_matches_the_expectation() -> None:
    stages = layer_stages(RESNET)
    chosen = ["conv1", "layer1.0.conv1", "layer1.1.conv2", "layer3.0.conv2", "fc"]
    sets = stratified_random_sets(chosen, stages, 4000, seed=1)
    for s in sets[:50]:
        assert sorted(stages[x] for x in s) == sorted(stages[x] for x in chosen)
        assert s == sorted(s, key=RESNET.index)
    # stem and head have one layer each (always shared); stage 1: 2 of 4 (expected 1 shared); stage 3: 1 of 5.
    expected = (1 + 1 + 2 * 2 / 4 + 1 / 5) / 5
    assert expected_overlap(chosen, stages) == pytest.approx(expected)
    assert overlap_power(chosen, sets)["mean"] == pytest.approx(expected, abs=0.01)
    assert expected_overlap(chosen, stages, stratified=False) == pytest.approx(5 / 21)
    with pytest.raises(InvalidArgument, match="distinct layers"):
        stratified_random_sets(["nope"], stages, 2)


def test_nineteen_of_twenty_one_layers_are_untestable() -> None:
    stages = layer_stages(RESNET)
    chosen = RESNET[1:-1]  # 19 layers
    power = overlap_power(chosen, stratified_random_sets(chosen, stages, 10))
    assert power["mean"] == 1.0 and not power["testable"]  # every stage fully chosen: nothing else to draw
    unstratified = [list(np.random.default_rng(i).choice(RESNET, 19, replace=False)) for i in range(10)]
    assert overlap_power(chosen, unstratified)["mean"] > 0.9
    k = largest_testable_k(RESNET[2:-1], stages)  # ranked without stem and head
    assert expected_overlap(RESNET[2:2 + k], stages) <= MAX_OVERLAP < expected_overlap(RESNET[2:3 + k], stages)
    assert overlap_power(["a", "b"], [["a", "c"], ["c", "d"]]) == {"per_set": [0.5, 0.0], "mean": 0.25,
                                                                   "testable": True, "max_overlap": MAX_OVERLAP}


def _design(rng: np.random.Generator, gain: float, reps: int, seeds: int = 5, sets: int = 10, n: int = 300):
    """Outcomes of a retraining design: per-image difficulty shared by every run, a seed effect shared by the
    chosen and random runs of that seed, a random-set effect; the chosen variant's true mean is ``gain`` higher."""
    u = rng.random((reps, 1, 1, n))
    seed_effect = 0.03 * rng.standard_normal((reps, 1, seeds, 1))
    set_effect = 0.03 * rng.standard_normal((reps, sets, 1, 1))
    chosen = u < 0.6 + gain + seed_effect + 0.01 * rng.standard_normal((reps, 1, seeds, 1))
    random = u < 0.6 + set_effect + seed_effect + 0.01 * rng.standard_normal((reps, sets, seeds, 1))
    return chosen[:, 0], random


def test_the_retraining_interval_covers_the_known_gain() -> None:
    rng = np.random.default_rng(2)
    chosen, random = _design(rng, 0.02, reps=200, n=200)
    found = [retraining_difference(c, r, n_boot=200, seed=i) for i, (c, r) in enumerate(zip(chosen, random,
                                                                                               strict=True))]
    covered = np.mean([f["lo"] <= 0.02 <= f["hi"] for f in found])
    assert covered >= 0.93
    assert found[0]["seeds"] == 5 and found[0]["sets"] == 10 and found[0]["clusters"] == 5
    # Planted: every chosen run correct on 10 more of 100 images than every random run.
    mine = np.tile(np.arange(100) < 70, (3, 1))
    theirs = np.tile(np.arange(100) < 60, (4, 3, 1))
    exact = retraining_difference(mine, theirs, n_boot=200)
    assert exact["diff"] == pytest.approx(0.1) and exact["lo"] < 0.1 < exact["hi"]
    with pytest.raises(InvalidArgument, match="same seeds and images"):
        retraining_difference(mine, theirs[:, :2])


def test_power_variants_and_the_difference_read_off_retraining_runs() -> None:
    stages = layer_stages(RESNET)
    ranked = RESNET[::-1]
    variants = power_variants(ranked, stages, 3, 4, seed=5)
    assert variants["top"] == sorted(ranked[:3], key=RESNET.index) and variants["bottom"] == RESNET[:3]
    assert len(variants) == 2 + 2 * 4
    for name in ("top", "bottom"):
        for i in range(1, 5):
            assert sorted(stages[x] for x in variants[f"{name} random-{i}"]) == sorted(stages[x]
                                                                                     for x in variants[name])
    with pytest.raises(InvalidArgument, match="k is a number"):
        power_variants(ranked, stages, 0, 2)
    rng = np.random.default_rng(3)
    runs = {v: [{"pgd": rng.random(50) < 0.5} for _ in range(3)] for v in variants}
    randoms = [f"top random-{i}" for i in range(1, 5)]
    found = runs_difference(runs, "top", randoms, "pgd", n_boot=100, seed=2)
    mine = np.stack([r["pgd"] for r in runs["top"]])
    theirs = np.stack([np.stack([r["pgd"] for r in runs[v]]) for v in randoms])
    assert found == retraining_difference(mine, theirs, n_boot=100, seed=2)
    with pytest.raises(InvalidArgument, match="no runs"):
        runs_difference(runs, "top", ["nope"], "pgd")
