"""The test controls FakeBroker inherits: the market, refusals and faults, the stream, inspection."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

from engine.broker.fake.book import Book
from engine.broker.fake.exchange import Exchange
from engine.broker.fake.faults import Faults, Method, Rejection
from engine.broker.fake.orders import ZERO
from engine.broker.fake.refusals import UNPROCESSABLE
from engine.broker.fake.stream import Stream
from engine.broker.port import BrokerError, BrokerOrder, OrderEvent, Session


class FakeControls:
    """What a test does to a FakeBroker's market, and what it reads back.

    The service calls the REST methods from worker threads while `stream` runs on its event loop,
    and a test drives the market from a third thread: one lock guards all state."""

    def __init__(self, *, clock: Callable[[], datetime] | None = None, session: Session = Session.REGULAR) -> None:
        self._lock = threading.RLock()
        self._faults = Faults()
        self._stream = Stream(self._lock)
        self._exchange = Exchange(clock or (lambda: datetime.now(UTC)), session, self._faults, self._stream)

    # --- the market -------------------------------------------------------------------------------

    def set_quote(self, symbol: str, bid: Decimal, ask: Decimal, *, bid_size: Decimal = Decimal(100),
                  ask_size: Decimal = Decimal(100)) -> None:
        """The new top of book for `symbol`; resting orders meet it at once, earliest first."""
        if not ZERO < bid <= ask:
            raise ValueError(f"need 0 < bid <= ask, was {bid} / {ask}")
        if bid_size < 0 or ask_size < 0:
            raise ValueError("sizes must be >= 0")
        with self._lock:
            self._exchange.quote(symbol.upper(), Book(bid, ask, bid_size, ask_size))

    def trade_at(self, symbol: str, price: Decimal, *, size: Decimal = Decimal(100)) -> None:
        """The market trades at `price`: buy limits at or above it and sell limits at or below it
        fill there, stops on the far side of it trigger."""
        self.set_quote(symbol, price, price, bid_size=size, ask_size=size)

    def fill(self, client_order_id: str, qty: Decimal | None = None, *, price: Decimal | None = None) -> None:
        """Execute a working order now, whatever the quote: what remains (or `qty` of it) at `price`
        (default: its limit, for a stop its stop price, for a market order the touch)."""
        with self._lock:
            self._exchange.execute(client_order_id, qty, price)

    def position(self, symbol: str) -> Decimal:
        """Shares held (negative: short), from the fills so far."""
        with self._lock:
            return self._exchange.account.position(symbol.upper())

    def set_session(self, session: Session) -> None:
        """Move the market on to the next `session`, as the clock would.

        Leaving the regular session passes 16:00: day orders expire and partly filled GTC orders
        are done for the day; going from REGULAR or EXTENDED to CLOSED or OVERNIGHT passes 20:00:
        extended-hours day orders expire (those placed overnight live until the next 20:00).
        OVERNIGHT trades extended-hours orders as EXTENDED does. Orders waiting for a session they
        can trade in go live and meet the quote. The fake's clock does not move with the session."""
        with self._lock:
            self._exchange.move_to(session)

    # --- refusals and faults ----------------------------------------------------------------------

    def reject_next(self, *, count: int = 1, status: int = 422, code: int = UNPROCESSABLE,
                    message: str = "order rejected by the venue", via: Literal["http", "event"] = "http") -> None:
        """Refuse the next `count` orders: over HTTP (BrokerRejected, no order exists) or by
        event (accepted as pending_new, then `rejected`)."""
        with self._lock:
            self._faults.reject_next(Rejection(status, code, message, via), count)

    def fail_next(self, method: Method, error: BrokerError, *, count: int = 1, carried_out: bool = False) -> None:
        """The next `count` calls of `method` raise `error`; with `carried_out` the call takes
        effect first, as when a reply is lost after the venue acted."""
        with self._lock:
            self._faults.fail_next(method, error, count=count, carried_out=carried_out)

    def hold_cancels(self, count: int | None = None) -> None:
        """The next `count` cancels (None: all) stay pending_cancel, where fills still land,
        until release_cancels(): the fill-after-cancel race."""
        with self._lock:
            self._faults.hold_cancels(count)

    def release_cancels(self) -> None:
        """Complete the held cancels (an order that filled meanwhile stays filled); hold no more."""
        with self._lock:
            self._faults.hold_cancels(0)
            self._exchange.release_held_cancels()

    # --- the stream -------------------------------------------------------------------------------

    def drop_stream(self, *, stay_down: bool = False) -> int:
        """Disconnect every stream; what happens until it reconnects is lost, as at Alpaca. It
        reconnects at once, or with `stay_down` only after reconnect_stream(). Returns how many
        connections were dropped."""
        with self._lock:
            return self._stream.drop(stay_down=stay_down)

    def reconnect_stream(self) -> None:
        with self._lock:
            self._stream.reconnect()

    def listening(self) -> int:
        """How many streams are connected now."""
        with self._lock:
            return self._stream.listening()

    # --- inspection -------------------------------------------------------------------------------

    def orders(self) -> list[BrokerOrder]:
        """Every order, legs included, oldest first."""
        with self._lock:
            return [order.snapshot() for order in self._exchange.orders]

    def events(self) -> list[OrderEvent]:
        """Every event produced, delivered or not."""
        with self._lock:
            return self._stream.events()
