"""Orders in the engine's own terms: what it intends to send and what it hears back.

Venue-neutral: an adapter turns its venue's words into a `Kind`, a `final` flag and these records,
so the decisions, the ledger and the service never read a status word to decide anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import Enum

from engine.core.domain import Leg, Side


class Session(str, Enum):
    REGULAR = "regular"
    EXTENDED = "extended"  # pre-market or after-hours: limit + day + extended_hours only
    OVERNIGHT = "overnight"  # 20:00-04:00 ET before a trading day (Alpaca's 24/5): the same order rules
    CLOSED = "closed"


class Kind(str, Enum):
    """What an order update means for a lifecycle, whatever the venue's word for it."""

    ACK = "ack"  # the venue holds the order (pending_new, new, accepted, held, …)
    PARTIAL_FILL = "partial_fill"
    FILL = "fill"
    DONE = "done"  # no more fills will come: canceled, expired, done_for_day
    REJECTED = "rejected"
    CANCEL_REJECTED = "cancel_rejected"  # usually: it filled first
    INFO = "info"  # nothing to act on (pending_cancel, replaced, calculated, …)


@dataclass(frozen=True, slots=True)  # slots: held per in-flight order, tens of thousands at once
class OrderIntent:
    """A broker order the engine is about to send: recorded before the call (persist, then act).

    The take-profit leg's intent stands for the whole exit pair: its limit is the target and its
    stop price the stop."""

    client_order_id: str
    leg: Leg
    side: Side
    order_type: str
    time_in_force: str
    qty: Decimal
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    extended_hours: bool = False


@dataclass(frozen=True)
class OrderUpdate:
    """What the broker said about one of our orders (its status word is kept for the auditor)."""

    client_order_id: str
    status: str
    broker_order_id: str | None = None
    filled_qty: Decimal | None = None
    filled_avg_price: Decimal | None = None
    final: bool = False  # the venue will change this order no more


@dataclass(frozen=True)
class Execution:
    """One fill as the stream reports it; REST only carries cumulative quantities."""

    execution_id: str
    qty: Decimal
    price: Decimal
    at: datetime
    cum_qty: Decimal | None = None  # the order's filled qty after it: with the order, a key on every channel


@dataclass(frozen=True)
class OrderReport:
    """An order update as the decisions read it, from a reply, a stream event or a look-up."""

    kind: Kind
    update: OrderUpdate
    execution: Execution | None = None
    submitted_at: datetime | None = None  # on the broker's clock: where the order's executions begin

    @property
    def filled_qty(self) -> Decimal:
        return self.update.filled_qty or Decimal(0)

    @property
    def filled_avg_price(self) -> Decimal | None:
        return self.update.filled_avg_price


@dataclass(frozen=True)
class HeldOrder:
    """What the broker holds under a client order id, as far as telling whose order it is needs:
    an exit pair's stop price is its stop leg's."""

    symbol: str
    side: Side
    order_type: str
    qty: Decimal
    limit_price: Decimal | None
    stop_price: Decimal | None
    submitted_at: datetime | None
