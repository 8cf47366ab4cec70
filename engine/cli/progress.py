"""Progress for people, on stderr: what a slow command is doing, so that a piped stdout (a CSV, a
report, JSON) carries the output alone."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

SLOW = 2.0  # seconds: a step that takes longer says what it is doing
EXPORT_EVERY = 10_000  # rows: an export says how far it is each time this many more are written


def note(text: str) -> None:
    print(f"smartexec: {text}", file=sys.stderr, flush=True)


@contextmanager
def slow(doing: str, after: float = SLOW) -> Iterator[None]:
    """Says `doing…` on stderr if the block is still running after `after` seconds; a quick one
    prints nothing."""
    timer = threading.Timer(after, note, args=(f"{doing}…",))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


class CountingRows:
    """A text stream for csv.writer (one write() per row, the header first) that notes every
    EXPORT_EVERY rows written."""

    def __init__(self, out: IO[str], what: str, every: int = EXPORT_EVERY) -> None:
        self._out, self._what, self._every = out, what, every
        self._writes = 0

    def write(self, text: str) -> int:
        written = self._out.write(text)
        self._writes += 1
        rows = self._writes - 1
        if rows and rows % self._every == 0:
            note(f"{self._what}: {rows:,} rows written")
        return written
