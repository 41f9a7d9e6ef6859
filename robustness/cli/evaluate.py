"""The evaluation commands: ``attack``, ``defend`` and ``demo``.

Each is a pair ``add_<name>(subparsers)`` / ``run_<name>(args)``; the options several commands
share come from :mod:`robustness.cli.options`, the work from the library.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..report import format_table
from .options import (
    attack_from,
    attack_options,
    check_out,
    data_root_options,
    model_options,
    model_source,
    models_root_options,
    nonnegative_int,
    nonnegative_number,
    out_options,
    plots_root_options,
    positive_int,
    positive_number,
    regime_options,
    regime_root_of,
    restart_options,
    restarts_option,
    runtime_options,
    source_options,
    speed_options,
    test_subset_option,
    writable_folders,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

Sub = argparse._SubParsersAction


def _load_source(args: argparse.Namespace, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """The model ``--checkpoint``/``--weights`` names, on ``device``, checked to fit ``--dataset``."""
    from ..models import check_fits, load_model  # noqa: PLC0415 (keeps --help fast)

    model, meta = load_model(model_source(args), arch=args.arch, dataset=args.dataset, device=device)
    check_fits(meta, args.dataset)
    return model, meta


def _write(rows: Sequence[Mapping[str, Any]], out: str | None) -> None:
    """Write the table to ``--save-table``, when given, and say where."""
    if out:
        from ..files import save_rows  # noqa: PLC0415 (keeps --help fast)

        print(f"table: {save_rows(rows, out)}")


def add_attack(sub: Sub) -> None:
    """``attack``: one checkpoint (or a model from elsewhere) under FGSM, PGD or APGD."""
    p = sub.add_parser("attack", parents=[model_options(), models_root_options(), data_root_options(),
                                          runtime_options(), source_options(), regime_options(),
                                          attack_options(("fgsm", "pgd", "apgd", "apgd-ce", "apgd-dlr", "square",
                                                          "ensemble")),
                                          restart_options(), speed_options(), out_options()],
                       help="evaluate a saved checkpoint or a model from elsewhere under FGSM, PGD, APGD, Square or "
                            "the ensemble of the strong ones (linf, l2)",
                       description="Attack the test images of a saved checkpoint (--init, --epoch) or of the model "
                                   "--checkpoint or --weights names, and print clean accuracy, robust accuracy (each "
                                   "with its 95% Wilson interval), the success rate over initially correct images "
                                   "and the mean and max perturbation norm. PGD stops early per image once it is "
                                   "misclassified. apgd runs APGD-CE and APGD-DLR (torchattacks, 100 iterations "
                                   "each by default) and counts an image as robust only if it survives both: the "
                                   "strong attack for an honest number; apgd-ce and apgd-dlr run one loss. square is "
                                   "the gradient-free Square attack (margin loss, --queries queries). ensemble runs "
                                   "PGD (-k steps, default 20), APGD-CE, APGD-DLR and Square on every image and "
                                   "reports each one's accuracy and the per-image worst case with 95% Wilson "
                                   "intervals, flagging possible gradient masking when a white-box attack leaves "
                                   "the model more accurate than Square by more than 2 paired standard errors.")
    p.add_argument("--init", type=positive_int, default=1, help="initialisation number, from 1 (default 1)")
    p.add_argument("--epoch", type=nonnegative_int, default=None, help="checkpoint epoch (default: the newest)")
    test_subset_option(p, what=" to attack")
    p.add_argument("--batch-size", type=positive_int, default=256, help="images per attack batch (default 256)")
    p.add_argument("--queries", type=positive_int, default=1000,
                   help="queries per image of the Square attack (square, ensemble; default 1000)")
    p.add_argument("--apgd-steps", type=positive_int, default=100,
                   help="iterations of APGD-CE and APGD-DLR in the ensemble (default 100)")
    p.set_defaults(run=run_attack)


def run_attack(args: argparse.Namespace) -> int:
    """Evaluate and print one row (with intervals); write it to ``--save-table``."""
    from .. import paths  # noqa: PLC0415 (keeps --help fast)
    from ..attacks import evaluate, intervals  # noqa: PLC0415
    from ..data import load_dataset, make_loader  # noqa: PLC0415
    from ..models import load_checkpoint  # noqa: PLC0415
    from ..runtime import autocast, channels_last, pick_device  # noqa: PLC0415

    attack = _attack_of(args)
    check_out(args)
    device = pick_device(args.device)
    if model_source(args) is not None:
        model, meta = _load_source(args, device)
        where = {"arch": meta["arch"], "source": meta["source"], "regime": meta.get("regime", "standard")}
    else:
        root = regime_root_of(args)
        epoch, path = paths.find_checkpoint(args.arch, args.dataset, args.init, args.epoch, root)
        model, meta = load_checkpoint(path, args.arch, args.dataset, map_location=device)
        where = {"arch": args.arch, "init": args.init, "epoch": epoch, "regime": meta["regime"]}
    loader = make_loader(load_dataset(args.dataset, train=False, root=args.data_root), args.batch_size,
                         subset=args.test_subset, seed=args.seed)
    if args.channels_last:
        channels_last(model)
    if args.attack == "ensemble":
        return _report_ensemble(model, loader, attack, where, args, meta.get("regime_settings"))
    with autocast(device, args.precision):
        result = evaluate(model, loader, attack)
    (clean_lo, clean_hi), (robust_lo, robust_hi) = intervals(result).values()
    row = {**where, "dataset": args.dataset, "attack": attack.tag, "precision": args.precision,
           "clean_acc": result["clean_acc"], "clean_lo": clean_lo, "clean_hi": clean_hi,
           "robust_acc": result["robust_acc"], "robust_lo": robust_lo, "robust_hi": robust_hi,
           **{k: v for k, v in result.items() if k not in ("clean_acc", "robust_acc")}}
    print(format_table([row]))
    _write([{**row, "regime_settings": meta.get("regime_settings", {"method": "none"})}], args.save_table)
    return 0


def _attack_of(args: argparse.Namespace) -> Any:
    """The attack of ``--attack``: one of :func:`attack_from`'s, Square, or the ensemble."""
    from ..attacks import Ensemble, Square
    from ..errors import InvalidArgument  # noqa: PLC0415

    if args.attack not in ("square", "ensemble"):
        return attack_from(args)
    if args.alpha is not None or not args.random_start:
        raise InvalidArgument(f"--attack {args.attack} sets its own step sizes from random starts: drop --alpha / "
                              "--no-random-start")
    if args.attack == "square":
        return Square(args.eps, args.norm, args.queries, args.restarts, seed=args.seed)
    return Ensemble(args.eps, args.norm, args.steps or 20, args.restarts, args.apgd_steps, args.queries, args.seed)


def _report_ensemble(model: nn.Module, loader: Any, ensemble: Any, where: dict[str, Any], args: argparse.Namespace,
                     settings: dict[str, Any] | None) -> int:
    """Run the ensemble, print each accuracy with its interval and the gradient-masking verdict; write the
    rows to ``--save-table``."""
    from ..attacks import ensemble_outcomes, ensemble_report, masking_flag  # noqa: PLC0415

    rows = ensemble_report(ensemble_outcomes(model, loader, ensemble))
    model = ", ".join(f"{key} {value}" for key, value in where.items())
    print(f"{model}, {args.dataset}, {ensemble.tag}: PGD {ensemble.pgd_steps} steps x {ensemble.pgd_restarts} "
          f"restart(s), APGD {ensemble.apgd_steps} steps per loss, Square {ensemble.square_queries} queries")
    print(format_table(rows))
    flag = masking_flag(rows)
    print(flag or "no sign of gradient masking: every white-box attack is within noise of Square or below it")
    _write([{**where, "dataset": args.dataset, "ensemble": ensemble.tag, **row,
             "regime_settings": settings or {"method": "none"}} for row in rows], args.save_table)
    return 0


ENSEMBLE = ("pgd", "apgd-ce", "apgd-dlr", "square")  # defend --ensemble's members, in their order


def _members(names: Sequence[str]) -> tuple[str, ...]:
    """``--ensemble``'s members once each, in the ensemble's order."""
    return tuple(name for name in ENSEMBLE if name in names)


def add_defend(sub: Sub) -> None:
    """``defend``: the defensive perturbation, evaluated honestly."""
    p = sub.add_parser("defend", parents=[model_options(arch="mnist_cnn"), models_root_options(), data_root_options(),
                                          runtime_options(), source_options(), plots_root_options(),
                                          attack_options(None, required=True), out_options()],
                       help="defensive perturbation: evaluate it honestly, save defended data, t-SNE",
                       description="Optimise a defensive perturbation (Adam, lr 0.1) for each test image so that "
                                   "the image and a PGD attack on it keep the label, then evaluate it for each "
                                   "threat model and label mode: clean, attacked and defended accuracy, the "
                                   "transfer attack, the adaptive attacks (PGD with fresh restarts, APGD-CE and "
                                   "APGD-DLR; in the test-time model through the defense, BPDA with EOT), the "
                                   "per-example worst case, the undefended model under the same attacks, the gain, "
                                   "every accuracy with its 95% interval, and each row's distance from x (a "
                                   "defended image that is also attacked may lie budget + eps away). The "
                                   "original's form: -p linf -k 20 -e 0.2 -a 0.01 or -p l2 -k 40 -e 2.5 -a 0.075; "
                                   "eps-like values may be fractions such as 8/255. Without --checkpoint or "
                                   "--weights, the original's model (Adam lr 5e-4, batch 100) is trained into "
                                   "<models-root>/<Arch>/<DATASET>/Init_1/ or reused from there. Slow: one defense "
                                   "runs def-steps x (k + 2) passes, and the test-time attacks run the defense at "
                                   "every one of their steps (2 x apgd-steps for the APGD pair).")
    p.add_argument("--epochs", type=positive_int, default=10,
                   help="epochs of the default model when it has to be trained (default 10)")
    p.add_argument("--def-budget", type=nonnegative_number, default=None, metavar="B",
                   help="bound on the defense's perturbation in the attack's norm (default: eps); "
                        "inf for the original's unbounded defense")
    p.add_argument("--label", default="both", choices=["predicted", "oracle", "both"],
                   help="the defense's target: the model's prediction (deployable), the true label (oracle, "
                        "the original's mode, marked [ORACLE]) or both (default both)")
    p.add_argument("--threat", default="both", choices=["preemptive", "test-time", "both"],
                   help="preemptive: defend, then attack the defended image; test-time: attack, then defend "
                        "(default both)")
    p.add_argument("--def-steps", type=positive_int, default=79, help="Adam steps of the defense (default 79)")
    p.add_argument("--def-lr", type=positive_number, default=0.1,
                   help="Adam learning rate of the defense (default 0.1)")
    p.add_argument("--ensemble", nargs="+", choices=ENSEMBLE, default=list(ENSEMBLE), metavar="ATTACK",
                   help="the strong attacks, on the defended and the undefended model alike: pgd (fresh restarts), "
                        "apgd-ce, apgd-dlr, square (score-based; test-time: it queries the whole defended "
                        f"pipeline), space-separated (default {' '.join(ENSEMBLE)})")
    p.add_argument("--queries", type=positive_int, default=1000,
                   help="Square's queries per image (default 1000; fewer understate it)")
    p.add_argument("--apgd-steps", type=positive_int, default=100,
                   help="iterations of APGD-CE and APGD-DLR (default 100; fewer understate the attack)")
    p.add_argument("--eot-samples", type=positive_int, default=1,
                   help="defense draws averaged by the test-time attacks through the defense (EOT, default 1)")
    restarts_option(p, default=5, what="fresh random starts of the ensemble's PGD")
    test_subset_option(p, default=200, what=" to evaluate (and of each split with --save-data)")
    p.add_argument("--batch-size", type=positive_int, default=100, help="images per defense batch (default 100)")
    p.add_argument("--tsne", action="store_true", help="save t-SNE maps of clean, adversarial and defended images")
    p.add_argument("--save-data", action="store_true",
                   help="save defended train and valid images under <models-root>/<Arch>/<DATASET>/Defensive_<norm>/")
    p.set_defaults(run=run_defend)


def run_defend(args: argparse.Namespace) -> int:
    """Evaluate the defense, print the table (and write it to ``--save-table``); save data and t-SNE maps if asked."""
    from ..data import load_dataset, loader_to_tensors, make_loader  # noqa: PLC0415
    from ..defense import (  # noqa: PLC0415
        Defense,
        DefenseEvaluation,
        defend_splits,
        defense_table,
        format_results,
        load_or_train,
        result_rows,
        tsne_figure,
    )
    from ..figures import (
        save_figure,  # noqa: PLC0415
        tsne_plot_name,  # noqa: PLC0415 (keeps --help fast)
    )
    from ..runtime import pick_device  # noqa: PLC0415

    check_out(args)
    writable_folders(args.plots_root, *([args.models_root] if args.save_data or model_source(args) is None else []))
    budget = args.eps if args.def_budget is None else args.def_budget
    labels = ("predicted", "oracle") if args.label == "both" else (args.label,)
    threats = ("preemptive", "test-time") if args.threat == "both" else (args.threat,)
    defenses = {label: Defense(args.eps, args.alpha, args.steps, budget, args.norm, args.def_steps, args.def_lr,
                               label) for label in labels}  # validates every number before any training
    loader = make_loader(load_dataset(args.dataset, train=False, root=args.data_root), args.batch_size,
                         subset=args.test_subset, seed=args.seed)
    if model_source(args) is not None:
        model, _ = _load_source(args, pick_device(args.device))
    else:
        model = load_or_train(args.arch, args.dataset, epochs=args.epochs, seed=args.seed, device=args.device,
                              models_root=args.models_root, data_root=args.data_root)
    results = defense_table(model, loader, DefenseEvaluation(
        next(iter(defenses.values())), threats=threats,
        labels=labels, ensemble=_members(args.ensemble), restarts=args.restarts, apgd_steps=args.apgd_steps,
        square_queries=args.queries, eot_samples=args.eot_samples, seed=args.seed))
    first = next(iter(results.values()))
    print(f"{args.arch} on {args.dataset}, {first['examples']} test images; PGD-{args.norm} eps {args.eps:g} "
          f"alpha {args.alpha:g} k {args.steps}; defense budget {budget:g}, {args.def_steps} Adam steps; ensemble "
          f"{' '.join(_members(args.ensemble))} (PGD {args.restarts} restarts, APGD {args.apgd_steps} steps, "
          f"{f'Square {args.queries} queries, ' if 'square' in args.ensemble else ''}EOT {args.eot_samples})")
    print(format_results(results))
    _write(result_rows(results), args.save_table)
    if args.save_data:
        for defense in defenses.values():
            for split, path in defend_splits(model, defense, args.arch, args.dataset, subset=args.test_subset,
                                             batch_size=args.batch_size, seed=args.seed,
                                             models_root=args.models_root, data_root=args.data_root).items():
                print(f"defended {split} data ({defense.label} labels): {path}")
    if args.tsne:
        x, y = loader_to_tensors(loader)
        for label, defense in defenses.items():
            name = tsne_plot_name(args.arch, args.dataset, args.norm, label)
            print(f"t-SNE map: {save_figure(tsne_figure(model, x, y, defense, args.seed), name, args.plots_root)}")
    return 0


def add_demo(sub: Sub) -> None:
    """``demo``: the whole study on mnist5k in minutes."""
    p = sub.add_parser("demo", parents=[models_root_options(), plots_root_options(), runtime_options()],
                       help="the whole study on mnist5k in minutes (what `make demo` runs)",
                       description="Train ResNet-18 (3 initialisations), calibrate FGSM eps per checkpoint on "
                                   "held-out images, sweep the high-pass filter over four layers (500 images, 9 "
                                   "thresholds, BatchNorm re-estimated), write the scores tables with intervals and "
                                   "plots, re-check one layer with PGD, compare the initialisations, evaluate the "
                                   "defensive perturbation with t-SNE plots, and compare selective retraining. A "
                                   "rerun reuses everything already written.")
    p.add_argument("--preset", default="demo", choices=["demo", "smoke"],
                   help="the study's sizes: demo (about 10 minutes on 2 cores) or smoke (seconds, for tests); the "
                        "same presets as the findings command's (default demo)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="folder of the demo's page (demo.md) and its table (demo/demo.csv) (default: docs for the "
                        "demo preset, which also rewrites README.md's demo tables; <models-root>/page for smoke)")
    p.add_argument("--page", action="store_true",
                   help="only rewrite the page (and, for the demo preset's default place, README.md's demo tables) "
                        "from the demo table already written (no model is run)")
    p.set_defaults(run=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo preset's study (or the smoke preset's), or (``--page``) rewrite its pages from its table."""
    from ..demo import run_demo as demo  # noqa: PLC0415 (keeps --help fast)
    from ..findings import Place, preset  # noqa: PLC0415
    from ..findings.demo_page import SHIPPED, DemoPages, write_demo_pages  # noqa: PLC0415

    if args.out is None:
        pages = SHIPPED if args.preset == "demo" else DemoPages(str(Path(args.models_root) / "page"))
    else:
        pages = DemoPages(args.out)
    if args.page:
        changed = write_demo_pages(pages)
        print(f"{', '.join(map(str, changed)) or 'nothing'} rewritten from {pages.table}")
        return 0
    writable_folders(args.models_root, args.plots_root, pages.out)
    demo(preset(args.preset).with_seed(args.seed), Place(args.models_root, args.plots_root, device=args.device),
         pages)
    return 0
