"""A `trade_updates` message, frozen when it happens so later changes to the order don't leak in."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from engine.sim.wire import iso, num


@dataclass(frozen=True)
class TradeEvent:
    event: str
    at: datetime
    order: dict[str, Any]  # the order's wire form at the moment of the event
    execution_id: str | None = None
    price: Decimal | None = None
    qty: Decimal | None = None
    position_qty: Decimal | None = None

    @property
    def symbol(self) -> str:
        return str(self.order.get("symbol") or "")

    @property
    def client_order_id(self) -> str:
        return str(self.order.get("client_order_id") or "")

    def data(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "execution_id": self.execution_id,
            "order": self.order,
            "timestamp": iso(self.at),
            "price": num(self.price),
            "qty": num(self.qty),
            "position_qty": num(self.position_qty),
        }

    def message(self) -> dict[str, Any]:
        return {"stream": "trade_updates", "data": self.data()}

    def frame(self) -> bytes:
        return json.dumps(self.message(), separators=(",", ":")).encode()
