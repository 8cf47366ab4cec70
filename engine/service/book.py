"""The lifecycles this process is driving: the latest committed version of each, their locks,
when each was last heard of, and a condition that wakes `wait_for` on every move."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable

from engine.core.lifecycle import Lifecycle


class Book:
    def __init__(self, monotonic: Callable[[], float]) -> None:
        self.open: dict[int, Lifecycle] = {}
        self.changed = asyncio.Condition()
        self._monotonic = monotonic
        self._locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._news: dict[int, float] = {}

    def lock(self, lifecycle_id: int) -> asyncio.Lock:
        """Serialises the events of one lifecycle; tasks take it in creation order."""
        return self._locks[lifecycle_id]

    def put(self, lc: Lifecycle) -> None:
        if lc.terminal:
            self.open.pop(lc.id, None)
        else:
            self.open[lc.id] = lc

    def heard(self, lifecycle_id: int, at: float | None = None) -> None:
        self._news[lifecycle_id] = self._monotonic() if at is None else at

    def last_news(self, lifecycle_id: int) -> float | None:
        return self._news.get(lifecycle_id)

    async def notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()
