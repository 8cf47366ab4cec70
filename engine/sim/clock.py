"""The simulated clock: manual (tests move it by hand) or running at a speed factor."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

from engine.sim.sessions import ET


class SimClock:
    """Simulated wall time.

    `speed=None` is manual: time moves only through `advance()`. `speed=1.0` runs in real time,
    `10.0` ten simulated seconds per real second. `advance()` also jumps a running clock forward.
    A naive `start` is read as America/New_York, the exchange's own zone.
    """

    def __init__(self, start: datetime | None = None, speed: float | None = None) -> None:
        if speed is not None and speed <= 0:
            raise ValueError(f"speed must be positive or None (manual), was {speed}")
        if start is None:
            start = datetime.now(UTC)
        elif start.tzinfo is None:
            start = start.replace(tzinfo=ET)
        self._lock = threading.Lock()
        # Absolute instants in UTC: adding a timedelta to an ET datetime would be wall-clock
        # arithmetic and jump an hour across a DST change.
        self._base = start.astimezone(UTC)
        self._speed = speed
        self._anchor = time.monotonic()

    @property
    def speed(self) -> float | None:
        return self._speed

    @property
    def manual(self) -> bool:
        return self._speed is None

    def now(self) -> datetime:
        """The simulated instant, timezone-aware in UTC."""
        with self._lock:
            return self._now_locked()

    def now_et(self) -> datetime:
        return self.now().astimezone(ET)

    def _now_locked(self) -> datetime:
        if self._speed is None:
            return self._base
        return self._base + timedelta(seconds=(time.monotonic() - self._anchor) * self._speed)

    def advance(self, seconds: float) -> datetime:
        """Jump forward; returns the new time. Time never runs backwards."""
        if seconds < 0:
            raise ValueError(f"the clock only moves forward, was asked to advance {seconds}s")
        with self._lock:
            self._base += timedelta(seconds=seconds)
            return self._now_locked()

    def set_speed(self, speed: float | None) -> None:
        """Change the pace from now on (None stops the clock for manual stepping)."""
        if speed is not None and speed <= 0:
            raise ValueError(f"speed must be positive or None (manual), was {speed}")
        with self._lock:
            self._base = self._now_locked()
            self._anchor = time.monotonic()
            self._speed = speed

    def __repr__(self) -> str:
        mode = "manual" if self._speed is None else f"x{self._speed:g}"
        return f"SimClock({self.now_et().isoformat()}, {mode})"
