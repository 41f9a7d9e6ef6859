"""The ``findings`` command: a study from a preset (or a spec file), its plan, and the page that says what it finds."""

from __future__ import annotations

import argparse

from .options import (
    data_root_options,
    model_options,
    models_root_options,
    positive_number,
    runtime_options,
    writable_folders,
)
from .train import adv_train_options, adv_training_of

Sub = argparse._SubParsersAction
PRESET_NAMES = ("smoke", "demo", "findings", "paper")


def add_findings(sub: Sub) -> None:
    """``findings``: a study of any model from a preset; ``make findings`` runs ``--preset findings --out docs``."""
    p = sub.add_parser("findings", parents=[model_options(), data_root_options(), runtime_options(),
                                            models_root_options()],
                       help="a whole study from a preset (smoke, demo, findings, paper) and the page of what it finds",
                       description="Print the plan (each step's forward and backward passes and predicted time), then "
                                   "train standard and adversarially (every initialisation, a checkpoint every "
                                   "epoch); sweep every layer at two epochs in both regimes (eps calibrated to the "
                                   "same target); check the sizes against a fuller setting; score with intervals; "
                                   "re-check with PGD; compare initialisations, epochs, regimes and depth; probe every "
                                   "layer by re-initialisation; retrain selectively against matched random sets; then "
                                   "write the page, its table and figures under --out. The spec is saved beside the "
                                   "results (spec.json); a folder holding another study's is refused. Every step "
                                   "resumes from what is written.")
    p.add_argument("--preset", default="findings", choices=PRESET_NAMES,
                   help="the study's sizes: smoke (a minute on a CPU), demo, findings (2 hours on 2 cores, what make "
                        "findings runs), paper (the original study's sizes, for a GPU); default findings")
    p.add_argument("--spec", default=None, metavar="FILE",
                   help="a spec.json a run wrote (or edited from one): the study's settings instead of --preset's")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="folder of the page (findings.md) and its table and figures (findings/) (default: "
                        "<models-root>/page)")
    p.add_argument("--budget", type=positive_number, default=None, metavar="MINUTES",
                   help="refuse, before any work, a plan predicted to take longer, naming what to reduce")
    p.add_argument("--page", action="store_true",
                   help="only rewrite the page from the findings table already written (no model is run)")
    adv_train_options(p)
    p.set_defaults(run=run_findings, arch=None, dataset=None, seed=None, models_root=None, adv_train=None)
    for action in p._actions:  # the shared groups' defaults give way to the preset's
        if action.dest in ("arch", "dataset", "seed", "adv_train"):
            action.help = f"{action.help.split(' (default')[0]} (default: the preset's)"
        elif action.dest == "models_root":
            action.help = "root of the study's checkpoints and results (default: saved_models/Findings-<preset>, or " \
                          "saved_models/Findings for the findings preset)"


def spec_of(args: argparse.Namespace):  # noqa: ANN201 (the spec type is imported when the command runs)
    """The :class:`robustness.findings.StudySpec` the options ask for: ``--spec`` or ``--preset``, with ``--arch``,
    ``--dataset``, ``--seed`` and the ``--adv-*`` regime set in every nested object alike."""
    from dataclasses import replace  # noqa: PLC0415

    from ..findings import load_spec, preset  # noqa: PLC0415 (keeps --help fast)

    s = load_spec(args.spec) if args.spec else preset(args.preset)
    s = s.with_model(args.arch, args.dataset)
    if args.seed is not None:
        s = s.with_seed(args.seed)
    if args.adv_train is not None or args.eps is not None or args.steps is not None or args.adv_warmup \
            or args.norm != "linf":
        # --eps and the like without --adv-train: adv_training_of names the missing option
        s = replace(s, adversarial=adv_training_of(argparse.Namespace(**{**vars(args),
                                                                         "adv_train": args.adv_train or "none"})))
    return s


def run_findings(args: argparse.Namespace) -> int:
    """Run the study (after its plan), or (``--page``) rewrite its page from its table."""
    from ..findings import default_place, write_page  # noqa: PLC0415 (keeps --help fast)
    from ..findings import run_findings as findings

    s = spec_of(args)
    at = default_place(s.preset, args.models_root, args.out, device=args.device, data_root=args.data_root)
    if args.page:
        changed = write_page(at.table, at.page)
        print(f"{at.page} {'rewritten' if changed else 'unchanged'} from {at.table}")
        return 0
    writable_folders(at.models_root, at.out)
    findings(s, at, budget=args.budget)
    return 0
