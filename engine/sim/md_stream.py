"""The market-data websocket at `/v2/{feed}` (iex, sip, delayed_sip, test), speaking Alpaca's Data
API v2 stream protocol as alpaca-py's StockDataStream expects it.

Protocol (alpacahq/alpaca-docs, market-data-api/stock-pricing-data/realtime.md):
- on connect the server sends `[{"T":"success","msg":"connected"}]`;
- the client sends `{"action":"auth","key":..,"secret":..}`: `[{"T":"success","msg":"authenticated"}]`,
  or `[{"T":"error","code":402,"msg":"auth failed"}]` (then the socket closes); a second auth on an
  authenticated socket is 403 `already authenticated`; a key that already holds an authenticated
  connection gets 406 `connection limit exceeded` and the socket closes, as Alpaca's "each account
  can have up to one concurrent websocket connection. Subsequent attempts to connect are rejected";
- `{"action":"subscribe"|"unsubscribe","trades":[..],"quotes":[..],"bars":[..],..}` changes the
  subscription and is answered with the whole of it, `[{"T":"subscription","trades":..,"quotes":..,..}]`;
  before auth: 401 `not authenticated`; a message that is not an object with a known action: 400
  `invalid syntax`; more than 30 trade and quote symbols on the iex feed: 405 `symbol limit exceeded`
  (the subscription stays as it was);
- every control message comes alone in an array; data points too (`[{"T":"q",..}]`).

Data: a quote `{"T":"q","S","bx","bp","bs","ax","ap","as","c","z","t"}` goes to every
authenticated connection subscribed to the symbol (or `*`) whenever the venue's quote for it is
set: by a scenario step on the SimClock, by `Venue.set_quote`, or by a scenario (re)load; `t` is
the simulated instant. Trades, bars and the other channels are accepted and never produce data.

Codecs: JSON text frames, or MessagePack binary frames when the upgrade request carries
`Content-Type: application/msgpack` (alpaca-py always does). With msgpack, `t` is a msgpack
Timestamp (ext type -1), which alpaca-py reads with `.to_datetime()`; with JSON, an RFC 3339 text
with nanoseconds. The client's own messages may come as either.

Faults (test controls): `silence()` keeps the sockets open and sends no data (stale quotes, lost
for good, as a mute feed would), `resume()` ends it; `drop(abrupt)` closes every market-data
connection (close frame 1001, or a TCP abort).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal, cast

import msgpack
from aiohttp import WSMsgType, web

from engine.sim.matching import Book

log = logging.getLogger("smartexec.sim.market_data")
MSGPACK = "application/msgpack"
# Alpaca's feeds: iex and sip (docs); delayed_sip and the test stream (FAKEPACA) are on Alpaca's
# current docs site, not in the alpaca-docs repository.
FEEDS = ("iex", "sip", "delayed_sip", "test")
# The channels alpaca-py's StockDataStream may subscribe, in the order Alpaca lists them.
CHANNELS = ("trades", "quotes", "bars", "updatedBars", "dailyBars", "statuses", "lulds")
# Alpaca subscribes trade corrections and cancel errors with the trades.
FOLLOW_TRADES = ("corrections", "cancelErrors")
IEX_SYMBOL_LIMIT = 30  # docs: "limited to 30 channels at a time for trades and quotes" on IEX
BID_EXCHANGE = ASK_EXCHANGE = "V"  # IEX's exchange code
TAPE = "C"
CONDITIONS = ("R",)  # the docs' example: a regular quote
_CLOSE = object()
Codec = Literal["json", "msgpack"]

ERRORS = {
    400: "invalid syntax",
    401: "not authenticated",
    402: "auth failed",
    403: "already authenticated",
    404: "auth timeout",
    405: "symbol limit exceeded",
    406: "connection limit exceeded",
    409: "insufficient subscription",
    500: "internal error",
}


def rfc3339(at: datetime) -> str:
    """`2024-06-12T14:00:00.123456000Z`: UTC, nanoseconds, as Alpaca writes it."""
    utc = at.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond:06d}000Z"


def _number(value: Decimal) -> int | float:
    # JSON and msgpack carry numbers; an integral size goes as an int, as Alpaca's do.
    return int(value) if value == value.to_integral_value() else float(value)


def quote_fields(book: Book) -> dict[str, Any]:
    """A quote's fields without `T`, `S` and `t`: the REST and the stream share them."""
    return {"bx": BID_EXCHANGE, "bp": float(book.bid), "bs": _number(book.bid_size),
            "ax": ASK_EXCHANGE, "ap": float(book.ask), "as": _number(book.ask_size),
            "c": list(CONDITIONS), "z": TAPE}


def encode(messages: list[dict[str, Any]], codec: Codec) -> bytes | str:
    if codec == "msgpack":
        return cast(bytes, msgpack.packb(messages, use_bin_type=True, datetime=True))
    return json.dumps(messages, separators=(",", ":"), default=_json_default)


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return rfc3339(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def decode(data: str | bytes) -> Any:
    """A client message (msgpack in a binary frame that is not JSON, else JSON); ValueError if neither."""
    if isinstance(data, bytes):
        try:
            return json.loads(data)
        except ValueError:
            pass
        try:
            return msgpack.unpackb(data, raw=False)
        except (msgpack.UnpackException, ValueError, TypeError):
            raise ValueError("invalid frame") from None
    return json.loads(data)


@dataclass(eq=False)
class Connection:
    ws: web.WebSocketResponse
    transport: asyncio.Transport | None
    feed: str
    codec: Codec = "json"
    queue: asyncio.Queue[object] = field(default_factory=asyncio.Queue)
    authenticated: bool = False
    subscriptions: dict[str, list[str]] = field(default_factory=lambda: {c: [] for c in CHANNELS})

    def wants_quote(self, symbol: str) -> bool:
        quotes = self.subscriptions["quotes"]
        return symbol in quotes or "*" in quotes


class MarketDataHub:
    def __init__(self, api_key: str, secret_key: str, *, connections_per_key: int | None = 1) -> None:
        """`connections_per_key`: authenticated market-data connections a key may hold (Alpaca: 1);
        None for no limit."""
        self._keys = (api_key, secret_key)
        self.connections_per_key = connections_per_key
        self.connections: set[Connection] = set()
        self.silent = False
        self._closing: set[asyncio.Future[Any]] = set()

    # --- reads ----------------------------------------------------------------------------------

    @property
    def authenticated_count(self) -> int:
        return sum(1 for c in self.connections if c.authenticated)

    def subscribed_quotes(self) -> set[str]:
        """Quote symbols some authenticated connection is subscribed to now."""
        return {s for c in self.connections if c.authenticated for s in c.subscriptions["quotes"]}

    # --- connection handling --------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        feed = request.match_info.get("feed", "iex")
        ws = web.WebSocketResponse(autoping=True, heartbeat=None, max_msg_size=1 << 20)
        await ws.prepare(request)
        codec: Codec = "msgpack" if request.content_type == MSGPACK else "json"
        conn = Connection(ws, request.transport, feed, codec)
        self.connections.add(conn)
        writer = asyncio.create_task(self._write(conn))
        self._send(conn, {"T": "success", "msg": "connected"})
        try:
            async for msg in ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    self._on_message(conn, msg.data)
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            self.connections.discard(conn)
            conn.authenticated = False
            # Let the writer send what is queued (a final error before the close) unless it is stuck.
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
                conn.queue.put_nowait(_CLOSE)
                await asyncio.wait_for(writer, 1.0)
            writer.cancel()
        return ws

    def _error(self, conn: Connection, code: int, close: bool = False) -> None:
        self._send(conn, {"T": "error", "code": code, "msg": ERRORS[code]})
        if close:
            conn.queue.put_nowait(_CLOSE)

    def _on_message(self, conn: Connection, data: str | bytes) -> None:
        try:
            message = decode(data)
        except ValueError:
            self._error(conn, 400)
            return
        if not isinstance(message, dict):
            self._error(conn, 400)
            return
        action = message.get("action")
        if action == "auth":
            self._auth(conn, message)
        elif action in ("subscribe", "unsubscribe"):
            if not conn.authenticated:
                self._error(conn, 401)
                return
            self._change(conn, message, add=action == "subscribe")
        else:
            self._error(conn, 400)

    def _auth(self, conn: Connection, message: dict[str, Any]) -> None:
        if conn.authenticated:
            self._error(conn, 403)
        elif (message.get("key"), message.get("secret")) != self._keys:
            log.info("market data: auth failed")
            self._error(conn, 402, close=True)
        elif self.connections_per_key is not None and self.authenticated_count >= self.connections_per_key:
            log.info("market data: refused a second connection for the key (406)")
            self._error(conn, 406, close=True)
        else:
            conn.authenticated = True
            self._send(conn, {"T": "success", "msg": "authenticated"})

    def _change(self, conn: Connection, message: dict[str, Any], *, add: bool) -> None:
        wanted: dict[str, list[str]] = {}
        for channel in CHANNELS:
            symbols = message.get(channel)
            if symbols is None:
                continue
            if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
                self._error(conn, 400)
                return
            wanted[channel] = symbols
        updated = {c: list(s) for c, s in conn.subscriptions.items()}
        for channel, symbols in wanted.items():
            current = updated[channel]
            for symbol in symbols:
                symbol = symbol if symbol == "*" else symbol.upper()
                if add and symbol not in current:
                    current.append(symbol)
                elif not add and symbol in current:
                    current.remove(symbol)
        if conn.feed == "iex" and len(updated["trades"]) + len(updated["quotes"]) > IEX_SYMBOL_LIMIT:
            self._error(conn, 405)
            return
        conn.subscriptions = updated
        reply: dict[str, Any] = {"T": "subscription", **{c: list(s) for c, s in updated.items()}}
        for channel in FOLLOW_TRADES:
            reply[channel] = list(updated["trades"])
        self._send(conn, reply)

    def _send(self, conn: Connection, message: dict[str, Any]) -> None:
        conn.queue.put_nowait(encode([message], conn.codec))

    async def _write(self, conn: Connection) -> None:
        while True:
            item = await conn.queue.get()
            if item is _CLOSE:
                await conn.ws.close()
                return
            try:
                if isinstance(item, bytes):
                    await conn.ws.send_bytes(item)
                else:
                    assert isinstance(item, str)
                    await conn.ws.send_str(item)
            except (ConnectionError, RuntimeError):
                return

    # --- data -----------------------------------------------------------------------------------

    def publish_quote(self, book: Book) -> None:
        """The venue's quote for `book.symbol` was just set: send it to every subscriber."""
        if self.silent:
            return
        message = {"T": "q", "S": book.symbol, **quote_fields(book), "t": book.at}
        encoded: dict[str, bytes | str] = {}
        for conn in self.connections:
            if conn.authenticated and conn.wants_quote(book.symbol):
                if conn.codec not in encoded:
                    encoded[conn.codec] = encode([message], conn.codec)
                conn.queue.put_nowait(encoded[conn.codec])

    # --- faults ---------------------------------------------------------------------------------

    def set_silent(self, silent: bool) -> None:
        self.silent = silent

    def drop_all(self, abrupt: bool = False) -> int:
        """Disconnect every market-data client now: a close frame (1001), or a TCP abort."""
        dropped = list(self.connections)
        for conn in dropped:
            conn.authenticated = False
            self.connections.discard(conn)
            if abrupt and conn.transport is not None:
                conn.transport.abort()
            else:
                task = asyncio.ensure_future(conn.ws.close(code=1001, message=b"going away"))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
        return len(dropped)

    async def close(self) -> None:
        for conn in list(self.connections):
            with contextlib.suppress(Exception):
                await conn.ws.close(code=1001, message=b"server shutdown")
        self.connections.clear()


class ObservedBooks(dict[str, Book]):
    """The market's books, telling `on_set` of every quote set (a dict, so the market is unchanged)."""

    def __init__(self, books: Iterable[tuple[str, Book]], on_set: Any) -> None:
        super().__init__(books)
        self._on_set = on_set

    def __setitem__(self, symbol: str, book: Book) -> None:
        super().__setitem__(symbol, book)
        try:
            self._on_set(book)
        except Exception:
            log.exception("market data: publishing the quote for %s failed", symbol)
