"""REST is the truth: resume after a restart, catch up after a reconnect or a mute stream, flag
orphans, and the poller that notices a stream gone quiet.

Recovery of N lifecycles lists the broker's orders in pages of 500 (one call per page instead of
one per lifecycle, which at Alpaca's rate limit costs minutes per thousand) and falls back to
single look-ups only for what the listing cannot settle. The listing is paced by the rate limiter
(a page every 0.4 s at 150/min), so the catch-up of a lifecycle whose orders a page has settled
starts while the next page waits for its token: at 50,000 the ledger writes of the catch-up hide
in the listing's pacing instead of following it (issue 16). Its broker calls wait for the
reconcile's own reads, as when the catch-up began only after them: a page finds up to 500
lifecycles' news, an exit placed before it would only make it later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

from engine.broker.port import BrokerAmbiguous, BrokerOrder
from engine.broker.ratelimit import Priority
from engine.core import closing, decisions
from engine.core.decisions import WAITING, deadline_due
from engine.core.domain import CLIENT_ORDER_ID_PREFIX, Leg, ledger_prefix
from engine.core.errors import ReconcileFailed
from engine.core.lifecycle import Lifecycle, State
from engine.core.orders import Kind
from engine.core.polling import PollPolicy
from engine.service import activities
from engine.service.conductor import Conductor
from engine.service.router import Router
from engine.service.timers import VERIFY
from engine.service.translate import held_of, orphan_of, report_of
from engine.service.workers import hold

log = logging.getLogger("smartexec")
BULK_PAGE = 500  # Alpaca's largest page
# A failed listing is tried again before falling back to one look-up per lifecycle.
LISTING_TRIES = 3
# A reconcile listing starts this long before the oldest instant it must cover (clock skew).
LISTING_MARGIN = timedelta(minutes=1)
Snapshot = dict[str, BrokerOrder]
REGISTER_CHUNK = 1000  # resumed lifecycles registered between two turns of the event loop
# The states whose catch-up may start before the listing has ended: each waits on orders the
# listing shows (a working entry, a broker-held exit pair) and, once they are listed, needs nothing
# else from it. PENDING (an entry perhaps never acknowledged: absent from a page read so far may
# mean "on a later page") and the flatten and emulated exit (whose catch-up may place an order or
# arm a re-price at once) wait for the whole listing, as before.
AHEAD = frozenset({State.LIMIT_SUBMITTED, State.PARTIALLY_FILLED, State.CANCEL_REQUESTED, State.EXITS_PLACED})


class Ahead:
    """Which lifecycles' catch-up can start while the listing still pages: those in an AHEAD state
    whose every waited-on order a page read so far has settled (no later page can show it again),
    and whose fill timeout is not already past (re-armed, it fires at once, and its cancel would
    take a token before the listing's next page). The rest are caught up once the listing ends."""

    def __init__(self, lifecycles: Iterable[Lifecycle], router: Router, now: datetime) -> None:
        self._of: dict[str, int] = {}  # waited-on client order id -> its lifecycle's id
        self._missing: dict[int, int] = {}  # lifecycle id -> its orders no page has settled yet
        for lc in lifecycles:
            if lc.state not in AHEAD:
                continue
            due = deadline_due(lc)
            coids = [router.coid(lc.id, leg) for leg in WAITING[lc.state]]
            if (due is not None and due <= now) or None in coids:
                continue
            for coid in coids:
                assert coid is not None
                self._of[coid] = lc.id
            self._missing[lc.id] = len(coids)

    def settled(self, coids: Iterable[str]) -> list[int]:
        """The lifecycles whose last waited-on order is among `coids` (each returned once)."""
        ready = []
        for coid in coids:
            lifecycle_id = self._of.pop(coid, None)
            if lifecycle_id is None:
                continue
            self._missing[lifecycle_id] -= 1
            if not self._missing[lifecycle_id]:
                del self._missing[lifecycle_id]
                ready.append(lifecycle_id)
        return ready


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
        self.ahead = 0  # catch-ups started while their reconcile's listing still paged (for benchmarks, tests)

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
        if open_lifecycles:
            log.info("resuming %d open lifecycles", len(open_lifecycles))
        with self._covering(open_lifecycles):  # from the moment they are in the book
            # Their orders are loaded and registered while the listing's first pages are read: at
            # 50,000 that takes seconds, for which the rate limiter's full bucket would wait unused.
            registered = asyncio.ensure_future(self._registered(open_lifecycles))
            try:
                await self._reconcile(open_lifecycles, strict=strict, registered=registered)
            finally:
                registered.cancel()  # done already, unless the reconcile failed first
                await asyncio.gather(registered, return_exceptions=True)
        for lc in open_lifecycles:
            if lc.state is State.CANCEL_REQUESTED:
                # Its verification died with the last process, and a crash right after the commit
                # leaves the cancel unsent: verifying finds the entry still working and cancels it.
                self.c.timers.schedule(lc.id, VERIFY, 0.0)
            moves = lc.break_even or lc.trail_pct is not None
            if moves and lc.state is State.EXITS_PLACED and self.c.move_stop is not None:
                self.c.workers.spawn(self._resume_stop(lc.id))

    async def _registered(self, open_lifecycles: list[Lifecycle]) -> None:
        await self._register(open_lifecycles, await self.c.workers.persist(self.c.ledger.orders_of_open))

    async def _register(self, open_lifecycles: list[Lifecycle], order_rows: list[dict[str, Any]]) -> None:
        """The resumed lifecycles in the book and their orders in the router. The rows are
        dropped here (the caller passes them in, keeping no name for them): the router keeps the
        few values it needs, not the rows. A thousand at a time: the listing runs meanwhile."""
        rows: defaultdict[int, list[dict[str, Any]]] = defaultdict(list)
        for row in order_rows:
            rows[row["lifecycle_id"]].append(row)
        order_rows.clear()
        for i, lc in enumerate(open_lifecycles, 1):
            self.c.book.put(lc)
            self.c.router.register(lc, self.c.ledger_id, rows.pop(lc.id, ()))
            if not i % REGISTER_CHUNK:
                await asyncio.sleep(0)

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

    async def _reconcile(self, lifecycles: list[Lifecycle], *, strict: bool,
                         registered: asyncio.Future[None] | None = None) -> None:
        """`registered`: the lifecycles' orders are still being registered (a resume); until
        then the ids the pages settle are kept, and their catch-ups start once it is done."""
        started = self._now()
        since = min([self._scanned_to, *(lc.created_at for lc in lifecycles)]) - LISTING_MARGIN
        reads = asyncio.Event()  # set once this reconcile's own reads (listing, activities) are made
        early: dict[int, asyncio.Future[None]] = {}
        ahead: Ahead | None = None
        found: Snapshot = {}
        kept: list[str] = []  # settled before the orders were registered

        def page_read(listed: Snapshot, settled: list[str]) -> None:
            nonlocal ahead, found
            if reads.is_set():  # too late: the reconcile has failed, or moved on without them
                return
            found = listed
            if ahead is None:
                kept.extend(settled)
                if registered is not None and not registered.done():
                    return
                ahead = Ahead(lifecycles, self.c.router, started)
                settled = kept
            for lifecycle_id in ahead.settled(settled):
                work = self._catch_up_as(lifecycle_id, listed, strict)
                early[lifecycle_id] = asyncio.ensure_future(self._after(reads, work))
                self.ahead += 1

        if registered is not None:
            registered.add_done_callback(lambda done: None if done.cancelled() or done.exception() is not None
                                         else page_read(found, []))
        try:
            snapshot = await self.listing(since, on_page=page_read)
            if registered is not None:
                await registered  # before the orphans (the router must know our orders) and the rest
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
        except BaseException:
            for task in early.values():  # their broker calls would otherwise wait for reads never made
                task.cancel()
            await asyncio.gather(*early.values(), return_exceptions=True)
            raise
        finally:
            reads.set()
        # All at once (each under its own lock): a lifecycle waiting for a rate-limit token to place
        # its exits must not hold up the thousands behind it.
        outcomes = await asyncio.gather(*(self._catch_up_as(lc.id, snapshot, strict) if lc.id not in early
                                          else early.pop(lc.id) for lc in lifecycles), return_exceptions=strict)
        failures = [(lc, outcome) for lc, outcome in zip(lifecycles, outcomes) if isinstance(outcome, BaseException)]
        if failures:
            lc, failure = failures[0]
            raise ReconcileFailed(f"{len(failures)} lifecycle(s) could not be caught up, the first "
                                  f"{lc.id} ({lc.signal_id}): {type(failure).__name__}: {failure}") from failure

    async def _catch_up_as(self, lifecycle_id: int, snapshot: Snapshot | None, strict: bool) -> None:
        """Strict (a takeover): a failure is the caller's to report; else it is logged and the
        next reconcile tries again."""
        if strict:
            await self._catch_up(lifecycle_id, snapshot)
        else:
            await self.c.workers.guarded(self._catch_up(lifecycle_id, snapshot))

    @staticmethod
    async def _after(reads: asyncio.Event, work: Awaitable[None]) -> None:
        """`work`, whose broker calls (and those of any task it starts) wait for `reads`."""
        hold.set(reads)  # this task's own context: the listing's calls are not held
        await work

    async def listing(self, since: datetime, *,
                      on_page: Callable[[Snapshot, list[str]], None] | None = None) -> Snapshot | None:
        """Every order at the broker submitted after `since`, by client order id. None if the
        listing failed. `on_page`, after each page, is given the orders found so far and the ids
        that page settled: no later page shows them again (the orders at a page's last instant are
        read again by the next, which starts just before it)."""
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
            last = len(page) < BULK_PAGE or not stamps or max(stamps) <= after
            if not last:
                after = max(stamps) - timedelta(microseconds=1)  # same-instant orders: re-read, de-duplicated
            if on_page is not None:
                on_page(found, [one.client_order_id for order in page
                                if last or order.submitted_at is None or order.submitted_at <= after
                                for one in (order, *order.legs)])
            if last:
                return found

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
