"""The findings run: the study at full size, and the page that says what it finds (``make findings``).

:func:`run_findings` trains what is missing, runs every step resumably (:mod:`robustness.findings.steps`),
gathers every number it reports into one table (:mod:`robustness.findings.collect`) and writes the page
from that table alone (:mod:`robustness.findings.page`) with its figures (:mod:`robustness.findings.figures`).
"""

from .check import every_kth
from .page import render
from .run import run_findings, run_steps, write_page
from .settings import FindingsSettings

__all__ = ["FindingsSettings", "every_kth", "render", "run_findings", "run_steps", "write_page"]
