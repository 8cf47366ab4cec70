"""Which lifecycle and leg a client order id belongs to, what was intended under it, and the last
status heard of it.

Compact (issue 16): one slotted record per client order id and one per lifecycle, rather than a
tuple and a dictionary entry in each of four maps; both go when the lifecycle has finished
(`forget`, after the executor's linger), so a long-running engine holds only what it drives."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Iterable
from decimal import Decimal
from typing import Any

from engine.core.domain import Leg, Side, client_order_id
from engine.core.lifecycle import Lifecycle
from engine.core.orders import OrderIntent
from engine.ledger.orders import ID_TAKEN, INTENDED, NOT_SENT
from engine.ledger.schema import shared_decimal

Route = tuple[int, Leg]
_ZERO = Decimal(0)
STRAYS = 4096  # statuses kept for ids no lifecycle routes (late news of a forgotten one): the newest


def intent_of(row: dict[str, Any]) -> OrderIntent:
    """An `orders` row as the intent it recorded (what a resumed engine sends, if it must). Its
    repeated words are interned: thousands of resumed intents hold one
    "limit", one "day" (the ledger's Money type already shares its Decimals)."""
    return OrderIntent(row["client_order_id"], Leg(row["leg"]), Side(row["side"]), sys.intern(row["order_type"]),
                       sys.intern(row["time_in_force"]), row["qty"], limit_price=row["limit_price"],
                       stop_price=row["stop_price"], extended_hours=row["extended_hours"])


class _Order:
    """What the router knows of one client order id."""

    __slots__ = ("filled", "intent", "leg", "lifecycle_id", "status")

    def __init__(self, lifecycle_id: int, leg: Leg) -> None:
        self.lifecycle_id = lifecycle_id
        self.leg = leg
        self.intent: OrderIntent | None = None
        self.status = ""  # "": no news yet
        self.filled = _ZERO


class _Legs:
    """A lifecycle's newest client order id per leg (attributes named by `Leg.value`), and the ids
    they replaced (re-priced entries, earlier exit pairs), so that `forget` finds every one."""

    __slots__ = ("entry", "exit", "flatten", "older", "stop", "take_profit")

    def __init__(self) -> None:
        self.entry: str | None = None
        self.take_profit: str | None = None
        self.stop: str | None = None
        self.flatten: str | None = None
        self.exit: str | None = None
        self.older: list[str] | None = None


class Router:
    def __init__(self) -> None:
        self._orders: dict[str, _Order] = {}
        self._legs: dict[int, _Legs] = {}
        self._strays: dict[str, tuple[str, Decimal]] = {}  # last (status, filled qty) of unrouted ids
        self._disowned: set[str] = set()

    def route(self, lifecycle_id: int, leg: Leg, coid: str) -> None:
        order = self._orders.get(coid)
        if order is None:
            order = self._orders[coid] = _Order(lifecycle_id, leg)
            seen = self._strays.pop(coid, None)
            if seen is not None:
                order.status, order.filled = seen
        else:
            order.lifecycle_id, order.leg = lifecycle_id, leg
        legs = self._legs.get(lifecycle_id)
        if legs is None:
            legs = self._legs[lifecycle_id] = _Legs()
        newest = getattr(legs, leg.value)
        if newest is not None and newest != coid:
            if legs.older is None:
                legs.older = []
            legs.older.append(newest)
        setattr(legs, leg.value, coid)

    def intend(self, lifecycle_id: int, intent: OrderIntent) -> None:
        self.route(lifecycle_id, intent.leg, intent.client_order_id)
        self._orders[intent.client_order_id].intent = intent

    def register(self, lc: Lifecycle, ledger_id: str, rows: Iterable[dict[str, Any]] = ()) -> None:
        """A lifecycle's entry route, and the orders the ledger holds for it (on resume). The rows
        are the truth: a lifecycle recorded before the ledger had an identity keeps the ids its
        orders were placed under."""
        rows = list(rows)
        if not any(row["leg"] == Leg.ENTRY.value for row in rows):
            self.route(lc.id, Leg.ENTRY, client_order_id(ledger_id, lc.signal_id, Leg.ENTRY))
        for row in rows:
            leg = Leg(row["leg"])
            working = self.coid(lc.id, leg)
            self.intend(lc.id, intent_of(row))
            if row["status"] == NOT_SENT and working is not None:  # reprice: a replacement never made
                legs = self._legs[lc.id]  # leaves the order it was to replace working
                setattr(legs, leg.value, working)
                legs.older = [*(coid for coid in legs.older or () if coid != working), row["client_order_id"]]
            self.saw(row["client_order_id"], row["status"], row["filled_qty"])
            if row["status"] == ID_TAKEN:
                self.disown(row["client_order_id"])

    def coid(self, lifecycle_id: int, leg: Leg) -> str | None:
        legs = self._legs.get(lifecycle_id)
        return None if legs is None else getattr(legs, leg.value)

    def intent(self, lifecycle_id: int, leg: Leg) -> OrderIntent:
        coid = self.coid(lifecycle_id, leg)
        intent = None if coid is None else self._orders[coid].intent
        if intent is None:
            raise KeyError((lifecycle_id, leg))
        return intent

    def knows(self, coid: str) -> bool:
        return coid in self._orders

    def disown(self, coid: str) -> None:
        """The id is held at the broker by an order its intent did not make: that order's news is
        not ours (an order under our prefix the ledger never placed, like any orphan)."""
        self._disowned.add(coid)

    def saw(self, coid: str, status: str, filled_qty: Decimal) -> Decimal:
        """Note the order's latest news; returns how much its filled quantity grew since the last."""
        status, filled_qty = sys.intern(status), shared_decimal(filled_qty)
        order = self._orders.get(coid)
        if order is None:
            before = self._strays.pop(coid, ("", _ZERO))[1]
            self._strays[coid] = (status, filled_qty)
            while len(self._strays) > STRAYS:
                del self._strays[next(iter(self._strays))]
            return filled_qty - before
        before = order.filled
        order.status, order.filled = status, filled_qty
        return filled_qty - before

    def _seen(self, coid: str) -> tuple[str, Decimal] | None:
        order = self._orders.get(coid)
        if order is None:
            return self._strays.get(coid)
        return None if not order.status else (order.status, order.filled)

    def is_news(self, coid: str, status: str, filled_qty: Decimal) -> bool:
        return self._seen(coid) != (status, filled_qty)

    def unacknowledged(self, coid: str) -> bool:
        """Recorded, and the broker has not been heard to hold it."""
        seen = self._seen(coid)
        return seen is not None and seen[0] == INTENDED

    def forget(self, lifecycle_id: int) -> None:
        """A finished lifecycle: its ids and intents are the ledger's alone from now on (late news
        of its orders is routed by a ledger look-up, `find`)."""
        legs = self._legs.pop(lifecycle_id, None)
        if legs is None:
            return
        for coid in (legs.entry, legs.take_profit, legs.stop, legs.flatten, legs.exit, *(legs.older or ())):
            if coid is not None:
                order = self._orders.get(coid)
                if order is not None and order.lifecycle_id == lifecycle_id:
                    del self._orders[coid]
                self._disowned.discard(coid)

    def tracked(self) -> tuple[int, int]:
        """(lifecycles, client order ids) the router holds (for tests and benchmarks)."""
        return len(self._legs), len(self._orders)

    async def find(self, coid: str, ask_ledger: Callable[[str], Awaitable[dict[str, Any] | None]]) -> Route | None:
        if coid in self._disowned:
            return None
        # An exit leg's id is the broker's; its first event can beat the reply that tells us it.
        for _ in range(40):
            order = self._orders.get(coid)
            if order is not None:
                return order.lifecycle_id, order.leg
            await asyncio.sleep(0.05)
        row = await ask_ledger(coid)
        if row is None or row["status"] == ID_TAKEN:  # another order's id: its news is not ours
            return None
        return row["lifecycle_id"], Leg(row["leg"])
