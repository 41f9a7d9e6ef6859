"""The command line: help, a training run, and one-line errors with exit status 2."""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import robustness
from robustness import paths
from robustness.cli import build_parser, main, nonnegative_number


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


def test_train_writes_checkpoints_and_prints_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["train", "--arch", "mnist_cnn", "--epochs", "1", "--train-subset", "200", "--models-root",
                   str(tmp_path)])
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
    loading, error = run.stderr.splitlines()  # what is loading, then the one line of error
    assert loading.startswith("train: loading")
    assert error.startswith("error: cifar10 not found") and "--download" in error
    assert "Traceback" not in run.stderr


def test_eps_like_options_accept_fractions() -> None:
    parser = build_parser()
    attack = parser.parse_args(["attack", "-e", "8/255", "-a", "2/255"])
    assert attack.eps == 8 / 255 and attack.alpha == 2 / 255  # exactly, not rounded
    defend = parser.parse_args(["defend", "-p", "linf", "-k", "20", "-e", "8/255", "-a", "0.01", "--def-budget", "inf"])
    assert (defend.eps, defend.alpha, defend.def_budget) == (8 / 255, 0.01, math.inf)
    assert parser.parse_args(["filter", "-e", "16/255"]).eps == 16 / 255
    assert [nonnegative_number(t) for t in ("0.031", "3e-2", "0", " 1 / 4 ")] == [0.031, 0.03, 0.0, 0.25]


EPS_OPTIONS = {
    "attack -e": ["attack", "-e"],
    "attack -a": ["attack", "-a"],
    "filter -e": ["filter", "-e"],
    "defend -e": ["defend", "-p", "linf", "-k", "2", "-a", "0.1", "-e"],
    "defend -a": ["defend", "-p", "linf", "-k", "2", "-e", "0.1", "-a"],
    "defend --def-budget": ["defend", "-p", "linf", "-k", "2", "-e", "0.1", "-a", "0.1", "--def-budget"],
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


# ---------------------------------------------------------------- models from elsewhere, tables


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A checkpoint tree with mnist_cnn trained 1 epoch (Init_1, epochs 0 and 1), and the same epoch-1 weights
    as a plain state_dict file outside it, DDP-style (``module.`` prefixes, no normalisation buffers)."""
    import torch  # noqa: PLC0415

    from robustness.models import load_checkpoint
    from robustness.training import TrainConfig, train  # noqa: PLC0415

    root = tmp_path_factory.mktemp("tree")
    train(TrainConfig(arch="mnist_cnn", epochs=1, subset=500, models_root=str(root), device="cpu"))
    model, _ = load_checkpoint(paths.checkpoint_path("mnist_cnn", "mnist5k", 1, 1, root))
    plain = root.parent / "plain_weights.pt"
    torch.save({f"module.{k}": v for k, v in model.state_dict().items() if not k.startswith("normalize.")}, plain)
    return root, plain


SWEEP = ["--arch", "mnist_cnn", "--filter", "highpass", "--scope", "both", "--layers", "fc2", "--n-thresholds", "3",
         "--test-subset", "60", "--bn", "frozen", "--device", "cpu"]


@pytest.mark.slow
def test_filter_of_a_plain_state_dict_equals_the_same_weights_from_the_tree(tree: tuple[Path, Path]) -> None:
    """The same weights give the same sweeps, whether they come from the tree or from a file elsewhere; the
    file's results go to its own From_ folder with the source in their meta."""
    from robustness.filtering import load_results  # noqa: PLC0415

    root, plain = tree
    assert main(["filter", *SWEEP, "--models-root", str(root), "--inits", "1", "--checkpoint-epochs", "1"]) == 0
    assert main(["filter", *SWEEP, "--models-root", str(root), "--checkpoint", str(plain)]) == 0
    folder = paths.source_dir_name(plain)
    assert folder.startswith("From_plain_weights_") and (root / folder / "MNIST5K").is_dir()
    for scope, key in (("local", "fc2"), ("global", "global")):
        own_meta, own = load_results(paths.sweep_result_path("mnist_cnn", "mnist5k", 1, 1, "highpass", scope,
                                                              "fgsm_eps0.1", root))
        meta, theirs = load_results(paths.sweep_result_path(folder, "mnist5k", 1, 0, "highpass", scope,
                                                            "fgsm_eps0.1", root))
        assert theirs[key] == own[key]  # every number and every per-image outcome
        assert len(set(own[key].adv_acc)) > 1 and own[key].ref_adv_acc < own[key].ref_clean_acc  # not degenerate
        assert (meta["source"], meta["arch"], "source" in own_meta) == (str(plain), "mnist_cnn", False)
    assert main(["filter", *SWEEP, "--models-root", str(root), "--checkpoint", str(plain), "--inits", "2"]) == 2
    written = sorted((root / folder).rglob("*.json"))
    stamps = [p.stat().st_mtime_ns for p in written]
    copy = root.parent / "elsewhere" / plain.name
    copy.parent.mkdir(exist_ok=True)
    shutil.copy(plain, copy)  # the same weights at another path: the same folder, nothing recomputed
    assert main(["filter", *SWEEP, "--models-root", str(root), "--checkpoint", str(copy)]) == 0
    assert sorted((root / folder).rglob("*.json")) == written and [p.stat().st_mtime_ns for p in written] == stamps


def test_scores_of_both_and_the_tables_as_data_frames(tree: tuple[Path, Path], tmp_path: Path) -> None:
    """scores writes plain CSVs for both models, equal to each other and to scores_frame and to_frame."""
    import pandas as pd  # noqa: PLC0415

    from robustness.filtering import to_frame  # noqa: PLC0415
    from robustness.scoring import Scoring, scores_frame  # noqa: PLC0415

    root, plain = tree
    options = ["--arch", "mnist_cnn", "--models-root", str(root), "--plots-root", str(tmp_path),
               "--n-boot", "50", "--filter", "highpass"]
    for source in ([], ["--checkpoint", str(plain)]):
        if not paths.list_sweep_results(paths.source_dir_name(plain) if source else "mnist_cnn", "mnist5k",
                                        "highpass", "local", root):
            main(["filter", *SWEEP, "--models-root", str(root), *source,
                  *([] if source else ["--inits", "1", "--checkpoint-epochs", "1"])])
        assert main(["scores", *options, *source]) == 0
    csvs = [pd.read_csv(paths.scores_table_path(arch, "mnist5k", "highpass", "local", "adversarial", root,
                                                tag="fgsm_eps0.1_density"))
            for arch in ("mnist_cnn", paths.source_dir_name(plain))]
    assert list(csvs[0]["layer"]) == ["fc2"] and csvs[0]["value"].notna().all()
    assert csvs[0]["value"].tolist() == csvs[1]["value"].tolist() and csvs[0]["lo"].tolist() == csvs[1]["lo"].tolist()
    frame = scores_frame(root, Scoring(n_boot=50))
    mine = frame[(frame["arch"] == "mnist_cnn") & (frame["scope"] == "local") & (frame["score"] == "adversarial")]
    assert mine["value"].tolist() == csvs[0]["value"].tolist() and mine["hi"].tolist() == csvs[0]["hi"].tolist()
    assert set(frame["arch"]) == {"mnist_cnn", paths.source_dir_name(plain)}
    sweeps = to_frame(root)
    assert len(sweeps) == 2 * (3 + 3)  # two models x (local fc2 + global) x 3 thresholds
    assert set(sweeps["source"].dropna()) == {str(plain)}
    local = sweeps[(sweeps["scope"] == "local") & sweeps["source"].isna()]
    assert local["epoch"].tolist() == [1, 1, 1] and (local["n_images"] == 60).all()


def test_attack_writes_its_table_for_the_tree_and_for_a_model_from_elsewhere(
    tree: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pandas as pd  # noqa: PLC0415

    from robustness.stats import wilson_interval  # noqa: PLC0415

    root, plain = tree
    common = ["attack", "--arch", "mnist_cnn", "--models-root", str(root), "--test-subset", "50", "--device", "cpu"]
    assert main([*common, "--save-table", str(tmp_path / "own.csv")]) == 0
    assert main([*common, "--checkpoint", str(plain), "--save-table", str(tmp_path / "plain.json")]) == 0
    own, theirs = pd.read_csv(tmp_path / "own.csv"), pd.read_json(tmp_path / "plain.json", precise_float=True)
    assert (own.loc[0, "init"], own.loc[0, "epoch"], theirs.loc[0, "source"]) == (1, 1, str(plain))
    for column in ("clean_acc", "robust_acc", "robust_lo", "robust_hi", "n"):
        assert own.loc[0, column] == theirs.loc[0, column]
    assert (own.loc[0, "clean_lo"], own.loc[0, "clean_hi"]) == wilson_interval(round(own.loc[0, "clean_acc"] * 50), 50)
    capsys.readouterr()
    assert main([*common, "--epoch", "7"]) == 2
    assert "has no checkpoint at epoch 7: the epochs there are 0, 1" in capsys.readouterr().err
    assert main([*common, "--save-table", str(tmp_path / "table.txt")]) == 2
    assert main(["retrain", "--arch", "mnist_cnn", "--models-root", str(root), "--checkpoint", str(plain)]) == 2
    assert "is not one of them" in capsys.readouterr().err
    assert main(["scores", "--models-root", str(root), "--weights", "timm:never_swept"]) == 2
    assert "From_timm_never_swept/MNIST5K for filter(s)" in capsys.readouterr().err  # and how to make them:
    assert main(["scores", "--models-root", str(root), "--weights", "timm:x"]) == 2
    assert "run python -m robustness filter with the same --checkpoint or --weights" in capsys.readouterr().err


def test_one_name_per_concept_and_no_hidden_aliases(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    assert parser.parse_args(["filter", "--checkpoint-epochs", "0", "3"]).checkpoint_epochs == [0, 3]
    assert parser.parse_args(["retrain", "--retrain-epochs", "4"]).retrain_epochs == 4
    for command in ("scores", "compare", "retrain"):
        assert parser.parse_args([command, "--attack-tag", "pgd_x"]).attack_tag == "pgd_x"
    for old in (["filter", "--epochs", "0"], ["retrain", "--epochs", "4"], ["scores", "--attack", "fgsm_eps0.1"],
                ["retrain", "--init", "1"]):
        with pytest.raises(SystemExit):
            parser.parse_args(old)
        assert "unrecognized arguments" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["scores", "--help"])
    help_text = capsys.readouterr().out
    assert "--attack-tag" in help_text and "--attack " not in help_text.replace("--attack-tag", "")
    with pytest.raises(SystemExit):
        parser.parse_args(["attack", "--checkpoint", "a.pt", "--weights", "timm:x"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_model_folders_are_named_by_their_source(tmp_path: Path) -> None:
    rb = "robustbench:Wong2020Fast:cifar10:Linf"
    assert paths.source_dir_name(rb) == "From_robustbench_Wong2020Fast_cifar10_Linf"
    assert paths.source_dir_name("timm:resnet18.a1_in1k") == "From_timm_resnet18.a1_in1k"
    first, copy, other = tmp_path / "w.pt", tmp_path / "copy" / "w.pt", tmp_path / "other" / "w.pt"
    for path, content in ((first, b"weights"), (copy, b"weights"), (other, b"other weights")):
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(content)
    assert paths.source_dir_name(first) == paths.source_dir_name(copy) != paths.source_dir_name(other)
    assert paths.arch_dir_name(paths.source_dir_name(first)) == paths.source_dir_name(first)
