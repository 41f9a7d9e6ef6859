"""Under torchrun (2 gloo processes on loopback): DDP training and sharded sweeps match one process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robustness import distributed, paths
from robustness.cli import main
from robustness.data import load_dataset
from robustness.errors import InvalidArgument
from robustness.files import load_json
from robustness.models import build_model, load_checkpoint
from robustness.runtime import seed_everything
from robustness.training import TrainConfig, init_seed, train
from robustness.training import trainer as train_module

REPO = Path(__file__).resolve().parents[1]
TRAIN = ["--arch", "mnist_cnn", "--train-subset", "200", "--batch-size", "20", "--device", "cpu"]
SWEEP = ["--arch", "mnist_cnn", "--device", "cpu", "--test-subset", "100", "--n-thresholds", "3", "--filter",
         "highpass", "--scope", "both", "--layers", "conv1", "conv2", "fc2", "-e", "0.1"]


def torchrun(*args: str, cwd: Path, ok: bool = True) -> subprocess.CompletedProcess:
    """Run ``python -m robustness ARGS`` as 2 processes under torchrun, expecting success (``ok``) or failure."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "MASTER_ADDR": "127.0.0.1", "TQDM_DISABLE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "robustness", *args]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert (done.returncode == 0) == ok, f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done


def one_process_steps(epochs: int) -> tuple[dict[str, torch.Tensor], list[float]]:
    """Weights and per-epoch mean losses of one process taking, at every step, the union of the two
    ranks' batches as one batch: what DDP with global batch semantics must compute."""
    config = TrainConfig(arch="mnist_cnn", subset=200, batch_size=20)
    seed = init_seed(0, 1)
    seed_everything(seed)
    model = build_model("mnist_cnn", "mnist5k")
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    data = load_dataset("mnist5k", train=True)
    losses = []
    for epoch in range(1, epochs + 1):
        shares = [train_module._epoch_loader(data, config, seed, epoch, rank=r, world_size=2) for r in (0, 1)]
        total = seen = 0.0
        for (x0, y0), (x1, y1) in zip(*shares, strict=True):
            x, y = torch.cat([x0, x1]), torch.cat([y0, y1])
            assert len(y) == config.batch_size
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(y)
            seen += len(y)
        losses.append(total / seen)
    return model.state_dict(), losses


@pytest.mark.slow
def test_ddp_training_writes_a_checkpoint_tree_that_resumes_under_torchrun_and_alone(tmp_path: Path) -> None:
    root = tmp_path / "models"
    out = torchrun("train", *TRAIN, "--epochs", "1", "--models-root", str(root), cwd=tmp_path).stdout
    assert out.count("train_loss") == 1, "only rank 0 prints"
    torchrun("train", *TRAIN, "--epochs", "2", "--models-root", str(root), cwd=tmp_path)
    init_dir = paths.init_dir("mnist_cnn", "mnist5k", 1, root)
    assert sorted(p.name for p in root.rglob("*") if p.is_file()) == sorted(
        ["history.json", *(paths.checkpoint_path("mnist_cnn", "mnist5k", 1, e, root).name for e in (0, 1, 2))]
    ), "rank 0 alone writes, atomically: no temporary or duplicate files"

    model, meta = load_checkpoint(paths.checkpoint_path("mnist_cnn", "mnist5k", 1, 2, root), "mnist_cnn", "mnist5k")
    assert meta["epoch"] == 2 and [row["epoch"] for row in meta["history"]] == [1, 2]
    expected, losses = one_process_steps(epochs=2)
    start = load_checkpoint(paths.checkpoint_path("mnist_cnn", "mnist5k", 1, 0, root))[0].state_dict()
    for name, weight in model.named_parameters():
        assert (weight - start[name]).abs().max() > 1e-3, f"{name} barely trained: the comparison means nothing"
    for name, weight in model.state_dict().items():
        torch.testing.assert_close(weight, expected[name], rtol=0, atol=1e-5, msg=name)
    assert [row["train_loss"] for row in meta["history"]] == pytest.approx(losses, rel=1e-5)
    assert load_json(init_dir / "history.json") == meta["history"]

    resumed = train(TrainConfig(arch="mnist_cnn", subset=200, batch_size=20, epochs=3, models_root=str(root),
                                device="cpu"))[1]
    assert resumed[:2] == meta["history"] and resumed[2]["epoch"] == 3
    assert list(paths.list_checkpoints("mnist_cnn", "mnist5k", 1, root)) == [0, 1, 2, 3]


def analysis_files(root: Path) -> dict[str, object]:
    """Every file of a study outside the Init_* folders, by relative path, with its JSON content or, for an
    .npz of per-image outcomes, its arrays."""
    return {str(p.relative_to(root)): load_json(p) if p.suffix == ".json" else npz_arrays(p)
            for p in sorted(root.rglob("*"))
            if p.is_file() and not any(part.startswith("Init_") for part in p.relative_to(root).parts[:-1])}


def npz_arrays(path: Path) -> dict[str, list]:
    with np.load(path) as npz:
        return {k: npz[k].tolist() for k in sorted(npz.files)}


@pytest.mark.slow
@pytest.mark.parametrize("options", [[], ["--checkpoint-epochs", "1", "--calibrate-eps", "0.2", "--eps-images", "200"]])
def test_two_rank_sweep_writes_the_same_files_as_one_process(checkpoints_root: Path, tmp_path: Path, options) -> None:
    """Also with eps calibrated per checkpoint: one rank calibrates, both sweep with its eps."""
    alone, sharded = tmp_path / "alone", tmp_path / "sharded"
    shutil.copytree(checkpoints_root, alone)
    shutil.copytree(checkpoints_root, sharded)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in torchrun's processes: CPU convolutions round alike only with equal thread counts
    try:
        assert main(["filter", *SWEEP, *options, "--models-root", str(alone)]) == 0
    finally:
        torch.set_num_threads(threads)
    out = torchrun("filter", *SWEEP, *options, "--models-root", str(sharded), cwd=tmp_path).stdout

    expected = analysis_files(alone)
    checkpoints = 1 if options else 2
    assert len(expected) == checkpoints * 2 * 2, "checkpoints x (local + global) x (.json + .npz)"
    assert analysis_files(sharded) == expected
    if options:
        metas = [v["meta"] for k, v in expected.items() if k.endswith(".json")]
        assert all(m["attack"] == "fgsm_acc0.2" and m["eps"] == metas[0]["eps"] != 0.1 for m in metas)
    assert out.count("ref clean") == 1, "only rank 0 prints"


@pytest.mark.slow
def test_an_error_on_rank_0_is_every_rank_s_one_line_error(checkpoints_root: Path, tmp_path: Path) -> None:
    # each rank calibrates its share of the checkpoints; an error on any becomes every rank's one-line error
    done = torchrun("filter", *SWEEP, "--models-root", str(checkpoints_root), "--calibrate-eps", "0.99",
                    cwd=tmp_path, ok=False)
    assert done.stderr.count("error: checkpoint Init_1 epoch 0: clean accuracy") == 2
    assert "[rank0]" not in done.stderr and "[rank1]" not in done.stderr, "no worker traceback"


def test_units_are_dealt_round_robin_to_the_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    shares = []
    for rank in range(3):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "3")
        shares.append(distributed.shard(list(range(8))))
    assert shares == [[0, 3, 6], [1, 4, 7], [2, 5]]


def test_global_batch_must_split_evenly_over_the_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(InvalidArgument, match="multiple of 3, e.g. --batch-size 102"):
        train(TrainConfig(arch="mnist_cnn", batch_size=100, models_root=str(tmp_path), device="cpu"))


def test_without_torchrun_nothing_is_set_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    with distributed.process_group(torch.device("cpu")) as device:
        assert device == torch.device("cpu") and not torch.distributed.is_initialized()
        assert distributed.is_main() and distributed.on_main(lambda: "x") == distributed.on_all(lambda: "x") == "x"
        assert distributed.all_sum([1.0, 2.0], device) == [1.0, 2.0]
