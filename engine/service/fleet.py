"""A worker: the accounts this `smartexec run` serves, each under a lease, and the hand-overs.

Alpaca serves one trade_updates connection per key, so an account has one owner at a time and any
number of standbys. Every TTL/3 seconds (at once when a lease is handed over: NOTIFY) the worker
renews its leases, stops serving any it lost, hands over what exceeds its fair share
(ceil(accounts / live workers)) and takes free or expired leases up to that share.

Taking an account over (`Served.run`): open the stream and wait until the broker gives it the
slot (the previous owner's socket must close first), reconcile in bulk (the resume: open orders,
fills, account activities), and only then consume the account's inbox. Anything that fails before
that fails closed: nothing is accepted, the lease is handed back, and the account is tried again
later, by this worker or another.

A deposed owner (paused past its lease, partitioned from the database, slow) cannot do harm: each
ledger write checks the lease's epoch in its transaction and each broker call its local deadline
(engine/ledger/leases.py), and its orders carry the client order ids the ledger recorded, which
the broker refuses to take twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TypeVar

from engine.broker.alpaca_target import BrokerTarget
from engine.broker.port import BrokerUnauthorized
from engine.core import quotes, repricing
from engine.core.config import Settings
from engine.core.errors import EngineError, LedgerUnavailable
from engine.ledger import Ledger
from engine.ledger.leases import FAILED, RECONCILING, SERVING, Fence, this_host, worker_id
from engine.ledger.wakeups import listen
from engine.service.executor import Executor
from engine.service.inbox import consume_inbox
from engine.service.log_context import ACCOUNT

log = logging.getLogger("smartexec")
T = TypeVar("T")
FORGET_AFTER = 20.0  # lease TTLs after which a worker never seen again (killed) leaves `smartexec workers`
RETRY_AFTER_FAILURE = 2.0  # lease TTLs a worker leaves an account alone after failing to take it over


class SingleWorkerOnly(EngineError):
    """A second worker on a SQLite ledger: SQLite has one writer, and no server to hold leases for many."""


@dataclass(frozen=True)
class FleetSettings:
    ttl: float = 15.0  # SMART_EXECUTOR_LEASE_TTL
    stream_wait: float = 60.0  # SMART_EXECUTOR_STREAM_WAIT: how long a new owner waits for the stream slot
    poll: float = 1.0  # the inbox's safety-net poll when NOTIFY wakes the consumer (PostgreSQL)


@dataclass
class Served:
    """One account this worker owns: its engine and inbox consumer, started by `run`."""

    name: str
    fence: Fence
    task: asyncio.Task[None] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    executor: Executor | None = None
    closing: bool = False  # one stop per account: the worker's look and the account's task may both ask


class Fleet:
    def __init__(self, settings: Settings, url: str, targets: dict[str, BrokerTarget],
                 fleet: FleetSettings | None = None, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.url = url
        self.targets = targets
        self.fleet = fleet or FleetSettings()
        self.host = this_host()
        self.id = worker_id(self.host)
        # The worker's own: accounts, leases, workers (it writes no account's rows). A worker's
        # sessions die once idle a lease TTL inside a transaction: paused, it blocks nobody for long.
        self.ledger = Ledger(url, idle_timeout=self.fleet.ttl)
        self.served: dict[str, Served] = {}
        self._monotonic = monotonic
        self._failed: dict[str, float] = {}  # account -> when this worker last failed to take it over
        self._look = asyncio.Event()  # a lease was handed over: look now
        self._fatal: BrokerUnauthorized | None = None  # keys the broker refuses: no retry can help
        self._started = datetime.now(timezone.utc)
        self.postgres = self.ledger.engine.dialect.name == "postgresql"

    # --- the worker's life --------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        await self._db(self.ledger.register_accounts, list(self.targets))
        await self._db(self.ledger.ensure_leases, list(self.targets))
        if not self.postgres:
            await self._db(self._refuse_a_second_sqlite_worker)
        listener = None
        if self.postgres:
            ledger_id = await self._db(self.ledger.identity)
            listener = asyncio.create_task(
                listen(self.url, ledger_id, self._on_inbox, self._on_lease, self._on_listening), name="notifications")
        log.info("worker %s started: may serve %s (lease TTL %gs)", self.id, ", ".join(self.targets), self.fleet.ttl)
        try:
            while not stop.is_set() and self._fatal is None:
                try:
                    await self._tick()
                except LedgerUnavailable as exc:
                    log.error("worker %s: the ledger is unavailable (%s); serving on until leases run out",
                              self.id, exc)
                self._look.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.fleet.ttl / 3):
                        await _first(stop.wait(), self._look.wait())
        finally:
            await asyncio.gather(*(self._hand_over(name) for name in list(self.served)), return_exceptions=True)
            if listener is not None:
                listener.cancel()
                await asyncio.gather(listener, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self._db(self.ledger.leave, self.id)
            self.ledger.close()
            log.info("worker %s stopped", self.id)
        if self._fatal is not None:
            raise self._fatal

    def _refuse_a_second_sqlite_worker(self) -> None:
        now = self.ledger.database_now()
        for lease in self.ledger.leases():
            if lease.account in self.targets and lease.owner and lease.expires_at and lease.expires_at > now:
                fence = self.ledger.acquire(lease.account, self.id, self.fleet.ttl)
                if fence is None:  # its owner's process still runs
                    raise SingleWorkerOnly(
                        f"this SQLite ledger is served by worker {lease.owner} (lease until "
                        f"{lease.expires_at.isoformat(timespec='seconds')}): SQLite takes one worker; several "
                        "workers need PostgreSQL (SMART_EXECUTOR_DATABASE_URL=postgresql+psycopg://…)")
                self.ledger.release(fence)

    async def _tick(self) -> None:
        ledger = self.ledger
        await self._db(ledger.heartbeat, self.id, self.host, os.getpid(), self._started, FORGET_AFTER * self.fleet.ttl)
        for name, served in list(self.served.items()):
            if served.fence.lost is None:
                await self._db(ledger.renew, served.fence)  # says why in fence.lost when it fails
            if served.fence.lost is not None:
                log.error("worker %s lost the lease on account %s: %s; stopped serving it", self.id, name,
                          served.fence.lost)
                await self._stop_serving(name)
        live = max(1, len(await self._db(ledger.live_workers, self.fleet.ttl)))
        share = math.ceil(len(self.targets) / live)
        while len(self.served) > share:  # another worker has room: hand one over
            newest = max(self.served.values(), key=lambda s: s.fence.epoch)
            log.info("worker %s hands account %s over (fair share %d of %d accounts, %d workers)", self.id,
                     newest.name, share, len(self.targets), live)
            await self._hand_over(newest.name)
            return  # one per tick: the others take it before this worker looks again
        if len(self.served) >= share:
            return
        candidates = [name for name in self.targets if name not in self.served
                      and self._monotonic() - self._failed.get(name, -math.inf) > RETRY_AFTER_FAILURE * self.fleet.ttl]
        random.shuffle(candidates)  # standbys looking at once do not all queue on the same row
        for name in candidates:
            if len(self.served) >= share:
                break
            fence = await self._db(ledger.acquire, name, self.id, self.fleet.ttl, self._monotonic)
            if fence is not None:
                log.info("worker %s took account %s (epoch %d)", self.id, name, fence.epoch)
                served = self.served[name] = Served(name, fence)
                served.task = asyncio.create_task(self._serve(served), name=f"account {name}")

    # --- one account --------------------------------------------------------------------------

    async def _serve(self, served: Served) -> None:
        name, fence = served.name, served.fence
        ACCOUNT.set(name)  # this task's lines, and those of every task it starts, name the account
        target = self.targets[name]
        s = self.settings
        wanted = quotes.wants_quote(s) or s.emulate_exits or repricing.enabled(s)  # reprice
        ledger = Ledger(self.url, account=name, fence=fence, idle_timeout=self.fleet.ttl)
        executor = served.executor = Executor(s, ledger, target.broker(),
                                              market_data=target.market_data(s.data_feed) if wanted else None,
                                              session_recheck=s.session_recheck)
        noticed = asyncio.create_task(self._note_connected(executor, fence))
        try:
            await executor.start(stream_wait=self.fleet.stream_wait, fail_closed=True)
        except Exception as exc:  # fail closed: nothing of this account is accepted
            noticed.cancel()
            why = str(exc) if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"
            log.critical("worker %s could not take over account %s: %s; not accepting its signals, handing the "
                         "lease back", self.id, name, why)
            self._failed[name] = self._monotonic()
            with contextlib.suppress(Exception):
                await self._db(self.ledger.set_status, fence, FAILED, why[:500])
            await self._close(served, release=fence.lost is None)
            self.served.pop(name, None)
            if isinstance(exc, BrokerUnauthorized):  # the configuration is wrong: stop, say so, exit non-zero
                self._fatal = exc
                self._look.set()
            return
        noticed.cancel()
        await self._db(self.ledger.set_status, fence, SERVING)
        log.info("worker %s serving account %s (epoch %d)", self.id, name, fence.epoch)
        consumer = asyncio.create_task(consume_inbox(executor, self.fleet.poll if self.postgres else 0.25,
                                                     wake=served.wake if self.postgres else None))
        try:
            # Also when the database cannot be reached to renew: the stream is dropped once the lease
            # runs out, so that the broker frees the slot for the account's next owner.
            while fence.held() and not consumer.done():
                await asyncio.sleep(0.2)
            if consumer.done() and not consumer.cancelled() and consumer.exception() is not None:
                log.error("worker %s: account %s's inbox stopped: %s", self.id, name, consumer.exception())
        finally:
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)
        if fence.lost is not None:
            log.error("worker %s lost the lease on account %s: %s; stopped serving it", self.id, name, fence.lost)
            await self._close(served, release=False)
            self.served.pop(name, None)

    async def _note_connected(self, executor: Executor, fence: Fence) -> None:
        await executor.connected.wait()
        with contextlib.suppress(Exception):
            await self._db(self.ledger.set_status, fence, RECONCILING)

    async def _stop_serving(self, name: str) -> None:
        served = self.served.pop(name, None)
        if served is not None:
            await self._close(served, release=False)

    async def _hand_over(self, name: str) -> None:
        """A graceful stop of one account: stop its engine (its stream frees the slot), then release."""
        served = self.served.pop(name, None)
        if served is not None:
            await self._close(served, release=served.fence.lost is None)
            log.info("worker %s handed account %s over", self.id, name)

    async def _close(self, served: Served, *, release: bool) -> None:
        if served.closing:
            return
        served.closing = True
        task = served.task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        executor, served.executor = served.executor, None
        if executor is not None:
            await executor.stop()
            executor.ledger.close()
        if release:
            with contextlib.suppress(Exception):
                await self._db(self.ledger.release, served.fence)

    # --- notifications ------------------------------------------------------------------------

    def _on_inbox(self, account: str) -> None:
        # An entry naming no account (or one this worker does not serve) is the first account's to
        # resolve or refuse: waking every consumer here costs one read each.
        served = self.served.get(account)
        for consumer in [served] if served is not None else self.served.values():
            consumer.wake.set()

    def _on_lease(self, _account: str) -> None:
        self._look.set()

    def _on_listening(self) -> None:
        for served in self.served.values():
            served.wake.set()  # what was posted while nobody listened

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)


async def _first(*waits: Awaitable[Any]) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
