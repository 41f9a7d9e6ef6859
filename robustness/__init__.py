"""Adversarial robustness of image classifiers: training, attacks, synaptic filtering
and defensive perturbation. See README.md for the tour."""

__version__ = "0.1.0"
