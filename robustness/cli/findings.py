"""The ``findings`` command: the study at full size and the page that says what it finds."""

from __future__ import annotations

import argparse

from ..paths import FINDINGS_MODELS_ROOT
from .options import runtime_options, writable_folders

Sub = argparse._SubParsersAction


def add_findings(sub: Sub) -> None:
    """``findings``: what ``make findings`` runs."""
    p = sub.add_parser("findings", parents=[runtime_options()],
                       help="the study at full size, written down as docs/findings.md (what `make findings` runs)",
                       description="Train ResNet-18 standard and with PGD adversarial training (3 initialisations, "
                                   "a checkpoint every epoch) and the MNIST CNN; sweep every layer of every "
                                   "initialisation at two epochs in both regimes (eps calibrated to the same target); "
                                   "check the run's sizes against the full setting; score with intervals; re-check "
                                   "with PGD; compare initialisations, epochs, regimes and depth; probe every layer by "
                                   "re-initialisation; retrain selectively against matched random sets; then write "
                                   "docs/findings.md from the table of every number it cites (docs/findings/"
                                   "findings.csv) with its figures. Every step resumes from what is written: a rerun "
                                   "with everything present only rewrites the page.")
    p.add_argument("--models-root", default=str(FINDINGS_MODELS_ROOT),
                   help=f"root of the run's checkpoints and results (default {FINDINGS_MODELS_ROOT})")
    p.add_argument("--docs-root", default="docs", help="folder of the page and its figures folder (default docs)")
    p.add_argument("--page", action="store_true",
                   help="only rewrite the page from the findings table already written (no model is run)")
    p.add_argument("--smoke", action="store_true", help="tiny settings: every step in a minute (for tests)")
    p.set_defaults(run=run_findings)


def run_findings(args: argparse.Namespace) -> int:
    """Run the findings study, or (``--page``) rewrite its page from its table."""
    from ..findings import FindingsSettings, write_page  # noqa: PLC0415 (keeps --help fast)
    from ..findings import run_findings as findings

    options = dict(models_root=args.models_root, docs_root=args.docs_root, device=args.device, seed=args.seed)
    settings = FindingsSettings.smoke(**options) if args.smoke else FindingsSettings(**options)
    if args.page:
        changed = write_page(settings.table, settings.page)
        print(f"{settings.page} {'rewritten' if changed else 'unchanged'} from {settings.table}")
        return 0
    writable_folders(args.models_root, args.docs_root)
    findings(settings)
    return 0
