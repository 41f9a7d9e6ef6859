"""The command line: help, a training run, and one-line errors with exit status 2."""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
from pathlib import Path

import pytest

import robustness
from robustness import cli, paths
from robustness.cli import build_parser, main, nonnegative_number
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


@pytest.mark.slow
def test_missing_dataset_is_one_line_of_error(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "robustness", "train", "--dataset", "cifar10", "--data-root", str(tmp_path / "none")],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert run.returncode == 2
    assert run.stderr.startswith("error: cifar10 not found") and "--download" in run.stderr
    assert "Traceback" not in run.stderr


def test_eps_like_options_accept_fractions() -> None:
    parser = build_parser()
    attack = parser.parse_args(["attack", "-e", "8/255", "-a", "2/255"])
    assert attack.eps == 8 / 255 and attack.alpha == 2 / 255  # exactly, not rounded
    defend = parser.parse_args(["defend", "-p", "linf", "-k", "20", "-e", "8/255", "-a", "0.01", "--budget", "inf"])
    assert (defend.eps, defend.alpha, defend.budget) == (8 / 255, 0.01, math.inf)
    assert parser.parse_args(["filter", "-e", "16/255"]).eps == 16 / 255
    assert [nonnegative_number(t) for t in ("0.031", "3e-2", "0", " 1 / 4 ")] == [0.031, 0.03, 0.0, 0.25]


EPS_OPTIONS = {
    "attack -e": ["attack", "-e"],
    "attack -a": ["attack", "-a"],
    "filter -e": ["filter", "-e"],
    "defend -e": ["defend", "-p", "linf", "-k", "2", "-a", "0.1", "-e"],
    "defend -a": ["defend", "-p", "linf", "-k", "2", "-e", "0.1", "-a"],
    "defend --budget": ["defend", "-p", "linf", "-k", "2", "-e", "0.1", "-a", "0.1", "--budget"],
}


@pytest.mark.parametrize("value", ["-1", "1/0", "abc", "nan", "8/", "1/2/3"])
@pytest.mark.parametrize("command", EPS_OPTIONS.values(), ids=EPS_OPTIONS.keys())
def test_bad_eps_like_values_are_one_argparse_error(command: list[str], value: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*command, value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert [line for line in err if "error:" in line] == [err[-1]]
    assert f"error: argument {command[-1]}" in err[-1]  # names the option
    assert repr(value) in err[-1] and ("must be a number >= 0" in err[-1] or "is not a number" in err[-1])
    with pytest.raises(argparse.ArgumentTypeError):
        nonnegative_number(value)
