"""The protection check in `run`: every PROTECTION_INTERVAL, what the engine holds is compared with
what the broker's listing shows (engine.core.protection); a breach is logged at ERROR and repaired.

It catches what no event reported: a leg the broker cancelled or shrank, a stop that vanished, a
fill lost with its event, a lifecycle stuck between two steps. One bulk listing per check (the
reconciler's), so its cost is a page per 500 orders, whatever the number of lifecycles.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from engine.broker.port import BrokerOrder
from engine.core import closing, decisions, protection
from engine.core.domain import Leg
from engine.core.lifecycle import Lifecycle, State
from engine.core.protection import HeldExit
from engine.service.conductor import Conductor
from engine.service.reconciler import LISTING_MARGIN, Reconciler, Snapshot

log = logging.getLogger("smartexec")


def held_exit(order: BrokerOrder | None) -> HeldExit | None:
    if order is None:
        return None
    return HeldExit(order.client_order_id, order.status, order.final, order.qty, order.filled_qty)


class Protection:
    def __init__(self, conductor: Conductor, reconciler: Reconciler, *, clock: Callable[[], datetime],
                 interval: float) -> None:
        self.c = conductor
        self.reconciler = reconciler
        self._now = clock
        self.interval = interval

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except Exception:
                log.exception("the protection check failed; trying again at the next interval")

    def _holding(self) -> list[Lifecycle]:
        return [lc for lc in self.c.book.open.values()
                if decisions.remaining(lc) > 0 and (lc.state is State.EXITS_PLACED or lc.state in protection.IN_FLIGHT)]

    async def check(self) -> list[str]:
        """Check (and repair) every lifecycle holding shares; returns the breaches found."""
        holding = self._holding()
        if not holding:
            return []
        since = min(lc.created_at for lc in holding) - LISTING_MARGIN
        snapshot = await self.reconciler.listing(since)
        if snapshot is None:
            log.warning("protection check skipped: the broker's orders could not be listed")
            return []
        found = await asyncio.gather(*(self._check_one(lc.id, snapshot) for lc in holding), return_exceptions=True)
        for failure in (f for f in found if isinstance(f, BaseException)):
            log.error("the protection check of one lifecycle failed: %r", failure)
        return [why for why in found if isinstance(why, str)]

    async def _check_one(self, lifecycle_id: int, snapshot: Snapshot) -> str | None:
        async with self.c.book.lock(lifecycle_id):
            lc = self.c.book.open.get(lifecycle_id)
            if lc is None:
                return None
            legs = {leg: snapshot.get(coid) for leg in (Leg.TAKE_PROFIT, Leg.STOP)
                    if (coid := self.c.router.coid(lc.id, leg)) is not None}
            for leg, order in legs.items():  # a fill no event told of is news first, not a breach
                if order is not None and lc.state is State.EXITS_PLACED and \
                        closing.unrecorded_fill(lc, leg, order.filled_qty):
                    lc = await self.reconciler.apply(lc, leg, order)
            why = protection.breach(lc, held_exit(legs.get(Leg.TAKE_PROFIT)), held_exit(legs.get(Leg.STOP)),
                                    now=self._now())
            if why is None:
                return None
            if lc.state is State.EXITS_PLACED:
                await self.c.carry_out(lc, closing.protection_lost(lc, why), source="protection")
            else:
                log.error("PROTECTION BREACH %s: %s; driving it on", lc.signal_id, why)
                await self.c.carry_out(lc, decisions.catch_up(lc, self.c.settings, ledger_id=self.c.ledger_id),
                                       source="protection")
            return why
