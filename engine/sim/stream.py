"""The `trade_updates` websocket at `/stream`, speaking Alpaca's protocol exactly as alpaca-py expects.

Handshake: the client sends `authenticate`; the first server frame is the `authorization` reply
(bad keys: `unauthorized`, then the socket closes); `listen` is answered with `listening`, and only
from then on does that connection receive events. Events go to every connection listening at the
moment they happen; nothing is replayed after a reconnect, as at Alpaca. Frames are binary UTF-8
JSON, like Alpaca's paper stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from engine.sim.events import TradeEvent
from engine.sim.faults import EventFault, Faults

log = logging.getLogger("smartexec.sim.stream")
_CLOSE = object()  # queued after a final frame: close the socket once it is sent


def _frame(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


@dataclass(eq=False)
class Connection:
    ws: web.WebSocketResponse
    transport: asyncio.Transport | None
    queue: asyncio.Queue[object] = field(default_factory=asyncio.Queue)
    authorized: bool = False
    listening: bool = False
    deferred: list[object] = field(default_factory=list)  # handshake replies held while muted


class StreamHub:
    def __init__(self, faults: Faults, api_key: str, secret_key: str) -> None:
        self._faults = faults
        self._keys = (api_key, secret_key)
        self.connections: set[Connection] = set()
        self.muted = False
        self._timers: set[asyncio.TimerHandle] = set()
        self._closing: set[asyncio.Future[Any]] = set()

    @property
    def listening_count(self) -> int:
        return sum(1 for c in self.connections if c.listening)

    # --- connection handling --------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, heartbeat=None, max_msg_size=1 << 20)
        await ws.prepare(request)
        conn = Connection(ws, request.transport)
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
            message = json.loads(data)
        except ValueError:
            self._reply(conn, {"stream": "error", "data": {"error_message": "invalid json"}})
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
            if (key, secret) == self._keys:
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
        item = _frame(message) if isinstance(message, dict) else message
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
            self._fan_out(event.frame())
        elif rule.action == "drop":
            log.info("fault: dropped %s for %s", event.event, event.client_order_id)
        elif rule.action == "duplicate":
            frame = event.frame()
            self._fan_out(frame)
            self._fan_out(frame)
        elif rule.action == "delay":
            self._later(rule.seconds, event.frame())
        elif rule.action == "reorder":
            self._reorder(rule, event)

    def _fan_out(self, frame: bytes) -> None:
        if self.muted:
            return
        for conn in self.connections:
            if conn.listening:
                conn.queue.put_nowait(frame)

    def _later(self, seconds: float, frame: bytes) -> None:
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
            self._fan_out(event.frame())

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
