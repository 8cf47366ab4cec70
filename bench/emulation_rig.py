"""What the two emulation benches share (bench/emulated_exit.py, bench/emulation_cpu.py): the local
venue after hours with a deep book per symbol, and the real Executor (AlpacaBroker and
AlpacaMarketData, alpaca-py over loopback) on an event loop of its own thread, holding N long
positions whose protection it emulates (EMULATING).

The positions are made the honest way: real signals through the venue. At 17:00 New York time an
entry is an extended-hours day limit that fills at once against the deep book; the engine then
arms the emulation (VALIDATED -> EMULATING) because no broker stop works after hours. That costs
about 20 ms of wall time per signal, fast enough for 500, and leaves nothing for the engine's
resume or reconcile to disagree with (rows written straight into the ledger would have no orders
at the venue behind them).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol, TypeVar

from venue_probe import KEY, SECRET, ProbedVenue

from engine.broker.alpaca import AlpacaBroker
from engine.broker.market_data import AlpacaMarketData
from engine.broker.ratelimit import RateLimiter
from engine.core.config import Settings
from engine.core.domain import Signal
from engine.core.lifecycle import State
from engine.ledger import Ledger
from engine.service import Executor
from engine.sim.clock import SimClock
from engine.sim.sessions import ET

T = TypeVar("T")
# Wednesday 17:00 New York: after-hours, a trading day (the `after_hours_stop` scenario's time).
AFTER_HOURS = datetime(2024, 6, 12, 17, 0, tzinfo=ET)
ENTRY, BID, ASK = Decimal("100.00"), Decimal("99.99"), Decimal("100.00")
DEPTH = Decimal(10**9)  # every entry and every exit fills on arrival, nothing rests
QTY = Decimal(10)
# Stops sit at or below TOP_STOP, STOP_STEP apart per symbol; targets (2 R) far above the entry.
TOP_STOP, STOP_STEP = Decimal("99.00"), Decimal("0.05")
SETTINGS = replace(Settings.from_env({}), extended_hours=True)  # the product's defaults, entries after hours on


def symbols(count: int) -> list[str]:
    """`count` distinct letter-only symbols (EMAA, EMAB, ...)."""
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return [f"EM{letters[i // 26 % 26]}{letters[i % 26]}" for i in range(count)]


@dataclass(frozen=True)
class Position:
    signal_id: str
    symbol: str
    stop: Decimal


def positions(tag: str, n: int, names: Sequence[str]) -> list[Position]:
    """Lifecycle i on symbol i mod S, its stop one STOP_STEP below the previous one on that symbol:
    a bid just under stop k crosses that stop alone (the higher ones have already fired)."""
    return [Position(f"{tag}-{i}", names[i % len(names)], TOP_STOP - STOP_STEP * (i // len(names)))
            for i in range(n)]


def after_hours_venue(venue_class: type[ProbedVenue] = ProbedVenue) -> Any:
    """A started venue (context manager) on a manual clock at 17:00 New York: nothing moves unless
    the bench sets a quote, so no fill timeout, stale-quote limit or session boundary comes due."""
    return venue_class.running_in_thread(SimClock(start=AFTER_HOURS), rate_limit_per_min=None,
                                         initial_cash=Decimal(10**12))


def deep_books(venue: ProbedVenue, names: Sequence[str]) -> None:
    for name in names:
        venue.set_quote(name, BID, ASK, bid_size=DEPTH, ask_size=DEPTH)


class Clock(Protocol):
    def now(self) -> datetime: ...


class Endpoints(Protocol):
    """Where the engine finds the venue (a Venue, or its URLs from another process)."""

    rest_url: str
    stream_url: str
    data_url: str

    @property
    def clock(self) -> Clock: ...

    def market_data_url(self, feed: str = "iex") -> str: ...


def subscriptions(venue: ProbedVenue) -> Callable[[], set[str]]:
    """The quote symbols some market-data connection of `venue` (in this process) subscribes."""
    return lambda: venue._on_loop(venue.market_data_hub.subscribed_quotes)


class EngineThread:
    """The Executor on an event loop in a thread of its own (as tests/harness/rig.py's `start`)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="engine", daemon=True)
        self.thread.start()
        self.executor: Executor | None = None

    def run(self, work: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)

    def submit(self, work: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(work, self.loop)

    def start(self, venue: Endpoints, ledger: Ledger, *, feed: str = "iex") -> Executor:
        async def build() -> Executor:
            broker = AlpacaBroker(KEY, SECRET, rest_url=venue.rest_url, stream_url=venue.stream_url)
            market_data = AlpacaMarketData(KEY, SECRET, feed=feed, data_url=venue.data_url,
                                           stream_url=venue.market_data_url(feed))
            # The venue's rate limit is off and the engine's set far above the run's needs: the
            # benches measure the engine, not Alpaca's 200 calls/min.
            executor = Executor(SETTINGS, ledger, broker, market_data=market_data, clock=venue.clock.now,
                                limiter=RateLimiter(per_minute=6_000_000, burst=100_000))
            await executor.start()
            return executor

        self.executor = self.run(build())
        return self.executor

    def open_emulating(self, wanted: Sequence[Position], subscribed: Callable[[], set[str]],
                       timeout: float = 120.0) -> dict[str, int]:
        """Submit one signal per position, wait until every lifecycle is EMULATING and the venue
        streams quotes of every symbol to the engine (`subscribed`: the venue's quote
        subscriptions). Returns signal id -> lifecycle id."""
        executor = self.executor
        assert executor is not None

        async def submit_all() -> dict[str, int]:
            made = await asyncio.gather(*(executor.submit(Signal.parse(
                {"signal_id": p.signal_id, "symbol": p.symbol, "side": "buy", "qty": QTY, "price": ENTRY,
                 "stop": p.stop})) for p in wanted))
            return {lc.signal_id: lc.id for lc in made}

        ids = self.run(submit_all(), timeout)

        async def emulating() -> int:
            return sum(1 for lc in executor.book.open.values() if lc.state is State.EMULATING)

        wait_for(lambda: self.run(emulating()) == len(wanted), timeout, f"{len(wanted)} lifecycles EMULATING")
        names = {p.symbol for p in wanted}
        wait_for(lambda: names <= subscribed(), 15, "the engine's quote subscription")
        return ids

    def stop(self) -> None:
        if self.executor is not None:
            self.run(self.executor.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(15)
        self.loop.close()


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)
