"""The venue's market data, as alpaca-py's StockDataStream and StockHistoricalDataClient see it
(unmodified, through url_override), and the raw stream protocol under it (Alpaca's docs:
market-data-api/stock-pricing-data/realtime.md and historical.md)."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgpack
import pytest
import requests
from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.live import StockDataStream
from alpaca.data.models import Quote
from alpaca.data.requests import StockLatestQuoteRequest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from engine.sim import Venue
from engine.sim.testing import wait_until

SUBSCRIPTION_KEYS = {"T", "trades", "quotes", "bars", "updatedBars", "dailyBars", "statuses", "lulds",
                     "corrections", "cancelErrors"}


class Raw:
    """A raw market-data websocket client; `msgpack` sends Content-Type: application/msgpack."""

    def __init__(self, venue: Venue, feed: str = "iex", *, use_msgpack: bool = False) -> None:
        headers = {"Content-Type": "application/msgpack"} if use_msgpack else {}
        self.msgpack = use_msgpack
        self._opened = connect(venue.market_data_url(feed), additional_headers=headers, open_timeout=5)
        self.ws: ClientConnection = self._opened.__enter__()

    def send(self, message: dict[str, Any]) -> None:
        self.ws.send(msgpack.packb(message) if self.msgpack else json.dumps(message))

    def recv(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        frame = self.ws.recv(timeout=timeout)
        if self.msgpack:
            assert isinstance(frame, bytes)
            return msgpack.unpackb(frame)  # type: ignore[no-any-return]
        assert isinstance(frame, str)  # JSON comes as text frames
        return json.loads(frame)  # type: ignore[no-any-return]

    def quiet(self, seconds: float = 0.3) -> list[dict[str, Any]]:
        try:
            return self.recv(timeout=seconds)
        except TimeoutError:
            return []

    def login(self, venue: Venue) -> Raw:
        assert self.recv() == [{"T": "success", "msg": "connected"}]
        self.send({"action": "auth", "key": venue.api_key, "secret": venue.secret_key})
        assert self.recv() == [{"T": "success", "msg": "authenticated"}]
        return self

    def close(self) -> None:
        self._opened.__exit__(None, None, None)


@pytest.fixture
def raw(venue: Venue) -> Iterator[list[Raw]]:
    opened: list[Raw] = []
    yield opened
    for client in opened:
        client.close()


def open_raw(venue: Venue, opened: list[Raw], feed: str = "iex", **kwargs: Any) -> Raw:
    client = Raw(venue, feed, **kwargs)
    opened.append(client)
    return client


class QuoteListener:
    """alpaca-py's StockDataStream on a thread of its own, as an engine embeds it."""

    def __init__(self, venue: Venue, *symbols: str, feed: str = "iex") -> None:
        self.venue = venue
        self.quotes: queue.Queue[Quote] = queue.Queue()
        self.stream = StockDataStream(venue.api_key, venue.secret_key, url_override=venue.market_data_url(feed))
        self.stream._reconnect_min_backoff = 0.05
        self.stream.subscribe_quotes(self._on_quote, *symbols)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _on_quote(self, quote: Quote) -> None:
        self.quotes.put(quote)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.stream._run_forever()  # type: ignore[no-untyped-call]

    def start(self, symbol: str) -> QuoteListener:
        self._thread.start()
        wait_until(lambda: symbol in self.venue.market_data.subscribed(), what="the subscription")
        return self

    def next(self, timeout: float = 5.0) -> Quote:
        try:
            return self.quotes.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no quote within {timeout}s") from None

    def quiet(self, seconds: float = 0.3) -> list[Quote]:
        time.sleep(seconds)
        got = []
        while not self.quotes.empty():
            got.append(self.quotes.get())
        return got

    def stop(self) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self.stream.stop_ws(), self._loop).result(5)
        self.venue.market_data.drop()  # the SDK notices stop_ws() between receives; a close wakes it
        self._thread.join(10)


@pytest.fixture
def listeners() -> Iterator[list[QuoteListener]]:
    started: list[QuoteListener] = []
    yield started
    for listener in started:
        listener.stop()


def listen(venue: Venue, started: list[QuoteListener], symbol: str = "AAPL", **kwargs: Any) -> QuoteListener:
    listener = QuoteListener(venue, symbol, **kwargs)
    started.append(listener)
    return listener.start(symbol)


# --- alpaca-py ---------------------------------------------------------------------------------


def test_latest_quote_through_the_historical_data_client(venue: Venue) -> None:
    venue.set_quote("AAPL", "187.45", "187.48", bid_size=300, ask_size=200)
    client = StockHistoricalDataClient(venue.api_key, venue.secret_key, url_override=venue.data_url)
    quotes = client.get_stock_latest_quote(StockLatestQuoteRequest(symbol_or_symbols=["AAPL", "ZZZZ"]))
    assert isinstance(quotes, dict)
    assert set(quotes) == {"AAPL"}  # a symbol without a quote is left out
    quote = quotes["AAPL"]
    assert (quote.bid_price, quote.ask_price, quote.bid_size, quote.ask_size) == (187.45, 187.48, 300, 200)
    assert quote.timestamp == venue.clock.now()


def test_stream_pushes_each_quote_change_with_the_simulated_time(venue: Venue,
                                                                 listeners: list[QuoteListener]) -> None:
    venue.load_scenario("clean_fill", start="on_load")
    listener = listen(venue, listeners)
    venue.set_quote("AAPL", "187.40", "187.44", bid_size=50, ask_size=70)
    first = listener.next()
    assert (first.symbol, first.bid_price, first.ask_price, first.bid_size, first.ask_size) == (
        "AAPL", 187.40, 187.44, 50, 70)
    assert first.timestamp == venue.clock.now()
    start = venue.clock.now()
    venue.advance(2)  # two scenario points, t = 1 and t = 2: each its own quote at its own instant
    steps = [listener.next(), listener.next()]
    assert [(q.bid_price, q.ask_price) for q in steps] == [(187.50, 187.53), (187.60, 187.63)]
    assert [q.timestamp for q in steps] == [start + timedelta(seconds=1), start + timedelta(seconds=2)]
    assert all(q.timestamp.utcoffset() == timedelta(0) for q in steps)


def test_only_subscribed_symbols_are_pushed(venue: Venue, listeners: list[QuoteListener]) -> None:
    listener = listen(venue, listeners)
    venue.set_quote("MSFT", "410.00", "410.05")
    venue.set_quote("AAPL", "187.00", "187.02")
    assert [q.symbol for q in listener.quiet()] == ["AAPL"]


def test_the_sdk_reconnects_and_resubscribes_after_a_drop(venue: Venue, listeners: list[QuoteListener]) -> None:
    listener = listen(venue, listeners)
    assert venue.market_data.drop() == 1
    wait_until(lambda: "AAPL" in venue.market_data.subscribed(), timeout=10, what="the resubscription")
    venue.set_quote("AAPL", "186.00", "186.03")
    assert listener.next().bid_price == 186.00


def test_a_silent_feed_sends_nothing_until_resumed(venue: Venue, listeners: list[QuoteListener]) -> None:
    listener = listen(venue, listeners)
    venue.market_data.silence()
    venue.set_quote("AAPL", "186.00", "186.03")
    assert listener.quiet() == []
    assert venue.market_data.connections() == 1  # still connected: only the data stopped
    venue.market_data.resume()
    venue.set_quote("AAPL", "186.10", "186.13")
    assert listener.next().bid_price == 186.10


def test_clearing_the_faults_ends_a_silence(venue: Venue, listeners: list[QuoteListener]) -> None:
    listener = listen(venue, listeners)
    venue.market_data.silence()
    venue.faults.clear()
    venue.set_quote("AAPL", "186.20", "186.23")
    assert listener.next().bid_price == 186.20


# --- latest-quote REST -------------------------------------------------------------------------


def _get(venue: Venue, path: str, keys: bool = True, **params: str) -> requests.Response:
    headers = {"APCA-API-KEY-ID": venue.api_key, "APCA-API-SECRET-KEY": venue.secret_key} if keys else {}
    return requests.get(venue.data_url + path, params=params, headers=headers, timeout=5)


def test_single_symbol_latest_quote_route(venue: Venue) -> None:
    venue.set_quote("AAPL", "187.45", "187.48", bid_size=300, ask_size=200)
    answer = _get(venue, "/v2/stocks/AAPL/quotes/latest", feed="iex")
    assert answer.status_code == 200
    body = answer.json()
    assert body["symbol"] == "AAPL"
    quote = body["quote"]
    assert {k: quote[k] for k in ("bp", "ap", "bs", "as")} == {"bp": 187.45, "ap": 187.48, "bs": 300, "as": 200}
    assert datetime.fromisoformat(quote["t"].replace("000Z", "+00:00")) == venue.clock.now()
    assert quote["t"].endswith("Z")
    assert _get(venue, "/v2/stocks/ZZZZ/quotes/latest").status_code == 404
    assert _get(venue, "/v2/stocks/AAPL/quotes/latest", feed="nasdaq").status_code == 400
    assert _get(venue, "/v2/stocks/AAPL/quotes/latest", keys=False).status_code == 401


def test_multi_symbol_latest_quote_route(venue: Venue) -> None:
    venue.set_quote("AAPL", "187.45", "187.48")
    venue.set_quote("MSFT", "410.00", "410.05")
    body = _get(venue, "/v2/stocks/quotes/latest", symbols="AAPL,MSFT,ZZZZ").json()
    assert set(body["quotes"]) == {"AAPL", "MSFT"}
    assert body["quotes"]["MSFT"]["ap"] == 410.05
    assert _get(venue, "/v2/stocks/quotes/latest").status_code == 400


# --- raw protocol ------------------------------------------------------------------------------


def test_json_handshake_subscribe_ack_and_quotes(venue: Venue, raw: list[Raw]) -> None:
    client = open_raw(venue, raw).login(venue)
    client.send({"action": "subscribe", "quotes": ["AAPL"], "trades": ["MSFT"]})
    [ack] = client.recv()
    assert set(ack) == SUBSCRIPTION_KEYS
    assert ack["T"] == "subscription" and ack["quotes"] == ["AAPL"] and ack["trades"] == ["MSFT"]
    assert ack["corrections"] == ["MSFT"] and ack["bars"] == []
    venue.set_quote("AAPL", "187.45", "187.48", bid_size=300, ask_size=200)
    [quote] = client.recv()
    assert quote["T"] == "q" and quote["S"] == "AAPL"
    assert (quote["bp"], quote["ap"], quote["bs"], quote["as"]) == (187.45, 187.48, 300, 200)
    assert {"bx", "ax", "c", "z"} <= set(quote)
    assert isinstance(quote["t"], str) and quote["t"].endswith("Z")
    client.send({"action": "unsubscribe", "quotes": ["AAPL"]})
    [ack] = client.recv()
    assert ack["quotes"] == [] and ack["trades"] == ["MSFT"]
    venue.set_quote("AAPL", "187.50", "187.52")
    assert client.quiet() == []


def test_msgpack_framing_with_a_timestamp_extension(venue: Venue, raw: list[Raw]) -> None:
    client = open_raw(venue, raw, use_msgpack=True).login(venue)
    client.send({"action": "subscribe", "quotes": ["AAPL"]})
    assert client.recv()[0]["quotes"] == ["AAPL"]
    venue.set_quote("AAPL", "187.45", "187.48")
    [quote] = client.recv()
    assert isinstance(quote["t"], msgpack.Timestamp)
    assert quote["t"].to_datetime() == venue.clock.now()
    assert quote["bp"] == 187.45


def test_wrong_keys_get_402_and_the_socket_closes(venue: Venue, raw: list[Raw]) -> None:
    client = open_raw(venue, raw)
    assert client.recv() == [{"T": "success", "msg": "connected"}]
    client.send({"action": "auth", "key": venue.api_key, "secret": "wrong"})
    assert client.recv() == [{"T": "error", "code": 402, "msg": "auth failed"}]
    with pytest.raises(ConnectionClosed):
        client.recv()


def test_a_second_connection_gets_406_and_is_closed_while_the_first_keeps_its_quotes(
        venue: Venue, raw: list[Raw]) -> None:
    first = open_raw(venue, raw).login(venue)
    first.send({"action": "subscribe", "quotes": ["AAPL"]})
    first.recv()
    second = open_raw(venue, raw)
    assert second.recv() == [{"T": "success", "msg": "connected"}]
    second.send({"action": "auth", "key": venue.api_key, "secret": venue.secret_key})
    assert second.recv() == [{"T": "error", "code": 406, "msg": "connection limit exceeded"}]
    with pytest.raises(ConnectionClosed):
        second.recv()
    venue.set_quote("AAPL", "187.45", "187.48")
    assert first.recv()[0]["T"] == "q"
    first.close()  # the key is free again once the first is gone
    wait_until(lambda: venue.market_data.connections() == 0, what="the first connection to go")
    open_raw(venue, raw).login(venue)


def test_errors_before_auth_bad_syntax_and_double_auth(venue: Venue, raw: list[Raw]) -> None:
    client = open_raw(venue, raw)
    client.recv()
    client.send({"action": "subscribe", "quotes": ["AAPL"]})
    assert client.recv() == [{"T": "error", "code": 401, "msg": "not authenticated"}]
    client.ws.send("not json")
    assert client.recv() == [{"T": "error", "code": 400, "msg": "invalid syntax"}]
    client.send({"action": "auth", "key": venue.api_key, "secret": venue.secret_key})
    client.recv()
    client.send({"action": "auth", "key": venue.api_key, "secret": venue.secret_key})
    assert client.recv() == [{"T": "error", "code": 403, "msg": "already authenticated"}]
    client.send({"action": "subscribe", "quotes": "AAPL"})
    assert client.recv() == [{"T": "error", "code": 400, "msg": "invalid syntax"}]


def test_iex_symbol_limit_is_405_and_keeps_the_subscription(venue: Venue, raw: list[Raw]) -> None:
    client = open_raw(venue, raw).login(venue)
    client.send({"action": "subscribe", "quotes": [f"S{i}" for i in range(30)]})
    assert len(client.recv()[0]["quotes"]) == 30
    client.send({"action": "subscribe", "trades": ["AAPL"]})
    assert client.recv() == [{"T": "error", "code": 405, "msg": "symbol limit exceeded"}]
    assert "AAPL" not in venue.market_data.subscribed() and len(venue.market_data.subscribed()) == 30
    client.close()
    wait_until(lambda: venue.market_data.connections() == 0, what="the connection to go")
    sip = open_raw(venue, raw, "sip").login(venue)
    sip.send({"action": "subscribe", "quotes": [f"S{i}" for i in range(40)]})
    assert len(sip.recv()[0]["quotes"]) == 40


def test_drop_closes_market_data_sockets_only(venue: Venue, raw: list[Raw]) -> None:
    client = open_raw(venue, raw).login(venue)
    assert venue.market_data.drop() == 1
    with pytest.raises(ConnectionClosed):
        client.recv()
    assert venue.market_data.connections() == 0


def test_admin_routes_silence_and_drop(venue: Venue, raw: list[Raw]) -> None:
    client = open_raw(venue, raw).login(venue)
    client.send({"action": "subscribe", "quotes": ["AAPL"]})
    client.recv()
    base = venue.rest_url
    assert requests.get(f"{base}/admin/market_data", timeout=5).json() == {
        "connections": 1, "silent": False, "quotes": ["AAPL"]}
    assert requests.post(f"{base}/admin/faults/market_data/silence", json={}, timeout=5).json() == {"ok": True}
    venue.set_quote("AAPL", "187.45", "187.48")
    assert client.quiet() == []
    requests.post(f"{base}/admin/faults/market_data/silence", json={"silent": False}, timeout=5)
    venue.set_quote("AAPL", "187.46", "187.49")
    assert client.recv()[0]["bp"] == 187.46
    assert requests.post(f"{base}/admin/faults/market_data/drop", json={}, timeout=5).json() == {"dropped": 1}


def test_quote_time_is_utc(venue: Venue, raw: list[Raw]) -> None:
    client = open_raw(venue, raw, use_msgpack=True).login(venue)
    client.send({"action": "subscribe", "quotes": ["*"]})
    client.recv()
    venue.set_quote("NVDA", "121.00", "121.02")
    [quote] = client.recv()
    assert quote["S"] == "NVDA"
    assert quote["t"].to_datetime().tzinfo is not None
    assert quote["t"].to_datetime().astimezone(UTC) == venue.clock.now()


def test_the_sdk_reconnects_after_an_abrupt_drop(venue: Venue, listeners: list[QuoteListener]) -> None:
    listener = listen(venue, listeners)
    assert venue.market_data.drop(abrupt=True) == 1
    wait_until(lambda: "AAPL" in venue.market_data.subscribed(), timeout=10, what="the resubscription")
    venue.set_quote("AAPL", "186.00", "186.03")
    assert listener.next().ask_price == 186.03


def test_trade_updates_drops_leave_market_data_alone(venue: Venue, raw: list[Raw]) -> None:
    client = open_raw(venue, raw).login(venue)
    client.send({"action": "subscribe", "quotes": ["AAPL"]})
    client.recv()
    venue.faults.drop_streams()  # the trade_updates sockets only
    venue.set_quote("AAPL", "187.45", "187.48")
    assert client.recv()[0]["T"] == "q"
