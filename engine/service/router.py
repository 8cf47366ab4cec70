"""Which lifecycle and leg a client order id belongs to, what was intended under it, and the last
status heard of it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from decimal import Decimal
from typing import Any

from engine.core.domain import Leg, Side, client_order_id
from engine.core.lifecycle import Lifecycle
from engine.core.orders import OrderIntent
from engine.ledger.orders import ID_TAKEN, INTENDED, NOT_SENT

Route = tuple[int, Leg]


def intent_of(row: dict[str, Any]) -> OrderIntent:
    """An `orders` row as the intent it recorded (what a resumed engine sends, if it must)."""
    return OrderIntent(row["client_order_id"], Leg(row["leg"]), Side(row["side"]), row["order_type"],
                       row["time_in_force"], row["qty"], limit_price=row["limit_price"],
                       stop_price=row["stop_price"], extended_hours=row["extended_hours"])


class Router:
    def __init__(self) -> None:
        self._routes: dict[str, Route] = {}
        self._coids: dict[Route, str] = {}  # the newest client order id of each leg
        self._intents: dict[str, OrderIntent] = {}
        self._seen: dict[str, tuple[str, Decimal]] = {}  # last (status, filled qty) per client order id
        self._disowned: set[str] = set()

    def route(self, lifecycle_id: int, leg: Leg, coid: str) -> None:
        self._routes[coid] = (lifecycle_id, leg)
        self._coids[(lifecycle_id, leg)] = coid

    def intend(self, lifecycle_id: int, intent: OrderIntent) -> None:
        self.route(lifecycle_id, intent.leg, intent.client_order_id)
        self._intents[intent.client_order_id] = intent

    def register(self, lc: Lifecycle, ledger_id: str, rows: Iterable[dict[str, Any]] = ()) -> None:
        """A lifecycle's entry route, and the orders the ledger holds for it (on resume). The rows
        are the truth: a lifecycle recorded before the ledger had an identity keeps the ids its
        orders were placed under."""
        rows = list(rows)
        if not any(row["leg"] == Leg.ENTRY.value for row in rows):
            self.route(lc.id, Leg.ENTRY, client_order_id(ledger_id, lc.signal_id, Leg.ENTRY))
        for row in rows:
            working = self._coids.get((lc.id, Leg(row["leg"])))
            self.intend(lc.id, intent_of(row))
            if row["status"] == NOT_SENT and working is not None:  # reprice: a replacement never made
                self._coids[(lc.id, Leg(row["leg"]))] = working  # leaves the order it was to replace working
            self.saw(row["client_order_id"], row["status"], row["filled_qty"])
            if row["status"] == ID_TAKEN:
                self.disown(row["client_order_id"])

    def coid(self, lifecycle_id: int, leg: Leg) -> str | None:
        return self._coids.get((lifecycle_id, leg))

    def intent(self, lifecycle_id: int, leg: Leg) -> OrderIntent:
        coid = self._coids[(lifecycle_id, leg)]
        return self._intents[coid]

    def knows(self, coid: str) -> bool:
        return coid in self._routes

    def disown(self, coid: str) -> None:
        """The id is held at the broker by an order its intent did not make: that order's news is
        not ours (an order under our prefix the ledger never placed, like any orphan)."""
        self._disowned.add(coid)

    def saw(self, coid: str, status: str, filled_qty: Decimal) -> Decimal:
        """Note the order's latest news; returns how much its filled quantity grew since the last."""
        before = self._seen.get(coid, ("", Decimal(0)))[1]
        self._seen[coid] = (status, filled_qty)
        return filled_qty - before

    def is_news(self, coid: str, status: str, filled_qty: Decimal) -> bool:
        return self._seen.get(coid) != (status, filled_qty)

    def unacknowledged(self, coid: str) -> bool:
        """Recorded, and the broker has not been heard to hold it."""
        return self._seen.get(coid, ("",))[0] == INTENDED

    async def find(self, coid: str, ask_ledger: Callable[[str], Awaitable[dict[str, Any] | None]]) -> Route | None:
        if coid in self._disowned:
            return None
        # An exit leg's id is the broker's; its first event can beat the reply that tells us it.
        for _ in range(40):
            if coid in self._routes:
                return self._routes[coid]
            await asyncio.sleep(0.05)
        row = await ask_ledger(coid)
        if row is None or row["status"] == ID_TAKEN:  # another order's id: its news is not ours
            return None
        return row["lifecycle_id"], Leg(row["leg"])
