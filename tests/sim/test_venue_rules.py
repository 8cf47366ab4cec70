"""Alpaca's order-entry rules, each refused with Alpaca's HTTP status, code and message."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderClass, OrderSide, OrderStatus, PositionSide, TimeInForce
from alpaca.trading.requests import (
    LimitOrderRequest,
    MarketOrderRequest,
    ReplaceOrderRequest,
    StopLossRequest,
    StopOrderRequest,
    TakeProfitRequest,
)

from engine.sim import SimClock, Venue
from engine.sim.sessions import ET
from engine.sim.testing import trading_client


def limit(symbol: str, qty: float, side: OrderSide, price: float, coid: str | None = None,
          tif: TimeInForce = TimeInForce.DAY, **kw: object) -> LimitOrderRequest:
    return LimitOrderRequest(symbol=symbol, qty=qty, side=side, time_in_force=tif, limit_price=price,
                             client_order_id=coid, **kw)


def market(symbol: str, qty: float, side: OrderSide, coid: str | None = None) -> MarketOrderRequest:
    return MarketOrderRequest(symbol=symbol, qty=qty, side=side, time_in_force=TimeInForce.DAY, client_order_id=coid)


def oco(symbol: str, qty: float, side: OrderSide, target: float, stop: float,
        coid: str | None = None) -> LimitOrderRequest:
    return LimitOrderRequest(symbol=symbol, qty=qty, side=side, time_in_force=TimeInForce.GTC,
                             order_class=OrderClass.OCO, client_order_id=coid,
                             take_profit=TakeProfitRequest(limit_price=target),
                             stop_loss=StopLossRequest(stop_price=stop))


def refused(client: TradingClient, request: object) -> tuple[int, int, str]:
    with pytest.raises(APIError) as caught:
        client.submit_order(request)  # type: ignore[arg-type]
    err = caught.value
    return err.status_code, err.code, err.message


@pytest.fixture
def aapl(venue: Venue) -> Venue:
    venue.set_quote("AAPL", "100.00", "100.02", bid_size=1000, ask_size=1000)
    return venue


# --- client_order_id ----------------------------------------------------------------------------

def test_duplicate_client_order_id_is_422_40010001(aapl: Venue, client: TradingClient) -> None:
    client.submit_order(limit("AAPL", 1, OrderSide.BUY, 99, "dup"))
    assert refused(client, limit("AAPL", 1, OrderSide.BUY, 98, "dup")) == (
        422, 40010001, "client_order_id must be unique")


def test_client_order_id_stays_taken_after_cancel_and_fill(aapl: Venue, client: TradingClient) -> None:
    canceled = client.submit_order(limit("AAPL", 1, OrderSide.BUY, 99, "gone"))
    client.cancel_order_by_id(canceled.id)
    client.submit_order(limit("AAPL", 1, OrderSide.BUY, 101, "filled"))
    for coid in ("gone", "filled"):
        assert refused(client, limit("AAPL", 1, OrderSide.BUY, 99, coid))[:2] == (422, 40010001)


# --- extended hours -----------------------------------------------------------------------------

def test_extended_hours_takes_limit_orders_only(aapl: Venue, client: TradingClient) -> None:
    request = MarketOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY,
                                 extended_hours=True)
    assert refused(client, request) == (422, 40010001, 'only type="limit" is allowed for extended hours orders')


def test_extended_hours_takes_time_in_force_day_only(aapl: Venue, client: TradingClient) -> None:
    request = limit("AAPL", 1, OrderSide.BUY, 99, tif=TimeInForce.GTC, extended_hours=True)
    assert refused(client, request) == (422, 40010001, 'only time_in_force="day" is allowed for extended hours orders')


# --- OCO, bracket, OTO --------------------------------------------------------------------------

def test_oco_without_a_position_is_422_42210000(aapl: Venue, client: TradingClient) -> None:
    status, code, _ = refused(client, oco("AAPL", 10, OrderSide.SELL, 110, 95))
    assert (status, code) == (422, 42210000)


def test_oco_that_would_add_to_the_position_is_refused(aapl: Venue, client: TradingClient) -> None:
    client.submit_order(market("AAPL", 10, OrderSide.BUY))
    assert refused(client, oco("AAPL", 10, OrderSide.BUY, 95, 110))[:2] == (422, 42210000)


def test_bracket_as_an_exit_is_422_bracket_orders_must_be_entry_orders(aapl: Venue, client: TradingClient) -> None:
    client.submit_order(market("AAPL", 10, OrderSide.BUY))
    request = limit("AAPL", 10, OrderSide.SELL, 100, order_class=OrderClass.BRACKET,
                    take_profit=TakeProfitRequest(limit_price=95), stop_loss=StopLossRequest(stop_price=105))
    assert refused(client, request) == (422, 42210000, "bracket orders must be entry orders")


def test_bracket_exits_must_sit_on_the_right_side_of_the_entry(aapl: Venue, client: TradingClient) -> None:
    request = limit("AAPL", 10, OrderSide.BUY, 100, order_class=OrderClass.BRACKET,
                    take_profit=TakeProfitRequest(limit_price=99), stop_loss=StopLossRequest(stop_price=95))
    assert refused(client, request) == (422, 42210000, "take_profit.limit_price must be >= base_price + 0.01")


def test_advanced_orders_refuse_extended_hours_and_other_tifs(aapl: Venue, client: TradingClient) -> None:
    request = limit("AAPL", 10, OrderSide.BUY, 100, tif=TimeInForce.IOC, order_class=OrderClass.BRACKET,
                    take_profit=TakeProfitRequest(limit_price=105), stop_loss=StopLossRequest(stop_price=95))
    assert refused(client, request)[:2] == (422, 40010001)


# --- quantity available, shorting ---------------------------------------------------------------

def test_selling_more_than_held_is_403_insufficient_qty(aapl: Venue, client: TradingClient) -> None:
    client.submit_order(market("AAPL", 10, OrderSide.BUY))
    assert refused(client, limit("AAPL", 15, OrderSide.SELL, 101)) == (
        403, 40310000, "insufficient qty available for order (requested: 15, available: 10)")


def test_shares_held_by_open_exit_orders_are_not_available(aapl: Venue, client: TradingClient) -> None:
    """An OCO claims its quantity once (not per leg); nothing is left for a second exit."""
    client.submit_order(market("AAPL", 10, OrderSide.BUY))
    client.submit_order(oco("AAPL", 10, OrderSide.SELL, 110, 95))
    assert client.get_open_position("AAPL").qty_available == "0"
    assert refused(client, limit("AAPL", 1, OrderSide.SELL, 101)) == (
        403, 40310000, "insufficient qty available for order (requested: 1, available: 0)")


def test_a_sell_with_no_position_opens_a_short(aapl: Venue, client: TradingClient) -> None:
    client.submit_order(market("AAPL", 25, OrderSide.SELL))
    position = client.get_open_position("AAPL")
    assert (position.side, position.qty, position.avg_entry_price) == (PositionSide.SHORT, "-25", "100")
    assert client.get_account().short_market_value == "-2500.25"


def test_a_buy_covers_a_short_but_not_beyond_it(aapl: Venue, client: TradingClient) -> None:
    client.submit_order(market("AAPL", 25, OrderSide.SELL))
    assert refused(client, limit("AAPL", 30, OrderSide.BUY, 99)) == (
        403, 40310000, "insufficient qty available for order (requested: 30, available: 25)")
    cover = client.submit_order(oco("AAPL", 25, OrderSide.BUY, 95, 105))
    assert cover.status == OrderStatus.PENDING_NEW
    client.submit_order(market("AAPL", 10, OrderSide.SELL))  # adding to a short is not an exit
    assert client.get_open_position("AAPL").qty == "-35"


def test_no_short_sell_while_a_long_buy_is_open_and_vice_versa(aapl: Venue, client: TradingClient) -> None:
    client.submit_order(limit("AAPL", 5, OrderSide.BUY, 99))
    assert refused(client, limit("AAPL", 5, OrderSide.SELL, 101)) == (
        403, 40310000, "cannot open a short sell while a long buy order is open")
    client.cancel_orders()
    client.submit_order(limit("AAPL", 5, OrderSide.SELL, 101))
    assert refused(client, limit("AAPL", 5, OrderSide.BUY, 99)) == (
        403, 40310000, "cannot open a long buy while a short sell order is open")


def test_orders_beyond_buying_power_are_403(aapl: Venue, client: TradingClient) -> None:
    """100 000 cash, 2x margin: 200 000 of buying power, less what open orders commit."""
    client.submit_order(limit("AAPL", 1500, OrderSide.BUY, 99))
    assert refused(client, limit("AAPL", 600, OrderSide.BUY, 99)) == (403, 40310000, "insufficient buying power")


def test_replace_cannot_raise_an_exit_above_the_position(aapl: Venue, client: TradingClient) -> None:
    client.submit_order(market("AAPL", 10, OrderSide.BUY))
    exit_order = client.submit_order(limit("AAPL", 10, OrderSide.SELL, 110))
    with pytest.raises(APIError) as caught:
        client.replace_order_by_id(exit_order.id, ReplaceOrderRequest(qty=12))
    assert (caught.value.status_code, caught.value.code) == (403, 40310000)


# --- prices, cancel -----------------------------------------------------------------------------

def test_sub_penny_prices_are_422(aapl: Venue, client: TradingClient) -> None:
    assert refused(client, limit("AAPL", 1, OrderSide.BUY, 99.995)) == (
        422, 42210000, "invalid limit_price 99.995. sub-penny increment does not fulfill minimum pricing criteria")
    aapl.set_quote("PENNY", "0.5", "0.5012")
    assert client.submit_order(limit("PENNY", 100, OrderSide.BUY, 0.5001)).limit_price == "0.5001"


def test_cancel_of_a_filled_or_canceled_order_is_422_already_in_state(aapl: Venue, client: TradingClient) -> None:
    filled = client.submit_order(market("AAPL", 1, OrderSide.BUY))
    with pytest.raises(APIError) as caught:
        client.cancel_order_by_id(filled.id)
    assert (caught.value.status_code, caught.value.code, caught.value.message) == (
        422, 42210000, 'order is already in "filled" state')
    resting = client.submit_order(limit("AAPL", 1, OrderSide.BUY, 90))
    client.cancel_order_by_id(resting.id)
    with pytest.raises(APIError) as caught:
        client.cancel_order_by_id(resting.id)
    assert caught.value.message == 'order is already in "canceled" state'


# --- sessions -----------------------------------------------------------------------------------

@pytest.fixture
def premarket(make_venue: Callable[..., Venue]) -> Venue:
    venue = make_venue(clock=SimClock(start=datetime(2024, 6, 12, 7, 30, tzinfo=ET)))
    venue.set_quote("AAPL", "100.00", "100.02", bid_size=1000, ask_size=1000)
    return venue


def test_regular_orders_outside_hours_are_accepted_and_work_from_the_open(premarket: Venue) -> None:
    client = trading_client(premarket)
    queued = client.submit_order(market("AAPL", 10, OrderSide.BUY, "at-open"))
    assert queued.status == OrderStatus.ACCEPTED
    premarket.advance(3600)  # 08:30
    assert client.get_order_by_id(queued.id).status == OrderStatus.ACCEPTED
    premarket.set_quote("AAPL", "101.00", "101.04")
    premarket.advance(3600)  # 09:30: the open
    got = client.get_order_by_id(queued.id)
    assert (got.status, got.filled_avg_price) == (OrderStatus.FILLED, "101.04")


def test_extended_hours_limit_day_orders_trade_in_the_premarket(premarket: Venue) -> None:
    client = trading_client(premarket)
    placed = client.submit_order(limit("AAPL", 10, OrderSide.BUY, 100.05, extended_hours=True))
    got = client.get_order_by_id(placed.id)
    assert (got.status, got.filled_avg_price, got.extended_hours) == (OrderStatus.FILLED, "100.02", True)


def test_day_orders_expire_at_the_close_extended_ones_at_20_00(venue: Venue, client: TradingClient) -> None:
    venue.set_quote("AAPL", "100.00", "100.02")
    regular = client.submit_order(limit("AAPL", 1, OrderSide.BUY, 90))
    extended = client.submit_order(limit("AAPL", 1, OrderSide.BUY, 90, extended_hours=True))
    venue.advance(6 * 3600 - 1)  # 15:59:59
    assert client.get_order_by_id(regular.id).status == OrderStatus.NEW
    venue.advance(1)  # 16:00
    got = client.get_order_by_id(regular.id)
    assert got.status == OrderStatus.EXPIRED and got.expired_at == got.expires_at
    assert client.get_order_by_id(extended.id).status == OrderStatus.NEW
    venue.advance(4 * 3600)  # 20:00
    assert client.get_order_by_id(extended.id).status == OrderStatus.EXPIRED


def test_stop_orders_wait_for_regular_hours(premarket: Venue) -> None:
    client = trading_client(premarket)
    client.submit_order(limit("AAPL", 10, OrderSide.BUY, 100.05, extended_hours=True))
    stop = client.submit_order(StopOrderRequest(symbol="AAPL", qty=10, side=OrderSide.SELL,
                                                time_in_force=TimeInForce.GTC, stop_price=99))
    premarket.set_quote("AAPL", "98.00", "98.05")
    assert client.get_order_by_id(stop.id).status == OrderStatus.ACCEPTED
    premarket.advance(2 * 3600)  # 09:30
    got = client.get_order_by_id(stop.id)
    assert (got.status, got.filled_avg_price) == (OrderStatus.FILLED, "98")


# --- the venue refusing orders on request -------------------------------------------------------

def test_reject_switch_refuses_matching_orders_over_http(aapl: Venue, client: TradingClient) -> None:
    aapl.reject_next(client_order_id="sig-*-entry", status=403, code=40310000, message="account is restricted")
    assert refused(client, limit("AAPL", 1, OrderSide.BUY, 99, "sig-7-entry")) == (
        403, 40310000, "account is restricted")
    assert client.submit_order(limit("AAPL", 1, OrderSide.BUY, 99, "sig-8-entry")).status == OrderStatus.PENDING_NEW
    assert aapl.order("sig-7-entry") is None  # refused orders do not exist, and their id stays free
    client.submit_order(limit("AAPL", 1, OrderSide.BUY, 99, "sig-7-entry"))


def test_reject_switch_can_reject_after_accepting(aapl: Venue, client: TradingClient) -> None:
    """via="event": the POST succeeds, then the order is `rejected` (an exit refused by the venue)."""
    client.submit_order(market("AAPL", 10, OrderSide.BUY))
    aapl.reject_next(symbol="AAPL", via="event")
    exits = client.submit_order(oco("AAPL", 10, OrderSide.SELL, 110, 95, "sig-1-tp"))
    assert exits.status == OrderStatus.PENDING_NEW
    got = client.get_order_by_client_id("sig-1-tp")
    assert got.status == OrderStatus.REJECTED and got.failed_at is not None
    assert all(leg.status == OrderStatus.REJECTED for leg in got.legs)
    assert client.get_open_position("AAPL").qty_available == "10"


def test_reject_switch_can_target_an_order_class(aapl: Venue, client: TradingClient) -> None:
    """order_class="oco" refuses the exits while entries go through."""
    aapl.reject_next(symbol="AAPL", order_class="oco", status=403, code=40310000, message="exits refused")
    client.submit_order(market("AAPL", 10, OrderSide.BUY))
    assert refused(client, oco("AAPL", 10, OrderSide.SELL, 110, 95)) == (403, 40310000, "exits refused")
    assert client.submit_order(oco("AAPL", 10, OrderSide.SELL, 110, 95)).status == OrderStatus.PENDING_NEW
