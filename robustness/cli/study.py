"""The study commands: ``filter``, ``scores``, ``compare`` and ``retrain``.

Each is a pair ``add_<name>(subparsers)`` / ``run_<name>(args)``; the options several commands
share come from :mod:`robustness.cli.options`, the work from the library.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InvalidArgument
from ..report import format_table
from .options import (
    attack_from,
    attack_options,
    filter_options,
    filters_of,
    model_options,
    model_source,
    models_root_options,
    plots_root_options,
    positive_int,
    positive_number,
    regime_options,
    regime_root_of,
    restart_options,
    runtime_options,
    scopes_of,
    scoring_of,
    scoring_options,
    source_options,
    speed_options,
    tag_options,
    writable_folders,
)
from .probe import add_comparison_options, compare_models
from .train import tree_options

Sub = argparse._SubParsersAction


def _regime_root(args: argparse.Namespace) -> str:
    """The models root of ``--regime`` (checked to hold its checkpoints); a model from elsewhere's results stay
    under ``--models-root``."""
    if getattr(args, "checkpoint", None) or getattr(args, "weights", None):
        if args.regime != "standard":
            raise InvalidArgument("--regime selects checkpoints trained here; a model from --checkpoint or --weights "
                                  "has its own folder: drop --regime")
        return args.models_root
    return regime_root_of(args)


def _plots_root(args: argparse.Namespace) -> str:
    """``--plots-root``, or its ``Regime_<tag>/`` folder for another regime (so figures never overwrite)."""
    from .. import paths  # noqa: PLC0415 (keeps --help fast)

    return str(paths.regime_root(args.plots_root, args.regime))


def add_filter(sub: Sub) -> None:
    """``filter``: synaptic-filtering sweeps."""
    p = sub.add_parser("filter", parents=[*tree_options(), source_options(), regime_options(), filter_options(),
                                          attack_options(("fgsm", "pgd")), restart_options(), speed_options(),
                                          scoring_options()],
                       help="synaptic-filtering sweeps over saved checkpoints or a model from elsewhere",
                       description="Sweep a filter's threshold over each selected checkpoint (or the model "
                                   "--checkpoint or --weights names), recording clean and adversarial accuracy and "
                                   "loss at every threshold (the attack is regenerated against the filtered model). "
                                   "Writes one JSON file per (checkpoint, filter, scope, attack) under "
                                   "saved_models/<Arch>/<DATASET>/{Step_minmax,Step_maxmin,Pulse_minmax,"
                                   "global_data}/, each with its per-image outcomes in a .npz beside it; files "
                                   "already there are skipped, so an interrupted run resumes when the same command "
                                   "is run again. Under torchrun, the units (checkpoint x filter x scope x layer) "
                                   "are dealt round-robin to the processes and rank 0 merges the layer files at the "
                                   "end; the files equal a one-process run's.")
    p.add_argument("--inits", type=int, nargs="+", default=None, metavar="I",
                   help="initialisation numbers, not a count, e.g. --inits 1 2 (default: every Init_<i> folder)")
    p.add_argument("--checkpoint-epochs", type=int, nargs="+", default=None, metavar="E",
                   help="checkpoint epochs swept, e.g. --checkpoint-epochs 0 5 10; each must exist for every "
                        "selected init (default: every checkpoint of each init)")
    # The name before --checkpoint-epochs, kept unlisted so that scripts written with it still run.
    p.add_argument("--calibrate-eps", type=float, default=None, metavar="TARGET",
                   help="replace --eps, per checkpoint, by the eps at which its unfiltered model has adversarial "
                        "accuracy TARGET (e.g. 0.5), found by bisection on held-out test images that are never "
                        "scored; files are named by the target, each records its eps")
    p.add_argument("--eps-images", type=int, default=500, metavar="N",
                   help="test images held out for --calibrate-eps, disjoint from the evaluated ones (default 500)")
    p.add_argument("--thresholds", type=positive_int, default=25, metavar="T", help="thresholds per sweep (default 25)")
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
    p.add_argument("--sequential", action="store_true",
                   help="evaluate each local sweep's images in blocks at 4 planned looks and stop a layer once the "
                        "labels of --baseline, --tau, --ci and --n-boot are decided (intervals at coverage "
                        "1 - (1 - ci) / 4 per look); global sweeps run on every image")
    p.set_defaults(run=run_filter)


def _source_arch(args: argparse.Namespace, source: str | None) -> str:
    """The architecture a study records: ``--arch``, or the model from elsewhere's own (checked against
    ``--dataset`` on loading it once)."""
    if source is None:
        return args.arch
    from ..models import check_fits, load_model  # noqa: PLC0415 (keeps --help fast)

    _, meta = load_model(source, arch=args.arch, dataset=args.dataset)
    check_fits(meta, args.dataset)
    return meta["arch"]


def run_filter(args: argparse.Namespace) -> int:
    """Run the study and print one line per result file."""
    from ..distributed import is_main  # noqa: PLC0415 (keeps --help fast)
    from ..filtering import (
        file_summary,  # noqa: PLC0415
        parse_alpha_range,  # noqa: PLC0415
    )
    from ..study import StudyConfig, run_study

    writable_folders(args.models_root)
    source = model_source(args)
    config = StudyConfig(
        attack=attack_from(args), arch=_source_arch(args, source), dataset=args.dataset, source=source,
        inits=tuple(args.inits) if args.inits else None,
        epochs=tuple(args.checkpoint_epochs) if args.checkpoint_epochs else None,
        kinds=filters_of(args), scopes=scopes_of(args), thresholds=args.thresholds, grid=args.grid,
        layers=tuple(args.layers) if args.layers else None, alpha_range=parse_alpha_range(args.alpha_range),
        subset=args.subset, seed=args.seed, calibrate_eps=args.calibrate_eps,
        eps_images=args.eps_images, bn=args.bn, bn_images=args.bn_images,
        random_baseline=args.random_baseline, null_masks=args.null_masks, batch_size=args.batch_size,
        precision=args.precision, channels_last=args.channels_last, models_root=_regime_root(args),
        data_root=args.data_root, device=args.device, sequential=_sequential(args),
    )
    files = run_study(config)
    if is_main():
        print(format_table([file_summary(path) for path in files]))
    return 0


def _sequential(args: argparse.Namespace) -> object | None:
    """The stopping rule ``--sequential`` asks for (deciding the labels of the scoring options), or ``None``."""
    from ..scoring import Sequential  # noqa: PLC0415 (keeps --help fast)

    return Sequential(scoring_of(args)) if args.sequential else None


def _tree_arch(args: argparse.Namespace) -> str:
    """The ``arch`` key of the results folder: ``--arch``, or the folder of ``--checkpoint``/``--weights``."""
    from .. import paths  # noqa: PLC0415 (keeps --help fast)

    source = model_source(args)
    return args.arch if source is None else paths.source_dir_name(source)


def add_scores(sub: Sub) -> None:
    """``scores``: scores tables with intervals, and plots."""
    p = sub.add_parser("scores", parents=[*tree_options(), source_options(), regime_options(), plots_root_options(),
                                          filter_options(),
                                          tag_options(), scoring_options()],
                       help="filtering scores of a study with intervals: tables (CSV) and plots",
                       description="Score every sweep result the filter command wrote: clean, adversarial and "
                                   "difference scores (Simpson's rule over the normalised threshold), each with an "
                                   "interval from a paired bootstrap over the evaluation images, and labelled from "
                                   "that interval: fragile (below -tau), robust (within +-tau), antifragile (above "
                                   "+tau) or uncertain. Prints one layers x epochs table per (filter, scope, attack, "
                                   "score): mean +- SD over the initialisations found, each one's interval, the "
                                   "consensus label and how many initialisations agree; writes it as CSV beside the "
                                   "results, and saves heatmaps and the sweep curves of each init's newest "
                                   "checkpoint to the plots folder. --checkpoint or --weights score the results "
                                   "filter wrote for that model.")
    p.add_argument("--pgd-check", action=argparse.BooleanOptionalAction, default=True,
                   help="re-check with PGD-linf (20 steps, 2 restarts, the same eps, thresholds and images) every "
                        "layer that FGSM local results label robust or antifragile on the adversarial or difference "
                        "score, and flag it when FGSM's accuracy gain under filtering exceeds PGD's by more than 2 "
                        "SE (default; resumable: finished re-checks are read back; --no-pgd-check skips it)")
    p.add_argument("--pgd-steps", type=int, default=20, help="PGD iterations of the re-check (default 20)")
    p.add_argument("--pgd-restarts", type=int, default=2, help="PGD restarts of the re-check (default 2)")
    p.set_defaults(run=run_scores)


def run_scores(args: argparse.Namespace) -> int:
    """Score, print, save the tables and figures; re-check with PGD where FGSM says robust."""
    from ..scoring import score_study  # noqa: PLC0415
    from ..study import plot_study  # noqa: PLC0415 (keeps --help fast)

    writable_folders(args.models_root, args.plots_root)
    arch, root, plots_root = _tree_arch(args), _regime_root(args), _plots_root(args)
    tables = score_study(arch, args.dataset, kinds=filters_of(args), scopes=scopes_of(args), root=root,
                         attack=args.attack_tag, scoring=scoring_of(args))
    for table in tables:
        print(f"\n{table.text()}")
    figures = plot_study(arch, args.dataset, tables, models_root=root, plots_root=plots_root)
    print(f"\nwrote {len(tables)} CSV tables under {root}/ and {len(figures)} figures under {plots_root}/")
    if args.pgd_check and args.scope != "global":
        from ..study import recheck_results  # noqa: PLC0415

        rows = recheck_results(arch, args.dataset, kinds=filters_of(args), attack=args.attack_tag,
                               root=root, runtime={"data_root": args.data_root, "device": args.device},
                               steps=args.pgd_steps, restarts=args.pgd_restarts, scoring=scoring_of(args))
        print("\nPGD re-check (gain: FGSM's accuracy change under filtering minus PGD's; flagged when gain > 2 SE)")
        print(format_table(rows) if rows else "no FGSM local result labels a layer robust or antifragile")
    return 0


def add_compare(sub: Sub) -> None:
    """``compare``: label agreement and rank correlation between sets of scores."""
    p = sub.add_parser("compare", parents=[model_options(), models_root_options(), regime_options(),
                                           plots_root_options(),
                                           filter_options(every=False, kind="highpass"), tag_options(),
                                           scoring_options(), runtime_options(device=False)],
                       help="invariance: label agreement and rank correlation between sets of scores",
                       description="Compare the local filtering scores of two or more checkpoints: for each score "
                                   "and pair, the fraction of layers with the same label (uncertain counts as a "
                                   "label; also over only the layers both label confidently) and Spearman's rank "
                                   "correlation with a bootstrap interval over layers. Within one study, --by init "
                                   "compares the initialisations at one epoch and --by epoch one initialisation's "
                                   "epochs; --set compares any checkpoints, also of other datasets or "
                                   "architectures (layers matched by name, or through --layer-map). Prints the "
                                   "pairs and saves a scatter figure of each set's scores against the first's.")
    p.add_argument("--by", choices=["init", "epoch", "regime", "arch"], default=None,
                   help="init: every initialisation at --epoch (default: the newest they share); epoch: every "
                        "epoch of --init; regime: --init at --epoch under the two --regimes (paired differences); "
                        "arch: the --set checkpoints aligned on normalised depth bins instead of layer names")
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
    add_comparison_options(p)
    p.set_defaults(run=run_compare)


def run_compare(args: argparse.Namespace) -> int:
    """Compare the sets, print the pairs and save the figure."""
    import json  # noqa: PLC0415

    from .. import paths  # noqa: PLC0415 (keeps --help fast)
    from ..figures import (  # noqa: PLC0415 (keeps --help fast)
        comparison_plot_name,
        draw_and_save,  # noqa: PLC0415
        sets_comparison_plot_name,
    )
    from ..scoring import compare, named_set, plot_comparison, study_sets  # noqa: PLC0415

    scoring = scoring_of(args)
    writable_folders(args.plots_root)
    if args.by in ("regime", "arch"):
        return compare_models(args)
    root = _regime_root(args) if args.set is None else str(paths.regime_root(args.models_root, args.regime))
    if (args.by is None) == (args.set is None):
        raise InvalidArgument("choose what to compare: --by init, --by epoch, or two or more --set NAME=ARCH:DATASET:"
                              "INIT:EPOCH")
    if args.set:
        sets = dict(named_set(spec, args.filter, attack=args.attack_tag, root=root, scoring=scoring)
                    for spec in args.set)
        name = sets_comparison_plot_name(list(sets), args.filter, args.baseline)
    else:
        sets = study_sets(args.arch, args.dataset, args.filter, by=args.by, init=args.init, epoch=args.epoch,
                          attack=args.attack_tag, root=root, scoring=scoring)
        name = comparison_plot_name(args.arch, args.dataset, args.by, args.filter, args.baseline)
    rename = None
    if args.layer_map:
        try:
            rename = json.loads(Path(args.layer_map).read_text())
        except (OSError, ValueError) as err:
            raise InvalidArgument(f"--layer-map {args.layer_map}: not a readable JSON file ({err})") from None
    result = compare(sets, rename=rename, scoring=scoring)
    title = f"{args.filter} filter, local scores, baseline {args.baseline}, regime {args.regime}: {', '.join(sets)}"
    print(f"{title} ({len(result.layers)} layers, tau={result.tau:g})\n{format_table(result.rows())}")
    figure = draw_and_save(lambda: plot_comparison(result, title), name, _plots_root(args))
    print(f"\nfigure: {figure}")
    return 0


def add_retrain(sub: Sub) -> None:
    """``retrain``: selective retraining against controls."""
    p = sub.add_parser("retrain", parents=[*tree_options(), source_options(), regime_options(), plots_root_options(),
                                           filter_options(every=False, kind="highpass"), tag_options(),
                                           scoring_options(("density", "unfiltered"))],
                       help="selective retraining of robust + antifragile layers, against controls",
                       description="At one checkpoint epoch, label the layers by their local filtering scores "
                                   "(a label every initialisation agrees on), then continue training each chosen "
                                   "checkpoint as the trainer does (train mode, its optimiser state, lr and batch "
                                   "size) with only some layers trainable: none, the robust + antifragile layers, "
                                   "all layers, the fragile layers, and random sets of as many layers with about "
                                   "as many parameters; each over several seeds. Prints clean, FGSM and PGD test "
                                   "accuracy as mean ± SD over runs with paired bootstrap intervals of the "
                                   "differences from no retraining and from the random sets. Writes JSON, CSV and "
                                   "per-run outcomes under saved_models/<Arch>/<DATASET>/retraining/ and a bar "
                                   "plot to the plots folder; an interrupted run resumes. A model from elsewhere "
                                   "(--checkpoint, --weights) has no optimiser state and training history to "
                                   "continue, so it cannot be retrained this way: the command says so.")
    p.add_argument("--epoch", type=int, default=None, help="checkpoint epoch (default: the newest with results)")
    p.add_argument("--inits", type=int, nargs="+", default=None, metavar="I",
                   help="initialisations whose checkpoints are retrained (default: every one with local results "
                        "at --epoch; the labels always use all of them)")
    p.add_argument("--score", default="difference", choices=["clean", "adversarial", "difference"],
                   help="the score whose labels choose the layers (default difference)")
    p.add_argument("--seeds", type=int, default=3, help="runs per variant and checkpoint, each with its own "
                                                        "order of the training batches (default 3)")
    p.add_argument("--random-sets", type=int, default=5,
                   help="random layer sets matched to robust + antifragile in size (default 5)")
    p.add_argument("--retrain-epochs", type=int, default=1, help="retraining epochs of every run (default 1)")
    p.add_argument("--lr", type=positive_number, default=None, help="learning rate (default: the checkpoint's)")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="training batch size (default: the checkpoint's)")
    p.add_argument("--subset", type=int, default=None, metavar="N",
                   help="retrain on a fixed, seeded subset of N training images (default: the whole split)")
    p.add_argument("--test-subset", type=int, default=None, metavar="N",
                   help="test on a fixed, seeded subset of N test images (default: the whole split)")
    p.add_argument("--pgd-steps", type=int, default=10, help="PGD steps of the evaluation (default 10)")
    p.set_defaults(run=run_retrain)


def run_retrain(args: argparse.Namespace) -> int:
    """Run the comparison and print it."""
    from ..retraining import RetrainingStudy, format_comparison, run_comparison  # noqa: PLC0415 (keeps --help fast)

    if model_source(args) is not None:
        raise InvalidArgument(
            f"retrain continues checkpoints of the tree under --models-root, each with its own optimiser state, lr "
            f"schedule and augmentation, and labels the layers from every initialisation's results; "
            f"{model_source(args)} is not one of them. A checkpoint of this package: retrain it where train wrote "
            f"it (--arch, --dataset, --inits, --epoch). A model from elsewhere: train the layers python -m "
            f"robustness scores labels robust or antifragile for it with its own training recipe")
    writable_folders(args.models_root, args.plots_root)
    rows, plot = run_comparison(RetrainingStudy(
        args.arch, args.dataset, args.filter, args.score, inits=None if args.inits is None else tuple(args.inits),
        epoch=args.epoch, attack_tag=args.attack_tag, scoring=scoring_of(args), seeds=args.seeds,
        random_sets=args.random_sets, epochs=args.retrain_epochs, lr=args.lr, batch_size=args.batch_size,
        subset=args.subset, test_subset=args.test_subset, pgd_steps=args.pgd_steps, seed=args.seed,
        device=args.device, models_root=_regime_root(args), data_root=args.data_root, plots_root=_plots_root(args),
    ))
    print(f"regime {args.regime}")
    print(format_comparison(rows))
    print("\nlayers retrained:\n" + "\n".join(f"  {r['variant']}: {' '.join(r['layers']) or '-'}"
                                             for r in rows if r["variant"] != "random (mean)"))
    print(f"bar plot: {plot}")
    return 0
