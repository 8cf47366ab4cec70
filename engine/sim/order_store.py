"""Every order the venue holds, legs included, with the look-ups and the listing the REST API serves."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from uuid import UUID, uuid4

from engine.sim import errors
from engine.sim.orders import SimOrder


class OrderStore:
    def __init__(self) -> None:
        self.orders: list[SimOrder] = []  # in creation order
        self.by_id: dict[UUID, SimOrder] = {}
        self.by_client_id: dict[str, SimOrder] = {}

    def add(self, order: SimOrder) -> None:
        self.orders.append(order)
        self.by_id[order.id] = order
        self.by_client_id[order.client_order_id] = order

    def client_id_for(self, requested: str | None) -> str:
        """The client_order_id a new order gets: the requested one, which must be unused, or a fresh one."""
        client_order_id = requested or str(uuid4())
        if client_order_id in self.by_client_id:
            raise errors.invalid("client_order_id must be unique")
        return client_order_id

    def get(self, order_id: UUID | str) -> SimOrder:
        try:
            key = order_id if isinstance(order_id, UUID) else UUID(str(order_id))
        except ValueError:
            raise errors.not_found("order not found") from None
        order = self.by_id.get(key)
        if order is None:
            raise errors.not_found("order not found")
        return order

    def by_client(self, client_order_id: str) -> SimOrder:
        order = self.by_client_id.get(client_order_id)
        if order is None:
            raise errors.not_found("order not found")
        return order

    def working(self, symbol: str) -> list[SimOrder]:
        """The open orders of `symbol` that take part in matching now, oldest first."""
        return [o for o in self.orders if o.symbol == symbol and o.working and o.is_open]

    def query(self, *, status: str = "open", after: datetime | None = None, until: datetime | None = None,
              limit: int = 50, direction: str = "desc", nested: bool = False,
              symbols: Iterable[str] | None = None, side: str | None = None) -> list[SimOrder]:
        wanted = {s.upper() for s in symbols} if symbols else None
        selected = []
        for order in self.orders:
            if nested and order.is_leg:
                continue
            if (status == "open" and not order.is_open) or (status == "closed" and order.is_open):
                continue
            if wanted is not None and order.symbol not in wanted:
                continue
            if side is not None and order.side != side:
                continue
            if after is not None and order.submitted_at <= after:
                continue
            if until is not None and order.submitted_at >= until:
                continue
            selected.append(order)
        selected.sort(key=lambda o: (o.submitted_at, o.seq), reverse=direction == "desc")
        return selected[:limit]
