"""AlpacaBroker against answers the venue does not give: a loopback server with set replies.

The real alpaca-py client makes every request (no mocks); the server records what arrives, so
these tests pin the request the adapter builds for account activities and how it reads an
answer it cannot trust (a new status or time_in_force word, a malformed activity).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal as D
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from engine.broker.alpaca import AlpacaBroker
from engine.broker.port import (
    BrokerAmbiguous,
    BrokerExecution,
    BrokerRejected,
    BrokerUnknownWord,
    Kind,
)
from engine.core.domain import Side

from .conftest import StreamProbe

ORDER_ID = str(uuid.uuid4())


class Replies:
    """What the server answers per path, and every request it got."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, Any]] = {}
        self.seen: list[tuple[str, str, dict[str, list[str]], dict[str, str]]] = []


@pytest.fixture
def replies() -> Iterator[tuple[Replies, AlpacaBroker]]:
    state = Replies()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            state.seen.append(("GET", parts.path, parse_qs(parts.query), dict(self.headers.items())))
            status, body = state.answers.get(parts.path, (404, {"code": 40410000, "message": "not found"}))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state, AlpacaBroker("answers-key", "answers-secret",
                                  rest_url=f"http://127.0.0.1:{server.server_address[1]}", request_timeout=5)
    finally:
        server.shutdown()
        server.server_close()


def activity(**changes: Any) -> dict[str, Any]:
    row = {"activity_type": "FILL", "id": "20240612101500123::8efc7b9a-8b2b-4000-9955-d36e7db0df74",
           "transaction_time": "2024-06-12T14:15:00.123456Z", "type": "partial_fill", "price": "187.1234",
           "qty": "0.3", "side": "sell", "symbol": "AAPL", "leaves_qty": "9.7", "order_id": ORDER_ID,
           "cum_qty": "0.3", "order_status": "partially_filled"}
    return {**row, **changes}


def order(**changes: Any) -> dict[str, Any]:
    stamp = "2024-06-12T14:15:00.123456Z"
    row = {"id": ORDER_ID, "client_order_id": "odd", "created_at": stamp, "updated_at": stamp, "submitted_at": stamp,
           "symbol": "AAPL", "asset_class": "us_equity", "qty": "10", "filled_qty": "0", "order_class": "simple",
           "order_type": "limit", "type": "limit", "side": "buy", "time_in_force": "gtc", "limit_price": "90",
           "status": "new", "extended_hours": False}
    return {**row, **changes}


PATH = "/v2/account/activities/FILL"


def test_fill_activities_asks_as_alpaca_documents_and_reads_exactly(replies: tuple[Replies, AlpacaBroker]) -> None:
    """One GET of /v2/account/activities/FILL with the keys, direction=asc and the bounds as
    RFC 3339 text; quantities and prices read as exact decimals, the time as aware UTC."""
    state, broker = replies
    state.answers[PATH] = (200, [activity(), activity(id="20240612101501000::x", type="fill", qty="9.7", cum_qty="10",
                                                      leaves_qty="0", order_status="filled")])
    page = broker.fill_activities(after=datetime(2024, 6, 12, 14, 0, tzinfo=UTC),
                                  until=datetime(2024, 6, 12, 10, 30),  # naive: UTC
                                  page_token="20240612100000000::prev", page_size=2)
    [(method, path, query, headers)] = state.seen
    assert (method, path) == ("GET", PATH)
    assert query == {"direction": ["asc"], "after": ["2024-06-12T14:00:00+00:00"],
                     "until": ["2024-06-12T10:30:00+00:00"], "page_token": ["20240612100000000::prev"],
                     "page_size": ["2"]}
    assert headers["APCA-API-KEY-ID"] == "answers-key"
    assert page[0] == BrokerExecution(
        activity_id="20240612101500123::8efc7b9a-8b2b-4000-9955-d36e7db0df74", broker_order_id=ORDER_ID,
        symbol="AAPL", side=Side.SELL, qty=D("0.3"), price=D("187.1234"),
        at=datetime(2024, 6, 12, 14, 15, 0, 123456, tzinfo=UTC), cum_qty=D("0.3"), leaves_qty=D("9.7"),
        order_status="partially_filled", kind=Kind.PARTIAL_FILL)
    assert (page[1].kind, page[1].key) == (Kind.FILL, (ORDER_ID, D(10)))

    broker.fill_activities(after=datetime(2024, 6, 12, 14, 0, tzinfo=UTC))
    assert state.seen[-1][2] == {"direction": ["asc"], "after": ["2024-06-12T14:00:00+00:00"], "page_size": ["100"]}


@pytest.mark.parametrize(("answer", "error", "text"), [
    ((200, [activity(type="fill_correction")]), BrokerUnknownWord, "unknown fill activity type 'fill_correction'"),
    ((200, [activity(qty="a lot")]), BrokerAmbiguous, "unreadable fill activity"),
    ((200, [activity(transaction_time="2024-06-12T14:15:00")]), BrokerAmbiguous, "unreadable fill activity"),
    ((200, {"activities": []}), BrokerAmbiguous, "not a list"),
    ((500, {"code": 50010000, "message": "internal"}), BrokerAmbiguous, "HTTP 500"),
    ((422, {"code": 40010001, "message": "invalid page_token"}), BrokerRejected, "invalid page_token"),
], ids=["unknown-type", "bad-decimal", "naive-time", "not-a-list", "500", "422"])
def test_unreadable_activity_answers_are_broker_errors(replies: tuple[Replies, AlpacaBroker], answer: Any,
                                                       error: type[Exception], text: str) -> None:
    state, broker = replies
    state.answers[PATH] = answer
    with pytest.raises(error, match=text):
        broker.fill_activities(after=datetime(2024, 6, 12, tzinfo=UTC))


@pytest.mark.parametrize(("field", "word"), [("status", "queued_for_auction"), ("time_in_force", "gtx")])
def test_an_order_word_alpaca_py_cannot_read_is_ambiguous_and_kept(replies: tuple[Replies, AlpacaBroker],
                                                                   field: str, word: str) -> None:
    """A status or time_in_force newer than alpaca-py's enums fails its model, a ValueError: it
    comes out as BrokerUnknownWord (ambiguous: the call may have worked) with the raw word."""
    state, broker = replies
    state.answers["/v2/orders:by_client_order_id"] = (200, order(**{field: word}))
    with pytest.raises(BrokerUnknownWord, match=word) as unknown:
        broker.get_order("odd")
    assert (unknown.value.field, unknown.value.word) == (field, word)
    assert isinstance(unknown.value, BrokerAmbiguous) and not isinstance(unknown.value, ValueError)
    state.answers["/v2/orders:by_client_order_id"] = (200, order())
    readable = broker.get_order("odd")  # the same answer with known words reads
    assert readable is not None and readable.status == "new"


def trade_update(coid: str, status: str) -> str:
    return json.dumps({"stream": "trade_updates", "data": {
        "event": "new", "timestamp": "2024-06-12T14:15:00.123456Z", "order": order(client_order_id=coid,
                                                                                    status=status)}})


def test_an_unreadable_trade_update_makes_the_stream_reconnect() -> None:
    """A trade update alpaca-py cannot read is never lost unnoticed: the stream reconnects, so
    on_connect runs and the engine reconciles; the updates after it are delivered as ever."""
    connections: list[int] = []
    loop = asyncio.new_event_loop()
    started = threading.Event()
    port: list[int] = []

    async def session(ws: ServerConnection) -> None:
        connections.append(1)
        await ws.recv()  # authenticate
        await ws.send(json.dumps({"stream": "authorization", "data": {"status": "authorized",
                                                                       "action": "authenticate"}}))
        await ws.recv()  # listen
        await ws.send(json.dumps({"stream": "listening", "data": {"streams": ["trade_updates"]}}))
        if len(connections) == 1:
            await ws.send(trade_update("before", "new"))
            await ws.send(trade_update("unreadable", "queued_for_auction"))
            await ws.send(trade_update("same-connection", "new"))  # never read: the SDK has hung up
        else:
            await ws.send(trade_update("after", "new"))
        with contextlib.suppress(ConnectionClosed):
            await ws.wait_closed()

    stop = asyncio.Event()

    async def run() -> None:
        async with serve(session, "127.0.0.1", 0) as server:
            port.append(server.sockets[0].getsockname()[1])
            started.set()
            await stop.wait()

    thread = threading.Thread(target=lambda: loop.run_until_complete(run()), daemon=True)
    thread.start()
    assert started.wait(5)
    broker = AlpacaBroker("answers-key", "answers-secret", rest_url="http://127.0.0.1:9",
                          stream_url=f"ws://127.0.0.1:{port[0]}")
    probe = StreamProbe(broker).start()
    try:
        updates = probe.until("after", "new", timeout=15)
        assert [u.order.client_order_id for u in updates] == ["before", "after"]
        assert probe.connects == 2 and len(connections) == 2
    finally:
        probe.stop()
        loop.call_soon_threadsafe(stop.set)
        thread.join(5)
        loop.close()


def test_an_unreadable_order_field_that_is_no_word_is_still_ambiguous(replies: tuple[Replies, AlpacaBroker]) -> None:
    state, broker = replies
    state.answers["/v2/orders:by_client_order_id"] = (200, order(created_at="yesterday"))
    with pytest.raises(BrokerAmbiguous, match=r"could not read Alpaca's answer \(created_at\)") as unreadable:
        broker.get_order("odd")
    assert not isinstance(unreadable.value, BrokerUnknownWord)
