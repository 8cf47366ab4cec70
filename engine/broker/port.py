"""The broker port: what the service needs from a venue, in venue-neutral types.

The service never sees SDK types or a venue's words: an adapter (engine/broker/alpaca.py)
translates both ways and does nothing else. What an order's status means (`Kind`), whether it is
final and which leg of an exit pair it is are told here, so no layer above reads a status word.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Protocol

from engine.core.domain import Side
from engine.core.errors import EngineError
from engine.core.orders import Kind as Kind  # re-exported: the port speaks the core's vocabulary
from engine.core.orders import Session as Session
from engine.core.risk import Account as Account


@dataclass(frozen=True)
class BrokerOrder:
    client_order_id: str
    broker_order_id: str
    symbol: str
    side: Side
    order_type: str
    order_class: str
    status: str  # the venue's own status word, kept for the ledger
    kind: Kind  # what that status means
    final: bool  # the venue will change this order no more (filled, canceled, expired, rejected, …)
    qty: Decimal
    filled_qty: Decimal
    filled_avg_price: Decimal | None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    legs: tuple[BrokerOrder, ...] = ()
    submitted_at: datetime | None = None
    is_stop: bool = False  # triggers on its stop price: the stop leg of an exit pair, or a trailing stop
    trail_percent: Decimal | None = None  # a trailing stop's trail
    hwm: Decimal | None = None  # a trailing stop's high-water mark (low for a buy), as the venue reports it


@dataclass(frozen=True)
class OrderEvent:
    kind: Kind
    event: str  # the venue's event word (`fill`, `done_for_day`, …)
    order: BrokerOrder
    at: datetime
    execution_id: str | None = None
    price: Decimal | None = None
    qty: Decimal | None = None

    @property
    def execution_key(self) -> ExecutionKey | None:
        """The channel-independent key of the execution this event reports (None if it reports none)."""
        if self.kind not in (Kind.FILL, Kind.PARTIAL_FILL):
            return None
        return execution_key(self.order.broker_order_id, self.order.filled_qty)


# (broker order id, the order's cumulative filled qty after the execution): one execution, named the
# same on both channels. The stream's execution_id and the activity id are not known to be related
# (Alpaca documents neither as the other), and an order's cumulative qty only grows, so no two
# executions of one order share it. Decimal compares and hashes by value: 40 and 40.0 are one key.
ExecutionKey = tuple[str, Decimal]


def execution_key(broker_order_id: str, cum_qty: Decimal) -> ExecutionKey:
    return broker_order_id, cum_qty


@dataclass(frozen=True)
class BrokerExecution:
    """One execution (a fill or a partial fill) as the account's activity record tells it.

    The record survives a stream outage: an execution the stream never delivered is here."""

    activity_id: str  # the venue's id for this execution; also the token of the page it ends
    broker_order_id: str
    symbol: str
    side: Side
    qty: Decimal  # of this execution
    price: Decimal  # of this execution
    at: datetime  # transaction time, tz-aware UTC
    cum_qty: Decimal  # the order's filled qty after this execution
    leaves_qty: Decimal  # the order's qty still open after it (0 once filled or ended)
    order_status: str  # the venue's status word for the order, kept for the ledger
    kind: Kind  # Kind.FILL (the order is now filled) or Kind.PARTIAL_FILL

    @property
    def key(self) -> ExecutionKey:
        return execution_key(self.broker_order_id, self.cum_qty)


@dataclass(frozen=True)
class MarketClock:
    """The venue's market clock: now, the session it trades in, and the next regular open and
    close (every time tz-aware)."""

    at: datetime
    session: Session
    next_open: datetime
    next_close: datetime


MAX_ACTIVITY_PAGE = 100  # Alpaca: page_size defaults to 100 and may not exceed it (without `date`)


class BrokerError(EngineError):
    """A broker call failed; the subclass says what to do next."""


class BrokerRejected(BrokerError):
    """A definitive refusal (4xx other than a duplicate id): the order does not exist."""

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class BrokerAmbiguous(BrokerError):
    """The outcome is unknown (timeout, 5xx, 429/504, duplicate id): look the order up, never resend blindly."""


class BrokerUnknownWord(BrokerAmbiguous):
    """The venue answered with a word the adapter cannot read (a new status or time_in_force):
    the call may have done what was asked, but its answer cannot be trusted as read."""

    def __init__(self, message: str, *, field: str | None = None, word: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.word = word


class BrokerNotFound(BrokerError):
    """The venue does not know that order (or position)."""


class BrokerUnauthorized(BrokerError):
    """The keys were refused: nothing will work until they are fixed."""


EventHandler = Callable[[OrderEvent], Awaitable[None]]
ConnectHandler = Callable[[], Awaitable[None]]


class Broker(Protocol):
    """Blocking REST calls (the service runs them off the event loop) and an async update stream."""

    def submit_limit(self, *, client_order_id: str, symbol: str, side: Side, qty: Decimal, limit_price: Decimal,
                     time_in_force: str, extended_hours: bool) -> BrokerOrder: ...

    def submit_market(self, *, client_order_id: str, symbol: str, side: Side, qty: Decimal) -> BrokerOrder: ...

    def submit_oco(self, *, client_order_id: str, symbol: str, side: Side, qty: Decimal, take_profit: Decimal,
                   stop: Decimal) -> BrokerOrder: ...

    def submit_trailing_stop(self, *, client_order_id: str, symbol: str, side: Side, qty: Decimal,
                             trail_percent: Decimal, time_in_force: str = "gtc") -> BrokerOrder:
        """Alpaca's trailing_stop (is_stop set): its stop follows the best price seen in the regular
        session (`hwm`) at `trail_percent` behind it, and it fills like a market order once reached.
        The submit's answer has no stop yet; a look-up shows the venue's current one."""
        ...

    def get_order(self, client_order_id: str) -> BrokerOrder | None: ...

    def cancel(self, broker_order_id: str) -> None: ...

    def replace(self, *, broker_order_id: str, client_order_id: str, qty: Decimal | None = None,
                limit_price: Decimal | None = None, stop_price: Decimal | None = None,
                trail: Decimal | None = None) -> BrokerOrder:
        """Alpaca's PATCH /v2/orders/{id}: a NEW order (its own broker id, `client_order_id`) takes
        the old one's place, and the old one goes pending_replace, then replaced (INFO, final).

        A field left None keeps the old order's value; `qty` is the new order's whole qty and
        defaults to what the old one had left (its fills stay on the old order). An exit pair's
        leg keeps its place in the pair. Refused (BrokerRejected) when the old order is final or
        pending; a used `client_order_id` is BrokerAmbiguous, as on submit."""
        ...

    def list_orders(self, *, after: datetime, limit: int = 500) -> list[BrokerOrder]: ...

    def fill_activities(self, *, after: datetime, until: datetime | None = None, page_token: str | None = None,
                        page_size: int = MAX_ACTIVITY_PAGE) -> list[BrokerExecution]:
        """One page of the account's executions strictly after `after` (and before `until`), oldest first.

        One call is one REST read, so a caller that paces its reads paces every page. The next
        page starts after `page_token`, the activity_id of the last execution of this page; a
        page shorter than `page_size` is the last. See `every_fill_activity`."""
        ...

    def fill_activities_on(self, day: date) -> list[BrokerExecution]:
        """Every execution of one New York trading day, oldest first, in one read (Alpaca's `date`
        parameter lifts the 100-per-page limit)."""
        ...

    def market_clock(self) -> MarketClock:
        """Alpaca's GET /v2/clock, with the session it means (see engine/broker/clock.py)."""
        ...

    def session(self) -> Session:
        """market_clock().session"""
        ...

    def account(self) -> Account:
        """Buying power and equity, for the pre-trade risk check."""
        ...

    async def stream(self, on_event: EventHandler, on_connect: ConnectHandler) -> None:
        """Deliver order updates until cancelled; `on_connect` runs after every (re)connect."""
        ...


def every_fill_activity(broker: Broker, *, after: datetime, until: datetime | None = None,
                        page_size: int = MAX_ACTIVITY_PAGE) -> list[BrokerExecution]:
    """Every execution after `after`, page by page, oldest first (a caller that must pace its
    reads calls `fill_activities` itself, one page at a time)."""
    if not 1 <= page_size <= MAX_ACTIVITY_PAGE:
        # A venue serves at most its maximum: a short page would then look like the last one.
        raise ValueError(f"page_size must be 1..{MAX_ACTIVITY_PAGE}, was {page_size}")
    executions: list[BrokerExecution] = []
    token: str | None = None
    while True:
        page = broker.fill_activities(after=after, until=until, page_token=token, page_size=page_size)
        executions.extend(page)
        if len(page) < page_size:
            return executions
        if page[-1].activity_id == token:  # a venue that ignores the token would page for ever
            raise BrokerAmbiguous(f"the activity page after {token} began with it again")
        token = page[-1].activity_id
