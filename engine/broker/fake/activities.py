"""The account's fill activities: one record per execution, paged as Alpaca pages them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from engine.broker.alpaca import EXECUTION_KINDS
from engine.broker.fake.orders import FakeOrder, plain
from engine.broker.fake.refusals import invalid
from engine.broker.port import MAX_ACTIVITY_PAGE, BrokerExecution

MICROSECOND = timedelta(microseconds=1)
NEW_YORK = ZoneInfo("America/New_York")


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)  # naive is UTC, as the SDK sends it


class Activities:
    """Every execution, oldest first; the caller holds the broker's lock."""

    def __init__(self) -> None:
        self._log: list[BrokerExecution] = []
        self._last: datetime | None = None

    def record(self, order: FakeOrder, execution_id: str, price: Decimal, qty: Decimal,
               at: datetime) -> BrokerExecution:
        """The execution of `qty` at `price` just made on `order` (whose fields already count it)."""
        # Strictly increasing even on a stopped clock, so that `after` can exclude an execution.
        at = _utc(at) if self._last is None else max(_utc(at), self._last + MICROSECOND)
        self._last = at
        local = at.astimezone(NEW_YORK)
        word = "fill" if order.remaining <= 0 else "partial_fill"
        execution = BrokerExecution(
            # Alpaca's "<date>::<uuid>", the date in New York wall time to the millisecond (as in its
            # docs' example). The uuid is the stream event's execution_id, as at the venue; Alpaca
            # does not say what its uuid is, so nothing may rely on that: match by the key.
            activity_id=f"{local:%Y%m%d%H%M%S}{local.microsecond // 1000:03d}::{execution_id}",
            broker_order_id=order.id, symbol=order.symbol, side=order.side, qty=plain(qty), price=plain(price),
            at=at, cum_qty=plain(order.filled_qty), leaves_qty=plain(order.remaining), order_status=order.status,
            kind=EXECUTION_KINDS[word],
        )
        self._log.append(execution)
        return execution

    def on(self, day: date) -> list[BrokerExecution]:
        """One New York day's executions, all of them (Alpaca's `date`: no page limit)."""
        return [e for e in self._log if e.at.astimezone(NEW_YORK).date() == day]

    def page(self, after: datetime, until: datetime | None, page_token: str | None,
             page_size: int) -> list[BrokerExecution]:
        """Alpaca's paging with direction=asc: after `after`, before `until`, starting right after
        the activity `page_token`, at most `page_size` (which may not exceed 100)."""
        if page_size < 1:
            raise invalid("page_size must be >= 1")
        start = 0
        if page_token is not None:
            ids = [e.activity_id for e in self._log]
            if page_token not in ids:
                raise invalid(f"invalid page_token {page_token!r}")
            start = ids.index(page_token) + 1
        selected = [e for e in self._log[start:] if e.at > _utc(after) and (until is None or e.at < _utc(until))]
        return selected[:min(page_size, MAX_ACTIVITY_PAGE)]
