"""`trade_updates` messages, frozen when they happen so later changes to the order don't leak in, and
the tape that records and publishes them."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from engine.sim import wire
from engine.sim.orders import SimOrder
from engine.sim.timeline import Timeline
from engine.sim.wire import iso, num

EVENT_LOG_SIZE = 100_000


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


class EventTape:
    """Every trade update the exchange produces, kept for inspection and handed to `publish`.

    `publish` is looked up on each event, so a benchmark may wrap it after construction.
    """

    def __init__(self, timeline: Timeline, publish: Callable[[TradeEvent], None] | None = None) -> None:
        self.timeline = timeline
        self.publish: Callable[[TradeEvent], None] = publish or (lambda event: None)
        # Bounded so a long-running standalone venue does not grow without limit.
        self.log: deque[TradeEvent] = deque(maxlen=EVENT_LOG_SIZE)

    def emit(self, name: str, order: SimOrder, *, execution_id: str | None = None, price: Decimal | None = None,
             qty: Decimal | None = None, position_qty: Decimal | None = None) -> None:
        event = TradeEvent(name, self.timeline.now, wire.order(order, nested=True), execution_id, price, qty,
                           position_qty)
        self.log.append(event)
        self.publish(event)
