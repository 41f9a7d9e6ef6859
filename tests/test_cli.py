"""The command line: help, a training run, and one-line errors with exit status 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import robustness
from robustness import cli, paths
from robustness.cli import build_parser, main
from robustness.data import DATASETS
from robustness.models import MODELS


def test_help_lists_every_subcommand_and_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "train" in out
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    for name, sub in subparsers.items():
        for action in sub._actions:
            assert action.help, f"{name} {action.option_strings} has no help text"


def test_version_and_help_answer_without_importing_torch() -> None:
    """``--help`` of the command and of a subcommand, and ``--version``, in a fresh interpreter."""
    probe = """
import sys
from robustness.cli import main
for argv in (["--help"], ["train", "--help"], ["--version"]):
    try:
        main(argv)
    except SystemExit as done:
        assert done.code == 0
print("heavy:", sorted({m.split(".")[0] for m in sys.modules} & {"torch", "torchvision", "numpy"}))
"""
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert "heavy: []" in run.stdout
    assert f"robustness {robustness.__version__}" in run.stdout and "--recipe {adam,cifar}" in run.stdout


def test_the_torch_free_name_lists_match_the_registries() -> None:
    assert set(cli.MODELS) == set(MODELS) and set(cli.DATASETS) == set(DATASETS)


def test_train_writes_checkpoints_and_prints_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["train", "--arch", "mnist_cnn", "--epochs", "1", "--subset", "200", "--models-root", str(tmp_path)])
    assert status == 0
    assert list(paths.list_checkpoints("mnist_cnn", "mnist5k", 1, tmp_path)) == [0, 1]
    assert "test_acc" in capsys.readouterr().out


def test_missing_dataset_is_one_line_of_error(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "robustness", "train", "--dataset", "cifar10", "--data-root", str(tmp_path / "none")],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert run.returncode == 2
    assert run.stderr.startswith("error: cifar10 not found") and "--download" in run.stderr
    assert "Traceback" not in run.stderr
