"""The re-initialisation probe, a second way to ask which layers matter: each layer's weights reset to their
epoch-0 values (``reinit``: :func:`reinitialise`), redrawn from the layer's initialiser
(``rerandom``: :func:`rerandomise`) or zeroed entirely (``ablate``: :func:`ablate`), BatchNorm re-estimated,
clean and adversarial accuracy measured against the unprobed model; the probe over a study's checkpoints with its
files and heatmap (``runs``); and whether it agrees with the filtering labels (``agreement``).
"""

from .ablate import ablate
from .agreement import probe_agreement
from .reinit import (
    DEFAULT_SEEDS,
    DEFAULT_THRESHOLD,
    PROBE_KINDS,
    ProbeKind,
    ProbeResult,
    accuracy_drop,
    reinitialise,
    rerandomise,
    restored,
    verdict,
    verdicts,
)
from .runs import ProbeConfig, drop_matrix, load_probes, plot_probe_heatmap, probe_rows, run_probes

__all__ = [
    "ablate", "probe_agreement", "ProbeResult", "reinitialise", "rerandomise", "accuracy_drop", "verdict", "verdicts",
    "restored", "DEFAULT_THRESHOLD", "DEFAULT_SEEDS", "PROBE_KINDS", "ProbeKind", "ProbeConfig", "run_probes",
    "load_probes", "drop_matrix", "plot_probe_heatmap", "probe_rows",
]
