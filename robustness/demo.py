"""The main job, ``python -m robustness demo`` (``make demo``): the ``demo`` preset's study on ``mnist5k``, at a size
whose labels mean something, in about 10 minutes on a 2-core CPU.

The preset (:func:`robustness.findings.preset`, ``"demo"``) is a :class:`~robustness.findings.StudySpec` like the
findings run's: train ResNet-18 (3 initialisations); for each checkpoint, calibrate FGSM eps to a target
adversarial accuracy on held-out test images; sweep the high-pass filter over four layers (the stem, the first
convolutions of stages 2 and 4, the classifier) on 500 test images at 9 thresholds, re-estimating the BatchNorm
statistics at every threshold; score the layers with paired bootstrap intervals; re-check with PGD the most
robust-looking layer of Init_1; compare the initialisations' labels and rankings; evaluate the defensive
perturbation (the spec's :class:`~robustness.defense.DefenseEvaluation`) with t-SNE plots; compare selective
retraining. Every step reuses what an earlier run wrote, so a rerun (or a run after an interruption) only does
what is missing.

Why this subset: ResNet-18 evaluates about 450 images per second under FGSM on a 2-core
CPU, so one threshold of 500 images with the BatchNorm re-estimation costs about 1.5 s and
a 9-threshold sweep of one layer about 14 s, for each of 3 initialisations: all 21 layers
would take 15 minutes on their own. A PGD re-check (20 steps, 2 restarts) of one
layer costs about ten times its FGSM sweep, so the demo re-checks one layer with 10 steps
and no restart. The whole study at full size is ``python -m robustness findings --preset findings``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
from torch import nn

from . import paths
from .data import load_dataset, loader_to_tensors, make_loader
from .defense import defense_table, load_or_train, tsne_figure
from .errors import InvalidArgument
from .figures import comparison_plot_name, draw_and_save, learning_curves_plot_name, tsne_plot_name
from .files import load_json, save_json
from .findings import Place, StudySpec, preset, spec_dict
from .findings.demo_page import RETRAIN_SCORE, STEPS, DemoPages, demo_rows, render_demo, write_demo_pages
from .findings.plan import DEMO_WORK, plan_text, predict
from .models import load_checkpoint
from .retraining import run_comparison
from .runtime import pick_device
from .scoring import Comparison, compare, plot_comparison, score_study, study_sets
from .study import StudyConfig, attack_tag, plot_study, recheck_study, run_study
from .training import plot_learning_curves, train


@contextmanager
def _step(record: Path, at: Place, number: int, text: str) -> Iterator[None]:
    """Print a step's heading, then its duration; add the duration to the run's ``record`` (a JSON file) when the
    step wrote something (a file new or grown under the models root or the figures' folder): a rerun that reuses
    everything keeps the times of the runs that computed."""
    print(f"[{number}/{len(STEPS)}] {text}", flush=True)
    before, tic = _sizes(at), time.perf_counter()
    try:
        yield
    finally:  # an interrupted step's time counts too: the run that finishes it adds the rest
        seconds = time.perf_counter() - tic
        if _sizes(at) != before:
            found = load_json(record) if record.is_file() else {"steps": {}}
            entry = found["steps"].setdefault(STEPS[number - 1], {"seconds": 0.0, "runs": 0})
            entry["seconds"] += seconds
            entry["runs"] += 1
            save_json(found, record)
    print(f"      done in {seconds:.0f} s", flush=True)


def _sizes(at: Place) -> dict[Path, int]:
    """The size of every file the run may write (a step that computes adds or grows one)."""
    return {p: p.stat().st_size for r in (at.models_root, at.out) for p in Path(r).rglob("*") if p.is_file()}


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


def study_config(s: StudySpec, at: Place) -> StudyConfig:
    """The demo's filtering study: the spec's sweep (high-pass, local) at the final epoch of every initialisation."""
    return replace(s.sweep, inits=tuple(range(1, s.train.inits + 1)), epochs=(s.train.epochs,), device=at.device,
                   models_root=at.models_root)


def run_demo(spec: StudySpec | None = None, at: Place | None = None, pages: DemoPages | None = None) -> dict[str, Any]:
    """Run every step of the demo preset's study (or ``spec``'s, which must hold a defense) into ``at`` (its
    ``out`` is the figures' folder; default ``saved_models/`` and ``plots/``); write its table and page to ``pages``
    (default: a ``page`` folder in the models root), print the page; return the numbers and the files written."""
    s = spec or preset("demo")
    at = at or Place(str(paths.DEFAULT_MODELS_ROOT), str(paths.DEFAULT_PLOTS_ROOT))
    pages = pages or DemoPages(str(Path(at.models_root) / "page"))
    if s.defense is None:
        raise InvalidArgument(f"the demo evaluates the defense: the {s.preset} spec has none (use --preset demo)")
    t, sweep, r, check = s.train, s.sweep, s.retraining, s.recheck
    print(plan_text(s, at, predict(s, at, DEMO_WORK)), flush=True)
    tic = time.perf_counter()
    before = _snapshot(at.models_root, at.out)
    arch_name, data_name = paths.arch_dir_name(t.arch), paths.dataset_dir_name(t.dataset)
    common = dict(seed=t.seed, device=at.device, models_root=at.models_root)
    scoring = s.scoring
    config = study_config(s, at)
    tag = attack_tag(config)
    record_path = paths.report_path(t.arch, t.dataset, "demo_run", at.models_root)
    step = partial(_step, record_path, at)

    with step(1, f"training {t.inits} initialisations of {t.arch} on {t.dataset} for {t.epochs} epochs"):
        histories = train(replace(t, device=at.device, models_root=at.models_root))
        draw_and_save(lambda: plot_learning_curves(histories, f"{arch_name} on {data_name}"),
                      learning_curves_plot_name(t.arch, t.dataset), at.out,
                      keep_if_newer_than=[paths.history_path(t.arch, t.dataset, i, at.models_root)
                                          for i in range(1, t.inits + 1)])

    layers = ", ".join(sweep.layers) if sweep.layers else "every layer"
    with step(2, f"synaptic filtering of each epoch-{t.epochs} checkpoint: FGSM eps calibrated to "
                 f"{sweep.calibrate_eps:.0%} accuracy on {sweep.eps_images} held-out test images; high-pass filter, "
                 f"{' and '.join(sweep.scopes)} (layers {layers}); {sweep.thresholds} thresholds, {sweep.subset} test "
                 f"images, BatchNorm re-estimated on {sweep.bn_images} training images at every threshold"):
        files = run_study(config)

    with step(3, f"filtering scores with {scoring.n_boot} paired bootstrap resamples, {scoring.baseline} baseline, "
                 f"tau {scoring.tau:g}; plots"):
        tables = score_study(t.arch, t.dataset, kinds=("highpass",), root=at.models_root, attack=tag, scoring=scoring)
        plot_study(t.arch, t.dataset, tables, models_root=at.models_root, plots_root=at.out, redraw=False)

    with step(4, f"PGD re-check ({check.steps} steps, {check.restarts} start(s)) of the {check.limit or 'every'} "
                 f"most robust-looking layer(s) of Init {', '.join(map(str, check.inits))}; invariance across the "
                 f"{t.inits} initialisations"):
        recheck = recheck_study(config, checkpoints=[(i, t.epochs) for i in check.inits], limit=check.limit,
                                steps=check.steps, restarts=check.restarts, scoring=scoring)
        comparison = _compare(s, at, files, tag)

    e, d = s.defense, s.defense.defense
    with step(5, f"defensive perturbation ({s.defense_arch}, PGD-{d.norm} eps {d.eps}, {s.defense_subset} test "
                 f"images); oracle labels preemptive only (no deployed system has them); APGD {e.apgd_steps} "
                 f"iterations, not 100, since at test time each one runs the whole defense "
                 f"({d.def_steps * (d.steps + 2)} passes); Square ({e.square_queries} queries) on the undefended "
                 "model and preemptively: through the defense each query would run it whole (the test-time Square "
                 "run is in docs/defense.md)"):
        test_split = load_dataset(t.dataset, train=False)
        defense_model = _defense_model(s, at)
        defense_loader = make_loader(test_split, 100, subset=s.defense_subset, seed=t.seed)
        report = paths.report_path(s.defense_arch, t.dataset, "demo_defense", at.models_root)
        settings = {k: v for k, v in spec_dict(s).items() if k.startswith("defense")}
        defense = _cached(report, {**settings, "seed": t.seed},
                          lambda: defense_table(defense_model, defense_loader, e))
        x, y = loader_to_tensors(defense_loader)
        draw_and_save(lambda: tsne_figure(defense_model, x, y, d, seed=t.seed),
                      tsne_plot_name(s.defense_arch, t.dataset, d.norm, d.label), at.out,
                      keep_if_newer_than=[report])

    with step(6, f"selective retraining of Init {', '.join(map(str, r.inits or ()))} for one epoch of "
                 f"{r.subset} training images: robust + antifragile layers (high-pass adversarial labels agreed by "
                 f"every initialisation) against none, all, fragile and {r.random_sets} matched random sets, "
                 f"{r.seeds} seeds each, on {sweep.subset} test images"):
        retraining, _ = run_comparison(replace(
            r, score=RETRAIN_SCORE, epoch=t.epochs, attack_tag=tag, scoring=scoring, test_subset=sweep.subset,
            plots_root=at.out, **common))

    written = sorted(str(p) for p, digest in _snapshot(at.models_root, at.out).items()
                     if before.get(p) != digest)
    seconds = time.perf_counter() - tic
    frame = demo_rows(s, at, load_json(record_path) if record_path.is_file() else {"steps": {}}, tables=tables,
                      recheck=recheck, comparison=comparison, defense=defense, retraining=retraining)
    changed = write_demo_pages(pages, frame)
    print(f"\n{render_demo(pd.read_csv(pages.table))}")
    print(f"{len(written)} files written in {seconds:.0f} s" + (":" if written else " (everything was reused)"))
    for path in written:
        print(f"  {path}")
    print(f"table: {pages.table}\npage: {pages.page}" + (f"\nREADME demo block: {pages.readme}" if pages.readme else "")
          + f"\n({len(changed)} of them changed)")
    local = {t.score: t for t in tables if t.scope == "local"}
    return {"eps": {f"Init_{i}": info["eps"] for (i, _), info in local["clean"].checkpoints.items()},
            "labels": {score: t.label_counts() for score, t in local.items()}, "recheck": recheck,
            "comparison": comparison.rows(), "defense": defense, "retraining": retraining, "written": written,
            "seconds": seconds, "table": frame, "changed": changed}


def _defense_model(s: StudySpec, at: Place) -> nn.Module:
    """The model the defense protects: ``defense_arch`` trained as the defense's original project did, or, when the
    study trains that architecture itself (the smoke preset), the study's final Init_1 checkpoint: one tree holds
    one training of an architecture, and the trainer refuses to continue it with other settings."""
    t = s.train
    if s.defense_arch != t.arch:
        return load_or_train(s.defense_arch, t.dataset, epochs=s.defense_epochs, seed=t.seed, device=at.device,
                             models_root=at.models_root)
    path = paths.checkpoint_path(t.arch, t.dataset, 1, t.epochs, at.models_root)
    return load_checkpoint(path, t.arch, t.dataset, map_location=pick_device(at.device))[0].eval()


def _compare(s: StudySpec, at: Place, files: list[Path], tag: str) -> Comparison:
    """Compare the initialisations' local scores; save the figure (kept while the results are older)."""
    t = s.train
    sets = study_sets(t.arch, t.dataset, "highpass", by="init", epoch=t.epochs, attack=tag, root=at.models_root,
                      scoring=s.scoring)
    comparison = compare(sets, scoring=s.scoring)
    name = comparison_plot_name(t.arch, t.dataset, "init", "highpass", s.scoring.baseline)
    title = f"{t.arch} on {t.dataset}: high-pass local scores of the initialisations, epoch {t.epochs}"
    draw_and_save(lambda: plot_comparison(comparison, title), name, at.out, keep_if_newer_than=files)
    return comparison

