"""The main job, ``python -m robustness demo``: the whole study on ``mnist5k``, at a size whose labels mean something.

Train ResNet-18 (3 initialisations); for each checkpoint, calibrate FGSM eps to a target
adversarial accuracy on held-out test images; sweep the high-pass filter over four layers
(the stem, the first convolutions of stages 2 and 4, the classifier) on 500 test images at
9 thresholds, re-estimating the BatchNorm statistics at every threshold; score the layers
with paired bootstrap intervals against the density baseline; re-check with PGD the most
robust-looking layer of Init_1; compare the initialisations' labels and rankings; evaluate
the defensive perturbation with t-SNE plots; compare selective retraining. Every step
reuses what an earlier run wrote, so a rerun (or a run after an interruption) only does
what is missing.

Why this subset: ResNet-18 evaluates about 450 images per second under FGSM on a 2-core
CPU, so one threshold of 500 images with the BatchNorm re-estimation costs about 1.5 s and
a 9-threshold sweep of one layer about 14 s, for each of 3 initialisations: all 21 layers
would take 15 minutes on their own. A global sweep costs as much as one more layer
(``scopes=("local", "global")`` adds it). A PGD re-check (20 steps, 2 restarts) of one
layer costs about ten times its FGSM sweep, so the demo re-checks one layer with 10 steps
and no restart. The full study is ``python -m robustness filter --calibrate-eps 0.5`` then
``python -m robustness scores``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from . import paths
from .attacks import FGSM
from .data import load_dataset, loader_to_tensors, make_loader
from .defense import Defense, DefenseEvaluation, defense_table, format_results, load_or_train, tsne_figure
from .figures import comparison_plot_name, draw_and_save, learning_curves_plot_name, tsne_plot_name
from .files import load_json, save_json
from .report import format_table
from .retraining import RetrainingStudy, format_comparison, run_comparison
from .scoring import Comparison, ScoresTable, Scoring, compare, plot_comparison, score_study, study_sets
from .study import StudyConfig, attack_tag, plot_study, recheck_study, run_study
from .training import TrainConfig, plot_learning_curves, train

# ResNet-18 from input to output: the stem, the first convolutions of stages 2 and 4, the classifier.
DEMO_LAYERS = ("conv1", "layer2.0.conv1", "layer4.0.conv1", "fc")


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo; the defaults fit in 10 minutes on a 2-core CPU."""

    arch: str = "resnet18"
    dataset: str = "mnist5k"
    inits: int = 3
    epochs: int = 2
    train_subset: int | None = None
    eval_subset: int = 500
    eps_images: int = 300
    thresholds: int = 9
    bn_images: int = 500
    layers: tuple[str, ...] | None = DEMO_LAYERS
    scopes: tuple[str, ...] = ("local",)
    target_adv_acc: float = 0.5
    recheck_inits: tuple[int, ...] = (1,)
    recheck_layers: int = 1
    recheck_steps: int = 10
    recheck_restarts: int = 1
    n_boot: int = 1000
    tau: float = 0.05
    defense_arch: str = "mnist_cnn"
    defense_epochs: int = 3
    defense_subset: int = 50
    defense_eps: float = 0.2
    defense_alpha: float = 0.05
    defense_steps: int = 5  # PGD steps of the attack the defense is evaluated against (Defense.steps)
    defense_def_steps: int = 5  # the defense's own optimisation steps (Defense.def_steps)
    # Each APGD iteration through the defense at test time runs it whole (def_steps x (steps + 2) passes):
    # 25 iterations instead of AutoAttack's 100 keep the test-time column within the demo's budget.
    defense_apgd_steps: int = 25
    defense_square_queries: int = 1000
    retrain_inits: tuple[int, ...] = (1,)
    retrain_seeds: int = 3
    retrain_random_sets: int = 5
    retrain_subset: int = 200
    retrain_pgd_steps: int = 3
    seed: int = 0
    device: str = "auto"
    models_root: str = str(paths.DEFAULT_MODELS_ROOT)
    plots_root: str = str(paths.DEFAULT_PLOTS_ROOT)

    @classmethod
    def smoke(cls, **overrides: Any) -> DemoSettings:
        """Tiny settings for the tests: the same steps in seconds."""
        tiny = dict(arch="mnist_cnn", inits=2, epochs=1, train_subset=300, eval_subset=60, eps_images=60,
                    scopes=("local", "global"),
                    thresholds=3, bn_images=60, layers=None, recheck_steps=3, n_boot=100, defense_epochs=1,
                    defense_subset=16,
                    defense_steps=2, defense_def_steps=2, defense_apgd_steps=5, defense_square_queries=100,
                    retrain_seeds=2, retrain_random_sets=1, retrain_subset=100,
                    retrain_pgd_steps=2)
        return replace(cls(), **{**tiny, **overrides})


@contextmanager
def _step(number: int, text: str) -> Iterator[None]:
    """Print a step's heading, then its duration."""
    print(f"[{number}/6] {text}", flush=True)
    tic = time.perf_counter()
    yield
    print(f"      done in {time.perf_counter() - tic:.0f} s", flush=True)


def _snapshot(*roots: str) -> dict[Path, str]:
    """Content hash of every file under ``roots`` (to report what a run wrote)."""
    return {p: hashlib.sha1(p.read_bytes()).hexdigest() for r in roots for p in Path(r).rglob("*") if p.is_file()}


def _cached(path: Path, settings: dict[str, Any], compute) -> Any:
    """``compute()``'s result, saved at ``path`` with ``settings`` and reused while they match."""
    if path.is_file() and (saved := load_json(path))["settings"] == settings:
        return saved["result"]
    result = compute()
    save_json({"settings": settings, "result": result}, path)
    return result


def study_config(s: DemoSettings) -> StudyConfig:
    """The demo's filtering study: high-pass, local over ``s.layers`` and global, FGSM calibrated per checkpoint."""
    return StudyConfig(
        attack=FGSM(0.1), arch=s.arch, dataset=s.dataset, inits=tuple(range(1, s.inits + 1)), epochs=(s.epochs,),
        kinds=("highpass",), scopes=s.scopes, thresholds=s.thresholds, layers=s.layers, subset=s.eval_subset,
        seed=s.seed, calibrate_eps=s.target_adv_acc, eps_images=s.eps_images, bn="recalibrate",
        bn_images=s.bn_images,
        # Channels-last: the same accuracies, and 1.9x faster on this CPU too (benchmarks/sweep.py).
        channels_last=True, device=s.device, models_root=s.models_root,
    )


def run_demo(settings: DemoSettings = DemoSettings()) -> dict[str, Any]:
    """Run every step of the study; print a summary; return the numbers and the files written."""
    s = settings
    tic = time.perf_counter()
    before = _snapshot(s.models_root, s.plots_root)
    arch_name, data_name = paths.arch_dir_name(s.arch), paths.dataset_dir_name(s.dataset)
    common = dict(seed=s.seed, device=s.device, models_root=s.models_root)
    scoring = Scoring(tau=s.tau, n_boot=s.n_boot, seed=s.seed)
    config = study_config(s)
    tag = attack_tag(config)

    with _step(1, f"training {s.inits} initialisations of {s.arch} on {s.dataset} for {s.epochs} epochs"):
        histories = train(TrainConfig(arch=s.arch, dataset=s.dataset, inits=s.inits, epochs=s.epochs,
                                      subset=s.train_subset, **common))
        draw_and_save(lambda: plot_learning_curves(histories, f"{arch_name} on {data_name}"),
                      learning_curves_plot_name(s.arch, s.dataset), s.plots_root,
                      keep_if_newer_than=[paths.history_path(s.arch, s.dataset, i, s.models_root)
                                          for i in range(1, s.inits + 1)])

    layers = ", ".join(s.layers) if s.layers else "every layer"
    with _step(2, f"synaptic filtering of each epoch-{s.epochs} checkpoint: FGSM eps calibrated to "
                  f"{s.target_adv_acc:.0%} accuracy on {s.eps_images} held-out test images; high-pass filter, "
                  f"{' and '.join(s.scopes)} (layers {layers}); {s.thresholds} thresholds, {s.eval_subset} test "
                  f"images, BatchNorm re-estimated on {s.bn_images} training images at every threshold"):
        files = run_study(config)

    with _step(3, f"filtering scores with {s.n_boot} paired bootstrap resamples, density baseline, tau {s.tau:g}; "
                  "plots"):
        tables = score_study(s.arch, s.dataset, kinds=("highpass",), root=s.models_root, attack=tag, scoring=scoring)
        plot_study(s.arch, s.dataset, tables, models_root=s.models_root, plots_root=s.plots_root, redraw=False)

    with _step(4, f"PGD re-check ({s.recheck_steps} steps, {s.recheck_restarts} start(s)) of the "
                  f"{s.recheck_layers} most robust-looking layer(s) of Init {', '.join(map(str, s.recheck_inits))}; "
                  f"invariance across the {s.inits} initialisations"):
        recheck = recheck_study(config, checkpoints=[(i, s.epochs) for i in s.recheck_inits], limit=s.recheck_layers,
                                steps=s.recheck_steps, restarts=s.recheck_restarts, scoring=scoring)
        comparison = _compare(s, files, tag)

    with _step(5, f"defensive perturbation ({s.defense_arch}, PGD-linf eps {s.defense_eps}, "
                  f"{s.defense_subset} test images); oracle labels preemptive only (no deployed system has them); "
                  f"APGD {s.defense_apgd_steps} iterations, not 100, since at test time each one runs the whole "
                  f"defense ({s.defense_def_steps * (s.defense_steps + 2)} passes); Square ({s.defense_square_queries} "
                  "queries) on the undefended model and preemptively: through the defense each query would run it "
                  "whole (the test-time Square run is in docs/defense.md)"):
        test_split = load_dataset(s.dataset, train=False)
        defense_model = load_or_train(s.defense_arch, s.dataset, epochs=s.defense_epochs, **common)
        defense_loader = make_loader(test_split, 100, subset=s.defense_subset, seed=s.seed)
        report = paths.report_path(s.defense_arch, s.dataset, "demo_defense", s.models_root)
        defense = _cached(
            report,
            _settings(s, *(k for k in asdict(s) if k.startswith("def")), "seed"),
            lambda: defense_table(defense_model, defense_loader, DefenseEvaluation(
                s.defense_eps, s.defense_alpha, s.defense_steps, s.defense_eps, "linf", s.defense_def_steps,
                apgd_steps=s.defense_apgd_steps, square_queries=s.defense_square_queries,
                skip=("test-time/oracle",), square_threats=("preemptive",), seed=s.seed)),
        )
        x, y = loader_to_tensors(defense_loader)
        predicted = Defense(s.defense_eps, s.defense_alpha, s.defense_steps, s.defense_eps, "linf", s.defense_def_steps)
        draw_and_save(lambda: tsne_figure(defense_model, x, y, predicted, seed=s.seed),
                      tsne_plot_name(s.defense_arch, s.dataset, "linf", predicted.label), s.plots_root,
                      keep_if_newer_than=[report])

    with _step(6, f"selective retraining of Init {', '.join(map(str, s.retrain_inits))} for one epoch of "
                  f"{s.retrain_subset} training images: robust + antifragile layers (high-pass adversarial labels "
                  f"agreed by every initialisation) against none, all, fragile and {s.retrain_random_sets} matched "
                  f"random sets, {s.retrain_seeds} seeds each, on {s.eval_subset} test images"):
        retraining, _ = run_comparison(RetrainingStudy(
            s.arch, s.dataset, "highpass", "adversarial", inits=tuple(s.retrain_inits), epoch=s.epochs,
            attack_tag=tag, scoring=scoring, seeds=s.retrain_seeds, random_sets=s.retrain_random_sets,
            subset=s.retrain_subset, test_subset=s.eval_subset, pgd_steps=s.retrain_pgd_steps, plots_root=s.plots_root,
            **common))

    written = sorted(str(p) for p, digest in _snapshot(s.models_root, s.plots_root).items() if before.get(p) != digest)
    seconds = time.perf_counter() - tic
    _print_summary(tables, recheck, comparison, defense, retraining, written=written, seconds=seconds)
    local = {t.score: t for t in tables if t.scope == "local"}
    return {"eps": {f"Init_{i}": info["eps"] for (i, _), info in local["clean"].checkpoints.items()},
            "labels": {score: t.label_counts() for score, t in local.items()}, "recheck": recheck,
            "comparison": comparison.rows(), "defense": defense, "retraining": retraining, "written": written,
            "seconds": seconds}


def _compare(s: DemoSettings, files: list[Path], tag: str) -> Comparison:
    """Compare the initialisations' local scores; save the figure (kept while the results are older)."""
    scoring = Scoring(tau=s.tau, n_boot=s.n_boot, seed=s.seed)
    sets = study_sets(s.arch, s.dataset, "highpass", by="init", epoch=s.epochs, attack=tag, root=s.models_root,
                      scoring=scoring)
    comparison = compare(sets, scoring=scoring)
    name = comparison_plot_name(s.arch, s.dataset, "init", "highpass", "density")
    title = f"{s.arch} on {s.dataset}: high-pass local scores of the initialisations, epoch {s.epochs}"
    draw_and_save(lambda: plot_comparison(comparison, title), name, s.plots_root, keep_if_newer_than=files)
    return comparison


def _settings(s: DemoSettings, *names: str) -> dict[str, Any]:
    """The named fields of ``s``: what a cached step's result depends on."""
    return {name: getattr(s, name) for name in names}


def _print_summary(
    tables: list[ScoresTable], recheck: list[dict[str, Any]], comparison: Comparison, defense: dict[str, Any],
    retraining: list[dict[str, Any]], *, written: list[str], seconds: float,
) -> None:
    for table in tables:
        if table.scope == "local":
            print(f"\n== {table.text()}")
    print("\n== PGD re-check (gain of FGSM over PGD under filtering; flagged when gain > 2 SE) ==")
    print(format_table(recheck) if recheck else "no layer called robust or antifragile by FGSM: nothing to re-check")
    print(f"\n== invariance across initialisations ({len(comparison.layers)} layers) ==")
    print(format_table(comparison.rows()))
    print("\n== defensive perturbation ==")
    print(format_results(defense))
    print("\n== selective retraining ==")
    print(format_comparison(retraining))
    selected = next(row["layers"] for row in retraining if row["variant"] == "robust+antifragile")
    print(f"robust+antifragile layers: {', '.join(selected) or '(none)'}")
    print(f"\n{len(written)} files written in {seconds:.0f} s" + (":" if written else " (everything was reused)"))
    for path in written:
        print(f"  {path}")
