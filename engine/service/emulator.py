"""Emulated protection in the running engine: quotes in, decisions of engine.core.emulation out.

Three tasks, started by the executor when it has market data:
- the quote stream: every quote of a watched symbol is checked against the stops and targets the
  engine holds (EMULATING), and against a broker-held pair whose stop moves (break-even, trail);
- the session watch: at the regular open the emulation is handed over to the broker's pair, at
  the close handed back (read from the broker's clock, woken at its next open or close);
- the stale watch: a symbol without a fresh quote is asked for by REST, and if none comes the
  documented policy applies (SMART_EXECUTOR_STALE_QUOTES).

A quote that changes nothing costs a dictionary look-up and a pure check, with no lock, no task
and no ledger read: only a decision that moves a lifecycle takes its lock and re-checks it there.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal

from engine.broker.market_port import MarketData, Quote
from engine.broker.port import BrokerAmbiguous, BrokerError, BrokerNotFound, BrokerRejected
from engine.broker.ratelimit import Priority
from engine.core import decisions, emulation
from engine.core.decisions import NOTHING, Decision
from engine.core.domain import Leg, client_order_id
from engine.core.emulation import ExitFill
from engine.core.lifecycle import Lifecycle, State
from engine.core.orders import OrderIntent, Session
from engine.ledger import Writes
from engine.service.conductor import Conductor
from engine.service.crash import crash_point
from engine.service.timers import FOLLOW
from engine.service.translate import rejected, report_of

log = logging.getLogger("smartexec")
SESSION_RECHECK = 30.0  # seconds between reads of the broker's clock when no boundary is nearer
STALE_CHECK = 1.0  # seconds between looks for symbols gone quiet
STREAM_RETRY = 2.0  # seconds before the quote stream is started again after it ended


class Emulator:
    def __init__(self, conductor: Conductor, market_data: MarketData, *, clock: Callable[[], datetime],
                 session_recheck: float = SESSION_RECHECK) -> None:
        self.c = conductor
        self.session_recheck = session_recheck
        self.md = market_data
        self._now = clock
        self.last: dict[str, Quote] = {}  # the newest quote per symbol
        self._alerted: set[int] = set()  # lifecycles already told of the current silence
        self._by_symbol: defaultdict[str, set[int]] = defaultdict(set)
        self.polled: set[str] = set()  # watched symbols the stream has no room for: read by REST
        conductor.can_emulate = True
        conductor.watch = self.watch
        conductor.move_stop = self.move_stop
        conductor.moved = self.track
        conductor.follow = lambda lifecycle_id, delay: conductor.timers.schedule(lifecycle_id, FOLLOW, delay)

    def forget(self, lifecycle_id: int) -> None:
        """A finished lifecycle (its symbol's index entry went with its last move, `track`)."""
        self._alerted.discard(lifecycle_id)

    # --- what is watched ----------------------------------------------------------------------

    def _wants_quotes(self, lc: Lifecycle) -> bool:
        if lc.state in (State.EMULATING, State.EMULATED_EXIT):
            return True
        return lc.state is State.EXITS_PLACED and bool(lc.break_even or lc.trail_pct is not None)

    def track(self, lc: Lifecycle) -> None:
        """Index a lifecycle under its symbol while it needs quotes: the first subscribes the
        symbol (streamed while the feed has room, else read by REST), the last unsubscribes it."""
        ids = self._by_symbol[lc.symbol]
        if self._wants_quotes(lc):
            if not ids:
                self._watch_symbol(lc.symbol)
            ids.add(lc.id)
        elif lc.id in ids:
            ids.discard(lc.id)
            if not ids:
                self._unwatch_symbol(lc.symbol)

    def _watch_symbol(self, symbol: str) -> None:
        limit = self.md.symbol_limit
        if limit is not None and len(self.md.subscribed()) >= limit:
            self.polled.add(symbol)
            log.error("%s is not streamed: the quote feed carries %d symbols (SMART_EXECUTOR_DATA_FEED=sip has no "
                      "limit); its emulated stop is checked on REST quotes every %gs", symbol, limit, STALE_CHECK)
            return
        self.md.subscribe([symbol])

    def _unwatch_symbol(self, symbol: str) -> None:
        if symbol in self.polled:
            self.polled.discard(symbol)
            return
        self.md.unsubscribe([symbol])
        if self.polled:  # the freed slot goes to a symbol read by REST until now
            self._watch_symbol(self.polled.pop())

    async def watch(self, lc: Lifecycle) -> None:
        """EMULATING (armed, or resumed): subscribe, then check the newest quote at once, so a level
        crossed while no engine ran (or while the stream was away) fires now."""
        self.track(lc)
        quote = await self._latest(lc.symbol)
        if quote is not None:
            self.c.workers.spawn(self.on_quote(quote))

    async def _latest(self, symbol: str) -> Quote | None:
        try:
            quote = await self.c.workers.call(Priority.QUERY, self.md.latest_quote, symbol=symbol)
        except BrokerError as exc:
            log.warning("the latest quote for %s could not be read (%s)", symbol, exc)
            return None
        if quote is not None:
            self._note(quote)
        return quote

    def _note(self, quote: Quote) -> None:
        known = self.last.get(quote.symbol)
        if known is None or quote.at >= known.at:
            self.last[quote.symbol] = quote

    # --- quotes -------------------------------------------------------------------------------

    async def stream(self) -> None:
        """The quote stream, started again whenever it ends (the adapter already reconnects after a
        drop; this covers a refusal such as a second connection on the same keys)."""
        while True:
            try:
                await self.md.quotes(sorted(s for s, ids in self._by_symbol.items() if ids), self.on_quote,
                                     self._reconnected)
            except BrokerError as exc:
                log.error("the quote stream stopped (%s); emulated stops are watched by REST until it is back", exc)
            await asyncio.sleep(STREAM_RETRY)

    async def _reconnected(self) -> None:
        """Quotes sent while the stream was away are gone: read each watched symbol's newest now."""
        for symbol in [s for s, ids in self._by_symbol.items() if ids]:
            self.c.workers.spawn(self._catch_up(symbol))

    async def _catch_up(self, symbol: str) -> None:
        quote = await self._latest(symbol)
        if quote is not None:
            await self.on_quote(quote)

    def _decide(self, lc: Lifecycle, quote: Quote) -> Decision:
        if lc.state is State.EMULATING:
            return emulation.on_quote(lc, quote, self.c.settings, ledger_id=self.c.ledger_id)
        if lc.state is State.EXITS_PLACED:
            return emulation.on_broker_quote(lc, quote)
        return NOTHING

    async def on_quote(self, quote: Quote) -> None:
        self._note(quote)
        for lifecycle_id in list(self._by_symbol.get(quote.symbol, ())):
            self._alerted.discard(lifecycle_id)
            lc = self.c.book.open.get(lifecycle_id)
            if lc is None:
                self._by_symbol[quote.symbol].discard(lifecycle_id)
                continue
            if self._decide(lc, quote).trigger is not None:  # only then the lock, and decide again under it
                self.c.workers.spawn(self._act(lifecycle_id, quote))

    async def _act(self, lifecycle_id: int, quote: Quote) -> None:
        async with self.c.book.lock(lifecycle_id):
            lc = self.c.book.open.get(lifecycle_id)
            if lc is None:
                return
            decision = self._decide(lc, quote)
            if decision.trigger is not None:
                lc = await self.c.carry_out(lc, decision, source="quote")
            self.track(lc)

    # --- the emulated exit: followed until filled ------------------------------------------------

    async def on_follow(self, lifecycle_id: int) -> None:
        """The emulated exit has worked `exit_reprice_after` seconds (or ended unfilled): if it is
        still open, cancel it, wait until final, fold what it filled, send the next at the newest
        quote."""
        async with self.c.book.lock(lifecycle_id):
            lc = self.c.book.open.get(lifecycle_id)
            if lc is None or lc.state is not State.EMULATED_EXIT:
                return
            coid = self.c.router.coid(lc.id, Leg.EXIT)
            if coid is None:
                return
            order = await self.c.final_order(lc, coid)
            writes = None
            if order is not None:
                report = report_of(order)
                self.c.heard(report)
                done = ExitFill(order.filled_qty, order.filled_avg_price)
                writes = Writes(updates=[report.update])
            elif await self._refused(coid):
                done = ExitFill(Decimal(0), None)  # the venue never took it: nothing to cancel or fold
            else:
                self.c.follow(lc.id, self.c.settings.exit_reprice_after)  # not final yet: look again later
                return
            decision = emulation.exit_settled(lc, done, self.last.get(lc.symbol), self.c.settings,
                                              attempt=decisions.attempt_of(coid, Leg.EXIT), ledger_id=self.c.ledger_id)
            await self.c.carry_out(lc, decision, source="follow", writes=writes)

    async def _refused(self, coid: str) -> bool:
        row = await self.c.workers.persist(self.c.ledger.order, coid)
        return row is not None and row["status"] == rejected(coid).status

    # --- the broker's stop leg, moved -------------------------------------------------------------

    async def move_stop(self, lc: Lifecycle) -> Lifecycle:
        """The broker's stop leg at the lifecycle's stop (after STOP_MOVED, or on resume when the
        move was recorded but its replace never sent): replaced in place in the pair, under a new
        client order id of ours (`…-sl<version>`, the same again after a crash)."""
        parent_coid = self.c.router.coid(lc.id, Leg.TAKE_PROFIT)
        if lc.state is not State.EXITS_PLACED or parent_coid is None or lc.exit_stop is None:
            return lc
        try:
            parent = await self.c.workers.call(Priority.PROTECT, self.c.broker.get_order, client_order_id=parent_coid)
        except BrokerAmbiguous as exc:
            log.warning("the pair of %s could not be looked up to move its stop (%s)", lc.signal_id, exc)
            return lc
        stop = None if parent is None else next((leg for leg in parent.legs if leg.is_stop), None)
        if stop is None or stop.final or stop.stop_price == lc.exit_stop:
            return lc
        intent = OrderIntent(client_order_id(self.c.ledger_id, lc.signal_id, Leg.STOP, lc.version), Leg.STOP,
                             stop.side, stop.order_type, "gtc", stop.qty - stop.filled_qty, stop_price=lc.exit_stop)
        if self.c.router.coid(lc.id, Leg.STOP) != intent.client_order_id:  # recorded by a run that crashed
            lc = await self.c.carry_out(lc, Decision(intents=(intent,)))  # recorded (and routed) before the call
        crash_point("after_stop_move_intent")
        try:
            new = await self.c.workers.call(Priority.PROTECT, self.c.broker.replace,
                                            broker_order_id=stop.broker_order_id,
                                            client_order_id=intent.client_order_id, stop_price=lc.exit_stop)
        except (BrokerRejected, BrokerNotFound, BrokerAmbiguous) as exc:
            # Usually the stop just filled or the pair is being cancelled: their news decides.
            log.warning("the stop of %s could not be moved to %s (%s)", lc.signal_id, lc.exit_stop, exc)
            return lc
        log.info("stop of %s moved to %s at the broker", lc.signal_id, lc.exit_stop)
        return await self.c.carry_out(lc, NOTHING, writes=Writes(updates=[report_of(new).update]))

    # --- sessions -------------------------------------------------------------------------------

    async def watch_sessions(self) -> None:
        while True:
            wait = self.session_recheck
            try:
                wait = await self.check_session()
            except Exception:
                log.exception("the session check failed; trying again")
            await asyncio.sleep(max(0.05, wait))

    async def check_session(self) -> float:
        """Read the broker's clock; hand every lifecycle to the session's holder of protection.
        Returns the seconds until the next look (the nearer of the next open or close)."""
        clock = await self.c.workers.call(Priority.PROTECT, self.c.broker.market_clock)
        changed = clock.session is not self.c.session
        self.c.session = clock.session
        if changed:
            log.info("market session is %s", clock.session.value)
        await self.hand_over_all(clock.session)
        nearest = min(clock.next_open, clock.next_close) - clock.at
        return min(self.session_recheck, max(0.05, nearest.total_seconds() + 0.01))

    async def hand_over_all(self, session: Session) -> None:
        ids = [lc.id for lc in self.c.book.open.values() if lc.state in (State.EMULATING, State.EXITS_PLACED)]
        await asyncio.gather(*(self.c.workers.guarded(self._hand_over(i, session)) for i in ids))

    async def _hand_over(self, lifecycle_id: int, session: Session) -> None:
        async with self.c.book.lock(lifecycle_id):
            lc = self.c.book.open.get(lifecycle_id)
            if lc is None:
                return
            decision = emulation.session_move(lc, session, pair_attempt=self.c.pair_attempt(lc),
                                              ledger_id=self.c.ledger_id)
            if decision.trigger is not None:
                lc = await self.c.carry_out(lc, decision, source="session")
            self.track(lc)

    # --- stale quotes -----------------------------------------------------------------------------

    async def watch_staleness(self) -> None:
        while True:
            await asyncio.sleep(STALE_CHECK)
            try:
                await self.check_staleness()
            except Exception:
                log.exception("the stale-quote check failed; trying again")

    async def check_staleness(self) -> None:
        for symbol in list(self.polled):
            await self._catch_up(symbol)
        limit = timedelta(seconds=self.c.settings.quote_stale_after)
        now = self._now()
        # A quote's own time, not its arrival: a feed that delivers old quotes is a stale feed.
        quiet = {lc.symbol for lc in self.c.book.open.values() if lc.state is State.EMULATING
                 and lc.id not in self._alerted and now - self._quoted_at(lc) > limit}
        for symbol in quiet:
            quote = await self._latest(symbol)
            log.debug("stale check: REST quote %s", quote)  # the stream may be mute while REST still answers
            if quote is not None and now - quote.at <= limit:
                await self.on_quote(quote)
                continue
            for lifecycle_id in list(self._by_symbol.get(symbol, ())):
                await self._stale(lifecycle_id, quote)

    def _quoted_at(self, lc: Lifecycle) -> datetime:
        last = self.last.get(lc.symbol)
        return lc.updated_at if last is None else max(last.at, lc.updated_at)

    async def _stale(self, lifecycle_id: int, quote: Quote | None) -> None:
        async with self.c.book.lock(lifecycle_id):
            lc = self.c.book.open.get(lifecycle_id)
            if lc is None or lc.state is not State.EMULATING:
                return
            last = self.last.get(lc.symbol)
            decision = emulation.stale(lc, last, self._now(), self.c.settings, ledger_id=self.c.ledger_id)
            self._alerted.add(lc.id)
            lc = await self.c.carry_out(lc, decision, source="quotes")
            self.track(lc)
