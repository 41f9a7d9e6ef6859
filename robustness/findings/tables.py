"""Reading the findings table for the page: :class:`Page` selects rows, and formats numbers and tables."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pandas as pd

from ..scoring import consensus


def ci(value: float, lo: float, hi: float, digits: int = 3, sign: str = "+") -> str:
    """``+0.123 [+0.100, +0.140]`` (``sign=""``: a share, ``0.12 [0.10, 0.14]``); a missing interval is left
    out, a missing value is ``-``."""
    if math.isnan(value):
        return "-"
    if math.isnan(lo) or math.isnan(hi):
        return f"{value:{sign}.{digits}f}"
    return f"{value:{sign}.{digits}f} [{lo:{sign}.{digits}f}, {hi:{sign}.{digits}f}]"


def missing(what: str, step: str) -> list[str]:
    """The one line a section prints when the table has no rows for it."""
    return [f"The table has no rows for {what}: the `{step}` step writes them (the table comes from a run made "
            f"before that step, or a partial one).", ""]


def ordinal(n: int) -> str:
    """``1st``, ``2nd``, ``3rd``, ``4th``, ..."""
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def short(label: str) -> str:
    """One letter per label, for compact cells: F, R, A, U (uncertain), - (undefined)."""
    return {"fragile": "F", "robust": "R", "antifragile": "A", "uncertain": "U"}.get(label, "-")


class Page:
    """The findings table with the lookups the page needs."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame.copy()
        for column in ("text", "layer", "label", "other_label"):  # empty cells read back as NaN
            self.frame[column] = [("" if pd.isna(v) else str(v)) for v in self.frame[column]]
        self.frame["flagged"] = self.frame["flagged"].astype(bool)

    def select(self, section: str | None, **equal: Any) -> pd.DataFrame:
        """The rows of ``section`` (any with ``None``) whose columns equal the values given (a tuple: any of)."""
        rows = self.frame if section is None else self.frame[self.frame.section == section]
        for column, value in equal.items():
            values = value if isinstance(value, tuple) else (value,)
            rows = rows[rows[column].isin(values)]
        return rows

    def setting(self, name: str) -> str:
        """A setting of the run, as text."""
        return str(self.select("setting", quantity=name).text.iloc[0])

    @property
    def regimes(self) -> tuple[str, str]:
        """The standard regime's tag, then the adversarial one's (in table order)."""
        found = list(dict.fromkeys(self.select("checkpoint", arch=self.setting("train.arch")).regime))
        return found[0], found[1]

    @property
    def final(self) -> int:
        """The final epoch."""
        return int(self.setting("train.epochs"))

    def epochs(self) -> list[int]:
        """The swept epochs, in order."""
        return sorted({int(e) for e in self.select("checkpoint", arch=self.setting("train.arch")).epoch})

    def cell_labels(self, regime: str, score: str, epoch: int, kind: str = "highpass",
                    arch: str | None = None) -> dict[str, list[str]]:
        """Per layer (in table order), the labels the initialisations give at ``epoch``."""
        rows = self.select("score", arch=arch or self.setting("train.arch"), regime=regime, epoch=epoch,
                           quantity=f"{kind} {score}")
        found: dict[str, list[str]] = {}
        for r in rows.itertuples():
            found.setdefault(r.layer, []).append(r.label)
        return found

    def consensus_counts(self, regime: str, score: str, epoch: int | None = None) -> Counter[str]:
        """How many layers get each consensus label at ``epoch`` (default the final one)."""
        cells = self.cell_labels(regime, score, epoch or self.final)
        return Counter(consensus(labels) for labels in cells.values())

    @staticmethod
    def markdown(header: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> list[str]:
        """A Markdown table; ``align`` one character per column (``l`` or ``r``, default: first left, rest right)."""
        align = align or "l" + "r" * (len(header) - 1)
        rule = ["---:" if a == "r" else "---" for a in align]
        return [f"| {' | '.join(header)} |", f"|{'|'.join(rule)}|", *(f"| {' | '.join(r)} |" for r in rows)]

    def settings_table(self) -> list[str]:
        """Every setting of the run's spec as a Markdown table (name, value)."""
        settings = self.select("setting")
        return self.markdown(["setting", "value"], [[f"`{q}`", f"`{t}`"] for q, t in
                                                    zip(settings.quantity, settings.text, strict=True)], "ll")

    def retrained(self, section: str, variant: str) -> list[str]:
        """The layers ``variant`` of a retraining comparison (section ``retrain by <score>``) retrained."""
        rows = self.select(section, text=variant, quantity="clean")
        return rows.layer.iloc[0].split() if len(rows) else []

    def random_overlap(self, section: str) -> float:
        """The mean share of the robust and antifragile layers that a matched random set also retrained (NaN
        without random sets or chosen layers)."""
        chosen = set(self.retrained(section, "robust+antifragile"))
        randoms = [v for v in dict.fromkeys(self.select(section).text) if v.startswith("random-")]
        shares = [len(set(self.retrained(section, v)) & chosen) / len(chosen) for v in randoms if chosen]
        return sum(shares) / len(shares) if shares else math.nan

    def swept_checkpoints(self) -> int:
        """How many checkpoints of the main architecture were swept."""
        return len(self.select("checkpoint", arch=self.setting("train.arch"), quantity="eps"))

    def images(self) -> int:
        """How many evaluation images every sweep measured."""
        return int(self.select("checkpoint", quantity="images").value.iloc[0])
