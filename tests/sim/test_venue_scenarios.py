"""Each shipped scenario produces its named outcome with the engine's rules: limit = signal x
(1 +/- 0.0005) rounded to the cent, exits from the fill (target = fill + 2 x risk), fills at exact
prices. Driven through TradingClient; time moves by hand."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderClass, OrderSide, OrderStatus, OrderType, PositionSide, TimeInForce
from alpaca.trading.models import Order
from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest, StopLossRequest, TakeProfitRequest

from engine.sim import Venue, list_scenarios, load_scenario
from engine.sim.testing import trading_client

REQUIRED = {"crwd_gap", "clean_fill", "partial_then_stall", "target_hit", "stop_hit", "gap_through_stop",
            "slow_market", "extended_hours", "short_clean_fill", "slippage_spike", "entry_rejected",
            "exits_rejected", "after_hours_stop", "overnight_stop"}
# Set outside regular hours: the clock starts at the first scenario's starts_at, so these are left
# out when every scenario plays on one venue (test_venue_overnight.py plays the last two).
OUTSIDE_REGULAR_HOURS = {"extended_hours", "after_hours_stop", "overnight_stop"}


def entry(client: TradingClient, scenario: str, limit_price: float, *, extended: bool = False) -> Order:
    signal = load_scenario(scenario).signal
    return client.submit_order(LimitOrderRequest(
        symbol=signal["symbol"], qty=float(signal["qty"]), side=OrderSide(signal["side"]),
        time_in_force=TimeInForce.DAY, limit_price=limit_price, extended_hours=extended,
        client_order_id=f"{signal['signal_id']}-entry"))


def market_entry(client: TradingClient, scenario: str) -> Order:
    signal = load_scenario(scenario).signal
    return client.submit_order(MarketOrderRequest(symbol=signal["symbol"], qty=float(signal["qty"]),
                                                  side=OrderSide(signal["side"]), time_in_force=TimeInForce.DAY))


def exits(client: TradingClient, order: Order, qty: str, target: float, stop: float) -> Order:
    exit_side = OrderSide.SELL if order.side == OrderSide.BUY else OrderSide.BUY
    return client.submit_order(LimitOrderRequest(
        symbol=order.symbol, qty=float(qty), side=exit_side, time_in_force=TimeInForce.GTC,
        order_class=OrderClass.OCO, take_profit=TakeProfitRequest(limit_price=target),
        stop_loss=StopLossRequest(stop_price=stop), client_order_id=f"{order.client_order_id}-exits"))


def fill_of(client: TradingClient, order: Order) -> tuple[OrderStatus, str, str | None]:
    got = client.get_order_by_id(order.id)
    return got.status, got.filled_qty, got.filled_avg_price


def legs_of(client: TradingClient, order: Order) -> tuple[Order, Order]:
    parent = client.get_order_by_client_id(order.client_order_id)
    return parent, parent.legs[0]


@pytest.fixture
def playing(make_venue: Callable[..., Venue]) -> Callable[[str], Venue]:
    """A venue playing one scenario, its clock at the scenario's start."""
    return lambda name: make_venue(scenarios=[name])


def test_every_required_scenario_ships_with_description_path_and_signal() -> None:
    assert set(list_scenarios()) >= REQUIRED
    for name in list_scenarios():
        scenario = load_scenario(name)
        assert scenario.description and scenario.quotes[0].t == 0 and scenario.time_zero == "on_first_order"
        assert {"signal_id", "symbol", "side", "qty", "price", "stop"} <= set(scenario.signal)
        assert scenario.signal["symbol"] == scenario.symbol
    assert len({load_scenario(n).symbol for n in list_scenarios()}) == len(list_scenarios()), \
        "one symbol per scenario, so the demo can play them all on one venue"


def test_crwd_gap_limit_at_535_09_is_never_filled(playing: Callable[[str], Venue]) -> None:
    """Ask 536.00 at arrival and running away: the 535.09 limit rests untouched for 30 s."""
    venue = playing("crwd_gap")
    client = trading_client(venue)
    order = entry(client, "crwd_gap", 535.09)
    for _ in range(30):
        venue.advance(1)
        assert fill_of(client, order) == (OrderStatus.NEW, "0", None)
    client.cancel_order_by_id(order.id)
    assert fill_of(client, order)[0] == OrderStatus.CANCELED


def test_crwd_gap_market_order_fills_at_536_and_is_flattened_at_the_bid(playing: Callable[[str], Venue]) -> None:
    venue = playing("crwd_gap")
    client = trading_client(venue)
    order = market_entry(client, "crwd_gap")
    assert fill_of(client, order) == (OrderStatus.FILLED, "10", "536")
    venue.advance(0.2)
    flatten = client.close_position("CRWD")
    assert fill_of(client, flatten) == (OrderStatus.FILLED, "10", "535.92")
    assert Decimal(client.get_account().cash) == 100000 - 10 * Decimal("536.00") + 10 * Decimal("535.92")


def test_clean_fill_fills_10_at_187_48_and_exits_stay_untouched(playing: Callable[[str], Venue]) -> None:
    venue = playing("clean_fill")
    client = trading_client(venue)
    order = entry(client, "clean_fill", 187.59)
    assert fill_of(client, order) == (OrderStatus.FILLED, "10", "187.48")
    pair = exits(client, order, "10", 192.44, 185.00)
    venue.advance(40)
    target, stop = legs_of(client, pair)
    assert (target.status, stop.status, stop.type) == (OrderStatus.NEW, OrderStatus.HELD, OrderType.STOP)
    assert client.get_open_position("AAPL").qty == "10"


def test_partial_then_stall_fills_40_at_410_36_and_the_rest_never(playing: Callable[[str], Venue]) -> None:
    venue = playing("partial_then_stall")
    client = trading_client(venue)
    order = entry(client, "partial_then_stall", 410.61)
    assert fill_of(client, order) == (OrderStatus.PARTIALLY_FILLED, "40", "410.36")
    venue.advance(2)  # the fill timeout in demos and tests
    assert fill_of(client, order) == (OrderStatus.PARTIALLY_FILLED, "40", "410.36")
    client.cancel_order_by_id(order.id)
    assert fill_of(client, order) == (OrderStatus.CANCELED, "40", "410.36")
    pair = exits(client, order, "40", 419.08, 406.00)
    venue.advance(30)
    assert legs_of(client, pair)[0].status == OrderStatus.NEW
    assert client.get_open_position("MSFT").qty == "40"


def test_target_hit_sells_20_at_123_80_at_six_seconds(playing: Callable[[str], Venue]) -> None:
    venue = playing("target_hit")
    client = trading_client(venue)
    order = entry(client, "target_hit", 121.46)
    assert fill_of(client, order) == (OrderStatus.FILLED, "20", "121.39")
    pair = exits(client, order, "20", 123.77, 120.20)
    venue.advance(5.9)
    assert legs_of(client, pair)[0].status == OrderStatus.NEW
    venue.advance(0.1)
    target, stop = legs_of(client, pair)
    assert (target.status, target.filled_avg_price, stop.status) == (OrderStatus.FILLED, "123.8", OrderStatus.CANCELED)
    assert client.get_all_positions() == []
    assert Decimal(client.get_account().cash) - 100000 == Decimal("48.20")


def test_stop_hit_sells_50_at_the_158_40_stop_at_five_seconds(playing: Callable[[str], Venue]) -> None:
    venue = playing("stop_hit")
    client = trading_client(venue)
    order = entry(client, "stop_hit", 160.08)
    assert fill_of(client, order) == (OrderStatus.FILLED, "50", "159.99")
    pair = exits(client, order, "50", 163.17, 158.40)
    venue.advance(4.9)
    assert legs_of(client, pair)[1].status == OrderStatus.HELD
    venue.advance(0.1)
    target, stop = legs_of(client, pair)
    assert (stop.status, stop.filled_avg_price, target.status) == (OrderStatus.FILLED, "158.4", OrderStatus.CANCELED)
    assert Decimal(client.get_account().cash) - 100000 == Decimal("-79.50")


def test_gap_through_stop_fills_at_the_gapped_bid_176_10(playing: Callable[[str], Venue]) -> None:
    venue = playing("gap_through_stop")
    client = trading_client(venue)
    order = entry(client, "gap_through_stop", 180.09)
    assert fill_of(client, order) == (OrderStatus.FILLED, "30", "179.98")
    pair = exits(client, order, "30", 183.54, 178.20)
    venue.advance(5)
    stop = legs_of(client, pair)[1]
    assert (stop.status, stop.filled_avg_price) == (OrderStatus.FILLED, "176.1")
    assert Decimal(client.get_account().cash) - 100000 == Decimal("-116.40")


def test_slow_market_never_reaches_the_31_02_limit(playing: Callable[[str], Venue]) -> None:
    venue = playing("slow_market")
    client = trading_client(venue)
    order = entry(client, "slow_market", 31.02)
    venue.advance(120)
    assert fill_of(client, order) == (OrderStatus.NEW, "0", None)


def test_extended_hours_fills_in_the_premarket_and_exits_wait_for_the_open(playing: Callable[[str], Venue]) -> None:
    venue = playing("extended_hours")
    client = trading_client(venue)
    assert client.get_clock().is_open is False
    regular = entry(client, "extended_hours", 24.01)
    assert regular.status == OrderStatus.ACCEPTED  # not extended: waits for 09:30
    client.cancel_order_by_id(regular.id)
    signal = load_scenario("extended_hours").signal
    order = client.submit_order(LimitOrderRequest(symbol="PLTR", qty=50, side=OrderSide.BUY,
                                                  time_in_force=TimeInForce.DAY, limit_price=24.02,
                                                  extended_hours=True, client_order_id=signal["signal_id"]))
    assert fill_of(client, order) == (OrderStatus.FILLED, "50", "24")
    pair = exits(client, order, "50", 24.60, 23.70)
    assert pair.status == OrderStatus.ACCEPTED
    venue.advance(2 * 3600)  # 09:30
    target, stop = legs_of(client, pair)
    assert (target.status, stop.status) == (OrderStatus.NEW, OrderStatus.HELD)


def test_short_clean_fill_opens_25_short_at_480_05_and_covers_at_474_10(playing: Callable[[str], Venue]) -> None:
    venue = playing("short_clean_fill")
    client = trading_client(venue)
    order = entry(client, "short_clean_fill", 479.86)
    assert fill_of(client, order) == (OrderStatus.FILLED, "25", "480.05")
    position = client.get_open_position("META")
    assert (position.side, position.qty) == (PositionSide.SHORT, "-25")
    pair = exits(client, order, "25", 474.15, 483.00)
    venue.advance(5.9)
    assert legs_of(client, pair)[0].status == OrderStatus.NEW
    venue.advance(0.1)
    target = legs_of(client, pair)[0]
    assert (target.status, target.filled_avg_price) == (OrderStatus.FILLED, "474.1")
    assert client.get_all_positions() == []
    assert Decimal(client.get_account().cash) - 100000 == Decimal("148.75")


def test_slippage_spike_market_fills_at_88_40_and_a_limit_never_fills(playing: Callable[[str], Venue]) -> None:
    venue = playing("slippage_spike")
    client = trading_client(venue)
    limit_order = entry(client, "slippage_spike", 88.04)
    client.cancel_order_by_id(limit_order.id)
    order = market_entry(client, "slippage_spike")
    assert fill_of(client, order) == (OrderStatus.FILLED, "10", "88.4")
    flatten = client.close_position("SMCI")
    assert fill_of(client, flatten) == (OrderStatus.FILLED, "10", "88.3")


def test_smart_limit_in_slippage_spike_rests_for_the_whole_path(playing: Callable[[str], Venue]) -> None:
    venue = playing("slippage_spike")
    client = trading_client(venue)
    order = entry(client, "slippage_spike", 88.04)
    venue.advance(40)
    assert fill_of(client, order) == (OrderStatus.NEW, "0", None)


def test_all_scenarios_play_side_by_side_on_one_venue(make_venue: Callable[..., Venue]) -> None:
    """The demo loads every scenario into one venue; each path starts at its own first order."""
    names = sorted(REQUIRED - OUTSIDE_REGULAR_HOURS)
    venue = make_venue(scenarios=names)
    client = trading_client(venue)
    venue.advance(100)  # nothing has started: time zero is each symbol's first order
    first = entry(client, "target_hit", 121.46)
    assert fill_of(client, first)[2] == "121.39"
    venue.advance(3)
    second = entry(client, "clean_fill", 187.59)
    assert fill_of(client, second)[2] == "187.48"


def test_entry_rejected_accepts_then_rejects_the_first_entry(playing: Callable[[str], Venue]) -> None:
    venue = playing("entry_rejected")
    client = trading_client(venue)
    order = entry(client, "entry_rejected", 225.11)
    assert order.status == OrderStatus.PENDING_NEW
    assert fill_of(client, order) == (OrderStatus.REJECTED, "0", None)
    assert [e.event for e in venue.events()] == ["pending_new", "rejected"]
    assert client.get_all_positions() == []
    again = client.submit_order(MarketOrderRequest(symbol="COIN", qty=1, side=OrderSide.BUY,
                                                   time_in_force=TimeInForce.DAY))
    assert fill_of(client, again)[0] == OrderStatus.FILLED


def test_exits_rejected_refuses_the_first_oco_and_the_flatten_goes_through(
        playing: Callable[[str], Venue]) -> None:
    from alpaca.common.exceptions import APIError

    venue = playing("exits_rejected")
    client = trading_client(venue)
    order = entry(client, "exits_rejected", 640.32)
    assert fill_of(client, order) == (OrderStatus.FILLED, "5", "639.95")
    with pytest.raises(APIError) as caught:
        exits(client, order, "5", 651.85, 634.00)
    assert (caught.value.status_code, caught.value.code) == (403, 40310000)
    flatten = client.submit_order(MarketOrderRequest(symbol="NFLX", qty=5, side=OrderSide.SELL,
                                                     time_in_force=TimeInForce.DAY))
    assert fill_of(client, flatten) == (OrderStatus.FILLED, "5", "639.9")
    assert client.get_all_positions() == []
