"""Training writes the checkpoint tree, lowers the loss, and resumes bitwise (both recipes); checkpoints
load to the CPU, damaged files and unavailable devices each get their own message."""

from __future__ import annotations

import io
import math
import pickle
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from test_data import write_cifar10

from robustness import paths
from robustness.errors import CheckpointError, InvalidArgument
from robustness.files import load_json
from robustness.models import load_checkpoint, read_checkpoint
from robustness.training import TrainConfig, train
from robustness.training import trainer as train_module


def _settings(root: Path) -> dict:
    return dict(arch="mnist_cnn", dataset="mnist5k", epochs=3, subset=400, models_root=str(root), device="cpu")


def _config(root: Path, **overrides) -> TrainConfig:
    return TrainConfig(**{**_settings(root), **overrides})


def _interrupt_in_epoch_2(monkeypatch: pytest.MonkeyPatch, run: Callable[[], object]) -> None:
    """``run()`` interrupted by a KeyboardInterrupt in epoch 2's evaluation, after epoch 1's checkpoint."""
    calls = {"n": 0}
    real_accuracy = train_module.accuracy

    def dies_in_epoch_2(model, loader):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_accuracy(model, loader)

    monkeypatch.setattr(train_module, "accuracy", dies_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        run()
    monkeypatch.setattr(train_module, "accuracy", real_accuracy)


@pytest.mark.slow
def test_training_lowers_the_loss_of_resnet18_on_mnist5k(tmp_path: Path) -> None:
    history = train(_config(tmp_path, arch="resnet18", epochs=2, subset=1000))[1]
    assert history[1]["train_loss"] < history[0]["train_loss"]
    assert history[1]["test_acc"] > 0.5


@pytest.mark.slow
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


@pytest.mark.slow
def test_interrupted_training_resumes_bitwise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reference = train(_config(tmp_path / "a"))[1]
    _interrupt_in_epoch_2(monkeypatch, lambda: train(_config(tmp_path / "b")))
    assert list(paths.list_checkpoints("mnist_cnn", "mnist5k", 1, tmp_path / "b")) == [0, 1]
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


class _Foreign:
    """A class ``weights_only=True`` refuses to unpickle."""


def _write_damaged(kind: str, good: bytes, path: Path) -> None:
    if kind == "truncated":  # the zip reader: RuntimeError
        path.write_bytes(good[: len(good) // 2])
    elif kind == "random bytes":  # the unpickler: UnpicklingError
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    elif kind == "empty":  # EOFError
        path.write_bytes(b"")
    elif kind == "plain pickle":  # not a zip, not torch's legacy format: UnpicklingError
        path.write_bytes(pickle.dumps({"state_dict": [1, 2, 3]}, protocol=2))
    elif kind == "legacy cut short":  # torch's pre-zip format, truncated: EOFError, struct.error, ...
        buffer = io.BytesIO()
        torch.save({"w": torch.zeros(100)}, buffer, _use_new_zipfile_serialization=False)
        path.write_bytes(buffer.getvalue()[:300])


@pytest.mark.parametrize("kind", ["truncated", "random bytes", "empty", "plain pickle", "legacy cut short"])
def test_damaged_files_are_called_corrupt(checkpoint: Path, tmp_path: Path, kind: str) -> None:
    damaged = tmp_path / "damaged.ckpt"
    _write_damaged(kind, checkpoint.read_bytes(), damaged)
    with pytest.raises(CheckpointError, match="damaged.ckpt is not a readable checkpoint .*corrupt or truncated"):
        load_checkpoint(damaged)


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_foreign_missing_and_pickled_object_files_get_their_own_message(checkpoint: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="foreign.ckpt is not a checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.ckpt")
    whole = tmp_path / "whole_model.ckpt"
    torch.save({"model": _Foreign()}, whole)
    with pytest.raises(CheckpointError, match=r"whole_model.ckpt holds a pickled Python object \(.*_Foreign\)") as err:
        load_checkpoint(whole)
    assert "corrupt" not in str(err.value)
    scripted = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), scripted)
    with pytest.warns(UserWarning), pytest.raises(CheckpointError, match="scripted.pt is a TorchScript archive"):
        load_checkpoint(scripted)


def test_errors_not_about_the_file_propagate(checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def out_of_memory(*_: object, **__: object) -> None:
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(torch, "load", out_of_memory)
    with pytest.raises(RuntimeError, match="can't allocate memory"):
        load_checkpoint(checkpoint)


@pytest.mark.parametrize(("device", "message"), [
    ("cuda", "CUDA is not available"), ("mps", "MPS is not available"), ("xla", "XLA is not usable here"),
])
def test_a_good_checkpoint_on_an_unavailable_device_names_the_device(
    checkpoint: Path, device: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.delenv("PJRT_DEVICE", raising=False)
    monkeypatch.setattr("robustness.runtime._tpu_present", lambda: False)
    for load in (lambda: load_checkpoint(checkpoint, map_location=device),
                 lambda: read_checkpoint(checkpoint, map_location=torch.device(device))):
        with pytest.raises(InvalidArgument, match=f"device '{device}' asked for, but {message}"):
            load()


# ---------------------------------------------------------------- the CIFAR recipe


@pytest.mark.slow
def test_cifar_recipe_settings_and_cosine_schedule_in_the_checkpoints(tmp_path: Path) -> None:
    """Planted truth: after epoch e of E the learning rate is lr * (1 + cos(pi e / E)) / 2."""
    config = TrainConfig.from_recipe("cifar", **{**_settings(tmp_path), "epochs": 3, "subset": 200})
    assert (config.optimizer, config.lr, config.momentum, config.weight_decay, config.schedule, config.augment,
            config.batch_size) == ("sgd", 0.1, 0.9, 5e-4, "cosine", True, 128)
    train(config)
    for epoch in range(4):
        ckpt = read_checkpoint(paths.checkpoint_path("mnist_cnn", "mnist5k", 1, epoch, tmp_path))
        group = ckpt["optimizer"]["param_groups"][0]
        assert group["lr"] == pytest.approx(0.1 * (1 + math.cos(math.pi * epoch / 3)) / 2, abs=1e-12)
        assert (group["momentum"], group["weight_decay"]) == (0.9, 5e-4)
        assert ckpt["scheduler"]["last_epoch"] == epoch


@pytest.mark.slow
def test_interrupted_cifar_recipe_resumes_bitwise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With SGD momentum, the cosine schedule and augmentation, as the default recipe does above."""
    config = TrainConfig.from_recipe("cifar", **{**_settings(tmp_path / "a"), "subset": 300, "batch_size": 50})
    reference = train(config)[1]
    _interrupt_in_epoch_2(monkeypatch, lambda: train(replace(config, models_root=str(tmp_path / "b"))))
    resumed = train(replace(config, models_root=str(tmp_path / "b")))[1]
    assert [r["train_loss"] for r in resumed] == [r["train_loss"] for r in reference]
    a = read_checkpoint(paths.checkpoint_path("mnist_cnn", "mnist5k", 1, 3, tmp_path / "a"))
    b = read_checkpoint(paths.checkpoint_path("mnist_cnn", "mnist5k", 1, 3, tmp_path / "b"))
    for name, x in a["state_dict"].items():
        assert torch.equal(x, b["state_dict"][name]), name
    assert a["scheduler"] == b["scheduler"]


def test_resuming_with_another_recipe_is_refused(tmp_path: Path) -> None:
    train(_config(tmp_path, epochs=1))
    with pytest.raises(InvalidArgument, match="was trained with optimizer='adam', this run asks for 'sgd'"):
        train(TrainConfig.from_recipe("cifar", **{**_settings(tmp_path), "epochs": 2}))
    cosine = tmp_path / "cosine"
    train(TrainConfig.from_recipe("cifar", **{**_settings(cosine), "epochs": 1, "subset": 100}))
    with pytest.raises(InvalidArgument, match="1-epoch cosine schedule, this run asks for 2 epochs"):
        train(TrainConfig.from_recipe("cifar", **{**_settings(cosine), "epochs": 2, "subset": 100}))


@pytest.mark.parametrize(("field", "value"), [("subset", 200), ("seed", 1), ("lr", 1e-2), ("batch_size", 50)])
def test_resuming_with_another_number_changing_setting_is_refused(tmp_path: Path, field: str, value) -> None:
    train(_config(tmp_path, epochs=1, subset=100))
    before = read_checkpoint(paths.checkpoint_path("mnist_cnn", "mnist5k", 1, 1, tmp_path))["state_dict"]
    asked = {"subset": 100, field: value}
    with pytest.raises(InvalidArgument, match=rf"was trained with {field}=.*this run asks for {value!r}: resume it "
                                              rf"with the same {field}"):
        train(_config(tmp_path, epochs=2, **asked))
    assert not paths.checkpoint_path("mnist_cnn", "mnist5k", 1, 2, tmp_path).exists()
    after = read_checkpoint(paths.checkpoint_path("mnist_cnn", "mnist5k", 1, 1, tmp_path))["state_dict"]
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.slow
def test_cifar_stem_resnet_trains_on_cifar10_files_and_loads_back(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    write_cifar10(tmp_path / "data", monkeypatch, per_batch=20, test_size=20)
    config = TrainConfig.from_recipe("cifar", arch="resnet18_cifar", dataset="cifar10", epochs=1, batch_size=25,
                                     data_root=str(tmp_path / "data"), models_root=str(tmp_path), device="cpu")
    history = train(config)[1]
    assert len(history) == 1 and history[0]["train_loss"] > 0
    model, meta = load_checkpoint(paths.checkpoint_path("resnet18_cifar", "cifar10", 1, 1, tmp_path))
    assert meta["arch"] == "resnet18_cifar"
    assert (model.conv1.kernel_size, model.conv1.stride, type(model.maxpool)) == ((3, 3), (1, 1), torch.nn.Identity)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("arch", "vgg", "unknown architecture"), ("dataset", "svhn", "unknown dataset"),
     ("inits", 0, "inits must be at least 1"), ("lr", -1.0, "lr must be a finite number > 0, got -1.0"),
     ("lr", float("nan"), "lr must be a finite number > 0, got nan"), ("seed", -1, "seed must be an integer >= 0")],
)
def test_bad_configuration_is_refused(tmp_path: Path, field: str, value, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        train(_config(tmp_path, **{field: value}))
