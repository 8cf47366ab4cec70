"""The `trade_updates` websocket at `/stream`, speaking Alpaca's protocol exactly as alpaca-py expects.

Handshake: the client sends `authenticate`; the first server frame is the `authorization` reply
(bad keys: `unauthorized`, then the socket closes); `listen` is answered with `listening`, and only
from then on does that connection receive events. Events go to every connection listening at the
moment they happen; nothing is replayed after a reconnect, as at Alpaca.

Codecs (docs: trading-api/streaming): binary frames of UTF-8 JSON, like Alpaca's paper stream, or
MessagePack when the upgrade request carries `Content-Type: application/msgpack`; a msgpack
client's own messages may come as msgpack (binary) or JSON (text) frames.

At most `connections_per_key` authorized connections (Alpaca: one): a further upgrade while the
key is taken is refused with HTTP 429, as Alpaca's streams do (engine/sim/README.md has the
sources).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import msgpack
from aiohttp import WSMsgType, web

from engine.sim.events import TradeEvent
from engine.sim.faults import EventFault, Faults

log = logging.getLogger("smartexec.sim.stream")
_CLOSE = object()  # queued after a final frame: close the socket once it is sent
MSGPACK = "application/msgpack"
LIMIT_MESSAGE = "connection limit exceeded"
Codec = Literal["json", "msgpack"]


def encode(message: dict[str, Any], codec: Codec) -> bytes:
    if codec == "msgpack":
        return cast(bytes, msgpack.packb(message, use_bin_type=True))
    return json.dumps(message, separators=(",", ":")).encode()


def decode(data: str | bytes, codec: Codec) -> Any:
    """A client message; raises ValueError if it is neither valid msgpack (binary frames of a
    msgpack connection) nor valid JSON."""
    if codec == "msgpack" and isinstance(data, bytes):
        try:
            return msgpack.unpackb(data, raw=False)
        except (msgpack.UnpackException, ValueError, TypeError):
            raise ValueError("invalid msgpack") from None
    return json.loads(data)


class Frames:
    """One message encoded at most once per codec, however many connections it goes to."""

    def __init__(self, message: dict[str, Any]) -> None:
        self.message = message
        self._encoded: dict[str, bytes] = {}

    def for_codec(self, codec: Codec) -> bytes:
        if codec not in self._encoded:
            self._encoded[codec] = encode(self.message, codec)
        return self._encoded[codec]


@dataclass(eq=False)
class Connection:
    ws: web.WebSocketResponse
    transport: asyncio.Transport | None
    codec: Codec = "json"
    queue: asyncio.Queue[object] = field(default_factory=asyncio.Queue)
    authorized: bool = False
    listening: bool = False
    deferred: list[object] = field(default_factory=list)  # handshake replies held while muted


class StreamHub:
    def __init__(self, faults: Faults, api_key: str, secret_key: str, *,
                 connections_per_key: int | None = None, heartbeat: float | None = None) -> None:
        """`connections_per_key`: how many authorized connections a key may hold at once (Alpaca: 1);
        None for no limit. `heartbeat`: seconds between pings; a client that answers none within
        half of it is dropped, which frees its slot (a paused process keeps its socket open)."""
        self._faults = faults
        self.heartbeat = heartbeat
        self._keys = (api_key, secret_key)
        self.connections_per_key = connections_per_key
        self.connections: set[Connection] = set()
        self.muted = False
        self._timers: set[asyncio.TimerHandle] = set()
        self._closing: set[asyncio.Future[Any]] = set()

    @property
    def listening_count(self) -> int:
        return sum(1 for c in self.connections if c.listening)

    def _at_limit(self) -> bool:
        # The venue serves one key, so every authorized connection is that key's.
        limit = self.connections_per_key
        return limit is not None and sum(1 for c in self.connections if c.authorized) >= limit

    # --- connection handling --------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self._at_limit():
            log.info("stream: refused a second connection for the key (HTTP 429)")
            return web.json_response({"code": 42910000, "message": LIMIT_MESSAGE}, status=429)
        ws = web.WebSocketResponse(autoping=True, heartbeat=self.heartbeat, max_msg_size=1 << 20)
        await ws.prepare(request)
        codec: Codec = "msgpack" if request.content_type == MSGPACK else "json"
        conn = Connection(ws, request.transport, codec)
        self.connections.add(conn)
        writer = asyncio.create_task(self._write(conn))
        try:
            async for msg in ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    self._on_message(conn, msg.data)
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            self.connections.discard(conn)
            conn.listening = False
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
        return ws

    def _on_message(self, conn: Connection, data: str | bytes) -> None:
        try:
            message = decode(data, conn.codec)
        except ValueError:
            self._reply(conn, {"stream": "error", "data": {"error_message": f"invalid {conn.codec}"}})
            return
        if not isinstance(message, dict):
            return
        action = message.get("action")
        body = message.get("data")
        payload: dict[str, Any] = body if isinstance(body, dict) else {}
        if action in ("authenticate", "auth"):
            # alpaca-py sends {"action":"authenticate","data":{key_id,secret_key}}; the market-data
            # form {"action":"auth","key":..,"secret":..} costs nothing to accept too.
            key = payload.get("key_id", message.get("key"))
            secret = payload.get("secret_key", message.get("secret"))
            if (key, secret) == self._keys and not conn.authorized and self._at_limit():
                # Both upgraded before either authenticated: the later one loses.
                self._reply(conn, {"stream": "authorization", "data": {
                    "action": "authenticate", "status": "unauthorized", "message": LIMIT_MESSAGE}})
                self._reply(conn, _CLOSE)
            elif (key, secret) == self._keys:
                conn.authorized = True
                self._reply(conn, {"stream": "authorization",
                                   "data": {"action": "authenticate", "status": "authorized"}})
            else:
                self._reply(conn, {"stream": "authorization", "data": {
                    "action": "authenticate", "status": "unauthorized", "message": "access key verification failed"}})
                self._reply(conn, _CLOSE)
        elif action == "listen":
            if not conn.authorized:
                self._reply(conn, {"stream": "authorization", "data": {
                    "action": "listen", "status": "unauthorized", "message": "access key verification failed"}})
                self._reply(conn, _CLOSE)
                return
            streams = payload.get("streams") or []
            wanted = [s for s in streams if s == "trade_updates"] if isinstance(streams, list) else []
            self._reply(conn, {"stream": "listening", "data": {"streams": wanted}})
            # From here on this connection gets events, queued after the `listening` reply.
            conn.listening = bool(wanted)

    def _reply(self, conn: Connection, message: dict[str, Any] | object) -> None:
        item = encode(message, conn.codec) if isinstance(message, dict) else message
        if self.muted:
            conn.deferred.append(item)
        else:
            conn.queue.put_nowait(item)

    async def _write(self, conn: Connection) -> None:
        while True:
            item = await conn.queue.get()
            if item is _CLOSE:
                await conn.ws.close()
                return
            assert isinstance(item, bytes)
            try:
                await conn.ws.send_bytes(item)
            except (ConnectionError, RuntimeError):
                return

    # --- events ---------------------------------------------------------------------------------

    def publish(self, event: TradeEvent) -> None:
        """Hand an event to every listening connection, through whatever event fault applies."""
        if self.muted:
            return
        rule = self._faults.take_event_fault(event)
        if rule is None:
            self._fan_out(Frames(event.message()))
        elif rule.action == "drop":
            log.info("fault: dropped %s for %s", event.event, event.client_order_id)
        elif rule.action == "duplicate":
            frames = Frames(event.message())
            self._fan_out(frames)
            self._fan_out(frames)
        elif rule.action == "delay":
            self._later(rule.seconds, Frames(event.message()))
        elif rule.action == "reorder":
            self._reorder(rule, event)

    def _fan_out(self, frames: Frames) -> None:
        if self.muted:
            return
        for conn in self.connections:
            if conn.listening:
                conn.queue.put_nowait(frames.for_codec(conn.codec))

    def _later(self, seconds: float, frame: Frames) -> None:
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._timers.discard(handle)
            self._fan_out(frame)

        handle = loop.call_later(seconds, fire)
        self._timers.add(handle)

    def _reorder(self, rule: EventFault, event: TradeEvent) -> None:
        rule.held.append(event)
        if len(rule.held) == 1:
            loop = asyncio.get_running_loop()
            handle = loop.call_later(rule.seconds, self._release, rule)
            self._timers.add(handle)
        if len(rule.held) >= rule.count:
            self._release(rule)

    def _release(self, rule: EventFault) -> None:
        batch, rule.held = rule.held, []
        for event in reversed(batch):
            self._fan_out(Frames(event.message()))

    # --- faults on live sockets -----------------------------------------------------------------

    def set_muted(self, muted: bool) -> None:
        self.muted = muted
        if not muted:
            for conn in self.connections:
                for item in conn.deferred:
                    conn.queue.put_nowait(item)
                conn.deferred.clear()

    def drop_all(self, abrupt: bool) -> int:
        """Disconnect every client now. Clean: a close frame (1001 going away). Abrupt: the TCP
        connection is aborted without one."""
        dropped = list(self.connections)
        for conn in dropped:
            conn.listening = False
            self.connections.discard(conn)
            if abrupt and conn.transport is not None:
                conn.transport.abort()
            else:
                task = asyncio.ensure_future(conn.ws.close(code=1001, message=b"going away"))
                self._closing.add(task)  # keep it alive until done
                task.add_done_callback(self._closing.discard)
        return len(dropped)

    async def close(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        for conn in list(self.connections):
            with contextlib.suppress(Exception):
                await conn.ws.close(code=1001, message=b"server shutdown")
        self.connections.clear()
