"""The trade_updates websocket against Alpaca's published contract, over raw websockets where
alpaca-py has no say: the paths, the MessagePack codec, and one connection per key."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
import websockets
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import LimitOrderRequest
from websockets.exceptions import InvalidStatus

from engine.sim import Venue
from engine.sim.testing import Listener, summary, trading_client, wait_until

AUTH = {"action": "authenticate", "data": {"key_id": "sim-key", "secret_key": "sim-secret"}}
LISTEN = {"action": "listen", "data": {"streams": ["trade_updates"]}}
AUTHORIZED = {"stream": "authorization", "data": {"action": "authenticate", "status": "authorized"}}
MSGPACK = "application/msgpack"
LISTENING = {"stream": "listening", "data": {"streams": ["trade_updates"]}}


def buy(coid: str) -> LimitOrderRequest:
    return LimitOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY,
                             limit_price=100.05, client_order_id=coid)


def base(venue: Venue) -> str:
    return f"ws://{venue.host}:{venue.port}"


async def _listen_json(url: str) -> list[Any]:
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps(AUTH))
        await ws.send(json.dumps(LISTEN))
        return [json.loads(await ws.recv()) for _ in range(2)]


@pytest.mark.parametrize("path", ["/stream", "/stream/"])
def test_the_documented_path_with_and_without_a_trailing_slash(venue: Venue, path: str) -> None:
    assert asyncio.run(_listen_json(base(venue) + path)) == [AUTHORIZED, LISTENING]


def test_an_undocumented_path_is_not_a_stream(venue: Venue) -> None:
    # Alpaca documents only /stream (wss://paper-api.alpaca.markets/stream); /v2/stream is not one.
    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(_listen_json(base(venue) + "/v2/stream"))
    assert refused.value.response.status_code in (401, 404)


def test_frames_are_binary_json_by_default(venue: Venue) -> None:
    async def run() -> list[bytes | str]:
        async with websockets.connect(venue.stream_url) as ws:
            await ws.send(json.dumps(AUTH))
            return [await ws.recv()]

    (frame,) = asyncio.run(run())
    assert isinstance(frame, bytes) and json.loads(frame) == AUTHORIZED


# --- MessagePack --------------------------------------------------------------------------------

async def _msgpack_session(venue: Venue, client: TradingClient, *, client_frames: str) -> list[Any]:
    """Connect asking for msgpack, authenticate and listen (sending msgpack or JSON), place an
    order, and decode what comes back."""
    def pack(message: dict[str, Any]) -> bytes | str:
        return msgpack.packb(message) if client_frames == "msgpack" else json.dumps(message)

    async with websockets.connect(venue.stream_url, additional_headers={"Content-Type": "application/msgpack"}) as ws:
        await ws.send(pack(AUTH))
        await ws.send(pack(LISTEN))
        frames = [await ws.recv() for _ in range(2)]
        await asyncio.to_thread(client.submit_order, buy(f"mp-{client_frames}"))
        frames += [await ws.recv() for _ in range(3)]
    assert all(isinstance(f, bytes) for f in frames)
    return [msgpack.unpackb(f) for f in frames]


@pytest.mark.parametrize("client_frames", ["msgpack", "json"])
def test_msgpack_when_the_upgrade_asks_for_it(venue: Venue, client: TradingClient, client_frames: str) -> None:
    venue.set_quote("AAPL", "100.00", "100.02")
    messages = asyncio.run(_msgpack_session(venue, client, client_frames=client_frames))
    assert messages[:2] == [AUTHORIZED, LISTENING]
    events = [m["data"] for m in messages[2:]]
    assert [e["event"] for e in events] == ["pending_new", "new", "fill"]
    fill = events[2]
    assert (fill["price"], fill["qty"], fill["position_qty"], fill["order"]["status"]) == (
        "100.02", "1", "1", "filled")
    assert fill["execution_id"] and fill["timestamp"].endswith("Z")


def test_msgpack_and_json_clients_get_the_same_event(make_venue: Callable[..., Venue]) -> None:
    venue = make_venue(stream_connections_per_key=None)
    venue.set_quote("AAPL", "100.00", "100.02")
    client = trading_client(venue)

    async def run() -> tuple[Any, Any]:
        async with websockets.connect(venue.stream_url) as as_json, websockets.connect(
                venue.stream_url, additional_headers={"Content-Type": "application/msgpack"}) as as_msgpack:
            for ws, encode in ((as_json, json.dumps), (as_msgpack, msgpack.packb)):
                await ws.send(encode(AUTH))
                await ws.send(encode(LISTEN))
                [await ws.recv() for _ in range(2)]
            await asyncio.to_thread(client.submit_order, buy("both-codecs"))
            return json.loads(await as_json.recv()), msgpack.unpackb(await as_msgpack.recv())

    from_json, from_msgpack = asyncio.run(run())
    assert from_json == from_msgpack and from_json["data"]["event"] == "pending_new"


def test_invalid_msgpack_gets_an_error_frame(venue: Venue) -> None:
    async def run() -> Any:
        async with websockets.connect(venue.stream_url, additional_headers={"Content-Type": MSGPACK}) as ws:
            await ws.send(b"\xc1")  # a byte msgpack never uses
            return msgpack.unpackb(await ws.recv())

    assert asyncio.run(run()) == {"stream": "error", "data": {"error_message": "invalid msgpack"}}


# --- one connection per key ---------------------------------------------------------------------

def test_a_second_connection_is_refused_with_429_and_the_first_keeps_its_events(
        venue: Venue, client: TradingClient, listen: Callable[..., Listener]) -> None:
    first = listen()
    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(_listen_json(venue.stream_url))
    assert refused.value.response.status_code == 429
    assert json.loads(refused.value.response.body) == {"code": 42910000, "message": "connection limit exceeded"}
    assert venue.listening() == 1
    venue.set_quote("AAPL", "100.00", "100.02")
    client.submit_order(buy("still-first"))
    assert summary(first.take(3)) == [("pending_new", "still-first"), ("new", "still-first"),
                                      ("fill", "still-first")]


def test_once_the_first_is_gone_a_new_connection_gets_in(venue: Venue) -> None:
    async def run() -> list[Any]:
        async with websockets.connect(venue.stream_url) as first:
            await first.send(json.dumps(AUTH))
            await first.recv()
        await asyncio.to_thread(wait_until, lambda: not venue.hub.connections, 2.0, "the first to be gone")
        return await _listen_json(venue.stream_url)

    assert asyncio.run(run()) == [AUTHORIZED, LISTENING]


def test_an_unauthenticated_socket_does_not_hold_the_key(venue: Venue) -> None:
    async def run() -> list[Any]:
        async with websockets.connect(venue.stream_url):  # connected, never authenticates
            return await _listen_json(venue.stream_url)

    assert asyncio.run(run()) == [AUTHORIZED, LISTENING]


def test_of_two_sockets_opened_together_the_later_to_authenticate_is_turned_away(venue: Venue) -> None:
    async def run() -> tuple[Any, Any, int | None]:
        async with websockets.connect(venue.stream_url) as a, websockets.connect(venue.stream_url) as b:
            await a.send(json.dumps(AUTH))
            first = json.loads(await a.recv())
            await b.send(json.dumps(AUTH))
            second = json.loads(await b.recv())
            try:
                await asyncio.wait_for(b.recv(), 2)
                code = None
            except websockets.ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else None
            return first, second, code

    first, second, code = asyncio.run(run())
    assert first == AUTHORIZED
    assert second == {"stream": "authorization", "data": {
        "action": "authenticate", "status": "unauthorized", "message": "connection limit exceeded"}}
    assert code == 1000


def test_the_sdk_backs_off_on_429_and_gets_in_once_the_key_is_free(
        venue: Venue, listen: Callable[..., Listener]) -> None:
    first = listen()
    second = Listener(venue).start(wait=False)
    try:
        assert second.quiet(1.0) == [] and venue.listening() == 1
        first.stop()  # drops every socket; the second's next attempt finds the key free
        wait_until(lambda: venue.listening() == 1, timeout=8, what="the second SDK stream to get in")
    finally:
        second.stop()
