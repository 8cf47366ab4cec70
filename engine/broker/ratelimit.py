"""Client-side rate limiter: a token bucket that serves protective calls before new entries.

Alpaca allows about 200 requests a minute per account; the engine stays well under it so that a
burst of new signals can never delay the cancel, exit or flatten that protects a position.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from enum import IntEnum


class Priority(IntEnum):
    PROTECT = 0  # cancels, exits, flattens
    QUERY = 1  # look-ups and reconciliation
    ENTRY = 2  # new entries


class RateLimiter:
    def __init__(self, per_minute: float = 150.0, burst: int = 10) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("per_minute must be > 0 and burst >= 1")
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self._tokens = float(burst)
        self._stamp = time.monotonic()
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._pump: asyncio.Task[None] | None = None
        self.granted: list[Priority] = []  # grant order, for tests and diagnostics (bounded)

    def floor(self, calls: int) -> float:
        """The fewest seconds this limiter takes to grant `calls` tokens from a full bucket: the
        burst at once, the rest at its rate (a bound for any paced sequence of calls)."""
        return max(0.0, calls - self.burst) / self.rate

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def acquire(self, priority: Priority) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (int(priority), next(self._order), future))
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._serve())
        await future

    async def _serve(self) -> None:
        while self._waiters:
            self._refill()
            if self._tokens >= 1.0:
                priority, _, future = heapq.heappop(self._waiters)
                if future.done():  # the caller gave up (cancelled): no token spent
                    continue
                self._tokens -= 1.0
                future.set_result(None)
                self.granted.append(Priority(priority))
                del self.granted[:-1000]
            else:
                await asyncio.sleep((1.0 - self._tokens) / self.rate)
