"""Aligned plain-text tables for people at a terminal (the CLI's default output)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

_NUMERIC = re.compile(r"^[-+]?[\d,]*\.?\d+%?$")


def render(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, empty: str = "-", align: str | None = None) -> str:
    """Columns padded to their widest cell; numeric columns right-aligned, the rest left-aligned.

    `align` ("lrr…", one letter per column) overrides the guess.
    """
    cells = [[empty if v is None else str(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    right = [
        any(row[i] != empty for row in cells) and all(row[i] == empty or _NUMERIC.match(row[i]) for row in cells)
        for i in range(len(headers))
    ] if align is None else [a == "r" for a in align]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)).rstrip()

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(row) for row in cells)])
