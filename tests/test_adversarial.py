"""Adversarial training's settings, schedule and examples; the regime folders, checkpoint metadata, resume and
the errors a bad setting or regime gets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from robustness import paths
from robustness.cli import main
from robustness.errors import CheckpointError, InvalidArgument
from robustness.files import load_json
from robustness.models import load_checkpoint, read_checkpoint
from robustness.training import (
    AdvTraining,
    TrainConfig,
    adversarial_batch,
    regime_meta,
    regime_tag,
    train,
    training_config,
)
from robustness.training import trainer as trainer_module

PGD = AdvTraining("pgd", 0.1, steps=3)


def _config(root: Path, **overrides) -> TrainConfig:
    settings = dict(arch="mnist_cnn", dataset="mnist5k", epochs=2, subset=200, models_root=str(root), device="cpu",
                    adv=PGD)
    return TrainConfig(**{**settings, **overrides})


def test_warmup_ramps_eps_linearly_then_holds() -> None:
    adv = AdvTraining("pgd", 0.3, warmup=3)
    assert [adv.eps_at(e) for e in (1, 2, 3, 4, 10)] == pytest.approx([0.1, 0.2, 0.3, 0.3, 0.3])
    assert AdvTraining("fast", 0.3).eps_at(1) == 0.3


def test_step_sizes_and_steps_default_to_the_papers() -> None:
    assert AdvTraining("pgd", 0.1).k == 10 and AdvTraining("pgd", 0.1).alpha == pytest.approx(0.025)
    assert AdvTraining("pgd", 0.1, steps=4).alpha == pytest.approx(2.5 * 0.1 / 4)
    assert AdvTraining("fast", 0.1).k == 1 and AdvTraining("fast", 0.1).alpha == pytest.approx(0.125)
    assert AdvTraining("pgd", 0.1, step_size=0.01).alpha == 0.01


def test_regime_tags() -> None:
    assert regime_tag(AdvTraining()) == "standard"
    assert regime_tag(AdvTraining("pgd", 0.1)) == "pgd-linf-eps0.1"
    assert regime_tag(AdvTraining("pgd", 8 / 255)) == "pgd-linf-eps0.03137"
    assert regime_tag(AdvTraining("fast", 2.0, "l2")) == "fast-l2-eps2"


@pytest.mark.parametrize("kwargs, message", [
    (dict(method="pgd", eps=-0.1), "eps must be a finite number >= 0"),
    (dict(method="pgd", eps=0.0), "needs eps > 0"),
    (dict(method="pgd", eps=0.1, steps=0), "steps must be an integer >= 1"),
    (dict(method="madry", eps=0.1), "unknown adversarial training 'madry'"),
    (dict(method="fast", eps=0.1, steps=5), "fast adversarial training takes one step"),
    (dict(method="pgd", eps=0.1, norm="l1"), "unknown norm 'l1'"),
    (dict(method="pgd", eps=0.1, warmup=-1), "warmup must be an integer >= 0"),
])
def test_bad_settings_get_one_clear_error(kwargs, message) -> None:
    with pytest.raises(InvalidArgument, match=message):
        AdvTraining(**kwargs)


def test_examples_stay_in_the_ball_raise_the_loss_and_leave_the_model_as_found(trained_cnn, batch) -> None:
    x, y = batch
    trained_cnn.train()
    before = {k: v.clone() for k, v in trained_cnn.state_dict().items()}  # BatchNorm statistics included
    torch.manual_seed(0)
    x_adv = adversarial_batch(trained_cnn, x, y, PGD, 0.1)
    assert trained_cnn.training and all(p.requires_grad and p.grad is None for p in trained_cnn.parameters())
    assert all(torch.equal(before[k], v) for k, v in trained_cnn.state_dict().items())
    trained_cnn.eval()
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    loss = torch.nn.functional.cross_entropy
    with torch.no_grad():
        assert loss(trained_cnn(x_adv), y) > loss(trained_cnn(x), y) + 0.5
    assert torch.equal(adversarial_batch(trained_cnn, x, y, PGD, 0.0), x)


@pytest.mark.parametrize("adv", [PGD, AdvTraining("fast", 0.1), AdvTraining("pgd", 2.0, norm="l2", steps=3)],
                         ids=["pgd-linf", "fast-linf", "pgd-l2"])
def test_the_trainer_trains_on_the_adversarial_batches(adv, monkeypatch, tmp_path: Path) -> None:
    # Every batch the model is trained on (a forward pass in train mode) is the adversarial batch made from that
    # step's clean batch: not the clean batch itself, inside the eps-ball around it, with a higher loss.
    made, trained_on = [], []

    def recording(model, x, y, settings, eps):
        x_adv = adversarial_batch(model, x, y, settings, eps)
        with torch.no_grad():
            model.eval()
            losses = [torch.nn.functional.cross_entropy(model(batch), y).item() for batch in (x, x_adv)]
            model.train()
        made.append((x.clone(), x_adv.clone(), *losses))
        return x_adv

    monkeypatch.setattr(trainer_module, "adversarial_batch", recording)
    build = trainer_module.build_model

    def hooked(*args, **kwargs):
        model = build(*args, **kwargs)
        model.register_forward_pre_hook(lambda m, inputs: trained_on.append(inputs[0].clone()) if m.training else None,
                                        prepend=True)  # before the model's own normalisation
        return model

    monkeypatch.setattr(trainer_module, "build_model", hooked)
    train(_config(tmp_path, epochs=1, subset=100, batch_size=50, adv=adv))
    assert len(made) == len(trained_on) == 2
    for (x, x_adv, clean_loss, adv_loss), batch in zip(made, trained_on, strict=True):
        assert torch.equal(batch, x_adv) and not torch.equal(batch, x)
        distance = (batch - x).flatten(1).norm(p=float("inf") if adv.norm == "linf" else 2, dim=1)
        assert distance.max() <= adv.eps + 1e-5 and distance.min() > adv.eps / 4  # the budget is used
        assert adv_loss > clean_loss


def test_standard_layout_is_unchanged_and_regimes_get_their_own_root(tmp_path: Path) -> None:
    assert paths.checkpoint_path("mnist_cnn", "mnist5k", 1, 3, tmp_path) == \
        tmp_path / "MnistCNN/MNIST5K/Init_1/MnistCNN_MNIST5K_3epochs.ckpt"
    assert paths.checkpoint_path("mnist_cnn", "mnist5k", 1, 3, tmp_path, regime="pgd-linf-eps0.1") == \
        tmp_path / "Regime_pgd-linf-eps0.1/MnistCNN/MNIST5K/Init_1/MnistCNN_MNIST5K_3epochs.ckpt"
    assert paths.regime_root(tmp_path, "fast-l2-eps2") / "MnistCNN/MNIST5K" == \
        paths.model_dir("mnist_cnn", "mnist5k", tmp_path, regime="fast-l2-eps2")
    with pytest.raises(InvalidArgument, match="not a regime tag"):
        paths.model_dir("mnist_cnn", "mnist5k", tmp_path, regime="robust")


@pytest.fixture(scope="module")
def at_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-epoch PGD-AT run (k=3) and a 1-epoch standard run of mnist_cnn on 200 images, side by side."""
    root = tmp_path_factory.mktemp("regimes")
    train(_config(root))
    train(_config(root, adv=AdvTraining(), epochs=1))
    return root


def test_checkpoints_record_the_regime_beside_the_standard_ones(at_root: Path) -> None:
    tag = "pgd-linf-eps0.1"
    assert sorted(paths.list_checkpoints("mnist_cnn", "mnist5k", 1, at_root, regime=tag)) == [0, 1, 2]
    assert sorted(paths.list_checkpoints("mnist_cnn", "mnist5k", 1, at_root)) == [0, 1]
    assert paths.list_regimes("mnist_cnn", "mnist5k", at_root) == ["standard", tag]
    ckpt = read_checkpoint(paths.checkpoint_path("mnist_cnn", "mnist5k", 1, 2, at_root, regime=tag))
    assert ckpt["regime"] == tag and ckpt["adv_training"] == PGD.settings()
    assert training_config(ckpt).adv.settings() == PGD.settings()
    assert [row["train_eps"] for row in ckpt["history"]] == [0.1, 0.1]
    _, meta = load_checkpoint(paths.checkpoint_path("mnist_cnn", "mnist5k", 1, 1, at_root))
    assert meta["regime"] == "standard" and meta["regime_settings"] == {"method": "none"}
    assert regime_meta("mnist_cnn", "mnist5k", paths.regime_root(at_root, tag)) == \
        {"regime": tag, "regime_settings": PGD.settings()}


def test_checkpoint_without_regime_keys_reads_as_standard(at_root: Path, tmp_path: Path) -> None:
    path = paths.checkpoint_path("mnist_cnn", "mnist5k", 1, 1, at_root)
    ckpt = read_checkpoint(path)
    for key in ("regime", "adv_training"):
        del ckpt[key]
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    assert load_checkpoint(old)[1]["regime"] == "standard"


def test_at_run_resumes_bitwise(at_root: Path, tmp_path: Path) -> None:
    tag = "pgd-linf-eps0.1"
    shutil.copytree(paths.regime_root(at_root, tag), paths.regime_root(tmp_path, tag))
    paths.checkpoint_path("mnist_cnn", "mnist5k", 1, 2, tmp_path, regime=tag).unlink()
    train(_config(tmp_path))  # resumes from epoch 1
    resumed = read_checkpoint(paths.checkpoint_path("mnist_cnn", "mnist5k", 1, 2, tmp_path, regime=tag))
    full = read_checkpoint(paths.checkpoint_path("mnist_cnn", "mnist5k", 1, 2, at_root, regime=tag))
    assert all(torch.equal(full["state_dict"][k], v) for k, v in resumed["state_dict"].items())


def test_other_settings_never_mix_into_a_regime_folder(at_root: Path, tmp_path: Path) -> None:
    tag = "pgd-linf-eps0.1"
    shutil.copytree(paths.regime_root(at_root, tag), paths.regime_root(tmp_path, tag))
    with pytest.raises(InvalidArgument, match="trained with .* this run asks for"):
        train(_config(tmp_path, adv=AdvTraining("pgd", 0.1, steps=5)))
    settings = paths.regime_file("mnist_cnn", "mnist5k", tmp_path, regime=tag)
    settings.unlink()  # the folder's record lost: the checkpoint's own regime still refuses the resume
    with pytest.raises(InvalidArgument, match="was trained in regime"):
        train(_config(tmp_path, adv=AdvTraining("pgd", 0.1, steps=5)))
    assert load_json(settings)["steps"] == 5


def _run(capsys, *argv: str) -> tuple[int, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def test_unknown_and_empty_regimes_name_the_fix(at_root: Path, tmp_path: Path, capsys) -> None:
    common = ("attack", "--arch", "mnist_cnn", "--models-root", str(at_root), "--device", "cpu", "--test-subset", "20")
    status, out = _run(capsys, *common, "--regime", "fast-linf-eps0.3")
    assert status == 2 and "regimes found: standard, pgd-linf-eps0.1" in out and "--adv-train fast" in out
    status, out = _run(capsys, *common, "--regime", "robust")
    assert status == 2 and "not a regime tag" in out
    empty = paths.model_dir("mnist_cnn", "mnist5k", tmp_path, regime="pgd-linf-eps0.2")
    empty.mkdir(parents=True)
    status, out = _run(capsys, "filter", "--arch", "mnist_cnn", "--models-root", str(tmp_path), "--regime",
                       "pgd-linf-eps0.2")
    assert status == 2 and "holds no checkpoints" in out and "--eps 0.2" in out
    status, out = _run(capsys, *common, "--regime", "pgd-linf-eps0.1", "--attack", "fgsm", "--save-table",
                       str(tmp_path / "row.json"))
    assert status == 0 and "pgd-linf-eps0.1" in out
    (row,) = json.loads((tmp_path / "row.json").read_text())
    assert row["regime"] == "pgd-linf-eps0.1" and row["regime_settings"] == PGD.settings() and row["epoch"] == 2


@pytest.mark.parametrize("argv, message", [
    (("--adv-train", "pgd"), "needs --eps"),
    (("--adv-train", "pgd", "--eps", "0.1", "--steps", "0"), "must be an integer >= 1"),
    (("--adv-train", "pgd", "--eps", "-1"), "must be a number >= 0"),
    (("--eps", "0.1"), "set without --adv-train"),
    (("--adv-train", "trades", "--eps", "0.1"), "invalid choice"),
])
def test_train_options_refuse_bad_settings(argv, message, capsys, tmp_path: Path) -> None:
    try:
        status = main(["train", "--arch", "mnist_cnn", "--models-root", str(tmp_path), *argv])
    except SystemExit as exit_:  # argparse's own errors
        status = exit_.code
    assert status == 2 and message in capsys.readouterr().err


def test_eps_fractions_reach_the_config(monkeypatch, tmp_path: Path) -> None:
    seen = {}
    monkeypatch.setattr("robustness.training.train", lambda config, resume: seen.setdefault("c", config) and {})
    main(["train", "--arch", "mnist_cnn", "--models-root", str(tmp_path), "--adv-train", "fast", "--eps", "8/255",
          "--adv-warmup", "2"])
    assert seen["c"].adv == AdvTraining("fast", 8 / 255, warmup=2) and seen["c"].regime == "fast-linf-eps0.03137"


def test_bad_adv_field_in_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="adv must be an AdvTraining"):
        _config(tmp_path, adv={"method": "pgd"}).validate()
    with pytest.raises(CheckpointError):
        paths.check_regime("mnist_cnn", "mnist5k", "pgd-linf-eps0.1", tmp_path)
