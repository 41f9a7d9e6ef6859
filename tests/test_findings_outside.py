"""A study of models it does not train: a model from elsewhere per regime (--checkpoint/--weights REGIME=...) and a
regime already trained (--regime TAG). The spec records the source and a resume with another is refused; bad
settings are one error before any work; the train step skips such a regime and the page says what else is skipped."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

from robustness import paths
from robustness.cli import build_parser, main
from robustness.cli.findings import spec_of
from robustness.errors import CheckpointError, InvalidArgument
from robustness.findings import (
    Place,
    Sources,
    load_spec,
    make_plan,
    preset,
    render,
    run_findings,
    save_spec,
    spec_dict,
    trained_regime,
)
from robustness.findings.outside import SKIPPED, SKIPPED_STANDARD, skipped_lines, skipped_rows
from robustness.findings.plan import StepPlan, check_budget
from robustness.findings.specfile import claim_folder
from robustness.findings.table import COLUMNS
from robustness.findings.tables import Page
from robustness.models import build_model

ADV = "pgd-linf-eps0.1"  # the smoke preset's adversarial regime


def _with_source(source: str, role: str = "adversarial"):  # noqa: ANN202
    return replace(preset("smoke"), sources=Sources(**{role: source}))


def _spec(*options: str):  # noqa: ANN202
    return spec_of(build_parser().parse_args(["findings", "--preset", "smoke", *options]))


@pytest.fixture(scope="module")
def state_dict_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained mnist_cnn's plain state_dict, saved as a model from elsewhere would be."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("outside") / "mine.pt"
    torch.save(build_model("mnist_cnn", "mnist5k").state_dict(), path)
    return path


# ---------------------------------------------------------------- the spec records the source


def test_the_options_give_one_source_per_regime_and_the_spec_file_records_it(tmp_path: Path) -> None:
    s = _spec("--checkpoint", "adversarial=a.pt", "--weights", "standard=torchvision:resnet18")
    assert s.sources == Sources(standard="torchvision:resnet18", adversarial="a.pt")
    assert (s.source("standard"), s.source(ADV)) == ("torchvision:resnet18", "a.pt")
    assert s.inits_of(ADV) == (1,) and s.epochs_of(ADV) == (0,) and s.final_of(ADV) == 0
    assert load_spec(save_spec(s, tmp_path)) == s
    assert json.loads((tmp_path / "spec.json").read_text())["sources"] == {"standard": "torchvision:resnet18",
                                                                           "adversarial": "a.pt"}


def test_a_study_that_trains_both_regimes_writes_its_spec_file_as_before() -> None:
    """No sources, no ``sources`` in spec.json: a run made before sources existed resumes as it was."""
    s = preset("findings")
    assert "sources" not in spec_dict(s) and not s.sources.given
    assert s.inits_of("standard") == s.inits_of(ADV) == (1, 2, 3) and s.epochs_of(ADV) == s.swept_epochs


def test_a_resume_with_another_source_is_refused_naming_the_setting(tmp_path: Path) -> None:
    claim_folder(_with_source("a.pt"), tmp_path, "--models-root")
    with pytest.raises(InvalidArgument, match=r"first sources.adversarial: 'a.pt' there, 'b.pt' in this run"):
        claim_folder(_with_source("b.pt"), tmp_path, "--models-root")
    with pytest.raises(InvalidArgument, match=r"first sources: \{'standard': None, 'adversarial': 'a.pt'\} there, "
                                              r"None in this run"):
        claim_folder(preset("smoke"), tmp_path, "--models-root")


@pytest.mark.parametrize(("options", "message"), [
    (["--checkpoint", "a.pt"], "'a.pt' is not REGIME=VALUE with REGIME standard or adversarial"),
    (["--weights", "robust=x"], "'robust=x' is not REGIME=VALUE"),
])
def test_a_value_without_its_regime_is_one_error_line(options: list[str], message: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["findings", *options])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.splitlines()) == 1 and message in err


# ---------------------------------------------------------------- bad settings, before any work


def _refused(command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``command`` into fresh folders under ``tmp_path``; check it failed before the plan and wrote no spec;
    the error line."""
    models, out = tmp_path / "models", tmp_path / "out"
    assert main(["findings", "--preset", "smoke", "--models-root", str(models), "--out", str(out), "--device", "cpu",
                 *command]) == 2
    captured = capsys.readouterr()
    assert "[1/10]" not in captured.out and not (models / "spec.json").exists() and not (out / "spec.json").exists()
    return captured.err.strip().splitlines()[-1]


def test_a_regime_without_checkpoints_is_refused_naming_the_folder_and_the_fix(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _refused(["--regime", ADV], tmp_path, capsys)
    folder = paths.model_dir("mnist_cnn", "mnist5k", tmp_path / "models", regime=ADV)
    assert err.startswith("error: ") and f"{folder} lacks Init_1 epoch 0" in err
    assert "train them first (python -m robustness train --arch mnist_cnn" in err and "--adv-train pgd" in err
    assert "--checkpoint adversarial=PATH" in err and "plan of" not in capsys.readouterr().out


@pytest.mark.parametrize(("options", "message"), [
    (["--regime", "standard"], "--regime names the adversarial regime already trained"),
    (["--regime", ADV, "--adv-train", "pgd", "--eps", "0.1"], "give it instead of --adv-train"),
    (["--checkpoint", "adversarial=a.pt", "--weights", "adversarial=timm:x"], "two models for the adversarial regime"),
    (["--checkpoint", "adversarial=missing.pt"], "missing.pt"),
])
def test_conflicting_or_missing_models_are_one_error(options: list[str], message: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert message in _refused(options, tmp_path, capsys)


def test_a_checkpoint_of_another_architecture_is_refused_before_the_plan(
        state_dict_file: Path, checkpoints_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The loader's own error, surfaced before any work: a plain state_dict that does not fit --arch, and this
    package's checkpoint of another architecture."""
    err = _refused(["--arch", "resnet18", "--checkpoint", f"adversarial={state_dict_file}"], tmp_path, capsys)
    assert f"{state_dict_file} does not fit a resnet18 for mnist5k" in err and "check --arch" in err
    ckpt = paths.checkpoint_path("mnist_cnn", "mnist5k", 1, 1, checkpoints_root)
    err = _refused(["--arch", "resnet18", "--checkpoint", f"standard={ckpt}"], tmp_path / "2", capsys)
    assert str(ckpt) in err and "mnist_cnn" in err and "resnet18" in err


def test_a_budget_below_the_smallest_plan_names_its_time_and_the_smoke_preset() -> None:
    steps = [StepPlan("train", {}, 30.0), StepPlan("sweep", {}, 600.0)]
    with pytest.raises(InvalidArgument, match=r"--budget 5 min is below the smallest plan, the smoke preset's for "
                                              r"this model, predicted to take 6.0 min on this device: choose --preset "
                                              r"smoke and a --budget of at least 6.0 min"):
        check_budget(steps, 5, lambda: 360.0)
    with pytest.raises(InvalidArgument, match="over the budget of 5 min: the largest step is sweep"):
        check_budget(steps, 5, lambda: 120.0)  # a smaller plan fits: reduce this one


# ---------------------------------------------------------------- a regime already trained


def _plant_regime(root: Path, epochs: tuple[int, ...], inits: int = 2) -> None:
    """Empty checkpoint files named as training names them, and the regime's settings (what --regime reads)."""
    for init in range(1, inits + 1):
        for epoch in epochs:
            path = paths.checkpoint_path("mnist_cnn", "mnist5k", init, epoch, root, regime="pgd-linf-eps0.2")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    settings = {"method": "pgd", "eps": 0.2, "norm": "linf", "steps": 3, "step_size": None, "warmup": 0}
    paths.regime_file("mnist_cnn", "mnist5k", root, regime="pgd-linf-eps0.2").write_text(json.dumps(settings))


def test_regime_reads_the_trained_regimes_settings_and_needs_every_swept_checkpoint(tmp_path: Path) -> None:
    s, at = preset("smoke"), Place(str(tmp_path), str(tmp_path / "page"))
    _plant_regime(tmp_path, (0, 1))
    with pytest.raises(CheckpointError, match=r"lacks Init_1 epoch 2, Init_2 epoch 2 of the checkpoints the study "
                                              r"sweeps: train them first .* --n-inits 2 --epochs 2\)"):
        trained_regime(s, at, "pgd-linf-eps0.2")
    _plant_regime(tmp_path, (2,))
    found = trained_regime(s, at, "pgd-linf-eps0.2")
    assert found.regimes == ("standard", "pgd-linf-eps0.2") and found.adversarial.steps == 3
    assert found == replace(s, adversarial=found.adversarial) and not found.sources.given


# ---------------------------------------------------------------- what is skipped, and said


def test_the_page_says_what_is_skipped_for_a_model_from_elsewhere_one_line_each(tmp_path: Path) -> None:
    at = Place(str(tmp_path), str(tmp_path))
    adversarial = skipped_rows(_with_source("a.pt"), at)
    assert [r["quantity"] for r in adversarial] == [*SKIPPED, "regime comparison beyond Init_1"]
    assert {r["regime"] for r in adversarial[:-1]} == {ADV}
    standard = skipped_rows(_with_source("a.pt", "standard"), at)
    assert [r["quantity"] for r in standard] == [*SKIPPED, *SKIPPED_STANDARD, "regime comparison beyond Init_1"]
    assert skipped_rows(preset("smoke"), at) == []
    lines = skipped_lines(Page(pd.DataFrame(adversarial, columns=list(COLUMNS))))
    assert len(lines) == 2 + len(adversarial) + 1
    assert f"- {ADV}: consensus scores over initialisations (the hierarchical bootstrap: random null, density " \
           f"baseline, ablation): needs at least 2 initialisations; --checkpoint or --weights gives one model." in lines


def test_the_plan_trains_no_regime_from_elsewhere() -> None:
    s = preset("smoke")
    both = {p.name: p.work for p in make_plan(s)}["train"]
    one = {p.name: p.work for p in make_plan(_with_source("a.pt"))}["train"]
    images = s.train.inits * s.train.epochs * s.train.subset
    assert both[("train", "mnist_cnn")] == 2 * images and one[("train", "mnist_cnn")] == images
    assert ("attack", "mnist_cnn") in both and one.get(("attack", "mnist_cnn"), 0) == 0


# ---------------------------------------------------------------- end to end


@pytest.mark.slow
def test_a_model_from_elsewhere_is_studied_without_training_and_the_page_notes_the_skipped_steps(
        checkpoints_root: Path, tmp_path: Path) -> None:
    """The smoke study (three layers) with its adversarial regime a checkpoint from elsewhere: the standard regime
    is trained, the other is not; both are swept, scored and compared; the page says what was skipped and why; the
    spec records the source, and a rerun with another is refused."""
    source = tmp_path / "theirs.ckpt"
    shutil.copy(paths.checkpoint_path("mnist_cnn", "mnist5k", 1, 1, checkpoints_root), source)
    s = replace(_with_source(str(source)), sweep=replace(preset("smoke").sweep, layers=("conv1", "conv2", "fc2")),
                check=replace(preset("smoke").check, layers=("fc2",)))
    at = Place(str(tmp_path / "models"), str(tmp_path / "out"), device="cpu")
    run_findings(s, at)
    assert not paths.model_dir("mnist_cnn", "mnist5k", at.models_root, regime=ADV).exists()  # not trained
    assert paths.list_checkpoints("mnist_cnn", "mnist5k", 2, at.models_root)  # the standard regime is
    tree = paths.regime_root(at.models_root, ADV) / paths.source_dir_name(source)
    assert (tree / "MNIST5K" / "regime.json").is_file()  # its results record the regime the spec states

    frame = pd.read_csv(at.table)
    checkpoints = frame[(frame.section == "checkpoint") & (frame.quantity == "eps")]
    assert sorted(zip(checkpoints.regime, checkpoints.init, checkpoints.epoch, strict=True)) == [
        (ADV, 1, 0), ("standard", 1, 1), ("standard", 1, 2), ("standard", 2, 1), ("standard", 2, 2)]
    assert set(frame[frame.section == "score"].regime) == {"standard", ADV}
    assert set(frame[frame.section == "null regime"].init) == {1}  # compared where both have a model
    assert ADV not in set(frame[frame.section.isin(["null score", "probe", "ablation", "over inits"])].regime)
    page = at.page.read_text()
    assert page == render(frame)
    assert f"the adversarial regime is not trained but the model `{source}`" in page
    assert f"- {ADV}: probe: the re-initialisation probe resets a layer to its epoch-0 weights" in page
    assert load_spec(at.models_root).sources.adversarial == str(source)

    other = shutil.copy(source, tmp_path / "other.ckpt")
    with pytest.raises(InvalidArgument, match=r"first sources.adversarial: '.*theirs.ckpt' there, '.*other.ckpt'"):
        run_findings(replace(s, sources=Sources(adversarial=str(other))), at)
