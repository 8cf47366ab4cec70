"""Orders as the fake holds them, with their legs and OCO groups, and the blotter that keeps them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import uuid4

from engine.broker.alpaca import FINAL_STATUSES, KINDS, STOP_TYPES
from engine.broker.fake.refusals import invalid
from engine.broker.fake.request import Request
from engine.broker.port import BrokerOrder
from engine.core.domain import Side

ZERO = Decimal(0)
AVERAGE_PLACES = Decimal("0.000000001")  # Alpaca reports average prices to 9 decimals
MAX_PAGE = 500  # Alpaca lists at most 500 orders per request
MICROSECOND = timedelta(microseconds=1)
# What ends an order inside the fake: the adapter's final statuses (done_for_day is not one; the
# order trades again at the next open).
CLOSED = FINAL_STATUSES


def plain(value: Decimal) -> Decimal:
    """A decimal as Alpaca writes it: no exponent, no trailing zeros."""
    return Decimal(format(value.normalize(), "f"))


@dataclass(eq=False)
class FakeOrder:
    id: str
    client_order_id: str
    symbol: str
    side: Side
    order_type: str
    order_class: str
    time_in_force: str
    extended_hours: bool
    qty: Decimal
    limit_price: Decimal | None
    stop_price: Decimal | None
    submitted_at: datetime
    seq: int
    status: str = "pending_new"
    filled_qty: Decimal = ZERO
    filled_value: Decimal = ZERO  # sum of price x qty over executions, for the average
    legs: list[FakeOrder] = field(default_factory=list)
    parent: FakeOrder | None = None
    group: list[FakeOrder] | None = None  # orders that cancel each other: an OCO pair
    working: bool = False  # takes part in matching (a stop leg works while it shows `held`)
    triggered: bool = False
    cancel_held: bool = False  # a cancel request waits in pending_cancel; fills still land
    replaces: str | None = None  # the id of the order this one replaced
    trail_percent: Decimal | None = None  # a trailing stop's trail, and the best price it has seen
    hwm: Decimal | None = None

    @property
    def is_open(self) -> bool:
        return self.status not in CLOSED

    @property
    def remaining(self) -> Decimal:
        return self.qty - self.filled_qty

    @property
    def is_stop_type(self) -> bool:
        return self.order_type in STOP_TYPES

    def family(self) -> list[FakeOrder]:
        return [self, *self.legs]

    def snapshot(self) -> BrokerOrder:
        average = (self.filled_value / self.filled_qty).quantize(AVERAGE_PLACES) if self.filled_qty else None
        return BrokerOrder(
            client_order_id=self.client_order_id,
            broker_order_id=self.id,
            symbol=self.symbol,
            side=self.side,
            order_type=self.order_type,
            order_class=self.order_class,
            status=self.status,
            kind=KINDS[self.status],
            final=self.status in FINAL_STATUSES,
            qty=plain(self.qty),
            filled_qty=plain(self.filled_qty),
            filled_avg_price=None if average is None else plain(average),
            limit_price=None if self.limit_price is None else plain(self.limit_price),
            stop_price=None if self.stop_price is None else plain(self.stop_price),
            legs=tuple(leg.snapshot() for leg in self.legs),
            submitted_at=self.submitted_at,
            is_stop=self.is_stop_type,
            trail_percent=None if self.trail_percent is None else plain(self.trail_percent),
            hwm=None if self.hwm is None else plain(self.hwm),
        )


class Blotter:
    """Every order taken, legs included, in creation order; the caller holds the broker's lock."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self._orders: list[FakeOrder] = []
        self._by_id: dict[str, FakeOrder] = {}
        self._by_client_id: dict[str, FakeOrder] = {}
        self._last_stamp: datetime | None = None
        self._seq = 0

    def __len__(self) -> int:
        return len(self._orders)

    def __iter__(self) -> Iterator[FakeOrder]:
        return iter(self._orders)

    def find(self, client_order_id: str) -> FakeOrder | None:
        return self._by_client_id.get(client_order_id)

    def get(self, broker_order_id: str) -> FakeOrder | None:
        return self._by_id.get(broker_order_id)

    def place(self, client_order_id: str, r: Request) -> FakeOrder:
        order = self._new(client_order_id, r, r.order_type, limit_price=r.limit_price, stop_price=None)
        if r.order_class == "oco":
            # Alpaca's OCO: the take-profit limit is the parent, the stop its leg, held while it
            # watches its price; the leg's client id is the venue's to choose.
            stop = self._new(str(uuid4()), r, "stop", limit_price=None, stop_price=r.stop_price)
            stop.parent = order
            stop.status = "held"
            order.legs = [stop]
            order.group = stop.group = [order, stop]
        return order

    def replacement(self, old: FakeOrder, client_order_id: str, qty: Decimal, limit_price: Decimal | None,
                    stop_price: Decimal | None) -> FakeOrder:
        """The order that replaces `old`: its type, side and time in force, the given prices (None
        keeps the old one's), and the old order's place among its parent, siblings and legs."""
        r = Request(old.symbol, old.side, qty, old.order_type, old.time_in_force, order_class=old.order_class,
                    extended_hours=old.extended_hours)
        new = self._new(client_order_id, r, old.order_type,
                        limit_price=limit_price if limit_price is not None else old.limit_price,
                        stop_price=stop_price if stop_price is not None else old.stop_price)
        new.replaces = old.id
        new.trail_percent, new.hwm = old.trail_percent, old.hwm
        # A triggered stop stays triggered unless the replace moved its stop price.
        new.triggered = old.triggered and stop_price is None
        new.parent = old.parent
        if old.parent is not None:
            old.parent.legs = [new if leg is old else leg for leg in old.parent.legs]
        new.group = old.group
        if old.group is not None:
            old.group[old.group.index(old)] = new
        new.legs, old.legs = old.legs, []
        for leg in new.legs:
            leg.parent = new
        return new

    def page(self, after: datetime, limit: int) -> list[BrokerOrder]:
        """The orders submitted after `after`, oldest first, at most one of Alpaca's pages."""
        if limit < 1:
            raise invalid("limit must be >= 1")
        since = after if after.tzinfo is not None else after.replace(tzinfo=UTC)  # as the SDK sends naive times
        # Nested, as the adapter asks: legs appear under their parent only.
        selected = [o for o in self._orders if o.parent is None and o.submitted_at > since]
        selected.sort(key=lambda o: (o.submitted_at, o.seq))
        return [o.snapshot() for o in selected[:min(limit, MAX_PAGE)]]

    def _new(self, client_order_id: str, r: Request, order_type: str, *, limit_price: Decimal | None,
             stop_price: Decimal | None) -> FakeOrder:
        self._seq += 1
        order = FakeOrder(id=str(uuid4()), client_order_id=client_order_id, symbol=r.symbol, side=r.side,
                          order_type=order_type, order_class=r.order_class, time_in_force=r.time_in_force,
                          extended_hours=r.extended_hours, qty=r.qty, limit_price=limit_price,
                          stop_price=stop_price, submitted_at=self._stamp(), seq=self._seq,
                          trail_percent=r.trail_percent)
        self._orders.append(order)
        self._by_id[order.id] = order
        self._by_client_id[client_order_id] = order
        return order

    def _stamp(self) -> datetime:
        # Strictly increasing even on a stopped clock, so clients can page with `after`.
        now = self._clock()
        stamp = now if self._last_stamp is None else max(now, self._last_stamp + MICROSECOND)
        self._last_stamp = stamp
        return stamp
