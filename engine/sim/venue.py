"""The local Alpaca-compatible venue: one aiohttp server on 127.0.0.1 serving REST under `/v2`,
the trade_updates websocket at `/stream` and test controls under `/admin`.

Everything that touches venue state runs on the venue's event loop. The Python API below may be
called from any thread: calls from elsewhere are handed to that loop and wait for the result, so
a synchronous test can drive a venue running in a background thread (`running_in_thread`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import copy
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, TypeVar

from aiohttp import web

from engine.sim.accounts import Position, Valuation
from engine.sim.admin import AdminApi
from engine.sim.clock import SimClock
from engine.sim.events import TradeEvent
from engine.sim.exchange import Exchange
from engine.sim.faults import Faults
from engine.sim.market_data import MarketDataApi
from engine.sim.matching import Book
from engine.sim.md_stream import MarketDataHub
from engine.sim.orders import SimOrder
from engine.sim.rest import RestApi
from engine.sim.scenarios import Scenario, TimeZero, load_scenario
from engine.sim.sessions import ET
from engine.sim.stream import StreamHub
from engine.sim.submissions import Submission, SubmissionLog

log = logging.getLogger("smartexec.sim")
T = TypeVar("T")
# A Wednesday morning in regular hours, for venues started without a scenario or clock.
DEFAULT_START = datetime(2024, 6, 12, 10, 0, tzinfo=ET)
STREAM_PATHS = ("/stream", "/stream/")
ALPACA_STREAM_CONNECTIONS = 1  # trade_updates connections Alpaca allows per key
TICK = 0.02  # seconds between checks for due quote points and session changes


def _decimal(value: Decimal | float | str) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


class Venue:
    def __init__(self, clock: SimClock | None = None, api_key: str = "sim-key", secret_key: str = "sim-secret",
                 rate_limit_per_min: int | None = 200, market_slippage: Decimal = Decimal(0), *,
                 initial_cash: Decimal = Decimal(100_000), host: str = "127.0.0.1",
                 stream_connections_per_key: int | None = ALPACA_STREAM_CONNECTIONS,
                 stream_heartbeat: float | None = None) -> None:
        """`stream_connections_per_key`: authorized trade_updates connections the key may hold at
        once: one, as at Alpaca. None lifts the limit (a test that runs two engines on one
        account to study what each records, which Alpaca would not let both stream)."""
        self.clock = clock or SimClock(start=DEFAULT_START)
        self.api_key = api_key
        self.secret_key = secret_key
        self.host = host
        self.faults = Faults()
        self.hub = StreamHub(self.faults, api_key, secret_key, connections_per_key=stream_connections_per_key,
                             heartbeat=stream_heartbeat)
        self.exchange = Exchange(self.clock, self.faults, market_slippage=_decimal(market_slippage),
                                 initial_cash=_decimal(initial_cash), publish=self.hub.publish)
        self.submissions_log = SubmissionLog()
        self._rest = RestApi(self.exchange, self.faults, self.submissions_log, api_key=api_key,
                             secret_key=secret_key, rate_limit_per_min=rate_limit_per_min)
        # The Data API's quotes (REST and the /v2/{feed} websocket); `market_data` holds its controls.
        self.market_data_hub = MarketDataHub(api_key, secret_key, connections_per_key=ALPACA_STREAM_CONNECTIONS)
        self._market_data = MarketDataApi(self.exchange, self.market_data_hub, self._on_loop)
        self.market_data = self._market_data.controls
        self.faults.bind_market_data(self.market_data.resume)
        self.faults.bind_streams(drop=lambda abrupt: self._on_loop(self.hub.drop_all, abrupt),
                                 mute=lambda muted: self._on_loop(self.hub.set_muted, muted))
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"Venue({self.rest_url if self.port else 'not started'}, {self.clock!r})"

    # --- running --------------------------------------------------------------------------------

    @property
    def rest_url(self) -> str:
        """For `TradingClient(url_override=...)` (no trailing slash)."""
        return f"http://{self.host}:{self.port}"

    @property
    def stream_url(self) -> str:
        """For `TradingStream(url_override=...)`."""
        return f"ws://{self.host}:{self.port}/stream"

    @property
    def data_url(self) -> str:
        """For `StockHistoricalDataClient(url_override=...)` (the same host as the trading API)."""
        return self.rest_url

    def market_data_url(self, feed: str = "iex") -> str:
        """For `StockDataStream(url_override=...)`: the market-data websocket of `feed`."""
        return f"ws://{self.host}:{self.port}/v2/{feed}"

    async def start(self, port: int = 0) -> None:
        """Serve on `port` (0: any free port) from the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        app = web.Application()
        self._rest.install(app)
        self._market_data.install(app)
        # Alpaca's documented path (wss://paper-api.alpaca.markets/stream), with and without a slash.
        for path in STREAM_PATHS:
            app.router.add_get(path, self.hub.handle)
        AdminApi(self).install(app)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.exchange.sync()
        self._ticker = asyncio.create_task(self._tick())
        log.info("local venue at %s (stream %s)", self.rest_url, self.stream_url)

    async def _tick(self) -> None:
        # Moves a running clock's quote paths and sessions along; a manual clock only moves on
        # advance(), but someone may call clock.advance() directly, which this picks up too.
        while True:
            await asyncio.sleep(TICK)
            try:
                self.exchange.sync()
            except Exception:
                log.exception("venue tick failed")

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        await self.hub.close()
        await self.market_data_hub.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._loop = None
        self._loop_thread = None

    @classmethod
    @contextlib.contextmanager
    def running_in_thread(cls, clock: SimClock | None = None, *, scenarios: Iterable[str | Path | Scenario] = (),
                          port: int = 0, **kwargs: Any) -> Iterator[Venue]:
        """A started venue on its own event loop in a daemon thread, stopped on exit.

        Without a clock, a manual clock set at the first scenario's start (or DEFAULT_START)."""
        loaded = [load_scenario(s) for s in scenarios]
        if clock is None:
            clock = SimClock(start=loaded[0].start if loaded else DEFAULT_START)
        venue = cls(clock, **kwargs)
        for scenario in loaded:
            venue.load_scenario(scenario)
        loop = asyncio.new_event_loop()
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(venue.start(port))
            except BaseException as exc:
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(venue.stop())
                loop.close()

        thread = threading.Thread(target=run, name="sim-venue", daemon=True)
        thread.start()
        if not started.wait(15):
            raise RuntimeError("the venue did not start within 15 s")
        if failure:
            raise failure[0]
        try:
            yield venue
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(15)

    def _on_loop(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn` where venue state lives: directly on the venue's loop (or before it starts),
        else handed to the loop and waited for."""
        loop = self._loop
        if loop is None or loop.is_closed() or threading.get_ident() == self._loop_thread:
            return fn(*args)
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def call() -> None:
            try:
                done.set_result(fn(*args))
            except BaseException as exc:
                done.set_exception(exc)

        loop.call_soon_threadsafe(call)
        return done.result(timeout=30)

    # --- market and time ------------------------------------------------------------------------

    def load_scenario(self, scenario: str | Path | Scenario, *, start: TimeZero | None = None) -> Scenario:
        """Play `scenario` on its symbol (replacing any earlier one for that symbol). Its time zero
        is the symbol's first order (`start="on_first_order"`) or now (`"on_load"`); default:
        whatever the scenario file says."""
        loaded = load_scenario(scenario)

        def load() -> None:
            self.exchange.sync()
            self.exchange.load_scenario(loaded, start)

        self._on_loop(load)
        for rule in loaded.rejects:
            self.faults.reject_orders(symbol=loaded.symbol, client_order_id=rule.client_order_id,
                                      order_class=rule.order_class, count=rule.count, status=rule.status,
                                      code=rule.code, message=rule.message, via=rule.via)
        return loaded

    def advance(self, seconds: float) -> datetime:
        """Move the simulated clock forward and process everything due meanwhile (quote points,
        matching, session open/close and expiry), emitting the events. Returns the new time."""
        self.clock.advance(seconds)
        self._on_loop(self.exchange.sync)
        return self.exchange.now

    def sync(self) -> None:
        self._on_loop(self.exchange.sync)

    def set_quote(self, symbol: str, bid: Decimal | float | str, ask: Decimal | float | str, *,
                  bid_size: Decimal | float | str = 100, ask_size: Decimal | float | str = 100) -> None:
        """Replace the quote for `symbol` now; resting orders are matched against it."""
        def apply() -> None:
            self.exchange.sync()
            self.exchange.set_quote(symbol.upper(), _decimal(bid), _decimal(ask), _decimal(bid_size),
                                    _decimal(ask_size))

        self._on_loop(apply)

    def quote(self, symbol: str) -> Book | None:
        return self._on_loop(lambda: copy.copy(self.exchange.market.books.get(symbol.upper())))

    # --- inspection -----------------------------------------------------------------------------

    def received(self, client_order_id: str) -> Submission:
        """Every POST /v2/orders attempt for this client_order_id (duplicates and faulted ones
        included), with the order it created, if any."""
        def read() -> Submission:
            entry = self.submissions_log.get(client_order_id)
            entry.order = copy.deepcopy(self.exchange.store.by_client_id.get(client_order_id))
            return entry

        return self._on_loop(read)

    def submissions(self) -> list[Submission]:
        return self.submissions_log.all()

    def orders(self, symbol: str | None = None) -> list[SimOrder]:
        """Copies of every order (legs included), oldest first."""
        return self._on_loop(lambda: copy.deepcopy(
            [o for o in self.exchange.store.orders if symbol is None or o.symbol == symbol.upper()]))

    def order(self, client_order_id: str) -> SimOrder | None:
        return self._on_loop(lambda: copy.deepcopy(self.exchange.store.by_client_id.get(client_order_id)))

    def position(self, symbol: str) -> Position | None:
        return self._on_loop(lambda: copy.copy(self.exchange.account.positions.get(symbol.upper())))

    def positions(self) -> list[Position]:
        return self._on_loop(lambda: [copy.copy(p) for p in self.exchange.account.positions.values()])

    def account(self) -> Valuation:
        """Cash, long and short market value (equity is a property)."""
        return self._on_loop(self.exchange.margin.valuation)

    def buying_power(self) -> Decimal:
        return self._on_loop(self.exchange.margin.buying_power)

    def events(self) -> list[TradeEvent]:
        """Every trade_updates event the venue produced, before any event fault was applied."""
        return self._on_loop(lambda: list(self.exchange.tape.log))

    def listening(self) -> int:
        """How many websocket connections are listening to trade_updates now."""
        return self._on_loop(lambda: self.hub.listening_count)

    def reject_next(self, *, symbol: str | None = None, client_order_id: str | None = None,
                    order_class: str | None = None, count: int | None = 1, status: int = 422, code: int = 42210000,
                    message: str = "order rejected by the venue", via: Literal["http", "event"] = "http") -> None:
        """Refuse the next order(s) for a symbol, client_order_id glob and/or order class; see
        Faults.reject_orders."""
        self.faults.reject_orders(symbol=symbol, client_order_id=client_order_id, order_class=order_class,
                                  count=count, status=status, code=code, message=message, via=via)
