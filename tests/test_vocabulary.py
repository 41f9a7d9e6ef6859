"""The command line speaks one language: one spelling per concept in every subcommand (those added later
included), help whose defaults are the parser's, bad values as one ``error:`` line, suggested commands that
carry the user's options, and progress that a piped log can read."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from robustness import paths
from robustness.cli import build_parser, main
from robustness.cli.concepts import CONCEPTS, SPELLINGS
from robustness.cli.findings import per_regime
from robustness.runtime import LineProgress, progress, progress_bar

# Spellings an earlier version had for a concept that now has another (its one spelling after the arrow), or for
# two concepts at once. None may come back, not even as an alias.
RETIRED = {
    "--adv-eps": "-e/--eps", "--adv-steps": "-k/--steps", "--adv-norm": "-p/--norm", "--amp": "--precision",
    "--square-queries": "--queries", "--pgd-steps": "-k/--steps", "--pgd-restarts": "--restarts",
    "--pgd-check": "--recheck", "--subset": "--test-subset or --train-subset", "--thresholds": "--n-thresholds",
    "--threshold": "--critical-drop", "--alpha-range": "--threshold-range", "--train-epochs": "--epochs",
}


def _commands() -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


def _meaning(action: argparse.Action) -> tuple:
    """What a spelling's value is: its kind of action, its type and how many values it takes."""
    return type(action).__name__, getattr(action.type, "__name__", action.type), action.nargs


def test_the_table_has_one_spelling_per_concept_and_one_concept_per_spelling() -> None:
    assert len({row.concept for row in CONCEPTS}) == len(CONCEPTS)
    assert len(SPELLINGS) == len(CONCEPTS)
    flags = [flag for row in CONCEPTS for flag in row.spelling.split("/")]
    assert len(set(flags)) == len(flags)  # no flag belongs to two spellings


def test_every_option_of_every_command_is_a_concept_of_the_table_spelled_and_meant_alike() -> None:
    """One kind of value per spelling; a per-regime form (REGIME=VALUE) only where the spelling's row states it."""
    meanings: dict[tuple[str, bool], set[tuple]] = {}
    for name, parser in _commands().items():
        for action in _options(parser):
            spelling = "/".join(action.option_strings)
            assert spelling in SPELLINGS, f"{name} {spelling}: add its concept to robustness/cli/concepts.py, or " \
                                          f"spell it as the table does"
            keyed = action.type is per_regime
            assert not keyed or SPELLINGS[spelling].per_regime, f"{name} {spelling}: state its per-regime form"
            meanings.setdefault((spelling, keyed), set()).add(_meaning(action))
    two = {spelling: found for spelling, found in meanings.items() if len(found) > 1}
    assert not two, f"one spelling, values of two kinds: {two}"
    stated = {row.spelling for row in CONCEPTS if row.per_regime}
    assert stated == {spelling for spelling, keyed in meanings if keyed}, "a per-regime form no command takes"


def test_retired_spellings_are_gone_from_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    for name, parser in _commands().items():
        flags = {flag for action in _options(parser) for flag in action.option_strings}
        assert not flags & set(RETIRED), (name, flags & set(RETIRED))
    with pytest.raises(SystemExit):
        build_parser().parse_args(["attack", "--subset", "10"])
    assert "unrecognized arguments: --subset" in capsys.readouterr().err


def _shown(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(_shown(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def test_every_default_the_help_shows_is_the_parsers() -> None:
    # "(default X)" states a value and must be the parser's; "(default: words)" describes one in words.
    literal = re.compile(r"(?:\(|; )default\s+([^;):]+?)\s*(?:[;):]|$)")
    checked = 0
    for name, parser in _commands().items():
        for action in _options(parser):
            for stated in literal.findall(action.help or ""):
                assert stated == _shown(action.default), (name, action.option_strings, stated, action.default)
                checked += 1
    assert checked > 80


def test_the_help_lists_commands_attacks_and_norms_as_they_are(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    assert all(name in top for name in _commands()) and "Square" in top and "ensemble" in top
    for name, parser in _commands().items():
        for action in _options(parser):
            if "--norm" in action.option_strings:
                assert action.choices == ["linf", "l2"] and "needs" not in action.help, name
        with pytest.raises(SystemExit):
            main([name, "--help"])
        text = capsys.readouterr().out
        assert not re.search(r"[A-Za-z]-\n\s*[a-z]", text), f"{name} --help breaks a word at a hyphen"


@pytest.mark.parametrize("argv", [
    ["attack", "-e", "-0.1"], ["attack", "--norm", "l3"], ["attack", "--restarts", "0"], ["train", "--lr", "nan"],
    ["train", "--epochs", "0"], ["filter", "--n-thresholds", "0"], ["filter", "--calibrate-eps", "2"],
    ["probe", "--seeds", "x"], ["defend", "-p", "linf", "-e", "0.1", "-k", "2", "-a", "0.01", "--ensemble", "cw"],
    ["defend"], ["attack", "--bogus"], ["retrain", "--n-runs", "0"], ["scores", "--steps", "-3"],
])
def test_a_bad_value_is_one_error_line_without_the_usage_block(argv, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.splitlines()) == 1 and err.startswith("error: ")
    assert "usage:" not in err and "--help" in err


def test_suggested_commands_carry_the_users_models_root_regime_and_dataset(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    regime = paths.regime_root(tmp_path, "pgd-linf-eps0.1")
    assert paths.command_options("mnist_cnn", "mnist5k", regime) == \
        f"--arch mnist_cnn --dataset mnist5k --models-root {tmp_path} --regime pgd-linf-eps0.1"
    assert paths.command_options("mnist_cnn", "mnist5k", regime, train=True) == \
        f"--arch mnist_cnn --dataset mnist5k --models-root {tmp_path} --adv-train pgd --norm linf --eps 0.1"
    default = paths.DEFAULT_MODELS_ROOT
    assert paths.command_options("resnet18", "cifar10", default) == "--arch resnet18 --dataset cifar10"
    assert main(["attack", "--arch", "mnist_cnn", "--models-root", str(tmp_path), "--device", "cpu"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "attack: loading torch and the attack code..."  # the first line, before any import
    assert lines[-1].startswith("error: ") and \
        f"python -m robustness train --arch mnist_cnn --dataset mnist5k --models-root {tmp_path})" in lines[-1]


def test_a_piped_log_gets_whole_lines_at_each_tenth(capsys: pytest.CaptureFixture[str]) -> None:
    assert isinstance(progress_bar("x", 3), LineProgress)  # pytest's stderr is not a terminal
    assert list(progress(range(3), "quick")) == [0, 1, 2] and capsys.readouterr().err == ""  # quick: silent
    with LineProgress(None, "queries", 1000, quiet=0) as bar:
        for _ in range(40):
            bar.update(25)
    err = capsys.readouterr().err
    assert "\r" not in err and err.endswith("\n")
    tenths = [f"queries: {n}/1000" for n in (25, *range(100, 1001, 100))]
    assert [line.split(" (")[0] for line in err.splitlines()] == tenths


def test_square_counts_its_queries_on_a_bar(trained_cnn, batch, monkeypatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from robustness.attacks import Square, square  # noqa: PLC0415

    monkeypatch.setattr(square, "progress_bar", lambda desc, total: LineProgress(None, desc, total, quiet=0))
    Square(0.3, queries=10)(trained_cnn, *batch)
    lines = capsys.readouterr().err.splitlines()
    assert lines and all(line.startswith("square linf eps 0.3: queries: ") for line in lines)
    assert int(lines[-1].split(": ")[2].split("/")[0]) >= 1
