"""The queries both the engine's store and the auditor's stories read a lifecycle with."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select

from engine.ledger.schema import fills, orders, transitions_table


def history_of(lifecycle_id: int) -> Select[Any]:
    return (select(transitions_table).where(transitions_table.c.lifecycle_id == lifecycle_id)
            .order_by(transitions_table.c.seq))


def orders_of(lifecycle_id: int) -> Select[Any]:
    return select(orders).where(orders.c.lifecycle_id == lifecycle_id).order_by(orders.c.id)


def fills_of(lifecycle_id: int) -> Select[Any]:
    return (select(fills, orders.c.client_order_id, orders.c.leg)
            .join(orders, orders.c.id == fills.c.order_id)
            .where(orders.c.lifecycle_id == lifecycle_id)
            .order_by(fills.c.at, fills.c.id))
