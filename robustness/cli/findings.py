"""The ``findings`` command: a study from a preset (or a spec file), its plan, and the page that says what it finds."""

from __future__ import annotations

import argparse

from ..vocab import ROLES
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


def per_regime(text: str) -> tuple[str, str]:
    """A per-regime option's value (``--checkpoint``, ``--weights`` of this command): ``REGIME=VALUE`` with
    ``REGIME`` ``standard`` or ``adversarial``, as ``(regime, value)``; anything else is one argparse error."""
    role, sep, value = text.partition("=")
    if not sep or role not in ROLES or not value:
        raise argparse.ArgumentTypeError(f"{text!r} is not REGIME=VALUE with REGIME {' or '.join(ROLES)}, e.g. "
                                         f"adversarial=model.ckpt")
    return role, value


def _outside_options(p: argparse.ArgumentParser) -> None:
    """``--checkpoint REGIME=PATH``, ``--weights REGIME=SOURCE`` (a model from elsewhere per regime, the other
    commands' values keyed by the regime) and ``--regime TAG`` (an adversarial regime already trained)."""
    p.add_argument("--checkpoint", type=per_regime, action="append", default=[], metavar="REGIME=PATH",
                   help="study REGIME (standard or adversarial) on this model file instead of training it: this "
                        "package's checkpoint, or a plain state_dict of --arch for --dataset. It is one "
                        "initialisation at one epoch: the steps that need several, an epoch-0 checkpoint or a "
                        "training history skip it, and the page says which. Once per regime")
    p.add_argument("--weights", type=per_regime, action="append", default=[], metavar="REGIME=SOURCE",
                   help="study REGIME on pretrained weights instead of training it: torchvision:NAME[:WEIGHTS], "
                        "timm:NAME or robustbench:NAME:DATASET:THREAT, as in the other commands. Once per regime")
    p.add_argument("--regime", default=None, metavar="TAG",
                   help="the adversarial regime is TAG (e.g. pgd-linf-eps0.1), already trained under --models-root: "
                        "its settings are read from its regime.json, and every checkpoint the study sweeps must be "
                        "there (instead of --adv-train)")


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
    _outside_options(p)
    p.set_defaults(run=run_findings, arch=None, dataset=None, seed=None, models_root=None, adv_train=None)
    for action in p._actions:  # the shared groups' defaults give way to the preset's
        if action.dest in ("arch", "dataset", "seed", "adv_train"):
            action.help = f"{action.help.split(' (default')[0]} (default: the preset's)"
        elif action.dest == "models_root":
            action.help = "root of the study's checkpoints and results (default: saved_models/Findings-<preset>, or " \
                          "saved_models/Findings for the findings preset)"


def spec_of(args: argparse.Namespace):  # noqa: ANN201 (the spec type is imported when the command runs)
    """The :class:`robustness.findings.StudySpec` the options ask for: ``--spec`` or ``--preset``, with ``--arch``,
    ``--dataset``, ``--seed`` and the ``--adv-*`` regime set in every nested object alike, and a model from elsewhere
    per regime (``--checkpoint``, ``--weights``)."""
    from dataclasses import replace  # noqa: PLC0415

    from ..errors import InvalidArgument  # noqa: PLC0415
    from ..findings import load_spec, preset  # noqa: PLC0415 (keeps --help fast)

    s = load_spec(args.spec) if args.spec else preset(args.preset)
    s = s.with_model(args.arch, args.dataset)
    if args.seed is not None:
        s = s.with_seed(args.seed)
    given = args.checkpoint + args.weights
    if twice := sorted({role for role, _ in given if [r for r, _ in given].count(role) > 1}):
        raise InvalidArgument(f"two models for the {twice[0]} regime: give one --checkpoint or --weights per regime")
    if given:
        s = replace(s, sources=replace(s.sources, **dict(given)))
    if args.regime is not None and (args.adv_train is not None or s.sources.adversarial is not None):
        raise InvalidArgument("--regime names the adversarial regime already trained: give it instead of --adv-train "
                              "and of --checkpoint/--weights adversarial=...")
    if args.adv_train is not None or args.eps is not None or args.steps is not None or args.adv_warmup \
            or args.norm != "linf":
        # --eps and the like without --adv-train: adv_training_of names the missing option
        s = replace(s, adversarial=adv_training_of(argparse.Namespace(**{**vars(args),
                                                                         "adv_train": args.adv_train or "none"})))
    return s


def run_findings(args: argparse.Namespace) -> int:
    """Run the study (after its plan), or (``--page``) rewrite its page from its table."""
    from ..findings import default_place, trained_regime, write_page  # noqa: PLC0415 (keeps --help fast)
    from ..findings import run_findings as findings

    s = spec_of(args)
    at = default_place(s.preset, args.models_root, args.out, device=args.device, data_root=args.data_root)
    if args.regime is not None:
        s = trained_regime(s, at, args.regime)
    if args.page:
        changed = write_page(at.table, at.page)
        print(f"{at.page} {'rewritten' if changed else 'unchanged'} from {at.table}")
        return 0
    writable_folders(at.models_root, at.out)
    findings(s, at, budget=args.budget)
    return 0
