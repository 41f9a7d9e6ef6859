"""The main job, ``python -m robustness demo``: the whole study on ``mnist5k``.

Train ResNet-18 (2 initialisations), calibrate FGSM eps to a target adversarial
accuracy, evaluate FGSM and PGD, sweep all three filters locally and globally over
the last checkpoint of each initialisation, score and plot the layers, evaluate the
defensive perturbation (both threat models, predicted and oracle labels) with t-SNE
plots, and compare selective retraining. Every step reuses what an earlier run
wrote, so a rerun (or a run after an interruption) only does what is missing.
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
from .attacks import FGSM, PGD
from .data import load_dataset, loader_to_tensors, make_loader
from .defense import Defense, defense_table, format_results, load_or_train, tsne_figure
from .evaluation import calibrate_eps, evaluate
from .files import load_json, save_json
from .plots import draw_and_save, plot_learning_curves, plot_study
from .report import format_table
from .retrain import format_comparison, run_comparison
from .runtime import pick_device
from .scores import ScoresTable, score_study
from .sweep import StudyConfig, run_study
from .train import TrainConfig, load_checkpoint, train


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo; the defaults fit in minutes on a 2-core CPU."""

    arch: str = "resnet18"
    dataset: str = "mnist5k"
    inits: int = 2
    epochs: int = 2
    train_subset: int | None = None
    eval_subset: int = 100
    thresholds: int = 5
    target_adv_acc: float = 0.5
    pgd_steps: int = 10
    defense_arch: str = "mnist_cnn"
    defense_epochs: int = 3
    defense_subset: int = 50
    defense_eps: float = 0.2
    defense_alpha: float = 0.05
    defense_steps: int = 5
    def_steps: int = 5
    retrain_subset: int = 1000
    seed: int = 0
    device: str = "auto"
    models_root: str = "saved_models"
    plots_root: str = "plots"

    @classmethod
    def smoke(cls, **overrides: Any) -> DemoSettings:
        """Tiny settings for the tests: the same steps in seconds."""
        tiny = dict(arch="mnist_cnn", inits=1, epochs=1, train_subset=300, eval_subset=40, thresholds=3,
                    pgd_steps=3, defense_epochs=1, defense_subset=16, defense_steps=2, def_steps=2,
                    retrain_subset=100)
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


def run_demo(settings: DemoSettings = DemoSettings()) -> dict[str, Any]:
    """Run every step of the study; print a summary; return the numbers and the files written."""
    s = settings
    tic = time.perf_counter()
    before = _snapshot(s.models_root, s.plots_root)
    arch_name, data_name = paths.arch_dir_name(s.arch), paths.dataset_dir_name(s.dataset)
    common = dict(seed=s.seed, device=s.device, models_root=s.models_root)
    test_split = load_dataset(s.dataset, train=False)

    with _step(1, f"training {s.inits} initialisations of {s.arch} on {s.dataset} for {s.epochs} epochs"):
        histories = train(TrainConfig(arch=s.arch, dataset=s.dataset, inits=s.inits, epochs=s.epochs,
                                      subset=s.train_subset, **common))
        draw_and_save(lambda: plot_learning_curves(histories, f"{arch_name} on {data_name}"),
                      paths.plot_name(arch_name, data_name, "learning_curves"), s.plots_root,
                      keep_if_newer_than=[paths.history_path(s.arch, s.dataset, i, s.models_root)
                                          for i in range(1, s.inits + 1)])

    with _step(2, f"calibrating FGSM eps to {s.target_adv_acc:.0%} adversarial accuracy; FGSM and PGD evaluation"):
        model, _ = load_checkpoint(paths.checkpoint_path(s.arch, s.dataset, 1, s.epochs, s.models_root),
                                   map_location=pick_device(s.device))
        loader = make_loader(test_split, 500, subset=s.eval_subset, seed=s.seed)

        def attack_table() -> dict[str, Any]:
            eps = calibrate_eps(model, loader, s.target_adv_acc, "fgsm")
            pgd = PGD(eps, alpha=eps / 4, steps=s.pgd_steps, seed=s.seed)
            return {"eps": eps, "rows": [{"attack": a.tag, **evaluate(model, loader, a)} for a in (FGSM(eps), pgd)]}

        attacks = _cached(paths.report_path(s.arch, s.dataset, "demo_attacks", s.models_root),
                          _settings(s, "epochs", "eval_subset", "target_adv_acc", "pgd_steps", "seed"), attack_table)
        fgsm = FGSM(attacks["eps"])

    with _step(3, f"synaptic filtering: 3 filters, local and global, {s.thresholds} thresholds, the epoch-{s.epochs} "
                  f"checkpoint of each initialisation, {s.eval_subset} test images"):
        # Channels-last: the same accuracies, and 1.9x faster on this CPU too (benchmarks/sweep.py).
        run_study(StudyConfig(attack=fgsm, arch=s.arch, dataset=s.dataset, inits=tuple(range(1, s.inits + 1)),
                              epochs=(s.epochs,), thresholds=s.thresholds, subset=s.eval_subset, channels_last=True,
                              **common))

    with _step(4, "filtering scores and plots"):
        tables = score_study(s.arch, s.dataset, root=s.models_root, attack=fgsm.tag)
        plot_study(s.arch, s.dataset, tables, models_root=s.models_root, plots_root=s.plots_root, redraw=False)

    with _step(5, f"defensive perturbation ({s.defense_arch}, PGD-linf eps {s.defense_eps}, "
                  f"{s.defense_subset} test images)"):
        defense_model = load_or_train(s.defense_arch, s.dataset, epochs=s.defense_epochs, **common)
        defense_loader = make_loader(test_split, 100, subset=s.defense_subset, seed=s.seed)
        report = paths.report_path(s.defense_arch, s.dataset, "demo_defense", s.models_root)
        defense = _cached(
            report,
            _settings(s, *(k for k in asdict(s) if k.startswith("def")), "seed"),
            lambda: defense_table(defense_model, defense_loader, norm="linf", eps=s.defense_eps,
                                  alpha=s.defense_alpha, steps=s.defense_steps, budget=s.defense_eps,
                                  def_steps=s.def_steps, seed=s.seed),
        )
        x, y = loader_to_tensors(defense_loader)
        predicted = Defense(s.defense_eps, s.defense_alpha, s.defense_steps, s.defense_eps, "linf", s.def_steps)
        draw_and_save(lambda: tsne_figure(defense_model, x, y, predicted, seed=s.seed),
                      paths.plot_name(paths.arch_dir_name(s.defense_arch), data_name, "tsne", "linf"), s.plots_root,
                      keep_if_newer_than=[report])

    with _step(6, "selective retraining of robust + antifragile layers (high-pass difference scores)"):
        retraining, _ = run_comparison(s.arch, s.dataset, 1, s.epochs, kind="highpass", score="difference",
                                       attack_tag=fgsm.tag, subset=s.retrain_subset, test_subset=s.eval_subset,
                                       plots_root=s.plots_root, **common)

    written = sorted(str(p) for p, digest in _snapshot(s.models_root, s.plots_root).items() if before.get(p) != digest)
    seconds = time.perf_counter() - tic
    _print_summary(attacks, tables, defense, retraining, written=written, seconds=seconds)
    return {"attacks": attacks, "defense": defense, "retraining": retraining, "written": written, "seconds": seconds}


def _settings(s: DemoSettings, *names: str) -> dict[str, Any]:
    """The named fields of ``s``: what a cached step's result depends on."""
    return {name: getattr(s, name) for name in names}


def _print_summary(
    attacks: dict[str, Any], tables: list[ScoresTable], defense: dict[str, Any], retraining: list[dict[str, Any]],
    *, written: list[str], seconds: float,
) -> None:
    print(f"\n== attacks (FGSM eps calibrated to {attacks['eps']:.4f}) ==")
    print(format_table(attacks["rows"]))
    for table in tables:
        if table.scope == "local" and table.score == "adversarial":
            print(f"\n== {table.title()} ==")
            print(format_table(table.rows()))
    print("\n== defensive perturbation ==")
    print(format_results(defense))
    print("\n== selective retraining (Init_1) ==")
    print(format_comparison(retraining))
    selected = next(row["layers"] for row in retraining if row["variant"] == "robust+antifragile")
    print(f"robust+antifragile layers: {', '.join(selected) or '(none)'}")
    print(f"\n{len(written)} files written in {seconds:.0f} s" + (":" if written else " (everything was reused)"))
    for path in written:
        print(f"  {path}")
