"""Account activities of type FILL: one record per execution, as GET /v2/account/activities lists them.

Alpaca's trade activity id is "<date>::<uuid>", the date part being the transaction time in New
York wall time to the millisecond ("20190524113406977" for 2019-05-24T15:34:06.977Z in the docs'
example). The venue puts the execution's `execution_id` (the one its `fill`/`partial_fill`
trade update carries) in the uuid part, so a client can match an activity to its trade update
by `id.split("::")[1]`; Alpaca does not document what its uuid part is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

from engine.sim import errors
from engine.sim.orders import SimOrder
from engine.sim.sessions import ET
from engine.sim.wire import iso, num

Direction = Literal["asc", "desc"]
MAX_PAGE_SIZE = 100  # Alpaca: default and maximum when no `date` is given


@dataclass(frozen=True)
class FillActivity:
    seq: int  # the venue's execution order; breaks ties within one millisecond
    execution_id: UUID
    transaction_time: datetime
    type: str  # "fill" | "partial_fill"
    order_id: UUID
    symbol: str
    side: str
    price: Decimal
    qty: Decimal
    cum_qty: Decimal
    leaves_qty: Decimal
    order_status: str

    @property
    def id(self) -> str:
        local = self.transaction_time.astimezone(ET)
        return f"{local:%Y%m%d%H%M%S}{local.microsecond // 1000:03d}::{self.execution_id}"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "activity_type": "FILL",
            "transaction_time": iso(self.transaction_time),
            "type": self.type,
            "price": num(self.price),
            "qty": num(self.qty),
            "side": self.side,
            "symbol": self.symbol,
            "leaves_qty": num(self.leaves_qty),
            "order_id": str(self.order_id),
            "cum_qty": num(self.cum_qty),
            "order_status": self.order_status,
        }


class ActivityLog:
    def __init__(self) -> None:
        self.fills: list[FillActivity] = []  # in execution order
        self._by_id: dict[str, int] = {}

    def record(self, order: SimOrder, execution_id: UUID, price: Decimal, qty: Decimal, at: datetime) -> FillActivity:
        """Book one execution of `order`, which already counts it in `filled_qty` and `status`."""
        activity = FillActivity(
            seq=len(self.fills), execution_id=execution_id, transaction_time=at,
            type="fill" if order.status == "filled" else "partial_fill", order_id=order.id, symbol=order.symbol,
            side=order.side, price=price, qty=qty, cum_qty=order.filled_qty,
            leaves_qty=max(order.remaining, Decimal(0)) if order.qty is not None else Decimal(0),
            order_status=order.status)
        self._by_id[activity.id] = activity.seq
        self.fills.append(activity)
        return activity

    def query(self, *, on: date | None = None, after: datetime | None = None, until: datetime | None = None,
              direction: Direction = "desc", page_size: int | None = None,
              page_token: str | None = None) -> list[FillActivity]:
        """Alpaca's paging: with `desc` a page ends before the `page_token` activity, with `asc` it
        begins right after it. Without `date` a page holds at most 100 entries (the default too);
        with `date` the default is all of that day's."""
        if on is not None and (after is not None or until is not None):
            raise errors.invalid("date cannot be used with after or until")
        if page_size is not None and page_size < 1:
            raise errors.invalid("page_size must be >= 1")
        if on is None:
            page_size = min(page_size or MAX_PAGE_SIZE, MAX_PAGE_SIZE)
        chosen = [a for a in self.fills
                  if (on is None or a.transaction_time.astimezone(ET).date() == on)
                  and (after is None or a.transaction_time > after)
                  and (until is None or a.transaction_time < until)]
        if direction == "desc":
            chosen.reverse()
        if page_token:
            token_seq = self._by_id.get(page_token)
            if token_seq is None:
                raise errors.invalid("invalid page_token")
            chosen = [a for a in chosen if (a.seq < token_seq if direction == "desc" else a.seq > token_seq)]
        return chosen if page_size is None else chosen[:page_size]
