"""The recovery rig: the real engine on a real ledger, talking through alpaca-py to the local venue.

The venue runs in its own thread on a manual clock, which is also the engine's clock, so ledger
times, entry deadlines and the venue's order times agree and nothing moves unless a test says so.
Each test body is a coroutine run with `asyncio.run` on the engine's loop; it waits on conditions,
never on fixed sleeps.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import select

from engine.ledger import database as db
from engine.broker.alpaca import AlpacaBroker
from engine.core.config import Settings
from engine.core.domain import CLIENT_ORDER_ID_PREFIX, Leg, Signal, client_order_id
from engine.ledger import Ledger
from engine.core.lifecycle import State
from engine.ledger.schema import fills, orders
from engine.service import Executor
from engine.sim import Venue

T = TypeVar("T")
SYMBOL = "AAPL"
PRICE, STOP = Decimal("100.00"), Decimal("99.00")  # the entry's limit: 100.05
FILL_PRICE = Decimal("100.00")  # the ask of FILL_QUOTE: better than the limit; the target is 102.00
# (bid, ask): the ask above the entry's limit (it rests), at FILL_PRICE (it fills), the bid at the target.
RESTING_QUOTE = ("100.10", "100.12")
FILL_QUOTE = ("99.98", "100.00")
TARGET_QUOTE = ("102.00", "102.02")
# Fill timeout in simulated seconds: the manual clock only passes it when a test advances it.
SETTINGS = replace(Settings.from_env({}), fill_timeout=1.0)
QUIET = 3600.0  # a poll interval that never elapses in a test: only the stream and reconnects report
WAIT = 30.0  # generous: the machine is small and shared

HAPPY_PATH = ["PENDING", "LIMIT_SUBMITTED", "FILLED", "VALIDATED", "EXITS_PLACED", "CLOSED"]


@contextmanager
def resting_venue() -> Iterator[Venue]:
    """A venue at 2024-06-12 10:00 ET (market open), manual clock, no rate limit, the market
    at RESTING_QUOTE."""
    with Venue.running_in_thread(rate_limit_per_min=None) as venue:
        venue.set_quote(SYMBOL, *RESTING_QUOTE, bid_size=1000, ask_size=1000)
        yield venue


@contextmanager
def sqlite_ledger(folder: Path) -> Iterator[Ledger]:
    url = f"sqlite:///{folder / 'ledger.db'}"
    db.upgrade(url)
    ledger = Ledger(url)
    try:
        yield ledger
    finally:
        ledger.close()


def a_signal(signal_id: str, qty: int = 30, **change: object) -> Signal:
    return Signal.parse({"signal_id": signal_id, "symbol": SYMBOL, "side": "buy", "qty": qty, "price": str(PRICE),
                         "stop": str(STOP), **change})


def entry_id(signal_id: str) -> str:
    return client_order_id(signal_id, Leg.ENTRY)


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every ERROR (or worse) the engine logged: a handled fault logs none."""
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("smartexec")]


def run(test: Callable[[], Coroutine[Any, Any, T]], timeout: float = 120.0) -> T:
    """Run a test coroutine on a fresh loop, failing (not hanging) if it never finishes."""
    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await test()

    return asyncio.run(bounded())


async def until(condition: Callable[[], Any], what: str, timeout: float = WAIT, *,
                advance: tuple[Venue, float] | None = None) -> None:
    """Wait until `condition` (sync or async) holds. With `advance=(venue, s)` the simulated clock
    moves `s` seconds per check, for waits on engine timers."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        if advance is not None:
            venue, seconds = advance
            await asyncio.to_thread(venue.advance, seconds)
        await asyncio.sleep(0.02)


async def quote(venue: Venue, bid_ask: tuple[str, str], size: int = 1000) -> None:
    """Move the market (off the engine's loop: the venue answers on its own thread)."""
    await asyncio.to_thread(venue.set_quote, SYMBOL, *bid_ask, bid_size=size, ask_size=size)


@dataclass
class Rig:
    venue: Venue
    ledger: Ledger

    @asynccontextmanager
    async def running(self, *, poll_interval: float = QUIET,
                      clock_ahead: timedelta = timedelta(0)) -> AsyncIterator[Executor]:
        """A started Executor whose trade_updates stream is listening; stopped (and its socket
        gone) on exit, so that the next one starts from a clean slate. `clock_ahead` sets the
        engine's clock that far ahead of the broker's."""
        broker = AlpacaBroker(self.venue.api_key, self.venue.secret_key, rest_url=self.venue.rest_url,
                              stream_url=self.venue.stream_url, request_timeout=5.0)
        executor = Executor(SETTINGS, self.ledger, broker, poll_interval=poll_interval, verify_after=0.5,
                            clock=lambda: self.venue.clock.now() + clock_ahead)
        await executor.start()
        try:
            await until(lambda: self.venue.listening() == 1, "the engine's stream to listen")
            yield executor
        finally:
            await executor.stop()
            await until(lambda: self.venue.listening() == 0, "the engine's stream to close")

    async def reach(self, executor: Executor, lifecycle_id: int, *states: State) -> None:
        await executor.wait_for(lifecycle_id, states, timeout=WAIT)

    async def reach_in_time(self, lifecycle_id: int, *states: State) -> None:
        """Wait for one of `states` while moving the simulated clock, so that the engine's timers
        (fill timeout, cancel verification) come due."""
        def reached() -> bool:
            lc = self.ledger.get(lifecycle_id)
            return lc is not None and lc.state in states

        await until(reached, f"lifecycle {lifecycle_id} to reach {states}", advance=(self.venue, 0.5))

    def our_orders(self) -> set[str]:
        """Client order ids of every order at the venue under the engine's prefix."""
        return {o.client_order_id for o in self.venue.orders(SYMBOL)
                if o.client_order_id.startswith(CLIENT_ORDER_ID_PREFIX)}

    def position(self) -> Decimal:
        held = self.venue.position(SYMBOL)
        return Decimal(0) if held is None else held.qty

    def states(self, lifecycle_id: int) -> list[str]:
        return [row.to_state for row in self.ledger.history(lifecycle_id)]

    def source_of(self, lifecycle_id: int, trigger: str) -> str:
        """Who reported the lifecycle's one `trigger` transition (`stream`, `reconcile`, …)."""
        [row] = [row for row in self.ledger.history(lifecycle_id) if row.trigger == trigger]
        return row.source

    def fills(self) -> dict[str, tuple[str, Decimal, Decimal]]:
        """Every fills row: execution id -> (client order id, qty, price)."""
        query = select(fills.c.execution_id, orders.c.client_order_id, fills.c.qty, fills.c.price).join(
            orders, orders.c.id == fills.c.order_id)
        with self.ledger.engine.connect() as conn:
            return {row.execution_id: (row.client_order_id, row.qty, row.price) for row in conn.execute(query)}

    def executions(self, coid: str | None = None) -> dict[str, tuple[str, Decimal, Decimal]]:
        """What the venue executed (before any event fault), in the same shape as `fills`."""
        return {e.execution_id: (e.client_order_id, e.qty, e.price) for e in self.venue.events()
                if e.execution_id and e.qty is not None and (coid is None or e.client_order_id == coid)}
