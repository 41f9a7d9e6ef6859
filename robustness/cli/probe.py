"""The ``probe`` command (re-initialisation and re-randomisation of layers), and ``compare --by regime|arch``.

``add_probe``/``run_probe`` follow the other commands' pattern; :func:`add_comparison_options` and
:func:`compare_models` are what ``compare`` (in :mod:`robustness.cli.study`) adds for the comparisons by
training regime and by depth.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import InvalidArgument
from ..report import format_table
from .options import (
    attack_from,
    attack_options,
    data_root_options,
    model_options,
    models_root_options,
    plots_root_options,
    positive_int,
    restart_options,
    runtime_options,
    scoring_of,
    scoring_options,
)

Sub = argparse._SubParsersAction


def add_probe(sub: Sub) -> None:
    """``probe``: re-initialise or re-randomise each layer of saved checkpoints."""
    p = sub.add_parser("probe", parents=[model_options(), models_root_options(), data_root_options(),
                                         runtime_options(), plots_root_options(), attack_options(("fgsm", "pgd")),
                                         restart_options(), scoring_options()],
                       help="re-initialisation probe: reset each layer to its epoch-0 (or freshly drawn) weights",
                       description="For each selected checkpoint and each Conv2d/Linear layer: replace the layer's "
                                   "weight and bias by the epoch-0 checkpoint's of the same Init folder (--kind "
                                   "reinit), by fresh draws of its initialiser under --seeds (--kind rerandom) or "
                                   "by zeros (--kind ablate: can the network do without the layer?), "
                                   "re-estimate BatchNorm statistics on training images, and record clean and "
                                   "adversarial accuracy (the attack regenerated) with per-image outcomes, beside "
                                   "the unprobed model's. Writes one JSON+npz result file per checkpoint under "
                                   "saved_models/<Arch>/<DATASET>/Probe_<kind>/ (a rerun skips finished ones), "
                                   "prints each layer's accuracy drop with a paired-bootstrap interval, saves a "
                                   "layer x epoch heatmap per initialisation, and, where the filter command's "
                                   "local results of a checkpoint exist, the table of filtering labels beside the "
                                   "probe's verdicts.")
    p.add_argument("--kind", default="reinit", choices=["reinit", "rerandom", "ablate"],
                   help="reinit: the epoch-0 weights; rerandom: fresh draws of the initialiser; ablate: zeros "
                        "(default reinit)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], metavar="S",
                   help="the seeds of --kind rerandom's draws, averaged (default 0 1 2)")
    p.add_argument("--regime", default="standard", metavar="TAG",
                   help="the training regime of the checkpoints (default standard)")
    p.add_argument("--inits", type=int, nargs="+", default=None, metavar="I",
                   help="initialisation numbers (default: every Init_<i> folder)")
    p.add_argument("--checkpoint-epochs", type=int, nargs="+", default=None, metavar="E",
                   help="checkpoint epochs probed (default: every checkpoint of each init)")
    p.add_argument("--layers", nargs="+", default=None, metavar="NAME", help="module names (default: every layer)")
    p.add_argument("--subset", type=int, default=None, metavar="N",
                   help="evaluate on a fixed, seeded subset of N test images (the filter command's with the same "
                        "--seed and --subset)")
    p.add_argument("--bn", default="recalibrate", choices=["recalibrate", "frozen"],
                   help="re-estimate BatchNorm statistics for each probed model (default) or keep the checkpoint's")
    p.add_argument("--bn-images", type=int, default=1000, metavar="N",
                   help="training images BatchNorm statistics are re-estimated on (default 1000)")
    p.add_argument("--threshold", type=float, default=0.05,
                   help="a layer is critical when its accuracy drop's interval lies wholly above this (default 0.05)")
    p.add_argument("--filter", default="highpass", choices=["highpass", "lowpass", "pulse"],
                   help="the filter whose local results the agreement table reads (default highpass)")
    p.add_argument("--score", default="adversarial", choices=["clean", "adversarial", "difference"],
                   help="the filtering score set beside the probe's verdict (default adversarial)")
    p.set_defaults(run=run_probe)


def run_probe(args: argparse.Namespace) -> int:
    """Probe, print each layer's drops, save the heatmaps, and print the agreement tables that can be made."""
    from .. import paths  # noqa: PLC0415 (keeps --help fast)
    from ..figures import (
        draw_and_save,  # noqa: PLC0415
        probe_plot_name,  # noqa: PLC0415 (keeps --help fast)
    )
    from ..probes import ProbeConfig, drop_matrix, plot_probe_heatmap, probe_rows, run_probes  # noqa: PLC0415
    from ..study import StudyConfig  # noqa: PLC0415

    root = str(paths.check_regime(args.arch, args.dataset, args.regime, args.models_root))
    study = StudyConfig(
        attack=attack_from(args), arch=args.arch, dataset=args.dataset,
        inits=tuple(args.inits) if args.inits else None,
        epochs=tuple(args.checkpoint_epochs) if args.checkpoint_epochs else None,
        layers=tuple(args.layers) if args.layers else None, subset=args.subset, seed=args.seed, bn=args.bn,
        bn_images=args.bn_images, models_root=root, data_root=args.data_root, device=args.device)
    config = ProbeConfig(study, args.kind, tuple(args.seeds))
    files = run_probes(config)
    bootstrap = {"ci": args.ci, "n_boot": args.n_boot, "seed": args.seed}
    print(format_table([row for path in files for row in probe_rows(path, **bootstrap)]))
    inits = sorted({int(path.name.split("_")[1]) for path in files})
    for init in inits:
        for which in ("clean", "adv"):
            frame = drop_matrix(args.arch, args.dataset, args.kind, init, study.attack.tag, which=which,
                                root=root, **bootstrap)
            title = (f"{args.kind} probe of {args.arch} on {args.dataset}, Init_{init}: {which} accuracy drop, "
                     f"attack {study.attack.tag}")
            figure = draw_and_save(lambda f=frame, t=title: plot_probe_heatmap(f, t, args.threshold),
                                   probe_plot_name(args.arch, args.dataset, args.kind, init, study.attack.tag,
                                                         which), args.plots_root)
            print(f"figure: {figure}")
    for path in files:
        _print_agreement(args, path, bootstrap)
    return 0


def _print_agreement(args: argparse.Namespace, path: Any, bootstrap: dict[str, Any]) -> None:
    """The probe-agreement table of one checkpoint, when the filter command's local results of it exist."""
    from .. import paths  # noqa: PLC0415
    from ..errors import DataNotFoundError  # noqa: PLC0415
    from ..probes import load_probes, probe_agreement  # noqa: PLC0415
    from ..scoring import checkpoint_scores  # noqa: PLC0415

    meta, probes = load_probes(path)
    root = paths.regime_root(args.models_root, args.regime)
    try:
        scores = checkpoint_scores(args.arch, args.dataset, args.filter, meta["init"], meta["epoch"], root=root,
                                   scoring=scoring_of(args))
    except DataNotFoundError:
        return
    frame, summary = probe_agreement(scores, probes, score=args.score, threshold=args.threshold,
                                     depths=meta.get("depth"), **bootstrap)
    print(f"\nInit_{meta['init']} epoch {meta['epoch']}: {args.filter} {args.score} filtering label vs {args.kind} "
          f"verdict (critical: adversarial-accuracy drop's {args.ci:.0%} interval above {args.threshold:g}); "
          f"agreement {summary['agreement']:.2f} over {summary['n_confident']} confidently called layers; "
          f"Spearman rho(score, drop) {summary['rho']:+.2f} [{summary['rho_lo']:+.2f}, {summary['rho_hi']:+.2f}]")
    print(format_table([{"layer": r.layer, "d": f"{r.depth:.2f}",
                         "score": f"{r.score:+.3f} [{r.score_lo:+.3f}, {r.score_hi:+.3f}]", "label": r.label,
                         "drop": f"{r.drop:+.3f} [{r.drop_lo:+.3f}, {r.drop_hi:+.3f}]", "verdict": r.verdict,
                         "agree": {True: "yes", False: "no"}.get(r.agree, "-")} for r in frame.itertuples()]))


def add_comparison_options(p: argparse.ArgumentParser) -> None:
    """The options ``compare --by regime`` and ``--by arch`` add."""
    p.add_argument("--regimes", nargs=2, default=None, metavar="TAG",
                   help="--by regime: the two training regimes, e.g. standard pgd-linf-eps0.1 (differences are "
                        "first minus second)")
    p.add_argument("--depth-bins", type=positive_int, default=5, metavar="N",
                   help="--by arch: layers are pooled into N equal bins of normalised depth d in [0, 1] "
                        "(default 5)")


def compare_models(args: argparse.Namespace) -> int:
    """``compare --by regime`` (one checkpoint under two regimes) or ``--by arch`` (--set specs on depth bins)."""
    from ..figures import (  # noqa: PLC0415 (keeps --help fast)
        draw_and_save,  # noqa: PLC0415
        regime_plot_name,
        sets_comparison_plot_name,
    )

    if args.by == "regime":
        from ..scoring import compare_regimes, plot_regimes, regime_result  # noqa: PLC0415

        if not args.regimes or args.epoch is None:
            raise InvalidArgument("compare --by regime needs --regimes A B and --epoch E (and --init, default 1)")
        loaded = [regime_result(args.arch, args.dataset, args.filter, args.init, args.epoch, regime,
                                attack=args.attack_tag, root=args.models_root) for regime in args.regimes]
        result = compare_regimes(*loaded, names=tuple(args.regimes), scoring=scoring_of(args))
        title = f"{args.arch} on {args.dataset}, Init_{args.init} epoch {args.epoch}, {args.filter} filter"
        print(f"{title}\n{result.header()}\n{format_table(result.rows())}\n{format_table(result.comparison.rows())}")
        name = regime_plot_name(args.arch, args.dataset, args.filter, list(args.regimes), args.baseline)
        print(f"\nfigure: {draw_and_save(lambda: plot_regimes(result, title), name, args.plots_root)}")
        return 0
    from ..models import arch_depths, depth_bins  # noqa: PLC0415
    from ..scoring import (  # noqa: PLC0415
        binned_sets,  # noqa: PLC0415
        compare,
        named_set,
        plot_comparison,  # noqa: PLC0415
    )

    if not args.set or len(args.set) < 2:
        raise InvalidArgument("compare --by arch needs two or more --set NAME=ARCH:DATASET:INIT:EPOCH")
    sets = {}
    for spec in args.set:
        name, scored = named_set(spec, args.filter, attack=args.attack_tag, root=args.models_root,
                                 scoring=scoring_of(args))
        arch, dataset = spec.partition("=")[2].split(":")[:2]
        sets[name] = (scored, arch_depths(arch, dataset))
    result = compare(binned_sets(sets, args.depth_bins), scoring=scoring_of(args))
    edges = ", ".join(f"{e:.2f}" for e in depth_bins(args.depth_bins))
    title = (f"{args.filter} filter, local scores pooled on normalised depth (bins with edges {edges}), baseline "
             f"{args.baseline}: {', '.join(sets)}")
    print(f"{title} ({len(result.layers)} bins, tau={result.tau:g})\n{format_table(result.rows())}")
    figure = draw_and_save(lambda: plot_comparison(result, title),
                           sets_comparison_plot_name([*sets, "by_depth"], args.filter, args.baseline),
                           args.plots_root)
    print(f"\nfigure: {figure}")
    return 0
