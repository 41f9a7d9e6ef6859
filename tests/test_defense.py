"""Defensive perturbation: label-free mode, budget, errors, the evaluation's rows, BPDA, saved data, CLI.

The per-example worst case, intervals, gain and distances of the evaluation are tested in
test_defense_eval.py."""

from __future__ import annotations

import copy
import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from robustness import paths
from robustness.attacks import geometry
from robustness.cli import main
from robustness.defense import (
    ATTACKED_ROWS,
    ROWS,
    Defense,
    StraightThrough,
    defend_splits,
    defensive_perturbation,
    evaluate_defense,
    format_results,
    load_defended,
    save_defended,
)
from robustness.errors import DataNotFoundError, InvalidArgument

SMALL = {"eps": 0.2, "alpha": 0.05, "steps": 3, "def_steps": 3}
FAST = {"apgd_steps": 5}  # the evaluation's APGD, shortened for the tests


def test_predicted_mode_never_reads_the_labels(trained_cnn, batch) -> None:
    x, y = batch[0][:6], batch[1][:6]
    runs = [
        defensive_perturbation(trained_cnn, x, budget=0.2, y=labels, **SMALL)
        for labels in (None, y, (y + 3) % 10, "not labels at all")
    ]
    assert all(torch.equal(runs[0], other) for other in runs[1:])
    assert not torch.equal(runs[0], x)  # the defense did move the images


@pytest.mark.parametrize(("norm", "attack", "budget"), [("linf", (0.2, 0.05), 0.03), ("l2", (2.0, 0.5), 0.4)])
def test_budget_and_pixel_range_hold(trained_cnn, batch, norm: str, attack: tuple, budget: float) -> None:
    x, _ = batch
    eps, alpha = attack
    x_def = defensive_perturbation(trained_cnn, x, norm=norm, eps=eps, alpha=alpha, steps=3, budget=budget,
                                   def_steps=4, lr=0.1)
    sizes = geometry(norm).size(x_def - x)
    assert x_def.min() >= 0 and x_def.max() <= 1
    assert sizes.max() <= budget * (1 + 1e-5)
    # Adam's first steps move every pixel by ~lr, so the budget is the active constraint.
    assert sizes.max() >= 0.9 * budget


def test_unbounded_only_when_asked(trained_cnn, batch) -> None:
    x, _ = batch
    x_def = defensive_perturbation(trained_cnn, x, budget=math.inf, **SMALL)
    assert geometry("linf").size(x_def - x).max() > 0.2
    assert Defense(0.2, 0.05, 3, None).bound == math.inf
    with pytest.raises(TypeError):
        defensive_perturbation(trained_cnn, x, eps=0.2, alpha=0.05, steps=3)  # no default budget


def test_oracle_mode_needs_and_uses_the_labels(trained_cnn, batch) -> None:
    x, y = batch
    with pytest.raises(InvalidArgument, match="pass y"):
        defensive_perturbation(trained_cnn, x, budget=0.2, label="oracle", **SMALL)
    true = defensive_perturbation(trained_cnn, x, budget=0.2, label="oracle", y=y, **SMALL)
    wrong = defensive_perturbation(trained_cnn, x, budget=0.2, label="oracle", y=(y + 1) % 10, **SMALL)
    assert not torch.equal(true, wrong)


BAD = [
    ({"norm": "l1"}, "unknown norm"),
    ({"label": "truth"}, "unknown label mode"),
    ({"eps": -0.1}, "eps"),
    ({"alpha": -0.01}, "alpha"),
    ({"steps": 0}, "steps"),
    ({"steps": -3}, "steps"),
    ({"budget": -1.0}, "budget"),
    ({"budget": float("nan")}, "budget"),
    ({"def_steps": -1}, "def_steps"),
    ({"lr": 0.0}, "lr"),
    ({"label": "oracle", "y": torch.zeros(3, dtype=torch.long)}, "one integer label per image"),
    ({"label": "oracle", "y": torch.full((12,), 10)}, "labels must lie in"),
]


@pytest.mark.parametrize(("change", "message"), BAD)
def test_bad_arguments_raise_one_clear_error(trained_cnn, batch, change: dict, message: str) -> None:
    x, _ = batch
    kwargs = {"eps": 0.2, "alpha": 0.05, "steps": 2, "budget": 0.2, "def_steps": 1, **change}
    with pytest.raises(InvalidArgument, match=message):
        defensive_perturbation(trained_cnn, x, **kwargs)


def test_bad_images_and_threats_raise(trained_cnn, batch) -> None:
    x, y = batch
    with pytest.raises(InvalidArgument, match=r"\[0, 1\]"):
        defensive_perturbation(trained_cnn, x * 255, budget=0.2, **SMALL)
    with pytest.raises(InvalidArgument, match="batch dimension"):
        defensive_perturbation(trained_cnn, x[0], budget=0.2, **SMALL)
    loader = DataLoader(TensorDataset(x, y), batch_size=6)
    for change, message in (({"threat": "before"}, "unknown threat"), ({"eot_samples": 0}, "eot_samples"),
                            ({"apgd_steps": 0}, "apgd_steps"), ({"ensemble": ("pgd", "cw")}, "ensemble"),
                            ({"ensemble": "pgd"}, "ensemble"), ({"restarts": 0}, "restarts")):
        with pytest.raises(InvalidArgument, match=message):
            evaluate_defense(trained_cnn, loader, budget=0.2, **SMALL, **change)


def test_model_mode_and_flags_are_restored(trained_cnn, batch) -> None:
    model = copy.deepcopy(trained_cnn).train()
    model.fc1.weight.requires_grad_(False)
    defensive_perturbation(model, batch[0], budget=0.2, **SMALL)
    assert model.training
    assert [p.requires_grad for p in model.parameters()] == [n != "fc1.weight" for n, _ in model.named_parameters()]


@pytest.mark.slow
@pytest.mark.parametrize("label", ["predicted", "oracle"])
def test_evaluation_rows_and_worst_case(trained_cnn, batch, label: str) -> None:
    x, y = batch
    result = evaluate_defense(trained_cnn, DataLoader(TensorDataset(x, y), batch_size=12), threat="preemptive",
                              budget=0.2, label=label, restarts=1, **SMALL, **FAST)
    assert set(ROWS) <= set(result)
    assert all(0 <= result[row] <= 1 for row in ROWS)
    assert result["worst_case"] <= min(result[row] for row in ATTACKED_ROWS)  # per example: at most every row
    assert result["adaptive"] <= result["defended_attacked"]
    assert result["clean"] > result["attacked"]  # the attack does attack
    assert (result["oracle"], result["budget"], result["examples"]) == (label == "oracle", 0.2, 12)
    table = format_results({"preemptive/" + label: result})
    assert ("[ORACLE]" in table) == (label == "oracle")


def test_straight_through_runs_the_defense_forward_and_the_identity_backward(trained_cnn, batch) -> None:
    x, y = batch
    defense = Defense(0.2, 0.05, 2, 0.2, def_steps=2)
    x_in = x.clone().requires_grad_(True)
    logits = StraightThrough(trained_cnn, defense, seeds=(3,))(x_in)
    (grad,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), x_in)

    x_def = defense(trained_cnn, x, seed=3).requires_grad_(True)
    expected_logits = trained_cnn(x_def)
    (expected_grad,) = torch.autograd.grad(F.cross_entropy(expected_logits, y, reduction="sum"), x_def)
    assert torch.allclose(logits, expected_logits, atol=1e-5)
    assert torch.allclose(grad, expected_grad, atol=1e-6)


@pytest.mark.slow
def test_adaptive_attack_is_stronger_than_the_non_adaptive_one(trained_cnn, mnist5k_test) -> None:
    # Preemptive: the defense was tuned against PGD from particular starts; fresh restarts
    # break images the non-adaptive attack leaves correct.
    x, y = mnist5k_test
    loader = DataLoader(TensorDataset(x[:40], y[:40]), batch_size=40)
    result = evaluate_defense(trained_cnn, loader, threat="preemptive", eps=0.2, alpha=0.02, steps=10, budget=0.2,
                              def_steps=4, restarts=4, ensemble=("pgd",))
    assert result["adaptive"] < result["defended_attacked"]


@pytest.mark.slow
def test_test_time_rows(trained_cnn, batch) -> None:
    # Test-time: the non-adaptive attack is made on the undefended model, so it is the transfer attack.
    x, y = batch
    loader = DataLoader(TensorDataset(x[:6], y[:6]), batch_size=6)
    result = evaluate_defense(trained_cnn, loader, threat="test-time", budget=0.2, eps=0.2, alpha=0.1, steps=2,
                              def_steps=1, apgd_steps=3, square_queries=50)
    assert result["transfer"] == result["defended_attacked"]
    assert result["adaptive"] <= result["defended_attacked"]
    assert result["worst_case"] <= min(result[row] for row in ATTACKED_ROWS)


def test_saved_defended_data_reloads_equal(trained_cnn, batch, tmp_path) -> None:
    x, y = batch
    defense = Defense(0.2, 0.05, 2, 0.2, def_steps=1, label="oracle")
    x_def = defense(trained_cnn, x, y)
    path = save_defended(tmp_path / "valid.npz", x_def, y, defense)
    images, labels = load_defended(path)
    assert torch.equal(images, x_def) and torch.equal(labels, y)
    with pytest.raises(DataNotFoundError, match="--save-data"):
        load_defended(tmp_path / "missing.npz")

    written = defend_splits(trained_cnn, defense, "mnist_cnn", "mnist5k", subset=5, models_root=tmp_path)
    assert written == {split: paths.defense_data_path("mnist_cnn", "mnist5k", "linf", split, "oracle", tmp_path)
                       for split in ("train", "valid")}
    assert all(len(load_defended(p)[0]) == 5 for p in written.values())


@pytest.mark.slow
def test_cli_trains_the_default_model_and_runs_l2(tmp_path, capsys) -> None:
    status = main(["defend", "-p", "l2", "-k", "2", "-e", "3/2", "-a", "0.5", "--epochs", "1",
                   "--def-steps", "2", "--test-subset", "10", "--threat", "preemptive", "--label", "oracle",
                   "--restarts", "1", "--apgd-steps", "3", "--ensemble", "pgd", "apgd-dlr", "--tsne", "--device", "cpu",
                   "--models-root", str(tmp_path / "models"), "--plots-root", str(tmp_path),
                   "--save-table", str(tmp_path / "defense.csv")])
    out = capsys.readouterr().out
    assert status == 0
    table = pd.read_csv(tmp_path / "defense.csv")  # plain: no options needed
    worst = table[table["row"] == "worst_case"].iloc[0]
    assert (worst["threat"], worst["label"], worst["examples"]) == ("preemptive", "oracle", 10)
    assert worst["lo"] <= worst["accuracy"] <= worst["hi"] and f"{worst['accuracy']:.3f} [{worst['lo']:.3f}" in out
    assert set(table["row"]) >= {"clean", "attacked", "undefended_worst_case", "gain"}
    assert "PGD-l2 eps 1.5" in out and "preemptive/oracle [ORACLE]" in out and "ensemble pgd apgd-dlr" in out
    for row in ("undefended_worst_case", "worst_case", "apgd_dlr", "gain", "distance from x", "budget + eps"):
        assert row in out
    assert "apgd_ce" not in out
    assert paths.list_checkpoints("mnist_cnn", "mnist5k", 1, tmp_path / "models")
    assert len(list(tmp_path.glob("*tsne*oracle.png"))) == 1


@pytest.mark.parametrize(("option", "message"), [
    (["-e", "-0.2"], "argument -e/--eps: '-0.2' must be a number >= 0"),
    (["--apgd-steps", "0"], "argument --apgd-steps: '0' must be an integer >= 1"),
    (["--ensemble", "cw"], "argument --ensemble: invalid choice: 'cw'"),
])
def test_cli_rejects_bad_numbers_before_training(tmp_path, capsys, option, message) -> None:
    args = {"-e": "0.2", **dict(zip(option[::2], option[1::2], strict=True))}
    with pytest.raises(SystemExit) as exit_:
        main(["defend", "-p", "linf", "-k", "20", "-a", "0.01", "--models-root", str(tmp_path),
              *[item for pair in args.items() for item in pair]])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_cli_rejects_bad_defense_settings_before_training(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:  # the option as the user typed it, not the library's def_steps
        main(["defend", "-p", "linf", "-k", "20", "-e", "0.2", "-a", "0.01", "--def-steps", "-1",
              "--models-root", str(tmp_path)])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith("error: argument --def-steps: '-1' must be an integer >= 1")
    assert not any(tmp_path.iterdir())
