"""Filters and threshold grids on hand-made tensors: exact zero sets, ties, range ends."""

from __future__ import annotations

import pytest
import torch

from robustness.errors import InvalidArgument
from robustness.filtering import (
    apply_filter,
    canonical_kind,
    check_grid,
    filter_mask,
    global_range,
    half_width,
    quantile_grid,
    threshold_grid,
    value_grid,
    weight_range,
)
from robustness.models import build_model

# Exactly representable values, with a tie at 0.25 and repeated range ends.
W = torch.tensor([[-1.0, -0.5, 0.0], [0.25, 0.25, 0.5], [1.0, -1.0, 1.0]])


def zeroed(kind: str, alpha: float, h: float | None = None) -> list[float]:
    """The values the filter sets to zero, sorted."""
    return sorted(W[filter_mask(W, kind, alpha, h)].tolist())


@pytest.mark.parametrize(
    ("kind", "alpha", "h", "expected"),
    [
        ("highpass", 0.25, None, [-1.0, -1.0, -0.5, 0.0, 0.25, 0.25]),  # W <= a: the tie at a goes
        ("highpass", -1.0, None, [-1.0, -1.0]),  # bottom end: only the minimum
        ("highpass", 1.0, None, sorted(W.flatten().tolist())),  # top end: everything
        ("lowpass", 0.25, None, [0.25, 0.25, 0.5, 1.0, 1.0]),  # W >= a: the tie at a goes
        ("lowpass", 1.0, None, [1.0, 1.0]),  # top end: only the maximum
        ("lowpass", -1.0, None, sorted(W.flatten().tolist())),  # bottom end: everything
        ("pulse", 0.25, 0.25, [0.0, 0.25, 0.25]),  # [0, 0.5): lower edge in, upper edge out
        ("pulse", 0.5, 0.25, [0.25, 0.25, 0.5]),  # [0.25, 0.75)
        ("pulse", -1.0, 0.5, [-1.0, -1.0]),  # [-1.5, -0.5): the bottom end in, -0.5 out
        ("pulse", 1.0, 0.5, [0.5, 1.0, 1.0]),  # [0.5, 1.5): the top end and the lower edge 0.5 are inside
        ("pulse", 0.3, 0.0, []),  # zero width removes nothing
    ],
)
def test_exact_zero_sets(kind: str, alpha: float, h: float | None, expected: list[float]) -> None:
    assert zeroed(kind, alpha, h) == expected


@pytest.mark.parametrize(("alias", "kind"), [("step_minmax", "highpass"), ("step_maxmin", "lowpass"),
                                             ("pulse_minmax", "pulse")])
def test_aliases_are_the_same_filters(alias: str, kind: str) -> None:
    assert canonical_kind(alias) == kind
    for alpha in (-1.0, -0.5, 0.25, 1.0):
        assert torch.equal(filter_mask(W, alias, alpha, 0.25), filter_mask(W, kind, alpha, 0.25))
        assert torch.equal(apply_filter(W, alias, alpha, 0.25), apply_filter(W, kind, alpha, 0.25))


def test_apply_filter_is_out_of_place_and_zeroes_exactly_the_mask() -> None:
    original = W.clone()
    out = apply_filter(W, "highpass", 0.0)
    assert torch.equal(W, original)
    assert out.dtype == W.dtype and out.shape == W.shape
    assert torch.equal(out, torch.where(W <= 0.0, torch.zeros_like(W), W))


def test_threshold_grids_direction_and_exact_ends() -> None:
    w = torch.randn(50, generator=torch.Generator().manual_seed(0))
    lo, hi = weight_range([w])
    up = threshold_grid("highpass", lo, hi, 7)
    assert len(up) == 7 and up[0] == lo and up[-1] == hi and up == sorted(up)
    assert threshold_grid("pulse", lo, hi, 7) == up
    assert threshold_grid("lowpass", lo, hi, 7) == up[::-1]
    # The ends compare exactly against the float32 weights: the sweep ends remove everything.
    assert filter_mask(w, "highpass", up[-1]).all() and filter_mask(w, "lowpass", up[0]).all()
    assert filter_mask(w, "highpass", up[0]).sum() == 1 and filter_mask(w, "lowpass", up[-1]).sum() == 1


def test_pulse_bands_of_neighbouring_thresholds_do_not_overlap() -> None:
    w = torch.linspace(-0.7, 0.9, 1001)
    lo, hi = weight_range([w])
    T = 25
    h = half_width(lo, hi, T)
    assert h == pytest.approx((hi - lo) / (2 * T))
    hits = torch.stack([filter_mask(w, "pulse", a, h) for a in threshold_grid("pulse", lo, hi, T)]).sum(0)
    assert hits.max() == 1  # every weight falls in at most one band
    assert hits[0] == 1 and hits[-1] == 1  # both ends are covered


def test_global_range() -> None:
    model = build_model("mnist_cnn", "mnist5k")
    assert global_range(model) == (-1.0, 1.0)
    assert global_range(model, (-0.5, 2)) == (-0.5, 2.0)
    weights = torch.cat([m.weight.flatten() for m in (model.conv1, model.conv2, model.fc1, model.fc2)])
    assert global_range(model, "auto") == (weights.min().item(), weights.max().item())


def test_bad_arguments_name_the_fix() -> None:
    with pytest.raises(InvalidArgument, match="highpass, lowpass, pulse, step_minmax"):
        filter_mask(W, "bandpass", 0.0)
    with pytest.raises(InvalidArgument, match="half_width"):
        filter_mask(W, "pulse", 0.0)
    with pytest.raises(InvalidArgument, match="at least 2"):
        threshold_grid("highpass", 0.0, 1.0, 1)
    with pytest.raises(InvalidArgument, match="empty"):
        threshold_grid("highpass", 1.0, 0.0, 5)
    with pytest.raises(InvalidArgument, match="auto"):
        global_range(build_model("mnist_cnn", "mnist5k"), "max")


# ---------------------------------------------------------------- the quantile grid


def removed_counts(w: torch.Tensor, kind: str, count: int) -> list[int]:
    return [int(cut.mask(w).sum()) for cut in quantile_grid(kind, [w], count)]


@pytest.mark.parametrize("kind", ["highpass", "lowpass"])
def test_quantile_grid_removes_the_fraction_t_hat(kind: str) -> None:
    w = torch.randn(1000, generator=torch.Generator().manual_seed(0))  # no ties
    assert removed_counts(w, kind, 5) == [0, 250, 500, 750, 1000]
    assert removed_counts(w, kind, 7) == [round(k * 1000 / 6) for k in range(7)]  # 0, 167, 333, 500, 667, 833, 1000
    cuts = quantile_grid(kind, [w], 5)
    lowest = w.sort().values[:250] if kind == "highpass" else w.sort().values[-250:]
    assert torch.equal(w[cuts[1].mask(w)].sort().values, lowest)  # which ones: the lowest (highest) quarter
    order = [c.threshold for c in cuts]
    assert order == (sorted(order) if kind == "highpass" else sorted(order, reverse=True))


def test_quantile_pulse_bands_tile_the_weights_in_equal_counts() -> None:
    w = torch.randn(1000, generator=torch.Generator().manual_seed(1))
    cuts = quantile_grid("pulse", [w], 7)
    hits = torch.stack([c.mask(w) for c in cuts])
    assert hits.sum(0).eq(1).all()  # every weight in exactly one band
    assert hits.sum(1).tolist() == [142, 143, 143, 143, 143, 143, 143]  # ranks floor(k n / T) .. floor((k+1) n / T)
    assert [c.threshold for c in cuts] == sorted(c.threshold for c in cuts)
    assert all(c.band[0] < c.threshold < c.band[1] for c in cuts)


def test_quantile_grid_with_ties_removes_the_closest_count_and_pools_tensors() -> None:
    # 10 weights: 0.5 four times. Removing 4 (t̂ = 0.4) can take 3 (< 0.5) or 7 (<= 0.5): 3 is closer.
    w = torch.tensor([-1.0, -0.75, -0.25, 0.5, 0.5, 0.5, 0.5, 0.75, 1.0, 2.0])
    assert removed_counts(w, "highpass", 6) == [0, 2, 3, 7, 8, 10]  # asked 0, 2, 4, 6, 8, 10: 6 -> 7 (1 off, not 3)
    assert removed_counts(w, "lowpass", 6) == [0, 2, 3, 7, 8, 10]  # mirrored: 4 -> 3 (0.75 and up), 6 -> 7
    assert sum(int(c.mask(w).sum()) for c in quantile_grid("pulse", [w], 3)) == 10
    # one tensor or the same weights split over two: the same thresholds (the grid pools them)
    assert quantile_grid("highpass", [w[:4], w[4:].view(2, 3)], 6) == quantile_grid("highpass", [w], 6)


def test_quantile_thresholds_compare_exactly_in_float32() -> None:
    w = torch.rand(3, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float32)
    first, *_, last = quantile_grid("highpass", [w], 4)
    assert first.mask(w).sum() == 0 and first.threshold < w.min().item()
    assert last.mask(w).all() and last.threshold == w.max().item()


def test_unknown_grid_names_the_choices() -> None:
    with pytest.raises(InvalidArgument, match="unknown grid 'log'.*value.*quantile"):
        check_grid("log")
    assert [c.band for c in value_grid("pulse", -1.0, 1.0, 4)] == [(a - 0.25, a + 0.25) for a in
                                                                    threshold_grid("pulse", -1.0, 1.0, 4)]
