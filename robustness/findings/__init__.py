"""A study as one composed spec, and the page that says what it finds (``robustness findings``, ``make findings``).

:class:`StudySpec` (:mod:`robustness.findings.spec`) says what a study covers, nesting the toolkit's own settings
objects; its presets are ``smoke``, ``demo``, ``findings`` and ``paper``. :func:`run_findings` prints the plan
(:mod:`robustness.findings.plan`), trains what is missing, runs every step resumably
(:mod:`robustness.findings.steps`), gathers every number it reports into one table
(:mod:`robustness.findings.collect`) and writes the page from that table alone (:mod:`robustness.findings.page`)
with its figures (:mod:`robustness.findings.figures`). A regime may be a model from elsewhere (:class:`Sources`) or
one already trained (:func:`trained_regime`): :mod:`robustness.findings.outside` checks them and says what is skipped.
"""

from .check import every_kth
from .outside import check_sources, trained_regime
from .page import render
from .plan import make_plan, predict
from .run import prepare, run_findings, run_steps, write_page
from .spec import PRESETS, Place, Sources, StudySpec, default_place, preset
from .specfile import load_spec, save_spec, spec_dict, spec_from_dict

__all__ = ["PRESETS", "Place", "Sources", "StudySpec", "check_sources", "default_place", "every_kth", "load_spec",
           "make_plan", "predict", "prepare", "preset", "render", "run_findings", "run_steps", "save_spec", "spec_dict",
           "spec_from_dict", "trained_regime", "write_page"]
