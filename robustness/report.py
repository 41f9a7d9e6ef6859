"""Plain-text tables for the command line and notebooks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def format_table(rows: Sequence[Mapping[str, Any]], float_format: str = ".4f") -> str:
    """Rows of dicts as an aligned text table; columns in the first row's key order; a flag reads yes or no."""
    if not rows:
        return "(no rows)"
    columns = list(rows[0])

    def cell(value: Any) -> str:
        if type(value).__name__ in ("bool", "bool_"):  # Python's or NumPy's (no numpy import: --help stays fast)
            return "yes" if value else "no"
        return format(value, float_format) if isinstance(value, float) else str(value)

    cells = [[cell(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)
