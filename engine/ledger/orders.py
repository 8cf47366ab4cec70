"""Order and fill rows: written in the transaction of the transition they explain, or alone.

A row's status and cumulative fill only move forward: the rules here are the same for the
engine's `orders` and for `orphan_orders`.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Connection,
    Insert,
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement

from engine.core.orders import OrderUpdate
from engine.ledger.journal import Journal
from engine.ledger.records import FillRecord, Writes
from engine.ledger.schema import Money, fills, orders

INTENDED = "intended"  # the status of an order recorded and not yet acknowledged by the broker
# The status of an intent whose client order id the broker holds for an order it did not make:
# the news of that order is never this row's, not even after a restart.
ID_TAKEN = "id_taken"
# The status of a replacement (a re-priced entry) that never became an order: the replace was
# refused, or never reached the broker while the order it was to replace ended.
NOT_SENT = "not_sent"
_INSERT_ORDER = insert(orders).returning(orders.c.id)


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
        _insert_fill(conn, fill, journal)


def _insert_fill(conn: Connection, fill: FillRecord, journal: Journal) -> None:
    """The fills row of one execution, unless the ledger holds it: by its execution id (a replayed
    event: the unique index, ON CONFLICT DO NOTHING), or by its order and cum_qty under another
    channel's id (the account's activities, stored by a reconcile). One statement decides, in the
    transaction that writes it, so no read before it is needed and none can go stale."""
    row = {"order_id": None, "execution_id": fill.execution_id, "qty": fill.qty, "price": fill.price,
           "at": fill.at, "cum_qty": quantity_key(fill.cum_qty)}
    params = {"_coid": fill.client_order_id, **{f"_{name}": value for name, value in row.items() if name != "order_id"}}
    stored = conn.execute(_INSERT_FILL[conn.dialect.name], params).first()
    if stored is None:
        conn.execute(_ORDER_ID, {"_coid": fill.client_order_id}).scalar_one()  # no such order is a caller's bug
        return
    row["order_id"] = stored.order_id
    journal.inserted("fills", stored.id, row)


def _update_order(conn: Connection, change: OrderUpdate, at: datetime, journal: Journal) -> None:
    """One conditional UPDATE applies `progress` in SQL; what it returns tells which columns moved,
    which the journal notes exactly as `progress` would have named them."""
    params = {"_coid": change.client_order_id, "_status": change.status, "_final": change.final,
              "_filled_qty": change.filled_qty, "_filled_avg_price": change.filled_avg_price,
              "_broker_order_id": change.broker_order_id, "_at": at}
    stored = conn.execute(_UPDATE_ORDER, params).first()
    if stored is None:
        raise KeyError(f"no order with client_order_id {change.client_order_id!r} in the ledger")
    values: dict[str, Any] = {"updated_at": at}
    # The status moved unless the row was final and the change is not: then `final` stayed True.
    if stored.final == change.final:
        values.update(status=change.status, final=change.final)
    # The quantity moved unless it would have shrunk: then the row kept a larger one.
    if change.filled_qty is not None and stored.filled_qty == change.filled_qty:
        values["filled_qty"] = change.filled_qty
        if change.filled_avg_price is not None:
            values["filled_avg_price"] = change.filled_avg_price
    if change.broker_order_id is not None:
        values["broker_order_id"] = change.broker_order_id
    journal.updated("orders", stored.id, values)


class _AtLeast(FunctionElement[bool]):
    """`a >= b` on money: NUMERIC on PostgreSQL; on SQLite, whose money is decimal text, the
    `money_ge` function (engine.ledger.database registers it on every connection) compares the
    Decimals, as `progress` does."""

    type = Boolean()
    inherit_cache = True
    name = "money_ge"


@compiles(_AtLeast)
def _at_least(element: _AtLeast, compiler: Any, **kw: Any) -> str:
    left, right = element.clauses
    return f"{compiler.process(left, **kw)} >= {compiler.process(right, **kw)}"


@compiles(_AtLeast, "sqlite")
def _at_least_sqlite(element: _AtLeast, compiler: Any, **kw: Any) -> str:
    left, right = element.clauses
    return f"money_ge({compiler.process(left, **kw)}, {compiler.process(right, **kw)})"


class _Amount(FunctionElement[Decimal]):
    """An amount parameter, CAST to NUMERIC on PostgreSQL, where a parameter that only meets IS
    NULL, a CASE branch or a select list has no type it can infer (strings, times and booleans get
    theirs from SQLAlchemy's casts or their context); bare on SQLite, whose CAST to NUMERIC would
    turn an amount's decimal text into a float."""

    inherit_cache = True
    name = "amount"


@compiles(_Amount)
def _amount(element: _Amount, compiler: Any, **kw: Any) -> str:
    (param,) = element.clauses
    return f"CAST({compiler.process(param, **kw)} AS NUMERIC)"


@compiles(_Amount, "sqlite")
def _amount_sqlite(element: _Amount, compiler: Any, **kw: Any) -> str:
    (param,) = element.clauses
    return str(compiler.process(param, **kw))


def _param(name: str, column: ColumnElement[Any]) -> ColumnElement[Any]:
    param = bindparam(name, type_=column.type)
    if not isinstance(column.type, Money):
        return param
    amount = _Amount(param)
    amount.type = column.type
    return amount


# `progress` in SQL (SET expressions read the row as it was): the status moves if the row is not
# final or the change is; filled_qty (with its average price) only grows.
_MOVES_STATUS = or_(~orders.c.final, _param("_final", orders.c.final))
_GROWS = and_(_param("_filled_qty", orders.c.filled_qty).is_not(None),
              _AtLeast(_param("_filled_qty", orders.c.filled_qty), orders.c.filled_qty))
_UPDATE_ORDER = (
    update(orders)
    .where(orders.c.client_order_id == bindparam("_coid"))
    .values(
        status=case((_MOVES_STATUS, _param("_status", orders.c.status)), else_=orders.c.status),
        final=case((_MOVES_STATUS, _param("_final", orders.c.final)), else_=orders.c.final),
        filled_qty=case((_GROWS, _param("_filled_qty", orders.c.filled_qty)), else_=orders.c.filled_qty),
        filled_avg_price=case(
            (and_(_GROWS, _param("_filled_avg_price", orders.c.filled_avg_price).is_not(None)),
             _param("_filled_avg_price", orders.c.filled_avg_price)),
            else_=orders.c.filled_avg_price),
        broker_order_id=func.coalesce(_param("_broker_order_id", orders.c.broker_order_id), orders.c.broker_order_id),
        updated_at=_param("_at", orders.c.updated_at),
    )
    .returning(orders.c.id, orders.c.final, orders.c.filled_qty)
)


def _fill_statement(dialect: Any) -> Insert:
    """INSERT INTO fills ... SELECT the order's id and the execution's values, unless a row of
    the order has its cum_qty under another execution id; a repeated execution id does nothing."""
    other = fills.alias("other")

    def value(name: str) -> ColumnElement[Any]:
        return _param(f"_{name}", fills.c[name])

    source = select(orders.c.id, value("execution_id"), value("qty"), value("price"), value("at"),
                    value("cum_qty")).where(
        orders.c.client_order_id == bindparam("_coid"),
        ~exists().where(other.c.order_id == orders.c.id, other.c.cum_qty == _param("_cum_qty", fills.c.cum_qty),
                        other.c.execution_id != _param("_execution_id", fills.c.execution_id)))
    statement: Insert = (dialect.insert(fills)
                         .from_select(["order_id", "execution_id", "qty", "price", "at", "cum_qty"], source)
                         .on_conflict_do_nothing(index_elements=[fills.c.execution_id])
                         .returning(fills.c.id, fills.c.order_id))
    return statement


# Statements built once: building and caching a statement per call costs more than the SQL it runs.
_ORDER_ID = select(orders.c.id).where(orders.c.client_order_id == bindparam("_coid"))
_INSERT_FILL = {"sqlite": _fill_statement(sqlite), "postgresql": _fill_statement(postgresql)}


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
