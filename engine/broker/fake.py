"""An in-memory broker for tests: the `Broker` port with the rules the engine relies on.

It answers as AlpacaBroker answers against Alpaca and the local venue (engine/sim): the same status
and event words, read through the adapter's own maps so that kinds and finality cannot drift from
it; the same error class, status and code for the same refusal; the same events in the same order.
The market is one quote per symbol that a test sets, and tests also fill orders directly, hold
cancels, reject orders, fail calls and drop the stream. tests/broker/test_contract.py runs one
suite against this fake and against AlpacaBroker on the venue, and says where the two differ.
The venue's matching rules are restated here rather than imported: a broker depends on
engine.core only, and the contract suite is what keeps the two in step.

The service calls the REST methods from worker threads while `stream` runs on its event loop, and
a test drives the market from a third thread: one lock guards all state, and events reach each
stream through its own loop.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Literal, TypeVar
from uuid import uuid4

from engine.broker.alpaca import FINAL_STATUSES, KINDS, STOP_TYPES
from engine.broker.port import (
    Account,
    BrokerAmbiguous,
    BrokerError,
    BrokerNotFound,
    BrokerOrder,
    BrokerRejected,
    ConnectHandler,
    EventHandler,
    OrderEvent,
    Session,
)
from engine.core.domain import Side

log = logging.getLogger("smartexec.fake")
T = TypeVar("T")

ZERO = Decimal(0)
CENT = Decimal("0.01")
AVERAGE_PLACES = Decimal("0.000000001")  # Alpaca reports average prices to 9 decimals
MAX_PAGE = 500  # Alpaca lists at most 500 orders per request
MICROSECOND = timedelta(microseconds=1)
EVENT_LOG_SIZE = 100_000
# Alpaca's error codes, by meaning.
INVALID = 40010001  # 422: a malformed or contradictory request
FORBIDDEN = 40310000  # 403: insufficient qty
UNPROCESSABLE = 42210000  # 422: a valid request the account state does not allow
_SYMBOL = re.compile(r"^[A-Z][A-Z0-9.]{0,14}$")
_TIMES_IN_FORCE = frozenset({"day", "gtc", "opg", "cls", "ioc", "fok"})
# done_for_day is final to the engine (the adapter's FINAL_STATUSES), but the order comes back at
# the next open: inside the fake only these end an order.
_CLOSED = FINAL_STATUSES - {"done_for_day"}
Method = Literal["submit_limit", "submit_market", "submit_oco", "get_order", "cancel", "list_orders", "session"]


def _plain(value: Decimal) -> Decimal:
    """A decimal as Alpaca writes it: no exponent, no trailing zeros."""
    return Decimal(format(value.normalize(), "f"))


def _text(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _invalid(message: str) -> BrokerRejected:
    return BrokerRejected(message, status=422, code=INVALID)


def _unprocessable(message: str) -> BrokerRejected:
    return BrokerRejected(message, status=422, code=UNPROCESSABLE)


def _forbidden(message: str) -> BrokerRejected:
    return BrokerRejected(message, status=403, code=FORBIDDEN)


@dataclass(eq=False)
class _Order:
    id: str
    client_order_id: str
    symbol: str
    side: Side
    order_type: str
    order_class: str
    time_in_force: str
    extended_hours: bool
    qty: Decimal
    limit_price: Decimal | None
    stop_price: Decimal | None
    submitted_at: datetime
    seq: int
    status: str = "pending_new"
    filled_qty: Decimal = ZERO
    filled_value: Decimal = ZERO  # sum of price x qty over executions, for the average
    legs: list[_Order] = field(default_factory=list)
    parent: _Order | None = None
    group: list[_Order] | None = None  # orders that cancel each other: an OCO pair
    working: bool = False  # takes part in matching (a stop leg works while it shows `held`)
    triggered: bool = False
    cancel_held: bool = False  # a cancel request waits in pending_cancel; fills still land

    @property
    def is_open(self) -> bool:
        return self.status not in _CLOSED

    @property
    def remaining(self) -> Decimal:
        return self.qty - self.filled_qty

    @property
    def is_stop_type(self) -> bool:
        return self.order_type in STOP_TYPES

    def family(self) -> list[_Order]:
        return [self, *self.legs]

    def snapshot(self) -> BrokerOrder:
        average = (self.filled_value / self.filled_qty).quantize(AVERAGE_PLACES) if self.filled_qty else None
        return BrokerOrder(
            client_order_id=self.client_order_id,
            broker_order_id=self.id,
            symbol=self.symbol,
            side=self.side,
            order_type=self.order_type,
            order_class=self.order_class,
            status=self.status,
            kind=KINDS[self.status],
            final=self.status in FINAL_STATUSES,
            qty=_plain(self.qty),
            filled_qty=_plain(self.filled_qty),
            filled_avg_price=None if average is None else _plain(average),
            limit_price=None if self.limit_price is None else _plain(self.limit_price),
            stop_price=None if self.stop_price is None else _plain(self.stop_price),
            legs=tuple(leg.snapshot() for leg in self.legs),
            submitted_at=self.submitted_at,
            is_stop=self.is_stop_type,
        )


@dataclass(frozen=True)
class _Request:
    symbol: str
    side: Side
    qty: Decimal
    order_type: str
    time_in_force: str
    order_class: str = "simple"
    extended_hours: bool = False
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None  # an OCO's stop leg

    @property
    def fractional(self) -> bool:
        return self.qty != self.qty.to_integral_value()


@dataclass
class _Book:
    """Top of book; what one execution takes from the touch is gone until the next quote."""

    bid: Decimal
    ask: Decimal
    bid_left: Decimal
    ask_left: Decimal

    def touch(self, side: Side) -> Decimal:
        return self.ask if side is Side.BUY else self.bid

    def take(self, side: Side, qty: Decimal) -> None:
        if side is Side.BUY:
            self.ask_left = max(ZERO, self.ask_left - qty)
        else:
            self.bid_left = max(ZERO, self.bid_left - qty)


@dataclass(frozen=True)
class _Rejection:
    status: int
    code: int
    message: str
    via: Literal["http", "event"]


@dataclass(frozen=True)
class _Failure:
    error: BrokerError
    carried_out: bool


@dataclass(eq=False)
class _Connection:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[OrderEvent | None]  # None: the connection was dropped


def _post(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    try:
        loop.call_soon_threadsafe(callback)
    except RuntimeError:  # that loop has closed: its stream is gone
        pass


class FakeBroker:
    """The Broker port in memory, plus test controls (set_quote, fill, hold_cancels, drop_stream, …)."""

    def __init__(self, *, clock: Callable[[], datetime] | None = None, session: Session = Session.REGULAR) -> None:
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.RLock()
        self._session = session
        self._orders: list[_Order] = []  # creation order, legs included
        self._by_id: dict[str, _Order] = {}
        self._by_client_id: dict[str, _Order] = {}
        self._books: dict[str, _Book] = {}
        self._positions: dict[str, Decimal] = {}
        self._events: deque[OrderEvent] = deque(maxlen=EVENT_LOG_SIZE)
        self._rejections: list[_Rejection] = []
        self._failures: dict[str, list[_Failure]] = {}
        self._cancel_holds: int | None = 0  # None: hold every cancel until released
        self._connections: list[_Connection] = []
        self._stream_down = False
        self._reconnect_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self._last_stamp: datetime | None = None
        self._seq = 0

    def __repr__(self) -> str:
        return f"FakeBroker({len(self._orders)} orders, {self._session.value})"

    # --- the Broker port --------------------------------------------------------------------------

    def submit_limit(self, *, client_order_id: str, symbol: str, side: Side, qty: Decimal, limit_price: Decimal,
                     time_in_force: str, extended_hours: bool) -> BrokerOrder:
        request = _Request(symbol.upper(), side, qty, "limit", time_in_force, extended_hours=extended_hours,
                           limit_price=limit_price)
        return self._call("submit_limit", lambda: self._submit(client_order_id, request))

    def submit_market(self, *, client_order_id: str, symbol: str, side: Side, qty: Decimal) -> BrokerOrder:
        request = _Request(symbol.upper(), side, qty, "market", "day")
        return self._call("submit_market", lambda: self._submit(client_order_id, request))

    def submit_oco(self, *, client_order_id: str, symbol: str, side: Side, qty: Decimal, take_profit: Decimal,
                   stop: Decimal) -> BrokerOrder:
        request = _Request(symbol.upper(), side, qty, "limit", "gtc", order_class="oco", limit_price=take_profit,
                           stop_price=stop)
        return self._call("submit_oco", lambda: self._submit(client_order_id, request))

    def get_order(self, client_order_id: str) -> BrokerOrder | None:
        def find() -> BrokerOrder | None:
            order = self._by_client_id.get(client_order_id)
            return None if order is None else order.snapshot()

        return self._call("get_order", find)

    def cancel(self, broker_order_id: str) -> None:
        self._call("cancel", lambda: self._cancel(broker_order_id))

    def list_orders(self, *, after: datetime, limit: int = 500) -> list[BrokerOrder]:
        def listing() -> list[BrokerOrder]:
            if limit < 1:
                raise _invalid("limit must be >= 1")
            since = after if after.tzinfo is not None else after.replace(tzinfo=UTC)  # as the SDK sends naive times
            # Nested, as the adapter asks: legs appear under their parent only.
            selected = [o for o in self._orders if o.parent is None and o.submitted_at > since]
            selected.sort(key=lambda o: (o.submitted_at, o.seq))
            return [o.snapshot() for o in selected[:min(limit, MAX_PAGE)]]

        return self._call("list_orders", listing)

    def session(self) -> Session:
        return self._call("session", lambda: self._session)

    # --- account (risk branch): the port's account(); a test assigns `account_record` to change it ---
    account_record = Account(buying_power=Decimal(1_000_000), equity=Decimal(1_000_000))

    def account(self) -> Account:
        return self.account_record

    async def stream(self, on_event: EventHandler, on_connect: ConnectHandler) -> None:
        """Deliver order updates until cancelled; `on_connect` runs after every (re)connect.

        As at Alpaca, a connection gets only what happens while it is connected, and it reads
        nothing until `on_connect` returns."""
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

    # --- test controls: the market --------------------------------------------------------------

    def set_quote(self, symbol: str, bid: Decimal, ask: Decimal, *, bid_size: Decimal = Decimal(100),
                  ask_size: Decimal = Decimal(100)) -> None:
        """The new top of book for `symbol`; resting orders meet it at once, earliest first."""
        if not ZERO < bid <= ask:
            raise ValueError(f"need 0 < bid <= ask, was {bid} / {ask}")
        if bid_size < 0 or ask_size < 0:
            raise ValueError("sizes must be >= 0")
        with self._lock:
            self._books[symbol.upper()] = _Book(bid, ask, bid_size, ask_size)
            self._match(symbol.upper())

    def trade_at(self, symbol: str, price: Decimal, *, size: Decimal = Decimal(100)) -> None:
        """The market trades at `price`: buy limits at or above it and sell limits at or below it
        fill there, stops on the far side of it trigger."""
        self.set_quote(symbol, price, price, bid_size=size, ask_size=size)

    def fill(self, client_order_id: str, qty: Decimal | None = None, *, price: Decimal | None = None) -> None:
        """Execute a working order now, whatever the quote: what remains (or `qty` of it) at `price`
        (default: its limit, for a stop its stop price, for a market order the touch)."""
        with self._lock:
            order = self._by_client_id.get(client_order_id)
            if order is None:
                raise ValueError(f"no order {client_order_id!r}")
            if not (order.is_open and order.working and self._tradable(order)):
                raise ValueError(f"order {client_order_id!r} cannot trade now (status {order.status})")
            qty = order.remaining if qty is None else qty
            if not ZERO < qty <= order.remaining:
                raise ValueError(f"qty must be in (0, {order.remaining}], was {qty}")
            price = price if price is not None else self._default_price(order)
            if order.order_type == "limit" and order.limit_price is not None:
                worse = price > order.limit_price if order.side is Side.BUY else price < order.limit_price
                if worse:
                    raise ValueError(f"a limit of {order.limit_price} never fills at {price}")
            if order.is_stop_type and not order.triggered:
                self._trigger(order)
            self._fill(order, price, qty)

    def position(self, symbol: str) -> Decimal:
        """Shares held (negative: short), from the fills so far."""
        with self._lock:
            return self._positions.get(symbol.upper(), ZERO)

    def set_session(self, session: Session) -> None:
        """Move the market on to the next `session`, as the clock would.

        Leaving the regular session passes 16:00: day orders expire and partly filled GTC orders
        are done for the day; reaching CLOSED passes 20:00: extended-hours day orders expire.
        Orders waiting for a session they can trade in go live and meet the quote."""
        with self._lock:
            before, self._session = self._session, session
            if session is before:
                return
            past_close = before is Session.REGULAR
            past_evening = session is Session.CLOSED
            for order in list(self._orders):
                if not order.is_open or order.time_in_force != "day":
                    continue
                if (past_close and not order.extended_hours) or (past_evening and order.extended_hours):
                    self._close(order, "expired")
            if past_close:
                for order in self._orders:
                    if order.status == "partially_filled" and order.time_in_force == "gtc":
                        order.status = "done_for_day"
                        self._emit("done_for_day", order)
            if session is Session.REGULAR:
                for order in self._orders:
                    if order.status == "done_for_day":
                        order.status = "partially_filled"
            for order in list(self._orders):
                if order.status == "accepted" and self._tradable(order):
                    self._activate(order)
            for symbol in list(self._books):
                self._match(symbol)

    # --- test controls: refusals and faults -----------------------------------------------------

    def reject_next(self, *, count: int = 1, status: int = 422, code: int = UNPROCESSABLE,
                    message: str = "order rejected by the venue", via: Literal["http", "event"] = "http") -> None:
        """Refuse the next `count` orders: over HTTP (BrokerRejected, no order exists) or by
        event (accepted as pending_new, then `rejected`)."""
        with self._lock:
            self._rejections.extend([_Rejection(status, code, message, via)] * count)

    def fail_next(self, method: Method, error: BrokerError, *, count: int = 1, carried_out: bool = False) -> None:
        """The next `count` calls of `method` raise `error`; with `carried_out` the call takes
        effect first, as when a reply is lost after the venue acted."""
        with self._lock:
            self._failures.setdefault(method, []).extend([_Failure(error, carried_out)] * count)

    def hold_cancels(self, count: int | None = None) -> None:
        """The next `count` cancels (None: all) stay pending_cancel, where fills still land,
        until release_cancels(): the fill-after-cancel race."""
        with self._lock:
            self._cancel_holds = count

    def release_cancels(self) -> None:
        """Complete the held cancels (an order that filled meanwhile stays filled); hold no more."""
        with self._lock:
            self._cancel_holds = 0
            for order in list(self._orders):
                if order.cancel_held:
                    order.cancel_held = False
                    if order.is_open:
                        self._finish_cancel(order)

    # --- test controls: the stream --------------------------------------------------------------

    def drop_stream(self, *, stay_down: bool = False) -> int:
        """Disconnect every stream; what happens until it reconnects is lost, as at Alpaca. It
        reconnects at once, or with `stay_down` only after reconnect_stream(). Returns how many
        connections were dropped."""
        with self._lock:
            dropped, self._connections = self._connections, []
            self._stream_down = stay_down
            for connection in dropped:
                _post(connection.loop, partial(connection.queue.put_nowait, None))
            return len(dropped)

    def reconnect_stream(self) -> None:
        with self._lock:
            self._stream_down = False
            waiters, self._reconnect_waiters = self._reconnect_waiters, []
            for loop, waiter in waiters:
                _post(loop, waiter.set)

    def listening(self) -> int:
        """How many streams are connected now."""
        with self._lock:
            return len(self._connections)

    # --- inspection -----------------------------------------------------------------------------

    def orders(self) -> list[BrokerOrder]:
        """Every order, legs included, oldest first."""
        with self._lock:
            return [order.snapshot() for order in self._orders]

    def events(self) -> list[OrderEvent]:
        """Every event produced, delivered or not."""
        with self._lock:
            return list(self._events)

    # --- calls ----------------------------------------------------------------------------------

    def _call(self, method: Method, work: Callable[[], T]) -> T:
        with self._lock:
            pending = self._failures.get(method)
            failure = pending.pop(0) if pending else None
            if failure is None:
                return work()
            if failure.carried_out:
                try:
                    work()
                except BrokerError:
                    pass  # the injected failure is all the caller sees, refusal or not
            raise failure.error

    def _stamp(self) -> datetime:
        # Strictly increasing even on a stopped clock, so clients can page with `after`.
        now = self._clock()
        stamp = now if self._last_stamp is None else max(now, self._last_stamp + MICROSECOND)
        self._last_stamp = stamp
        return stamp

    def _tradable(self, order: _Order) -> bool:
        if self._session is Session.REGULAR:
            return True
        return self._session is Session.EXTENDED and order.extended_hours

    # --- submit ---------------------------------------------------------------------------------

    def _submit(self, client_order_id: str, r: _Request) -> BrokerOrder:
        _validate(client_order_id, r)
        client_order_id = client_order_id or str(uuid4())
        if client_order_id in self._by_client_id:
            # What AlpacaBroker makes of Alpaca's 422 "client_order_id must be unique": the order
            # may be this caller's own, placed by an attempt whose answer was lost.
            raise BrokerAmbiguous("duplicate client_order_id: the order may already exist "
                                  "(client_order_id must be unique)")
        rejection = self._rejections.pop(0) if self._rejections else None
        if rejection is not None and rejection.via == "http":
            raise BrokerRejected(rejection.message, status=rejection.status, code=rejection.code)
        self._check_account(r)
        order = self._create(client_order_id, r)
        # The answer is the order as placed: a marketable order fills only after it is sent.
        reply = order.snapshot()
        if rejection is not None:
            self._emit("pending_new", order)
            for member in order.family():
                member.status = "rejected"
                member.working = False
            self._emit("rejected", order)
        elif order.status == "accepted":
            self._emit("accepted", order)
        else:
            self._emit("pending_new", order)
            self._activate(order)
        return reply

    def _check_account(self, r: _Request) -> None:
        held = self._positions.get(r.symbol, ZERO)
        reducing = (r.side is Side.SELL and held > 0) or (r.side is Side.BUY and held < 0)
        if r.order_class == "oco" and not reducing:
            raise _unprocessable("oco orders must be exit orders for an existing position")
        if reducing:
            available = abs(held) - self._claimed(r.symbol, r.side)
            if r.qty > available:
                raise _forbidden(f"insufficient qty available for order (requested: {_text(r.qty)}, "
                                 f"available: {_text(available)})")
            return
        if held == 0 and any(o.symbol == r.symbol and o.side is r.side.opposite and self._holds(o)
                             for o in self._orders):
            raise _forbidden("cannot open a long buy while a short sell order is open" if r.side is Side.BUY
                             else "cannot open a short sell while a long buy order is open")
        if r.side is Side.SELL and r.fractional:
            raise _forbidden("fractional orders cannot be sold short")

    @staticmethod
    def _holds(order: _Order) -> bool:
        """Does the order claim shares? (A stop leg waiting for its pair to go live does not.)"""
        return order.is_open and not (order.status == "held" and not order.working)

    def _claimed(self, symbol: str, side: Side) -> Decimal:
        """Shares claimed by open `side` orders; an OCO pair claims its larger side once."""
        total = ZERO
        seen: set[int] = set()
        for order in self._orders:
            if order.symbol != symbol or order.side is not side or not self._holds(order):
                continue
            if order.group is None:
                total += order.remaining
            elif id(order.group) not in seen:
                seen.add(id(order.group))
                total += max(m.remaining for m in order.group if self._holds(m))
        return total

    def _new_order(self, client_order_id: str, r: _Request, order_type: str, *, limit_price: Decimal | None,
                   stop_price: Decimal | None) -> _Order:
        self._seq += 1
        order = _Order(id=str(uuid4()), client_order_id=client_order_id, symbol=r.symbol, side=r.side,
                       order_type=order_type, order_class=r.order_class, time_in_force=r.time_in_force,
                       extended_hours=r.extended_hours, qty=r.qty, limit_price=limit_price, stop_price=stop_price,
                       submitted_at=self._stamp(), seq=self._seq)
        self._orders.append(order)
        self._by_id[order.id] = order
        self._by_client_id[client_order_id] = order
        return order

    def _create(self, client_order_id: str, r: _Request) -> _Order:
        order = self._new_order(client_order_id, r, r.order_type, limit_price=r.limit_price, stop_price=None)
        if r.order_class == "oco":
            # Alpaca's OCO: the take-profit limit is the parent, the stop its leg, held while it
            # watches its price; the leg's client id is the venue's to choose.
            stop = self._new_order(str(uuid4()), r, "stop", limit_price=None, stop_price=r.stop_price)
            stop.parent = order
            stop.status = "held"
            order.legs = [stop]
            order.group = stop.group = [order, stop]
        order.status = "pending_new" if self._tradable(order) else "accepted"
        return order

    def _activate(self, order: _Order) -> None:
        order.status = "new"
        order.working = True
        self._emit("new", order, execution_id=str(uuid4()))
        for leg in order.legs:
            leg.working = True
        book = self._books.get(order.symbol)
        if order.time_in_force == "fok":
            execution = self._execution(order, book) if book is not None else None
            if execution is None or execution[1] < order.remaining:
                self._finish_cancel(order)
                return
        for member in order.group or [order]:
            self._try(member)
        if order.time_in_force in ("ioc", "fok") and order.is_open:
            self._finish_cancel(order)

    # --- matching -------------------------------------------------------------------------------

    def _match(self, symbol: str) -> None:
        for order in [o for o in self._orders if o.symbol == symbol and o.working and o.is_open]:
            self._try(order)

    def _try(self, order: _Order) -> None:
        book = self._books.get(order.symbol)
        if book is None or not (order.working and order.is_open and self._tradable(order)):
            return
        if order.is_stop_type and not order.triggered:
            assert order.stop_price is not None
            reached = book.ask >= order.stop_price if order.side is Side.BUY else book.bid <= order.stop_price
            if not reached:
                return
            self._trigger(order)
        execution = self._execution(order, book)
        if execution is not None:
            price, qty = execution
            book.take(order.side, qty)
            self._fill(order, price, qty)

    def _execution(self, order: _Order, book: _Book) -> tuple[Decimal, Decimal] | None:
        """Price and qty this order gets from the book now: a market order (or a triggered stop)
        all of it at the touch, a marketable limit what the touch shows, at the touch."""
        if order.order_type == "market" or (order.is_stop_type and order.triggered):
            return book.touch(order.side), order.remaining
        if order.order_type != "limit":
            return None
        assert order.limit_price is not None
        if order.side is Side.BUY and book.ask <= order.limit_price:
            qty = min(order.remaining, book.ask_left)
        elif order.side is Side.SELL and book.bid >= order.limit_price:
            qty = min(order.remaining, book.bid_left)
        else:
            return None
        return (book.touch(order.side), qty) if qty > 0 else None

    def _trigger(self, order: _Order) -> None:
        order.triggered = True
        if order.status == "held":  # the stop leg is released to the market
            order.status = "new"
            self._emit("new", order, execution_id=str(uuid4()))

    def _default_price(self, order: _Order) -> Decimal:
        if order.order_type == "limit" and order.limit_price is not None:
            return order.limit_price
        if order.is_stop_type and order.stop_price is not None:
            return order.stop_price
        book = self._books.get(order.symbol)
        if book is None:
            raise ValueError(f"no quote for {order.symbol}: give the price")
        return book.touch(order.side)

    def _fill(self, order: _Order, price: Decimal, qty: Decimal) -> None:
        order.filled_qty += qty
        order.filled_value += price * qty
        held = self._positions.get(order.symbol, ZERO) + (qty if order.side is Side.BUY else -qty)
        if held:
            self._positions[order.symbol] = held
        else:
            self._positions.pop(order.symbol, None)
        complete = order.remaining <= 0
        order.status = "filled" if complete else "partially_filled"
        if complete:
            order.working = False
            order.cancel_held = False
        self._emit("fill" if complete else "partial_fill", order, execution_id=str(uuid4()), price=price, qty=qty)
        for sibling in order.group or ():
            # Any execution on one side of an OCO, even a partial one, cancels the other side.
            if sibling is not order and sibling.is_open:
                self._close(sibling, "canceled")

    # --- cancel ---------------------------------------------------------------------------------

    def _cancel(self, broker_order_id: str) -> None:
        order = self._by_id.get(broker_order_id)
        if order is None:
            raise BrokerNotFound("order not found")
        if order.status in _CLOSED:
            raise _unprocessable(f'order is already in "{order.status}" state')
        if order.status == "pending_cancel":
            return
        if self._cancel_holds is None or self._cancel_holds > 0:
            if self._cancel_holds is not None:
                self._cancel_holds -= 1
            order.status = "pending_cancel"
            order.cancel_held = True
            self._emit("pending_cancel", order)
            return
        self._finish_cancel(order)

    def _finish_cancel(self, order: _Order) -> None:
        for member in [m for m in order.group or [order] if m.is_open]:
            self._close(member, "canceled")

    def _close(self, order: _Order, status: str) -> None:
        order.status = status
        order.working = False
        order.cancel_held = False
        self._emit(status, order)

    # --- the stream -----------------------------------------------------------------------------

    def _emit(self, word: str, order: _Order, *, execution_id: str | None = None, price: Decimal | None = None,
              qty: Decimal | None = None) -> None:
        event = OrderEvent(kind=KINDS[word], event=word, order=order.snapshot(), at=self._clock(),
                           execution_id=execution_id, price=price, qty=qty)
        self._events.append(event)
        for connection in self._connections:
            _post(connection.loop, partial(connection.queue.put_nowait, event))

    async def _connect(self) -> _Connection:
        """A new connection, once the stream may reconnect; from then on it gets every event."""
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                if not self._stream_down:
                    connection = _Connection(loop, asyncio.Queue())
                    self._connections.append(connection)
                    return connection
                waiter = asyncio.Event()
                self._reconnect_waiters.append((loop, waiter))
            await waiter.wait()


def _validate(client_order_id: str, r: _Request) -> None:
    """The request-only rules, in the venue's order, with Alpaca's status, code and message."""
    if len(client_order_id) > 128:
        raise _invalid("client_order_id must be no more than 128 characters")
    if not _SYMBOL.match(r.symbol):
        raise _invalid(f'asset "{r.symbol}" not found')
    if r.time_in_force not in _TIMES_IN_FORCE:
        raise _invalid(f"invalid time_in_force: {r.time_in_force!r}")
    if r.time_in_force in ("opg", "cls"):
        raise _invalid(f"time_in_force {r.time_in_force} is not supported by the fake broker")
    if r.qty <= 0:
        raise _invalid("qty must be > 0")
    if r.fractional:
        if r.time_in_force != "day":
            raise _invalid("fractional orders must be DAY orders")
        if r.order_class != "simple":
            raise _unprocessable("fractional orders must be simple market or limit orders")
        if r.extended_hours:
            raise _unprocessable("fractional orders are not allowed in extended hours")
    prices = ({"take_profit.limit_price": r.limit_price, "stop_loss.stop_price": r.stop_price}
              if r.order_class == "oco" else {"limit_price": r.limit_price})
    for name, price in prices.items():
        if price is None:
            continue
        if price <= 0:
            raise _invalid(f"{name} must be > 0")
        tick = CENT if price >= 1 else Decimal("0.0001")  # Reg NMS: a cent at or above $1
        if price % tick:
            raise _unprocessable(f"invalid {name} {_text(price)}. sub-penny increment does not fulfill "
                                 "minimum pricing criteria")
    if r.extended_hours:
        if r.order_type != "limit":
            raise _invalid('only type="limit" is allowed for extended hours orders')
        if r.time_in_force != "day":
            raise _invalid('only time_in_force="day" is allowed for extended hours orders')
    if r.order_class == "oco":
        assert r.limit_price is not None and r.stop_price is not None
        # The OCO is itself the exit: a sell takes profit above its stop, a buy below it.
        if (r.limit_price > r.stop_price) != (r.side is Side.SELL):
            raise _unprocessable("take_profit.limit_price must be on the profit side of stop_loss.stop_price")
