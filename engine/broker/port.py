"""The broker port: what the service needs from a venue, in venue-neutral types.

The service never sees SDK types or a venue's words: an adapter (engine/broker/alpaca.py)
translates both ways and does nothing else. What an order's status means (`Kind`), whether it is
final and which leg of an exit pair it is are told here, so no layer above reads a status word.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
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
    is_stop: bool = False  # triggers on its stop price: the stop leg of an exit pair


@dataclass(frozen=True)
class OrderEvent:
    kind: Kind
    event: str  # the venue's event word (`fill`, `done_for_day`, …)
    order: BrokerOrder
    at: datetime
    execution_id: str | None = None
    price: Decimal | None = None
    qty: Decimal | None = None


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

    def get_order(self, client_order_id: str) -> BrokerOrder | None: ...

    def cancel(self, broker_order_id: str) -> None: ...

    def list_orders(self, *, after: datetime, limit: int = 500) -> list[BrokerOrder]: ...

    def session(self) -> Session: ...

    def account(self) -> Account:
        """Buying power and equity, for the pre-trade risk check."""
        ...

    async def stream(self, on_event: EventHandler, on_connect: ConnectHandler) -> None:
        """Deliver order updates until cancelled; `on_connect` runs after every (re)connect."""
        ...
