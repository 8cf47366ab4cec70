"""What the service hands the ledger to write, and what the ledger hands back: plain records."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from engine.core.orders import OrderIntent, OrderUpdate

__all__ = ["FillRecord", "FoundExecution", "OrderIntent", "OrderUpdate", "OrphanOrder", "TransitionRecord", "Writes"]


@dataclass(frozen=True)
class FillRecord:
    client_order_id: str
    execution_id: str
    qty: Decimal
    price: Decimal
    at: datetime
    cum_qty: Decimal | None = None


@dataclass
class Writes:
    """Order and fill rows that must commit in the same transaction as a transition."""

    intents: Sequence[OrderIntent] = ()
    updates: Sequence[OrderUpdate] = ()
    fills: Sequence[FillRecord] = ()


class TransitionRecord(NamedTuple):
    """One `transitions` row. A named tuple, not a dataclass: verify builds one per row of the
    ledger, and a tuple is built in a fifth of the time."""

    id: int
    lifecycle_id: int
    seq: int
    trigger: str
    from_state: str | None
    to_state: str
    source: str
    at: datetime
    payload: dict[str, Any]
    prev_hash: str | None = None  # the hash chain (engine/chain.py); None only for unsaved rows
    row_hash: str | None = None


@dataclass(frozen=True)
class OrphanOrder:
    """An order under this engine's prefix that the ledger never intended, as the broker shows it."""

    client_order_id: str
    broker_order_id: str
    symbol: str
    side: str
    order_type: str
    order_class: str
    qty: Decimal
    limit_price: Decimal | None
    stop_price: Decimal | None
    submitted_at: datetime | None
    update: OrderUpdate


@dataclass(frozen=True)
class FoundExecution:
    """An execution read from the broker's account record rather than the stream: its order is
    named by the broker's id (the record knows no client order id), the execution by the record's
    own id. `cum_qty` is the order's filled qty after it: with the order, the key both channels share."""

    broker_order_id: str
    execution_id: str
    qty: Decimal
    price: Decimal
    at: datetime
    cum_qty: Decimal
