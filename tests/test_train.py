"""Training writes the checkpoint tree, lowers the loss, and resumes bitwise."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from robustness import paths
from robustness import train as train_module
from robustness.errors import CheckpointError, InvalidArgument
from robustness.files import load_json
from robustness.train import TrainConfig, load_checkpoint, train


def _config(root: Path, **overrides) -> TrainConfig:
    settings = dict(arch="mnist_cnn", dataset="mnist5k", epochs=3, subset=400, models_root=str(root), device="cpu")
    return TrainConfig(**{**settings, **overrides})


def test_training_lowers_the_loss_of_resnet18_on_mnist5k(tmp_path: Path) -> None:
    history = train(_config(tmp_path, arch="resnet18", epochs=2, subset=1000))[1]
    assert history[1]["train_loss"] < history[0]["train_loss"]
    assert history[1]["test_acc"] > 0.5


def test_checkpoint_tree_history_and_metadata(tmp_path: Path) -> None:
    train(_config(tmp_path, inits=2, save_every=2))
    for init in (1, 2):
        assert list(paths.list_checkpoints("mnist_cnn", "mnist5k", init, tmp_path)) == [0, 2, 3]
        history = load_json(paths.history_path("mnist_cnn", "mnist5k", init, tmp_path))
        assert [row["epoch"] for row in history] == [1, 2, 3]
    model, meta = load_checkpoint(paths.checkpoint_path("mnist_cnn", "mnist5k", 2, 3, tmp_path))
    assert (meta["arch"], meta["init"], meta["epoch"], meta["seed"]) == ("mnist_cnn", 2, 3, 2)
    assert not model.training
    first = [load_checkpoint(paths.checkpoint_path("mnist_cnn", "mnist5k", i, 0, tmp_path))[0] for i in (1, 2)]
    assert not torch.equal(first[0].fc2.weight, first[1].fc2.weight), "each initialisation needs its own seed"


def test_interrupted_training_resumes_bitwise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reference = train(_config(tmp_path / "a"))[1]

    calls = {"n": 0}
    real_accuracy = train_module.accuracy

    def dies_in_epoch_2(model, loader):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_accuracy(model, loader)

    monkeypatch.setattr(train_module, "accuracy", dies_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(_config(tmp_path / "b"))
    assert list(paths.list_checkpoints("mnist_cnn", "mnist5k", 1, tmp_path / "b")) == [0, 1]
    monkeypatch.setattr(train_module, "accuracy", real_accuracy)
    resumed = train(_config(tmp_path / "b"))[1]

    assert [r["train_loss"] for r in resumed] == [r["train_loss"] for r in reference]
    a, _ = load_checkpoint(paths.checkpoint_path("mnist_cnn", "mnist5k", 1, 3, tmp_path / "a"))
    b, _ = load_checkpoint(paths.checkpoint_path("mnist_cnn", "mnist5k", 1, 3, tmp_path / "b"))
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name


def test_finished_run_is_skipped(tmp_path: Path) -> None:
    train(_config(tmp_path, epochs=1))
    files = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    train(_config(tmp_path, epochs=1))
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == files


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    train(_config(tmp_path, epochs=0))
    return paths.checkpoint_path("mnist_cnn", "mnist5k", 1, 0, tmp_path)


def test_checkpoint_of_another_architecture_is_refused(checkpoint: Path) -> None:
    with pytest.raises(CheckpointError, match=f"{checkpoint}.*mnist_cnn.*not a resnet18"):
        load_checkpoint(checkpoint, arch="resnet18")


def test_corrupt_and_foreign_files_are_refused(checkpoint: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(checkpoint.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated.ckpt.*corrupt"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="foreign.ckpt is not a checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.ckpt")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("arch", "vgg", "unknown architecture"), ("dataset", "svhn", "unknown dataset"),
     ("inits", 0, "inits must be at least 1"), ("lr", -1.0, "lr must be positive")],
)
def test_bad_configuration_is_refused(tmp_path: Path, field: str, value, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        train(_config(tmp_path, **{field: value}))
