"""Carries out re-pricing of an unfilled entry (engine/core/repricing.py; SMART_EXECUTOR_REPRICE_ENTRIES).

A timer per resting smart entry reads the latest quote, asks the core whether to re-price, commits
ENTRY_REPRICED with the replacement's intent (entry attempt n + 1), and only then asks the broker
to replace the working entry order with it (PATCH /v2/orders/{id}: a new order under the new
client order id; the old one goes pending_replace, then replaced).

The races, and what this module does about each:

- The old order filled first: the replace is refused (422). The replacement's row is marked
  NOT_SENT, the old order is the working entry again, and its look-up (or the stream's fill)
  drives FILLED as it always did.
- The old order filled in part before the replace took effect: the venue sizes the replacement at
  what was left, and the old order's fills stay its own. The old order is looked up once it is
  final and its fills count as the entry's (conductor hook `entry_report`: the lifecycle's filled
  quantity is the sum over every entry order), so the lifecycle never holds more than the signal's
  quantity and never forgets the part the old order bought.
- pending_replace / replaced on the old order are Kind.INFO and move nothing; the new order's
  `new` is a stale SUBMITTED in LIMIT_SUBMITTED (the fill timeout keeps running from the first
  submission); its fills fill the lifecycle.
- A crash between the commit and the PATCH, or between the PATCH and the commit of its answer:
  `resume` finds the replacement intended but unacknowledged and looks it up; found, it is the
  working entry; not found, the PATCH is sent again only if the old order still works (so there is
  never a second working entry), and otherwise the replacement is marked NOT_SENT.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from engine.broker.port import BrokerAmbiguous, BrokerNotFound, BrokerOrder, BrokerRejected
from engine.broker.ratelimit import Priority
from engine.core import repricing
from engine.core.decisions import NOTHING, attempt_of
from engine.core.domain import Leg
from engine.core.lifecycle import Lifecycle, State
from engine.core.orders import Kind, OrderIntent, OrderReport, OrderUpdate
from engine.core.quotes import QuoteRead
from engine.ledger import Writes
from engine.ledger.orders import INTENDED, NOT_SENT
from engine.service.conductor import Conductor
from engine.service.crash import crash_point
from engine.service.router import intent_of
from engine.service.timers import REPRICE
from engine.service.translate import report_of

log = logging.getLogger("smartexec")
ReadQuote = Callable[[str], Awaitable[QuoteRead | None]]
RESOLVE_TRIES = 5  # look-ups after an ambiguous replace before it is left to the next start
# States in which an entry order may still be working, so its earlier attempts are worth a look-up.
_ENTRY_WORKING = (State.LIMIT_SUBMITTED, State.PARTIALLY_FILLED, State.CANCEL_REQUESTED)


class Repricer:
    def __init__(self, conductor: Conductor, read_quote: ReadQuote, *, has_market_data: bool,
                 clock: Callable[[], datetime]) -> None:
        self.c = conductor
        self._read_quote = read_quote
        self._now = clock
        # Re-pricing never prices blind: without a market-data source it stays off (said at start).
        self.active = repricing.enabled(conductor.settings) and has_market_data
        self._next: dict[int, datetime] = {}  # the one re-price check pending per lifecycle

    @classmethod
    def install(cls, conductor: Conductor, read_quote: ReadQuote, *, has_market_data: bool,
                clock: Callable[[], datetime]) -> Repricer:
        """A repricer wired into the conductor's two hooks (`entry_report`, `armed`)."""
        repricer = cls(conductor, read_quote, has_market_data=has_market_data, clock=clock)
        conductor.entry_report = repricer.entry_report
        conductor.armed = repricer.arm
        return repricer

    def forget(self, lifecycle_id: int) -> None:
        """A finished lifecycle's pending check is void."""
        self._next.pop(lifecycle_id, None)

    # --- the timer -----------------------------------------------------------------------------

    def arm(self, lc: Lifecycle) -> None:
        """Called wherever the fill timeout is armed: look at a resting smart entry after
        REPRICE_AFTER (the check itself works out when it is really due, from the ledger)."""
        if not self.active or lc.state is not State.LIMIT_SUBMITTED or lc.id in self._next:
            return
        self._schedule(lc.id, self._now() + timedelta(seconds=self.c.settings.reprice_after))

    def _schedule(self, lifecycle_id: int, at: datetime) -> None:
        self._next[lifecycle_id] = at
        self.c.timers.schedule(lifecycle_id, REPRICE, max(0.0, (at - self._now()).total_seconds()))

    async def on_timer(self, lifecycle_id: int) -> None:
        due = self._next.get(lifecycle_id)
        if due is None or self._now() < due:
            return  # superseded by a later check (Timers cannot cancel): that one will run
        del self._next[lifecycle_id]
        seen = self.c.book.open.get(lifecycle_id)
        if seen is None or seen.state is not State.LIMIT_SUBMITTED:
            return
        # Read before taking the lock: the quote's round trip must not hold up the order's news.
        read = await self._read_quote(seen.symbol)
        async with self.c.book.lock(lifecycle_id):
            lc = self.c.book.open.get(lifecycle_id)
            if lc is None or lc.state is not State.LIMIT_SUBMITTED:
                return
            current = await self.working(lc)
            if current is None:  # the broker has not told its id yet: look again later
                self.arm(lc)
                return
            outcome = repricing.decide(lc, current, read, self._now(), self.c.settings, ledger_id=self.c.ledger_id)
            if outcome.decision == NOTHING:
                if outcome.why is not None:
                    log.info("entry of %s not re-priced: %s", lc.signal_id, outcome.why)
                if outcome.again_at is not None:
                    self._schedule(lc.id, outcome.again_at)
                return
            [intent] = outcome.decision.intents
            log.info("re-pricing the entry of %s from %s to %s (%s -> %s)", lc.signal_id, current.limit_price,
                     intent.limit_price, current.client_order_id, intent.client_order_id)
            lc = await self.c.carry_out(lc, outcome.decision, source="timer")  # persist, then act
            await self.replace(lc, current.client_order_id, intent)

    async def working(self, lc: Lifecycle) -> repricing.WorkingEntry | None:
        """The entry order now working (None: none is known to the broker yet)."""
        coid = self.c.router.coid(lc.id, Leg.ENTRY)
        rows = [row for row in await self.c.workers.persist(self.c.ledger.orders_of, lc.id)
                if row["leg"] == Leg.ENTRY.value]
        row = next((r for r in rows if r["client_order_id"] == coid), None)
        if row is None or row["broker_order_id"] is None or row["limit_price"] is None:
            return None
        # The next attempt follows the highest one recorded, a replacement never made included:
        # its client order id is taken in the ledger.
        attempts = max(attempt_of(r["client_order_id"], Leg.ENTRY) for r in rows)
        return repricing.WorkingEntry(row["client_order_id"], attempts, row["limit_price"], row["created_at"])

    # --- the replace ----------------------------------------------------------------------------

    async def replace(self, lc: Lifecycle, old_coid: str, intent: OrderIntent) -> Lifecycle:
        """Replace the working entry `old_coid` with the committed `intent` and apply the answer."""
        old = await self.c.workers.persist(self.c.ledger.order, old_coid)
        assert old is not None and old["broker_order_id"] is not None
        try:
            # No qty: the venue sizes the replacement at what the old order has left, so a fill
            # that races the replace can never make the entry buy more than the signal's qty.
            order = await self.c.workers.call(
                Priority.ENTRY, self.c.broker.replace, broker_order_id=old["broker_order_id"],
                client_order_id=intent.client_order_id, limit_price=intent.limit_price)
        except (BrokerRejected, BrokerNotFound) as exc:
            return await self.refused(lc, old_coid, intent, str(exc))
        except BrokerAmbiguous as exc:
            log.warning("replace of %s ambiguous (%s); looking it up", old_coid, exc)
            try:
                found = await self._resolve(old_coid, intent.client_order_id)
            except BrokerAmbiguous as unresolved:
                log.error("%s; the next start resolves it", unresolved)
                return lc
            if found is None:
                return await self._unmade(lc, old_coid, intent, f"the replace of {old_coid} was not made")
            order = found
        crash_point("after_entry_replace")
        return await self._made(lc, old_coid, order)

    async def _made(self, lc: Lifecycle, old_coid: str, order: BrokerOrder) -> Lifecycle:
        # The old order first: it is final now, and what it filled must count before the
        # replacement's own news (a fill at once, at a marketable limit) is read.
        lc = await self._apply_found(lc, old_coid)
        lc = await self.c.on_report(lc, Leg.ENTRY, report_of(order), source="engine")
        held = await self.filled_by_others(lc.id, order.client_order_id)
        excess = repricing.overfill(lc.qty, held, order.qty)
        if excess > 0 and not order.final:
            # A venue that sized the replacement at the old order's full qty (Alpaca-API #165):
            # never hold more than the signal asked for. The cancel ends the entry with what filled.
            log.error("the replacement %s of %s works %s shares with %s already filled: %s more than the "
                      "signal's %s; cancelling it", order.client_order_id, lc.signal_id, order.qty, held, excess,
                      lc.qty)
            await self.c.cancel_entry(lc)
        else:
            self.arm(lc)
        return lc

    async def refused(self, lc: Lifecycle, old_coid: str, intent: OrderIntent, reason: str) -> Lifecycle:
        """The broker refused the replace: usually the old order filled (or is pending) first."""
        log.info("replace of the entry of %s refused (%s); the working entry stays %s", lc.signal_id, reason,
                 old_coid)
        return await self._unmade(lc, old_coid, intent, reason)

    async def _unmade(self, lc: Lifecycle, old_coid: str, intent: OrderIntent, reason: str) -> Lifecycle:
        """The replacement does not exist: its row says so (NOT_SENT, final), the old order is the
        working entry again, and its look-up tells what became of it (filled, most often)."""
        self.c.router.route(lc.id, Leg.ENTRY, old_coid)
        self.c.router.saw(intent.client_order_id, NOT_SENT, Decimal(0))
        await self.c.workers.persist(self.c.ledger.save_orders, lc.id,
                                     Writes(updates=[OrderUpdate(intent.client_order_id, NOT_SENT, final=True)]),
                                     at=self._now())
        log.info("replacement %s of %s marked %s: %s", intent.client_order_id, lc.signal_id, NOT_SENT, reason)
        lc = await self._apply_found(lc, old_coid)
        self.arm(lc)
        return lc

    async def _resolve(self, old_coid: str, coid: str) -> BrokerOrder | None:
        """After an ambiguous replace: the replacement if it was made, None if it was not. The old
        order tells which: still working, the replace did not happen; replaced, the replacement
        exists and is looked for again (a listing may lag the PATCH by a moment)."""
        for attempt in range(1, RESOLVE_TRIES + 1):
            found = await self._look_up(coid)
            if found is not None:
                return found
            old = await self._look_up(old_coid)
            if old is not None and not old.final:
                return None
            await asyncio.sleep(0.2 * attempt)
        # Neither found nor known to be absent: left intended, which the next start resolves the same way.
        raise BrokerAmbiguous(f"the replace of {old_coid} by {coid} could not be resolved")

    async def _look_up(self, coid: str) -> BrokerOrder | None:
        try:
            return await self.c.workers.call(Priority.QUERY, self.c.broker.get_order, client_order_id=coid)
        except BrokerAmbiguous as exc:
            log.warning("look-up of %s failed: %s", coid, exc)
            return None

    async def _apply_found(self, lc: Lifecycle, coid: str) -> Lifecycle:
        found = await self._look_up(coid)
        if found is None or lc.terminal:
            return lc
        return await self.c.on_report(lc, Leg.ENTRY, report_of(found), source="reconcile")

    # --- the entry's fills over all its orders (the conductor's `entry_report` hook) ---------------------

    async def filled_by_others(self, lifecycle_id: int, coid: str) -> Decimal:
        rows = await self._other_entries(lifecycle_id, coid)
        return sum((row["filled_qty"] for row in rows), Decimal(0))

    async def _other_entries(self, lifecycle_id: int, coid: str) -> list[dict[str, Any]]:
        return [row for row in await self.c.workers.persist(self.c.ledger.orders_of, lifecycle_id)
                if row["leg"] == Leg.ENTRY.value and row["client_order_id"] != coid]

    async def entry_report(self, lc: Lifecycle, report: OrderReport) -> OrderReport:
        """An entry order's report as the lifecycle reads it: quantities over every entry order.

        Only a lifecycle that was re-priced has more than one; the others pass unchanged, with no
        ledger read. A replaced order's `pending_replace` or `replaced` (INFO) that carries fills no
        event told of is read as the partial fill it is. Before the entry settles (a fill or the
        end of the working order), an earlier order whose end the ledger never heard (its look-up
        after the replace failed, its events were lost) is looked up: its fills are the entry's."""
        coid = report.update.client_order_id
        current = self.c.router.coid(lc.id, Leg.ENTRY)
        if attempt_of(coid, Leg.ENTRY) == 1 and (current is None or attempt_of(current, Leg.ENTRY) == 1):
            return report
        others = await self._other_entries(lc.id, coid)
        if report.kind in (Kind.FILL, Kind.DONE):
            others = [await self._ended(lc, row) for row in others]
        total = repricing.entry_total(report, [(row["filled_qty"], row["filled_avg_price"]) for row in others])
        if total.kind is Kind.INFO and total.filled_qty > lc.filled_qty:
            total = OrderReport(Kind.PARTIAL_FILL, total.update, total.execution, total.submitted_at)
        return total

    async def _ended(self, lc: Lifecycle, row: dict[str, Any]) -> dict[str, Any]:
        """An earlier entry order's row, looked up first if the ledger never heard how it ended."""
        if row["final"] or row["status"] in (INTENDED, NOT_SENT):
            return row
        found = await self._look_up(row["client_order_id"])
        if found is None:
            return row
        seen = report_of(found)
        self.c.heard(seen)
        await self.c.workers.persist(self.c.ledger.save_orders, lc.id, Writes(updates=[seen.update]), at=self._now())
        return {**row, "filled_qty": max(row["filled_qty"], found.filled_qty),
                "filled_avg_price": found.filled_avg_price if found.filled_qty >= row["filled_qty"]
                else row["filled_avg_price"]}

    # --- after a restart ------------------------------------------------------------------------------

    async def resume(self) -> None:
        """What a crash left of a re-price: for each open entry with more than one order, the
        earlier orders' final fills are read, and a replacement recorded but never acknowledged is
        resolved (found: the working entry; not found: sent again only while the old order works)."""
        rows: dict[int, list[dict[str, Any]]] = {}
        for row in await self.c.workers.persist(self.c.ledger.orders_of_open):
            if row["leg"] == Leg.ENTRY.value:
                rows.setdefault(row["lifecycle_id"], []).append(row)
        for lifecycle_id, entries in rows.items():
            lc = self.c.book.open.get(lifecycle_id)
            if lc is None:
                continue
            if len(entries) > 1:
                await self.c.workers.guarded(self._recover(lifecycle_id, entries))
            lc = self.c.book.open.get(lifecycle_id)
            if lc is not None:
                self.arm(lc)

    async def _recover(self, lifecycle_id: int, entries: list[dict[str, Any]]) -> None:
        async with self.c.book.lock(lifecycle_id):
            lc = self.c.book.open.get(lifecycle_id)
            if lc is None:
                return
            newest = entries[-1]
            pending = newest["status"] == INTENDED
            sent = [r for r in entries[:-1] if r["status"] != NOT_SENT]
            # Earlier orders no one saw end (a crash after the replace): their fills are the entry's,
            # and their rows must say how they ended, whatever the lifecycle has done since.
            for row in entries[:-1]:
                if not row["final"] and row["status"] != NOT_SENT:
                    lc = await self._apply_found(lc, row["client_order_id"])
            if not pending or not sent:
                return
            intent = intent_of(newest)
            old_coid = sent[-1]["client_order_id"]
            found = await self._look_up(intent.client_order_id)
            if found is not None:  # the replace was made; its answer was not recorded
                log.info("replacement %s of %s found at the broker", intent.client_order_id, lc.signal_id)
                await self._made(lc, old_coid, found)
                return
            old = await self._look_up(old_coid)
            if old is not None and not old.final and lc.state is State.LIMIT_SUBMITTED:
                log.info("replacement %s of %s never reached the broker; replacing %s now", intent.client_order_id,
                         lc.signal_id, old_coid)
                await self.replace(lc, old_coid, intent)
            else:
                await self._unmade(lc, old_coid, intent, "the replace never reached the broker and the entry it "
                                   "was to replace no longer works")
