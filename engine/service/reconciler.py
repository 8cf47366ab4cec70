"""REST is the truth: resume after a restart, catch up after a reconnect or a mute stream, flag
orphans, and the poller that notices a stream gone quiet.

Recovery of N lifecycles lists the broker's orders in pages of 500 (one call per page instead of
one per lifecycle, which at Alpaca's rate limit costs minutes per thousand) and falls back to
single look-ups only for what the listing cannot settle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from engine.broker.port import BrokerAmbiguous, BrokerOrder
from engine.broker.ratelimit import Priority
from engine.core import closing, decisions
from engine.core.decisions import WAITING
from engine.core.domain import CLIENT_ORDER_ID_PREFIX, Leg, ledger_prefix
from engine.core.errors import ReconcileFailed
from engine.core.lifecycle import Lifecycle, State
from engine.core.orders import Kind
from engine.core.polling import PollPolicy
from engine.service import activities
from engine.service.conductor import Conductor
from engine.service.timers import VERIFY
from engine.service.translate import held_of, orphan_of, report_of

log = logging.getLogger("smartexec")
BULK_PAGE = 500  # Alpaca's largest page
# A failed listing is tried again before falling back to one look-up per lifecycle.
LISTING_TRIES = 3
# A reconcile listing starts this long before the oldest instant it must cover (clock skew).
LISTING_MARGIN = timedelta(minutes=1)
Snapshot = dict[str, BrokerOrder]


class Reconciler:
    def __init__(self, conductor: Conductor, policy: PollPolicy, *, clock: Callable[[], datetime],
                 monotonic: Callable[[], float]) -> None:
        self.c = conductor
        self.policy = policy
        self._now = clock
        self._monotonic = monotonic
        # Orders under our prefix placed since this instant have not been checked for orphans yet.
        self._scanned_to = clock()
        self._foreign: set[str] = set()  # other ledgers' orders already reported (once each)
        # Lifecycles a running reconcile (the resume's among them) is bringing up to date: the
        # poller leaves them to it. A second listing while the first is still paced by the rate
        # limiter doubled the resume's REST reads at 50,000 (issue 16).
        self._covered: Counter[int] = Counter()

    # --- restart ---------------------------------------------------------------------------------

    async def resume(self, *, strict: bool = False) -> None:
        """Pick up every lifecycle a previous run left unfinished: the ledger says what was
        intended, one bulk listing says what the broker did meanwhile. `strict` (a takeover): any
        part that fails raises ReconcileFailed instead of being left to the next reconcile."""
        persist, ledger = self.c.workers.persist, self.c.ledger
        open_lifecycles = await persist(ledger.load_open)
        last = await persist(ledger.last_activity)
        if last is not None:  # orders placed under our prefix while no engine ran are looked for too
            self._scanned_to = min(self._scanned_to, last)
        with self._covering(open_lifecycles):  # from the moment they are in the book
            self._register(open_lifecycles, await persist(ledger.orders_of_open))
            if open_lifecycles:
                log.info("resuming %d open lifecycles", len(open_lifecycles))
            await self.reconcile(open_lifecycles, strict=strict)
        for lc in open_lifecycles:
            if lc.state is State.CANCEL_REQUESTED:
                # Its verification died with the last process, and a crash right after the commit
                # leaves the cancel unsent: verifying finds the entry still working and cancels it.
                self.c.timers.schedule(lc.id, VERIFY, 0.0)
            moves = lc.break_even or lc.trail_pct is not None
            if moves and lc.state is State.EXITS_PLACED and self.c.move_stop is not None:
                self.c.workers.spawn(self._resume_stop(lc.id))

    def _register(self, open_lifecycles: list[Lifecycle], order_rows: list[dict[str, Any]]) -> None:
        """The resumed lifecycles in the book and their orders in the router. The rows are
        dropped here (the caller passes them in, keeping no name for them): the router keeps the
        few values it needs, not the rows."""
        rows: defaultdict[int, list[dict[str, Any]]] = defaultdict(list)
        for row in order_rows:
            rows[row["lifecycle_id"]].append(row)
        order_rows.clear()
        for lc in open_lifecycles:
            self.c.book.put(lc)
            self.c.router.register(lc, self.c.ledger_id, rows.pop(lc.id, ()))

    @contextlib.contextmanager
    def _covering(self, lifecycles: list[Lifecycle]) -> Iterator[None]:
        ids = [lc.id for lc in lifecycles]
        self._covered.update(ids)
        try:
            yield
        finally:
            self._covered.subtract(ids)
            for lifecycle_id in ids:
                if self._covered[lifecycle_id] <= 0:
                    del self._covered[lifecycle_id]
            if not self._covered:  # a dict never shrinks: the resume's 50,000 slots are let go
                self._covered = Counter()

    def covered(self, lifecycle_id: int) -> bool:
        """Whether a running reconcile is bringing this lifecycle up to date."""
        return self._covered.get(lifecycle_id, 0) > 0

    async def _resume_stop(self, lifecycle_id: int) -> None:
        """A broker-held pair whose stop moves (break-even, trailing): watched for quotes again, and
        a move the last run recorded (STOP_MOVED, or the new leg's id) but never sent is sent now;
        the broker's stop already at the lifecycle's level is left alone."""
        async with self.c.book.lock(lifecycle_id):
            lc = self.c.book.open.get(lifecycle_id)
            if lc is None or lc.state is not State.EXITS_PLACED or self.c.move_stop is None:
                return
            self.c.moved(lc)
            lc = await self.c.move_stop(lc)
            self.c.moved(lc)

    # --- catching up -------------------------------------------------------------------------------

    async def reconcile(self, lifecycles: list[Lifecycle], *, strict: bool = False) -> None:
        """Bring lifecycles up to date with the broker (after a restart, a reconnect, a mute stream),
        and flag orders under our prefix that the ledger never intended, even with nothing open."""
        with self._covering(lifecycles):
            await self._reconcile(lifecycles, strict=strict)

    async def _reconcile(self, lifecycles: list[Lifecycle], *, strict: bool) -> None:
        started = self._now()
        since = min([self._scanned_to, *(lc.created_at for lc in lifecycles)]) - LISTING_MARGIN
        snapshot = await self.listing(since)
        if strict and snapshot is None:
            raise ReconcileFailed("the bulk order listing failed")
        if snapshot is not None:
            self._scanned_to = started
            await self.c.workers.guarded(self._flag_orphans(snapshot))
            heard = self._monotonic()  # the listing is news: the poller need not list them again soon
            for lc in lifecycles:
                self.c.book.heard(lc.id, heard)
        # Executions whose events were lost get their fills rows (engine/service/activities.py).
        await activities.recover_lost_executions(self.c, since=since, listed=snapshot, margin=LISTING_MARGIN,
                                                 strict=strict)
        # All at once (each under its own lock): a lifecycle waiting for a rate-limit token to place
        # its exits must not hold up the thousands behind it.
        if not strict:
            await asyncio.gather(*(self.c.workers.guarded(self._catch_up(lc.id, snapshot)) for lc in lifecycles))
            return
        failures = [(lc, outcome) for lc, outcome in zip(lifecycles, await asyncio.gather(
            *(self._catch_up(lc.id, snapshot) for lc in lifecycles), return_exceptions=True))
            if isinstance(outcome, BaseException)]
        if failures:
            lc, failure = failures[0]
            raise ReconcileFailed(f"{len(failures)} lifecycle(s) could not be caught up, the first "
                                  f"{lc.id} ({lc.signal_id}): {type(failure).__name__}: {failure}") from failure

    async def listing(self, since: datetime) -> Snapshot | None:
        """Every order at the broker submitted after `since`, by client order id. None if the
        listing failed."""
        found: Snapshot = {}
        after = since
        while True:
            for attempt in range(1, LISTING_TRIES + 1):
                try:
                    page = await self.c.workers.call(Priority.QUERY, self.c.broker.list_orders, after=after,
                                                     limit=BULK_PAGE)
                    break
                except BrokerAmbiguous as exc:
                    if attempt == LISTING_TRIES:
                        log.warning("bulk order listing failed %d times (%s); falling back to single look-ups",
                                    attempt, exc)
                        return None
                    await asyncio.sleep(0.5 * attempt)
            for order in page:
                for one in (order, *order.legs):
                    found[one.client_order_id] = one
            stamps = [o.submitted_at for o in page if o.submitted_at is not None]
            if len(page) < BULK_PAGE or not stamps or max(stamps) <= after:
                return found
            after = max(stamps) - timedelta(microseconds=1)  # same-instant orders: re-read, de-duplicated

    async def lookup(self, lc: Lifecycle, leg: Leg, snapshot: Snapshot | None) -> BrokerOrder | None:
        coid = self.c.router.coid(lc.id, leg)
        if coid is None:
            return None
        if snapshot is not None and (coid in snapshot or self.c.router.unacknowledged(coid)):
            return snapshot.get(coid)
        # Not in the listing although the broker may hold it (a broker clock behind ours, an order
        # placed this run and never reported): ambiguous, so it is asked for alone. An intent never
        # acknowledged is left to the resend, whose duplicate-id answer looks it up anyway.
        try:
            return await self.c.workers.call(Priority.QUERY, self.c.broker.get_order, client_order_id=coid)
        except BrokerAmbiguous as exc:
            log.warning("look-up of %s failed: %s", coid, exc)
            return None

    async def apply(self, lc: Lifecycle, leg: Leg, order: BrokerOrder) -> Lifecycle:
        """A looked-up order, applied only if it says something new."""
        if not self.c.router.is_news(order.client_order_id, order.status, order.filled_qty) and \
                not closing.unrecorded_fill(lc, leg, order.filled_qty):
            return lc
        self.c.book.heard(lc.id)
        return await self.c.on_report(lc, leg, report_of(order), source="reconcile")

    async def _catch_up(self, lifecycle_id: int, snapshot: Snapshot | None) -> None:
        async with self.c.book.lock(lifecycle_id):
            lc = self.c.book.open.get(lifecycle_id)
            if lc is None:
                return
            if lc.state is State.PENDING:
                order = await self.lookup(lc, Leg.ENTRY, snapshot)
                taken = None if order is None else await self._taken(lc, order)
                if taken is not None:
                    await self.c.refuse_taken(lc, self.c.router.intent(lc.id, Leg.ENTRY), taken)
                elif order is not None:
                    await self.c.on_report(lc, Leg.ENTRY, report_of(order), source="reconcile")
                else:
                    decision = decisions.resume_pending(lc, self._now(), self.c.settings)
                    if decision.trigger is None:
                        log.info("entry of %s never reached the broker; the signal is %.1fs old, sending it now",
                                 lc.signal_id, (self._now() - lc.created_at).total_seconds())
                    await self.c.carry_out(lc, decision, source="reconcile")
            elif lc.state is State.REJECTED:
                order = await self.lookup(lc, Leg.FLATTEN, snapshot)
                if order is not None and order.kind is not Kind.DONE:
                    await self.apply(lc, Leg.FLATTEN, order)
                else:
                    await self.c.place(lc, Leg.FLATTEN)
            elif lc.state in WAITING:
                found = [(leg, await self.lookup(lc, leg, snapshot)) for leg in WAITING[lc.state]]
                # A leg that filled first: the exit pair's other leg, cancelled by the broker for
                # it, would otherwise read as protection lost.
                found.sort(key=lambda pair: pair[1] is None or pair[1].filled_qty <= 0)
                for leg, order in found:
                    if order is not None and lc.state in WAITING:
                        lc = await self.apply(lc, leg, order)
                if lc.state is State.EMULATED_EXIT:
                    if all(order is None for _, order in found):
                        lc = await self.c.place(lc, Leg.EXIT)  # intended, never reached the broker
                    self.c.follow(lc.id, self.c.settings.exit_reprice_after)
                self.c.timers.arm(lc)
            else:
                await self.c.carry_out(lc, decisions.catch_up(lc, self.c.settings, ledger_id=self.c.ledger_id))

    async def _taken(self, lc: Lifecycle, order: BrokerOrder) -> str | None:
        """Why the order found under a never-acknowledged entry's id is not the one it intended."""
        intent = self.c.router.intent(lc.id, Leg.ENTRY)
        return decisions.not_intended(intent, lc.symbol, await self.c.recorded_at(intent), held_of(order))

    async def on_verify(self, lifecycle_id: int) -> None:
        """After a cancel: REST tells whether the entry was canceled (or filled) without news."""
        async with self.c.book.lock(lifecycle_id):
            lc = self.c.book.open.get(lifecycle_id)
            if lc is None:
                return
            order = await self.lookup(lc, Leg.ENTRY, None)
            if order is not None:
                lc = await self.apply(lc, Leg.ENTRY, order)
            if lc.state is not State.CANCEL_REQUESTED:
                return
            if decisions.cancel_again(lc, None if order is None else order.kind):
                assert order is not None
                log.warning("entry of %s still %s after its cancel; cancelling again", lc.signal_id, order.status)
                await self.c.cancel_entry(lc)  # schedules the next verification itself
            else:
                self.c.timers.schedule(lc.id, VERIFY, self.c.verify_after)

    # --- orphans -----------------------------------------------------------------------------------

    async def _flag_orphans(self, snapshot: Snapshot) -> None:
        # Our own orders are recorded (intent committed) before they are sent, so an order listed
        # here that the ledger does not know was never placed by an engine on this ledger.
        unknown = [coid for coid in snapshot
                   if coid.startswith(CLIENT_ORDER_ID_PREFIX) and not self.c.router.knows(coid)]
        for coid in sorted(await self.c.workers.persist(self.c.ledger.unknown_orders, unknown)):
            await self.unknown_order(snapshot[coid], via="reconcile")

    async def unknown_order(self, order: BrokerOrder, *, via: str) -> None:
        """An order under `sx-` that this ledger never intended: an orphan if it carries this
        ledger's prefix, else another ledger's order on the same account, which is left alone
        and not recorded (said once, at INFO)."""
        if order.client_order_id.startswith(ledger_prefix(self.c.ledger_id)):
            await self.flag_orphan(order, via=via)
        elif order.client_order_id not in self._foreign:
            self._foreign.add(order.client_order_id)
            log.info("order %s (%s %s %s) is another ledger's (this ledger's orders are under %s): left alone",
                     order.client_order_id, order.side.value, order.qty, order.symbol,
                     ledger_prefix(self.c.ledger_id))

    async def flag_orphan(self, order: BrokerOrder, *, via: str) -> None:
        """Record an order under our prefix that the ledger never intended, and say so loudly.

        It is never cancelled, closed or adopted. With no lifecycle behind it the engine knows
        neither the signal nor the risk it was meant to carry: it may be a person's deliberate
        order, another engine's on another ledger, or the trace of a lost ledger. Acting on a
        guess could close a position someone else manages, or double an exit. A person decides."""
        news = await self.c.workers.persist(self.c.ledger.record_orphan, orphan_of(order), via=via, at=self._now())
        if news == "new":
            log.warning("orphan order %s (%s %s %s %s, %s, filled %s) carries this engine's prefix but the ledger "
                        "never placed it: recorded in orphan_orders, left alone for a person to resolve",
                        order.client_order_id, order.side.value, order.qty, order.symbol, order.order_type,
                        order.status, order.filled_qty)
        elif news == "changed":
            log.warning("orphan order %s is now %s, filled %s at %s (left alone)", order.client_order_id,
                        order.status, order.filled_qty, order.filled_avg_price)

    # --- the poller --------------------------------------------------------------------------------

    async def poll(self) -> None:
        """The websocket can go mute without dropping: look up lifecycles that had no news."""
        while True:
            await asyncio.sleep(self.policy.tick)
            now = self._monotonic()
            # Not what a running reconcile covers: its listing is already the look-up.
            quiet = [lc for lc in self.c.book.open.values()
                     if self.policy.due(lc.state, self.c.book.last_news(lc.id), now) and not self.covered(lc.id)]
            if quiet:
                await self.c.workers.guarded(self.reconcile(quiet))
