"""Alpaca's 24/5 overnight session on the venue: its hours on the NYSE calendar, what trades in it,
how long a `day` + extended_hours order lives, the market data it serves, and the two
emulated-stop scenarios (after-hours and overnight). Orders go through the unmodified alpaca-py
TradingClient; quotes come through its StockDataStream and StockHistoricalDataClient."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.live import StockDataStream
from alpaca.data.models import Quote
from alpaca.data.requests import StockLatestQuoteRequest
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, OrderStatus, TimeInForce
from alpaca.trading.models import Order
from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest, StopOrderRequest

from engine.sim import SimClock, Venue, load_scenario
from engine.sim.sessions import ET, Boundary, Session, day_expiry, next_at, next_boundary, session_at
from engine.sim.testing import Listener, event_name, trading_client, wait_until

# 2026-11-30 is a Monday; 2026-11-26 is Thanksgiving (closed), 2026-11-27 a half-day (13:00 close);
# 2026-12-24 a half-day, 2026-12-25 Christmas (closed).
MONDAY = datetime(2026, 11, 30)


def et(*args: int) -> datetime:
    return datetime(*args, tzinfo=ET)  # type: ignore[misc]


def limit(price: str, side: OrderSide = OrderSide.BUY, qty: int = 10, *, extended: bool = True,
          tif: TimeInForce = TimeInForce.DAY) -> LimitOrderRequest:
    return LimitOrderRequest(symbol="AAPL", qty=qty, side=side, time_in_force=tif, limit_price=float(price),
                             extended_hours=extended)


def status(client: TradingClient, order: Order) -> OrderStatus:
    return client.get_order_by_id(order.id).status


@pytest.fixture
def at(make_venue: Callable[..., Venue]) -> Callable[[datetime], tuple[Venue, TradingClient]]:
    """A venue whose manual clock starts at that ET instant, AAPL quoted 100.00 / 100.02."""
    def start(when: datetime) -> tuple[Venue, TradingClient]:
        venue = make_venue(clock=SimClock(start=when))
        venue.set_quote("AAPL", "100.00", "100.02", bid_size=1000, ask_size=1000)
        return venue, trading_client(venue)

    return start


# --- the session table --------------------------------------------------------------------------

@pytest.mark.parametrize(("when", "expected"), [
    (et(2026, 11, 30, 19, 59, 59), Session.POST),       # Monday after-hours, last second
    (et(2026, 11, 30, 20, 0), Session.OVERNIGHT),       # Monday 20:00: overnight into Tuesday
    (et(2026, 12, 1, 3, 59, 59), Session.OVERNIGHT),    # Tuesday, last overnight second
    (et(2026, 12, 1, 4, 0), Session.PRE),               # Tuesday 04:00: pre-market
    (et(2026, 12, 4, 19, 59, 59), Session.POST),        # Friday after-hours
    (et(2026, 12, 4, 20, 0), Session.CLOSED),           # Friday 20:00: no overnight into Saturday
    (et(2026, 12, 5, 2, 0), Session.CLOSED),            # Saturday night
    (et(2026, 11, 29, 19, 59, 59), Session.CLOSED),     # Sunday before the overnight
    (et(2026, 11, 29, 20, 0), Session.OVERNIGHT),       # Sunday 20:00: overnight into Monday
    (et(2026, 11, 25, 19, 59, 59), Session.POST),       # Thanksgiving eve after-hours
    (et(2026, 11, 25, 20, 0), Session.CLOSED),          # no overnight into Thanksgiving
    (et(2026, 11, 26, 3, 0), Session.CLOSED),           # Thanksgiving, small hours
    (et(2026, 11, 26, 20, 0), Session.OVERNIGHT),       # Thanksgiving evening: overnight into the half-day
    (et(2026, 11, 27, 3, 59, 59), Session.OVERNIGHT),
    (et(2026, 12, 23, 20, 0), Session.OVERNIGHT),       # before the 12-24 half-day: a full 8 hours
    (et(2026, 12, 24, 3, 59, 59), Session.OVERNIGHT),
    (et(2026, 12, 24, 17, 0), Session.CLOSED),          # half-day after-hours ends at 17:00
    (et(2026, 12, 24, 20, 0), Session.CLOSED),          # no overnight into Christmas
])
def test_session_at_the_overnight_boundaries(when: datetime, expected: Session) -> None:
    assert session_at(when) is expected


def test_overnight_opens_are_session_boundaries() -> None:
    # Monday's 20:00 is both after-hours' end and the overnight open: one boundary, POST_CLOSE.
    assert next_boundary(et(2026, 11, 30, 19, 0)) == (et(2026, 11, 30, 20, 0), Boundary.POST_CLOSE)
    assert next_boundary(et(2026, 11, 30, 20, 0)) == (et(2026, 12, 1, 4, 0), Boundary.PRE_OPEN)
    # From Friday evening the next change is Sunday's overnight open.
    assert next_boundary(et(2026, 12, 4, 20, 0)) == (et(2026, 12, 6, 20, 0), Boundary.OVERNIGHT_OPEN)
    # Thanksgiving: after Wednesday's 20:00, Thursday 20:00 opens the overnight into Friday.
    assert next_boundary(et(2026, 11, 25, 20, 0)) == (et(2026, 11, 26, 20, 0), Boundary.OVERNIGHT_OPEN)
    # After a half-day's 17:00 the overnight (into a trading day) still opens at 20:00.
    assert next_boundary(et(2026, 11, 27, 17, 0)) == (et(2026, 11, 29, 20, 0), Boundary.OVERNIGHT_OPEN)
    assert next_at(et(2026, 11, 30, 22, 0), Boundary.OPEN) == et(2026, 12, 1, 9, 30)


def test_clock_keeps_alpacas_shape_and_is_closed_overnight(
        at: Callable[[datetime], tuple[Venue, TradingClient]]) -> None:
    venue, client = at(et(2026, 11, 30, 22, 0))
    clock = client.get_clock()
    assert clock.is_open is False
    assert (clock.next_open, clock.next_close) == (et(2026, 12, 1, 9, 30), et(2026, 12, 1, 16, 0))
    body = requests.get(f"{venue.rest_url}/v2/clock", timeout=5,
                        headers={"APCA-API-KEY-ID": venue.api_key, "APCA-API-SECRET-KEY": venue.secret_key}).json()
    assert set(body) == {"timestamp", "is_open", "next_open", "next_close"}


# --- what trades overnight ----------------------------------------------------------------------

def test_extended_limit_day_order_fills_overnight(at: Callable[[datetime], tuple[Venue, TradingClient]]) -> None:
    venue, client = at(et(2026, 11, 30, 22, 0))
    marketable = client.submit_order(limit("100.05"))
    got = client.get_order_by_id(marketable.id)
    assert (got.status, got.filled_qty, got.filled_avg_price, got.extended_hours) == (
        OrderStatus.FILLED, "10", "100.02", True)
    resting = client.submit_order(limit("99.50"))
    assert status(client, resting) == OrderStatus.NEW  # live overnight, not `accepted`
    venue.advance(3600)  # 23:00
    venue.set_quote("AAPL", "99.45", "99.49", bid_size=1000, ask_size=1000)
    got = client.get_order_by_id(resting.id)
    assert (got.status, got.filled_avg_price) == (OrderStatus.FILLED, "99.49")
    assert client.get_open_position("AAPL").qty == "20"


def test_orders_placed_either_side_of_monday_20_00_and_tuesday_04_00(
        at: Callable[[datetime], tuple[Venue, TradingClient]]) -> None:
    venue, client = at(et(2026, 11, 30, 19, 59, 59))
    after_hours = client.submit_order(limit("99.00"))
    venue.advance(1)  # 20:00
    overnight = client.submit_order(limit("99.00"))
    assert [(o.status, o.expires_at) for o in map(client.get_order_by_id, (after_hours.id, overnight.id))] == [
        (OrderStatus.EXPIRED, et(2026, 11, 30, 20, 0)), (OrderStatus.NEW, et(2026, 12, 1, 20, 0))]
    venue.advance(8 * 3600 - 1)  # Tuesday 03:59:59
    late = client.submit_order(limit("99.00"))
    assert status(client, late) == OrderStatus.NEW
    venue.advance(1)  # 04:00: pre-market; the same orders work on
    venue.set_quote("AAPL", "98.90", "98.95", bid_size=1000, ask_size=1000)
    assert [client.get_order_by_id(o.id).filled_qty for o in (overnight, late)] == ["10", "10"]


def test_extended_limit_sell_fills_at_the_bid_overnight(at: Callable[[datetime], tuple[Venue, TradingClient]]) -> None:
    venue, client = at(et(2026, 11, 29, 21, 0))  # Sunday evening
    client.submit_order(limit("100.02"))
    sell = client.submit_order(limit("100.50", OrderSide.SELL))
    assert status(client, sell) == OrderStatus.NEW
    venue.set_quote("AAPL", "100.60", "100.64", bid_size=1000, ask_size=1000)
    got = client.get_order_by_id(sell.id)
    assert (got.status, got.filled_avg_price) == (OrderStatus.FILLED, "100.6")


def test_market_order_with_extended_hours_is_refused_overnight(
        at: Callable[[datetime], tuple[Venue, TradingClient]]) -> None:
    _, client = at(et(2026, 11, 30, 22, 0))
    with pytest.raises(APIError) as caught:
        client.submit_order(MarketOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY,
                                               time_in_force=TimeInForce.DAY, extended_hours=True))
    assert (caught.value.status_code, caught.value.code, caught.value.message) == (
        422, 40010001, 'only type="limit" is allowed for extended hours orders')
    assert client.get_orders() == []


def test_regular_orders_placed_overnight_wait_for_the_open(
        at: Callable[[datetime], tuple[Venue, TradingClient]]) -> None:
    venue, client = at(et(2026, 11, 30, 22, 0))
    queued = client.submit_order(MarketOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY,
                                                    time_in_force=TimeInForce.DAY))
    plain_limit = client.submit_order(limit("100.05", extended=False))
    client.submit_order(limit("100.05"))  # a position for the stop to protect
    stop = client.submit_order(StopOrderRequest(symbol="AAPL", qty=10, side=OrderSide.SELL,
                                                time_in_force=TimeInForce.GTC, stop_price=99))
    venue.set_quote("AAPL", "98.00", "98.04", bid_size=1000, ask_size=1000)  # through the stop, overnight
    assert [status(client, o) for o in (queued, plain_limit, stop)] == [OrderStatus.ACCEPTED] * 3
    venue.advance(6 * 3600)  # 04:00: pre-market; still not for them
    assert [status(client, o) for o in (queued, plain_limit, stop)] == [OrderStatus.ACCEPTED] * 3
    venue.advance(5.5 * 3600)  # 09:30
    assert [client.get_order_by_id(o.id).filled_avg_price for o in (queued, plain_limit, stop)] == [
        "98.04", "98.04", "98"]


def test_opg_order_placed_overnight_waits_accepted_until_the_premarket(
        at: Callable[[datetime], tuple[Venue, TradingClient]]) -> None:
    venue, client = at(et(2026, 11, 30, 22, 0))
    opg = client.submit_order(limit("100.05", extended=False, tif=TimeInForce.OPG))
    assert status(client, opg) == OrderStatus.ACCEPTED
    venue.advance(6 * 3600 - 1)  # 03:59:59
    assert status(client, opg) == OrderStatus.ACCEPTED
    venue.advance(1)  # 04:00
    assert status(client, opg) == OrderStatus.NEW


# --- how long a day + extended_hours order lives ------------------------------------------------

def test_day_expiry_by_the_session_it_is_placed_in() -> None:
    tuesday_20 = et(2026, 12, 1, 20, 0)
    assert day_expiry(et(2026, 11, 30, 17, 0), True) == et(2026, 11, 30, 20, 0)   # after-hours: that evening
    assert day_expiry(et(2026, 11, 30, 20, 0), True) == tuesday_20                # overnight: its trade date
    assert day_expiry(et(2026, 12, 1, 3, 0), True) == tuesday_20
    assert day_expiry(et(2026, 12, 1, 5, 0), True) == tuesday_20                  # pre-market
    assert day_expiry(et(2026, 11, 29, 21, 0), True) == et(2026, 11, 30, 20, 0)   # Sunday overnight: Monday
    assert day_expiry(et(2026, 11, 25, 21, 0), True) == et(2026, 11, 27, 17, 0)   # Thanksgiving eve: Friday's 17:00
    assert day_expiry(et(2026, 11, 30, 22, 0), False) == et(2026, 12, 1, 16, 0)   # not extended: the close


def test_after_hours_order_expires_at_20_00_and_never_trades_overnight(
        at: Callable[[datetime], tuple[Venue, TradingClient]]) -> None:
    venue, client = at(et(2026, 11, 30, 17, 0))
    order = client.submit_order(limit("99.00"))
    assert client.get_order_by_id(order.id).expires_at == et(2026, 11, 30, 20, 0)
    venue.advance(3 * 3600 - 1)  # 19:59:59
    assert status(client, order) == OrderStatus.NEW
    venue.advance(1)  # 20:00: expired before the overnight session matches anything
    got = client.get_order_by_id(order.id)
    assert (got.status, got.expired_at) == (OrderStatus.EXPIRED, et(2026, 11, 30, 20, 0))
    venue.set_quote("AAPL", "98.90", "98.95", bid_size=1000, ask_size=1000)
    assert client.get_order_by_id(order.id).filled_qty == "0"


def test_overnight_order_lives_through_its_trade_dates_sessions(
        at: Callable[[datetime], tuple[Venue, TradingClient]]) -> None:
    venue, client = at(et(2026, 11, 30, 22, 0))
    order = client.submit_order(limit("99.00"))
    assert client.get_order_by_id(order.id).expires_at == et(2026, 12, 1, 20, 0)
    for seconds in (6 * 3600, 5.5 * 3600, 6.5 * 3600, 4 * 3600 - 1):  # 04:00, 09:30, 16:00, 19:59:59
        venue.advance(seconds)
        assert status(client, order) == OrderStatus.NEW
    venue.advance(1)  # Tuesday 20:00
    assert status(client, order) == OrderStatus.EXPIRED


def test_order_placed_friday_night_goes_live_in_sundays_overnight(
        at: Callable[[datetime], tuple[Venue, TradingClient]]) -> None:
    venue, client = at(et(2026, 12, 4, 21, 0))  # Friday 21:00: closed until Sunday 20:00
    order = client.submit_order(limit("99.00"))
    got = client.get_order_by_id(order.id)
    assert (got.status, got.expires_at) == (OrderStatus.ACCEPTED, et(2026, 12, 7, 20, 0))
    venue.advance(47 * 3600 - 1)  # Sunday 19:59:59
    assert status(client, order) == OrderStatus.ACCEPTED
    venue.advance(1)  # Sunday 20:00: the overnight session into Monday
    assert status(client, order) == OrderStatus.NEW
    venue.set_quote("AAPL", "98.90", "98.95", bid_size=1000, ask_size=1000)
    got = client.get_order_by_id(order.id)
    assert (got.status, got.filled_avg_price) == (OrderStatus.FILLED, "98.95")


def test_thanksgiving_eve_order_waits_for_thursday_evenings_overnight(
        at: Callable[[datetime], tuple[Venue, TradingClient]]) -> None:
    venue, client = at(et(2026, 11, 25, 21, 0))
    order = client.submit_order(limit("99.00"))
    got = client.get_order_by_id(order.id)
    assert (got.status, got.expires_at) == (OrderStatus.ACCEPTED, et(2026, 11, 27, 17, 0))
    venue.advance(23 * 3600 - 1)  # Thanksgiving 19:59:59
    assert status(client, order) == OrderStatus.ACCEPTED
    venue.advance(1)  # Thursday 20:00
    assert status(client, order) == OrderStatus.NEW
    venue.advance(21 * 3600)  # Friday 17:00: the half-day's after-hours end
    assert status(client, order) == OrderStatus.EXPIRED


def test_trade_updates_across_the_weekend_into_sundays_overnight(
        at: Callable[[datetime], tuple[Venue, TradingClient]], listen: Callable[..., Listener]) -> None:
    venue, client = at(et(2026, 12, 4, 19, 0))  # Friday after-hours
    stream = listen(venue)
    friday = client.submit_order(limit("99.00"))  # lapses at Friday 20:00
    weekend = client.submit_order(limit("98.00", qty=5))
    venue.advance(3600)  # Friday 20:00: closed
    weekend_too = client.submit_order(limit("97.00", qty=5))  # accepted until Sunday's overnight
    venue.advance(48 * 3600)  # Sunday 20:00
    venue.set_quote("AAPL", "96.90", "96.95", bid_size=1000, ask_size=1000)
    seen = [(event_name(u), str(u.order.id)) for u in stream.until(
        lambda u: event_name(u) == "fill" and u.order.id == weekend_too.id)]
    assert seen == [("pending_new", str(friday.id)), ("new", str(friday.id)),
                    ("pending_new", str(weekend.id)), ("new", str(weekend.id)),
                    ("expired", str(friday.id)), ("expired", str(weekend.id)),
                    ("accepted", str(weekend_too.id)), ("new", str(weekend_too.id)),
                    ("fill", str(weekend_too.id))]


# --- market data overnight ----------------------------------------------------------------------

class QuoteStream:
    """alpaca-py's StockDataStream on its own thread, as an engine embeds it."""

    def __init__(self, venue: Venue, symbol: str) -> None:
        self.venue = venue
        self.quotes: queue.Queue[Quote] = queue.Queue()
        self.stream = StockDataStream(venue.api_key, venue.secret_key, url_override=venue.market_data_url("iex"))
        self.stream.subscribe_quotes(self._on_quote, symbol)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        wait_until(lambda: symbol in venue.market_data.subscribed(), what="the subscription")

    async def _on_quote(self, quote: Quote) -> None:
        self.quotes.put(quote)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.stream._run_forever()  # type: ignore[no-untyped-call]

    def next(self, timeout: float = 5.0) -> Quote:
        try:
            return self.quotes.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no quote within {timeout}s") from None

    def stop(self) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self.stream.stop_ws(), self._loop).result(5)
        self.venue.market_data.drop()  # the SDK notices stop_ws() between receives; a close wakes it
        self._thread.join(10)


@pytest.fixture
def overnight_stop(make_venue: Callable[..., Venue]) -> Venue:
    return make_venue(scenarios=["overnight_stop"])


@pytest.fixture
def rblx_quotes(overnight_stop: Venue) -> Iterator[QuoteStream]:
    stream = QuoteStream(overnight_stop, "RBLX")
    yield stream
    stream.stop()


def test_scenario_quotes_stream_overnight(overnight_stop: Venue, rblx_quotes: QuoteStream) -> None:
    venue = overnight_stop
    assert session_at(venue.clock.now()) is Session.OVERNIGHT
    client = trading_client(venue)
    client.submit_order(LimitOrderRequest(symbol="RBLX", qty=30, side=OrderSide.BUY, time_in_force=TimeInForce.DAY,
                                          limit_price=45.02, extended_hours=True))  # starts the path
    start = venue.clock.now()
    venue.advance(5)
    seen = [rblx_quotes.next() for _ in range(3)]  # t = 0 (fresh sizes at the first order), 2, 5
    assert [(q.bid_price, q.ask_price) for q in seen] == [(44.96, 45.00), (44.90, 44.95), (44.70, 44.76)]
    assert [q.timestamp for q in seen[1:]] == [start + timedelta(seconds=2), start + timedelta(seconds=5)]
    latest = StockHistoricalDataClient(venue.api_key, venue.secret_key, url_override=venue.data_url)
    quote = latest.get_stock_latest_quote(StockLatestQuoteRequest(symbol_or_symbols="RBLX"))
    assert isinstance(quote, dict)
    assert (quote["RBLX"].bid_price, quote["RBLX"].ask_price) == (44.70, 44.76)


# --- the emulated-stop scenarios ----------------------------------------------------------------

def engine_limit(price: str, side: str) -> float:
    """The engine's entry limit: signal x (1 +/- 0.0005) on the cent grid."""
    factor = Decimal("1.0005") if side == "buy" else Decimal("0.9995")
    return float((Decimal(price) * factor).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


@pytest.mark.parametrize(("name", "session", "fill", "through_stop_bid"), [
    ("after_hours_stop", Session.POST, "60", "58.1"),
    ("overnight_stop", Session.OVERNIGHT, "45", "43.55"),
])
def test_emulated_stop_scenarios_fill_then_drop_through_the_stop(
        make_venue: Callable[..., Venue], name: str, session: Session, fill: str, through_stop_bid: str) -> None:
    scenario = load_scenario(name)
    signal = scenario.signal
    venue = make_venue(scenarios=[name])
    assert session_at(venue.clock.now()) is session
    client = trading_client(venue)
    qty = int(signal["qty"])
    entry = client.submit_order(LimitOrderRequest(
        symbol=scenario.symbol, qty=qty, side=OrderSide.BUY, time_in_force=TimeInForce.DAY,
        limit_price=engine_limit(signal["price"], "buy"), extended_hours=True))
    got = client.get_order_by_id(entry.id)
    assert (got.status, got.filled_qty, got.filled_avg_price) == (OrderStatus.FILLED, str(qty), fill)

    # A venue stop does not protect the position outside regular hours: it waits for 09:30.
    venue_stop = client.submit_order(StopOrderRequest(symbol=scenario.symbol, qty=qty, side=OrderSide.SELL,
                                                      time_in_force=TimeInForce.GTC,
                                                      stop_price=float(signal["stop"])))
    stop = Decimal(signal["stop"])
    venue.advance(20)
    assert scenario.quote_at(20).bid > stop  # not yet through
    venue.advance(5)  # t = 25: the bid falls through the stop
    book = scenario.quote_at(25)
    assert book.bid < stop and str(book.bid.normalize()) == through_stop_bid
    assert status(client, venue_stop) == OrderStatus.ACCEPTED
    # The emulated exit: the venue stop holds the shares, so it is canceled; an extended-hours limit
    # sell at the bid then fills at once.
    client.cancel_order_by_id(venue_stop.id)
    exit_order = client.submit_order(LimitOrderRequest(
        symbol=scenario.symbol, qty=qty, side=OrderSide.SELL, time_in_force=TimeInForce.DAY,
        limit_price=float(book.bid), extended_hours=True))
    got = client.get_order_by_id(exit_order.id)
    assert (got.status, got.filled_avg_price) == (OrderStatus.FILLED, through_stop_bid)
    with pytest.raises(APIError):
        client.get_open_position(scenario.symbol)  # flat
    venue.advance(35)  # t = 60: the path ends lower still
    assert scenario.quote_at(60).bid < book.bid
