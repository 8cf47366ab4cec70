"""An in-memory `MarketData` for tests, with the venue's rules: a quote goes to a connected stream
subscribed to its symbol when it is set, nothing is replayed after a drop, a reconnect subscribes
again to the current symbols and then calls on_connect, and the latest quote is the last one set.

Test controls: `set_quote`, `drop_stream(stay_down=...)` / `allow_reconnect`, `silence` / `resume`
(connected, no data), `connections`, `stream_subscribed` (what the live connection has asked for),
`fail_next_latest_quote`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial

from engine.broker.market_port import ConnectHandler, Quote, QuoteHandler
from engine.broker.port import BrokerError

log = logging.getLogger("smartexec.fake.market_data")


def _symbols(symbols: Iterable[str]) -> set[str]:
    if isinstance(symbols, str):
        symbols = [symbols]
    return {s.strip().upper() for s in symbols if s.strip()}


def _post(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    with contextlib.suppress(RuntimeError):  # that loop has closed: its stream is gone
        loop.call_soon_threadsafe(callback)


@dataclass(eq=False)
class _Connection:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Quote | None]  # None: dropped
    symbols: set[str] = field(default_factory=set)  # what this connection subscribed to


class FakeMarketData:
    def __init__(self, now: Callable[[], datetime] | None = None, *, symbol_limit: int | None = None) -> None:
        """`now`: the time stamped on quotes set without `at` (default: the wall clock, UTC);
        `symbol_limit`: what the stream carries at most (as `symbol_limit` reports; not enforced)."""
        self._now = now or (lambda: datetime.now(UTC))
        self._symbol_limit = symbol_limit
        self._lock = threading.RLock()
        self._quotes: dict[str, Quote] = {}
        self._wanted: set[str] = set()
        self._connection: _Connection | None = None
        self._down = False
        self._silent = False
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self._fail_next: BrokerError | None = None

    # --- test controls --------------------------------------------------------------------------

    def set_quote(self, symbol: str, bid: Decimal | str, ask: Decimal | str, *, bid_size: Decimal | str = "100",
                  ask_size: Decimal | str = "100", at: datetime | None = None) -> Quote:
        quote = Quote(symbol.upper(), Decimal(bid), Decimal(ask), Decimal(bid_size), Decimal(ask_size),
                      (at or self._now()).astimezone(UTC))
        with self._lock:
            self._quotes[quote.symbol] = quote
            conn = self._connection
            if conn is not None and not self._silent and quote.symbol in conn.symbols:
                _post(conn.loop, partial(conn.queue.put_nowait, quote))
        return quote

    def drop_stream(self, *, stay_down: bool = False) -> int:
        """End the live connection; with `stay_down` no reconnect until allow_reconnect()."""
        with self._lock:
            conn, self._connection = self._connection, None
            self._down = stay_down
            if conn is not None:
                _post(conn.loop, partial(conn.queue.put_nowait, None))
            return 0 if conn is None else 1

    def allow_reconnect(self) -> None:
        with self._lock:
            self._down = False
            waiters, self._waiters = self._waiters, []
        for loop, waiter in waiters:
            _post(loop, waiter.set)

    def silence(self) -> None:
        with self._lock:
            self._silent = True

    def resume(self) -> None:
        with self._lock:
            self._silent = False

    def connections(self) -> int:
        with self._lock:
            return 0 if self._connection is None else 1

    def stream_subscribed(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._connection.symbols) if self._connection is not None else frozenset()

    def fail_next_latest_quote(self, error: BrokerError) -> None:
        with self._lock:
            self._fail_next = error

    # --- the port -------------------------------------------------------------------------------

    def latest_quote(self, symbol: str) -> Quote | None:
        with self._lock:
            error, self._fail_next = self._fail_next, None
            if error is not None:
                raise error
            return self._quotes.get(symbol.strip().upper())

    def subscribed(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._wanted)

    @property
    def symbol_limit(self) -> int | None:
        return self._symbol_limit

    def subscribe(self, symbols: Iterable[str]) -> None:
        with self._lock:
            self._wanted |= _symbols(symbols)
            if self._connection is not None:
                self._connection.symbols = set(self._wanted)

    def unsubscribe(self, symbols: Iterable[str]) -> None:
        with self._lock:
            self._wanted -= _symbols(symbols)
            if self._connection is not None:
                self._connection.symbols = set(self._wanted)

    async def quotes(self, symbols: Iterable[str], on_quote: QuoteHandler,
                     on_connect: ConnectHandler | None = None) -> None:
        with self._lock:
            self._wanted |= _symbols(symbols)
        while True:
            conn = await self._connect()
            try:
                if on_connect is not None:
                    try:
                        await on_connect()
                    except Exception:
                        log.exception("market-data reconnect handler failed")
                while (quote := await conn.queue.get()) is not None:
                    with self._lock:
                        if quote.symbol not in self._wanted:
                            continue
                    try:
                        await on_quote(quote)
                    except Exception:
                        log.exception("quote for %s could not be handled", quote.symbol)
            finally:
                with self._lock:
                    if self._connection is conn:
                        self._connection = None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                if self._connection is not None:
                    raise RuntimeError("quotes() is already running on this FakeMarketData")
                if not self._down:
                    conn = _Connection(loop, asyncio.Queue(), set(self._wanted))
                    self._connection = conn
                    return conn
                waiter = asyncio.Event()
                self._waiters.append((loop, waiter))
            await waiter.wait()
