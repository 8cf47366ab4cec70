"""Alpaca's REST rate limit: N requests per rolling minute per API key, answered with 429."""

from __future__ import annotations

import threading
import time
from collections import deque


class SlidingWindow:
    def __init__(self, per_minute: int | None, window: float = 60.0) -> None:
        self.per_minute = per_minute
        self.window = window
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> tuple[bool, int, float]:
        """Count one request; returns (allowed, remaining, seconds until a slot frees)."""
        if not self.per_minute:
            return True, 0, 0.0
        now = time.monotonic()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.per_minute:
                return False, 0, hits[0] + self.window - now
            hits.append(now)
            reset = hits[0] + self.window - now
            return True, self.per_minute - len(hits), reset

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()
