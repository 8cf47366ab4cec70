"""Carries decisions out: load → decide (engine.core.decisions) → persist → act.

Every broker call follows the commit of the transition (and order intent) that implies it; its
outcome comes back as an order report — from the call's own reply, the stream or a look-up — and
all three take `on_report`. Callers hold the lifecycle's lock; every method returns the
lifecycle as last committed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from functools import partial

from engine.broker.port import Broker, BrokerAmbiguous, BrokerNotFound, BrokerOrder, BrokerRejected
from engine.broker.ratelimit import Priority
from engine.core import closing, decisions, emulation, risk
from engine.core.closing import LegFill
from engine.core.config import Settings
from engine.core.decisions import Decision, Then
from engine.core.domain import Leg
from engine.core.errors import IllegalTransition, StaleLifecycle
from engine.core.lifecycle import TERMINAL, Lifecycle, Outcome, State, Trigger, classify, step
from engine.core.orders import Kind, OrderIntent, OrderReport, Session
from engine.core.risk import TradingStateChange
from engine.ledger import FillRecord, Ledger, Writes
from engine.ledger.codec import storable
from engine.ledger.store import Step
from engine.service.book import Book
from engine.service.crash import AFTER_COMMIT, AFTER_SUBMIT, BEFORE_COMMIT, crash_point
from engine.service.router import Router
from engine.service.sender import IdTaken, Sender
from engine.service.timers import VERIFY, Timers
from engine.service.translate import id_taken, leg_intents, rejected, report_of
from engine.service.workers import Workers

log = logging.getLogger("smartexec")
FLATTEN_BACKOFF = 0.5  # seconds between flatten attempts
EXITS_FINAL_TRIES = 40  # look-ups, 0.25 s apart, for a cancelled exit pair to be final


async def _as_reported(_: Lifecycle, report: OrderReport) -> OrderReport:
    return report


class Conductor:
    def __init__(self, settings: Settings, ledger: Ledger, broker: Broker, *, workers: Workers, book: Book,
                 router: Router, sender: Sender, timers: Timers, clock: Callable[[], datetime],
                 verify_after: float) -> None:
        self.settings = settings
        self.ledger = ledger
        self.broker = broker
        self.workers = workers
        self.book = book
        self.router = router
        self.sender = sender
        self.timers = timers
        self.verify_after = verify_after
        self._now = clock
        self._ledger_id: str | None = None
        # The halt in force with --cancel-entries or --flatten (kept by the trading Desk): an entry
        # acknowledged after it was carried out is cancelled, a fill judged after it is flattened.
        self.halt: TradingStateChange | None = None
        self.fills_seen: Callable[[], None] = lambda: None  # a new execution moved cash: set by the Desk
        # An order filled more than its events told: its executions are read from the account's
        # activities soon (engine.service.activities.LostExecutions sets this).
        self.executions_missing: Callable[[str, str, Decimal, datetime, datetime], None] = lambda *_: None
        # Emulated protection (engine.service.emulator sets these when the engine has market data):
        # without it, protection is always the broker's pair, as before.
        self.can_emulate = False
        self.session: Session = Session.REGULAR  # the market's session as last read
        self.watch: Callable[[Lifecycle], Awaitable[None]] | None = None
        self.follow: Callable[[int, float], None] = lambda *_: None  # re-price the emulated exit after a delay
        self.move_stop: Callable[[Lifecycle], Awaitable[Lifecycle]] | None = None
        self.moved: Callable[[Lifecycle], None] = lambda _: None  # every committed move (the emulator's index)
        # Re-pricing (engine.service.repricer.Repricer sets both): an entry report read over every
        # entry order of the lifecycle, and its re-price check armed with the fill timeout.
        self.entry_report: Callable[[Lifecycle, OrderReport], Awaitable[OrderReport]] = _as_reported
        self.armed: Callable[[Lifecycle], None] = lambda _: None
        # Per open lifecycle, the orders whose ledger row this engine has written a broker report
        # to (with the broker's id): a later acknowledgement of one of them changes no decision
        # and is not committed on its own (`_ack_only`). Dropped when the lifecycle ends.
        self._acknowledged: dict[int, set[str]] = {}

    def emulates(self) -> bool:
        """Whether a position's protection is the engine's now (outside regular hours, with quotes)."""
        return self.can_emulate and not emulation.broker_holds(self.session)

    def now(self) -> datetime:
        """The engine's clock (the ledger's times, the timers')."""
        return self._now()

    @property
    def ledger_id(self) -> str:
        """The ledger's identity, in every client order id this engine places (loaded at start)."""
        assert self._ledger_id is not None, "the ledger identity is loaded by Executor.start"
        return self._ledger_id

    async def load_identity(self) -> str:
        if self._ledger_id is None:
            self._ledger_id = await self.workers.persist(self.ledger.identity)
        return self._ledger_id

    # --- persist ---------------------------------------------------------------------------------

    async def _record(self, lc: Lifecycle, decision: Decision, writes: Writes | None, source: str,
                      ) -> tuple[Lifecycle, Outcome]:
        assert decision.trigger is not None
        persist, record = self.workers.persist, self.ledger.record
        try:
            moved, outcome = await persist(record, lc, decision.trigger, decision.facts, at=self._now(),
                                           source=source, writes=writes)
        except StaleLifecycle:
            # Someone else moved it: take the ledger's word and try again from there.
            fresh = await persist(self.ledger.get, lc.id)
            assert fresh is not None
            lc = fresh
            moved, outcome = await persist(record, lc, decision.trigger, decision.facts, at=self._now(),
                                           source=source, writes=writes)
        self.book.put(moved)
        if outcome is Outcome.MOVED:
            self.moved(moved)
            log.info("lifecycle %s %s %s: %s -> %s (%s, %s)", lc.id, lc.signal_id, lc.symbol, lc.state.value,
                     moved.state.value, decision.trigger.value, source)
            await self.book.notify()
        return moved, outcome

    async def carry_out(self, lc: Lifecycle, decision: Decision, *, source: str = "engine",
                        writes: Writes | None = None) -> Lifecycle:
        """Record what `decision` says (with `writes`, the order news behind it), then act on it."""
        self._announce(lc, decision)
        writes = Writes(intents=(*decision.intents, *(writes.intents if writes else ())),
                        updates=writes.updates if writes else (), fills=writes.fills if writes else ())
        if decision.trigger is None:
            if writes.intents or writes.updates or writes.fills:
                await self.workers.persist(self.ledger.save_orders, lc.id, writes, at=self._now())
                self._written(lc, writes)
        else:
            crash_point(BEFORE_COMMIT.get(decision.trigger))
            verdict = self._verdict(lc, decision)
            if verdict is not None:
                lc, judged = await self._record_judged(lc, decision, writes, source, verdict)
                if judged:
                    self._written(lc, writes)
                    return await self._after_commit(lc, verdict)
            lc, outcome = await self._record(lc, decision, writes, source)
            self._written(lc, writes)
            if outcome is Outcome.IGNORED:
                return lc
            crash_point(AFTER_COMMIT.get(decision.trigger))
        for then in decision.then:
            lc = await self._act(lc, then)
        return lc

    def _verdict(self, lc: Lifecycle, decision: Decision) -> Decision | None:
        """The guards' verdict on a fill, when `decision` records one (it is followed by
        AFTER_FILL) and the verdict moves the filled lifecycle: it is judged on the fill as the
        ledger will commit it (engine.core.lifecycle.step is pure), so both commit together and
        the exits go out one ledger round trip sooner. None: record `decision` alone."""
        if decision.then != (Then.AFTER_FILL,) or decision.trigger is None:
            return None
        try:
            filled, outcome = step(lc, decision.trigger, storable(decision.facts), self._now())
        except IllegalTransition:
            return None  # the ledger's record() raises it, as before
        if outcome is not Outcome.MOVED:
            return None
        verdict = self._judge(filled)
        if verdict.trigger is None or classify(filled.state, verdict.trigger) is not Outcome.MOVED:
            return None
        return verdict

    def _judge(self, lc: Lifecycle) -> Decision:
        return decisions.after_fill(lc, self.settings, ledger_id=self.ledger_id, halted=self._flatten_halt(),
                                    broker_session=not self.emulates())

    async def _record_judged(self, lc: Lifecycle, decision: Decision, writes: Writes, source: str,
                             verdict: Decision) -> tuple[Lifecycle, bool]:
        """Commit the fill and the guards' verdict in one transaction: (the lifecycle judged,
        True); or, when someone else moved it first, (the ledger's word, False), nothing
        written: the caller records the fill alone from there and judges it after, as always."""
        assert decision.trigger is not None and verdict.trigger is not None
        steps = [Step(decision.trigger, decision.facts, source, writes),
                 Step(verdict.trigger, verdict.facts, "engine", Writes(intents=verdict.intents))]
        try:
            filled, judged = await self.workers.persist(self.ledger.record_steps, lc, steps, at=self._now())
        except StaleLifecycle:
            fresh = await self.workers.persist(self.ledger.get, lc.id)
            assert fresh is not None
            return fresh, False
        self.book.put(judged)
        self.moved(filled)
        log.info("lifecycle %s %s %s: %s -> %s (%s, %s)", lc.id, lc.signal_id, lc.symbol, lc.state.value,
                 filled.state.value, decision.trigger.value, source)
        self._announce(lc, verdict)  # routed before any act on it, said after the fill it judges
        self.moved(judged)
        log.info("lifecycle %s %s %s: %s -> %s (%s, %s)", lc.id, lc.signal_id, lc.symbol, filled.state.value,
                 judged.state.value, verdict.trigger.value, "engine")
        await self.book.notify()
        return judged, True

    async def _after_commit(self, lc: Lifecycle, decision: Decision) -> Lifecycle:
        """What follows the commit of `decision`: its crash point, then its acts."""
        assert decision.trigger is not None
        crash_point(AFTER_COMMIT.get(decision.trigger))
        for then in decision.then:
            lc = await self._act(lc, then)
        return lc

    def _announce(self, lc: Lifecycle, decision: Decision) -> None:
        """Route `decision`'s intents (before any act sends one), and say what it refuses or fears."""
        for intent in decision.intents:
            self.router.intend(lc.id, intent)
        if decision.refusal:
            log.warning("Smart executor rejected %s %s", lc.signal_id, decision.refusal)
        if decision.problem:
            log.error("%s", decision.problem)
        if decision.alarm:
            log.critical("%s", decision.alarm)

    def _written(self, lc: Lifecycle, writes: Writes) -> None:
        """Note the orders whose broker report `writes` committed (see `_ack_only`)."""
        if lc.state in TERMINAL:
            self._acknowledged.pop(lc.id, None)
            return
        for update in writes.updates:
            if update.broker_order_id is not None:
                self._acknowledged.setdefault(lc.id, set()).add(update.client_order_id)

    @staticmethod
    def _moves(lc: Lifecycle, decision: Decision) -> bool:
        """Whether recording `decision` would move `lc` (not stale news the ledger ignores)."""
        if decision.trigger is None:
            return False
        try:
            return classify(lc.state, decision.trigger) is not Outcome.IGNORED
        except IllegalTransition:
            return True  # the ledger's record() raises it, as before

    def _ack_only(self, lc: Lifecycle, report: OrderReport) -> bool:
        """Whether `report` is an acknowledgement (`pending_new`, `new`, `accepted`, …: no fill, not
        final) of an order whose row already holds a broker report this engine wrote. Such news
        (the stream's events after the submit's reply) moves no state and no quantity; written
        alone it would cost a commit for a status word, so the row keeps the first one until the
        order's next real change (a fill, a cancel, its end)."""
        update = report.update
        return (report.kind is Kind.ACK and not update.final and report.execution is None
                and not update.filled_qty and update.client_order_id in self._acknowledged.get(lc.id, ()))

    async def _act(self, lc: Lifecycle, then: Then) -> Lifecycle:
        if then is Then.ARM:
            self.timers.arm(lc)
            self.armed(lc)  # reprice
        elif then is Then.VERIFY:
            self.timers.schedule(lc.id, VERIFY, 0.0)
        elif then is Then.CANCEL_ENTRY:
            await self.cancel_entry(lc)
        elif then is Then.AFTER_FILL:
            lc = await self.carry_out(lc, self._judge(lc))
        elif then is Then.PLACE_ENTRY:
            lc = await self.place(lc, Leg.ENTRY)
        elif then is Then.PLACE_EXITS:
            # Resent after a crash, an exit pair already placed answers "duplicate" and is looked up.
            lc = await self.place(lc, Leg.TAKE_PROFIT)
        elif then is Then.PAUSE:
            await asyncio.sleep(FLATTEN_BACKOFF)
        elif then is Then.CANCEL_EXITS:
            lc = await self.cancel_exits(lc)
        elif then is Then.FLATTEN and lc.state is State.REJECTED:  # not if an exit filled meanwhile
            lc = await self.place(lc, Leg.FLATTEN)
        elif then is Then.PROTECT:
            lc = await self.protect(lc)
        elif then is Then.WATCH and self.watch is not None:
            await self.watch(lc)
        elif then is Then.PLACE_EMULATED_EXIT and lc.state is State.EMULATED_EXIT:
            lc = await self.place(lc, Leg.EXIT)
            if lc.state is State.EMULATED_EXIT:
                self.follow(lc.id, self.settings.exit_reprice_after)
        elif then is Then.MOVE_BROKER_STOP and self.move_stop is not None:
            lc = await self.move_stop(lc)
        return lc

    async def protect(self, lc: Lifecycle) -> Lifecycle:
        """VALIDATED: send the newest exit pair unless it is settled; else the broker's pair in
        regular hours, the engine's emulation outside them."""
        if lc.state is not State.VALIDATED:
            return lc
        coid = self.router.coid(lc.id, Leg.TAKE_PROFIT)
        row = None if coid is None else await self.workers.persist(self.ledger.order, coid)
        if row is not None and not row["final"]:
            # Intended (and perhaps sent before a crash): sent again, a duplicate is looked up; the
            # session check hands it back to the emulation if the broker cannot work it now.
            return await self.place(lc, Leg.TAKE_PROFIT)
        if self.emulates():
            return await self.carry_out(lc, emulation.arm(lc, self.session, source="engine"))
        assert lc.exit_target is not None and lc.exit_stop is not None
        intent = decisions.exit_pair_intent(lc, self.pair_attempt(lc), decisions.remaining(lc), lc.exit_target,
                                            lc.exit_stop, ledger_id=self.ledger_id)
        return await self.carry_out(lc, Decision(intents=(intent,), then=(Then.PLACE_EXITS,)))

    def pair_attempt(self, lc: Lifecycle) -> int:
        """The attempt number of the lifecycle's next exit pair."""
        coid = self.router.coid(lc.id, Leg.TAKE_PROFIT)
        return 1 if coid is None else decisions.attempt_of(coid, Leg.TAKE_PROFIT) + 1

    # --- order reports: one path for replies, stream events and look-ups -----------------------------

    @staticmethod
    def _writes(report: OrderReport) -> Writes:
        """The order's status and the report's execution: the ledger stores an execution it holds
        already (a replayed event, or one read from the account's activities) no second time."""
        run = report.execution
        coid = report.update.client_order_id
        fills = [] if run is None else [FillRecord(coid, run.execution_id, run.qty, run.price, run.at, run.cum_qty)]
        return Writes(updates=[report.update], fills=fills)

    def heard(self, report: OrderReport) -> None:
        """Note an order's latest news, from whatever path brought it."""
        update = report.update
        grew = self.router.saw(update.client_order_id, update.status, report.filled_qty)
        if grew <= 0:
            return
        self.fills_seen()  # whichever path told it: stream, reply, look-up or poll
        told = report.execution.qty if report.execution is not None else Decimal(0)
        if grew > told and update.broker_order_id is not None and report.submitted_at is not None:
            # Executions no event told of: read from the account's activities soon.
            seen = report.execution.at if report.execution is not None else report.submitted_at
            self.executions_missing(update.broker_order_id, update.client_order_id, report.filled_qty,
                                    report.submitted_at, seen)

    async def on_report(self, lc: Lifecycle, leg: Leg, report: OrderReport, *, source: str) -> Lifecycle:
        update = report.update
        self.heard(report)
        writes = self._writes(report)
        if leg is Leg.ENTRY:
            entry = await self.entry_report(lc, report)  # reprice: the fills of every entry order
            decision = decisions.on_entry(lc, entry, self._now(), self.settings)
        elif leg is Leg.FLATTEN:
            decision = decisions.on_flatten(lc, report, self._flatten_attempt(lc), ledger_id=self.ledger_id)
        elif leg is Leg.EXIT:
            decision = decisions.NOTHING
            if update.client_order_id == self.router.coid(lc.id, Leg.EXIT):
                decision = emulation.on_exit_fill(lc, report.filled_qty, report.filled_avg_price,
                                                  complete=report.kind is Kind.FILL)
                if decision.trigger is None and update.final and lc.state is State.EMULATED_EXIT:
                    self.follow(lc.id, 0.0)  # expired or cancelled unfilled (in part): the next attempt now
        elif not self._current_pair(lc, update.client_order_id):
            decision = decisions.NOTHING  # a pair already settled and replaced: its news is kept, nothing more
        else:
            decision = closing.on_exit(lc, leg, report)
            if decision.trigger is Trigger.PROTECTION_LOST:
                sibling = await self._sibling_filled(lc, leg)
                if sibling is not None:  # the pair ended because its other leg traded: that is the news
                    lc = await self.carry_out(lc, decisions.NOTHING, source=source, writes=writes)
                    return await self.on_report(lc, *sibling, source="engine")
        if self._ack_only(lc, report) and not decision.intents and not self._moves(lc, decision):
            # Nothing to record but a status word: no transaction (with a transition it rides along).
            writes = Writes()
            if decision.trigger is not None:  # stale (IGNORED): carry_out would act on none of it
                decision = dataclasses.replace(decision, trigger=None, facts={}, then=())
        lc = await self.carry_out(lc, decision, source=source, writes=writes)
        if leg is Leg.ENTRY and self.halt is not None:  # acknowledged after the halt was carried out
            lc = await self.obey_halt(lc, self.halt)
        return lc

    async def obey_halt(self, lc: Lifecycle, change: TradingStateChange) -> Lifecycle:
        decision = decisions.on_halt(lc, cancel_entries=change.cancel_entries, flatten=change.flatten,
                                     why=risk.halt_reason(change), ledger_id=self.ledger_id)
        return await self.carry_out(lc, decision)

    async def _sibling_filled(self, lc: Lifecycle, ended: Leg) -> tuple[Leg, OrderReport] | None:
        """The exit pair's other leg, if it shows shares no transition recorded yet.

        The broker cancels one leg of an OCO because the other filled, and the two events can come
        in either order: the stop leg's id is learnt from the pair's reply, so its fill can wait for
        its route while the take-profit's cancel, routed from its intent, goes first. A look-up tells
        a sibling's fill from protection really lost (a person cancelled a leg)."""
        pair = self.router.coid(lc.id, Leg.TAKE_PROFIT)
        if pair is None:
            return None
        try:
            order = await self.workers.call(Priority.PROTECT, self.broker.get_order, client_order_id=pair)
        except (BrokerAmbiguous, BrokerNotFound) as exc:  # the breach path still settles the pair
            log.warning("look-up of %s of %s failed (%s)", pair, lc.signal_id, exc)
            return None
        for found in () if order is None else (order, *order.legs):
            leg = closing.exit_leg(found.is_stop)
            if leg is not ended and closing.unrecorded_fill(lc, leg, found.filled_qty):
                return leg, report_of(found)
        return None

    def _current_pair(self, lc: Lifecycle, coid: str) -> bool:
        return coid in (self.router.coid(lc.id, Leg.TAKE_PROFIT), self.router.coid(lc.id, Leg.STOP))

    def _flatten_halt(self) -> str | None:
        return None if self.halt is None or not self.halt.flatten else risk.halt_reason(self.halt)

    async def keep_late_news(self, lifecycle_id: int, report: OrderReport) -> None:
        """A finished lifecycle's order moved: keep its status and fill, change nothing else."""
        self.heard(report)
        await self.workers.persist(self.ledger.save_orders, lifecycle_id, self._writes(report), at=self._now())

    # --- act ---------------------------------------------------------------------------------------

    async def place(self, lc: Lifecycle, leg: Leg) -> Lifecycle:
        """Send the leg's newest intent (the entry, the exit pair, a flatten) and apply the answer."""
        intent = self.router.intent(lc.id, leg)
        priority = Priority.ENTRY if leg is Leg.ENTRY else Priority.PROTECT
        try:
            order = await self.sender.submit(lc.symbol, intent, priority, partial(self.recorded_at, intent))
        except IdTaken as exc:
            return await self.refuse_taken(lc, intent, str(exc))
        except BrokerRejected as exc:
            decision = decisions.send_failed(lc, intent, str(exc), self._flatten_attempt(lc), ledger_id=self.ledger_id)
            return await self.carry_out(lc, decision, writes=Writes(updates=[rejected(intent.client_order_id)]))
        if order is None:
            decision = decisions.send_failed(lc, intent, None, self._flatten_attempt(lc), ledger_id=self.ledger_id)
            return await self.carry_out(lc, decision)
        crash_point(AFTER_SUBMIT.get(leg))
        if leg is Leg.TAKE_PROFIT:
            return await self._exits_accepted(lc, order)
        return await self.on_report(lc, leg, report_of(order), source="engine")

    async def recorded_at(self, intent: OrderIntent) -> datetime | None:
        row = await self.workers.persist(self.ledger.order, intent.client_order_id)
        return None if row is None else row["created_at"]

    async def refuse_taken(self, lc: Lifecycle, intent: OrderIntent, reason: str) -> Lifecycle:
        """The intent's client order id is held at the broker by an order it did not make: the send
        counts as refused for that reason, and that order's news is no longer this lifecycle's."""
        self.router.disown(intent.client_order_id)
        decision = decisions.send_refused(lc, intent, reason, self._flatten_attempt(lc), ledger_id=self.ledger_id)
        return await self.carry_out(lc, decision, writes=Writes(updates=[id_taken(intent.client_order_id)]))

    async def _exits_accepted(self, lc: Lifecycle, order: BrokerOrder) -> Lifecycle:
        legs = leg_intents(order)
        for intent, _ in legs:
            self.router.intend(lc.id, intent)
        report = report_of(order)
        writes = Writes(intents=[intent for intent, _ in legs], updates=[report.update, *(u for _, u in legs)])
        works_now = self.can_emulate or not lc.extended_hours  # without quotes, sent outside hours
        lc = await self.carry_out(lc, closing.exits_accepted(lc, report, works_now=works_now), writes=writes)
        # Either leg may have traded already: a target through the market, or (found by a look-up
        # after a restart) a stop that fired while no engine ran.
        for found in (order, *order.legs):
            if found.kind in (Kind.FILL, Kind.PARTIAL_FILL):
                lc = await self.on_report(lc, closing.exit_leg(found.is_stop), report_of(found), source="engine")
        return lc

    def _flatten_attempt(self, lc: Lifecycle) -> int:
        coid = self.router.coid(lc.id, Leg.FLATTEN)
        return 1 if coid is None else decisions.flatten_attempt(coid)

    async def on_deadline(self, lifecycle_id: int) -> None:
        async with self.book.lock(lifecycle_id):
            lc = self.book.open.get(lifecycle_id)
            if lc is not None:
                await self.carry_out(lc, decisions.on_deadline(lc, self._now()), source="timer")

    async def cancel_entry(self, lc: Lifecycle) -> None:
        row = await self.workers.persist(self.ledger.order, self.router.intent(lc.id, Leg.ENTRY).client_order_id)
        broker_id = None if row is None else row["broker_order_id"]
        try:
            if broker_id is None:
                raise BrokerNotFound("entry has no broker id yet")
            await self.workers.call(Priority.PROTECT, self.broker.cancel, broker_order_id=broker_id)
        except (BrokerRejected, BrokerNotFound) as exc:
            # Usually the fill won the race ("already filled"): the look-up tells.
            log.info("cancel of %s refused (%s); looking the entry up", lc.signal_id, exc)
            self.timers.schedule(lc.id, VERIFY, 0.0)
            return
        except BrokerAmbiguous as exc:
            log.warning("cancel of %s ambiguous (%s)", lc.signal_id, exc)
        crash_point("after_cancel_submit")
        self.timers.schedule(lc.id, VERIFY, self.verify_after)

    async def cancel_exits(self, lc: Lifecycle) -> Lifecycle:
        """Cancel the lifecycle's exit pair, wait until the broker says both legs are final, then
        settle what they filled (engine.core.closing.exits_settled): a new pair for the remainder
        (REPROTECTING), a smaller flatten (REJECTED), or CLOSED when nothing remains."""
        coid = self.router.coid(lc.id, Leg.TAKE_PROFIT)
        if coid is None:
            return lc
        order = await self.final_order(lc, coid)
        if order is None:
            if lc.state is State.REPROTECTING:  # tried again by the next poll or protection check
                log.warning("the exits of %s are not final yet; settling them later", lc.signal_id)
            return lc
        legs = [LegFill(closing.exit_leg(o.is_stop), o.filled_qty, o.filled_avg_price) for o in (order, *order.legs)]
        reports = [report_of(o) for o in (order, *order.legs)]
        for report in reports:
            self.heard(report)
        writes = Writes(updates=[report.update for report in reports])
        decision = closing.exits_settled(lc, legs, exits_attempt=decisions.attempt_of(coid, Leg.TAKE_PROFIT),
                                         flatten_attempt=self._flatten_attempt(lc), ledger_id=self.ledger_id,
                                         emulate=self.emulates())
        return await self.carry_out(lc, decision, writes=writes)

    async def final_order(self, lc: Lifecycle, coid: str) -> BrokerOrder | None:
        """The order under `coid` once it (an exit pair: each of its legs) is final, cancelled first
        if needed; None: it never reached the broker, or it is not final yet."""
        row = await self.workers.persist(self.ledger.order, coid)
        if row is None:
            return None
        cancelled = False
        for _ in range(EXITS_FINAL_TRIES):
            try:
                order = await self.workers.call(Priority.PROTECT, self.broker.get_order, client_order_id=coid)
            except BrokerAmbiguous as exc:
                log.warning("look-up of %s of %s failed (%s)", coid, lc.signal_id, exc)
                order = None
            if order is None and row["broker_order_id"] is None:
                return None  # never reached the broker: nothing to cancel, nothing filled
            if order is not None and all(o.final for o in (order, *order.legs)):
                return order
            if order is not None and not cancelled:
                try:
                    await self.workers.call(Priority.PROTECT, self.broker.cancel, broker_order_id=order.broker_order_id)
                except (BrokerRejected, BrokerNotFound, BrokerAmbiguous) as exc:
                    log.info("cancel of %s of %s refused (%s); looking it up", coid, lc.signal_id, exc)
                cancelled = True
            await asyncio.sleep(0.25)
        return None
