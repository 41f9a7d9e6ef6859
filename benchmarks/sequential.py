"""Local high-pass sweeps of the same layers of a trained ResNet-18 with and without sequential evaluation: image
passes, wall time and the labels side by side.

Both run in one process on the same images, BatchNorm statistics re-estimated on ``--bn-images`` training images,
FGSM; the sequential sweep decides the labels of the default scoring (density baseline, τ = 0.05, 95 %) at 4
planned looks (Bonferroni, each look at 98.75 %). Passes are counted by the sweeps themselves
(``SweepResult.passes``): images through a BatchNorm re-estimation, through a clean forward pass, and attacked
(FGSM: a forward and backward pass, then the adversarial forward pass). The machine's load is printed before and
after; the runs alternate (``--repeats``; each repeat swaps which goes first) and the best time of each
counts.

    python benchmarks/sequential.py                         # CPU: 4 layers x 5 thresholds, 1,000 images
    python benchmarks/sequential.py --checkpoint PATH       # a given ResNet-18 checkpoint of mnist5k
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import timed, trained_resnet18  # noqa: E402
from benchmarks.sweep import evaluation_images  # noqa: E402
from robustness.attacks import FGSM  # noqa: E402
from robustness.filtering import local_analysis, measure_reference  # noqa: E402
from robustness.models import filterable_layers, load_checkpoint  # noqa: E402
from robustness.report import format_table  # noqa: E402
from robustness.scoring import Scoring, Sequential, filtering_scores  # noqa: E402
from robustness.vocab import SCORES  # noqa: E402

PASSES = ("bn", "clean", "attack")


def main() -> None:
    """Sweep, count, time and print the table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="a ResNet-18 mnist5k checkpoint (default: train one, 2 epochs)")
    p.add_argument("--layers", type=int, default=4, help="layers swept, spread over the network (default 4)")
    p.add_argument("--n-thresholds", type=int, default=5)
    p.add_argument("--test-subset", type=int, default=1000)
    p.add_argument("--bn-images", type=int, default=200)
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--looks", type=int, default=4)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--scores", nargs="+", default=list(SCORES), choices=SCORES,
                   help="the scores whose labels the sequential sweep decides (default all three)")
    args = p.parse_args()
    torch.manual_seed(0)
    model = load_checkpoint(args.checkpoint)[0] if args.checkpoint else trained_resnet18()
    model.eval()
    names = [name for name, _ in filterable_layers(model)]
    layers = [names[round(i * (len(names) - 1) / max(args.layers - 1, 1))] for i in range(args.layers)]
    data = evaluation_images(args.test_subset, torch.device("cpu"))
    bn_images = evaluation_images(args.bn_images, torch.device("cpu"), train=True)[0]
    attack = FGSM(args.eps)
    reference = measure_reference(model, data, attack, bn_images=bn_images)
    scoring = Scoring()
    rule = Sequential(scoring, looks=args.looks, scores=tuple(args.scores))
    load = os.getloadavg()

    def sweep(sequential: Sequential | None) -> dict:
        return local_analysis(model, data, "highpass", attack, args.n_thresholds, layers=layers, bn_images=bn_images,
                              reference=reference, sequential=sequential)

    times: dict[str, list[float]] = {"all images": [], "sequential": []}
    results = {}
    runs = [("all images", None), ("sequential", rule)]
    for repeat in range(args.repeats):
        for label, sequential in runs[::-1] if repeat % 2 else runs:  # alternate which goes first
            seconds, results[label] = timed(lambda s=sequential: sweep(s), "cpu")
            times[label].append(seconds)
    print(f"ResNet-18 mnist5k, highpass, FGSM eps {args.eps}, {args.n_thresholds} thresholds, "
          f"{args.test_subset} images, bn_images {args.bn_images}, {len(layers)} layers; "
          f"reference accuracy clean {reference.clean_acc:.3f}, "
          f"adversarial {reference.adv_acc:.3f}; {args.looks} looks at {rule.ends(args.test_subset)} images, "
          f"each at {rule.at_look.ci:.4f} ({rule.at_look.n_boot} resamples); torch threads "
          f"{torch.get_num_threads()}; deciding {', '.join(args.scores)}; load average before {load[0]:.2f}, "
          f"after {os.getloadavg()[0]:.2f}")
    rows, totals = [], {label: dict.fromkeys(PASSES, 0) for label in times}
    changed = 0
    for layer in layers:
        full, seq = results["all images"][layer], results["sequential"][layer]
        for label, result in (("all images", full), ("sequential", seq)):
            for k in PASSES:
                totals[label][k] += result.passes[k]
        a, b = filtering_scores(full, scoring)["labels"], filtering_scores(seq, scoring)["labels"]
        changed += sum(b[s] not in (a[s], "uncertain") for s in args.scores)
        rows.append({"layer": layer, "images": seq.sequential["images"], "look": seq.sequential["look"],
                     **{f"{s} (all / seq)": f"{a[s]} / {b[s]}" for s in SCORES}})
    print(format_table(rows))
    summary = []
    for label, seconds in times.items():
        t = totals[label]
        summary.append({"run": label, **{f"{k} image passes": t[k] for k in PASSES},
                        "total": sum(t.values()), "best time (s)": f"{min(seconds):.1f}"})
    ratio = sum(totals["all images"].values()) / sum(totals["sequential"].values())
    print(format_table(summary))
    print(f"passes ratio (all / sequential): {ratio:.2f}x; time ratio "
          f"{min(times['all images']) / min(times['sequential']):.2f}x; labels changed other than towards uncertain: "
          f"{changed}")


if __name__ == "__main__":
    main()
