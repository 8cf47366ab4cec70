"""What the service hands the ledger to write, and what the ledger hands back: plain records."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Sequence

from engine.core.domain import Leg, Side


@dataclass(frozen=True)
class OrderIntent:
    """A broker order the engine is about to send: recorded before the call (persist, then act)."""

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
    """What the broker said about one of our orders."""

    client_order_id: str
    status: str
    broker_order_id: str | None = None
    filled_qty: Decimal | None = None
    filled_avg_price: Decimal | None = None


@dataclass(frozen=True)
class FillRecord:
    client_order_id: str
    execution_id: str
    qty: Decimal
    price: Decimal
    at: datetime


@dataclass
class Writes:
    """Order and fill rows that must commit in the same transaction as a transition."""

    intents: Sequence[OrderIntent] = ()
    updates: Sequence[OrderUpdate] = ()
    fills: Sequence[FillRecord] = ()


@dataclass(frozen=True)
class TransitionRecord:
    id: int
    lifecycle_id: int
    seq: int
    trigger: str
    from_state: str | None
    to_state: str
    source: str
    at: datetime
    payload: dict[str, Any] = field(default_factory=dict)
    prev_hash: str | None = None  # the hash chain (engine/chain.py); None only for unsaved rows
    row_hash: str | None = None
