"""The matching model: limit/market/stop/stop_limit against the top of book, touch sizes and
partial fills, slippage, bracket/OCO/OTO legs, positions and cash."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderClass, OrderSide, OrderStatus, TimeInForce
from alpaca.trading.models import Order
from alpaca.trading.requests import (
    LimitOrderRequest,
    MarketOrderRequest,
    StopLimitOrderRequest,
    StopLossRequest,
    StopOrderRequest,
    TakeProfitRequest,
)

from engine.sim import QuotePoint, Scenario, Venue
from engine.sim.testing import trading_client
from engine.sim.venue import DEFAULT_START


def limit(symbol: str, qty: float, side: OrderSide, price: float, **kw: object) -> LimitOrderRequest:
    kw.setdefault("time_in_force", TimeInForce.DAY)
    return LimitOrderRequest(symbol=symbol, qty=qty, side=side, limit_price=price, **kw)


def market(symbol: str, qty: float, side: OrderSide, **kw: object) -> MarketOrderRequest:
    return MarketOrderRequest(symbol=symbol, qty=qty, side=side, time_in_force=TimeInForce.DAY, **kw)


def state(client: TradingClient, order: Order) -> tuple[OrderStatus, str, str | None]:
    got = client.get_order_by_id(order.id)
    return got.status, got.filled_qty, got.filled_avg_price


def test_buy_limit_fills_at_the_ask_when_the_ask_reaches_it(venue: Venue, client: TradingClient) -> None:
    venue.set_quote("AAPL", "100.00", "100.10")
    order = client.submit_order(limit("AAPL", 10, OrderSide.BUY, 100.05))
    assert state(client, order) == (OrderStatus.NEW, "0", None)
    venue.set_quote("AAPL", "99.95", "100.03")
    assert state(client, order) == (OrderStatus.FILLED, "10", "100.03")  # the better of limit and ask


def test_sell_limit_fills_at_the_bid_when_the_bid_reaches_it(venue: Venue, client: TradingClient) -> None:
    venue.set_quote("AAPL", "100.00", "100.02")
    client.submit_order(market("AAPL", 10, OrderSide.BUY))
    order = client.submit_order(limit("AAPL", 10, OrderSide.SELL, 100.50))
    venue.set_quote("AAPL", "100.60", "100.62")
    assert state(client, order) == (OrderStatus.FILLED, "10", "100.6")


def test_touch_size_limits_the_fill_and_the_rest_fills_on_later_quotes(venue: Venue, client: TradingClient) -> None:
    """What one execution takes from the touch is gone until the next quote; an unchanged quote
    does not refill it."""
    venue.set_quote("AAPL", "100.00", "100.02", ask_size=30)
    order = client.submit_order(limit("AAPL", 100, OrderSide.BUY, 100.05))
    assert state(client, order) == (OrderStatus.PARTIALLY_FILLED, "30", "100.02")
    venue.advance(5)
    assert state(client, order)[1] == "30"
    venue.set_quote("AAPL", "100.01", "100.04", ask_size=50)
    assert state(client, order) == (OrderStatus.PARTIALLY_FILLED, "80", "100.0325")
    venue.set_quote("AAPL", "100.01", "100.05", ask_size=500)
    assert state(client, order) == (OrderStatus.FILLED, "100", "100.036")


def test_earlier_orders_take_the_touch_first(venue: Venue, client: TradingClient) -> None:
    venue.set_quote("AAPL", "100.00", "100.10", ask_size=50)
    first = client.submit_order(limit("AAPL", 40, OrderSide.BUY, 100.05))
    second = client.submit_order(limit("AAPL", 40, OrderSide.BUY, 100.05))
    venue.set_quote("AAPL", "100.00", "100.04", ask_size=50)
    assert state(client, first)[1] == "40" and state(client, second)[1] == "10"


def test_market_orders_fill_at_the_touch_plus_the_configured_slippage(make_venue: Callable[..., Venue]) -> None:
    venue = make_venue(market_slippage=Decimal("0.05"))
    client = trading_client(venue)
    venue.set_quote("AAPL", "100.00", "100.02", ask_size=10)
    buy = client.submit_order(market("AAPL", 100, OrderSide.BUY))
    assert state(client, buy) == (OrderStatus.FILLED, "100", "100.07")  # whole qty, past the touch size
    sell = client.submit_order(market("AAPL", 100, OrderSide.SELL))
    assert state(client, sell) == (OrderStatus.FILLED, "100", "99.95")


def test_notional_market_buy_gets_fractional_shares(venue: Venue, client: TradingClient) -> None:
    venue.set_quote("AAPL", "200.00", "200.00")
    order = client.submit_order(MarketOrderRequest(symbol="AAPL", notional=50, side=OrderSide.BUY,
                                                   time_in_force=TimeInForce.DAY))
    assert state(client, order) == (OrderStatus.FILLED, "0.25", "200")
    assert client.get_order_by_id(order.id).notional == "50"


def test_sell_stop_triggers_when_the_bid_falls_to_it_and_fills_like_market(venue: Venue, client: TradingClient) -> None:
    venue.set_quote("AAPL", "100.00", "100.02")
    client.submit_order(market("AAPL", 10, OrderSide.BUY))
    stop = client.submit_order(StopOrderRequest(symbol="AAPL", qty=10, side=OrderSide.SELL,
                                                time_in_force=TimeInForce.GTC, stop_price=99.00))
    venue.set_quote("AAPL", "99.01", "99.03")
    assert state(client, stop)[0] == OrderStatus.NEW
    venue.set_quote("AAPL", "98.50", "98.60")  # gapped through 99.00
    assert state(client, stop) == (OrderStatus.FILLED, "10", "98.5")


def test_buy_stop_triggers_when_the_ask_rises_to_it(venue: Venue, client: TradingClient) -> None:
    venue.set_quote("AAPL", "100.00", "100.02")
    stop = client.submit_order(StopOrderRequest(symbol="AAPL", qty=5, side=OrderSide.BUY,
                                                time_in_force=TimeInForce.DAY, stop_price=101.00))
    venue.set_quote("AAPL", "100.98", "101.00")
    assert state(client, stop) == (OrderStatus.FILLED, "5", "101")


def test_stop_limit_becomes_a_limit_once_triggered(venue: Venue, client: TradingClient) -> None:
    venue.set_quote("AAPL", "100.00", "100.02")
    client.submit_order(market("AAPL", 10, OrderSide.BUY))
    order = client.submit_order(StopLimitOrderRequest(symbol="AAPL", qty=10, side=OrderSide.SELL,
                                                      time_in_force=TimeInForce.GTC, stop_price=99.00,
                                                      limit_price=98.80))
    venue.set_quote("AAPL", "98.50", "98.60")  # triggered, but the bid is below the limit
    assert state(client, order) == (OrderStatus.NEW, "0", None)
    venue.set_quote("AAPL", "98.90", "98.95")  # back above the limit: sells at the bid
    assert state(client, order) == (OrderStatus.FILLED, "10", "98.9")


def test_oco_target_fill_cancels_the_stop(venue: Venue, client: TradingClient) -> None:
    venue.set_quote("AAPL", "100.00", "100.02")
    client.submit_order(market("AAPL", 10, OrderSide.BUY))
    pair = client.submit_order(LimitOrderRequest(symbol="AAPL", qty=10, side=OrderSide.SELL,
                                                 time_in_force=TimeInForce.GTC, order_class=OrderClass.OCO,
                                                 take_profit=TakeProfitRequest(limit_price=105),
                                                 stop_loss=StopLossRequest(stop_price=95)))
    assert (pair.limit_price, pair.legs[0].stop_price) == ("105", "95")  # the parent is the take-profit
    venue.set_quote("AAPL", "105.10", "105.12")
    got = client.get_order_by_id(pair.id)
    parent = client.get_order_by_client_id(pair.client_order_id)
    assert (got.status, got.filled_avg_price) == (OrderStatus.FILLED, "105.1")
    assert parent.legs[0].status == OrderStatus.CANCELED


def test_bracket_legs_are_held_until_the_entry_fills(venue: Venue, client: TradingClient) -> None:
    venue.set_quote("AAPL", "100.00", "100.10")
    bracket = client.submit_order(limit("AAPL", 10, OrderSide.BUY, 100.05, order_class=OrderClass.BRACKET,
                                        take_profit=TakeProfitRequest(limit_price=104),
                                        stop_loss=StopLossRequest(stop_price=97, limit_price=96.9)))
    assert [leg.status for leg in bracket.legs] == [OrderStatus.HELD, OrderStatus.HELD]
    venue.set_quote("AAPL", "99.90", "100.00")
    parent = client.get_order_by_client_id(bracket.client_order_id)
    assert (parent.status, parent.filled_avg_price) == (OrderStatus.FILLED, "100")
    target, stop = parent.legs
    assert (target.status, stop.status, stop.type.value) == (OrderStatus.NEW, OrderStatus.HELD, "stop_limit")
    assert client.get_open_position("AAPL").qty_available == "0"
    venue.set_quote("AAPL", "96.95", "97.00")  # stop triggers; stop_limit sells at the bid >= 96.90
    target, stop = client.get_order_by_client_id(bracket.client_order_id).legs
    assert (stop.status, stop.filled_avg_price, target.status) == (OrderStatus.FILLED, "96.95", OrderStatus.CANCELED)
    assert client.get_all_positions() == []


def test_bracket_entry_canceled_after_a_partial_fill_sizes_the_legs_to_it(venue: Venue, client: TradingClient) -> None:
    venue.set_quote("AAPL", "100.00", "100.02", ask_size=4)
    bracket = client.submit_order(limit("AAPL", 10, OrderSide.BUY, 100.05, order_class=OrderClass.BRACKET,
                                        take_profit=TakeProfitRequest(limit_price=104),
                                        stop_loss=StopLossRequest(stop_price=97)))
    client.cancel_order_by_id(bracket.id)
    target, stop = client.get_order_by_client_id(bracket.client_order_id).legs
    assert (target.qty, target.status, stop.qty, stop.status) == ("4", OrderStatus.NEW, "4", OrderStatus.HELD)


def test_bracket_entry_canceled_unfilled_cancels_its_legs(venue: Venue, client: TradingClient) -> None:
    venue.set_quote("AAPL", "100.00", "100.10")
    bracket = client.submit_order(limit("AAPL", 10, OrderSide.BUY, 100.05, order_class=OrderClass.BRACKET,
                                        take_profit=TakeProfitRequest(limit_price=104),
                                        stop_loss=StopLossRequest(stop_price=97)))
    client.cancel_order_by_id(bracket.id)
    parent = client.get_order_by_client_id(bracket.client_order_id)
    assert [o.status for o in (parent, *parent.legs)] == [OrderStatus.CANCELED] * 3


def test_oto_leg_goes_live_after_the_entry_fills(venue: Venue, client: TradingClient) -> None:
    venue.set_quote("AAPL", "100.00", "100.02")
    oto = client.submit_order(market("AAPL", 10, OrderSide.BUY, order_class=OrderClass.OTO,
                                     take_profit=TakeProfitRequest(limit_price=102)))
    parent = client.get_order_by_client_id(oto.client_order_id)
    assert parent.status == OrderStatus.FILLED and parent.legs[0].status == OrderStatus.NEW
    venue.set_quote("AAPL", "102.00", "102.02")
    assert client.get_order_by_client_id(oto.client_order_id).legs[0].status == OrderStatus.FILLED


def test_positions_average_in_and_keep_the_entry_price_when_reduced(venue: Venue, client: TradingClient) -> None:
    venue.set_quote("AAPL", "100.00", "100.00")
    client.submit_order(market("AAPL", 10, OrderSide.BUY))
    venue.set_quote("AAPL", "103.00", "103.00")
    client.submit_order(market("AAPL", 20, OrderSide.BUY))
    assert client.get_open_position("AAPL").avg_entry_price == "102"
    client.submit_order(market("AAPL", 15, OrderSide.SELL))
    position = client.get_open_position("AAPL")
    assert (position.qty, position.avg_entry_price) == ("15", "102")
    assert Decimal(client.get_account().cash) == 100000 - 1000 - 2060 + 1545


def test_scenario_time_zero_on_load_starts_the_path_at_once(make_venue: Callable[..., Venue]) -> None:
    path = Scenario(name="ramp", description="", symbol="RAMP", start=DEFAULT_START, time_zero="on_load",
                    quotes=(QuotePoint(0, Decimal("10.00"), Decimal("10.02"), Decimal(100), Decimal(100)),
                            QuotePoint(5, Decimal("11.00"), Decimal("11.02"), Decimal(100), Decimal(100))))
    venue = make_venue(scenarios=[path])
    client = trading_client(venue)
    venue.advance(5)
    order = client.submit_order(market("RAMP", 1, OrderSide.BUY))
    assert state(client, order)[2] == "11.02"


def test_scenario_time_zero_on_first_order_waits_for_the_first_order(make_venue: Callable[..., Venue]) -> None:
    path = Scenario(name="ramp", description="", symbol="RAMP", start=DEFAULT_START, time_zero="on_first_order",
                    quotes=(QuotePoint(0, Decimal("10.00"), Decimal("10.02"), Decimal(100), Decimal(100)),
                            QuotePoint(5, Decimal("11.00"), Decimal("11.02"), Decimal(100), Decimal(100))))
    venue = make_venue(scenarios=[path])
    client = trading_client(venue)
    venue.advance(60)
    first = client.submit_order(market("RAMP", 1, OrderSide.BUY))
    assert state(client, first)[2] == "10.02"
    venue.advance(5)
    second = client.submit_order(market("RAMP", 1, OrderSide.BUY))
    assert state(client, second)[2] == "11.02"


def test_speed_clock_replays_the_path_in_accelerated_time(make_venue: Callable[..., Venue]) -> None:
    from engine.sim import SimClock
    from engine.sim.testing import wait_until

    path = Scenario(name="ramp", description="", symbol="RAMP", start=DEFAULT_START, time_zero="on_first_order",
                    quotes=(QuotePoint(0, Decimal("10.00"), Decimal("10.02"), Decimal(100), Decimal(100)),
                            QuotePoint(5, Decimal("11.00"), Decimal("11.02"), Decimal(100), Decimal(100))))
    venue = make_venue(clock=SimClock(start=DEFAULT_START, speed=50.0), scenarios=[path])
    client = trading_client(venue)
    client.submit_order(market("RAMP", 1, OrderSide.BUY))
    resting = client.submit_order(limit("RAMP", 1, OrderSide.SELL, 10.90))
    wait_until(lambda: state(client, resting)[0] == OrderStatus.FILLED, timeout=3, what="the t=5 quote")
    assert state(client, resting)[2] == "11"
