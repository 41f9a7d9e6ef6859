"""The findings table's format: one row per number (see :mod:`robustness.findings.collect`).

Its columns are typed: ``value``, ``lo`` and ``hi`` numbers, ``label`` a score's label (or a probe's verdict) and
``other_label`` the label it is compared with, ``flagged`` a boolean, ``text`` a name (a setting's value, a pair
compared, a retraining variant); nothing is packed into text to be parsed back.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

COLUMNS = ("section", "arch", "regime", "init", "epoch", "layer", "depth", "quantity", "value", "lo", "hi", "label",
           "other_label", "flagged", "text")


def row(section: str, quantity: str, value: float = math.nan, lo: float = math.nan, hi: float = math.nan,
        text: str = "", *, label: str = "", other_label: str = "", flagged: bool = False,
        **where: Any) -> dict[str, Any]:
    """One number of the table: ``section`` and ``quantity`` say what it is, ``where`` (columns of
    :data:`COLUMNS`) whose it is; ``[lo, hi]`` its interval where it has one; ``label`` (and ``other_label``) the
    labels it carries, ``flagged`` a flag; ``text`` a name or setting."""
    unknown = set(where) - set(COLUMNS)
    if unknown:
        raise ValueError(f"not columns of the findings table: {sorted(unknown)}")
    return {"section": section, "quantity": quantity, "value": value, "lo": lo, "hi": hi, "label": label,
            "other_label": other_label, "flagged": bool(flagged), "text": text, **where}


def table_csv(frame: pd.DataFrame) -> str:
    """The table as its CSV file holds it (numbers to 6 significant digits, one line per row)."""
    return frame.to_csv(index=False, float_format="%.6g", lineterminator="\n")
