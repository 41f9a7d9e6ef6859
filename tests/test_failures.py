"""The failure paths, tried as a hostile user would: each ends in one exact ``error:`` line, before the work where
it can be known before, and leaves every file whole (nothing lost, nothing half-written, no temporary left)."""

from __future__ import annotations

import math
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from robustness import paths
from robustness.attacks import FGSM, evaluate
from robustness.cli import main
from robustness.errors import CheckpointError, DataNotFoundError, InvalidArgument, NonFiniteError, WriteError
from robustness.files import STALE_SECONDS, atomic_path, load_json, save_json, save_torch
from robustness.filtering import global_analysis, local_analysis
from robustness.models import build_model, load_checkpoint
from robustness.training import TrainConfig, train
from robustness.weights import load_torch_file

CNN = ["--arch", "mnist_cnn", "--device", "cpu"]


@pytest.fixture
def tree(checkpoints_root: Path, tmp_path: Path) -> Path:
    """A copy of the mnist_cnn tree (Init_1, epochs 0 and 1) to spoil."""
    return Path(shutil.copytree(checkpoints_root, tmp_path / "models"))


def ckpt(root: Path, epoch: int) -> Path:
    return paths.checkpoint_path("mnist_cnn", "mnist5k", 1, epoch, root)


def error_line(capsys: pytest.CaptureFixture[str], printed: str | None = "") -> str:
    """The last line a failed command printed to stderr; what it printed to stdout must be ``printed`` (nothing,
    by default: no table of numbers; ``None``: not checked)."""
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) >= 1 and (printed is None or out == printed), out
    return lines[-1]


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def spoil(path: Path, out: Path, **changes) -> Path:
    """A copy of the checkpoint at ``path`` with ``changes`` to its dict (a value None: the key removed)."""
    content = load_torch_file(path)
    for key, value in changes.items():
        if value is None:
            del content[key]
        else:
            content[key] = value
    torch.save(content, out)
    return out


# ---------------------------------------------------------------- 1. non-finite weights and logits


def test_a_nan_checkpoint_is_refused_naming_the_file_and_the_layer(tree: Path, tmp_path: Path, capsys) -> None:
    state = load_torch_file(ckpt(tree, 1))["state_dict"]
    state["conv2.weight"] = torch.full_like(state["conv2.weight"], math.nan)
    nan = spoil(ckpt(tree, 1), tmp_path / "nan_weights.ckpt", state_dict=state)
    assert main(["attack", *CNN, "--checkpoint", str(nan), "--attack", "pgd", "--test-subset", "20",
                 "--models-root", str(tree)]) == 2
    assert error_line(capsys) == (
        f"error: {nan}: layer conv2 holds NaN or infinite weights (conv2.weight: 18432 of 18432 values), so every "
        f"accuracy measured with it would be meaningless; use an earlier checkpoint, or retrain (e.g. with a lower "
        f"--lr)")
    # a study reads every checkpoint first: a NaN epoch-1 checkpoint stops it before epoch 0 is swept
    shutil.copy(nan, ckpt(tree, 1))
    before = files_under(tree)
    assert main(["filter", *CNN, "--models-root", str(tree), "--filter", "highpass", "--scope", "local",
                 "--layers", "fc2", "--n-thresholds", "3", "--test-subset", "20", "--bn", "frozen"]) == 2
    assert error_line(capsys) == (
        f"error: {ckpt(tree, 1)}: layer conv2 holds NaN or infinite weights (conv2.weight: 18432 of 18432 values), "
        f"so every accuracy measured with it would be meaningless; use an earlier checkpoint, or retrain (e.g. with "
        f"a lower --lr)")
    assert files_under(tree) == before


def test_non_finite_logits_stop_an_evaluation_and_a_sweep(mnist5k_test) -> None:
    """Planted: finite weights so large that fc1's output overflows; argmax of NaN would give class 0's share."""
    x, y = mnist5k_test[0][:20], mnist5k_test[1][:20]
    model = build_model("mnist_cnn", "mnist5k").eval()
    with torch.no_grad():
        model.fc1.weight.fill_(1e38)
    message = ("the model's logits are NaN or infinite on 20 of 20 images (layer fc1 is the first whose output is "
               "not finite): an accuracy from them would be meaningless (argmax of NaN is class 0); check the "
               "model's weights and inputs")
    with pytest.raises(NonFiniteError) as err:
        evaluate(model, DataLoader(TensorDataset(x, y), batch_size=8), FGSM(0.1))
    assert str(err.value) == message
    with pytest.raises(NonFiniteError) as err:
        local_analysis(model, (x, y), "highpass", FGSM(0.1), 3, layers=["fc2"])
    assert str(err.value) == message
    with torch.no_grad():
        model.fc2.bias[3] = math.nan
    with pytest.raises(NonFiniteError) as err:
        global_analysis(model, (x, y), "highpass", FGSM(0.1), 3)
    assert str(err.value) == ("layer fc2 of the model holds NaN or infinite weights (fc2.bias: 1 of 10 values): a "
                              "sweep or an accuracy of it would be meaningless; use an earlier checkpoint, or retrain")


# ---------------------------------------------------------------- 2. writes that fail


def test_a_path_through_a_file_fails_before_any_epoch(tmp_path: Path, capsys) -> None:
    """A folder under a regular file cannot be created, by root either."""
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert main(["train", *CNN, "--epochs", "1", "--train-subset", "50", "--models-root", str(blocker / "models")]) == 2
    assert error_line(capsys) == (f"error: cannot write {blocker / 'models'}: a part of the path is a file, not a "
                                  f"folder: choose another path")
    assert os.listdir(tmp_path) == ["a_file"] and blocker.read_text() == "x"


def test_attack_checks_out_before_the_attack(tree: Path, tmp_path: Path, capsys) -> None:
    common = ["attack", *CNN, "--models-root", str(tree), "--test-subset", "20"]
    assert main([*common, "--save-table", str(tmp_path / "x.txt")]) == 2
    assert error_line(capsys) == f"error: {tmp_path / 'x.txt'}: a table is written as .csv or .json, not .txt"
    folder = tmp_path / "table.csv"
    folder.mkdir()
    assert main([*common, "--save-table", str(folder)]) == 2
    assert error_line(capsys) == f"error: cannot write {folder}: it is a folder, not a file: give a file name"
    assert main([*common, "--save-table", str(tmp_path / "new" / "t.csv")]) == 0  # a missing folder is created
    assert (tmp_path / "new" / "t.csv").is_file()


def _mount_tmpfs(folder: Path, options: str) -> None:
    """Mount a tmpfs with ``options`` at ``folder``, or skip the test saying why it cannot."""
    if shutil.which("mount") is None:
        pytest.skip("no mount command: cannot make a small or read-only file system")
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], check=False,
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'not root'}): needs root or CAP_SYS_ADMIN")


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 256 KiB file system (a tmpfs): too small for a mnist_cnn checkpoint."""
    folder = tmp_path / "small"
    _mount_tmpfs(folder, "size=256k")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture
def read_only(tmp_path: Path):
    """A folder that cannot be written: a read-only tmpfs for root (chmod does not stop root), or chmod 500."""
    folder = tmp_path / "read_only"
    if os.geteuid() != 0:
        folder.mkdir()
        folder.chmod(0o500)
        yield folder
        folder.chmod(0o700)
        return
    _mount_tmpfs(folder, "ro,size=64k")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_is_one_line_and_leaves_no_temporary(small_disk: Path, capsys) -> None:
    assert main(["train", *CNN, "--epochs", "1", "--train-subset", "50", "--models-root", str(small_disk)]) == 2
    target = ckpt(small_disk, 0)
    assert error_line(capsys) == (f"error: cannot write {target}: no space left on the device: free some space, "
                                  f"or write elsewhere")
    assert not target.exists() and os.listdir(target.parent) == []  # no half-written file, no temporary
    # a JSON that does not fit: the old file stays whole
    save_json({"kept": 1}, small_disk / "r.json")
    with pytest.raises(WriteError) as err:
        save_json({"big": "x" * 400_000}, small_disk / "r.json")
    assert str(err.value) == (f"cannot write {small_disk / 'r.json'}: no space left on the device: free some space, "
                              f"or write elsewhere")
    assert load_json(small_disk / "r.json") == {"kept": 1} and sorted(os.listdir(small_disk)) == ["MnistCNN", "r.json"]


def test_a_read_only_folder_is_one_line_before_the_work(read_only: Path, tree: Path, capsys) -> None:
    root = read_only / "models"
    cause = ("the file system is read-only: write elsewhere" if os.geteuid() == 0 else
             "permission denied (the folder is read-only for this user): write elsewhere")
    assert main(["train", *CNN, "--epochs", "1", "--models-root", str(root)]) == 2
    assert error_line(capsys) == f"error: cannot write {root}: {cause}"
    assert main(["attack", *CNN, "--models-root", str(tree), "--test-subset", "20", "--save-table",
                 str(read_only / "t.csv")]) == 2
    assert error_line(capsys) == f"error: cannot write {read_only}: {cause}"
    assert os.listdir(read_only) == []


# ---------------------------------------------------------------- 3. a truncated result file


def test_a_truncated_result_json_says_delete_and_rerun(tree: Path, capsys) -> None:
    sweep = ["filter", *CNN, "--models-root", str(tree), "--filter", "highpass", "--scope", "local", "--layers", "fc2",
             "--n-thresholds", "3", "--test-subset", "20", "--bn", "frozen", "--checkpoint-epochs", "1"]
    assert main(sweep) == 0
    result = paths.sweep_result_path("mnist_cnn", "mnist5k", 1, 1, "highpass", "local", "fgsm_eps0.1", tree)
    whole = result.read_text()
    result.write_text(whole[: len(whole) // 2])  # cut short, as a full disk or a copy would
    capsys.readouterr()
    for command in (sweep, ["scores", *CNN, "--models-root", str(tree), "--filter", "highpass", "--scope", "local"]):
        assert main(command) == 2
        line = error_line(capsys, printed=None)
        assert line.startswith(f"error: {result} is unreadable (not valid JSON: ")
        assert line.endswith(f"): delete {result} and rerun the same filter command to recompute it")
    result.unlink()
    assert main(sweep) == 0 and result.read_text() == whole  # recomputed as it was


# ---------------------------------------------------------------- 4-5. forged files, code in a pickle


def test_forged_checkpoints_get_one_clear_checkpoint_error(tree: Path, tmp_path: Path) -> None:
    good = ckpt(tree, 1)
    cases = {
        spoil(good, tmp_path / "no_arch.ckpt", arch=None):
            f"{tmp_path / 'no_arch.ckpt'} carries the checkpoint format tag but lacks arch: it was not written by "
            f"robustness.training (or was altered); train it again",
        spoil(good, tmp_path / "other.ckpt", arch="resnet18"):
            f"{tmp_path / 'other.ckpt'} names a resnet18 for mnist5k but its weights do not fit one: 121 missing "
            f"['bn1.weight', 'bn1.bias', 'bn1.running_mean'], 7 unexpected ['conv1.bias', 'conv2.weight', "
            f"'conv2.bias'], 1 of another shape ['conv1.weight']; it was altered or written for another model: train "
            f"it again",
        spoil(good, tmp_path / "unknown.ckpt", arch="vgg99"):
            f"{tmp_path / 'unknown.ckpt'} names architecture 'vgg99' for dataset 'mnist5k', which this package does "
            f"not know: it was not written by this version of robustness.training",
    }
    archive = tmp_path / "notes.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("notes.txt", "not weights")
    cases[archive] = (f"{archive} is a zip archive but not a torch file (torch.save writes one folder holding "
                      f"data.pkl): not a checkpoint; give the path of a checkpoint or of a state_dict saved with "
                      f"torch.save")
    for path, message in cases.items():
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(path)
        assert str(err.value) == message


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_malicious_pickle_is_called_code_not_corrupt(tree: Path, tmp_path: Path, capsys) -> None:
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.ckpt"
    torch.save({"format": _Payload(marker), "state_dict": {}}, evil)
    assert main(["attack", *CNN, "--checkpoint", str(evil), "--models-root", str(tree), "--test-subset", "20"]) == 2
    assert error_line(capsys) == (
        f"error: {evil} holds code that was refused (a call of {os.system.__module__}.system), not weights: loading "
        f"it with weights_only=False would run that code; do not load it, and delete it unless you know who made it "
        f"and why")
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(_Payload(marker), protocol=2))
    with pytest.raises(CheckpointError, match="holds code that was refused"):
        load_torch_file(raw)
    framed = tmp_path / "framed.pkl"  # protocol 4: torch stops at its first opcode, before the call
    framed.write_bytes(pickle.dumps(_Payload(marker), protocol=4))
    with pytest.raises(CheckpointError) as err:
        load_torch_file(framed)
    assert str(err.value) == (f"{framed} is a pickle written by pickle.dump (protocol 4), not torch.save, which "
                              f"loading with weights_only=True refuses (Unsupported operand 149): not a checkpoint; "
                              f"do not load it unless you trust where it came from")
    assert not marker.exists()


# ---------------------------------------------------------------- 6-7. options and API edges


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--lr", "nan", "argument --lr: 'nan' must be a finite number > 0"),
    ("--lr", "inf", "argument --lr: 'inf' must be a finite number > 0"),
    ("--seed", "-1", "argument --seed: '-1' must be an integer >= 0"),
    ("--epochs", "0", "argument --epochs: '0' must be an integer >= 1"),
    ("--batch-size", "0", "argument --batch-size: '0' must be an integer >= 1"),
])
def test_train_options_are_checked_before_torch_sees_them(option, value, message, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["train", *CNN, "--models-root", str(tmp_path / "m"), option, value])
    assert exit_.value.code == 2
    assert error_line(capsys) == f"error: {message} (options: python -m robustness train --help)"
    assert not (tmp_path / "m").exists()


def test_the_library_checks_the_same_edges(tmp_path: Path) -> None:
    for settings, message in (({"lr": math.nan}, "lr must be a finite number > 0, got nan"),
                              ({"seed": -1}, "seed must be an integer >= 0, got -1"),
                              ({"weight_decay": math.nan}, "momentum must lie in [0, 1) and weight_decay be >= 0")):
        with pytest.raises(InvalidArgument) as err:
            TrainConfig(arch="mnist_cnn", models_root=str(tmp_path), **settings).validate()
        assert str(err.value).startswith(message)
    from robustness.retraining import RetrainingStudy  # noqa: PLC0415

    with pytest.raises(InvalidArgument) as err:  # when the study is described, before any file is read
        RetrainingStudy("mnist_cnn", "mnist5k", "highpass", "difference", lr=math.nan, models_root=str(tmp_path))
    assert str(err.value) == "lr must be a finite number > 0 (or None: the checkpoint's), got nan"
    x, y = torch.rand(4, 1, 28, 28), torch.arange(4)
    model = build_model("mnist_cnn", "mnist5k").eval()
    with pytest.raises(InvalidArgument) as err:
        local_analysis(model, (x, y), "highpass", FGSM(0.1), thresholds=0)
    assert str(err.value) == "thresholds is the number of points of a sweep, at least 2 (its two ends), got 0"
    empty = (x[:0], y[:0])
    for data in (empty, DataLoader(TensorDataset(*empty))):
        with pytest.raises(InvalidArgument) as err:
            local_analysis(model, data, "highpass", FGSM(0.1), 3, layers=["fc2"])
        assert str(err.value) == "the evaluation set is empty: give at least one image"
    with pytest.raises(InvalidArgument) as err:
        evaluate(model, DataLoader(TensorDataset(*empty)))
    assert str(err.value) == "the loader is empty: give at least one image to evaluate"


# ---------------------------------------------------------------- 8. a kill between write and rename


def test_a_write_killed_before_its_rename_leaves_a_temporary_the_next_write_removes(tmp_path: Path) -> None:
    target = tmp_path / "big.ckpt"
    killed = subprocess.run([sys.executable, "-c", (
        "import os, signal, torch\n"
        "from robustness.files import atomic_path\n"
        f"with atomic_path({str(target)!r}) as tmp:\n"
        "    torch.save({'w': torch.zeros(100_000)}, tmp)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n")],
        env={**os.environ, "PYTHONPATH": str(Path(paths.__file__).parents[1])}, check=False)
    assert killed.returncode == -signal.SIGKILL
    (orphan,) = tmp_path.iterdir()
    assert orphan.name.startswith(".big.ckpt.") and orphan.name.endswith(".tmp") and not target.exists()
    # an old-style temporary (no writer in its name) is removed once untouched for an hour; a live writer's stays
    old = tmp_path / ".r.json.abcd1234.tmp"
    old.write_text("{")
    os.utime(old, (time.time() - STALE_SECONDS - 60,) * 2)
    with atomic_path(tmp_path / "other.json") as live:
        live.write_text("{}")
        save_json({"a": 1}, tmp_path / "r.json")  # the next write into the folder
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "r.json"])
    assert sorted(os.listdir(tmp_path)) == ["other.json", "r.json"]
    save_torch({"w": torch.ones(3)}, target)
    assert torch.equal(load_torch_file(target)["w"], torch.ones(3))


def test_history_never_lists_an_epoch_without_its_checkpoint(tmp_path: Path, monkeypatch) -> None:
    config = TrainConfig(arch="mnist_cnn", epochs=2, subset=50, models_root=str(tmp_path), device="cpu")
    history_file = paths.history_path("mnist_cnn", "mnist5k", 1, tmp_path)
    from robustness.training import trainer  # noqa: PLC0415

    real_save = trainer.save_torch

    def dies_at_epoch_2(obj, path):
        if obj["epoch"] == 2:
            raise KeyboardInterrupt  # killed while writing epoch 2's checkpoint
        return real_save(obj, path)

    monkeypatch.setattr(trainer, "save_torch", dies_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(config)
    assert [row["epoch"] for row in load_json(history_file)] == [1]  # not 2: its checkpoint is missing
    monkeypatch.undo()
    # a history.json that lists more than the checkpoint a run resumes from is cut back to it on resume, and the
    # temporary file of a killed checkpoint write (here an old-style one, untouched for over an hour) is removed
    save_json([*load_json(history_file), {"epoch": 2, "test_acc": 0.5}], history_file)
    orphan = history_file.parent / ".MnistCNN_MNIST5K_2epochs.ckpt.k3j9x_2a.tmp"
    orphan.write_bytes(b"PK\x03\x04 half a checkpoint")
    os.utime(orphan, (time.time() - STALE_SECONDS - 60,) * 2)
    train(replace(config, epochs=1))
    assert load_json(history_file) == load_torch_file(ckpt(tmp_path, 1))["history"]
    assert sorted(os.listdir(history_file.parent)) == [ckpt(tmp_path, 0).name, ckpt(tmp_path, 1).name, "history.json"]
    rows = train(config)[1]
    assert [row["epoch"] for row in load_json(history_file)] == [1, 2] == [row["epoch"] for row in rows]
    assert load_json(history_file) == load_torch_file(ckpt(tmp_path, 2))["history"]


def test_a_corrupt_json_anywhere_names_itself(tmp_path: Path) -> None:
    broken = tmp_path / "history.json"
    broken.write_text('[{"epoch": 1, "test_')
    with pytest.raises(DataNotFoundError) as err:
        load_json(broken)
    assert str(err.value) == (f"{broken} is unreadable (not valid JSON: Unterminated string starting at: line 1 "
                              f"column 15 (char 14)): delete {broken} and rerun the command that wrote it to "
                              f"recompute it")
    assert np.isnan(load_json(save_json({"x": math.nan}, tmp_path / "nan.json"))["x"])
