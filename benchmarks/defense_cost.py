"""The defensive perturbation's inference cost: seconds per 100 images, defended against undefended.

The defense's model (``mnist_cnn`` trained 3 epochs on mnist5k, the demo's; reused from
``saved_models/`` when there), 100 mnist5k test images, the defense against PGD-L∞ (``--eps``,
alpha ``--eps / 4``, ``--steps``) with ``--def-steps`` Adam steps and predicted labels. The
undefended classification (one forward pass) and the defended one (the defense, then the forward
pass) run alternately in one process after a warm-up each; prints the median of ``--repeats``
timings of each and their ratio. Usage::

    python benchmarks/defense_cost.py [--eps 0.3] [--steps 5] [--def-steps 5] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import timed  # noqa: E402
from robustness.data import load_dataset, loader_to_tensors, make_loader  # noqa: E402
from robustness.defense import (
    Defense,  # noqa: E402
    load_or_train,  # noqa: E402
)
from robustness.report import format_table  # noqa: E402


def main() -> None:
    """Time both and print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--def-steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model = load_or_train("mnist_cnn", "mnist5k", epochs=3, device="cpu")
    x, _ = loader_to_tensors(make_loader(load_dataset("mnist5k", train=False), 100, subset=100, seed=0))
    defense = Defense(args.eps, args.eps / 4, args.steps, args.eps, def_steps=args.def_steps)

    def undefended() -> torch.Tensor:
        with torch.no_grad():
            return model(x).argmax(1)

    def defended() -> torch.Tensor:
        x_def = defense(model, x, show_progress=False)
        with torch.no_grad():
            return model(x_def).argmax(1)

    times: dict[str, list[float]] = {"undefended": [], "defended": []}
    for _ in range(args.repeats + 1):  # the first round warms up
        for name, fn in (("undefended", undefended), ("defended", defended)):
            times[name].append(timed(fn, "cpu")[0])
    median = {name: statistics.median(t[1:]) for name, t in times.items()}
    print(format_table([{"classifier": name, "s per 100 images": f"{seconds:.3f}",
                         "x undefended": f"{seconds / median['undefended']:.0f}"} for name, seconds in median.items()]))
    print(f"torch threads: {torch.get_num_threads()}; defense: PGD-linf eps {args.eps:g}, {args.steps} steps, "
          f"{args.def_steps} Adam steps ({args.def_steps * (args.steps + 2)} passes per image)")


if __name__ == "__main__":
    main()
