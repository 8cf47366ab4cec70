"""Timers on the injected clock: the entry's fill timeout and the look-up that follows a cancel."""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from engine.core.decisions import deadline_due
from engine.core.lifecycle import Lifecycle

DEADLINE = "deadline"  # cancel the entry
VERIFY = "verify"  # look the entry up after a cancel
FOLLOW = "follow"  # re-price an emulated exit that has not filled
REPRICE = "reprice"  # re-price a resting entry (engine/service/repricer.py)


@dataclass(frozen=True, order=True)
class Due:
    at: datetime
    lifecycle_id: int
    what: str = field(compare=False)


class Timers:
    def __init__(self, clock: Callable[[], datetime], spawn: Callable[[Awaitable[None]], None],
                 handlers: dict[str, Callable[[int], Awaitable[None]]]) -> None:
        self._now = clock
        self._spawn = spawn
        self._handlers = handlers
        self._due: list[Due] = []
        self._wake = asyncio.Event()

    def schedule(self, lifecycle_id: int, what: str, delay: float) -> None:
        heapq.heappush(self._due, Due(self._now() + timedelta(seconds=delay), lifecycle_id, what))
        self._wake.set()

    def arm(self, lc: Lifecycle) -> None:
        """Schedule the fill timeout of a lifecycle whose entry is working."""
        deadline = deadline_due(lc)
        if deadline is not None:
            self.schedule(lc.id, DEADLINE, max(0.0, (deadline - self._now()).total_seconds()))

    def pending(self, what: str) -> set[int]:
        """The lifecycles with a timer of this kind still to fire (for diagnostics and benchmarks)."""
        return {due.lifecycle_id for due in self._due if due.what == what}

    async def run(self) -> None:
        while True:
            if not self._due:
                await self._wake.wait()
                self._wake.clear()
                continue
            wait = (self._due[0].at - self._now()).total_seconds()
            if wait > 0:
                # Not asyncio.wait_for: on Python 3.11 it swallows a cancel that lands as the
                # event is set, and stop() then waits for this loop forever.
                try:
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                self._wake.clear()
                continue
            due = heapq.heappop(self._due)
            self._spawn(self._handlers[due.what](due.lifecycle_id))
