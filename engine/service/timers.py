"""Timers on the injected clock: the entry's fill timeout and the look-up that follows a cancel."""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from engine.core.decisions import deadline_due
from engine.core.lifecycle import Lifecycle

DEADLINE = "deadline"  # cancel the entry
VERIFY = "verify"  # look the entry up after a cancel
FOLLOW = "follow"  # re-price an emulated exit that has not filled
REPRICE = "reprice"  # re-price a resting entry (engine/service/repricer.py)
# A finished lifecycle's entries are dropped from the queue once they are this large a share of
# it (the heap cannot remove from its middle; a rebuild is linear, so this keeps it amortised).
COMPACT_SHARE = 0.5


@dataclass(frozen=True, order=True, slots=True)
class Due:
    # slots: one per armed lifecycle, tens of thousands at once (issue 16)
    at: datetime
    lifecycle_id: int
    what: str


class Timers:
    def __init__(self, clock: Callable[[], datetime], spawn: Callable[[Awaitable[None]], None],
                 handlers: dict[str, Callable[[int], Awaitable[None]]]) -> None:
        self._now = clock
        self._spawn = spawn
        self._handlers = handlers
        self._due: list[Due] = []
        # The entries in the queue: the same timer asked for again is one timer. A reconcile
        # re-arms every resting entry's fill timeout (a restart loses the queue), and before this
        # each poll of a quiet lifecycle queued one more deadline that fired once more.
        self._queued: set[Due] = set()
        self._finished: set[int] = set()  # lifecycles whose entries are still in the queue, dead
        self._wake = asyncio.Event()

    def schedule(self, lifecycle_id: int, what: str, delay: float) -> None:
        self.schedule_at(lifecycle_id, what, self._now() + timedelta(seconds=delay))

    def schedule_at(self, lifecycle_id: int, what: str, at: datetime) -> None:
        due = Due(at, lifecycle_id, what)
        if due in self._queued:
            return
        self._finished.discard(lifecycle_id)
        self._queued.add(due)
        heapq.heappush(self._due, due)
        self._wake.set()

    def arm(self, lc: Lifecycle) -> None:
        """Schedule the fill timeout of a lifecycle whose entry is working (once, however often
        it is armed: the deadline is the lifecycle's own instant, not now + a delay)."""
        deadline = deadline_due(lc)
        if deadline is not None:
            self.schedule_at(lc.id, DEADLINE, deadline)  # a deadline already past fires at once

    def cancel(self, lifecycle_id: int) -> None:
        """A finished lifecycle's timers will never be wanted (every handler ignores a lifecycle
        that is no longer open): they stop firing now, and their memory goes with the next rebuild."""
        self._finished.add(lifecycle_id)
        if len(self._finished) > 64 and len(self._finished) > COMPACT_SHARE * len(self._due):
            self._compact()

    def _compact(self) -> None:
        self._due = [due for due in self._due if due.lifecycle_id not in self._finished]
        heapq.heapify(self._due)
        self._queued = set(self._due)
        self._finished.clear()

    def pending(self, what: str) -> set[int]:
        """The lifecycles with a timer of this kind still to fire (for diagnostics and benchmarks)."""
        return {due.lifecycle_id for due in self._due if due.what == what and due.lifecycle_id not in self._finished}

    def queued(self) -> int:
        """How many timers wait to fire (for tests and benchmarks)."""
        return len(self._due) - sum(1 for due in self._due if due.lifecycle_id in self._finished)

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
            self._queued.discard(due)
            if due.lifecycle_id in self._finished:
                continue
            self._spawn(self._handlers[due.what](due.lifecycle_id))
