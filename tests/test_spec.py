"""A study's spec: presets that round-trip through their file, one error per bad setting, folders that never mix
two studies, and a plan whose pass counts follow from the sizes (before any work)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from robustness.cli import main
from robustness.data import SPLIT_SIZES
from robustness.errors import InvalidArgument
from robustness.findings import PRESETS, Place, StudySpec, load_spec, make_plan, preset, save_spec, spec_dict
from robustness.findings.plan import StepPlan, check_budget
from robustness.findings.specfile import claim_folder


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_round_trips_through_its_file(name: str, tmp_path: Path) -> None:
    s = preset(name)
    assert load_spec(save_spec(s, tmp_path)) == s
    text = (tmp_path / "spec.json").read_text()
    assert text.count('"scoring"') == 1 and text.count('"baseline"') == 1  # one Scoring in the file, not copies


def test_the_model_is_set_everywhere_and_a_mismatch_is_refused() -> None:
    s = preset("smoke").with_model(arch="resnet18", dataset="mnist")
    assert (s.train.arch, s.sweep.arch, s.retraining.arch) == ("resnet18",) * 3
    assert (s.train.dataset, s.sweep.dataset, s.retraining.dataset) == ("mnist",) * 3
    with pytest.raises(InvalidArgument, match="arch is 'mnist_cnn' for training but 'resnet18' elsewhere"):
        replace(preset("smoke"), sweep=replace(preset("smoke").sweep, arch="resnet18"))


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["sweep"].update(thresholdz=3), r"unknown setting\(s\) spec.sweep.thresholdz"),
    (lambda d: d["sweep"].update(arch="resnet18"), "sweep.arch follow from the rest"),
    (lambda d: d["sweep"].update(attack={"class": "Square"}), "spec.sweep.attack must be an attack object"),
    (lambda d: d.update(preset="huge"), "unknown preset 'huge'"),
    (lambda d: d["check"].update(thresholds=6), "must be a multiple of sweep.thresholds - 1"),
    (lambda d: d["train"].update(subset=0), "subset must be at least 1"),
])
def test_a_bad_spec_file_is_one_clear_error(change, message: str, tmp_path: Path) -> None:
    data = spec_dict(preset("smoke"))
    change(data)
    (tmp_path / "spec.json").write_text(json.dumps(data))
    with pytest.raises(InvalidArgument, match=message):
        load_spec(tmp_path)


def test_a_folder_of_another_study_is_refused_naming_the_setting(tmp_path: Path) -> None:
    s = preset("smoke")
    claim_folder(s, tmp_path, "--models-root")
    claim_folder(s, tmp_path, "--models-root")  # the same study resumes
    other = replace(s, sweep=replace(s.sweep, bn_images=80))
    with pytest.raises(InvalidArgument, match=r"first sweep.bn_images: 60 there, 80 in this run\): give this run "
                                              r"another --models-root, or resume that study with --spec"):
        claim_folder(other, tmp_path, "--models-root")
    assert load_spec(tmp_path) == s


def test_the_plan_counts_follow_from_the_sizes() -> None:
    """Planted: the smoke preset's units counted by hand (mnist_cnn has 4 filterable layers). Training: both regimes'
    steps, PGD-1's attack and the test split each epoch. A local sweep: per checkpoint a reference point and one per
    threshold of each layer, with BatchNorm re-estimated over the whole network for the reference and once per layer
    for the prefix, but after the filtered layer only (half the network) at each threshold."""
    s = preset("smoke")
    plan = {p.name: p.work for p in make_plan(s)}
    n_train, n_test, n, layers, a = s.train.subset, SPLIT_SIZES["mnist5k"][1], s.sweep.subset, 4, "mnist_cnn"
    inits, epochs, k, thresholds, bn = s.train.inits, s.train.epochs, s.adversarial.steps, 3, 60
    assert plan["train"] == {("train", a): 2 * inits * epochs * n_train, ("attack", a): inits * epochs * n_train * k,
                             ("forward", a): 2 * inits * epochs * n_test}
    checkpoints = 2 * (inits * 2 + 1)  # both regimes: every init at epochs 1 and 2, and Init_1's low-pass
    calibration = checkpoints * 60 * 12  # eps_images x bisection steps, each an FGSM pass
    assert plan["sweep"] == {("point", a): checkpoints * (layers * thresholds + 1) * n,
                             ("bn", a): checkpoints * (bn + layers * (bn * thresholds // 2 + bn // 2)),
                             ("attack", a): calibration, ("forward", a): calibration}
    # the PGD re-check (2 steps): every layer at most, both regimes' Init_1, one more attack pass per point
    points = 2 * (layers * thresholds + 1) * n
    assert plan["pgd"][("point", a)] == points and plan["pgd"][("attack", a)] == points
    finer = {p.name: p.work for p in make_plan(replace(s, sweep=replace(s.sweep, thresholds=5),
                                                       check=replace(s.check, thresholds=9)))}
    # two more thresholds re-estimate BatchNorm on the suffix only: half a network's pass per image and layer
    assert finer["sweep"][("bn", a)] - plan["sweep"][("bn", a)] == checkpoints * layers * 2 * bn // 2
    assert make_plan(s)[0].passes == (2 * inits * epochs * (n_train + n_test) + inits * epochs * n_train * k,
                                      2 * inits * epochs * n_train + inits * epochs * n_train * k)


def test_the_plan_counts_the_report_and_the_retraining_with_power_by_hand() -> None:
    """Planted, the smoke sizes counted by hand. Report: per regime, 3 saved epochs (0 to 2) x 20 curve images x
    (clean and attacked passes, 2 PGD steps), and 2 eps x 20 images x (PGD 2 + APGD-CE 2 + APGD-DLR 2 steps; clean,
    3 attacked passes and 5 Square queries forward). Power: 6 retrained sets (top, bottom, 2 random each) x 2 seeds x
    60 images, once clean and once on PGD-1 batches; 7 variants x 2 seeds x 40 test images (clean and attacked passes,
    PGD-2) after each of the two retrainings."""
    plan = {p.name: p.work for p in make_plan(preset("smoke"))}
    a = "mnist_cnn"
    assert plan["report"] == {("forward", a): 2 * (3 * 20 * 2 + 2 * 20 * 9),
                              ("attack", a): 2 * (3 * 20 * 2 + 2 * 20 * 6)}
    retrained, tested = 6 * 2 * 60, 2 * 7 * 2 * 40
    assert plan["power"] == {("train", a): 2 * retrained, ("attack", a): retrained * 1 + tested * 2,
                             ("forward", a): tested * 2}
    assert list(plan) == ["train", "sweep", "random-null", "ablate", "check", "pgd", "probe", "report", "retrain",
                          "power"]


def test_a_plan_over_the_budget_names_the_largest_step_and_what_to_reduce() -> None:
    steps = [StepPlan("train", {}, 30.0), StepPlan("sweep", {}, 600.0)]
    check_budget(steps, 11)
    with pytest.raises(InvalidArgument, match=r"10.5 min, over the budget of 5 min: the largest step is sweep .*"
                                              r"reduce sweep.thresholds"):
        check_budget(steps, 5)


def test_the_command_refuses_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    models = tmp_path / "models"
    command = ["findings", "--preset", "smoke", "--models-root", str(models), "--device", "cpu"]
    assert main([*command, "--out", str(tmp_path / "out"), "--budget", "0.001"]) == 2
    captured = capsys.readouterr()
    assert captured.out.startswith("plan of the smoke preset") and "below the smallest plan" in captured.err
    assert "choose --preset smoke and a --budget of at least" in captured.err.splitlines()[-1]
    assert not (models / "spec.json").exists() and not (tmp_path / "out" / "spec.json").exists()
    (tmp_path / "file").write_text("")
    assert main([*command, "--out", str(tmp_path / "file")]) == 2
    assert "file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["findings", "--preset", "huge"])


def test_place_defaults_keep_each_preset_apart() -> None:
    from robustness.findings import default_place

    smoke, findings = default_place("smoke"), default_place("findings")
    assert smoke.models_root != findings.models_root and Path(smoke.out).parent == Path(smoke.models_root)
    assert isinstance(smoke, Place) and isinstance(preset("paper"), StudySpec)


@pytest.mark.parametrize(("options", "message"), [
    (["--eps", "0.2"], "--eps set without --adv-train"),
    (["--adv-train", "none"], "compares standard training with adversarial training"),
    (["--spec", "missing.json"], "no spec file at missing.json"),
])
def test_bad_options_are_one_error_before_any_work(options: list[str], message: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["findings", "--preset", "smoke", "--models-root", str(tmp_path / "m"), *options]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_the_demo_plan_counts_its_own_steps_and_the_defense() -> None:
    """Planted: the demo's steps are its own (one regime, no check or probe) and the defense's count by hand:
    the smoke preset's defense (mnist_cnn, the study's own model) on 16 images in its three columns."""
    from robustness.findings.plan import DEMO_WORK

    s = preset("smoke")
    plan = {p.name: p.work for p in make_plan(s, DEMO_WORK)}
    assert list(plan) == ["train", "sweep", "recheck", "defense", "retrain"]
    e, a = s.defense, "mnist_cnn"
    d = e.defense
    defended, n = d.def_steps * (d.steps + 2), s.defense_subset
    iterations = 2 * e.apgd_steps + d.steps  # APGD-CE, APGD-DLR and PGD; Square's queries are forward passes
    columns = {"preemptive": 1, "test-time": defended}  # each test-time iteration runs the defense whole
    assert plan["defense"] == {
        ("attack", a): sum(n * (defended + e.restarts * iterations * through)
                           for threat, through in columns.items() for label in e.labels
                           if f"{threat}/{label}" not in e.skip),
        ("forward", a): n * e.square_queries * sum(1 for threat in e.square_threats for label in e.labels
                                                   if f"{threat}/{label}" not in e.skip)}
    findings = {p.name: p.work for p in make_plan(s)}
    assert plan["train"][("train", a)] * 2 == findings["train"][("train", a)]  # the standard regime only
