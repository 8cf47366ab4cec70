"""Orphan orders: under this engine's prefix at the broker, never intended by this ledger."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from engine.core.domain import DEFAULT_ACCOUNT
from engine.ledger.orders import progress
from engine.ledger.records import OrphanOrder
from engine.ledger.schema import orders, orphan_orders
from engine.ledger.session import Store

News = Literal["new", "changed"] | None


class OrphanStore(Store):
    account: str = DEFAULT_ACCOUNT  # the broker account whose listing or stream showed it
    def unknown_orders(self, client_order_ids: Iterable[str]) -> set[str]:
        """The ids among `client_order_ids` that no `orders` row has."""
        wanted = set(client_order_ids)
        if not wanted:
            return set()
        query = select(orders.c.client_order_id).where(orders.c.client_order_id.in_(wanted))
        with self._read() as conn:
            return wanted - set(conn.execute(query).scalars())

    def record_orphan(self, order: OrphanOrder, *, via: str, at: datetime) -> News:
        """Record an orphan order, or bring its row up to date (by the same rules as an `orders`
        row). Says whether that is news: first seen, its status or filled quantity changed, or neither."""
        try:
            return self._upsert_orphan(order, via, at)
        except IntegrityError:  # another engine on this ledger recorded it first: now an update
            return self._upsert_orphan(order, via, at)

    def orphans(self) -> list[dict[str, Any]]:
        with self._read() as conn:
            return [dict(row) for row in conn.execute(select(orphan_orders).order_by(orphan_orders.c.id)).mappings()]

    def _upsert_orphan(self, order: OrphanOrder, via: str, at: datetime) -> News:
        where = orphan_orders.c.client_order_id == order.client_order_id
        news = order.update
        with self._writing(at) as (conn, journal):
            seen = select(orphan_orders.c.id, orphan_orders.c.status, orphan_orders.c.final,
                          orphan_orders.c.filled_qty, orphan_orders.c.filled_avg_price)
            current = conn.execute(seen.where(where)).first()
            if current is None:
                row = dict(
                    client_order_id=order.client_order_id, broker_order_id=order.broker_order_id,
                    symbol=order.symbol, side=order.side, order_type=order.order_type,
                    order_class=order.order_class, qty=order.qty, limit_price=order.limit_price,
                    stop_price=order.stop_price, status=news.status, final=news.final,
                    filled_qty=news.filled_qty, filled_avg_price=news.filled_avg_price,
                    submitted_at=order.submitted_at, seen_via=via, first_seen_at=at, updated_at=at,
                    account=self.account)
                row_id = conn.execute(insert(orphan_orders).values(row).returning(orphan_orders.c.id)).scalar_one()
                journal.inserted("orphan_orders", row_id, row)
                return "new"
            values = progress(current, news)
            if all(getattr(current, column) == value for column, value in values.items()):
                return None
            values["updated_at"] = at
            conn.execute(update(orphan_orders).where(orphan_orders.c.id == current.id).values(values))
            journal.updated("orphan_orders", current.id, values)
            return "changed"
