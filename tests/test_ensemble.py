"""The Square attack (against torchattacks called directly) and the ensemble report: the per-example worst case,
its intervals and the gradient-masking rule, with a model whose gradients are planted to be useless."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchattacks
from torch import nn

from robustness.attacks import Ensemble, Square, ensemble_outcomes, ensemble_report, masking_flag, masking_gap
from robustness.cli import main
from robustness.data import make_loader
from robustness.errors import InvalidArgument
from robustness.stats import wilson_interval

BATCH = 100


def _wrong(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1) != y


def test_square_images_identical_to_torchattacks(trained_cnn, batch) -> None:
    """We wrap torchattacks' Square: same seed and queries give its images bit for bit, inside the ball."""
    x, y = batch[0][:40], batch[1][:40]
    for norm, eps in (("linf", 0.15), ("l2", 2.0)):
        ours = Square(eps, norm, queries=200, seed=3)(trained_cnn, x, y)
        theirs = torchattacks.Square(trained_cnn, norm={"linf": "Linf", "l2": "L2"}[norm], eps=eps, n_queries=200,
                                     loss="margin", seed=3)(x, y)
        assert torch.equal(ours, theirs)
        size = (ours - x).flatten(1).abs().amax(1) if norm == "linf" else (ours - x).flatten(1).norm(dim=1)
        assert size.max() <= eps + 1e-5 and ours.min() >= 0 and ours.max() <= 1
        assert _wrong(trained_cnn, ours, y).sum() > _wrong(trained_cnn, x, y).sum() + 2


def test_square_keeps_the_callers_random_state_and_model(trained_cnn, batch) -> None:
    x, y = batch[0][:10], batch[1][:10]
    torch.manual_seed(5)
    state = torch.get_rng_state()
    trained_cnn.train()
    Square(0.1, queries=10)(trained_cnn, x, y)
    assert trained_cnn.training and torch.equal(torch.get_rng_state(), state)
    trained_cnn.eval()
    assert torch.equal(Square(0.0)(trained_cnn, x, y), x)
    with pytest.raises(InvalidArgument, match="queries must be an integer >= 1"):
        Square(0.1, queries=0)


def test_worst_case_is_per_example_below_every_member_and_counts_match(trained_cnn, batch) -> None:
    x, y = batch
    ensemble = Ensemble(0.1, pgd_steps=5, apgd_steps=10, square_queries=100)
    found = ensemble_outcomes(trained_cnn, make_loader(torch.utils.data.TensorDataset(x, y), 50), ensemble)
    for name in ("clean", "pgd", "apgd-ce", "apgd-dlr", "square"):
        assert np.all(found["worst"] <= found[name])
    assert np.array_equal(found["worst"], found["clean"] & found["pgd"] & found["apgd-ce"] & found["apgd-dlr"]
                          & found["square"])
    assert found["worst"].sum() < found["clean"].sum() - 10  # a standard model at eps 0.1 is not robust
    rows = {row["attack"]: row for row in ensemble_report(found)}
    assert rows["worst"]["accuracy"] == found["worst"].mean()
    assert (rows["worst"]["lo"], rows["worst"]["hi"]) == wilson_interval(int(found["worst"].sum()), len(y))


def test_masking_rule_on_planted_outcomes() -> None:
    n = 400
    square = np.zeros(n, bool)
    square[:100] = True  # Square: 25%
    far = square.copy()
    far[100:200] = True  # 50%: 100 images only Square breaks, none the other way
    near = square.copy()
    near[100:104] = True  # 26%: b=4, c=0, within noise (3 < 2 * 2; uncorrected McNemar would call it)
    assert masking_gap(far, square) == pytest.approx((0.25, 10 / n))  # b=100, c=0: 99 > 2 * 10 images
    found = {"clean": np.ones(n, bool), "pgd": far, "apgd-ce": near, "apgd-dlr": square, "square": square,
             "worst": square}
    rows = {row["attack"]: row["masking"] for row in ensemble_report(found)}
    assert rows == {"clean": "", "pgd": "POSSIBLE", "apgd-ce": "no", "apgd-dlr": "no", "square": "", "worst": ""}
    assert "pgd" in masking_flag(ensemble_report(found)) and "apgd-ce" not in masking_flag(ensemble_report(found))


class ZeroGradient(nn.Module):
    """``model`` behind a planted gradient mask: the forward pass is the model's, the input gradient is 0."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.detach()) + 0 * x.sum()


@pytest.mark.slow
def test_masked_gradients_are_flagged_and_the_worst_case_sees_through_them(trained_cnn, batch) -> None:
    x, y = batch
    masked = ZeroGradient(trained_cnn).eval()
    found = ensemble_outcomes(masked, make_loader(torch.utils.data.TensorDataset(x, y), 100),
                              Ensemble(0.15, pgd_steps=10, apgd_steps=10, square_queries=300))
    assert found["pgd"].mean() > found["square"].mean() + 0.2  # the white-box attacks are blinded
    assert masking_flag(ensemble_report(found)) is not None
    assert found["worst"].mean() <= found["square"].mean()


def test_attack_command_prints_the_ensemble_with_intervals(checkpoints_root: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "ensemble.json"
    status = main(["attack", "--arch", "mnist_cnn", "--models-root", str(checkpoints_root), "--device", "cpu",
                   "--test-subset", "30", "--attack", "ensemble", "--eps", "0.1", "-k", "3", "--apgd-steps", "3",
                   "--queries", "20", "--save-table", str(out)])
    printed = capsys.readouterr().out
    rows = json.loads(out.read_text())
    flagged = any(r["masking"] == "POSSIBLE" for r in rows)  # the verdict printed is the rows' verdict
    verdict = "possible gradient masking: " if flagged else "no sign of gradient masking"
    assert status == 0 and "worst" in printed and verdict in printed
    assert [r["attack"] for r in rows] == ["clean", "pgd", "apgd-ce", "apgd-dlr", "square", "worst"]
    assert all(r["regime"] == "standard" and r["lo"] <= r["accuracy"] <= r["hi"] for r in rows)


@pytest.mark.parametrize("masked", [True, False])
def test_the_attack_command_prints_the_masking_verdict_its_rows_call_for(masked, checkpoints_root: Path,
                                                                          monkeypatch, capsys) -> None:
    # Planted outcomes on 200 images: PGD leaves 100 more images robust than Square (flagged) or the same ones.
    n = 200
    square = np.arange(n) < 50
    planted = {"clean": np.ones(n, bool), "pgd": np.arange(n) < (150 if masked else 50), "apgd-ce": square,
               "apgd-dlr": square, "square": square}
    planted["worst"] = planted["clean"] & planted["pgd"] & square
    monkeypatch.setattr("robustness.attacks.ensemble_outcomes", lambda model, loader, ensemble: planted)
    assert main(["attack", "--arch", "mnist_cnn", "--models-root", str(checkpoints_root), "--device", "cpu",
                 "--test-subset", "10", "--attack", "ensemble"]) == 0
    printed = capsys.readouterr().out
    assert ("possible gradient masking: pgd leave(s)" in printed) == masked
    assert ("no sign of gradient masking" in printed) == (not masked)
