"""GET /v2/account's full entity, GET /v2/account/activities (FILL) as Alpaca documents them, and
request bodies that are not UTF-8. Raw HTTP where alpaca-py 0.44's TradingClient has no call."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
import requests
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest

from engine.sim import Venue
from engine.sim.clock import SimClock
from engine.sim.sessions import ET

# Alpaca's account entity: the fields of the docs' account model (alpaca-docs
# data/webapi/entities/account-v2.yaml) plus those captured real responses carry beyond it.
STRING_FIELDS = {
    "account_number", "status", "crypto_status", "currency", "cash", "portfolio_value", "non_marginable_buying_power",
    "accrued_fees", "pending_transfer_in", "pending_transfer_out", "long_market_value", "short_market_value",
    "position_market_value", "equity", "last_equity", "multiplier", "buying_power", "initial_margin",
    "maintenance_margin", "sma", "last_maintenance_margin", "daytrading_buying_power", "regt_buying_power",
    "effective_buying_power", "options_buying_power", "bod_dtbp", "intraday_adjustments", "pending_reg_taf_fees",
    "balance_asof", "created_at", "id",
}
BOOL_FIELDS = {"pattern_day_trader", "trade_suspended_by_user", "trading_blocked", "transfers_blocked",
               "account_blocked", "shorting_enabled"}
INT_FIELDS = {"daytrade_count", "options_approved_level", "options_trading_level", "crypto_tier"}


def keys(venue: Venue) -> dict[str, str]:
    return {"APCA-API-KEY-ID": venue.api_key, "APCA-API-SECRET-KEY": venue.secret_key}


def get(venue: Venue, path: str, **params: Any) -> requests.Response:
    return requests.get(f"{venue.rest_url}{path}", params=params, headers=keys(venue), timeout=5)


def test_account_carries_every_documented_field_with_alpacas_types(venue: Venue, client: TradingClient) -> None:
    body = get(venue, "/v2/account").json()
    assert set(body) >= STRING_FIELDS | BOOL_FIELDS | INT_FIELDS
    assert all(isinstance(body[f], str) for f in STRING_FIELDS)
    assert all(isinstance(body[f], bool) for f in BOOL_FIELDS)
    assert all(isinstance(body[f], int) and not isinstance(body[f], bool) for f in INT_FIELDS)
    for money in ("pending_transfer_out", "pending_reg_taf_fees", "intraday_adjustments", "position_market_value"):
        assert Decimal(body[money]) == 0
    assert body["balance_asof"] == "2024-06-11"  # the trading day before the clock's 2024-06-12
    client.get_account()  # and the SDK still parses it


def test_position_market_value_is_the_gross_position_value(venue: Venue, client: TradingClient) -> None:
    venue.set_quote("AAPL", "100.00", "100.02")
    client.submit_order(MarketOrderRequest(symbol="AAPL", qty=10, side=OrderSide.BUY, time_in_force=TimeInForce.DAY))
    body = get(venue, "/v2/account").json()
    assert body["position_market_value"] == body["long_market_value"] == "1000.1"


def test_balance_asof_skips_weekends_and_holidays(make_venue: Callable[..., Venue]) -> None:
    venue = make_venue(clock=SimClock(start=datetime(2024, 7, 5, 10, 0)))  # the Friday after July 4
    assert get(venue, "/v2/account").json()["balance_asof"] == "2024-07-03"


# --- request bodies --------------------------------------------------------------------------------

@pytest.mark.parametrize("body", [b'{"symbol":"\xff\xfe"}', b"\xff\xfe\x00\x00", b"{not json"])
def test_a_body_that_is_not_utf8_json_is_a_400_like_malformed_json(venue: Venue, body: bytes) -> None:
    headers = {**keys(venue), "Content-Type": "application/json"}
    for method, path in (("POST", "/v2/orders"), ("PATCH", "/v2/orders/6f1c2b1e-3a7d-4f5e-9c1a-5d2e8b7a9c01")):
        reply = requests.request(method, f"{venue.rest_url}{path}", data=body, headers=headers, timeout=5)
        assert (reply.status_code, reply.json()) == (400, {"code": 40010000,
                                                           "message": "request body format is invalid"})


def test_admin_routes_answer_a_non_utf8_body_with_400_too(venue: Venue) -> None:
    reply = requests.post(f"{venue.rest_url}/admin/quote", data=b'{"symbol":"\xff"}', timeout=5,
                          headers={"Content-Type": "application/json"})
    assert (reply.status_code, reply.json()["code"]) == (400, 40010000)


# --- activities ----------------------------------------------------------------------------------

ACTIVITY_ID = re.compile(r"^\d{17}::[0-9a-f-]{36}$")


def test_each_execution_is_one_fill_activity_with_alpacas_fields(venue: Venue, client: TradingClient) -> None:
    venue.set_quote("AAPL", "100.00", "100.02", ask_size=40)
    order = client.submit_order(LimitOrderRequest(symbol="AAPL", qty=100, side=OrderSide.BUY,
                                                  time_in_force=TimeInForce.DAY, limit_price=100.05))
    venue.advance(1)
    venue.set_quote("AAPL", "100.01", "100.03", ask_size=500)
    activities = get(venue, "/v2/account/activities/FILL", direction="asc").json()
    fields = ("type", "qty", "price", "cum_qty", "leaves_qty", "order_status")
    assert [tuple(a[f] for f in fields) for a in activities] == [
        ("partial_fill", "40", "100.02", "40", "60", "partially_filled"),
        ("fill", "60", "100.03", "100", "0", "filled")]
    first = activities[0]
    assert (first["activity_type"], first["side"], first["symbol"], first["order_id"]) == (
        "FILL", "buy", "AAPL", str(order.id))
    assert ACTIVITY_ID.match(first["id"])
    # The date part is the transaction time in New York, to the millisecond (the docs' example).
    stamp = datetime.fromisoformat(first["transaction_time"].replace("Z", "+00:00")).astimezone(ET)
    assert first["id"].split("::")[0] == stamp.strftime("%Y%m%d%H%M%S") + f"{stamp.microsecond // 1000:03d}"


def test_the_activity_id_carries_the_trade_updates_execution_id(venue: Venue, client: TradingClient) -> None:
    venue.set_quote("AAPL", "100.00", "100.02")
    client.submit_order(MarketOrderRequest(symbol="AAPL", qty=3, side=OrderSide.BUY, time_in_force=TimeInForce.DAY))
    (activity,) = get(venue, "/v2/account/activities/FILL").json()
    (fill,) = [e for e in venue.events() if e.event == "fill"]
    assert activity["id"].split("::")[1] == fill.execution_id
    assert UUID(fill.execution_id or "")
    # Stable: asking again gives the same record.
    assert get(venue, "/v2/account/activities", activity_types="FILL").json() == [activity]


def _fills(venue: Venue, client: TradingClient, count: int) -> None:
    venue.set_quote("AAPL", "100.00", "100.02")
    for _ in range(count):
        client.submit_order(MarketOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY,
                                               time_in_force=TimeInForce.DAY))
        venue.advance(60)


def test_paging_with_page_token_in_both_directions(venue: Venue, client: TradingClient) -> None:
    _fills(venue, client, 5)
    every = get(venue, "/v2/account/activities/FILL", direction="asc").json()
    assert len(every) == 5 and every == sorted(every, key=lambda a: a["transaction_time"])
    desc = get(venue, "/v2/account/activities/FILL").json()  # direction defaults to desc
    assert desc == every[::-1]
    page1 = get(venue, "/v2/account/activities/FILL", page_size=2).json()
    page2 = get(venue, "/v2/account/activities/FILL", page_size=2, page_token=page1[-1]["id"]).json()
    page3 = get(venue, "/v2/account/activities/FILL", page_size=2, page_token=page2[-1]["id"]).json()
    assert page1 + page2 + page3 == desc and len(page3) == 1
    asc2 = get(venue, "/v2/account/activities/FILL", direction="asc", page_size=2, page_token=every[1]["id"]).json()
    assert asc2 == every[2:4]


def test_page_size_is_capped_at_100_without_a_date(venue: Venue, client: TradingClient) -> None:
    venue.set_quote("AAPL", "100.00", "100.02", ask_size=1)
    client.submit_order(LimitOrderRequest(symbol="AAPL", qty=105, side=OrderSide.BUY,
                                          time_in_force=TimeInForce.DAY, limit_price=100.05))
    for _ in range(104):  # the ask shows one share at a time: 105 one-share executions
        venue.set_quote("AAPL", "100.00", "100.02", ask_size=1)
    assert len(get(venue, "/v2/account/activities/FILL").json()) == 100  # the default
    assert len(get(venue, "/v2/account/activities/FILL", page_size=500).json()) == 100  # the maximum
    assert len(get(venue, "/v2/account/activities/FILL", date="2024-06-12").json()) == 105  # a date: all of them


def test_date_after_and_until_filter(venue: Venue, client: TradingClient) -> None:
    _fills(venue, client, 3)  # 10:00, 10:01, 10:02 ET on 2024-06-12
    every = get(venue, "/v2/account/activities/FILL", direction="asc").json()
    middle = every[1]["transaction_time"]
    assert get(venue, "/v2/account/activities/FILL", after=middle, direction="asc").json() == every[2:]
    assert get(venue, "/v2/account/activities/FILL", until=middle, direction="asc").json() == every[:1]
    assert get(venue, "/v2/account/activities/FILL", date="2024-06-12", direction="asc").json() == every
    assert get(venue, "/v2/account/activities/FILL", date="2024-06-11").json() == []
    refused = get(venue, "/v2/account/activities/FILL", date="2024-06-12", after=middle)
    assert refused.status_code == 422


def test_other_activity_types_are_empty_and_unknown_ones_refused(venue: Venue, client: TradingClient) -> None:
    _fills(venue, client, 1)
    assert get(venue, "/v2/account/activities/DIV").json() == []
    assert get(venue, "/v2/account/activities", activity_types="DIV,CSD").json() == []
    assert len(get(venue, "/v2/account/activities").json()) == 1
    assert get(venue, "/v2/account/activities/NOPE").status_code == 422
