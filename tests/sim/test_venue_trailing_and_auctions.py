"""Trailing stops, `opg`/`cls` orders in the opening and closing auctions, and what the end of the
day does to `day` and `gtc` orders; through the unmodified SDK."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, OrderStatus, OrderType, TimeInForce
from alpaca.trading.requests import (
    LimitOrderRequest,
    MarketOrderRequest,
    ReplaceOrderRequest,
    TrailingStopOrderRequest,
)

from engine.sim import Venue
from engine.sim.clock import SimClock
from engine.sim.sessions import ET
from engine.sim.testing import Listener, event_name, trading_client


def at(venue_maker: Callable[..., Venue], when: datetime) -> tuple[Venue, TradingClient]:
    venue = venue_maker(clock=SimClock(start=when))
    return venue, trading_client(venue)


def long_position(venue: Venue, client: TradingClient, qty: int = 10) -> None:
    venue.set_quote("AAPL", "100.00", "100.02")
    client.submit_order(MarketOrderRequest(symbol="AAPL", qty=qty, side=OrderSide.BUY, time_in_force=TimeInForce.DAY))


# --- trailing stops ------------------------------------------------------------------------------

def test_a_sell_trailing_stop_follows_the_high_water_mark_and_fires_on_the_pullback(
        venue: Venue, client: TradingClient) -> None:
    long_position(venue, client)
    order = client.submit_order(TrailingStopOrderRequest(symbol="AAPL", qty=10, side=OrderSide.SELL,
                                                         time_in_force=TimeInForce.GTC, trail_price=2))
    assert order.status is OrderStatus.PENDING_NEW and order.trail_price == "2" and order.trail_percent is None
    live = client.get_order_by_id(order.id)
    assert (live.status, live.hwm, live.stop_price) == (OrderStatus.NEW, "100", "98")
    venue.set_quote("AAPL", "105.00", "105.02")  # up: the mark and the stop follow
    assert (client.get_order_by_id(order.id).hwm, client.get_order_by_id(order.id).stop_price) == ("105", "103")
    venue.set_quote("AAPL", "104.00", "104.02")  # a dip above the stop: nothing moves
    assert client.get_order_by_id(order.id).stop_price == "103"
    venue.set_quote("AAPL", "102.90", "102.95")  # through the stop: a market order at the bid
    done = client.get_order_by_id(order.id)
    assert (done.status, done.filled_avg_price, done.hwm, done.order_type) == (
        OrderStatus.FILLED, "102.9", "105", OrderType.TRAILING_STOP)


def test_a_buy_trailing_percent_stop_follows_the_low(venue: Venue, client: TradingClient) -> None:
    venue.set_quote("AAPL", "99.98", "100.00")
    order = client.submit_order(TrailingStopOrderRequest(symbol="AAPL", qty=5, side=OrderSide.BUY,
                                                         time_in_force=TimeInForce.DAY, trail_percent=1.5))
    assert client.get_order_by_id(order.id).stop_price == "101.5"
    venue.set_quote("AAPL", "94.98", "95.00")
    assert (client.get_order_by_id(order.id).hwm, client.get_order_by_id(order.id).stop_price) == ("95", "96.43")
    venue.set_quote("AAPL", "96.40", "96.43")
    assert client.get_order_by_id(order.id).status is OrderStatus.FILLED


def test_replace_with_trail_keeps_the_mark_and_moves_the_stop(venue: Venue, client: TradingClient) -> None:
    long_position(venue, client)
    order = client.submit_order(TrailingStopOrderRequest(symbol="AAPL", qty=10, side=OrderSide.SELL,
                                                         time_in_force=TimeInForce.DAY, trail_price=2))
    venue.set_quote("AAPL", "106.00", "106.02")
    new = client.replace_order_by_id(order.id, ReplaceOrderRequest(trail=0.5))
    assert (new.replaces, new.trail_price, new.hwm, new.stop_price) == (order.id, "0.5", "106", "105.5")
    assert client.get_order_by_id(order.id).status is OrderStatus.REPLACED


@pytest.mark.parametrize(("fields", "message"), [
    ({}, "trail_price or trail_percent is required for trailing_stop orders"),
    ({"trail_price": "1", "trail_percent": "1"}, "only one of trail_price or trail_percent may be given"),
    ({"trail_percent": "100"}, "trail_percent must be > 0 and < 100"),
    ({"trail_price": "1", "time_in_force": "ioc"}, "trailing_stop orders must be day or gtc orders"),
    ({"trail_price": "1", "stop_price": "95"}, "limit_price and stop_price must not be given for trailing_stop orders"),
])
def test_trailing_stop_entry_rules(venue: Venue, fields: dict[str, str], message: str) -> None:
    import requests
    body = {"symbol": "AAPL", "qty": "1", "side": "sell", "type": "trailing_stop", "time_in_force": "day", **fields}
    reply = requests.post(f"{venue.rest_url}/v2/orders", json=body, timeout=5, headers={
        "APCA-API-KEY-ID": venue.api_key, "APCA-API-SECRET-KEY": venue.secret_key})
    assert (reply.status_code, reply.json()["message"]) == (422, message)


def test_a_trailing_stop_does_not_trigger_outside_regular_hours(make_venue: Callable[..., Venue]) -> None:
    venue, client = at(make_venue, datetime(2024, 6, 12, 15, 59))
    long_position(venue, client)
    order = client.submit_order(TrailingStopOrderRequest(symbol="AAPL", qty=10, side=OrderSide.SELL,
                                                         time_in_force=TimeInForce.GTC, trail_price=1))
    venue.advance(120)  # 16:01
    venue.set_quote("AAPL", "90.00", "90.02")
    assert client.get_order_by_id(order.id).status is OrderStatus.NEW
    venue.advance(17.5 * 3600)  # next day 09:31: the gap fills at the open's quote
    assert client.get_order_by_id(order.id).filled_avg_price == "90"


# --- opg / cls -----------------------------------------------------------------------------------

def test_opg_before_9_28_fills_in_the_opening_auction_at_one_price(make_venue: Callable[..., Venue]) -> None:
    venue, client = at(make_venue, datetime(2024, 6, 12, 8, 0))
    venue.set_quote("AAPL", "100.00", "100.04")
    moo = client.submit_order(MarketOrderRequest(symbol="AAPL", qty=5, side=OrderSide.BUY,
                                                 time_in_force=TimeInForce.OPG))
    loo_miss = client.submit_order(LimitOrderRequest(symbol="AAPL", qty=5, side=OrderSide.BUY,
                                                     time_in_force=TimeInForce.OPG, limit_price=99))
    assert moo.status is OrderStatus.PENDING_NEW
    assert moo.expires_at is not None and moo.expires_at.astimezone(ET) == datetime(2024, 6, 12, 9, 30, tzinfo=ET)
    venue.advance(3600)  # 09:00: pre-market, the auction order does not trade continuously
    assert client.get_order_by_id(moo.id).status is OrderStatus.NEW
    venue.advance(1800)  # 09:30
    filled = client.get_order_by_id(moo.id)
    assert (filled.status, filled.filled_avg_price, filled.filled_at.astimezone(ET).time().isoformat()) == (
        OrderStatus.FILLED, "100.02", "09:30:00")
    assert client.get_order_by_id(loo_miss.id).status is OrderStatus.CANCELED  # unfilled after the open


@pytest.mark.parametrize(("tif", "when", "message"), [
    ("opg", datetime(2024, 6, 12, 9, 28), "opg orders must be submitted after 7:00pm and before 9:28am"),
    ("opg", datetime(2024, 6, 12, 18, 59), "opg orders must be submitted after 7:00pm and before 9:28am"),
    ("cls", datetime(2024, 6, 12, 15, 50), "cls orders must be submitted after 7:00pm and before 3:50pm"),
    ("cls", datetime(2024, 11, 29, 12, 55), "cls orders must be submitted after 7:00pm and before 12:50pm"),
])
def test_auction_orders_past_their_cut_off_are_rejected(make_venue: Callable[..., Venue], tif: str,
                                                         when: datetime, message: str) -> None:
    venue, client = at(make_venue, when)
    venue.set_quote("AAPL", "100.00", "100.04")
    with pytest.raises(APIError) as refused:
        client.submit_order(MarketOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY,
                                               time_in_force=TimeInForce(tif)))
    assert (refused.value.status_code, refused.value.code, refused.value.message) == (422, 42210000, message)


def test_opg_after_7pm_queues_for_the_next_trading_days_auction(make_venue: Callable[..., Venue]) -> None:
    venue, client = at(make_venue, datetime(2024, 7, 3, 21, 0))  # the next trading day is July 5
    venue.set_quote("AAPL", "100.00", "100.04")
    order = client.submit_order(MarketOrderRequest(symbol="AAPL", qty=1, side=OrderSide.SELL,
                                                   time_in_force=TimeInForce.OPG))
    assert order.status is OrderStatus.ACCEPTED  # the venue is closed at 21:00
    assert order.expires_at is not None
    assert order.expires_at.astimezone(ET) == datetime(2024, 7, 5, 9, 30, tzinfo=ET)
    venue.advance(36.5 * 3600)
    assert client.get_order_by_id(order.id).status is OrderStatus.FILLED


def test_cls_fills_at_the_close_and_an_unmatched_limit_is_canceled(make_venue: Callable[..., Venue]) -> None:
    venue, client = at(make_venue, datetime(2024, 11, 29, 11, 0))  # closes at 13:00
    venue.set_quote("AAPL", "100.00", "100.04")
    moc = client.submit_order(MarketOrderRequest(symbol="AAPL", qty=2, side=OrderSide.SELL,
                                                 time_in_force=TimeInForce.CLS))
    loc = client.submit_order(LimitOrderRequest(symbol="AAPL", qty=2, side=OrderSide.SELL,
                                                time_in_force=TimeInForce.CLS, limit_price=101))
    venue.set_quote("AAPL", "101.00", "101.04")  # a continuous order would fill here; auction orders wait
    assert client.get_order_by_id(loc.id).status is OrderStatus.NEW
    venue.set_quote("AAPL", "99.00", "99.04")
    venue.advance(2 * 3600)  # 13:00
    filled = client.get_order_by_id(moc.id)
    assert (filled.status, filled.filled_avg_price) == (OrderStatus.FILLED, "99.02")
    assert filled.filled_at is not None
    assert filled.filled_at.astimezone(ET) == datetime(2024, 11, 29, 13, 0, tzinfo=ET)
    assert client.get_order_by_id(loc.id).status is OrderStatus.CANCELED


def test_auction_orders_must_be_simple_market_or_limit(venue: Venue, client: TradingClient) -> None:
    venue.set_quote("AAPL", "100.00", "100.04")
    with pytest.raises(APIError) as refused:
        client.submit_order(TrailingStopOrderRequest(symbol="AAPL", qty=1, side=OrderSide.SELL,
                                                     time_in_force=TimeInForce.OPG, trail_price=1))
    assert refused.value.status_code == 422


# --- the end of the day: day vs gtc --------------------------------------------------------------

def test_a_partly_filled_gtc_is_done_for_the_day_and_resumes_the_next_morning(
        make_venue: Callable[..., Venue], listen: Callable[..., Listener]) -> None:
    venue, client = at(make_venue, datetime(2024, 6, 12, 15, 0))
    stream = listen(venue)
    venue.set_quote("AAPL", "100.00", "100.02", ask_size=4)
    gtc = client.submit_order(LimitOrderRequest(symbol="AAPL", qty=10, side=OrderSide.BUY,
                                                time_in_force=TimeInForce.GTC, limit_price=100.05))
    day = client.submit_order(LimitOrderRequest(symbol="AAPL", qty=10, side=OrderSide.BUY,
                                                time_in_force=TimeInForce.DAY, limit_price=100.01))
    venue.advance(3600)  # 16:00
    assert client.get_order_by_id(gtc.id).status is OrderStatus.DONE_FOR_DAY
    assert client.get_order_by_id(day.id).status is OrderStatus.EXPIRED
    names = [event_name(u) for u in stream.take(7)]  # 5 on entry, then the close
    assert names[-2:] == ["expired", "done_for_day"]
    venue.set_quote("AAPL", "100.00", "100.02", ask_size=100)  # after hours: a gtc order does not trade
    assert client.get_order_by_id(gtc.id).filled_qty == "4"
    venue.advance(17.5 * 3600)  # 09:30 next day
    resumed = client.get_order_by_id(gtc.id)
    assert (resumed.status, Decimal(str(resumed.filled_qty))) == (OrderStatus.FILLED, 10)
