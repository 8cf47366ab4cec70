"""The trade_updates websocket, received through a real alpaca-py TradingStream: the handshake,
every event type with its fields, fan-out to several clients, drops and the SDK's own reconnect,
and no replay of what was missed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID

import websockets
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderClass, OrderSide, OrderStatus, TimeInForce
from alpaca.trading.requests import (
    LimitOrderRequest,
    MarketOrderRequest,
    ReplaceOrderRequest,
    StopLossRequest,
    TakeProfitRequest,
)

from engine.sim import Venue
from engine.sim.testing import Listener, event_name, summary, trading_client, wait_until

OPEN_AT = datetime(2024, 6, 12, 14, 0, tzinfo=UTC)  # the venue's clock: 10:00 New York


def limit(coid: str, qty: float, price: float, side: OrderSide = OrderSide.BUY, **kw: object) -> LimitOrderRequest:
    kw.setdefault("time_in_force", TimeInForce.DAY)
    return LimitOrderRequest(symbol="AAPL", qty=qty, side=side, limit_price=price, client_order_id=coid, **kw)


# --- handshake (raw frames: the SDK hides them) --------------------------------------------------

async def _handshake(url: str, secret: str) -> list[object]:
    frames: list[object] = []
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"action": "authenticate", "data": {"key_id": "sim-key", "secret_key": secret}}))
        frames.append(json.loads(await ws.recv()))
        if secret == "sim-secret":
            await ws.send(json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
            frames.append(json.loads(await ws.recv()))
        else:
            try:
                await asyncio.wait_for(ws.recv(), 2)
            except websockets.ConnectionClosed as closed:
                frames.append(("closed", closed.rcvd.code if closed.rcvd else None))
    return frames


def test_handshake_replies_authorization_first_then_listening(venue: Venue) -> None:
    assert asyncio.run(_handshake(venue.stream_url, "sim-secret")) == [
        {"stream": "authorization", "data": {"action": "authenticate", "status": "authorized"}},
        {"stream": "listening", "data": {"streams": ["trade_updates"]}},
    ]


def test_bad_keys_get_unauthorized_then_the_socket_closes(venue: Venue) -> None:
    frames = asyncio.run(_handshake(venue.stream_url, "wrong"))
    assert frames[0] == {"stream": "authorization", "data": {
        "action": "authenticate", "status": "unauthorized", "message": "access key verification failed"}}
    assert frames[1] == ("closed", 1000)


def test_sdk_with_bad_keys_never_gets_to_listen(venue: Venue, listen: Callable[..., Listener]) -> None:
    listener = Listener(venue, secret_key="wrong").start(wait=False)
    try:
        assert listener.quiet(0.8) == [] and venue.listening() == 0
    finally:
        listener.stop()


# --- events ---------------------------------------------------------------------------------------

def test_order_lifecycle_events_carry_timestamp_execution_price_qty_position(
        venue: Venue, client: TradingClient, listen: Callable[..., Listener]) -> None:
    stream = listen()
    venue.set_quote("AAPL", "100.00", "100.02", ask_size=30)
    client.submit_order(limit("life", 50, 100.05))
    pending, new, partial = stream.take(3)
    assert summary([pending, new, partial]) == [("pending_new", "life"), ("new", "life"), ("partial_fill", "life")]
    assert pending.execution_id is None and isinstance(new.execution_id, UUID)
    assert all(u.timestamp == OPEN_AT for u in (pending, new, partial))
    assert (partial.price, partial.qty, partial.position_qty) == (100.02, 30, 30)
    assert (partial.order.status, partial.order.filled_qty) == (OrderStatus.PARTIALLY_FILLED, "30")

    venue.advance(1.5)
    venue.set_quote("AAPL", "100.01", "100.03", ask_size=100)
    fill = stream.next()
    assert event_name(fill) == "fill" and isinstance(fill.execution_id, UUID)
    assert fill.execution_id != partial.execution_id
    assert (fill.price, fill.qty, fill.position_qty) == (100.03, 20, 50)
    assert (fill.order.status, fill.order.filled_qty, fill.order.filled_avg_price) == (
        OrderStatus.FILLED, "50", "100.024")
    assert fill.timestamp == datetime(2024, 6, 12, 14, 0, 1, 500000, tzinfo=UTC)


def test_cancel_events_and_pending_cancel_while_a_cancel_is_held(
        venue: Venue, client: TradingClient, listen: Callable[..., Listener]) -> None:
    """A held-back cancel shows `pending_cancel`; a fill can still land before `canceled` would."""
    stream = listen()
    venue.set_quote("AAPL", "100.00", "100.10")
    plain = client.submit_order(limit("plain", 5, 99))
    client.cancel_order_by_id(plain.id)
    assert summary(stream.take(3)) == [("pending_new", "plain"), ("new", "plain"), ("canceled", "plain")]

    venue.faults.hold_cancels(2.0, count=1)
    held = client.submit_order(limit("held", 5, 100.05))
    client.cancel_order_by_id(held.id)
    venue.set_quote("AAPL", "99.98", "100.04")
    updates = stream.take(4)
    assert summary(updates) == [("pending_new", "held"), ("new", "held"), ("pending_cancel", "held"), ("fill", "held")]
    venue.advance(3)
    assert stream.quiet(0.2) == [] and client.get_order_by_id(held.id).status == OrderStatus.FILLED


def test_pending_cancel_completes_as_canceled_after_the_hold(
        venue: Venue, client: TradingClient, listen: Callable[..., Listener]) -> None:
    stream = listen()
    venue.set_quote("AAPL", "100.00", "100.10")
    venue.faults.hold_cancels(2.0)
    order = client.submit_order(limit("slow-cancel", 5, 99))
    client.cancel_order_by_id(order.id)
    stream.take(3)
    assert client.get_order_by_id(order.id).status == OrderStatus.PENDING_CANCEL
    venue.advance(2)
    canceled = stream.next()
    assert (event_name(canceled), canceled.timestamp) == ("canceled", datetime(2024, 6, 12, 14, 0, 2, tzinfo=UTC))


def test_replace_events_pending_replace_replaced_then_the_new_order(
        venue: Venue, client: TradingClient, listen: Callable[..., Listener]) -> None:
    stream = listen()
    venue.set_quote("AAPL", "100.00", "100.10")
    old = client.submit_order(limit("r-old", 5, 99))
    stream.take(2)
    client.replace_order_by_id(old.id, ReplaceOrderRequest(limit_price=99.5, client_order_id="r-new"))
    updates = stream.take(4)
    assert summary(updates) == [("pending_replace", "r-old"), ("replaced", "r-old"), ("pending_new", "r-new"),
                                ("new", "r-new")]
    assert updates[1].order.status == OrderStatus.REPLACED and updates[3].order.replaces == old.id


def test_rejected_accepted_expired_and_done_for_day_events(
        venue: Venue, client: TradingClient, listen: Callable[..., Listener]) -> None:
    stream = listen()
    venue.set_quote("AAPL", "100.00", "100.10", ask_size=10)
    venue.reject_next(client_order_id="rej", via="event")
    client.submit_order(limit("rej", 5, 99))
    assert summary(stream.take(2)) == [("pending_new", "rej"), ("rejected", "rej")]

    client.submit_order(limit("day", 5, 99))
    client.submit_order(limit("gtc", 20, 100.10, time_in_force=TimeInForce.GTC))  # 10 fill now
    stream.take(5)
    venue.advance(6 * 3600)  # the 16:00 close
    close = stream.take(2)
    assert summary(close) == [("expired", "day"), ("done_for_day", "gtc")]
    assert close[1].order.status == OrderStatus.DONE_FOR_DAY
    assert close[0].timestamp == datetime(2024, 6, 12, 20, 0, tzinfo=UTC)

    client.submit_order(MarketOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY,
                                           client_order_id="after-close"))
    accepted = stream.next()
    assert (event_name(accepted), accepted.order.status) == ("accepted", OrderStatus.ACCEPTED)
    venue.advance(17.5 * 3600)  # 09:30 next day: the queued order goes live and fills
    assert summary(stream.take(2)) == [("new", "after-close"), ("fill", "after-close")]


def test_bracket_events_show_held_legs_then_their_release(
        venue: Venue, client: TradingClient, listen: Callable[..., Listener]) -> None:
    stream = listen()
    venue.set_quote("AAPL", "100.00", "100.10")
    client.submit_order(limit("br", 10, 100.05, order_class=OrderClass.BRACKET,
                              take_profit=TakeProfitRequest(limit_price=104), stop_loss=StopLossRequest(stop_price=97)))
    _, new = stream.take(2)
    assert [leg.status for leg in new.order.legs] == [OrderStatus.HELD, OrderStatus.HELD]
    venue.set_quote("AAPL", "99.98", "100.00")
    fill, target_new = stream.take(2)
    assert event_name(fill) == "fill" and fill.order.client_order_id == "br"
    assert event_name(target_new) == "new" and target_new.order.limit_price == "104"
    venue.set_quote("AAPL", "96.90", "96.95")
    released, stop_fill, target_canceled = stream.take(3)
    assert [event_name(u) for u in (released, stop_fill, target_canceled)] == ["new", "fill", "canceled"]
    assert stop_fill.order.stop_price == "97" and stop_fill.price == 96.90 and stop_fill.position_qty == 0


# --- fan-out, drops, reconnects --------------------------------------------------------------------

def test_every_listening_client_gets_every_event(
        make_venue: Callable[..., Venue], listen: Callable[..., Listener]) -> None:
    venue = make_venue(stream_connections_per_key=None)  # with Alpaca's one-per-key limit lifted
    client = trading_client(venue)
    first, second = listen(venue), listen(venue)
    venue.set_quote("AAPL", "100.00", "100.02")
    client.submit_order(limit("both", 1, 100.05))
    expected = [("pending_new", "both"), ("new", "both"), ("fill", "both")]
    assert summary(first.take(3)) == expected and summary(second.take(3)) == expected


def test_clean_drop_then_the_sdk_reconnects_and_events_flow_again(
        venue: Venue, client: TradingClient, listen: Callable[..., Listener]) -> None:
    stream = listen()
    venue.set_quote("AAPL", "100.00", "100.02")
    assert venue.faults.drop_streams() == 1
    assert venue.listening() == 0
    wait_until(lambda: venue.listening() == 1, timeout=4, what="the SDK's reconnect (0.5-1 s backoff)")
    client.submit_order(limit("after", 1, 100.05))
    assert summary(stream.take(3))[-1] == ("fill", "after")


def test_abrupt_drop_without_close_frame_then_reconnect(
        venue: Venue, client: TradingClient, listen: Callable[..., Listener]) -> None:
    stream = listen()
    venue.set_quote("AAPL", "100.00", "100.02")
    assert venue.faults.drop_streams(abrupt=True) == 1
    wait_until(lambda: venue.listening() == 1, timeout=4, what="the SDK's reconnect")
    client.submit_order(limit("after-abort", 1, 100.05))
    assert summary(stream.take(3))[-1] == ("fill", "after-abort")


def test_events_while_disconnected_are_not_replayed(
        venue: Venue, client: TradingClient, listen: Callable[..., Listener]) -> None:
    stream = listen()
    venue.set_quote("AAPL", "100.00", "100.02")
    venue.faults.drop_streams()
    client.submit_order(limit("missed", 1, 100.05))  # before the SDK is back
    wait_until(lambda: venue.listening() == 1, timeout=4, what="the SDK's reconnect")
    client.submit_order(limit("seen", 1, 100.05))
    assert [coid for _, coid in summary(stream.take(3))] == ["seen"] * 3
    assert client.get_order_by_client_id("missed").status == OrderStatus.FILLED  # REST still tells


def test_muted_stream_stays_connected_and_sends_nothing(
        venue: Venue, client: TradingClient, listen: Callable[..., Listener]) -> None:
    stream = listen()
    venue.set_quote("AAPL", "100.00", "100.02")
    venue.faults.mute_streams()
    client.submit_order(limit("muted", 1, 100.05))
    assert stream.quiet(0.3) == [] and venue.listening() == 1
    venue.faults.unmute_streams()
    client.submit_order(limit("unmuted", 1, 100.05))
    assert [coid for _, coid in summary(stream.take(3))] == ["unmuted"] * 3


def test_every_event_is_logged_for_inspection(venue: Venue, client: TradingClient) -> None:
    venue.set_quote("AAPL", "100.00", "100.02")
    client.submit_order(limit("logged", 2, 100.05))
    events = venue.events()
    assert [e.event for e in events] == ["pending_new", "new", "fill"]
    assert events[-1].price == Decimal("100.02") and events[-1].position_qty == 2
