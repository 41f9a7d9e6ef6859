"""PGD-L∞ speed and strength: ``robustness.attacks.gradient.pgd`` against ``torchattacks.PGD``.

ResNet-18 trained on mnist5k, one batch of test images, 10 steps with a random start,
eps = 0.3 (the usual MNIST budget) and alpha = 0.03 (alpha * steps = eps, so even the
last step can cross the ball). The two attacks run alternately in one process after a
warm-up call each; prints the median time of each, the speed ratio and both robust
accuracies. Usage::

    python benchmarks/attacks.py [--device cpu] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
import torchattacks

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import timed, trained_resnet18  # noqa: E402
from robustness.attacks import pgd  # noqa: E402
from robustness.data import load_dataset, loader_to_tensors, make_loader  # noqa: E402
from robustness.report import format_table  # noqa: E402
from robustness.runtime import pick_device  # noqa: E402


def robust_accuracy(model: torch.nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy of ``model`` on ``x_adv``."""
    with torch.no_grad():
        return (model(x_adv).argmax(1) == y).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto (default cpu)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls of each attack (default 3)")
    parser.add_argument("--batch-size", type=int, default=256, help="images attacked at once (default 256)")
    parser.add_argument("--eps", type=float, default=0.3, help="L∞ budget (default 0.3)")
    parser.add_argument("--alpha", type=float, default=0.03, help="step size (default 0.03)")
    parser.add_argument("--steps", type=int, default=10, help="PGD iterations (default 10)")
    args = parser.parse_args()

    device = pick_device(args.device)
    model = trained_resnet18(str(device))
    x, y = loader_to_tensors(make_loader(load_dataset("mnist5k", train=False), args.batch_size))
    x, y = x[: args.batch_size].to(device), y[: args.batch_size].to(device)
    peer = torchattacks.PGD(model, eps=args.eps, alpha=args.alpha, steps=args.steps, random_start=True)

    def torchattacks_pgd(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)  # torchattacks draws its random start from the global generator
        return peer(x, y)

    attacks = {
        "robustness.pgd": lambda seed: pgd(model, x, y, args.eps, args.alpha, args.steps, seed=seed),
        "torchattacks.PGD": torchattacks_pgd,
    }
    for attack in attacks.values():  # warm-up
        attack(0)
    times: dict[str, list[float]] = {name: [] for name in attacks}
    accs: dict[str, list[float]] = {name: [] for name in attacks}
    for seed in range(args.repeats):
        for name, attack in attacks.items():
            seconds, x_adv = timed(lambda attack=attack, seed=seed: attack(seed), device)
            times[name].append(seconds)
            accs[name].append(robust_accuracy(model, x_adv, y))

    ours, theirs = (statistics.median(times[name]) for name in attacks)
    print(f"PGD-L∞ eps={args.eps} alpha={args.alpha} steps={args.steps}, random start, ResNet-18 on mnist5k, "
          f"batch {len(x)}, device {device}, {torch.get_num_threads()} threads, {args.repeats} repeats")
    print(f"clean accuracy {robust_accuracy(model, x, y):.4f}")
    print(format_table([
        {"attack": name, "median_s": statistics.median(times[name]), "min_s": min(times[name]),
         "robust_acc": statistics.mean(accs[name])}
        for name in attacks
    ]))
    print(f"speed ratio (torchattacks time / ours): {theirs / ours:.2f}x")


if __name__ == "__main__":
    main()
