"""Fixtures for the broker contract suite: every test runs once per broker.

- `fake`: engine.broker.fake.FakeBroker, driven through its test controls;
- `venue`: AlpacaBroker over the real alpaca-py clients against the local venue on loopback,
  on a manual SimClock, so the quote moves only when a test says and time only when it advances.

A test talks to the broker through the `Broker` port and moves the market through a `Market`:
the same intent (set a quote, make this order trade, hold cancels, drop the stream, move to a
session) carried out with whatever controls that broker has.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal

import pytest

from engine.broker.alpaca import AlpacaBroker
from engine.broker.clock import session_of
from engine.broker.fake import FakeBroker
from engine.broker.port import Broker, BrokerAmbiguous, BrokerOrder, OrderEvent, Session
from engine.core.domain import Side
from engine.sim import DEFAULT_START, SimClock, Venue
from engine.sim import sessions as venue_sessions
from engine.sim import wire as venue_wire
from engine.sim.testing import wait_until

SYMBOL = "AAPL"
TICK = Decimal("0.01")
HOLD = 60.0  # simulated seconds the venue keeps a cancel pending: longer than any test waits


def port_session(at: datetime) -> Session:
    """The session AlpacaBroker reads from the venue's clock at `at` (the venue itself knows no
    overnight session: its weeknights are CLOSED, which the clock makes OVERNIGHT)."""
    clock = venue_wire.clock(at)
    return session_of(datetime.fromisoformat(clock["timestamp"]), is_open=clock["is_open"],
                      next_open=datetime.fromisoformat(clock["next_open"]))


class Market:
    """Moves the market under one broker; `broker` is what the tests exercise."""

    broker: Broker

    def quote(self, bid: Decimal, ask: Decimal, *, bid_size: Decimal = Decimal(100),
              ask_size: Decimal = Decimal(100)) -> None:
        raise NotImplementedError

    def trade_at(self, price: Decimal) -> None:
        """The market trades at `price`: bid and ask both there."""
        self.quote(price, price)

    def execute(self, order: BrokerOrder, qty: Decimal | None = None, *, price: Decimal | None = None) -> None:
        """Make this working order trade: what remains (or `qty`) at `price` (default: its own)."""
        raise NotImplementedError

    def hold_cancels(self) -> None:
        """Cancels requested from now on stay pending_cancel until release_cancels()."""
        raise NotImplementedError

    def release_cancels(self) -> None:
        raise NotImplementedError

    def reject_next(self, *, status: int, code: int, message: str, via: Literal["http", "event"]) -> None:
        """The next order is refused: over HTTP (no order exists), or by event after it was taken."""
        raise NotImplementedError

    def lose_next_submit_answer(self) -> None:
        """The next submit is carried out, but the caller never learns it (BrokerAmbiguous)."""
        raise NotImplementedError

    def drop_stream(self) -> None:
        """Disconnect the stream; it stays down at least until allow_reconnect()."""
        raise NotImplementedError

    def allow_reconnect(self) -> None:
        raise NotImplementedError

    def listening(self) -> int:
        raise NotImplementedError

    def to_session(self, session: Session) -> None:
        """Move on to the next `session`, as the clock would: OVERNIGHT is the next weeknight from
        20:00, CLOSED the next night that trades nothing (from a Wednesday: Friday's)."""
        raise NotImplementedError

    def pass_time(self, seconds: float) -> None:
        """Let `seconds` pass on the broker's clock (the venue's clock only moves when told)."""
        raise NotImplementedError

    def position(self, qty: Decimal, price: Decimal) -> BrokerOrder:
        """Hold `qty` shares bought at `price`, the way an entry would: a market buy at that ask."""
        self.quote(price - TICK, price)
        order = self.broker.submit_market(client_order_id=f"hold-{qty}-{price}", symbol=SYMBOL, side=Side.BUY,
                                          qty=qty)
        filled = self.broker.get_order(order.client_order_id)
        assert filled is not None and filled.status == "filled"
        return filled


class FakeMarket(Market):
    def __init__(self) -> None:
        self._ahead = timedelta(0)
        self.fake = FakeBroker(clock=lambda: datetime.now(UTC) + self._ahead)
        self.broker = self.fake

    def pass_time(self, seconds: float) -> None:
        self._ahead += timedelta(seconds=seconds)

    def quote(self, bid: Decimal, ask: Decimal, *, bid_size: Decimal = Decimal(100),
              ask_size: Decimal = Decimal(100)) -> None:
        self.fake.set_quote(SYMBOL, bid, ask, bid_size=bid_size, ask_size=ask_size)

    def trade_at(self, price: Decimal) -> None:
        self.fake.trade_at(SYMBOL, price)

    def execute(self, order: BrokerOrder, qty: Decimal | None = None, *, price: Decimal | None = None) -> None:
        self.fake.fill(order.client_order_id, qty, price=price)

    def hold_cancels(self) -> None:
        self.fake.hold_cancels()

    def release_cancels(self) -> None:
        self.fake.release_cancels()

    def reject_next(self, *, status: int, code: int, message: str, via: Literal["http", "event"]) -> None:
        self.fake.reject_next(status=status, code=code, message=message, via=via)

    def lose_next_submit_answer(self) -> None:
        self.fake.fail_next("submit_limit", BrokerAmbiguous("HTTP 500: internal server error"), carried_out=True)

    def drop_stream(self) -> None:
        self.fake.drop_stream(stay_down=True)

    def allow_reconnect(self) -> None:
        self.fake.reconnect_stream()

    def listening(self) -> int:
        return self.fake.listening()

    def to_session(self, session: Session) -> None:
        self.fake.set_session(session)


class VenueMarket(Market):
    def __init__(self, venue: Venue) -> None:
        self.venue = venue
        self.broker = AlpacaBroker(venue.api_key, venue.secret_key, rest_url=venue.rest_url,
                                   stream_url=venue.stream_url)

    def quote(self, bid: Decimal, ask: Decimal, *, bid_size: Decimal = Decimal(100),
              ask_size: Decimal = Decimal(100)) -> None:
        self.venue.set_quote(SYMBOL, bid, ask, bid_size=bid_size, ask_size=ask_size)

    def execute(self, order: BrokerOrder, qty: Decimal | None = None, *, price: Decimal | None = None) -> None:
        # The venue fills from the quote only: put the touch at the order's price, sized to it.
        current = self.broker.get_order(order.client_order_id)
        assert current is not None
        remaining = current.qty - current.filled_qty
        size = remaining if qty is None else qty
        if current.is_stop:
            assert current.stop_price is not None and size == remaining, "a triggered stop fills in full"
            at = price if price is not None else current.stop_price
        else:
            assert current.order_type == "limit" and current.limit_price is not None
            at = price if price is not None else current.limit_price
        if current.side is Side.BUY:
            self.quote(at - TICK, at, ask_size=size)
        else:
            self.quote(at, at + TICK, bid_size=size)

    def hold_cancels(self) -> None:
        self.venue.faults.hold_cancels(HOLD)

    def release_cancels(self) -> None:
        self.venue.faults.clear()
        self.venue.advance(HOLD + 1)

    def reject_next(self, *, status: int, code: int, message: str, via: Literal["http", "event"]) -> None:
        self.venue.reject_next(status=status, code=code, message=message, via=via)

    def lose_next_submit_answer(self) -> None:
        # alpaca-py does not retry a 500: the order exists and the caller sees only the error.
        self.venue.faults.fail_route("POST", "/v2/orders", 500, after_handler=True)

    def drop_stream(self) -> None:
        # The SDK waits 0.5-1 s before it reconnects: long enough for a test to act meanwhile.
        self.venue.faults.drop_streams()

    def allow_reconnect(self) -> None:
        pass  # the SDK reconnects by itself

    def listening(self) -> int:
        return self.venue.listening()

    def pass_time(self, seconds: float) -> None:
        self.venue.advance(seconds)

    def to_session(self, session: Session) -> None:
        now = self.venue.clock.now()
        if port_session(now) is session:
            return
        boundary = now
        while True:
            boundary, _ = venue_sessions.next_boundary(boundary)
            if port_session(boundary + timedelta(minutes=1)) is session:
                break
        self.venue.advance((boundary + timedelta(minutes=1) - now).total_seconds())


class StreamProbe:
    """Runs `broker.stream` on an event loop of its own and hands the test what it delivers."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.events: queue.Queue[OrderEvent] = queue.Queue()
        self.connects = 0
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="stream-probe", daemon=True)

    async def _on_event(self, event: OrderEvent) -> None:
        self.events.put(event)

    async def _on_connect(self) -> None:
        self.connects += 1

    def start(self) -> StreamProbe:
        self._thread.start()

        async def begin() -> None:
            self._task = asyncio.create_task(self.broker.stream(self._on_event, self._on_connect))

        asyncio.run_coroutine_threadsafe(begin(), self._loop).result(5)
        wait_until(lambda: self.connects >= 1, timeout=10, what="the stream to connect")
        return self

    def stop(self) -> None:
        async def end() -> None:
            assert self._task is not None
            self._task.cancel()
            await asyncio.wait([self._task], timeout=15)

        asyncio.run_coroutine_threadsafe(end(), self._loop).result(20)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def until(self, client_order_id: str, event: str, timeout: float = 10.0) -> list[OrderEvent]:
        """Every update (for any order) up to and including `event` for `client_order_id`."""
        seen: list[OrderEvent] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                update = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {event} for {client_order_id} within {timeout}s; got "
                                     f"{[(e.event, e.order.client_order_id) for e in seen]}") from None
            seen.append(update)
            if update.order.client_order_id == client_order_id and update.event == event:
                return seen


@pytest.fixture(params=["fake", "venue"])
def market(request: pytest.FixtureRequest) -> Iterator[Market]:
    if request.param == "fake":
        yield FakeMarket()
        return
    with Venue.running_in_thread(SimClock(start=DEFAULT_START), rate_limit_per_min=None) as venue:
        yield VenueMarket(venue)


@pytest.fixture
def broker(market: Market) -> Broker:
    return market.broker


@pytest.fixture
def stream(market: Market) -> Iterator[StreamProbe]:
    """The broker's update stream, connected."""
    probe = StreamProbe(market.broker).start()
    try:
        yield probe
    finally:
        probe.stop()
