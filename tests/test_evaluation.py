"""Clean/adversarial evaluation, eps sweeps, eps calibration and the ``attack`` command."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from robustness.attacks import (
    APGD,
    FGSM,
    PGD,
    accuracy,
    calibrate_eps,
    eps_sweep,
    evaluate,
    fgsm,
    intervals,
    plot_eps_sweep,
)
from robustness.cli import main
from robustness.errors import InvalidArgument
from robustness.figures import save_figure
from robustness.stats import wilson_interval
from robustness.training import TrainConfig, train

BATCH = 200  # images in the `batch` fixture (conftest)


@pytest.fixture(scope="module")
def loader(batch) -> DataLoader:
    return DataLoader(TensorDataset(*batch), batch_size=64)  # uneven last batch on purpose


def test_evaluate_counts_match_a_direct_computation(trained_cnn, batch, loader):
    x, y = batch
    with torch.no_grad():
        clean_ok = trained_cnn(x).argmax(1) == y
        x_adv = fgsm(trained_cnn, x, y, 0.1)
        adv_ok = trained_cnn(x_adv).argmax(1) == y
    result = evaluate(trained_cnn, loader, FGSM(0.1))
    assert result["n"] == 200
    assert result["clean_acc"] == clean_ok.sum().item() / 200 == accuracy(trained_cnn, loader)
    assert result["robust_acc"] == adv_ok.sum().item() / 200
    assert result["success_rate"] == pytest.approx((clean_ok & ~adv_ok).sum().item() / clean_ok.sum().item())
    assert 0 < result["success_rate"] < 1
    assert result["max_norm"] == pytest.approx(0.1, abs=1e-6)  # FGSM moves some pixel by the full eps
    sizes = (x_adv - x).flatten(1).abs().amax(1)
    assert result["mean_norm"] == pytest.approx(sizes.mean().item(), abs=1e-6)
    assert intervals(result) == {"clean_acc": wilson_interval(clean_ok.sum().item(), 200),
                                 "robust_acc": wilson_interval(adv_ok.sum().item(), 200)}


@pytest.mark.slow
def test_evaluate_accepts_apgd(trained_cnn, batch):
    """evaluate attacks batch by batch (40, 40, 20): its robust accuracy is APGD's on those batches."""
    x, y = batch[0][:100], batch[1][:100]
    loader = DataLoader(TensorDataset(x, y), batch_size=40)
    attack = APGD(0.1, steps=5)
    result = evaluate(trained_cnn, loader, attack)
    with torch.no_grad():
        adv_ok = torch.cat([trained_cnn(attack(trained_cnn, xb, yb)).argmax(1) == yb
                            for xb, yb in zip(x.split(40), y.split(40), strict=True)])
    assert result["robust_acc"] == adv_ok.sum().item() / 100
    assert result["robust_acc"] <= evaluate(trained_cnn, loader, PGD(0.1, 0.025, 5))["robust_acc"] + 1 / 100
    assert 0 < result["max_norm"] <= 0.1 + 1e-6


@pytest.mark.parametrize("attack", [None, FGSM(0.0), PGD(0.0, 0.01, 5), PGD(0.0, 0.1, 5, "l2"), APGD(0.0)],
                         ids=["none", "fgsm", "pgd-linf", "pgd-l2", "apgd"])
def test_eps_zero_gives_clean_accuracy_exactly(trained_cnn, loader, attack):
    result = evaluate(trained_cnn, loader, attack)
    assert result["robust_acc"] == result["clean_acc"] == accuracy(trained_cnn, loader)
    assert result["success_rate"] == result["mean_norm"] == result["max_norm"] == 0


@pytest.mark.slow
def test_robust_accuracy_never_increases_with_eps(trained_cnn, loader, tmp_path):
    rows = eps_sweep(trained_cnn, loader, [0.0, 0.05, 0.1, 0.2], "pgd", steps=5)
    accs = [row["robust_acc"] for row in rows]
    assert accs[0] == rows[0]["clean_acc"]
    assert all(a >= b for a, b in pairwise(accs))
    assert accs[-1] < accs[0] - 0.2
    assert [row["attack"] for row in rows][1] == "pgd-linf_eps0.05_a0.025_k5"
    fgsm_rows = eps_sweep(trained_cnn, loader, [0.1, 0.2], FGSM)  # a factory eps -> attack
    assert all(p["robust_acc"] <= f["robust_acc"] for p, f in zip(rows[2:], fgsm_rows, strict=True))
    apgd_rows = eps_sweep(trained_cnn, loader, [0.0, 0.2], "apgd", steps=5)  # as many steps as the PGD
    assert apgd_rows[0]["robust_acc"] == accs[0] and apgd_rows[1]["robust_acc"] <= accs[-1] + 1 / 200
    assert apgd_rows[1]["attack"] == "apgd-linf_eps0.2_k5"
    fig = plot_eps_sweep({"PGD-L∞": rows, "FGSM": fgsm_rows}, "mnist_cnn")
    assert save_figure(fig, "eps_sweep_test", root=tmp_path).stat().st_size > 0


@pytest.mark.slow
def test_calibrate_eps_hits_the_target(trained_cnn, loader):
    eps = calibrate_eps(trained_cnn, loader, 0.5, "fgsm", tol=0.02)
    assert 0 < eps < 1
    assert evaluate(trained_cnn, loader, FGSM(eps))["robust_acc"] == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize(("target", "kwargs"), [(1.5, {}), (0.999, {}), (0.0, {"hi": 0.01}), (0.5, {"tol": 0}),
                                                (0.5, {"norm": "l2"})])
def test_calibrate_eps_rejects_unreachable_targets(trained_cnn, loader, target, kwargs):
    with pytest.raises(InvalidArgument):
        calibrate_eps(trained_cnn, loader, target, "fgsm", **kwargs)


def test_attack_command(tmp_path, capsys):
    root = str(tmp_path / "models")
    assert main(["attack", "--arch", "mnist_cnn", "--models-root", root]) == 2
    assert "no checkpoint of Init_1" in capsys.readouterr().err
    train(TrainConfig(arch="mnist_cnn", epochs=0, models_root=root, device="cpu"))  # an epoch-0 checkpoint
    common = ["attack", "--arch", "mnist_cnn", "--models-root", root, "--device", "cpu", "--test-subset", "40"]
    assert main([*common, "--epoch", "3"]) == 2
    assert main([*common, "--attack", "fgsm", "-p", "l2"]) == 2
    with pytest.raises(SystemExit, match="2"):  # a count below 1, refused as the options are parsed
        main([*common, "--attack", "pgd", "-k", "0"])
    capsys.readouterr()
    assert main([*common, "--attack", "pgd", "-p", "l2", "-k", "2", "-e", "1.0", "-a", "0.5"]) == 0
    header, row = capsys.readouterr().out.strip().splitlines()
    assert header.split() == ["arch", "init", "epoch", "regime", "dataset", "attack", "precision", "clean_acc",
                              "clean_lo", "clean_hi", "robust_acc", "robust_lo", "robust_hi", "success_rate",
                              "mean_norm", "max_norm", "n"]
    assert row.split()[:7] == ["mnist_cnn", "1", "0", "standard", "mnist5k", "pgd-l2_eps1_a0.5_k2", "fp32"]
    assert row.split()[-1] == "40"
    clean = float(row.split()[7])
    lo, hi = wilson_interval(round(clean * 40), 40)
    assert row.split()[8:10] == [f"{lo:.4f}", f"{hi:.4f}"]
    assert main([*common, "--attack", "apgd", "-k", "3", "-e", "8/255"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[1].split()[5] == "apgd-linf_eps0.0313725_k3"
    assert main([*common, "--attack", "apgd", "-a", "0.01"]) == 2  # APGD sets its own step size
    assert "drop alpha" in capsys.readouterr().err
    assert main([*common, "--attack", "pgd", "-k", "2", "--precision", "bf16", "--channels-last"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[1].split()[6] == "bf16"
    with pytest.raises(SystemExit, match="2"):
        main([*common, "--precision", "fp16"])
    assert "invalid choice: 'fp16'" in capsys.readouterr().err
