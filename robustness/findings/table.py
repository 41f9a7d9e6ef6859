"""The findings table's format: one row per number (see :mod:`robustness.findings.collect`)."""

from __future__ import annotations

import math
from typing import Any

COLUMNS = ("section", "arch", "regime", "init", "epoch", "layer", "depth", "quantity", "value", "lo", "hi", "text")


def row(section: str, quantity: str, value: float = math.nan, lo: float = math.nan, hi: float = math.nan,
        text: str = "", **where: Any) -> dict[str, Any]:
    """One number of the table: ``section`` and ``quantity`` say what it is, ``where`` (columns of
    :data:`COLUMNS`) whose it is; ``[lo, hi]`` its interval where it has one; ``text`` a label or setting."""
    unknown = set(where) - set(COLUMNS)
    if unknown:
        raise ValueError(f"not columns of the findings table: {sorted(unknown)}")
    return {"section": section, "quantity": quantity, "value": value, "lo": lo, "hi": hi, "text": text, **where}
