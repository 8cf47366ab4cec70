"""Where blocking work runs: one ledger writer thread and a broker pool behind the rate limiter.

SQLite wants a single writer and the event loop must never wait on an fsync or a REST round trip,
so every ledger call and every broker call leaves the loop through here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from functools import partial
from typing import Any, Protocol, TypeVar

from engine.broker.ratelimit import Priority, RateLimiter
from engine.core.errors import Deposed, LedgerUnavailable
from engine.service.group_commit import GroupCommit, batchable

log = logging.getLogger("smartexec")
T = TypeVar("T")
# Set in a task's context (and so inherited by the tasks it starts): its broker calls wait for
# this event before they ask for a rate-limit token. A reconcile's catch-ups, started page by page
# while its listing still pages, wait so for its own reads (engine.service.reconciler).
hold: ContextVar[asyncio.Event | None] = ContextVar("hold", default=None)


class BrokerGuard(Protocol):
    """Checked before every broker call (a lease's fence: engine.ledger.leases.Fence)."""

    def check(self, what: str = ...) -> None: ...


class Workers:
    def __init__(self, limiter: RateLimiter, broker_workers: int, fence: BrokerGuard | None = None) -> None:
        self.limiter = limiter
        self.fence = fence
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="ledger")
        self.group = GroupCommit(self._writer)  # writes waiting together commit together
        self._io = ThreadPoolExecutor(broker_workers, thread_name_prefix="broker")
        self._background: set[asyncio.Future[None]] = set()

    async def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if batchable(fn):
            return await self.group.write(fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._writer, partial(fn, *args, **kwargs))

    async def persist(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A ledger call that must happen: retried while the database is down, and nothing that
        depends on it is sent to the broker meanwhile."""
        delay = 0.2
        while True:
            try:
                return await self.db(fn, *args, **kwargs)
            except LedgerUnavailable as exc:
                log.error("ledger unavailable, no order will be sent until it is back; retrying in %.1fs: %s",
                          delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def call(self, priority: Priority, fn: Callable[..., T], **kwargs: Any) -> T:
        held = hold.get()
        if held is not None:
            await held.wait()
        await self.limiter.acquire(priority)
        if self.fence is not None:  # after the wait for a token, which can be long: a deposed owner sends nothing
            self.fence.check(f"the broker call {getattr(fn, '__name__', 'call')}")
        return await asyncio.get_running_loop().run_in_executor(self._io, partial(fn, **kwargs))

    @staticmethod
    async def guarded(work: Awaitable[None]) -> None:
        try:
            await work
        except Deposed as exc:  # expected once a standby took over: said once, no traceback
            log.error("lost the lease, step not carried out: %s", exc)
        except Exception:
            log.exception("background step failed")

    def spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(self.guarded(work))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self, grace: float) -> None:
        """Let background work finish for up to `grace` seconds, cancel the rest, stop the threads."""
        if self._background:
            await asyncio.wait(list(self._background), timeout=grace)
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._io.shutdown(wait=False, cancel_futures=True)
        self._writer.shutdown(wait=True)
