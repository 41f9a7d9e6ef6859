"""The ``train`` command: standard or adversarial training of a model of the checkpoint tree."""

from __future__ import annotations

import argparse
from typing import Any

from ..report import format_table
from .options import (
    data_root_options,
    eps_option,
    model_options,
    models_root_options,
    nonnegative_int,
    norm_option,
    positive_int,
    positive_number,
    runtime_options,
    steps_option,
    train_subset_option,
    writable_folders,
)

Sub = argparse._SubParsersAction


def tree_options() -> list[argparse.ArgumentParser]:
    """The model, roots and runtime parents every command that runs a model of the checkpoint tree has."""
    return [model_options(), models_root_options(), data_root_options(), runtime_options()]


def adv_train_options(p: argparse.ArgumentParser) -> None:
    """``train``'s adversarial-training options (:class:`robustness.training.AdvTraining`): ``--adv-train``, the
    training attack's ``-p/--norm``, ``-e/--eps`` and ``-k/--steps``, and ``--adv-warmup``."""
    p.add_argument("--adv-train", default="none", choices=["none", "pgd", "fast"],
                   help="train on adversarial examples: pgd (Madry et al.: random start, --steps steps of "
                        "2.5*eps/steps) or fast (FGSM from a random start, step 1.25*eps); the checkpoints go to "
                        "their own regime folder, <models-root>/Regime_<method>-<norm>-eps<eps>/ (default none)")
    eps_option(p, what=" of adversarial training (needed with --adv-train)")
    steps_option(p, what="PGD steps per training batch (default: 10; fast AT takes one)")
    norm_option(p, what=" of adversarial training")
    p.add_argument("--adv-warmup", type=nonnegative_int, default=0, metavar="EPOCHS",
                   help="grow eps linearly over the first EPOCHS epochs, eps*epoch/EPOCHS (default 0)")


def adv_training_of(args: argparse.Namespace) -> Any:
    """The :class:`robustness.training.AdvTraining` of :func:`adv_train_options`."""
    from ..errors import InvalidArgument  # noqa: PLC0415
    from ..training import AdvTraining  # noqa: PLC0415 (keeps --help fast)

    if args.adv_train == "none":
        given = [flag for flag, value in (("--eps", args.eps), ("--steps", args.steps), ("--adv-warmup",
                                                                                          args.adv_warmup)) if value]
        if given or args.norm != "linf":
            raise InvalidArgument(f"{', '.join(given or ['--norm'])} set without --adv-train: add --adv-train pgd "
                                  "or fast, or drop it")
        return AdvTraining()
    if args.eps is None:
        raise InvalidArgument(f"--adv-train {args.adv_train} needs --eps, e.g. --eps 0.1 or 8/255")
    if args.adv_train == "fast" and args.steps not in (None, 1):
        raise InvalidArgument(f"--adv-train fast takes one step, got --steps {args.steps}: drop --steps, or use "
                              "--adv-train pgd")
    return AdvTraining(args.adv_train, args.eps, args.norm, args.steps, warmup=args.adv_warmup)


def add_train(sub: Sub) -> None:
    """``train``: N initialisations, with checkpoints."""
    p = sub.add_parser("train", parents=tree_options(),
                       help="train N initialisations, writing checkpoints under <models-root>/",
                       description="Train --n-inits initialisations of --arch on --dataset with --recipe, writing a "
                                   "checkpoint at epoch 0 and every --save-every epochs into "
                                   "<models-root>/<Arch>/<DATASET>/Init_<i>/ (another regime: under "
                                   "<models-root>/Regime_<tag>/). Under torchrun (torchrun "
                                   "--nproc-per-node N -m robustness train ...), trains with "
                                   "DistributedDataParallel, one process per GPU (cuda:LOCAL_RANK) or on CPU with "
                                   "gloo; only rank 0 writes files.")
    p.add_argument("--n-inits", type=positive_int, default=1,
                   help="how many initialisations, Init_1 to Init_N, each with its own seed (default 1)")
    p.add_argument("--epochs", type=positive_int, default=10, help="epochs per initialisation (default 10)")
    p.add_argument("--save-every", type=positive_int, default=1, help="checkpoint every this many epochs (default 1)")
    p.add_argument("--recipe", default="adam", choices=["adam", "cifar"],
                   help="adam: the original study's (Adam, lr 1e-3, batch 100); cifar: SGD with momentum 0.9 and "
                        "weight decay 5e-4, lr 0.1 on a cosine schedule, batch 128, random crop (padding 4) and "
                        "horizontal flip; use it with --arch resnet18_cifar (default adam)")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="global training batch size (default: the recipe's, 100 or 128); under torchrun each of "
                        "the N processes takes batch-size/N images per step, so it must be a multiple of N")
    p.add_argument("--lr", type=positive_number, default=None,
                   help="learning rate (default: the recipe's, 1e-3 or 0.1)")
    train_subset_option(p)
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16"],
                   help="fp16: float16 mixed precision with loss scaling, on CUDA only (elsewhere fp32 is used; "
                        "default fp32)")
    p.add_argument("--download", action="store_true", help="let torchvision download MNIST/CIFAR10 if missing")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue each initialisation from its newest checkpoint (default; --no-resume retrains)")
    adv_train_options(p)
    p.set_defaults(run=run_train)


def run_train(args: argparse.Namespace) -> int:
    """Train and print each initialisation's history."""
    from .. import paths  # noqa: PLC0415 (keeps --help fast)
    from ..distributed import is_main  # noqa: PLC0415
    from ..training import TrainConfig, train  # noqa: PLC0415

    writable_folders(args.models_root)
    given = {k: v for k, v in (("batch_size", args.batch_size), ("lr", args.lr)) if v is not None}
    config = TrainConfig.from_recipe(
        args.recipe, arch=args.arch, dataset=args.dataset, inits=args.n_inits, epochs=args.epochs,
        save_every=args.save_every, seed=args.seed, device=args.device, amp=args.precision == "fp16",
        subset=args.train_subset,
        models_root=args.models_root, data_root=args.data_root, download=args.download, adv=adv_training_of(args),
        **given,
    )
    histories = train(config, resume=args.resume)
    rows = [{"init": init, **row} for init, history in histories.items() for row in history]
    if is_main():
        print(format_table(rows))
        print(f"regime {config.regime}: checkpoints under "
              f"{paths.model_dir(config.arch, config.dataset, config.models_root, regime=config.regime)}/Init_<i>/")
    return 0
