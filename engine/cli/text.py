"""How the command line shows money, times and long lines to people (tables for a terminal of
WIDTH columns; `--json` keeps the stored values as they are)."""

from __future__ import annotations

import textwrap
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from engine.core.pricing import CENT, tick_size

WIDTH = 100
ZONE = "UTC"  # every time the command line prints, whatever zone the database returned it in


def _padded(value: Decimal, places: Decimal) -> str:
    # Padding only: 88.4 reads 88.40, and an average price kept to more places than the tick
    # (410.3583) keeps them; nothing is rounded here (engine.core.pricing rounds, once).
    if value.as_tuple().exponent > places.as_tuple().exponent:  # type: ignore[operator]
        value = value.quantize(places)
    return f"{value:,}"


def price(value: Decimal | None, none: str = "-") -> str:
    """A price to the venue's tick at least: 123.80, 0.5000."""
    return none if value is None else _padded(value, tick_size(abs(value)))


def amount(value: Decimal | None, none: str = "-") -> str:
    """Money that is not a price (P&L): to the cent at least."""
    return none if value is None else _padded(value, CENT)


def when(value: datetime | None, none: str = "-") -> str:
    """To the millisecond, in ZONE; the zone is named once, in the heading that shows it."""
    if value is None:
        return none
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def wrapped(line: str, *, indent: int, width: int = WIDTH, split_words: bool = True) -> str:
    """`line` wrapped at word boundaries to `width`, its continuation lines indented `indent`; with
    `split_words` off a word longer than a line (a path, a URL) stays whole, to be copied."""
    return textwrap.fill(line, width=width, subsequent_indent=" " * indent, break_on_hyphens=False,
                         break_long_words=split_words, drop_whitespace=True, replace_whitespace=False)


def cut(value: Any, limit: int) -> str:
    """A cell shortened to `limit` characters, its end replaced by …"""
    text = "-" if value is None else str(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"
