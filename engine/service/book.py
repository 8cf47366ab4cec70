"""The lifecycles this process is driving: the latest committed version of each, their locks,
when each was last heard of, and a condition that wakes `wait_for` on every move.

Nothing here outlives a lifecycle's need of it (issue 16): a lock exists only while a task holds
or waits for it, and a finished lifecycle's news time goes, and its `finished` hooks run (the
router, the timers, the repricer and emulator forget it), `linger` seconds after it finished —
late news of its orders (an exit pair's cancelled sibling) still finds its routes meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from engine.core.lifecycle import Lifecycle

LINGER = 60.0  # seconds a finished lifecycle's routes and timers are kept for its late news


class _Slot:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0  # holding or waiting


class Book:
    def __init__(self, monotonic: Callable[[], float], *, linger: float = LINGER) -> None:
        self.open: dict[int, Lifecycle] = {}
        self.changed = asyncio.Condition()
        self.linger = linger
        self.finished: list[Callable[[int], None]] = []  # called with the id once a lifecycle is let go
        self._monotonic = monotonic
        self._locks: dict[int, _Slot] = {}
        self._news: dict[int, float] = {}

    @contextlib.asynccontextmanager
    async def lock(self, lifecycle_id: int) -> AsyncIterator[None]:
        """Serialises the events of one lifecycle; tasks take it in creation order. The lock is
        dropped once nobody holds or waits for it (one per lifecycle kept forever was ~200 bytes
        each, and never freed)."""
        slot = self._locks.get(lifecycle_id)
        if slot is None:
            slot = self._locks[lifecycle_id] = _Slot()
        slot.users += 1
        try:
            async with slot.lock:
                yield
        finally:
            slot.users -= 1
            if slot.users == 0 and self._locks.get(lifecycle_id) is slot:
                del self._locks[lifecycle_id]
                if not self._locks:  # a dict never shrinks: a resume's burst of locks is let go
                    self._locks = {}

    def locks(self) -> int:
        """Locks in use (for tests and benchmarks)."""
        return len(self._locks)

    def put(self, lc: Lifecycle) -> None:
        if lc.terminal:
            if self.open.pop(lc.id, None) is not None:
                self._let_go(lc.id)
        else:
            self.open[lc.id] = lc

    def _let_go(self, lifecycle_id: int) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._finish(lifecycle_id)
            return
        loop.call_later(self.linger, self._finish, lifecycle_id)

    def _finish(self, lifecycle_id: int) -> None:
        if lifecycle_id in self.open:  # cannot happen (terminal states absorb); never forget a live one
            return
        self._news.pop(lifecycle_id, None)
        for hook in self.finished:
            hook(lifecycle_id)

    def heard(self, lifecycle_id: int, at: float | None = None) -> None:
        if lifecycle_id in self.open:  # a finished lifecycle's late news needs no poll
            self._news[lifecycle_id] = self._monotonic() if at is None else at

    def last_news(self, lifecycle_id: int) -> float | None:
        return self._news.get(lifecycle_id)

    def tracked(self) -> int:
        """Lifecycles with a news time (for tests and benchmarks)."""
        return len(self._news)

    async def notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()
