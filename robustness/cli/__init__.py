"""``robustness`` (or ``python -m robustness``): the command-line form of every notebook step.

Each subcommand is a pair ``add_<name>(subparsers)`` / ``run_<name>(args)`` in
:mod:`robustness.cli.study` (train, filter, scores, compare, retrain), :mod:`robustness.cli.probe` (probe) or
:mod:`robustness.cli.evaluate` (attack, defend, demo); the options several commands share are
declared once, as parent parsers, in :mod:`robustness.cli.options`. Errors of the user's making
print one line and exit with status 2. Building the parser imports nothing heavy (no torch), so
``--help`` and ``--version`` answer at once; each ``run_<name>`` imports what it needs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import RobustnessError
from .evaluate import add_attack, add_defend, add_demo
from .findings import add_findings
from .options import Parser, nonnegative_number
from .probe import add_probe
from .study import add_compare, add_filter, add_retrain, add_scores
from .train import add_train

__all__ = ["COMMANDS", "build_parser", "entry_point", "main", "nonnegative_number"]

COMMANDS = (add_demo, add_findings, add_train, add_attack, add_filter, add_scores, add_compare, add_retrain, add_probe,
            add_defend)


def build_parser(prog: str = "python -m robustness") -> argparse.ArgumentParser:
    """The parser of ``python -m robustness`` and all its subcommands."""
    parser = Parser(
        prog=prog, allow_abbrev=False,
        description="Adversarial robustness toolkit: standard and adversarial training; attacks (FGSM, PGD, APGD, "
                    "Square and their ensemble, in linf and l2); synaptic-filtering sweeps, their scores with "
                    "intervals and comparisons; layer probes; selective retraining; the defensive perturbation; "
                    "the findings page. Commands, their one vocabulary of options and result tables: docs/cli.md.",
    )
    parser.add_argument("--version", action="version", version=f"robustness {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run the command line; return the exit status. ``prog`` is the name usage lines show
    (default: ``robustness`` when run as that command, else ``python -m robustness``). Before the work, one line
    on stderr says what is loading (importing torch alone takes seconds)."""
    if prog is None:
        prog = "robustness" if os.path.basename(sys.argv[0]) == "robustness" else "python -m robustness"
    args = build_parser(prog).parse_args(argv)
    print(f"{args.command}: loading torch and the {args.command} code...", file=sys.stderr, flush=True)
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
