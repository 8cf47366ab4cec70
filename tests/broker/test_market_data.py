"""The market-data contract: what a caller may rely on from any `MarketData`, pinned on two of them.

Each contract test runs on the in-memory FakeMarketData and on AlpacaMarketData talking through
the unmodified alpaca-py StockHistoricalDataClient and StockDataStream to the local venue, on a
manual SimClock. A test that passes on both says the fake behaves like the venue for that rule.
Adapter-only tests (keys, errors, the connection limit) follow.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from engine.broker.fake.market_data import FakeMarketData
from engine.broker.market_data import AlpacaMarketData
from engine.broker.market_port import MarketData, Quote
from engine.broker.port import BrokerAmbiguous, BrokerUnauthorized
from engine.sim import DEFAULT_START, SimClock, Venue
from engine.sim.testing import wait_until


class Feed:
    """Moves quotes under one MarketData; `md` is what the tests exercise."""

    md: MarketData

    def quote(self, symbol: str, bid: str, ask: str, bid_size: str = "100", ask_size: str = "100") -> None:
        raise NotImplementedError

    def now(self) -> datetime:
        raise NotImplementedError

    def drop(self) -> None:
        raise NotImplementedError

    def silence(self, silent: bool) -> None:
        raise NotImplementedError

    def stream_subscribed(self) -> frozenset[str]:
        """What the live connection has asked the venue for."""
        raise NotImplementedError


class FakeFeed(Feed):
    def __init__(self) -> None:
        self.at = DEFAULT_START.astimezone(UTC)
        self.fake = FakeMarketData(now=lambda: self.at)
        self.md = self.fake

    def quote(self, symbol: str, bid: str, ask: str, bid_size: str = "100", ask_size: str = "100") -> None:
        self.at += timedelta(seconds=1)
        self.fake.set_quote(symbol, bid, ask, bid_size=bid_size, ask_size=ask_size)

    def now(self) -> datetime:
        return self.at

    def drop(self) -> None:
        self.fake.drop_stream()

    def silence(self, silent: bool) -> None:
        if silent:
            self.fake.silence()
        else:
            self.fake.resume()

    def stream_subscribed(self) -> frozenset[str]:
        return self.fake.stream_subscribed()


class VenueFeed(Feed):
    def __init__(self, venue: Venue) -> None:
        self.venue = venue
        self.md = AlpacaMarketData(venue.api_key, venue.secret_key, data_url=venue.data_url,
                                   stream_url=venue.market_data_url("iex"))

    def quote(self, symbol: str, bid: str, ask: str, bid_size: str = "100", ask_size: str = "100") -> None:
        self.venue.advance(1)
        self.venue.set_quote(symbol, bid, ask, bid_size=bid_size, ask_size=ask_size)

    def now(self) -> datetime:
        return self.venue.clock.now()

    def drop(self) -> None:
        self.venue.market_data.drop()

    def silence(self, silent: bool) -> None:
        if silent:
            self.venue.market_data.silence()
        else:
            self.venue.market_data.resume()

    def stream_subscribed(self) -> frozenset[str]:
        return frozenset(self.venue.market_data.subscribed())


@pytest.fixture
def venue() -> Iterator[Venue]:
    with Venue.running_in_thread(SimClock(start=DEFAULT_START), rate_limit_per_min=None) as venue:
        yield venue


@pytest.fixture(params=["fake", "venue"])
def feed(request: pytest.FixtureRequest) -> Iterator[Feed]:
    if request.param == "fake":
        yield FakeFeed()
        return
    with Venue.running_in_thread(SimClock(start=DEFAULT_START), rate_limit_per_min=None) as venue:
        yield VenueFeed(venue)


class QuoteProbe:
    """Runs `md.quotes` on an event loop of its own and hands the test what it delivers."""

    def __init__(self, md: MarketData) -> None:
        self.md = md
        self.quotes: queue.Queue[Quote] = queue.Queue()
        self.connects = 0
        self.error: BaseException | None = None
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="quote-probe", daemon=True)

    async def _on_quote(self, quote: Quote) -> None:
        self.quotes.put(quote)

    async def _on_connect(self) -> None:
        self.connects += 1

    def start(self, symbols: Iterable[str], *, wait: bool = True) -> QuoteProbe:
        self._thread.start()

        async def run() -> None:
            try:
                await self.md.quotes(list(symbols), self._on_quote, self._on_connect)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                self.error = exc

        async def begin() -> None:
            self._task = asyncio.create_task(run())

        asyncio.run_coroutine_threadsafe(begin(), self._loop).result(5)
        if wait:
            wait_until(lambda: self.connects >= 1, timeout=10, what="the quote stream to connect")
        return self

    def stop(self) -> None:
        async def end() -> None:
            assert self._task is not None
            self._task.cancel()
            await asyncio.wait([self._task], timeout=15)

        asyncio.run_coroutine_threadsafe(end(), self._loop).result(20)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

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


@pytest.fixture
def probes() -> Iterator[list[QuoteProbe]]:
    started: list[QuoteProbe] = []
    yield started
    for probe in started:
        probe.stop()


def stream(feed: Feed, probes: list[QuoteProbe], *symbols: str) -> QuoteProbe:
    probe = QuoteProbe(feed.md).start(symbols)
    probes.append(probe)
    wait_until(lambda: set(symbols) <= feed.stream_subscribed(), what=f"the subscription to {symbols}")
    return probe


# --- the contract ------------------------------------------------------------------------------


def test_latest_quote_is_the_last_quote_set_in_decimals(feed: Feed) -> None:
    assert feed.md.latest_quote("AAPL") is None
    feed.quote("AAPL", "187.45", "187.48", "300", "200")
    quote = feed.md.latest_quote("AAPL")
    assert quote == Quote("AAPL", D("187.45"), D("187.48"), D("300"), D("200"), feed.now())
    assert quote is not None
    assert all(isinstance(v, D) for v in (quote.bid, quote.ask, quote.bid_size, quote.ask_size))
    assert str(quote.bid) == "187.45" and str(quote.ask) == "187.48"  # no float noise
    assert quote.at.utcoffset() == timedelta(0)
    assert feed.md.latest_quote("aapl") == quote


def test_a_quote_change_is_pushed_to_the_stream(feed: Feed, probes: list[QuoteProbe]) -> None:
    probe = stream(feed, probes, "AAPL")
    feed.quote("AAPL", "187.45", "187.48", "300", "200")
    quote = probe.next()
    assert quote == Quote("AAPL", D("187.45"), D("187.48"), D("300"), D("200"), feed.now())
    assert str(quote.ask) == "187.48" and quote.at.tzinfo is not None
    feed.quote("AAPL", "187.50", "187.53")
    assert probe.next().bid == D("187.50")
    assert probe.quiet(0.1) == []  # one quote per change


def test_only_subscribed_symbols_arrive_and_the_subscription_can_change(feed: Feed,
                                                                      probes: list[QuoteProbe]) -> None:
    probe = stream(feed, probes, "AAPL")
    feed.quote("MSFT", "410.00", "410.05")
    assert probe.quiet() == []
    feed.md.subscribe(["MSFT"])
    wait_until(lambda: feed.stream_subscribed() == {"AAPL", "MSFT"}, what="MSFT subscribed")
    feed.quote("MSFT", "410.10", "410.15")
    assert probe.next().symbol == "MSFT"
    feed.md.unsubscribe(["AAPL"])
    wait_until(lambda: feed.stream_subscribed() == {"MSFT"}, what="AAPL unsubscribed")
    assert feed.md.subscribed() == {"MSFT"}
    feed.quote("AAPL", "187.00", "187.02")
    feed.quote("MSFT", "410.20", "410.25")
    assert [(q.symbol, q.bid) for q in [probe.next()]] == [("MSFT", D("410.20"))]
    assert probe.quiet() == []


def test_a_reconnect_subscribes_again_and_calls_on_connect(feed: Feed, probes: list[QuoteProbe]) -> None:
    probe = stream(feed, probes, "AAPL")
    feed.md.subscribe(["MSFT"])  # added while running: the reconnect must ask for it too
    wait_until(lambda: feed.stream_subscribed() == {"AAPL", "MSFT"}, what="MSFT subscribed")
    assert probe.connects == 1
    feed.drop()
    wait_until(lambda: probe.connects == 2 and feed.stream_subscribed() == {"AAPL", "MSFT"}, timeout=10,
               what="the reconnect")
    feed.quote("MSFT", "410.00", "410.05")
    assert probe.next().symbol == "MSFT"
    feed.quote("AAPL", "187.00", "187.02")
    assert probe.next().symbol == "AAPL"
    assert probe.error is None


def test_a_silent_feed_delivers_nothing_and_the_latest_quote_still_reads(feed: Feed,
                                                                       probes: list[QuoteProbe]) -> None:
    probe = stream(feed, probes, "AAPL")
    feed.silence(True)
    feed.quote("AAPL", "186.00", "186.03")
    assert probe.quiet() == []
    latest = feed.md.latest_quote("AAPL")
    assert latest is not None and latest.bid == D("186.00")
    feed.silence(False)
    feed.quote("AAPL", "186.10", "186.13")
    assert probe.next().bid == D("186.10")


def test_quotes_without_symbols_waits_for_a_subscribe(feed: Feed, probes: list[QuoteProbe]) -> None:
    probe = QuoteProbe(feed.md).start([], wait=False)
    probes.append(probe)
    time.sleep(0.2)
    feed.md.subscribe(["NVDA"])
    wait_until(lambda: feed.stream_subscribed() == {"NVDA"}, timeout=10, what="NVDA subscribed")
    feed.quote("NVDA", "121.00", "121.02")
    assert probe.next().symbol == "NVDA"


# --- the Alpaca adapter only -------------------------------------------------------------------


def test_adapter_refused_keys_are_broker_unauthorized(venue: Venue) -> None:
    # A wrong secret with no word in it: its pieces are masked in every later log line of the run.
    md = AlpacaMarketData(venue.api_key, "Jq4Zx8Wv2Tn6Rb9Ml3Pk7Hd", data_url=venue.data_url,
                          stream_url=venue.market_data_url())
    with pytest.raises(BrokerUnauthorized):
        md.latest_quote("AAPL")
    probe = QuoteProbe(md).start(["AAPL"], wait=False)
    try:
        wait_until(lambda: probe.error is not None, timeout=10, what="the stream to give up")
        assert isinstance(probe.error, BrokerUnauthorized)
        assert "Jq4Zx8Wv2Tn6Rb9Ml3Pk7Hd" not in str(probe.error)
    finally:
        probe.stop()
    assert "Jq4Zx8Wv2Tn6Rb9Ml3Pk7Hd" not in repr(md) and venue.api_key not in repr(md)


def test_adapter_venue_errors_are_ambiguous(venue: Venue) -> None:
    md = AlpacaMarketData(venue.api_key, venue.secret_key, data_url=venue.data_url)
    venue.faults.fail_route("GET", "/v2/stocks/*", 500)
    with pytest.raises(BrokerAmbiguous):
        md.latest_quote("AAPL")
    unreachable = AlpacaMarketData(venue.api_key, venue.secret_key, data_url="http://127.0.0.1:9",
                                   request_timeout=2)
    with pytest.raises(BrokerAmbiguous):
        unreachable.latest_quote("AAPL")


def test_adapter_waits_out_the_one_connection_limit(venue: Venue, probes: list[QuoteProbe]) -> None:
    def adapter() -> AlpacaMarketData:
        return AlpacaMarketData(venue.api_key, venue.secret_key, data_url=venue.data_url,
                                stream_url=venue.market_data_url())

    first = QuoteProbe(adapter()).start(["AAPL"])
    wait_until(lambda: venue.market_data.connections() == 1, what="the first connection")
    second = QuoteProbe(adapter()).start(["MSFT"], wait=False)
    probes.append(second)
    time.sleep(1.0)
    assert second.connects == 0 and second.error is None  # refused with 406, retrying
    assert venue.market_data.connections() == 1
    first.stop()
    wait_until(lambda: second.connects == 1, timeout=15, what="the second to get in")
    wait_until(lambda: venue.market_data.subscribed() == {"MSFT"}, what="MSFT subscribed")
    venue.set_quote("MSFT", "410.00", "410.05")
    assert second.next().ask == D("410.05")


def test_adapter_feed_must_be_one_the_sdk_streams() -> None:
    # Keys of test length: a one-letter secret would be masked in every later log line of the run.
    with pytest.raises(ValueError):
        AlpacaMarketData("PKFQ8ZV2XW6TR4NB9JMD", "hG5qW8zT2xV6nB4mK9pR3sL7cY1dF0jQ", feed="otc")


def test_adapter_stale_after_reconnects_a_silent_feed(venue: Venue, probes: list[QuoteProbe]) -> None:
    md = AlpacaMarketData(venue.api_key, venue.secret_key, data_url=venue.data_url,
                          stream_url=venue.market_data_url(), stale_after=0.5)
    probe = QuoteProbe(md).start(["AAPL"])
    probes.append(probe)
    venue.market_data.silence()
    wait_until(lambda: probe.connects >= 2, timeout=10, what="a reconnect of the stale stream")
    venue.market_data.resume()
    wait_until(lambda: "AAPL" in venue.market_data.subscribed(), timeout=10, what="the resubscription")
    venue.set_quote("AAPL", "187.00", "187.02")
    assert probe.next().bid == D("187.00")
