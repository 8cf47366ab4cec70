"""Helpers for tests that drive the venue through the unmodified alpaca-py clients.

`Listener` runs a real TradingStream the way an engine embeds it (a task on an asyncio loop,
stopped with `stop_ws()`), on its own thread, and hands every TradeUpdate to the calling thread.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable

from alpaca.trading.client import TradingClient
from alpaca.trading.models import TradeUpdate
from alpaca.trading.stream import TradingStream

from engine.sim.venue import Venue


def wait_until(condition: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def trading_client(venue: Venue, *, fast_retries: bool = True) -> TradingClient:
    """A TradingClient on the venue; `fast_retries` drops the SDK's 3 s sleep between its
    429/504 retries (it still makes its 4 attempts)."""
    client = TradingClient(venue.api_key, venue.secret_key, url_override=venue.rest_url)
    if fast_retries:
        client._retry_wait = 0
    return client


def event_name(update: TradeUpdate) -> str:
    """The event as a plain string (alpaca-py leaves events outside its enum as str)."""
    return str(getattr(update.event, "value", update.event))


def summary(updates: list[TradeUpdate]) -> list[tuple[str, str]]:
    """(event, client_order_id) pairs."""
    return [(event_name(u), u.order.client_order_id) for u in updates]


class Listener:
    def __init__(self, venue: Venue, api_key: str | None = None, secret_key: str | None = None) -> None:
        self.venue = venue
        self.updates: queue.Queue[TradeUpdate] = queue.Queue()
        self._keys = (api_key or venue.api_key, secret_key or venue.secret_key)
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stream: TradingStream | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True, name="listener")

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stream = TradingStream(*self._keys, url_override=self.venue.stream_url)

        async def handler(update: TradeUpdate) -> None:
            self.updates.put(update)

        self._stream.subscribe_trade_updates(handler)
        task = asyncio.create_task(self._stream._run_forever())  # type: ignore[no-untyped-call]
        self._ready.set()
        try:
            await task
        finally:
            await self._stream.close()

    def start(self, wait: bool = True) -> Listener:
        """Connect; with `wait`, return once the venue counts one more listening connection."""
        before = self.venue.listening()
        self._thread.start()
        self._ready.wait(5)
        if wait:
            wait_until(lambda: self.venue.listening() > before, what="the stream to listen")
        return self

    def stop(self) -> None:
        """stop_ws(), then drop the venue's websockets (all of them) so the SDK notices at once."""
        if self._loop is None or self._stream is None or not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._stream.stop_ws(), self._loop).result(5)
        # The SDK notices stop_ws() only between receives (every 5 s); a server close wakes it now.
        self.venue.faults.drop_streams()
        self._thread.join(10)
        if self._thread.is_alive():
            raise AssertionError("the stream did not stop")

    def next(self, timeout: float = 5.0) -> TradeUpdate:
        try:
            return self.updates.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no trade update within {timeout}s") from None

    def take(self, count: int, timeout: float = 5.0) -> list[TradeUpdate]:
        return [self.next(timeout) for _ in range(count)]

    def until(self, predicate: Callable[[TradeUpdate], bool], timeout: float = 5.0) -> list[TradeUpdate]:
        """Updates up to and including the first one matching `predicate`."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            update = self.next(max(0.01, deadline - time.monotonic()))
            seen.append(update)
            if predicate(update):
                return seen

    def quiet(self, seconds: float = 0.3) -> list[TradeUpdate]:
        """Whatever arrives within `seconds` (to show that nothing does)."""
        got = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                got.append(self.updates.get(timeout=left))
            except queue.Empty:
                break
        return got
