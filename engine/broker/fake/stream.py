"""The order-update stream: its connections, drops and reconnects, and the log of every event."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from engine.broker.port import ConnectHandler, EventHandler, OrderEvent

log = logging.getLogger("smartexec.fake")
EVENT_LOG_SIZE = 100_000


@dataclass(eq=False)
class _Connection:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[OrderEvent | None]  # None: the connection was dropped


def _post(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    with contextlib.suppress(RuntimeError):  # that loop has closed: its stream is gone
        loop.call_soon_threadsafe(callback)


class Stream:
    """Events reach each connection through its own loop, since they are produced on other threads.

    `serve` runs on a stream's event loop and takes the broker's lock itself; every other method
    runs under that lock, held by the caller."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._events: deque[OrderEvent] = deque(maxlen=EVENT_LOG_SIZE)
        self._connections: list[_Connection] = []
        self._down = False
        self._reconnect_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    def publish(self, event: OrderEvent) -> None:
        self._events.append(event)
        for connection in self._connections:
            _post(connection.loop, partial(connection.queue.put_nowait, event))

    def events(self) -> list[OrderEvent]:
        return list(self._events)

    def listening(self) -> int:
        return len(self._connections)

    def drop(self, *, stay_down: bool) -> int:
        dropped, self._connections = self._connections, []
        self._down = stay_down
        for connection in dropped:
            _post(connection.loop, partial(connection.queue.put_nowait, None))
        return len(dropped)

    def reconnect(self) -> None:
        self._down = False
        waiters, self._reconnect_waiters = self._reconnect_waiters, []
        for loop, waiter in waiters:
            _post(loop, waiter.set)

    async def serve(self, on_event: EventHandler, on_connect: ConnectHandler) -> None:
        while True:
            connection = await self._connect()
            try:
                try:
                    await on_connect()
                except Exception:
                    log.exception("reconnect handler failed")
                while (event := await connection.queue.get()) is not None:
                    try:
                        await on_event(event)
                    except Exception:
                        log.exception("trade update %s for %s could not be handled", event.event,
                                      event.order.client_order_id)
            finally:
                with self._lock:
                    if connection in self._connections:
                        self._connections.remove(connection)

    async def _connect(self) -> _Connection:
        """A new connection, once the stream may reconnect; from then on it gets every event."""
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                if not self._down:
                    connection = _Connection(loop, asyncio.Queue())
                    self._connections.append(connection)
                    return connection
                waiter = asyncio.Event()
                self._reconnect_waiters.append((loop, waiter))
            await waiter.wait()
