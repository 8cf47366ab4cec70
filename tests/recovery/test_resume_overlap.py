"""A resume's catch-up overlaps its paced listing (issue 16): the lifecycles whose orders a page has
settled are caught up (their news committed) while the next page waits for its rate-limit token,
and every broker call their catch-up makes waits for the reconcile's own reads, as when the
catch-up began only after them."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from harness import FILL_QUOTE, SETTINGS, SYMBOL, migrated_ledger, quote, run, sqlite_url, until
from sqlalchemy import func, select

from engine.broker.alpaca import AlpacaBroker
from engine.broker.port import BrokerOrder
from engine.broker.ratelimit import Priority, RateLimiter
from engine.core.domain import Leg, Mode, Side, Signal
from engine.core.lifecycle import Lifecycle, State
from engine.core.orders import Kind
from engine.ledger import Ledger
from engine.ledger.schema import fills
from engine.service import Executor, reconciler
from engine.service.reconciler import Ahead, Reconciler
from engine.service.router import Router
from engine.service.workers import Workers, hold
from engine.sim import Venue

from .in_flight import in_flight

RESTS = "MSFT"  # entries on AAPL fill while the engine is down, those on MSFT rest
NOW = datetime(2024, 6, 12, 14, tzinfo=timezone.utc)


class RecordingBroker(AlpacaBroker):
    """Notes every REST call in order, and at each listing page the state the engine holds of
    one lifecycle."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[str] = []
        self.watched: tuple[Executor, int] | None = None
        self.seen_at_pages: list[State | None] = []
        self._lock = threading.Lock()

    def _note(self, name: str) -> None:
        with self._lock:
            self.calls.append(name)

    def list_orders(self, *, after: datetime, limit: int = 500) -> list[BrokerOrder]:
        if self.watched is not None:
            executor, lifecycle_id = self.watched
            lc = executor.book.open.get(lifecycle_id)
            self.seen_at_pages.append(None if lc is None else lc.state)
        self._note("list_orders")
        return super().list_orders(after=after, limit=limit)

    def __getattribute__(self, name: str) -> Any:
        found = super().__getattribute__(name)
        if name in ("submit_oco", "submit_limit", "submit_market", "cancel", "get_order", "fill_activities",
                    "fill_activities_on"):
            def noted(**kwargs: Any) -> Any:
                self._note(name)
                return found(**kwargs)
            return noted
        return found


def test_fills_found_on_the_first_page_are_committed_before_the_last_page_and_acted_on_after_the_reads(
        venue: Venue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Prevents the catch-up of a large resume from following its listing (at 50,000 lifecycles,
    ~12 s of commits after a listing the rate limiter paces over 37 s) and, the other way, an early
    catch-up's exits from taking the tokens of the pages still to read (a page finds up to 500
    lifecycles' news) or of the activity read that recovers the fills whose events were lost.
    Also that an execution noted by an early catch-up, whose look-up waits for the reconcile's
    reads, does not deadlock the reconcile's own read of the activities."""
    monkeypatch.setattr(reconciler, "BULK_PAGE", 4)  # 12 orders in 4 pages, each re-reading the last of the one before
    symbols = [SYMBOL if i % 3 == 0 else RESTS for i in range(12)]
    url = sqlite_url(tmp_path)
    with migrated_ledger(url):
        pass
    venue.set_quote(RESTS, "200.10", "200.12", bid_size=1000, ask_size=1000)
    price = {SYMBOL: Decimal("100.00"), RESTS: Decimal("200.00")}  # each 0.10 under its ask
    ids = in_flight(venue, url, [Signal(f"overlap-{i}", symbol, Side.BUY, Decimal(10), price[symbol], price[symbol] - 1)
                                 for i, symbol in enumerate(symbols)])
    filled = [lc_id for lc_id, symbol in zip(ids, symbols) if symbol == SYMBOL]

    async def body() -> None:
        await quote(venue, FILL_QUOTE)  # while no engine runs: the AAPL entries fill, their events lost
        ledger = Ledger(url)
        broker = RecordingBroker(venue.api_key, venue.secret_key, rest_url=venue.rest_url,
                                 stream_url=venue.stream_url, request_timeout=10.0)
        # A page every 0.3 s, no burst: the pacing the early catch-ups hide in.
        executor = Executor(SETTINGS, ledger, broker, limiter=RateLimiter(per_minute=200, burst=1),
                            clock=venue.clock.now)
        broker.watched = (executor, filled[0])
        try:
            await executor.start(stream=False)
            assert executor.reconciler.ahead == len(ids)  # every one caught up while the listing paged
            for lc_id in filled:
                await until(lambda lc_id=lc_id: executor.book.open[lc_id].state is State.EXITS_PLACED,
                            f"lifecycle {lc_id} protected")
        finally:
            await executor.stop()
            ledger.close()
        pages = [i for i, name in enumerate(broker.calls) if name == "list_orders"]
        # Its fill committed (and the guards passed) while later pages were still to be read ...
        assert broker.seen_at_pages[-1] is State.VALIDATED
        # ... and its exits, like every order-making call, only once the pages and the activities are read.
        activities = broker.calls.index("fill_activities_on")
        acts = [i for i, name in enumerate(broker.calls) if name.startswith("submit") or name == "cancel"]
        assert len(acts) == len(filled)
        assert min(acts) > max(pages) and min(acts) > activities
        assert broker.calls.count("fill_activities_on") + broker.calls.count("fill_activities") == 1
        assert "get_order" not in broker.calls  # the listing settled every one
        with migrated_ledger(url) as check:
            with check.engine.connect() as conn:
                assert conn.execute(select(func.count()).select_from(fills)).scalar_one() == len(filled)
        assert max(Counter(o.client_order_id for o in venue.orders()).values()) == 1  # no order twice

    run(body)


# --- which lifecycles may start early ---------------------------------------------------------------

def a_lifecycle(lifecycle_id: int, state: State, *, deadline: datetime | None = None) -> Lifecycle:
    signal = Signal(f"s{lifecycle_id}", SYMBOL, Side.BUY, Decimal(1), Decimal(100), Decimal(99))
    return replace(Lifecycle.opened(signal, mode=Mode.SMART, extended_hours=False, at=NOW, lifecycle_id=lifecycle_id),
                   state=state, entry_deadline=deadline)


def test_a_lifecycle_starts_early_only_once_a_page_settled_every_order_it_waits_on() -> None:
    """Prevents an early catch-up from reading "not at the broker" into an order a later page
    lists: an entry perhaps never acknowledged (PENDING) would be sent again, an exit pair whose
    stop leg is not listed yet would read as protection lost. A fill timeout already past waits
    too: its cancel would take a token before the listing's next page."""
    router = Router()
    later = NOW + timedelta(minutes=5)
    lifecycles = [a_lifecycle(1, State.LIMIT_SUBMITTED, deadline=later),
                  a_lifecycle(2, State.EXITS_PLACED),
                  a_lifecycle(3, State.PENDING),
                  a_lifecycle(4, State.LIMIT_SUBMITTED, deadline=NOW - timedelta(seconds=1)),
                  a_lifecycle(5, State.REJECTED),
                  a_lifecycle(6, State.EMULATED_EXIT),
                  a_lifecycle(7, State.EXITS_PLACED)]  # its stop leg's id not known yet
    for lc in lifecycles:
        router.route(lc.id, Leg.ENTRY, f"en-{lc.id}")
    for lifecycle_id in (2, 7):
        router.route(lifecycle_id, Leg.TAKE_PROFIT, f"tp-{lifecycle_id}")
    router.route(2, Leg.STOP, "sl-2")
    router.route(5, Leg.FLATTEN, "fl-5")
    router.route(6, Leg.EXIT, "ex-6")
    ahead = Ahead(lifecycles, router, NOW)
    assert ahead.settled(["en-3", "en-4", "fl-5", "ex-6", "tp-7", "tp-2"]) == []
    assert ahead.settled(["en-1", "sl-2"]) == [1, 2]
    assert ahead.settled(["en-1", "sl-2", "tp-2"]) == []  # each once


class PagedBroker:
    """Pages of orders as a venue serves them: oldest first, from just after `after`."""

    def __init__(self, stamps: list[datetime]) -> None:
        self.orders = [BrokerOrder(f"o{i}", f"b{i}", SYMBOL, Side.BUY, "limit", "simple", "new", Kind.ACK, False,
                                   Decimal(1), Decimal(0), None, submitted_at=stamp) for i, stamp in enumerate(stamps)]

    def list_orders(self, *, after: datetime, limit: int = 500) -> list[BrokerOrder]:
        return [o for o in self.orders if o.submitted_at is not None and o.submitted_at > after][:limit]


def test_the_orders_at_a_pages_last_instant_are_settled_by_the_page_that_reads_them_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Prevents an early catch-up from acting on an order the next page reads again (the next
    page starts just before the last instant of this one): only that page's version is final."""
    monkeypatch.setattr(reconciler, "BULK_PAGE", 3)
    second = NOW + timedelta(seconds=1)
    broker = PagedBroker([NOW, NOW, second, second, second + timedelta(seconds=1)])
    conductor: Any = type("C", (), {"broker": broker, "workers": Workers(RateLimiter(per_minute=6000), 1)})()
    pages: list[list[str]] = []

    async def body() -> None:
        rec = Reconciler(conductor, None, clock=lambda: NOW, monotonic=lambda: 0.0)  # type: ignore[arg-type]
        found = await rec.listing(NOW - timedelta(minutes=1), on_page=lambda _, settled: pages.append(settled))
        assert found is not None and sorted(found) == ["o0", "o1", "o2", "o3", "o4"]

    asyncio.run(body())
    # o2 and o4 end a full page: each is settled by the next, which reads it again.
    assert pages == [["o0", "o1"], ["o2", "o3"], ["o4"]]


def test_a_held_call_waits_for_its_event_and_other_calls_do_not() -> None:
    """Prevents the hold from reaching the listing itself (its pages would wait for the reads they
    make: a resume that never ends): it is the context of the task that set it, and of the tasks
    that one starts, alone. A held call goes once the event is set."""
    workers = Workers(RateLimiter(per_minute=6000), 1)
    done: list[str] = []

    async def body() -> None:
        reads = asyncio.Event()

        async def held() -> None:
            hold.set(reads)
            await workers.call(Priority.PROTECT, lambda: done.append("held"))

        task = asyncio.ensure_future(held())
        await workers.call(Priority.QUERY, lambda: done.append("page"))
        await asyncio.sleep(0.1)
        assert done == ["page"]
        reads.set()
        await task
        assert done == ["page", "held"]

    asyncio.run(body())
