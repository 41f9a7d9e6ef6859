"""The command line's vocabulary: every concept an option names, with its one spelling.

A researcher learns one word per idea and it means the same in every command: a count of things is
``--n-<things>`` (``--n-inits 3``) and the things themselves are named by the plain plural (``--inits 1 2``);
test images are ``--test-subset``, training images ``--train-subset``; the attack is ``-p/--norm``, ``-e/--eps``,
``-k/--steps`` and ``-a/--alpha`` wherever an attack is set, the training attack of ``train`` included; every
list is space-separated. A model from elsewhere is ``--checkpoint PATH`` or ``--weights SOURCE`` in every command
that studies one model; ``findings``, which studies two regimes, takes the same values keyed by the regime,
``--checkpoint REGIME=PATH`` (repeatable, once per regime): a spelling's *per-regime form*, the one other kind of
value a spelling may take, stated in its row. ``tests/test_vocabulary.py`` parses every subcommand's options and
fails when one is missing here, when a spelling takes different values in two commands (its per-regime form aside),
or when a retired spelling comes back.
"""

from __future__ import annotations

from typing import NamedTuple


class Concept(NamedTuple):
    """One row of the vocabulary: the idea, its spelling (short and long flags as ``--help`` shows them), what its
    value is, and its per-regime form where a command takes one value per regime."""

    concept: str
    spelling: str
    value: str
    per_regime: str = ""  # its per-regime form (findings: one value per regime), where it has one


CONCEPTS: tuple[Concept, ...] = (
    # which model, where things live, how it runs
    Concept("architecture", "--arch", "a name of the model registry"),
    Concept("dataset", "--dataset", "a dataset key"),
    Concept("checkpoint tree", "--models-root", "a folder"),
    Concept("datasets folder", "--data-root", "a folder"),
    Concept("figures folder", "--plots-root", "a folder"),
    Concept("device", "--device", "auto, cpu, cuda, cuda:N, mps, xla"),
    Concept("seed of every random choice", "--seed", "an integer >= 0"),
    Concept("a model file from elsewhere", "--checkpoint", "a path", "REGIME=PATH, once per regime (findings)"),
    Concept("pretrained weights from elsewhere", "--weights", "SOURCE:NAME...",
            "REGIME=SOURCE:NAME..., once per regime (findings)"),
    Concept("training regime of the checkpoints read", "--regime", "a regime tag"),
    Concept("the two regimes compared", "--regimes", "two regime tags"),
    Concept("one initialisation", "--init", "an init number, from 1"),
    Concept("initialisations selected", "--inits", "init numbers, space-separated"),
    Concept("how many initialisations to train", "--n-inits", "a count"),
    Concept("one checkpoint epoch", "--epoch", "an epoch"),
    Concept("checkpoint epochs selected", "--checkpoint-epochs", "epochs, space-separated"),
    Concept("length of training", "--epochs", "a count of epochs"),
    Concept("length of each retraining run", "--retrain-epochs", "a count of epochs"),
    Concept("test images used", "--test-subset", "a count of images (fixed, seeded)"),
    Concept("training images used", "--train-subset", "a count of images (fixed, seeded)"),
    Concept("images per batch", "--batch-size", "a count of images"),
    Concept("numeric precision", "--precision", "fp32, bf16 (attacks, sweeps) or fp16 (training)"),
    Concept("channels-last memory format", "--channels-last", "a switch"),
    Concept("the printed table as a file", "--save-table", "a .csv or .json path"),
    # the attack
    Concept("attack", "--attack", "an attack name"),
    Concept("norm of the eps-ball", "-p/--norm", "linf or l2"),
    Concept("perturbation budget", "-e/--eps", "a number >= 0, or a fraction such as 8/255"),
    Concept("PGD steps", "-k/--steps", "a count"),
    Concept("PGD step size", "-a/--alpha", "a number >= 0, or a fraction"),
    Concept("random restarts (worst case per image)", "--restarts", "a count"),
    Concept("random start of PGD", "--random-start/--no-random-start", "a switch"),
    Concept("APGD iterations per loss", "--apgd-steps", "a count"),
    Concept("Square queries per image", "--queries", "a count"),
    Concept("members of the strong-attack ensemble", "--ensemble", "attack names, space-separated"),
    Concept("results of which attack", "--attack-tag", "a tag from result file names"),
    # training
    Concept("training recipe", "--recipe", "adam or cifar"),
    Concept("learning rate", "--lr", "a number > 0"),
    Concept("checkpoint interval", "--save-every", "a count of epochs"),
    Concept("download missing datasets", "--download", "a switch"),
    Concept("continue from the newest checkpoint", "--resume/--no-resume", "a switch"),
    Concept("adversarial training method", "--adv-train", "none, pgd or fast"),
    Concept("epochs of the eps warm-up", "--adv-warmup", "a count of epochs"),
    # synaptic filtering
    Concept("filter", "--filter", "highpass, lowpass, pulse (all: the three)"),
    Concept("scope of a sweep", "--scope", "local, global or both"),
    Concept("thresholds per sweep", "--n-thresholds", "a count"),
    Concept("spacing of the thresholds", "--grid", "value or quantile"),
    Concept("range of the global thresholds", "--threshold-range", "two numbers, or auto"),
    Concept("eps calibrated to a target accuracy", "--calibrate-eps", "an accuracy in [0, 1]"),
    Concept("images held out for the calibration", "--eps-images", "a count of images"),
    Concept("BatchNorm statistics", "--bn", "recalibrate or frozen"),
    Concept("images BatchNorm is re-estimated on", "--bn-images", "a count of images"),
    Concept("random null model", "--random-baseline", "a switch"),
    Concept("random masks of the null model", "--null-masks", "a count"),
    Concept("stop each layer once its labels are decided", "--sequential", "a switch"),
    Concept("layers selected", "--layers", "module names, space-separated"),
    # scores and comparisons
    Concept("baseline of the relative accuracy", "--baseline", "density, unfiltered or random"),
    Concept("label threshold", "--tau", "a number"),
    Concept("reference accuracy floor", "--floor", "a number"),
    Concept("coverage of every interval", "--ci", "a number in (0, 1)"),
    Concept("bootstrap resamples", "--n-boot", "a count"),
    Concept("PGD re-check of what FGSM calls robust", "--recheck", "a switch"),
    Concept("filtering score", "--score", "clean, adversarial or difference"),
    Concept("what a comparison compares", "--by", "init, epoch, regime or arch"),
    Concept("one set of scores", "--set", "NAME=ARCH:DATASET:INIT:EPOCH[:ATTACK]"),
    Concept("layer names matched across architectures", "--layer-map", "a JSON path"),
    Concept("bins of normalised depth", "--depth-bins", "a count"),
    # retraining and probes
    Concept("retraining runs per variant", "--n-runs", "a count"),
    Concept("random layer sets", "--random-sets", "a count"),
    Concept("probe kind", "--kind", "reinit, rerandom or ablate"),
    Concept("seeds of repeated draws", "--seeds", "seeds, space-separated"),
    Concept("accuracy drop that makes a layer critical", "--critical-drop", "a number"),
    # the defense
    Concept("bound on the defense's perturbation", "--def-budget", "a number >= 0, or inf"),
    Concept("the defense's target label", "--label", "predicted, oracle or both"),
    Concept("threat model", "--threat", "preemptive, test-time or both"),
    Concept("Adam steps of the defense", "--def-steps", "a count"),
    Concept("Adam learning rate of the defense", "--def-lr", "a number > 0"),
    Concept("defense draws averaged by EOT", "--eot-samples", "a count"),
    Concept("t-SNE maps", "--tsne", "a switch"),
    Concept("save defended data", "--save-data", "a switch"),
    # the findings run
    Concept("a study's sizes, by name", "--preset", "smoke, demo, findings or paper"),
    Concept("a study's settings from a file", "--spec", "a spec.json path"),
    Concept("the folder of a study's page, table and figures", "--out", "a folder"),
    Concept("the longest a study may be predicted to take", "--budget", "minutes"),
    Concept("only rewrite a study's page (findings, demo) from its table", "--page", "a switch"),
)

SPELLINGS: dict[str, Concept] = {row.spelling: row for row in CONCEPTS}
