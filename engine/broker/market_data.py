"""Market-data adapter over alpaca-py: StockHistoricalDataClient for the latest quote,
StockDataStream for the quote stream. Translates quotes and errors; decides nothing.

alpaca-py hands prices and sizes over as floats: each becomes a Decimal through str(), which gives
back the decimal the venue sent, and no arithmetic is ever done on the float.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from alpaca.data.enums import DataFeed
from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.live import StockDataStream
from alpaca.data.requests import StockLatestQuoteRequest

from engine.broker.alpaca import _TimeoutAdapter, translate
from engine.broker.market_port import ConnectHandler, Quote, QuoteHandler
from engine.broker.port import BrokerAmbiguous, BrokerError, BrokerRejected, BrokerUnauthorized
from engine.broker.redaction import redact, register_secret

log = logging.getLogger("smartexec.alpaca.market_data")
STREAM_FEEDS = ("iex", "sip")  # the feeds alpaca-py's StockDataStream takes
IEX_SYMBOL_LIMIT = 30  # symbols per quote stream on Alpaca's free (iex) plan
# Stream errors after which retrying cannot help (Alpaca's codes 402, 409).
FATAL_STREAM_ERRORS = ("auth failed", "insufficient subscription")


def _decimal(value: Any) -> Decimal:
    if value is None:
        raise BrokerAmbiguous("a quote without a price or size")
    return Decimal(str(value))


def _utc(at: datetime) -> datetime:
    return (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).astimezone(UTC)


def to_quote(quote: Any) -> Quote:
    """alpaca-py's Quote (stream or REST) as the port's."""
    return Quote(symbol=str(quote.symbol), bid=_decimal(quote.bid_price), ask=_decimal(quote.ask_price),
                 bid_size=_decimal(quote.bid_size), ask_size=_decimal(quote.ask_size), at=_utc(quote.timestamp))


def _symbols(symbols: Iterable[str]) -> set[str]:
    if isinstance(symbols, str):  # one symbol, not its letters
        symbols = [symbols]
    return {s.strip().upper() for s in symbols if s.strip()}


class _QuoteStream(StockDataStream):
    """StockDataStream that reports every (re)connect once subscribed, stops on refused keys, and
    takes subscription changes from its own loop (the SDK's subscribe blocks on that loop)."""

    def __init__(self, *args: Any, on_connect: ConnectHandler | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_connect = on_connect
        self._fresh = False  # connected and authenticated, subscription not yet sent
        self.live = False  # the subscription went out on this connection: changes must be sent
        self.fatal: BrokerError | None = None

    async def _start_ws(self) -> None:
        self.live = False
        await super()._start_ws()
        self._fresh = True

    async def _auth(self) -> None:
        try:
            await super()._auth()
        except ValueError as exc:
            text = redact(str(exc))
            if any(word in text for word in FATAL_STREAM_ERRORS):
                self.fatal = BrokerUnauthorized(f"Alpaca's market-data stream refused the keys ({text})")
                await self.stop_ws()
            else:
                log.warning("market-data stream refused the connection (%s); retrying", text)
            raise

    async def _send_subscribe_msg(self) -> None:
        # Set before the SDK builds its message: a change made after this point is sent on its own.
        self.live = True
        await super()._send_subscribe_msg()
        if self._fresh:
            self._fresh = False
            if self._on_connect is not None:
                try:
                    await self._on_connect()
                except Exception:
                    log.exception("market-data reconnect handler failed")

    async def close(self) -> None:
        self.live = False
        await super().close()


class AlpacaMarketData:
    """The `MarketData` port over alpaca-py. `data_url`/`stream_url` are the clients'
    url_override (the local venue: `venue.data_url`, `venue.market_data_url(feed)`); `stale_after`
    is the SDK's data_timeout: reconnect after that many seconds without a quote (None: never)."""

    def __init__(self, api_key: str, secret_key: str, *, feed: str = "iex", data_url: str | None = None,
                 stream_url: str | None = None, request_timeout: float = 10.0,
                 stale_after: float | None = None) -> None:
        if feed not in STREAM_FEEDS:
            raise ValueError(f"feed must be one of {STREAM_FEEDS}, was {feed!r}")
        register_secret(api_key, secret_key)  # masked in every log line from now on
        self._keys = (api_key, secret_key)
        self._feed = DataFeed(feed)
        self._client = StockHistoricalDataClient(api_key, secret_key, url_override=data_url)
        self._client._retry = 0  # a read the caller repeats itself: no blind 3 s SDK retries
        adapter = _TimeoutAdapter(request_timeout)
        self._client._session.mount("http://", adapter)
        self._client._session.mount("https://", adapter)
        self._stream_url = stream_url
        self._stale_after = stale_after
        self._lock = threading.Lock()
        self._wanted: set[str] = set()
        self._stream: _QuoteStream | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None
        self._on_quote: QuoteHandler | None = None
        self._sending: set[asyncio.Future[None]] = set()

    def __repr__(self) -> str:  # never show the keys
        return f"AlpacaMarketData(feed={self._feed.value})"

    # --- REST -----------------------------------------------------------------------------------

    def latest_quote(self, symbol: str) -> Quote | None:
        symbol = symbol.strip().upper()
        request = StockLatestQuoteRequest(symbol_or_symbols=symbol, feed=self._feed)
        try:
            quotes = self._client.get_stock_latest_quote(request)
        except Exception as exc:
            error = translate(exc)
            if isinstance(error, BrokerRejected) and error.status == 403:  # the data API's "forbidden"
                raise BrokerUnauthorized(f"Alpaca's data API refused the keys ({error})") from None
            raise error from None
        if not isinstance(quotes, dict):
            raise BrokerAmbiguous(f"the latest quote answered {type(quotes).__name__}")
        quote = quotes.get(symbol)
        try:
            return None if quote is None else to_quote(quote)
        except ArithmeticError:  # Decimal's InvalidOperation
            raise BrokerAmbiguous(f"an unreadable quote for {symbol}") from None

    # --- subscription ---------------------------------------------------------------------------

    def subscribed(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._wanted)

    @property
    def symbol_limit(self) -> int | None:
        # Alpaca refuses a subscription beyond it with error 405 (symbol limit exceeded), which
        # alpaca-py only logs: the caller must not ask for more.
        return IEX_SYMBOL_LIMIT if self._feed is DataFeed.IEX else None

    def subscribe(self, symbols: Iterable[str]) -> None:
        with self._lock:
            self._wanted |= _symbols(symbols)
        self._on_stream_loop()

    def unsubscribe(self, symbols: Iterable[str]) -> None:
        with self._lock:
            self._wanted -= _symbols(symbols)
        self._on_stream_loop()

    def _on_stream_loop(self) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # that loop has closed: the stream is gone
                loop.call_soon_threadsafe(self._apply)

    def _apply(self) -> None:
        """On the stream's loop: make the SDK's quote handlers match the wanted symbols, and tell
        the venue if the subscription is already out on this connection."""
        stream, wanted = self._stream, self.subscribed()
        if self._changed is not None:
            self._changed.set()
        if stream is None:
            return
        handlers = stream._handlers["quotes"]
        added = sorted(wanted - set(handlers))
        removed = sorted(set(handlers) - wanted)
        for symbol in added:
            handlers[symbol] = self._handle
        for symbol in removed:
            del handlers[symbol]
        if stream.live and stream._ws is not None:
            if added:
                self._send(stream._send_subscribe_msg())
            if removed:
                self._send(stream._send_unsubscribe_msg("quotes", removed))

    def _send(self, message: Any) -> None:
        async def send() -> None:
            try:
                await message
            except Exception as exc:  # the connection went: the reconnect subscribes afresh
                log.debug("market-data subscription change not sent: %s", type(exc).__name__)

        task = asyncio.ensure_future(send())
        self._sending.add(task)  # kept alive until sent
        task.add_done_callback(self._sending.discard)

    async def _handle(self, raw: Any) -> None:
        on_quote = self._on_quote
        if on_quote is None:
            return
        try:
            quote = to_quote(raw)
        except (BrokerError, ArithmeticError, AttributeError):
            log.error("an unreadable quote for %s was dropped", getattr(raw, "symbol", "?"))
            return
        try:
            await on_quote(quote)
        except Exception:
            log.exception("quote for %s could not be handled", quote.symbol)

    # --- stream ---------------------------------------------------------------------------------

    async def quotes(self, symbols: Iterable[str], on_quote: QuoteHandler,
                     on_connect: ConnectHandler | None = None) -> None:
        if self._stream is not None:
            raise RuntimeError("quotes() is already running on this AlpacaMarketData")
        api_key, secret_key = self._keys
        stream = _QuoteStream(api_key, secret_key, feed=self._feed, url_override=self._stream_url,
                              data_timeout=self._stale_after, on_connect=on_connect)
        with self._lock:
            self._wanted |= _symbols(symbols)
        self._on_quote = on_quote
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self._stream = stream
        runner: asyncio.Future[None] | None = None
        try:
            self._apply()
            # The SDK spins (sleep(0) in a loop) until it has a subscription: wait here instead.
            while not stream._handlers["quotes"]:
                self._changed.clear()
                await self._changed.wait()
            # The SDK runs in a task of its own, as AlpacaBroker.stream does (cpython #86296: the
            # wait_for it reads with can swallow a cancel); cancelling this call stops it.
            runner = asyncio.ensure_future(stream._run_forever())
            await asyncio.wait([runner])
            runner.result()
            if stream.fatal is not None:
                raise stream.fatal
            raise BrokerAmbiguous("the market-data stream stopped")
        finally:
            self._stream = None
            self._loop = None
            self._changed = None
            self._on_quote = None
            if runner is not None:
                await stream.stop_ws()
                runner.cancel()
                await asyncio.shield(stream.close())
                await asyncio.wait([runner], timeout=5)
