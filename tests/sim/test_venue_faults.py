"""Fault injection, through the Python API and the /admin HTTP routes, observed with the
unmodified SDK: what the client sees, and what the venue received."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, OrderStatus, TimeInForce
from alpaca.trading.requests import LimitOrderRequest

from engine.sim import Venue
from engine.sim.submissions import LOST
from engine.sim.testing import Listener, event_name, summary, wait_until


def buy(coid: str | None, qty: float = 1, price: float = 100.05) -> LimitOrderRequest:
    return LimitOrderRequest(symbol="AAPL", qty=qty, side=OrderSide.BUY, time_in_force=TimeInForce.DAY,
                             limit_price=price, client_order_id=coid)


@pytest.fixture
def aapl(venue: Venue) -> Venue:
    venue.set_quote("AAPL", "100.00", "100.02", bid_size=1000, ask_size=1000)
    return venue


# --- events ---------------------------------------------------------------------------------------

def test_drop_loses_the_next_matching_event_only(aapl: Venue, client: TradingClient,
                                                 listen: Callable[..., Listener]) -> None:
    stream = listen()
    aapl.faults.drop_events(events=["fill"], client_order_id_prefix="sig-1")
    client.submit_order(buy("sig-1-entry"))
    client.submit_order(buy("sig-1-again"))
    assert summary(stream.take(5)) == [("pending_new", "sig-1-entry"), ("new", "sig-1-entry"),
                                       ("pending_new", "sig-1-again"), ("new", "sig-1-again"),
                                       ("fill", "sig-1-again")]


def test_duplicate_sends_the_same_event_twice_with_the_same_execution_id(
        aapl: Venue, client: TradingClient, listen: Callable[..., Listener]) -> None:
    stream = listen()
    aapl.faults.duplicate_events(events=["fill"])
    client.submit_order(buy("dup-fill"))
    first, second = stream.take(4)[2:]
    assert event_name(first) == event_name(second) == "fill"
    assert first.execution_id == second.execution_id


def test_delay_lets_later_events_overtake(aapl: Venue, client: TradingClient,
                                          listen: Callable[..., Listener]) -> None:
    stream = listen()
    aapl.faults.delay_events(0.3, events=["new"], symbol="AAPL")
    client.submit_order(buy("late-new"))
    assert [event_name(u) for u in stream.take(3)] == ["pending_new", "fill", "new"]


def test_reorder_sends_a_batch_in_reverse(aapl: Venue, client: TradingClient,
                                          listen: Callable[..., Listener]) -> None:
    stream = listen()
    aapl.faults.reorder_events(count=3)
    client.submit_order(buy("reordered"))
    assert [event_name(u) for u in stream.take(3)] == ["fill", "new", "pending_new"]


def test_drop_streams_reports_how_many_and_mute_keeps_them(make_venue: Callable[..., Venue],
                                                          listen: Callable[..., Listener]) -> None:
    aapl = make_venue(stream_connections_per_key=None)  # two listeners on one key: Alpaca's limit lifted
    listen(aapl)
    listen(aapl)
    aapl.faults.mute_streams()
    assert aapl.listening() == 2
    assert aapl.faults.drop_streams(abrupt=True) == 2
    assert aapl.listening() == 0
    aapl.faults.clear()  # also unmutes: the SDK's reconnects are answered again
    wait_until(lambda: aapl.listening() == 2, timeout=4, what="both reconnects")


# --- REST: injected statuses and the SDK's retries ----------------------------------------------

def test_429_four_times_exhausts_the_sdks_four_attempts(aapl: Venue, client: TradingClient) -> None:
    aapl.faults.fail_route("POST", "/v2/orders", 429, count=4)
    with pytest.raises(APIError) as caught:
        client.submit_order(buy("throttled"))
    assert (caught.value.status_code, caught.value.code) == (429, 42910000)
    received = aapl.received("throttled")
    assert (received.attempts, received.statuses, received.order) == (4, [429] * 4, None)


def test_504_after_the_order_was_placed_makes_the_sdk_retry_into_a_duplicate(
        aapl: Venue, client: TradingClient) -> None:
    """The order exists, the client saw a 504, the SDK's own retry meets the duplicate rule."""
    aapl.faults.fail_route("POST", "/v2/orders", 504, count=1, after_handler=True)
    with pytest.raises(APIError) as caught:
        client.submit_order(buy("ambiguous"))
    assert (caught.value.status_code, caught.value.code, caught.value.message) == (
        422, 40010001, "client_order_id must be unique")
    received = aapl.received("ambiguous")
    assert (received.attempts, received.statuses) == (2, [504, 422])
    assert received.order is not None and received.order.status == "filled"
    assert client.get_order_by_client_id("ambiguous").status == OrderStatus.FILLED


def test_504_after_placing_without_client_order_id_duplicates_the_order(aapl: Venue, client: TradingClient) -> None:
    aapl.faults.fail_route("POST", "/v2/orders", 504, count=1, after_handler=True)
    client.submit_order(buy(None, qty=3))
    assert client.get_open_position("AAPL").qty == "6"


def test_two_504s_then_success_places_one_order(aapl: Venue, client: TradingClient) -> None:
    aapl.faults.fail_route("POST", "/v2/orders", 504, count=2)
    placed = client.submit_order(buy("third-time"))
    assert placed.client_order_id == "third-time"
    assert aapl.received("third-time").statuses == [504, 504, 200]


def test_500_is_not_retried_by_the_sdk(aapl: Venue, client: TradingClient) -> None:
    aapl.faults.fail_route("*", "/v2/orders*", 500)
    with pytest.raises(APIError) as caught:
        client.submit_order(buy("broken"))
    assert caught.value.status_code == 500 and caught.value.code == 50010000
    assert aapl.received("broken").attempts == 1
    client.submit_order(buy("fine"))  # count=1: only the next call


def test_injected_status_on_other_routes(aapl: Venue, client: TradingClient) -> None:
    aapl.faults.fail_route("GET", "/v2/account", 503, count=1)
    with pytest.raises(APIError) as caught:
        client.get_account()
    assert caught.value.status_code == 503
    assert client.get_account().cash == "100000"


def test_latency_delays_matching_routes(aapl: Venue, client: TradingClient) -> None:
    aapl.faults.add_latency("GET", "/v2/clock", 0.3, count=1)
    started = time.monotonic()
    client.get_clock()
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    client.get_clock()
    assert time.monotonic() - started < 0.3


def test_lost_response_places_the_order_but_the_client_sees_a_reset(aapl: Venue, client: TradingClient) -> None:
    aapl.faults.lose_response(hold=0.2)
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ConnectionError):
        client.submit_order(buy("lost"))
    assert time.monotonic() - started >= 0.2
    assert aapl.received("lost").statuses == [LOST]
    assert client.get_order_by_client_id("lost").status == OrderStatus.FILLED


def test_a_refused_request_is_still_lost_or_overridden_by_its_fault(aapl: Venue, client: TradingClient) -> None:
    """Prevents a fault from being used up without effect when the venue refuses the request itself."""
    aapl.faults.lose_response()
    with pytest.raises(requests.exceptions.ConnectionError):
        client.submit_order(buy("refused-lost", price=100.055))  # sub-penny: the venue refuses it
    assert aapl.received("refused-lost").statuses == [LOST]
    aapl.faults.fail_route("POST", "/v2/orders", 500, after_handler=True)
    with pytest.raises(APIError) as caught:
        client.submit_order(buy("refused-500", price=100.055))
    assert caught.value.status_code == 500
    assert aapl.order("refused-lost") is None and aapl.order("refused-500") is None


def test_lost_response_past_the_clients_own_timeout_is_a_read_timeout(aapl: Venue) -> None:
    aapl.faults.lose_response(hold=1.0)
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(f"{aapl.rest_url}/v2/orders", timeout=0.3, headers={
            "APCA-API-KEY-ID": "sim-key", "APCA-API-SECRET-KEY": "sim-secret"},
            json={"symbol": "AAPL", "qty": 1, "side": "buy", "type": "market", "time_in_force": "day",
                  "client_order_id": "timed-out"})
    wait_until(lambda: aapl.order("timed-out") is not None, what="the order behind the lost answer")


def test_clear_forgets_pending_faults(aapl: Venue, client: TradingClient) -> None:
    aapl.faults.fail_route("*", "*", 500, count=None)
    aapl.faults.clear()
    assert client.get_clock().is_open


# --- the /admin routes, for a test in another process -------------------------------------------

def admin(venue: Venue, path: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{venue.rest_url}/admin/{path}", data=data,
                                     headers={"Content-Type": "application/json"},
                                     method="GET" if body is None else "POST")
    with urllib.request.urlopen(request, timeout=5) as answer:
        return json.loads(answer.read())


def test_admin_routes_drive_the_market_clock_and_faults(venue: Venue, client: TradingClient) -> None:
    assert admin(venue, "scenario", {"name": "target_hit"})["signal"]["price"] == "121.40"
    admin(venue, "quote", {"symbol": "AAPL", "bid": "100.00", "ask": "100.02", "ask_size": 10})
    admin(venue, "faults/route", {"method": "POST", "path": "/v2/orders", "status": 504, "after_handler": True})
    with pytest.raises(APIError):
        client.submit_order(buy("via-admin", qty=5))
    received = admin(venue, "received?client_order_id=via-admin")
    assert (received["attempts"], received["statuses"]) == (2, [504, 422])
    assert received["order"]["filled_qty"] == "5"

    assert admin(venue, "clock/advance", {"seconds": 3600})["is_open"] is True
    state = admin(venue, "state")
    assert state["now"].startswith("2024-06-12T15:00") and state["cash"] == "99499.9"
    assert [p["symbol"] for p in admin(venue, "positions")] == ["AAPL"]
    assert [o["client_order_id"] for o in admin(venue, "orders")] == ["via-admin"]
    assert [e["event"] for e in admin(venue, "events")] == ["pending_new", "new", "fill"]


def test_admin_fault_routes_reach_every_fault(venue: Venue, client: TradingClient,
                                              listen: Callable[..., Listener]) -> None:
    stream = listen()
    admin(venue, "quote", {"symbol": "AAPL", "bid": "100.00", "ask": "100.02"})
    admin(venue, "faults/events", {"action": "drop", "events": ["pending_new"]})
    admin(venue, "faults/reject", {"client_order_id": "no-*", "status": 403, "code": 40310000, "message": "nope"})
    with pytest.raises(APIError) as caught:
        client.submit_order(buy("no-1"))
    assert (caught.value.status_code, caught.value.message) == (403, "nope")
    client.submit_order(buy("yes-1"))
    assert summary(stream.take(2)) == [("new", "yes-1"), ("fill", "yes-1")]

    admin(venue, "faults/hold_cancels", {"seconds": 5, "count": 1})
    resting = client.submit_order(buy("rest", price=99))
    client.cancel_order_by_id(resting.id)
    assert client.get_order_by_id(resting.id).status == OrderStatus.PENDING_CANCEL

    admin(venue, "faults/latency", {"method": "GET", "path": "/v2/clock", "seconds": 0.2, "count": 1})
    started = time.monotonic()
    client.get_clock()
    assert time.monotonic() - started >= 0.2
    admin(venue, "faults/lose_response", {"count": 1})
    with pytest.raises(requests.exceptions.ConnectionError):
        client.submit_order(buy("lost-admin"))

    admin(venue, "faults/mute", {"muted": True})
    stream.quiet(0.1)
    client.submit_order(buy("silent"))
    assert stream.quiet(0.3) == []
    admin(venue, "faults/clear", {})
    assert admin(venue, "faults/drop_streams", {"abrupt": False})["dropped"] == 1
    wait_until(lambda: venue.listening() == 1, timeout=4, what="the reconnect")
