"""What an engine holds and asks for while it drives many lifecycles (issue 16, items 4 and 5):
a timer per armed lifecycle however often it is reconciled, nothing kept for a finished one, and
a resume that lists the broker's orders once, not once more for every poll during it."""

from __future__ import annotations

import asyncio
import math
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from harness import FILL_QUOTE, SETTINGS, TARGET_QUOTE, Rig, a_signal, migrated_ledger, quote, run, sqlite_url

from engine.broker.alpaca import AlpacaBroker
from engine.broker.port import BrokerOrder
from engine.broker.ratelimit import RateLimiter
from engine.core.domain import Side, Signal
from engine.core.lifecycle import State
from engine.ledger import Ledger
from engine.service import Executor
from engine.service.reconciler import BULK_PAGE
from engine.service.timers import DEADLINE, Due, Timers
from engine.sim import Venue

from .in_flight import in_flight

SYMBOL = "AAPL"


def test_the_same_timer_asked_for_again_is_one_timer() -> None:
    """Prevents the queue from growing by one fill deadline per resting entry at every reconcile."""
    now = datetime(2024, 6, 12, 14)
    timers = Timers(lambda: now, lambda _: None, {DEADLINE: lambda _: asyncio.sleep(0)})
    for _ in range(5):
        timers.schedule_at(7, DEADLINE, now + timedelta(seconds=60))
    timers.schedule_at(8, DEADLINE, now + timedelta(seconds=60))
    assert timers.queued() == 2
    assert Due(now, 1, DEADLINE).__slots__  # slotted: no per-entry dictionary
    timers.cancel(7)
    assert timers.queued() == 1 and timers.pending(DEADLINE) == {8}


def test_reconciling_a_resting_entry_again_and_again_keeps_one_fill_deadline(rig: Rig) -> None:
    """Prevents the bug a previous attempt found: every reconcile (each poll of a quiet lifecycle,
    each reconnect) queued another fill-deadline timer per resting entry, so the queue grew without
    bound and each deadline fired once per reconcile."""
    async def body() -> None:
        async with rig.running(poll_interval=0.5) as executor:
            lc = await executor.submit(a_signal("twice"))
            await rig.reach(executor, lc.id, State.LIMIT_SUBMITTED)
            assert executor.timers.queued() == 1
            for _ in range(3):
                await executor.reconcile([executor.book.open[lc.id]])
            await asyncio.sleep(1.5)  # and the poller's reconciles of the quiet lifecycle (every 0.25 s)
            assert executor.book.open[lc.id].state is State.LIMIT_SUBMITTED
            assert executor.timers.queued() == 1
            assert executor.timers.pending(DEADLINE) == {lc.id}

    run(body)


def test_a_finished_lifecycle_is_let_go(rig: Rig) -> None:
    """Prevents a long-running engine from keeping every lifecycle it ever drove: its routes,
    intents, timers, news time and lock are gone once it has finished (after the linger)."""
    async def body() -> None:
        async with rig.running() as executor:
            executor.book.linger = 0.3
            lc = await executor.submit(a_signal("done"))
            await rig.reach(executor, lc.id, State.LIMIT_SUBMITTED)
            assert executor.router.tracked() == (1, 1) and executor.timers.queued() == 1
            await quote(rig.venue, FILL_QUOTE)
            await rig.reach(executor, lc.id, State.EXITS_PLACED)
            await quote(rig.venue, TARGET_QUOTE)
            await rig.reach(executor, lc.id, State.CLOSED)
            for _ in range(100):
                if executor.router.tracked() == (0, 0):
                    break
                await asyncio.sleep(0.05)
            assert executor.router.tracked() == (0, 0)
            assert executor.timers.queued() == 0
            assert executor.book.tracked() == 0
            await asyncio.sleep(2.5)  # late news (the cancelled sibling leg) is routed by the ledger
            assert executor.book.locks() == 0
            assert executor.router.tracked() == (0, 0)

    run(body)


# --- a resume of 1,200 lifecycles -------------------------------------------------------------------

class CountingBroker(AlpacaBroker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.listings = 0

    def list_orders(self, *, after: datetime, limit: int = 500) -> list[BrokerOrder]:
        self.listings += 1  # one GET /v2/orders
        return super().list_orders(after=after, limit=limit)


def resting(venue: Venue, url: str, n: int) -> None:
    """n lifecycles LIMIT_SUBMITTED, their entries resting at the venue."""
    in_flight(venue, url, [Signal(f"many-{i}", SYMBOL, Side.BUY, Decimal(10), Decimal("100.00"), Decimal("99.00"))
                           for i in range(n)])


def test_a_resume_lists_the_orders_once_while_the_poller_runs(venue: Venue, tmp_path: Path) -> None:
    """Prevents the poller from starting a second full listing while the resume's is still paced by
    the rate limiter (at 50,000 lifecycles: 203 REST reads instead of ~100, and 84 s instead of 58):
    the lifecycles a running reconcile covers are left to it."""
    n = 1200
    url = sqlite_url(tmp_path)
    with migrated_ledger(url):
        pass
    resting(venue, url, n)

    async def body() -> None:
        ledger = Ledger(url)
        broker = CountingBroker(venue.api_key, venue.secret_key, rest_url=venue.rest_url,
                                stream_url=venue.stream_url, request_timeout=10.0)
        # Paced (2 calls a second, no burst) so the listing spans several poll ticks (every 0.25 s).
        executor = Executor(SETTINGS, ledger, broker, limiter=RateLimiter(per_minute=120, burst=1),
                            poll_interval=0.5, clock=venue.clock.now)
        try:
            await executor.start(stream=False)
            assert broker.listings == math.ceil(n / BULK_PAGE)  # 3 pages: the resume's, nothing more
            assert len(executor.timers.pending(DEADLINE)) == n and executor.timers.queued() == n
            assert not any(executor.reconciler.covered(lc_id) for lc_id in executor.book.open)
            await asyncio.sleep(1.0)  # the covered lifecycles are polled again once the resume is over
            assert broker.listings > math.ceil(n / BULK_PAGE)
            assert executor.timers.queued() == n  # and polling them queues no second deadline
        finally:
            await executor.stop()
            ledger.close()

    run(body)
