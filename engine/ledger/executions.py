"""Executions found in the broker's account record: fills rows for executions whose stream event
was lost (the engine was down, the socket dropped or went mute).

One execution is one row whatever channel told it: it is known by its execution id, or by its
order and the order's filled qty after it (`fills.cum_qty`, unique per order), which the stream's
event and the account's FILL activity of one execution share although their ids differ.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, insert, or_, select
from sqlalchemy.exc import IntegrityError

from engine.ledger.journal import Journal
from engine.ledger.orders import ID_TAKEN, quantity_key
from engine.ledger.records import FoundExecution
from engine.ledger.schema import fills, orders
from engine.ledger.session import Store

_INSERT_FILL = insert(fills).returning(fills.c.id, sort_by_parameter_order=True)
# Another writer on this ledger (a second engine on PostgreSQL) may store one of a page's
# executions between this transaction's read and its insert: the unique indexes refuse the
# duplicate, and reading again skips it.
_TRIES = 3
_CHUNK = 500  # ids per IN list: well under SQLite's bound on a statement's variables


class ExecutionStore(Store):
    def recorded_fill_qty(self, client_order_ids: Iterable[str]) -> dict[str, Decimal]:
        """For each of these orders the ledger holds (a refused id_taken intent is not an order),
        the qty its fills rows add up to: where that falls short of the order's filled qty at the
        broker, an execution's event was lost."""
        wanted = sorted(set(client_order_ids))
        recorded: dict[str, Decimal] = {}
        with self._read() as conn:
            for start in range(0, len(wanted), _CHUNK):
                query = (select(orders.c.client_order_id, fills.c.qty)
                         .outerjoin(fills, fills.c.order_id == orders.c.id)
                         .where(orders.c.client_order_id.in_(wanted[start:start + _CHUNK]),
                                orders.c.status != ID_TAKEN))
                for coid, qty in conn.execute(query):
                    # Summed here: SQLite keeps money as text, and its SUM would be a float.
                    recorded[coid] = recorded.get(coid, Decimal(0)) + (qty or Decimal(0))
        return recorded

    def save_found_executions(self, found: Sequence[FoundExecution],
                              named: Mapping[str, str] | None = None) -> int:
        """Store, in one transaction, a fills row for each of `found` whose order is this ledger's
        and which the ledger does not hold yet (by execution id, or by order and cum_qty).
        Returns how many rows were stored.

        An order is this ledger's if an `orders` row has its broker id, or if `named` (broker
        order id -> client order id, from a listing read just before) names a row that has no
        broker id yet: an order whose submit reply and events were all lost. Executions of any
        other order (other ledgers' on the account, orphans, a person's) are skipped."""
        if not found:
            return 0
        attempt = 1
        while True:
            try:
                with self._writing() as (conn, journal):
                    return _save(conn, found, named or {}, journal)
            except IntegrityError:
                if attempt == _TRIES:
                    raise
                attempt += 1


def _save(conn: Connection, found: Sequence[FoundExecution], named: Mapping[str, str], journal: Journal) -> int:
    order_ids = _our_orders(conn, {e.broker_order_id for e in found}, named)
    ours = [e for e in found if e.broker_order_id in order_ids]
    if not ours:
        return 0
    keys, ids, before = _stored(conn, set(order_ids.values()), {e.execution_id for e in ours})
    rows: list[dict[str, Any]] = []
    for execution in ours:
        order_id, cum_qty = order_ids[execution.broker_order_id], quantity_key(execution.cum_qty)
        if (order_id, cum_qty) in keys or execution.execution_id in ids:
            continue  # told by the stream (or an earlier read): the same execution
        if execution.cum_qty <= before.get(order_id, Decimal(0)):
            continue  # one of the order's first executions, stored before 0009 without its cum_qty
        keys.add((order_id, cum_qty))  # a page read twice by a venue must not store it twice
        ids.add(execution.execution_id)
        rows.append({"order_id": order_id, "execution_id": execution.execution_id, "qty": execution.qty,
                     "price": execution.price, "at": execution.at, "cum_qty": cum_qty})
    if rows:
        for row, row_id in zip(rows, conn.execute(_INSERT_FILL, rows).scalars(), strict=True):
            journal.inserted("fills", row_id, row)
    return len(rows)


def _our_orders(conn: Connection, broker_ids: set[str], named: Mapping[str, str]) -> dict[str, int]:
    """Broker order id -> `orders.id` of the given orders this ledger placed."""
    coids = {named[b]: b for b in broker_ids if b in named}
    query = select(orders.c.id, orders.c.broker_order_id, orders.c.client_order_id, orders.c.status).where(
        or_(orders.c.broker_order_id.in_(broker_ids), orders.c.client_order_id.in_(coids)))
    found: dict[str, int] = {}
    for row in conn.execute(query):
        if row.status == ID_TAKEN:
            continue  # the order under this id is not the one the row intended: its fills are not ours
        if row.broker_order_id in broker_ids:
            found[row.broker_order_id] = row.id
        elif row.broker_order_id is None and row.client_order_id in coids:
            found[coids[row.client_order_id]] = row.id
    return found


def _stored(conn: Connection, order_ids: set[int], execution_ids: set[str],
            ) -> tuple[set[tuple[int, Decimal | None]], set[str], dict[int, Decimal]]:
    """The (order, cum_qty) keys and the execution ids of the fills rows these might duplicate,
    and per order the qty of its rows stored without cum_qty (before migration 0009): those were
    its first executions, so they are the ones whose cum_qty is at most that qty."""
    query = select(fills.c.order_id, fills.c.cum_qty, fills.c.execution_id, fills.c.qty).where(
        or_(fills.c.order_id.in_(order_ids), fills.c.execution_id.in_(execution_ids)))
    keys: set[tuple[int, Decimal | None]] = set()
    ids: set[str] = set()
    before: dict[int, Decimal] = {}
    for row in conn.execute(query):
        keys.add((row.order_id, quantity_key(row.cum_qty)))
        ids.add(row.execution_id)
        if row.cum_qty is None:
            before[row.order_id] = before.get(row.order_id, Decimal(0)) + row.qty
    return keys, ids, before
