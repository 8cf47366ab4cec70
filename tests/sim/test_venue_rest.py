"""REST contract: every route TradingClient uses for trading answers in shapes alpaca-py's own
models accept (they run with raw_data=False throughout), with Alpaca's statuses and codes."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from uuid import UUID, uuid4

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import (
    OrderClass,
    OrderSide,
    OrderStatus,
    OrderType,
    PositionSide,
    QueryOrderStatus,
    TimeInForce,
)
from alpaca.trading.models import Order
from alpaca.trading.requests import (
    ClosePositionRequest,
    GetCalendarRequest,
    GetOrderByIdRequest,
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    ReplaceOrderRequest,
    StopLossRequest,
    TakeProfitRequest,
)

from engine.sim import Venue
from engine.sim.testing import trading_client


def limit(symbol: str, qty: float, side: OrderSide, price: float, coid: str | None = None,
          tif: TimeInForce = TimeInForce.DAY, **kw: object) -> LimitOrderRequest:
    return LimitOrderRequest(symbol=symbol, qty=qty, side=side, time_in_force=tif, limit_price=price,
                             client_order_id=coid, **kw)


def market(symbol: str, qty: float, side: OrderSide, coid: str | None = None) -> MarketOrderRequest:
    return MarketOrderRequest(symbol=symbol, qty=qty, side=side, time_in_force=TimeInForce.DAY, client_order_id=coid)


def api_error(call: object, *args: object) -> APIError:
    with pytest.raises(APIError) as caught:
        call(*args)  # type: ignore[operator]
    return caught.value


# --- orders -------------------------------------------------------------------------------------

def test_submit_answers_pending_new_and_the_order_fills_against_the_quote(venue: Venue, client: TradingClient) -> None:
    """POST /v2/orders answers the order as accepted (pending_new, nothing filled yet) and matches
    it at once against the current quote: GET shows it filled at the ask."""
    venue.set_quote("AAPL", "187.45", "187.48", bid_size=500, ask_size=500)
    placed = client.submit_order(limit("AAPL", 10, OrderSide.BUY, 187.59, "c-1"))
    assert isinstance(placed.id, UUID)
    assert (placed.status, placed.filled_qty, placed.order_class) == (OrderStatus.PENDING_NEW, "0", OrderClass.SIMPLE)
    assert (placed.limit_price, placed.qty, placed.extended_hours) == ("187.59", "10", False)

    got = client.get_order_by_id(placed.id)
    assert (got.status, got.filled_qty, got.filled_avg_price) == (OrderStatus.FILLED, "10", "187.48")
    assert got.filled_at is not None and got.submitted_at <= got.filled_at


def test_client_order_id_is_kept_and_generated_when_missing(venue: Venue, client: TradingClient) -> None:
    venue.set_quote("AAPL", "100", "100.02")
    named = client.submit_order(limit("AAPL", 1, OrderSide.BUY, 99.00, "my-id"))
    anonymous = client.submit_order(limit("AAPL", 1, OrderSide.BUY, 99.00))
    assert named.client_order_id == "my-id"
    assert UUID(anonymous.client_order_id)  # Alpaca generates a UUID string


def test_get_order_by_client_order_id_uses_the_literal_colon_route(venue: Venue, client: TradingClient) -> None:
    venue.set_quote("AAPL", "100", "100.02")
    placed = client.submit_order(limit("AAPL", 3, OrderSide.BUY, 99.50, "colon-route"))
    got = client.get_order_by_client_id("colon-route")
    assert got.id == placed.id and got.status == OrderStatus.NEW


def test_unknown_order_is_404_40410000(client: TradingClient) -> None:
    for call, arg in ((client.get_order_by_id, uuid4()), (client.get_order_by_client_id, "nope"),
                      (client.cancel_order_by_id, uuid4())):
        err = api_error(call, arg)
        assert (err.status_code, err.code, err.message) == (404, 40410000, "order not found")


def test_money_fields_accept_json_numbers_or_strings(venue: Venue, client: TradingClient) -> None:
    """alpaca-py sends floats; Alpaca also takes strings. Both parse to the same exact decimal."""
    venue.set_quote("AAPL", "100", "100.02")
    raw = client.post("/orders", {"symbol": "AAPL", "qty": "2", "side": "buy", "type": "limit",
                                  "time_in_force": "day", "limit_price": "99.95", "client_order_id": "strings"})
    assert isinstance(raw, dict) and raw["qty"] == "2" and raw["limit_price"] == "99.95"
    as_float = client.submit_order(limit("AAPL", 2, OrderSide.BUY, 99.95, "floats"))
    assert as_float.limit_price == "99.95"


def test_order_json_is_strict_alpaca_shape(venue: Venue, client: TradingClient) -> None:
    """Money as strings, lower-case enums, order_class never null, extended_hours a bool."""
    venue.set_quote("AAPL", "100", "100.02")
    raw = client.post("/orders", {"symbol": "AAPL", "qty": 1, "side": "buy", "type": "limit",
                                  "time_in_force": "gtc", "limit_price": 99.5})
    assert isinstance(raw, dict)
    assert raw["order_class"] == "simple" and raw["extended_hours"] is False
    assert raw["status"] == "pending_new" and raw["time_in_force"] == "gtc" and raw["side"] == "buy"
    for key in ("qty", "filled_qty", "limit_price"):
        assert isinstance(raw[key], str)
    assert raw["created_at"].endswith("Z") and raw["legs"] is None
    Order(**raw)


def test_list_orders_defaults_to_open_newest_first(venue: Venue, client: TradingClient) -> None:
    venue.set_quote("AAPL", "100", "100.02")
    first = client.submit_order(limit("AAPL", 1, OrderSide.BUY, 99, "o-1"))
    second = client.submit_order(limit("AAPL", 1, OrderSide.BUY, 98, "o-2"))
    client.submit_order(limit("AAPL", 1, OrderSide.BUY, 101, "filled-at-once"))
    listed = client.get_orders()
    assert [o.id for o in listed] == [second.id, first.id]


def test_list_orders_filters_status_side_symbols_and_direction(venue: Venue, client: TradingClient) -> None:
    venue.set_quote("AAPL", "100", "100.02")
    venue.set_quote("MSFT", "400", "400.04")
    venue.set_quote("TSLA", "180", "180.04")
    client.submit_order(limit("AAPL", 1, OrderSide.BUY, 99, "a-open"))
    client.submit_order(limit("AAPL", 1, OrderSide.BUY, 101, "a-filled"))
    client.submit_order(limit("MSFT", 1, OrderSide.BUY, 399, "m-open"))
    client.submit_order(limit("TSLA", 1, OrderSide.SELL, 181, "t-short"))

    def coids(**kw: object) -> list[str]:
        return [o.client_order_id for o in client.get_orders(GetOrdersRequest(**kw))]

    assert coids(status=QueryOrderStatus.CLOSED) == ["a-filled"]
    assert coids(status=QueryOrderStatus.ALL, direction="asc") == ["a-open", "a-filled", "m-open", "t-short"]
    assert coids(status=QueryOrderStatus.ALL, symbols=["MSFT", "TSLA"], direction="asc") == ["m-open", "t-short"]
    assert coids(status=QueryOrderStatus.ALL, side=OrderSide.SELL) == ["t-short"]


def test_list_orders_pages_with_after_until_and_limit(venue: Venue, client: TradingClient) -> None:
    """Creation times are strictly increasing even on a stopped clock, so paging by `after`
    never skips or repeats an order; limit defaults to 50 and is capped at 500."""
    venue.set_quote("AAPL", "100", "100.02")
    placed = [client.submit_order(limit("AAPL", 1, OrderSide.BUY, 90, f"p-{i:03}")).client_order_id
              for i in range(60)]
    assert len(client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL))) == 50
    assert len(client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, limit=500))) == 60

    seen: list[str] = []
    after = datetime(2024, 1, 1, tzinfo=UTC)
    while page := client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, after=after, limit=25,
                                                     direction="asc")):
        seen += [o.client_order_id for o in page]
        after = page[-1].submitted_at
    assert seen == placed

    middle = client.get_order_by_client_id("p-030").submitted_at
    before = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, until=middle, limit=500))
    assert len(before) == 30 and all(o.submitted_at < middle for o in before)


def test_nested_rolls_legs_up_under_their_parent(venue: Venue, client: TradingClient) -> None:
    venue.set_quote("AAPL", "100", "100.02")
    parent = client.submit_order(limit("AAPL", 5, OrderSide.BUY, 99, "br", order_class=OrderClass.BRACKET,
                                       take_profit=TakeProfitRequest(limit_price=105),
                                       stop_loss=StopLossRequest(stop_price=95)))
    flat = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL))
    assert len(flat) == 3 and all(o.legs is None for o in flat)
    nested = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, nested=True))
    assert [o.id for o in nested] == [parent.id]
    assert [(leg.type, leg.status) for leg in nested[0].legs] == [(OrderType.LIMIT, OrderStatus.HELD),
                                                                 (OrderType.STOP, OrderStatus.HELD)]
    assert client.get_order_by_id(parent.id, GetOrderByIdRequest(nested=True)).legs is not None
    assert client.get_order_by_id(parent.id, GetOrderByIdRequest(nested=False)).legs is None


def test_query_booleans_accept_python_and_json_spelling(venue: Venue, client: TradingClient) -> None:
    venue.set_quote("AAPL", "100", "100.02")
    client.submit_order(limit("AAPL", 5, OrderSide.BUY, 99, "b", order_class=OrderClass.OTO,
                              stop_loss=StopLossRequest(stop_price=95)))
    for spelled in ("True", "true"):
        raw = client.get("/orders", {"nested": spelled, "status": "all"})
        assert isinstance(raw, list) and len(raw) == 1 and len(raw[0]["legs"]) == 1
    for spelled in ("False", "false"):
        raw = client.get("/orders", {"nested": spelled, "status": "all"})
        assert isinstance(raw, list) and len(raw) == 2


def test_cancel_answers_204_and_the_order_is_canceled(venue: Venue, client: TradingClient) -> None:
    venue.set_quote("AAPL", "100", "100.02")
    placed = client.submit_order(limit("AAPL", 1, OrderSide.BUY, 99, "to-cancel"))
    assert client.cancel_order_by_id(placed.id) is None
    got = client.get_order_by_id(placed.id)
    assert got.status == OrderStatus.CANCELED and got.canceled_at is not None


def test_cancel_all_answers_207_with_one_entry_per_canceled_order(venue: Venue, client: TradingClient) -> None:
    venue.set_quote("AAPL", "100", "100.02")
    ids = {client.submit_order(limit("AAPL", 1, OrderSide.BUY, 99 - i)).id for i in range(3)}
    client.submit_order(limit("AAPL", 1, OrderSide.BUY, 101))  # filled: not canceled
    answer = client.cancel_orders()
    assert {r.id for r in answer} == ids and {r.status for r in answer} == {200}
    assert client.get_orders() == []


def test_replace_creates_a_new_order_and_marks_the_old_one_replaced(venue: Venue, client: TradingClient) -> None:
    venue.set_quote("AAPL", "100", "100.02")
    old = client.submit_order(limit("AAPL", 5, OrderSide.BUY, 99, "rep-1"))
    new = client.replace_order_by_id(old.id, ReplaceOrderRequest(qty=3, limit_price=99.5, client_order_id="rep-2"))
    assert (new.client_order_id, new.qty, new.limit_price, new.replaces) == ("rep-2", "3", "99.5", old.id)
    replaced = client.get_order_by_id(old.id)
    assert replaced.status == OrderStatus.REPLACED and replaced.replaced_by == new.id
    assert client.get_order_by_id(new.id).status == OrderStatus.NEW


def test_replace_to_a_marketable_price_fills(venue: Venue, client: TradingClient) -> None:
    venue.set_quote("AAPL", "100", "100.02")
    old = client.submit_order(limit("AAPL", 5, OrderSide.BUY, 99))
    new = client.replace_order_by_id(old.id, ReplaceOrderRequest(limit_price=100.05))
    got = client.get_order_by_id(new.id)
    assert (got.status, got.filled_avg_price) == (OrderStatus.FILLED, "100.02")


def test_replace_of_a_finished_order_is_422(venue: Venue, client: TradingClient) -> None:
    venue.set_quote("AAPL", "100", "100.02")
    done = client.submit_order(limit("AAPL", 1, OrderSide.BUY, 101))
    err = api_error(client.replace_order_by_id, done.id, ReplaceOrderRequest(limit_price=99.0))
    assert (err.status_code, err.code, err.message) == (422, 42210000, 'order is already in "filled" state')


# --- positions ----------------------------------------------------------------------------------

def test_positions_list_get_and_money_as_strings(venue: Venue, client: TradingClient) -> None:
    venue.set_quote("AAPL", "187.45", "187.48", ask_size=500)
    client.submit_order(limit("AAPL", 10, OrderSide.BUY, 187.59))
    venue.set_quote("AAPL", "188.00", "188.02")
    [listed] = client.get_all_positions()
    position = client.get_open_position("AAPL")
    assert listed == position
    assert (position.qty, position.side, position.avg_entry_price) == ("10", PositionSide.LONG, "187.48")
    assert (position.cost_basis, position.current_price, position.qty_available) == ("1874.8", "188.01", "10")
    assert position.unrealized_pl == "5.3"
    assert client.get_open_position(str(position.asset_id)).symbol == "AAPL"  # by asset id too


def test_unknown_position_is_404_position_does_not_exist(client: TradingClient) -> None:
    for call in (client.get_open_position, client.close_position):
        err = api_error(call, "AAPL")
        assert (err.status_code, err.code, err.message) == (404, 40410000, "position does not exist")


def test_close_position_by_qty_and_percentage_sends_market_orders(venue: Venue, client: TradingClient) -> None:
    venue.set_quote("AAPL", "100.00", "100.02", bid_size=1000, ask_size=1000)
    client.submit_order(market("AAPL", 10, OrderSide.BUY))
    by_qty = client.close_position("AAPL", ClosePositionRequest(qty="4"))
    assert (by_qty.side, by_qty.type, by_qty.qty) == (OrderSide.SELL, OrderType.MARKET, "4")
    assert client.get_open_position("AAPL").qty == "6"
    client.close_position("AAPL", ClosePositionRequest(percentage="50"))
    assert client.get_open_position("AAPL").qty == "3"
    client.close_position("AAPL")
    assert client.get_all_positions() == []


def test_close_position_larger_than_held_is_403(venue: Venue, client: TradingClient) -> None:
    venue.set_quote("AAPL", "100.00", "100.02")
    client.submit_order(market("AAPL", 2, OrderSide.BUY))
    err = api_error(client.close_position, "AAPL", ClosePositionRequest(qty="5"))
    assert (err.status_code, err.code) == (403, 40310000)
    assert err.message == "insufficient qty available for order (requested: 5, available: 2)"


def test_close_all_positions_answers_207_and_can_cancel_orders_first(venue: Venue, client: TradingClient) -> None:
    """Without cancel_orders, a position whose shares are held by an open exit fails with 403
    details; with cancel_orders=True the exits are canceled and every position is closed."""
    venue.set_quote("AAPL", "100.00", "100.02")
    venue.set_quote("MSFT", "400.00", "400.04")
    client.submit_order(market("AAPL", 10, OrderSide.BUY))
    client.submit_order(market("MSFT", 5, OrderSide.BUY))
    client.submit_order(limit("MSFT", 5, OrderSide.SELL, 420, tif=TimeInForce.GTC))

    answer = {r.symbol: r for r in client.close_all_positions()}
    assert answer["AAPL"].status == 200 and answer["AAPL"].body.qty == "10"
    failed = answer["MSFT"]
    assert failed.status == 403 and failed.body.code == 40310000
    assert (failed.body.available, failed.body.existing_qty, failed.body.held_for_orders) == (0, 5, 5)

    answer = {r.symbol: r for r in client.close_all_positions(cancel_orders=True)}
    assert answer["MSFT"].status == 200
    assert client.get_all_positions() == [] and client.get_orders() == []


# --- account, clock, calendar, auth, rate limit --------------------------------------------------

def test_account_moves_with_fills(venue: Venue, client: TradingClient) -> None:
    before = client.get_account()
    assert (before.cash, before.equity, before.buying_power, before.status.value) == (
        "100000", "100000", "200000", "ACTIVE")
    assert before.shorting_enabled is True and isinstance(before.id, UUID)
    venue.set_quote("AAPL", "100.00", "100.02")
    client.submit_order(market("AAPL", 10, OrderSide.BUY))
    after = client.get_account()
    assert (after.cash, after.long_market_value, after.equity) == ("98999.8", "1000.1", "99999.9")
    assert Decimal(after.buying_power) == 2 * Decimal("99999.9") - Decimal("1000.1")


def test_clock_follows_the_simulated_clock(venue: Venue, client: TradingClient) -> None:
    clock = client.get_clock()
    assert clock.is_open is True
    assert clock.timestamp == datetime(2024, 6, 12, 14, 0, tzinfo=UTC)
    assert clock.next_close == datetime(2024, 6, 12, 20, 0, tzinfo=UTC)
    assert clock.next_open == datetime(2024, 6, 13, 13, 30, tzinfo=UTC)
    venue.advance(6 * 3600)  # 16:00 ET
    clock = client.get_clock()
    assert clock.is_open is False and clock.timestamp == datetime(2024, 6, 12, 20, 0, tzinfo=UTC)
    venue.advance(2 * 86400)  # Friday 16:00 -> next open is Monday
    assert client.get_clock().next_open == datetime(2024, 6, 17, 13, 30, tzinfo=UTC)


def test_calendar_lists_weekdays_with_hh_mm_times(client: TradingClient) -> None:
    days = client.get_calendar(GetCalendarRequest(start=date(2024, 6, 14), end=date(2024, 6, 18)))
    assert [d.date for d in days] == [date(2024, 6, 14), date(2024, 6, 17), date(2024, 6, 18)]
    assert (days[0].open, days[0].close) == (datetime(2024, 6, 14, 9, 30), datetime(2024, 6, 14, 16, 0))


def test_bad_keys_are_401_40110000(venue: Venue) -> None:
    bad = TradingClient("sim-key", "wrong", url_override=venue.rest_url)
    err = api_error(bad.get_account)
    assert (err.status_code, err.code, err.message) == (401, 40110000, "request is not authorized")


def test_rate_limit_answers_429_42910000_over_the_window(make_venue: object) -> None:
    """200 requests per minute by default; here 5, to keep the test short. The SDK retries a 429
    three times, and every retry counts against the window too."""
    venue = make_venue(rate_limit_per_min=5)  # type: ignore[operator]
    client = trading_client(venue)
    client._retry = 0
    for _ in range(4):
        client.get_clock()
    answer = requests.get(f"{venue.rest_url}/v2/clock", headers={  # type: ignore[attr-defined]
        "APCA-API-KEY-ID": "sim-key", "APCA-API-SECRET-KEY": "sim-secret"})
    assert (answer.headers["X-RateLimit-Limit"], answer.headers["X-RateLimit-Remaining"]) == ("5", "0")
    assert 0 < int(answer.headers["X-RateLimit-Reset"]) - time.time() <= 61  # a Unix time, as Alpaca sends
    err = api_error(client.get_clock)
    assert (err.status_code, err.code, err.message) == (429, 42910000, "rate limit exceeded")
    assert err.response.headers.get("Content-Type", "").startswith("application/json")


def test_unknown_route_is_a_json_404(client: TradingClient) -> None:
    err = api_error(client.get, "/no-such-route")
    assert (err.status_code, err.code) == (404, 40410000)


def test_time_in_force_ioc_cancels_the_rest_and_fok_all_or_nothing(venue: Venue, client: TradingClient) -> None:
    venue.set_quote("AAPL", "100.00", "100.02", ask_size=30)
    ioc = client.submit_order(limit("AAPL", 50, OrderSide.BUY, 100.05, tif=TimeInForce.IOC))
    got = client.get_order_by_id(ioc.id)
    assert (got.status, got.filled_qty) == (OrderStatus.CANCELED, "30")
    venue.set_quote("AAPL", "100.00", "100.02", ask_size=30)
    fok = client.submit_order(limit("AAPL", 50, OrderSide.BUY, 100.05, tif=TimeInForce.FOK))
    got = client.get_order_by_id(fok.id)
    assert (got.status, got.filled_qty) == (OrderStatus.CANCELED, "0")
    fok = client.submit_order(limit("AAPL", 30, OrderSide.BUY, 100.05, tif=TimeInForce.FOK))
    assert client.get_order_by_id(fok.id).status == OrderStatus.FILLED


def test_gtc_order_rests_overnight_and_lapses_after_90_days(venue: Venue, client: TradingClient) -> None:
    venue.set_quote("AAPL", "100.00", "100.02")
    gtc = client.submit_order(limit("AAPL", 1, OrderSide.BUY, 90, tif=TimeInForce.GTC))
    venue.advance(86400)
    assert client.get_order_by_id(gtc.id).status == OrderStatus.NEW
    assert client.get_order_by_id(gtc.id).expires_at.date() == date(2024, 9, 10)
    venue.advance(timedelta(days=91).total_seconds())
    assert client.get_order_by_id(gtc.id).status == OrderStatus.EXPIRED
