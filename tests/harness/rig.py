"""The rig: the real Executor and AlpacaBroker (alpaca-py over loopback) against the local venue,
on a real migrated ledger.

The engine's clock is the venue's manual clock, so ledger times, fill timeouts and the venue's
order times agree and nothing moves unless a test says so. The engine runs two ways:

- `async with rig.running() as executor:` inside a test coroutine (played with `run`). Leaving
  the block stops the engine and waits for its socket to close; the next `running()` is a new
  Executor on the same ledger and venue: a restart.
- `rig.start()` / `rig.stop()`: the same engine on an event loop in a second thread, so that a
  test reads as a plain script: `submit`, move the market, `settle`, inspect.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Coroutine, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any, TypeVar

import pytest
from sqlalchemy import select

from engine.broker.alpaca import AlpacaBroker
from engine.broker.market_data import AlpacaMarketData
from engine.core import protection
from engine.core.config import Settings
from engine.core.domain import CLIENT_ORDER_ID_PREFIX, Leg, Mode, Signal, client_order_id
from engine.core.lifecycle import TERMINAL, Lifecycle, State
from engine.core.protection import HeldExit
from engine.ledger import Ledger
from engine.ledger.schema import fills, orders
from engine.service import Executor
from engine.sim import Venue
from engine.sim.orders import SimOrder

from .venues import SYMBOL
from .waiting import WAIT, until

T = TypeVar("T")
PRODUCT = Settings.from_env({})  # the product defaults, whatever the caller's environment says
# Fill timeout in simulated seconds: the manual clock only passes it when a test advances it.
SETTINGS = replace(PRODUCT, fill_timeout=1.0)
QUIET = 3600.0  # a poll interval that never elapses in a test: only the stream and reconnects report
HAPPY_PATH = ["PENDING", "LIMIT_SUBMITTED", "FILLED", "VALIDATED", "EXITS_PLACED", "CLOSED"]


class Rig:
    """One venue and one ledger, and the engines a test runs on them, one at a time.

    The defaults (SETTINGS, a QUIET poll loop, cancels verified after 0.5 s, requests timed out
    after 5 s) are the recovery suite's; the service suite passes its own (see its conftest).
    """

    def __init__(self, venue: Venue, ledger: Ledger, settings: Settings = SETTINGS, *, poll_interval: float = QUIET,
                 verify_after: float = 0.5, request_timeout: float = 5.0, market_data: bool = True) -> None:
        """`market_data` False builds the engine without a market-data source."""
        self.venue = venue
        self.ledger = ledger
        self.settings = settings
        self.poll_interval = poll_interval
        self.verify_after = verify_after
        self.request_timeout = request_timeout
        self.market_data = market_data
        self._executor: Executor | None = None
        self._background: tuple[asyncio.AbstractEventLoop, threading.Thread, AsyncExitStack] | None = None

    # -- running the engine ------------------------------------------------------------------

    @asynccontextmanager
    async def running(self, *, poll_interval: float | None = None, clock_ahead: timedelta = timedelta(0),
                      others: int = 0) -> AsyncIterator[Executor]:
        """A started Executor whose trade_updates stream is listening; stopped (and its socket
        gone) on exit, so that the next one starts from a clean slate. `clock_ahead` sets the
        engine's clock that far ahead of the broker's; `others` is how many other engines (other
        rigs on the same venue) listen meanwhile."""
        broker = AlpacaBroker(self.venue.api_key, self.venue.secret_key, rest_url=self.venue.rest_url,
                              stream_url=self.venue.stream_url, request_timeout=self.request_timeout)
        # The venue's market data on its one port; read only when an entry setting needs the quote.
        market_data = AlpacaMarketData(self.venue.api_key, self.venue.secret_key, data_url=self.venue.data_url,
                                       stream_url=self.venue.market_data_url(),
                                       request_timeout=self.request_timeout) if self.market_data else None
        executor = Executor(self.settings, self.ledger, broker,
                            poll_interval=self.poll_interval if poll_interval is None else poll_interval,
                            verify_after=self.verify_after, market_data=market_data, session_recheck=2.0,
                            clock=lambda: self.venue.clock.now() + clock_ahead)
        await executor.start()
        try:
            # Submitting before the stream listens would leave the fills to the reconnect look-up.
            await until(lambda: self.venue.listening() == others + 1, "the engine's stream to listen")
            yield executor
        finally:
            await executor.stop()
            await until(lambda: self.venue.listening() == others, "the engine's stream to close")

    def start(self) -> Executor:
        """`running()` on an event loop in a thread of its own, until `stop()`."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="engine", daemon=True)
        thread.start()
        self._background = (loop, thread, AsyncExitStack())
        self._executor = self.run(self._background[2].enter_async_context(self.running()))
        return self._executor

    def stop(self) -> None:
        """Stop what `start()` started; nothing if it was not."""
        if self._background is None:
            return
        loop, thread, engine = self._background
        try:
            self.run(engine.aclose())
        finally:
            self._background = self._executor = None
            loop.call_soon_threadsafe(loop.stop)
            thread.join(15)
            loop.close()

    @property
    def executor(self) -> Executor:
        """The Executor `start()` started."""
        assert self._executor is not None, "the rig was not started"
        return self._executor

    def run(self, work: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        """Run `work` on the started engine's loop and return its result."""
        assert self._background is not None, "the rig was not started"
        return asyncio.run_coroutine_threadsafe(work, self._background[0]).result(timeout)

    def submit(self, signal: Signal, mode: Mode | None = None) -> Lifecycle:
        return self.run(self.executor.submit(signal, mode=mode))

    # -- waiting for the engine -------------------------------------------------------------------

    async def reach(self, executor: Executor, lifecycle_id: int, *states: State, timeout: float = WAIT) -> None:
        """Wait until the lifecycle is in one of `states` (default: a terminal one)."""
        await executor.wait_for(lifecycle_id, states or TERMINAL, timeout)

    def settle(self, lc: Lifecycle, *states: State, timeout: float = WAIT) -> Lifecycle:
        """`reach` on the started engine; the ledger's row. Every step a test settles on is also
        checked against the protection invariant (`protection_breaches`)."""
        self.run(self.reach(self.executor, lc.id, *states, timeout=timeout), timeout + 5)
        row = self.ledger.get(lc.id)
        assert row is not None
        assert self.protection_breaches() == [], f"unprotected after reaching {row.state.value}"
        return row

    def protection_breaches(self) -> list[str]:
        """engine.core.protection.breach for every open lifecycle, against what the venue holds: a
        protected position must be covered by a working pair for exactly what remains."""
        found = []
        for lc in self.ledger.load_open():
            newest = {row["leg"]: row["client_order_id"] for row in self.ledger.orders_of(lc.id)}
            legs = [self._held_exit(newest.get(leg.value)) for leg in (Leg.TAKE_PROFIT, Leg.STOP)]
            why = protection.breach(lc, *legs, now=lc.updated_at)  # in-between states are not judged here
            if why is not None:
                found.append(f"{lc.signal_id}: {why}")
        return found

    def _held_exit(self, coid: str | None) -> HeldExit | None:
        order = None if coid is None else self.venue.order(coid)
        if order is None or order.qty is None:
            return None
        return HeldExit(order.client_order_id, order.status, not order.is_open, order.qty, order.filled_qty)

    async def reach_in_time(self, lifecycle_id: int, *states: State) -> None:
        """Wait for one of `states` while moving the simulated clock, so that the engine's timers
        (fill timeout, cancel verification) come due."""
        def reached() -> bool:
            lc = self.ledger.get(lifecycle_id)
            return lc is not None and lc.state in states

        await until(reached, f"lifecycle {lifecycle_id} to reach {states}", advance=(self.venue, 0.5))

    # -- the ledger -------------------------------------------------------------------------------

    def path(self, lifecycle: Lifecycle | int) -> list[str]:
        """The states of the `transitions` rows, in order; checks that they replay to the row."""
        lifecycle_id = lifecycle if isinstance(lifecycle, int) else lifecycle.id
        assert self.ledger.replay_differences(lifecycle_id) == []
        return [row.to_state for row in self.ledger.history(lifecycle_id)]

    def source_of(self, lifecycle_id: int, trigger: str) -> str:
        """Who reported the lifecycle's one `trigger` transition (`stream`, `reconcile`, …)."""
        [row] = [row for row in self.ledger.history(lifecycle_id) if row.trigger == trigger]
        return row.source

    def recorded_executions(self) -> dict[str, tuple[str, Decimal, Decimal]]:
        """`fills` by the venue's execution id: a row recovered from the account activities is
        under the activity id `<time>::<execution id>` (the venue's convention), one from the
        stream under the execution id itself. Equal to `executions()`: each recorded exactly once."""
        found: dict[str, tuple[str, Decimal, Decimal]] = {}
        for execution_id, fill in self.fills().items():
            key = execution_id.rsplit("::", 1)[-1]
            assert key not in found, f"execution {key} recorded twice"
            found[key] = fill
        return found

    def fills(self) -> dict[str, tuple[str, Decimal, Decimal]]:
        """Every fills row: execution id -> (client order id, qty, price)."""
        query = select(fills.c.execution_id, orders.c.client_order_id, fills.c.qty, fills.c.price).join(
            orders, orders.c.id == fills.c.order_id)
        with self.ledger.engine.connect() as conn:
            return {row.execution_id: (row.client_order_id, row.qty, row.price) for row in conn.execute(query)}

    def coid(self, signal_id: str, leg: Leg = Leg.ENTRY, attempt: int = 1) -> str:
        """The client order id this rig's ledger places `signal_id`'s `leg` under."""
        return client_order_id(self.ledger.identity(), signal_id, leg, attempt)

    # -- the venue --------------------------------------------------------------------------------

    def sent(self) -> list[str]:
        """Client order ids of every POST /v2/orders the venue received, in order."""
        return [s.client_order_id for s in self.venue.submissions()]

    def our_orders(self) -> set[str]:
        """Client order ids of every order at the venue under the engine's prefix."""
        return {o.client_order_id for o in self.venue.orders() if o.client_order_id.startswith(CLIENT_ORDER_ID_PREFIX)}

    def position(self, symbol: str = SYMBOL) -> Decimal:
        """What the venue holds of `symbol` (negative: short)."""
        held = self.venue.position(symbol)
        return Decimal(0) if held is None else held.qty

    def executions(self, coid: str | None = None) -> dict[str, tuple[str, Decimal, Decimal]]:
        """What the venue executed (before any event fault), in the same shape as `fills`."""
        return {e.execution_id: (e.client_order_id, e.qty, e.price) for e in self.venue.events()
                if e.execution_id and e.qty is not None and (coid is None or e.client_order_id == coid)}

    def oco(self, client_order_id: str) -> tuple[SimOrder, SimOrder]:
        """The take-profit parent and the stop leg of an OCO at the venue."""
        parent = self.venue.order(client_order_id)
        assert parent is not None and parent.order_class == "oco" and len(parent.legs) == 1
        return parent, parent.legs[0]

    def assert_protected_by(self, lc: Lifecycle, *, qty: Decimal, stop: Decimal, target: Decimal,
                            client_order_id: str | None = None) -> None:
        """The venue holds a GTC OCO closing exactly `qty`: take-profit limit `target`, stop `stop`
        (the first pair, unless `client_order_id` names a later one)."""
        take_profit, stop_leg = self.oco(client_order_id or self.coid(lc.signal_id, Leg.TAKE_PROFIT))
        closing = "sell" if lc.side == "buy" else "buy"
        assert (take_profit.side, take_profit.type, take_profit.time_in_force) == (closing, "limit", "gtc")
        assert (take_profit.qty, take_profit.limit_price) == (qty, target)
        assert (stop_leg.side, stop_leg.type, stop_leg.qty, stop_leg.stop_price) == (closing, "stop", qty, stop)


# -- the engine's log -----------------------------------------------------------------------------

def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every ERROR (or worse) the engine logged: a handled fault logs none."""
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("smartexec")]


def rejections(records: Iterable[logging.LogRecord]) -> list[str]:
    """The engine's `Smart executor rejected …` lines."""
    return [r.getMessage() for r in records if r.getMessage().startswith("Smart executor rejected")]
