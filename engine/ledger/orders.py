"""Order and fill rows: written in the transaction of the transition they explain, or alone.

A row's status and cumulative fill only move forward: the rules here are the same for the
engine's `orders` and for `orphan_orders`.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import Connection, Update, bindparam, insert, select, update

from engine.core.orders import OrderUpdate
from engine.ledger.journal import Journal
from engine.ledger.records import FillRecord, Writes
from engine.ledger.schema import fills, orders

INTENDED = "intended"  # the status of an order recorded and not yet acknowledged by the broker
# The status of an intent whose client order id the broker holds for an order it did not make:
# the news of that order is never this row's, not even after a restart.
ID_TAKEN = "id_taken"
# The status of a replacement (a re-priced entry) that never became an order: the replace was
# refused, or never reached the broker while the order it was to replace ended.
NOT_SENT = "not_sent"
_INSERT_ORDER = insert(orders).returning(orders.c.id)
_INSERT_FILL = insert(fills).returning(fills.c.id)


def quantity_key(qty: Decimal | None) -> Decimal | None:
    """One spelling per quantity (10, never 10.0 or 1E+1): SQLite compares the stored text."""
    return None if qty is None else Decimal(format(qty.normalize(), "f"))


def apply_writes(conn: Connection, lifecycle_id: int, at: datetime, writes: Writes | None,
                 journal: Journal) -> None:
    """Write the order and fill rows of `writes`, each noted in `journal` for the records chain."""
    if writes is None:
        return
    for intent in writes.intents:
        row = {
            "lifecycle_id": lifecycle_id,
            "client_order_id": intent.client_order_id,
            "broker_order_id": None,
            "leg": intent.leg.value,
            "side": intent.side.value,
            "order_type": intent.order_type,
            "time_in_force": intent.time_in_force,
            "extended_hours": intent.extended_hours,
            "qty": intent.qty,
            "limit_price": intent.limit_price,
            "stop_price": intent.stop_price,
            "status": INTENDED,
            "final": False,
            "filled_qty": Decimal(0),
            "filled_avg_price": None,
            "created_at": at,
            "updated_at": at,
        }
        journal.inserted("orders", conn.execute(_INSERT_ORDER, row).scalar_one(), row)
    for change in writes.updates:
        _update_order(conn, change, at, journal)
    for fill in writes.fills:
        order_id = conn.execute(_ORDER_ID, {"_coid": fill.client_order_id}).scalar_one()
        if _found_meanwhile(conn, order_id, fill):
            continue
        row = {"order_id": order_id, "execution_id": fill.execution_id, "qty": fill.qty, "price": fill.price,
               "at": fill.at, "cum_qty": quantity_key(fill.cum_qty)}
        journal.inserted("fills", conn.execute(_INSERT_FILL, row).scalar_one(), row)


def _found_meanwhile(conn: Connection, order_id: int, fill: FillRecord) -> bool:
    """Whether the order already has a row for this execution under another channel's id: the
    conductor's has_fill ran before this transaction, and a reconcile may have stored the same
    execution from the account's activities since. (A repeat of the same execution id is still
    the unique index's to refuse: no channel sends one after has_fill said no.)"""
    if fill.cum_qty is None:
        return False
    same = {"_order_id": order_id, "_cum_qty": quantity_key(fill.cum_qty), "_execution_id": fill.execution_id}
    return conn.execute(_SAME_FILL, same).first() is not None


def _update_order(conn: Connection, change: OrderUpdate, at: datetime, journal: Journal) -> None:
    current = conn.execute(_ORDER_PROGRESS, {"_coid": change.client_order_id}).first()
    if current is None:
        raise KeyError(f"no order with client_order_id {change.client_order_id!r} in the ledger")
    values = {"updated_at": at, **progress(current, change)}
    if change.broker_order_id is not None:
        values["broker_order_id"] = change.broker_order_id
    conn.execute(_update_statement(tuple(values)), {**values, "_id": current.id})
    journal.updated("orders", current.id, values)


# Statements built once: building and caching a statement per call costs more than the SQL it runs.
_ORDER_ID = select(orders.c.id).where(orders.c.client_order_id == bindparam("_coid"))
_ORDER_PROGRESS = select(orders.c.id, orders.c.filled_qty, orders.c.status, orders.c.final).where(
    orders.c.client_order_id == bindparam("_coid"))
_SAME_FILL = select(fills.c.id).where(fills.c.order_id == bindparam("_order_id"),
                                      fills.c.cum_qty == bindparam("_cum_qty"),
                                      fills.c.execution_id != bindparam("_execution_id"))
_UPDATES: dict[tuple[str, ...], Update] = {}


def _update_statement(columns: tuple[str, ...]) -> Update:
    """UPDATE orders of these columns by id: one statement per set of columns a report moves."""
    statement = _UPDATES.get(columns)
    if statement is None:
        statement = _UPDATES[columns] = (update(orders).where(orders.c.id == bindparam("_id"))
                                         .values({name: bindparam(name) for name in columns}))
    return statement


class _Progressed(Protocol):
    status: str
    final: bool
    filled_qty: Decimal


def progress(current: _Progressed, change: OrderUpdate) -> dict[str, Any]:
    """The columns a broker report may move on a row holding (`status`, `final`, `filled_qty`)."""
    values: dict[str, Any] = {}
    # A reply or event that arrives after a final status (e.g. the submit's own `new` after the
    # `fill` event) must not make a finished order look open again.
    if not current.final or change.final:
        values.update(status=change.status, final=change.final)
    # Cumulative quantities are the truth and only grow: a late or reordered report cannot
    # shrink what has already been seen.
    if change.filled_qty is not None and change.filled_qty >= current.filled_qty:
        values["filled_qty"] = change.filled_qty
        if change.filled_avg_price is not None:
            values["filled_avg_price"] = change.filled_avg_price
    return values
