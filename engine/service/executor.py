"""The execution service: the only place that touches both the ledger and the broker.

Every step is load → decide (pure core) → persist → act. A broker call follows the commit of the
transition (and order intent) that implies it; its outcome comes back as an order update, from
the call's own reply, the trade_updates stream, or a REST look-up — all three take one path.

Concurrency: one asyncio loop. Events of one lifecycle are serialised by its lock. Ledger writes
run on one writer thread (SQLite wants a single writer; the loop never waits on an fsync) and
broker calls on a small pool behind the rate limiter, so neither blocks the loop.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar

from engine.core.config import Settings
from engine.service.crash import crash_point
from engine.core.domain import CLIENT_ORDER_ID_PREFIX, Leg, Mode, Side, Signal, client_order_id
from engine.core.errors import LedgerUnavailable, SignalConflict, StaleLifecycle
from engine.ledger import FillRecord, Ledger, OrderIntent, OrderUpdate, Writes
from engine.core.lifecycle import TERMINAL, Lifecycle, Outcome, State, restore, snapshot
from engine.broker.port import (
    Broker,
    BrokerAmbiguous,
    BrokerNotFound,
    BrokerOrder,
    BrokerRejected,
    Kind,
    OrderEvent,
    Session,
)
from engine.core.pricing import entry_limit, exits_from_fill, fraction, judge_fill, ratio, to_tick
from engine.broker.ratelimit import Priority, RateLimiter

log = logging.getLogger("smartexec")
T = TypeVar("T")

# States in which the engine waits for news from the broker, by the leg it waits on.
_WAITING: dict[State, tuple[Leg, ...]] = {
    State.LIMIT_SUBMITTED: (Leg.ENTRY,),
    State.PARTIALLY_FILLED: (Leg.ENTRY,),
    State.CANCEL_REQUESTED: (Leg.ENTRY,),
    State.EXITS_PLACED: (Leg.TAKE_PROFIT, Leg.STOP),
    State.REJECTED: (Leg.FLATTEN,),
}
MAX_SUBMIT_TRIES = 3
BULK_PAGE = 500  # Alpaca's largest page
# A failed listing is tried again before falling back to one look-up per lifecycle, which at
# Alpaca's rate limit costs minutes per thousand lifecycles.
LISTING_TRIES = 3
MAX_FLATTEN_ATTEMPTS = 3
# A reconcile listing starts this long before the oldest instant it must cover (clock skew).
LISTING_MARGIN = timedelta(minutes=1)
STOP_GRACE = 5.0  # seconds stop() gives the news already received to be recorded
# Outside regular hours Alpaca takes no market order: flatten with a limit this far through the fill.
EXTENDED_FLATTEN_THROUGH = Decimal("0.01")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class _Due:
    at: datetime
    lifecycle_id: int
    what: str  # "deadline" (cancel the entry) or "verify" (look the entry up after a cancel)

    def __lt__(self, other: "_Due") -> bool:
        return (self.at, self.lifecycle_id) < (other.at, other.lifecycle_id)


class Executor:
    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        broker: Broker,
        *,
        limiter: RateLimiter | None = None,
        poll_interval: float = 15.0,
        verify_after: float = 2.0,
        broker_workers: int = 8,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.broker = broker
        self.limiter = limiter or RateLimiter()
        self.poll_interval = poll_interval
        self.verify_after = verify_after
        self._now = clock
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="ledger")
        self._io = ThreadPoolExecutor(broker_workers, thread_name_prefix="broker")
        self._open: dict[int, Lifecycle] = {}
        self._routes: dict[str, tuple[int, Leg]] = {}
        self._coids: dict[tuple[int, Leg], str] = {}
        self._locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._news: dict[int, float] = {}
        self._seen: dict[str, tuple[str, Decimal]] = {}  # last (status, filled qty) per client order id
        self._flatten_attempt: dict[int, int] = {}
        self._due: list[_Due] = []
        self._wake = asyncio.Event()
        self._changed = asyncio.Condition()
        self._tasks: list[asyncio.Task[Any]] = []
        self._background: set[asyncio.Future[None]] = set()
        self._session: tuple[float, Session] | None = None
        self._session_lock = asyncio.Lock()  # a burst of signals asks the clock once, not once each
        # Orders under our prefix placed since this instant have not been checked for orphans yet.
        self._scanned_to = clock()

    # --- life of the service ------------------------------------------------------------------

    async def start(self, *, stream: bool = True) -> None:
        mode = Mode.SMART if self.settings.use_smart_executor else Mode.LEGACY
        log.info(
            "Smart Order Executor initialized (mode=%s, limit buffer %s, fill timeout %ss, max slippage %s, "
            "min R/R %s, extended hours %s)", mode.value, self.settings.limit_buffer_regular,
            self.settings.fill_timeout, self.settings.max_slippage_pct, self.settings.min_rr_ratio,
            "on" if self.settings.extended_hours else "off",
        )
        self._tasks.append(asyncio.create_task(self._timer_loop(), name="timers"))
        self._tasks.append(asyncio.create_task(self._poll_loop(), name="poller"))
        if stream:
            self._tasks.append(asyncio.create_task(self.broker.stream(self._on_event, self._on_connect),
                                                   name="stream"))
        await self.resume()

    async def stop(self) -> None:
        # Stop taking news (stream, timers, poller) first, then let what was already received be
        # recorded: an event taken off the socket is never sent again. Whatever is still busy
        # after a grace period (a ledger outage, a broker retry) is cancelled; the next start's
        # reconcile picks it up from REST.
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._background:
            await asyncio.wait(list(self._background), timeout=STOP_GRACE)
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._io.shutdown(wait=False, cancel_futures=True)
        self._writer.shutdown(wait=True)

    async def __aenter__(self) -> "Executor":
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    # --- plumbing -------------------------------------------------------------------------------

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._writer, partial(fn, *args, **kwargs))

    async def _call(self, priority: Priority, fn: Callable[..., T], **kwargs: Any) -> T:
        await self.limiter.acquire(priority)
        return await asyncio.get_running_loop().run_in_executor(self._io, partial(fn, **kwargs))

    async def _persist(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A ledger write that must happen: retried while the database is down, and nothing that
        depends on it is sent to the broker meanwhile."""
        delay = 0.2
        while True:
            try:
                return await self._db(fn, *args, **kwargs)
            except LedgerUnavailable as exc:
                log.error("ledger unavailable, no order will be sent until it is back; retrying in %.1fs: %s",
                          delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _record(self, lc: Lifecycle, trigger: str, facts: dict[str, Any], *, source: str,
                      writes: Writes | None = None) -> Outcome:
        before = lc.state
        try:
            outcome = await self._persist(self.ledger.record, lc, trigger, facts, at=self._now(), source=source,
                                          writes=writes)
        except StaleLifecycle:
            # Someone else moved it: take the ledger's word and decide again.
            fresh = await self._persist(self.ledger.get, lc.id)
            assert fresh is not None
            restore(lc, snapshot(fresh))
            outcome = await self._persist(self.ledger.record, lc, trigger, facts, at=self._now(), source=source,
                                          writes=writes)
        if outcome is Outcome.MOVED:
            log.info("lifecycle %s %s %s: %s -> %s (%s, %s)", lc.id, lc.signal_id, lc.symbol, before.value,
                     lc.state.value, trigger, source)
            if lc.terminal:
                self._open.pop(lc.id, None)
            async with self._changed:
                self._changed.notify_all()
        return outcome

    def _register(self, lc: Lifecycle, orders: Iterable[dict[str, Any]] = ()) -> None:
        if not lc.terminal:
            self._open[lc.id] = lc
        self._route(lc, Leg.ENTRY, client_order_id(lc.signal_id, Leg.ENTRY))
        for row in orders:
            self._route(lc, Leg(row["leg"]), row["client_order_id"])

    def _route(self, lc: Lifecycle, leg: Leg, coid: str) -> None:
        self._routes[coid] = (lc.id, leg)
        self._coids[(lc.id, leg)] = coid

    async def _market_session(self) -> Session:
        async with self._session_lock:
            if self._session is None or time.monotonic() - self._session[0] > 5.0:
                self._session = (time.monotonic(), await self._call(Priority.QUERY, self.broker.session))
            return self._session[1]

    async def wait_for(self, lifecycle_id: int, states: Iterable[State] = TERMINAL, timeout: float = 30.0) -> Lifecycle:
        """Wait until a lifecycle reaches one of `states` (for callers, the demo and tests)."""
        wanted = frozenset(states)

        async def reached() -> Lifecycle | None:
            live = self._open.get(lifecycle_id)
            if live is not None and live.state not in wanted:
                return None
            # The live lifecycle moves before its commit (which may still fail and restore it):
            # confirm with the ledger's row, read on the writer thread behind any commit in flight.
            lc = await self._persist(self.ledger.get, lifecycle_id)
            return lc if lc is not None and lc.state in wanted else None

        async with asyncio.timeout(timeout):
            while True:
                async with self._changed:
                    found = await reached()
                    if found is not None:
                        return found
                    await self._changed.wait()

    # --- intake -------------------------------------------------------------------------------

    async def submit(self, signal: Signal, *, mode: Mode | None = None) -> Lifecycle:
        """Hand over one signal. Idempotent by signal id; the entry is placed before this returns.
        `mode` overrides USE_SMART_EXECUTOR for this signal (e.g. to compare the two paths)."""
        known = await self._persist(self.ledger.find_by_signal, signal.signal_id)
        if known is not None:
            differences = Signal(known.signal_id, known.symbol, Side(known.side), known.qty, known.signal_price,
                                 known.stop, known.target).differences(signal)
            if differences:
                raise SignalConflict(signal.signal_id, differences)
            return self._open.get(known.id, known)

        mode = mode or (Mode.SMART if self.settings.use_smart_executor else Mode.LEGACY)
        session = await self._market_session()
        extended = session is Session.EXTENDED
        refusal = None
        if session is Session.CLOSED:
            refusal = "market closed"
        elif extended and not self.settings.extended_hours:
            refusal = "outside regular hours and extended hours are disabled (SMART_EXECUTOR_EXTENDED_HOURS)"
        elif extended and mode is Mode.LEGACY:
            refusal = "outside regular hours: the legacy path sends market orders, which Alpaca refuses then"

        coid = client_order_id(signal.signal_id, Leg.ENTRY)
        facts: dict[str, Any] = {"session": session.value}
        intents: list[OrderIntent] = []
        if refusal is None and mode is Mode.SMART:
            limit = entry_limit(signal.price, signal.side, self.settings.limit_buffer(extended))
            facts["limit_price"] = limit
            intents.append(OrderIntent(coid, Leg.ENTRY, signal.side, "limit", "day", signal.qty, limit_price=limit,
                                       extended_hours=extended))
        elif refusal is None:
            intents.append(OrderIntent(coid, Leg.ENTRY, signal.side, "market", "day", signal.qty))

        lc, created = await self._persist(self.ledger.open_lifecycle, signal, mode=mode, extended_hours=extended,
                                          at=self._now(), facts=facts, writes=Writes(intents=intents))
        if not created:
            return self._open.get(lc.id, lc)
        log.info("lifecycle %s %s %s: -> %s (created, intake)", lc.id, lc.signal_id, lc.symbol, lc.state.value)
        self._register(lc)
        async with self._locks[lc.id]:
            if refusal is not None:
                await self._reject_entry(lc, refusal, source="engine")
                return lc
            crash_point("after_intent")
            await self._place_entry(lc)
        return lc

    async def _reject_entry(self, lc: Lifecycle, reason: str, *, source: str,
                            writes: Writes | None = None) -> None:
        log.warning("Smart executor rejected %s %s", lc.signal_id, reason)
        await self._record(lc, "rejected", {"reject_reason": reason}, source=source, writes=writes)

    # --- the entry ----------------------------------------------------------------------------

    def _entry_request(self, lc: Lifecycle) -> Callable[[], BrokerOrder]:
        coid = self._coids[(lc.id, Leg.ENTRY)]
        side = Side(lc.side)
        if lc.mode == Mode.LEGACY.value:
            return partial(self.broker.submit_market, client_order_id=coid, symbol=lc.symbol, side=side, qty=lc.qty)
        assert lc.limit_price is not None
        return partial(self.broker.submit_limit, client_order_id=coid, symbol=lc.symbol, side=side, qty=lc.qty,
                       limit_price=lc.limit_price, time_in_force="day", extended_hours=lc.extended_hours)

    async def _send(self, priority: Priority, coid: str, request: Callable[[], BrokerOrder]) -> BrokerOrder | None:
        """Submit with a deterministic client order id. An ambiguous outcome is resolved by looking
        the id up; only a definite 'not there' allows sending again, with the same id, so a late
        original and a resend can never both become orders. None: still unknown after every try."""
        for attempt in range(1, MAX_SUBMIT_TRIES + 1):
            try:
                return await self._call(priority, request)
            except BrokerAmbiguous as exc:
                log.warning("submit of %s ambiguous (%s); looking it up", coid, exc)
            for _ in range(3):
                try:
                    found = await self._call(Priority.QUERY, self.broker.get_order, client_order_id=coid)
                except BrokerAmbiguous:
                    await asyncio.sleep(0.2 * attempt)
                    continue
                if found is not None:
                    return found
                break
            else:
                continue  # the look-up itself never answered: try the whole round again
            await asyncio.sleep(0.2 * attempt)
        return None

    async def _place_entry(self, lc: Lifecycle) -> None:
        coid = self._coids[(lc.id, Leg.ENTRY)]
        try:
            order = await self._send(Priority.ENTRY, coid, self._entry_request(lc))
        except BrokerRejected as exc:
            await self._reject_entry(lc, f"broker rejected the entry: {exc}", source="engine",
                                     writes=Writes(updates=[OrderUpdate(coid, "rejected")]))
            return
        if order is None:
            await self._reject_entry(lc, "the entry could not be confirmed at the broker", source="engine")
            return
        crash_point("after_entry_submit")
        await self._dispatch(lc, Leg.ENTRY, order.kind, order, source="engine")

    # --- order updates: one path for replies, stream events and look-ups ------------------------

    async def _on_event(self, event: OrderEvent) -> None:
        # The SDK awaits this handler before reading the next frame: hand the event to its own
        # task so one lifecycle's broker round trip never stalls every other lifecycle's news.
        # Tasks take the lifecycle lock in creation order, so one lifecycle's events stay ordered.
        self._spawn(self._handle_event(event))

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(self._guarded(work))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _handle_event(self, event: OrderEvent) -> None:
        route = await self._find_route(event.order.client_order_id)
        if route is None:
            if event.order.client_order_id.startswith(CLIENT_ORDER_ID_PREFIX):
                await self._flag_orphan(event.order, via="stream")
            else:
                log.info("update for an order this engine does not own: %s %s", event.order.client_order_id,
                         event.event)
            return
        lifecycle_id, leg = route
        async with self._locks[lifecycle_id]:
            self._news[lifecycle_id] = time.monotonic()
            lc = self._open.get(lifecycle_id)
            if lc is None:  # already terminal: keep the late order status and fill, change nothing else
                await self._persist(self.ledger.save_orders, lifecycle_id,
                                    await self._fill_writes(event.order, event), at=self._now())
                return
            await self._dispatch(lc, leg, event.kind, event.order, source="stream", event=event)

    async def _find_route(self, coid: str) -> tuple[int, Leg] | None:
        # An exit leg's id is the broker's; its first event can beat the reply that tells us it.
        for _ in range(40):
            if coid in self._routes:
                return self._routes[coid]
            await asyncio.sleep(0.05)
        row = await self._persist(self.ledger.order, coid)
        return None if row is None else (row["lifecycle_id"], Leg(row["leg"]))

    async def _dispatch(self, lc: Lifecycle, leg: Leg, kind: Kind, order: BrokerOrder, *, source: str,
                        event: OrderEvent | None = None) -> None:
        self._seen[order.client_order_id] = (order.status, order.filled_qty)
        if leg is Leg.ENTRY:
            await self._on_entry(lc, kind, order, source=source, event=event)
        elif leg is Leg.FLATTEN:
            await self._on_flatten(lc, kind, order, source=source, event=event)
        else:
            await self._on_exit_leg(lc, leg, kind, order, source=source, event=event)

    async def _fill_writes(self, order: BrokerOrder, event: OrderEvent | None) -> Writes:
        """The order's status, and the event's execution unless the ledger has it (a replayed event)."""
        fills = []
        if (event is not None and event.execution_id and event.qty is not None and event.price is not None
                and not await self._persist(self.ledger.has_fill, event.execution_id)):
            fills.append(FillRecord(order.client_order_id, event.execution_id, event.qty, event.price, event.at))
        return Writes(updates=[_update(order)], fills=fills)

    async def _on_entry(self, lc: Lifecycle, kind: Kind, order: BrokerOrder, *, source: str,
                        event: OrderEvent | None) -> None:
        writes = await self._fill_writes(order, event)
        fill_facts = {"filled_qty": order.filled_qty, "filled_avg_price": order.filled_avg_price,
                      "broker_order_id": order.broker_order_id}
        if event is not None and event.execution_id:
            fill_facts.update(execution_id=event.execution_id, price=event.price, qty=event.qty)

        if kind is Kind.ACK or (kind is Kind.INFO and lc.state is State.PENDING):
            facts: dict[str, Any] = {"broker_order_id": order.broker_order_id, "status": order.status}
            if lc.mode == Mode.SMART.value:
                facts["entry_deadline"] = self._now() + timedelta(seconds=self.settings.timeout(lc.extended_hours))
            if await self._record(lc, "submitted", facts, source=source, writes=writes) is Outcome.MOVED:
                self._arm(lc)
        elif kind is Kind.PARTIAL_FILL:
            if order.filled_qty <= lc.filled_qty:  # stale or repeated: cumulative quantity is the truth
                await self._persist(self.ledger.save_orders, lc.id, writes, at=self._now())
                return
            if lc.entry_deadline is None and lc.mode == Mode.SMART.value:
                fill_facts["entry_deadline"] = self._now() + timedelta(
                    seconds=self.settings.timeout(lc.extended_hours))
            crash_point("before_fill_commit")
            if await self._record(lc, "partial_fill", fill_facts, source=source, writes=writes) is Outcome.MOVED:
                self._arm(lc)
        elif kind is Kind.FILL:
            crash_point("before_fill_commit")
            await self._record(lc, "fill", fill_facts, source=source, writes=writes)
            await self._after_fill(lc)
        elif kind is Kind.DONE:
            if order.filled_qty > 0:
                # Canceled or expired after a partial fill: the filled part is the position to manage.
                await self._record(lc, "canceled_partial", {**fill_facts, "status": order.status}, source=source,
                                   writes=writes)
                await self._after_fill(lc)
            else:
                reason = "fill timeout" if lc.state is State.CANCEL_REQUESTED else f"entry {order.status} by the broker"
                await self._record(lc, "canceled", {"reject_reason": reason, "status": order.status},
                                   source=source, writes=writes)
        elif kind is Kind.REJECTED:
            await self._reject_entry(lc, f"broker rejected the entry ({order.status})", source=source, writes=writes)
        elif kind is Kind.CANCEL_REJECTED:
            await self._persist(self.ledger.save_orders, lc.id, writes, at=self._now())
            self._schedule(lc.id, "verify", 0.0)
        else:
            await self._persist(self.ledger.save_orders, lc.id, writes, at=self._now())

    # --- after the fill: guards, then exits or flatten ----------------------------------------

    async def _after_fill(self, lc: Lifecycle) -> None:
        if lc.state is not State.FILLED:
            return
        assert lc.filled_avg_price is not None
        side = Side(lc.side)
        # The smart path anchors exits to the price paid; the legacy path keeps its old arithmetic
        # (anchored to the signal), so the ledger shows what that costs.
        anchor = lc.filled_avg_price if lc.mode == Mode.SMART.value else lc.signal_price
        exits = exits_from_fill(anchor, side, stop_level=lc.stop, target_level=lc.target,
                                default_stop_pct=self.settings.default_stop_pct,
                                target_multiple=self.settings.min_rr_ratio)
        verdict = judge_fill(side=side, signal_price=lc.signal_price, fill_price=lc.filled_avg_price, exits=exits,
                             max_slippage=self.settings.max_slippage_pct,
                             min_reward_risk=self.settings.min_rr_ratio)
        facts: dict[str, Any] = {"slippage": fraction(verdict.slippage), "exit_stop": exits.stop,
                                 "exit_target": exits.target, "reward_risk": verdict.reward_risk}
        if verdict.passed:
            coid = client_order_id(lc.signal_id, Leg.TAKE_PROFIT)
            self._route(lc, Leg.TAKE_PROFIT, coid)
            intent = OrderIntent(coid, Leg.TAKE_PROFIT, side.opposite, "limit", "gtc", lc.filled_qty,
                                 limit_price=exits.target, stop_price=exits.stop)
            await self._record(lc, "guards_passed", facts, source="engine", writes=Writes(intents=[intent]))
            crash_point("after_validated")
            await self._place_exits(lc)
        else:
            reason = "; ".join(verdict.reasons)
            log.warning("Smart executor rejected %s %s", lc.signal_id, reason)
            await self._record(lc, "guards_failed", {**facts, "reject_reason": reason}, source="engine",
                               writes=Writes(intents=[self._flatten_intent(lc, 1)]))
            crash_point("after_rejected")
            await self._flatten(lc)

    async def _place_exits(self, lc: Lifecycle) -> None:
        coid = self._coids[(lc.id, Leg.TAKE_PROFIT)]
        assert lc.exit_target is not None and lc.exit_stop is not None
        request = partial(self.broker.submit_oco, client_order_id=coid, symbol=lc.symbol,
                          side=Side(lc.side).opposite, qty=lc.filled_qty, take_profit=lc.exit_target,
                          stop=lc.exit_stop)
        try:
            order = await self._send(Priority.PROTECT, coid, request)
        except BrokerRejected as exc:
            await self._exits_refused(lc, f"broker rejected the exits: {exc}", OrderUpdate(coid, "rejected"))
            return
        if order is None:
            await self._exits_refused(lc, "the exits could not be confirmed at the broker", None)
            return
        crash_point("after_exits_submit")
        intents, updates = [], [_update(order)]
        for leg_order in order.legs:
            leg = Leg.STOP if leg_order.order_type in ("stop", "stop_limit") else Leg.TAKE_PROFIT
            if leg_order.client_order_id != coid:
                self._route(lc, leg, leg_order.client_order_id)
                intents.append(OrderIntent(leg_order.client_order_id, leg, leg_order.side, leg_order.order_type,
                                           "gtc", leg_order.qty, limit_price=leg_order.limit_price,
                                           stop_price=leg_order.stop_price))
                updates.append(_update(leg_order))
        facts: dict[str, Any] = {"broker_order_id": order.broker_order_id, "status": order.status}
        if lc.extended_hours:
            # Alpaca holds no OCO/stop orders outside regular hours: the GTC pair is accepted now
            # and works from the next regular open; until then the position is not protected.
            facts["exits_active_from"] = "next regular session open"
        await self._record(lc, "exits_placed", facts, source="engine", writes=Writes(intents=intents, updates=updates))
        if order.kind in (Kind.FILL, Kind.PARTIAL_FILL):  # a target already through the market
            await self._on_exit_leg(lc, Leg.TAKE_PROFIT, order.kind, order, source="engine")

    async def _exits_refused(self, lc: Lifecycle, reason: str, update: OrderUpdate | None) -> None:
        log.warning("Smart executor rejected %s %s", lc.signal_id, reason)
        writes = Writes(intents=[self._flatten_intent(lc, 1)], updates=[update] if update else [])
        await self._record(lc, "exits_rejected", {"reject_reason": reason}, source="engine", writes=writes)
        crash_point("after_rejected")
        await self._flatten(lc)

    async def _on_exit_leg(self, lc: Lifecycle, leg: Leg, kind: Kind, order: BrokerOrder, *, source: str,
                           event: OrderEvent | None = None) -> None:
        writes = await self._fill_writes(order, event)
        if kind is Kind.FILL and lc.state is State.EXITS_PLACED and order.filled_avg_price is not None:
            facts = {**self._outcome(lc, order.filled_avg_price), "exit_leg": leg.value,
                     "broker_order_id": order.broker_order_id}
            crash_point("before_exit_fill_commit")
            await self._record(lc, "exit_filled", facts, source=source, writes=writes)
        else:
            await self._persist(self.ledger.save_orders, lc.id, writes, at=self._now())

    def _outcome(self, lc: Lifecycle, exit_price: Decimal) -> dict[str, Any]:
        assert lc.filled_avg_price is not None
        side = Side(lc.side)
        per_share = (exit_price - lc.filled_avg_price) * side.sign
        facts: dict[str, Any] = {"exit_price": exit_price, "realized_pnl": per_share * lc.filled_qty}
        if lc.exit_stop is not None and (risk := (lc.filled_avg_price - lc.exit_stop) * side.sign) > 0:
            facts["r_multiple"] = ratio(per_share / risk)
        return facts

    # --- flatten: close exactly what this lifecycle owns ----------------------------------------

    def _flatten_intent(self, lc: Lifecycle, attempt: int) -> OrderIntent:
        coid = client_order_id(lc.signal_id, Leg.FLATTEN, attempt)
        self._route(lc, Leg.FLATTEN, coid)
        self._flatten_attempt[lc.id] = attempt
        side = Side(lc.side).opposite
        if lc.extended_hours:
            assert lc.filled_avg_price is not None
            through = to_tick(lc.filled_avg_price * (1 + side.sign * EXTENDED_FLATTEN_THROUGH))
            return OrderIntent(coid, Leg.FLATTEN, side, "limit", "day", lc.filled_qty, limit_price=through,
                               extended_hours=True)
        return OrderIntent(coid, Leg.FLATTEN, side, "market", "day", lc.filled_qty)

    async def _flatten(self, lc: Lifecycle) -> None:
        coid = self._coids[(lc.id, Leg.FLATTEN)]
        row = await self._persist(self.ledger.order, coid)
        assert row is not None
        side = Side(row["side"])
        if row["order_type"] == "market":
            request = partial(self.broker.submit_market, client_order_id=coid, symbol=lc.symbol, side=side,
                              qty=row["qty"])
        else:
            request = partial(self.broker.submit_limit, client_order_id=coid, symbol=lc.symbol, side=side,
                              qty=row["qty"], limit_price=row["limit_price"], time_in_force="day",
                              extended_hours=True)
        try:
            order = await self._send(Priority.PROTECT, coid, request)
        except BrokerRejected as exc:
            await self._retry_flatten(lc, f"flatten {coid} rejected: {exc}", OrderUpdate(coid, "rejected"))
            return
        if order is None:
            await self._retry_flatten(lc, f"flatten {coid} could not be confirmed", None)
            return
        crash_point("after_flatten_submit")
        await self._on_flatten(lc, order.kind, order, source="engine")

    async def _retry_flatten(self, lc: Lifecycle, reason: str, update: OrderUpdate | None) -> None:
        attempt = self._flatten_attempt.get(lc.id, 1) + 1
        if attempt > MAX_FLATTEN_ATTEMPTS:
            log.critical("POSITION LEFT OPEN: %s %s %s after %d flatten attempts (%s); manual action needed",
                         lc.signal_id, lc.filled_qty, lc.symbol, attempt - 1, reason)
            if update is not None:
                await self._persist(self.ledger.save_orders, lc.id, Writes(updates=[update]), at=self._now())
            return
        log.error("%s; retrying as attempt %d", reason, attempt)
        writes = Writes(intents=[self._flatten_intent(lc, attempt)], updates=[update] if update else [])
        await self._persist(self.ledger.save_orders, lc.id, writes, at=self._now())
        await asyncio.sleep(0.5)
        await self._flatten(lc)

    async def _on_flatten(self, lc: Lifecycle, kind: Kind, order: BrokerOrder, *, source: str,
                          event: OrderEvent | None = None) -> None:
        writes = await self._fill_writes(order, event)
        if kind is Kind.FILL and order.filled_avg_price is not None:
            facts = {**self._outcome(lc, order.filled_avg_price), "broker_order_id": order.broker_order_id}
            await self._record(lc, "flattened", facts, source=source, writes=writes)
        elif kind in (Kind.DONE, Kind.REJECTED) and lc.state is State.REJECTED:
            await self._retry_flatten(lc, f"flatten {order.client_order_id} ended {order.status}", _update(order))
        else:
            await self._persist(self.ledger.save_orders, lc.id, writes, at=self._now())

    # --- the fill timeout ---------------------------------------------------------------------

    def _arm(self, lc: Lifecycle) -> None:
        if lc.entry_deadline is not None and lc.state in (State.LIMIT_SUBMITTED, State.PARTIALLY_FILLED):
            self._schedule(lc.id, "deadline", max(0.0, (lc.entry_deadline - self._now()).total_seconds()))

    def _schedule(self, lifecycle_id: int, what: str, delay: float) -> None:
        heapq.heappush(self._due, _Due(self._now() + timedelta(seconds=delay), lifecycle_id, what))
        self._wake.set()

    async def _timer_loop(self) -> None:
        while True:
            if not self._due:
                await self._wake.wait()
                self._wake.clear()
                continue
            wait = (self._due[0].at - self._now()).total_seconds()
            if wait > 0:
                # Not asyncio.wait_for: on Python 3.11 it swallows a cancel that lands as the
                # event is set, and stop() then waits for this loop forever.
                try:
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                self._wake.clear()
                continue
            due = heapq.heappop(self._due)
            handler = self._on_deadline if due.what == "deadline" else self._on_verify
            self._spawn(handler(due.lifecycle_id))

    async def _guarded(self, work: Awaitable[None]) -> None:
        try:
            await work
        except Exception:
            log.exception("background step failed")

    async def _on_deadline(self, lifecycle_id: int) -> None:
        async with self._locks[lifecycle_id]:
            lc = self._open.get(lifecycle_id)
            if lc is None or lc.state not in (State.LIMIT_SUBMITTED, State.PARTIALLY_FILLED):
                return
            if lc.entry_deadline is not None and lc.entry_deadline > self._now():
                self._arm(lc)  # re-armed later (e.g. a deadline set again on resume)
                return
            await self._record(lc, "timeout", {"entry_deadline": lc.entry_deadline}, source="timer")
            crash_point("after_timeout")
            await self._cancel_entry(lc)

    async def _cancel_entry(self, lc: Lifecycle) -> None:
        row = await self._persist(self.ledger.order, self._coids[(lc.id, Leg.ENTRY)])
        broker_id = None if row is None else row["broker_order_id"]
        try:
            if broker_id is None:
                raise BrokerNotFound("entry has no broker id yet")
            await self._call(Priority.PROTECT, self.broker.cancel, broker_order_id=broker_id)
        except (BrokerRejected, BrokerNotFound) as exc:
            # Usually the fill won the race ("already filled"): the look-up tells.
            log.info("cancel of %s refused (%s); looking the entry up", lc.signal_id, exc)
            self._schedule(lc.id, "verify", 0.0)
            return
        except BrokerAmbiguous as exc:
            log.warning("cancel of %s ambiguous (%s)", lc.signal_id, exc)
        crash_point("after_cancel_submit")
        self._schedule(lc.id, "verify", self.verify_after)

    async def _on_verify(self, lifecycle_id: int) -> None:
        async with self._locks[lifecycle_id]:
            lc = self._open.get(lifecycle_id)
            if lc is None:
                return
            # REST is the truth: a canceled (or filled) entry whose event never came is found here.
            order = await self._lookup(lc, Leg.ENTRY, None)
            if order is not None:
                await self._apply(lc, Leg.ENTRY, order)
            if lc.state is not State.CANCEL_REQUESTED:
                return
            if order is not None and order.kind in (Kind.ACK, Kind.PARTIAL_FILL):
                # Still working, not even pending_cancel: the cancel never took effect (refused
                # with a 429, or lost before the broker carried it out). Waiting would leave the
                # entry resting past its timeout until the day ends.
                log.warning("entry of %s still %s after its cancel; cancelling again", lc.signal_id, order.status)
                await self._cancel_entry(lc)  # schedules the next verification itself
            else:
                self._schedule(lc.id, "verify", self.verify_after)

    # --- stream gaps, polling and restart -----------------------------------------------------

    async def _on_connect(self) -> None:
        """Events sent while the socket was down are lost for good: ask REST what happened."""
        log.info("trade_updates stream connected; reconciling %d open lifecycles", len(self._open))
        # In the background: the SDK reads no frame until this returns, and a reconcile can wait
        # on rate-limit tokens for a long time.
        self._spawn(self.reconcile(list(self._open.values())))

    async def _poll_loop(self) -> None:
        """The websocket can go mute without dropping: look up lifecycles that had no news."""
        while True:
            await asyncio.sleep(self.poll_interval / 2)
            quiet_since = time.monotonic() - self.poll_interval
            quiet = [lc for lc in self._open.values()
                     if lc.state in _WAITING and self._news.get(lc.id, 0.0) < quiet_since]
            if quiet:
                await self._guarded(self.reconcile(quiet))

    async def _broker_orders(self, since: datetime) -> dict[str, BrokerOrder] | None:
        """Every order at the broker submitted after `since`, by client order id, in pages of
        BULK_PAGE: one call per 500 orders instead of one per lifecycle. None if the listing failed."""
        found: dict[str, BrokerOrder] = {}
        after = since
        while True:
            for attempt in range(1, LISTING_TRIES + 1):
                try:
                    page = await self._call(Priority.QUERY, self.broker.list_orders, after=after, limit=BULK_PAGE)
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

    async def reconcile(self, lifecycles: list[Lifecycle]) -> None:
        """Bring lifecycles up to date with the broker (after a restart, a reconnect, a mute stream),
        and flag orders under our prefix that the ledger never intended, even with nothing open."""
        started = self._now()
        snapshot = await self._broker_orders(min([self._scanned_to, *(lc.created_at for lc in lifecycles)])
                                             - LISTING_MARGIN)
        if snapshot is not None:
            self._scanned_to = started
            await self._guarded(self._flag_orphans(snapshot))
            heard = time.monotonic()  # the listing is news: the poller need not list them again soon
            for lc in lifecycles:
                self._news[lc.id] = heard
        # All at once (each under its own lock): a lifecycle waiting for a rate-limit token to place
        # its exits must not hold up the thousands behind it.
        await asyncio.gather(*(self._guarded(self._catch_up(lc.id, snapshot)) for lc in lifecycles))

    async def _flag_orphans(self, snapshot: dict[str, BrokerOrder]) -> None:
        # Our own orders are recorded (intent committed) before they are sent, so an order listed
        # here that the ledger does not know was never placed by an engine on this ledger.
        ours = [coid for coid in snapshot if coid.startswith(CLIENT_ORDER_ID_PREFIX) and coid not in self._routes]
        for coid in sorted(await self._persist(self.ledger.unknown_orders, ours)):
            await self._flag_orphan(snapshot[coid], via="reconcile")

    async def _flag_orphan(self, order: BrokerOrder, *, via: str) -> None:
        """Record an order under our prefix that the ledger never intended, and say so loudly.

        It is never cancelled, closed or adopted. With no lifecycle behind it the engine knows
        neither the signal nor the risk it was meant to carry: it may be a person's deliberate
        order, another engine's on another ledger, or the trace of a lost ledger. Acting on a
        guess could close a position someone else manages, or double an exit. A person decides."""
        news = await self._persist(self.ledger.record_orphan, order, via=via, at=self._now())
        if news == "new":
            log.warning("orphan order %s (%s %s %s %s, %s, filled %s) carries this engine's prefix but the ledger "
                        "never placed it: recorded in orphan_orders, left alone for a person to resolve",
                        order.client_order_id, order.side.value, order.qty, order.symbol, order.order_type,
                        order.status, order.filled_qty)
        elif news == "changed":
            log.warning("orphan order %s is now %s, filled %s at %s (left alone)", order.client_order_id,
                        order.status, order.filled_qty, order.filled_avg_price)

    async def _lookup(self, lc: Lifecycle, leg: Leg, snapshot: dict[str, BrokerOrder] | None) -> BrokerOrder | None:
        coid = self._coids.get((lc.id, leg))
        if coid is None:
            return None
        if snapshot is not None and (coid in snapshot or self._seen.get(coid, ("",))[0] == "intended"):
            return snapshot.get(coid)
        # Not in the listing although the broker may hold it (a broker clock behind ours, an order
        # placed this run and never reported): ambiguous, so it is asked for alone. An intent never
        # acknowledged is left to the resend, whose duplicate-id answer looks it up anyway.
        try:
            return await self._call(Priority.QUERY, self.broker.get_order, client_order_id=coid)
        except BrokerAmbiguous as exc:
            log.warning("look-up of %s failed: %s", coid, exc)
            return None

    async def _catch_up(self, lifecycle_id: int, snapshot: dict[str, BrokerOrder] | None) -> None:
        async with self._locks[lifecycle_id]:
            lc = self._open.get(lifecycle_id)
            if lc is None:
                return
            if lc.state is State.PENDING:
                await self._resume_pending(lc, await self._lookup(lc, Leg.ENTRY, snapshot))
            elif lc.state is State.FILLED:
                await self._after_fill(lc)
            elif lc.state is State.VALIDATED:
                await self._place_exits(lc)  # an exit already placed answers "duplicate": looked up, not resent
            elif lc.state is State.REJECTED:
                order = await self._lookup(lc, Leg.FLATTEN, snapshot)
                if order is not None and order.kind is not Kind.DONE:
                    await self._apply(lc, Leg.FLATTEN, order)
                else:
                    await self._flatten(lc)
            else:
                for leg in _WAITING.get(lc.state, ()):
                    order = await self._lookup(lc, leg, snapshot)
                    if order is not None and lc.state in _WAITING:
                        await self._apply(lc, leg, order)
                self._arm(lc)

    async def _apply(self, lc: Lifecycle, leg: Leg, order: BrokerOrder) -> None:
        """A looked-up order, applied only if it says something new."""
        if self._seen.get(order.client_order_id) == (order.status, order.filled_qty):
            return
        self._news[lc.id] = time.monotonic()
        await self._dispatch(lc, leg, order.kind, order, source="reconcile")

    async def resume(self) -> None:
        """Pick up every lifecycle a previous run left unfinished: the ledger says what was
        intended, one bulk listing says what the broker did meanwhile."""
        open_lifecycles = await self._persist(self.ledger.load_open)
        last = await self._persist(self.ledger.last_activity)
        if last is not None:  # orders placed under our prefix while no engine ran are looked for too
            self._scanned_to = min(self._scanned_to, last)
        rows_by_lifecycle: defaultdict[int, list[dict[str, Any]]] = defaultdict(list)
        for row in await self._persist(self.ledger.orders_of_open):
            rows_by_lifecycle[row["lifecycle_id"]].append(row)
            self._seen[row["client_order_id"]] = (row["status"], row["filled_qty"])
        for lc in open_lifecycles:
            self._register(lc, rows_by_lifecycle[lc.id])
            flattens = [r["client_order_id"] for r in rows_by_lifecycle[lc.id] if r["leg"] == Leg.FLATTEN.value]
            if flattens:
                self._flatten_attempt[lc.id] = int(flattens[-1].rsplit("fl", 1)[1])
        if open_lifecycles:
            log.info("resuming %d open lifecycles", len(open_lifecycles))
        await self.reconcile(open_lifecycles)
        for lc in open_lifecycles:
            if lc.state is State.CANCEL_REQUESTED:
                # Its verification died with the last process, and a crash right after the commit
                # leaves the cancel unsent: verifying finds the entry still working and cancels it.
                self._schedule(lc.id, "verify", 0.0)

    async def _resume_pending(self, lc: Lifecycle, order: BrokerOrder | None) -> None:
        if order is not None:
            await self._dispatch(lc, Leg.ENTRY, order.kind, order, source="reconcile")
            return
        age = (self._now() - lc.created_at).total_seconds()
        if age <= self.settings.timeout(lc.extended_hours):
            log.info("entry of %s never reached the broker; the signal is %.1fs old, sending it now", lc.signal_id,
                     age)
            await self._place_entry(lc)
        else:
            await self._reject_entry(lc, f"the entry never reached the broker and the signal is {age:.0f}s old "
                                         f"(older than the fill timeout)", source="reconcile")


def _update(order: BrokerOrder) -> OrderUpdate:
    return OrderUpdate(order.client_order_id, order.status, broker_order_id=order.broker_order_id,
                       filled_qty=order.filled_qty, filled_avg_price=order.filled_avg_price)
