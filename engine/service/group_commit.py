"""Group commit: the ledger writes waiting for the writer thread commit in one transaction.

A burst of signals queues every transition behind the one writer, each paying its own commit
(an fsync on SQLite, a round trip and a WAL flush on PostgreSQL). Here the writes already waiting
when the writer gets to them share one transaction (`Store.batch`): persist, then act still
holds for each, since a caller's await returns only once the commit holding its write is done.

Nothing waits to collect a batch: the writer takes what is queued, so under no load a batch is
one write, run exactly as it would be alone. If anything in a batch fails (one lifecycle's stale
version, a duplicate, the fence, the commit itself) the batch rolls back and each of its writes
runs again alone, in order, so each caller gets the result or exception it would have had alone.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol, TypeVar

log = logging.getLogger("smartexec")
T = TypeVar("T")
# Most writes one transaction takes: enough to amortise the commit over a burst, few enough that
# the first of them does not wait long for the last.
LIMIT = 32


class Failed(Protocol):
    failed: bool


class Batching(Protocol):
    """A ledger whose writes can share a transaction (engine.ledger.session.Store.batch)."""

    def batch(self) -> AbstractContextManager[Failed]: ...


def batchable(fn: Callable[..., Any]) -> bool:
    """Whether `fn` is a ledger write marked safe to share a transaction (`session.batchable`)."""
    return bool(getattr(fn, "__batchable__", False)) and hasattr(getattr(fn, "__self__", None), "batch")


class _Aborted(Exception):
    """A write in the batch failed (perhaps caught by the write itself): roll back, repeat alone."""


@dataclass(eq=False)
class _Write:
    call: Callable[[], Any]
    ledger: Batching
    future: Future[Any] = field(default_factory=Future)


class GroupCommit:
    """The writes of `writer` (a one-thread executor) that may share a transaction.

    Each write queues here and then submits a drain to the writer: drains run in the writer's
    FIFO order and each takes every write still waiting (up to LIMIT), so a write has committed
    by the time its own drain runs, and any call submitted to the writer after it runs after it."""

    def __init__(self, writer: ThreadPoolExecutor, limit: int = LIMIT) -> None:
        self._writer = writer
        self.limit = limit
        self._waiting: deque[_Write] = deque()
        self._lock = threading.Lock()
        self.batches = 0  # transactions that held more than one write (for tests and benchmarks)

    async def write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if getattr(fn, "__snapshot__", False):  # a read of committed rows: beside the writer, not behind it
            return await asyncio.to_thread(fn, *args, **kwargs)
        item = _Write(partial(fn, *args, **kwargs), fn.__self__)  # type: ignore[attr-defined]
        with self._lock:
            self._waiting.append(item)
        try:
            self._writer.submit(self._drain)
        except BaseException:  # the writer is shut down: nothing will take it
            with self._lock:
                self._waiting.remove(item)
            raise
        result: T = await asyncio.wrap_future(item.future)
        return result

    def _drain(self) -> None:
        with self._lock:
            if not self._waiting:
                return  # an earlier drain took this one's write
            group = [self._waiting.popleft()]
            while self._waiting and len(group) < self.limit and self._waiting[0].ledger is group[0].ledger:
                group.append(self._waiting.popleft())
        group = [item for item in group if item.future.set_running_or_notify_cancel()]
        if len(group) > 1 and self._together(group):
            return
        for item in group:
            self._alone(item)

    def _together(self, group: list[_Write]) -> bool:
        results = []
        try:
            with group[0].ledger.batch() as batch:
                for item in group:
                    results.append(item.call())
                    if batch.failed:
                        raise _Aborted
        except BaseException as exc:  # rolled back: each is repeated alone, and gets its own answer
            log.debug("group commit of %d writes rolled back (%r); each runs alone", len(group), exc)
            return False
        self.batches += 1
        for item, result in zip(group, results):
            item.future.set_result(result)
        return True

    @staticmethod
    def _alone(item: _Write) -> None:
        try:
            result = item.call()
        except BaseException as exc:  # as ThreadPoolExecutor hands an exception to its caller
            item.future.set_exception(exc)
        else:
            item.future.set_result(result)
