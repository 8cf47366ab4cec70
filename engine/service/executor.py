"""The executor: wires the service's parts and keeps the public API.

    executor = Executor(settings, ledger, broker)
    await executor.start()          # resume what a previous run left open, then stream
    lc = await executor.submit(signal)
    lc = await executor.wait_for(lc.id)   # a terminal state, or LifecycleTimeout after settle_time
    await executor.stop()

Concurrency: one asyncio loop. Events of one lifecycle are serialised by its lock. Ledger writes
run on one writer thread and broker calls on a small pool behind the rate limiter (`Workers`),
so neither blocks the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from engine.broker.market_port import MarketData
from engine.broker.port import Broker, BrokerAmbiguous, BrokerError, OrderEvent
from engine.broker.ratelimit import Priority, RateLimiter
from engine.core import decisions, quotes, repricing, risk
from engine.core.config import Settings
from engine.core.domain import CLIENT_ORDER_ID_PREFIX, Leg, Mode, Signal, ledger_prefix
from engine.core.errors import InvalidSignal, SignalConflict, StreamUnavailable
from engine.core.lifecycle import TERMINAL, Lifecycle, State
from engine.core.orders import Session
from engine.core.polling import PollPolicy
from engine.core.quotes import QuoteRead
from engine.ledger import Ledger, Writes
from engine.service.activities import LostExecutions
from engine.service.book import Book
from engine.service.conductor import Conductor
from engine.service.crash import crash_point
from engine.service.emulator import SESSION_RECHECK, Emulator
from engine.service.protection import Protection
from engine.service.reconciler import LISTING_MARGIN, Reconciler
from engine.service.repricer import Repricer
from engine.service.router import Router
from engine.service.sender import Sender
from engine.service.timers import DEADLINE, FOLLOW, REPRICE, VERIFY, Timers
from engine.service.trading import Desk
from engine.service.translate import report_of
from engine.service.workers import Workers

log = logging.getLogger("smartexec")
STOP_GRACE = 5.0  # seconds stop() gives the news already received to be recorded
# wait_for's default allowance beyond the fill timeout: the cancel's confirmation (the stream's word,
# or the REST look-up `verify_after` seconds on, one request timeout at most), then a fill's guards
# and the exit orders, a few broker round trips.
CANCEL_GRACE = 10.0
EXITS_GRACE = 10.0
SESSION_TTL = 5.0  # seconds a burst of signals shares one look at the broker's clock
SESSION_TRIES = 4
QUOTE_TRIES = 2  # a quote read is the signal's latency: one retry after a transient failure, no more


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class LifecycleTimeout(TimeoutError):
    """`wait_for` gave up: the lifecycle is not (yet) in one of the wanted states."""

    def __init__(self, lc: Lifecycle, wanted: frozenset[State], waited: float) -> None:
        names = ", ".join(sorted(state.value for state in wanted))
        super().__init__(f"lifecycle {lc.id} {lc.signal_id} {lc.symbol} is {lc.state.value} after {waited:g}s "
                         f"(waited for {names})")
        self.lifecycle = lc


class Executor:
    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        broker: Broker,
        *,
        limiter: RateLimiter | None = None,
        poll_interval: float | None = None,
        verify_after: float = 2.0,
        broker_workers: int = 8,
        market_data: MarketData | None = None,
        session_recheck: float = SESSION_RECHECK,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`poll_interval` overrides SMART_EXECUTOR_POLL_INTERVAL (settings.poll_interval); `clock`
        gives the time recorded in the ledger and that timers run on, `monotonic` measures quiet
        periods and cache ages. `market_data` gives the latest quote a smart entry is priced
        against when SMART_EXECUTOR_MAX_SPREAD_PCT or SMART_EXECUTOR_LIMIT_AT_QUOTE is on (without
        it such an entry is refused); with both off it is never read for entries. It also feeds
        the emulated protection outside regular hours (engine/service/emulator.py), which reads the
        broker's clock at its next open or close and at most `session_recheck` seconds apart."""
        self.settings = settings
        self.ledger = ledger
        self.broker = broker
        self.market_data = market_data
        self.poll_interval = settings.poll_interval if poll_interval is None else poll_interval
        self.verify_after = verify_after
        self._now = clock
        self._monotonic = monotonic
        self.account = ledger.account
        self.workers = Workers(limiter or RateLimiter(), broker_workers, fence=ledger.fence)
        self.connected = asyncio.Event()  # the trade_updates stream is up (set again on each connect)
        self.book = Book(monotonic)
        self.router = Router()
        self.timers = Timers(clock, self.workers.spawn, {DEADLINE: self._on_deadline, VERIFY: self._on_verify,
                                                         FOLLOW: self._on_follow,
                                                         REPRICE: lambda lc_id: self.repricer.on_timer(lc_id)})
        self.conductor = Conductor(settings, ledger, broker, workers=self.workers, book=self.book,
                                   router=self.router, sender=Sender(broker, self.workers), timers=self.timers,
                                   clock=clock, verify_after=verify_after)
        self.desk = Desk(settings, ledger, broker, workers=self.workers, book=self.book, conductor=self.conductor,
                         clock=clock, monotonic=monotonic)
        self.reconciler = Reconciler(self.conductor, PollPolicy(self.poll_interval), clock=clock,
                                     monotonic=monotonic)
        self.protection = Protection(self.conductor, self.reconciler, clock=clock,
                                     interval=settings.protection_interval)
        self.lost_executions = LostExecutions(self.conductor, margin=LISTING_MARGIN)
        # Protection outside regular hours needs quotes: without market data the broker's pair is
        # the only protection, working from the next regular open.
        self.emulator = None if market_data is None else Emulator(self.conductor, market_data, clock=clock,
                                                                       session_recheck=session_recheck)
        self.repricer = Repricer.install(self.conductor, self._read_quote, has_market_data=market_data is not None,
                                         clock=clock)  # reprice
        # A finished lifecycle is let go everywhere it was held (after the book's linger, for late news).
        self.book.finished.extend([self.router.forget, self.timers.cancel, self.repricer.forget])
        if self.emulator is not None:
            self.book.finished.append(self.emulator.forget)
        self._tasks: list[asyncio.Task[Any]] = []
        self._session: tuple[float, Session] | None = None
        self._session_lock = asyncio.Lock()  # a burst of signals asks the clock once, not once each
        self._resumed = False  # the ledger's open lifecycles are in the book

    @property
    def limiter(self) -> RateLimiter:
        return self.workers.limiter

    # --- life of the service ------------------------------------------------------------------

    async def start(self, *, stream: bool = True, stream_wait: float | None = None, fail_closed: bool = False,
                    ) -> None:
        """Resume, then serve. With `stream_wait`, the resume waits until the trade_updates stream is
        connected (at most that many seconds, else StreamUnavailable): a new owner of an account
        reconciles only once no news can be missed (the broker serves one connection per key, held
        by the previous owner until its socket closes). `fail_closed`: a reconcile that cannot
        finish raises ReconcileFailed rather than leave a lifecycle to the next one."""
        s = self.settings
        mode = Mode.SMART if s.use_smart_executor else Mode.LEGACY
        log.info(
            "Smart Order Executor initialized (mode=%s, limit buffer %s, fill timeout %ss, max slippage %s, "
            "min R/R %s, extended hours %s, max spread %s, limit at quote %s)", mode.value, s.limit_buffer_regular,
            s.fill_timeout, s.max_slippage_pct, s.min_rr_ratio, "on" if s.extended_hours else "off",
            "off" if s.max_spread_pct is None else s.max_spread_pct, "on" if s.limit_at_quote else "off",
        )
        if quotes.wants_quote(s) and self.market_data is None:
            log.warning("SMART_EXECUTOR_MAX_SPREAD_PCT or SMART_EXECUTOR_LIMIT_AT_QUOTE is on but the engine has no "
                        "market-data source: every smart entry will be refused")
        if repricing.enabled(s):  # reprice
            log.info("entry re-pricing on: at most %d replaces of an entry, each after %ss unfilled",
                     s.reprice_entries, s.reprice_after)
            if s.reprice_after >= min(s.fill_timeout, s.fill_timeout_extended):
                log.warning("SMART_EXECUTOR_REPRICE_AFTER %ss is not shorter than the fill timeout (%ss): the timeout "
                            "cancels such an entry before it is re-priced", s.reprice_after,
                            min(s.fill_timeout, s.fill_timeout_extended))
        if repricing.enabled(s) and self.market_data is None:  # reprice
            log.warning("SMART_EXECUTOR_REPRICE_ENTRIES is %d but the engine has no market-data source: entries "
                        "will not be re-priced", s.reprice_entries)
        ledger_id = await self.conductor.load_identity()
        log.info("ledger %s: client order ids %s<signal id>-<leg><attempt>", ledger_id, ledger_prefix(ledger_id))
        self._tasks.append(asyncio.create_task(self.timers.run(), name="timers"))
        self._tasks.append(asyncio.create_task(self.reconciler.poll(), name="poller"))
        if stream:
            self._tasks.append(asyncio.create_task(self.broker.stream(self._on_event, self._on_connect),
                                                   name="stream"))
        if stream and stream_wait is not None:
            await self._market_session()  # keys the broker refuses fail here, not after the whole wait
            try:
                async with asyncio.timeout(stream_wait):
                    await self.connected.wait()
            except TimeoutError:
                raise StreamUnavailable(f"the trade_updates stream did not connect within {stream_wait:g}s "
                                        "(the broker still serves another connection for this key?)") from None
        await self.desk.prime()
        if self.emulator is not None:
            await self.emulator.check_session()  # before the resume: fills it finds are protected for the session
        else:
            log.warning("no market data: outside regular hours a position's exit pair works only from the next "
                        "regular open")
        await self.resume(strict=fail_closed)
        # After the resume, so that a halt recorded while no engine ran acts on what it left open.
        self._tasks.append(asyncio.create_task(self.desk.watch(), name="trading state"))
        self._tasks.append(asyncio.create_task(self.protection.watch(), name="protection check"))
        if self.emulator is not None:
            for lc in list(self.book.open.values()):
                self.emulator.track(lc)
            self._tasks.append(asyncio.create_task(self.emulator.stream(), name="quotes"))
            self._tasks.append(asyncio.create_task(self.emulator.watch_sessions(), name="sessions"))
            self._tasks.append(asyncio.create_task(self.emulator.watch_staleness(), name="stale quotes"))

    async def stop(self) -> None:
        # Stop taking news (stream, timers, poller) first, then let what was already received be
        # recorded: an event taken off the socket is never sent again. Whatever is still busy
        # after a grace period (a ledger outage, a broker retry) is cancelled; the next start's
        # reconcile picks it up from REST.
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.workers.close(STOP_GRACE)

    async def __aenter__(self) -> Executor:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    async def resume(self, *, strict: bool = False) -> None:
        """Pick up every lifecycle a previous run left unfinished."""
        await self.reconciler.resume(strict=strict)
        self._resumed = True
        await self.repricer.resume()  # reprice: a replace a crash cut short, and the re-price checks

    async def reconcile(self, lifecycles: list[Lifecycle]) -> None:
        """Bring lifecycles up to date with the broker's REST view."""
        await self.reconciler.reconcile(lifecycles)

    def settle_time(self, lc: Lifecycle) -> float:
        """Seconds from an entry's placement until it is decided: filled and protected (or
        flattened), or cancelled unfilled. `wait_for`'s default timeout."""
        return self.settings.timeout(lc.extended_hours) + self.verify_after + CANCEL_GRACE + EXITS_GRACE

    async def wait_for(self, lifecycle_id: int, states: Iterable[State] = TERMINAL,
                       timeout: float | None = None) -> Lifecycle:
        """Wait until a lifecycle reaches one of `states`. `timeout` defaults to `settle_time`: an
        entry that neither fills nor is cancelled by then is news. On timeout LifecycleTimeout (a
        TimeoutError) names the lifecycle and the state it is in; an unknown id raises KeyError."""
        wanted = frozenset(states)

        async def current() -> Lifecycle:
            live = self.book.open.get(lifecycle_id)
            if live is not None:
                return live
            lc = await self.workers.persist(self.ledger.get, lifecycle_id)  # finished, or not driven here
            if lc is None:
                raise KeyError(f"no lifecycle {lifecycle_id} in the ledger")
            return lc

        lc = await current()
        limit = self.settle_time(lc) if timeout is None else timeout
        try:
            async with asyncio.timeout(limit):
                while True:
                    async with self.book.changed:
                        lc = await current()
                        if lc.state in wanted:
                            return lc
                        await self.book.changed.wait()
        except TimeoutError:
            raise LifecycleTimeout(await current(), wanted, limit) from None

    # --- intake -------------------------------------------------------------------------------

    async def _market_session(self) -> Session:
        async with self._session_lock:
            if self._session is None or self._monotonic() - self._session[0] > SESSION_TTL:
                self._session = (self._monotonic(), await self._read_session())
            return self._session[1]

    async def _read_session(self) -> Session:
        # One transient 5xx or 429 on the clock must not turn a valid signal into a refusal.
        for attempt in range(1, SESSION_TRIES + 1):
            try:
                return await self.workers.call(Priority.QUERY, self.broker.session)
            except BrokerAmbiguous as exc:
                if attempt == SESSION_TRIES:
                    raise
                log.warning("the broker's clock did not answer (%s); asking again", exc)
                await asyncio.sleep(0.25 * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    async def _read_quote(self, symbol: str) -> QuoteRead | None:
        """The latest quote for a smart entry (None: no market-data source), read on the broker
        workers like any look-up; a failed read is handed on as the reason there is none."""
        if self.market_data is None:
            return None
        for attempt in range(1, QUOTE_TRIES + 1):
            try:
                return QuoteRead(await self.workers.call(Priority.QUERY, self.market_data.latest_quote, symbol=symbol))
            except BrokerAmbiguous as exc:
                if attempt == QUOTE_TRIES:
                    return QuoteRead(None, str(exc))
                log.warning("the latest quote for %s did not come (%s); asking again", symbol, exc)
                await asyncio.sleep(0.25)
            except BrokerError as exc:
                return QuoteRead(None, str(exc))
        raise AssertionError("unreachable")

    async def submit(self, signal: Signal, *, mode: Mode | None = None,
                     received_at: datetime | None = None) -> Lifecycle:
        """Hand over one signal. Idempotent by signal id; the entry is placed before this returns.
        `mode` overrides USE_SMART_EXECUTOR for this signal (e.g. to compare the two paths);
        `received_at` is when it was queued, its age when it carries no `created_at`."""
        if signal.account not in (None, self.account):
            raise InvalidSignal("account", f"names {signal.account!r}, but this engine trades account {self.account!r}")
        known = await self.workers.persist(self.ledger.find_by_signal, signal.signal_id)
        if known is not None:
            differences = known.signal().differences(signal)
            if differences:
                raise SignalConflict(signal.signal_id, differences)
            return self.book.open.get(known.id, known)

        mode = mode or (Mode.SMART if self.settings.use_smart_executor else Mode.LEGACY)
        session = await self._market_session()
        market = None
        if mode is Mode.SMART and session is not Session.CLOSED and quotes.wants_quote(self.settings):
            market = await self._read_quote(signal.symbol)
        plan = decisions.intake(signal, mode, session, self.settings, self._now(), received_at,
                                ledger_id=self.conductor.ledger_id, market=market)
        # The risk check and the commit of the intent are one step: two signals cannot both pass a limit
        # that only one of them fits under.
        async with self.desk.lock:
            if plan.refusal is None:
                price = risk.entry_price(signal, plan.intents[0].limit_price if plan.intents else None)
                refusal = await self.desk.refusal(signal, price)
                if refusal is not None:  # recorded as an intake refusal: FAILED with the reason, nothing sent
                    plan = replace(plan, intents=(), refusal=refusal)
            lc, created = await self.workers.persist(self.ledger.open_lifecycle, signal, mode=mode,
                                                     extended_hours=plan.extended, at=self._now(), facts=plan.facts,
                                                     writes=Writes(intents=plan.intents))
            if not created:
                return self.book.open.get(lc.id, lc)
            log.info("lifecycle %s %s %s: -> %s (created, intake)", lc.id, lc.signal_id, lc.symbol, lc.state.value)
            self.book.put(lc)
        self.router.register(lc, self.conductor.ledger_id)
        for intent in plan.intents:
            self.router.intend(lc.id, intent)
        async with self.book.lock(lc.id):
            if plan.refusal is not None:
                return await self.conductor.carry_out(lc, decisions.refuse_entry(plan.refusal))
            crash_point("after_intent")
            return await self.conductor.place(lc, Leg.ENTRY)

    # --- news ---------------------------------------------------------------------------------

    async def _on_event(self, event: OrderEvent) -> None:
        # The SDK awaits this handler before reading the next frame: hand the event to its own
        # task so one lifecycle's broker round trip never stalls every other lifecycle's news.
        # Tasks take the lifecycle lock in creation order, so one lifecycle's events stay ordered.
        self.workers.spawn(self._handle_event(event))

    async def _handle_event(self, event: OrderEvent) -> None:
        coid = event.order.client_order_id
        route = await self.router.find(coid, lambda c: self.workers.persist(self.ledger.order, c))
        if route is None:
            if coid.startswith(CLIENT_ORDER_ID_PREFIX):
                await self.reconciler.unknown_order(event.order, via="stream")
            else:
                log.info("update for an order this engine does not own: %s %s", coid, event.event)
            return
        lifecycle_id, leg = route
        report = report_of(event.order, event)
        async with self.book.lock(lifecycle_id):
            self.book.heard(lifecycle_id)
            lc = self.book.open.get(lifecycle_id)
            if lc is None:  # already terminal: keep the late order status and fill, change nothing else
                await self.conductor.keep_late_news(lifecycle_id, report)
                return
            await self.conductor.on_report(lc, leg, report, source="stream")

    async def _on_connect(self) -> None:
        """Events sent while the socket was down are lost for good: ask REST what happened."""
        if self.book.open or self._resumed:
            log.info("trade_updates stream connected; reconciling %d open lifecycles", len(self.book.open))
        else:  # the first connect of a start: the resume has not loaded the ledger's open lifecycles yet
            log.info("trade_updates stream connected; the resume reconciles the lifecycles left open")
        self.connected.set()
        # In the background: the SDK reads no frame until this returns, and a reconcile can wait
        # on rate-limit tokens for a long time.
        self.workers.spawn(self.reconcile(list(self.book.open.values())))

    async def _on_deadline(self, lifecycle_id: int) -> None:
        await self.conductor.on_deadline(lifecycle_id)

    async def _on_verify(self, lifecycle_id: int) -> None:
        await self.reconciler.on_verify(lifecycle_id)

    async def _on_follow(self, lifecycle_id: int) -> None:
        if self.emulator is not None:
            await self.emulator.on_follow(lifecycle_id)
