"""Group commit (engine/service/group_commit.py): ledger writes waiting for the writer together
commit in one transaction, and each caller still gets what it would have had alone, only after
the commit holding its write."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal as D
from typing import Any, TypeVar

import pytest
from harness import verified
from sqlalchemy import Connection, create_engine, event, select
from sqlalchemy.exc import IntegrityError

from engine.broker.ratelimit import RateLimiter
from engine.core.domain import Leg, Mode, Signal, client_order_id
from engine.core.errors import Deposed, StaleLifecycle
from engine.core.lifecycle import Lifecycle, Outcome, State
from engine.core.risk import ACTIVE_SINCE_EVER, TradingStateChange
from engine.ledger import Ledger, OrderIntent, OrderUpdate, Writes
from engine.ledger.schema import lifecycles
from engine.service.workers import Workers

T = TypeVar("T")
LEDGER_ID = "gr0upc0m"
T0 = datetime(2026, 11, 24, 15, 0, tzinfo=timezone.utc)
N = 6


def a_signal(name: str) -> Signal:
    return Signal.parse({"signal_id": name, "symbol": "CRWD", "side": "buy", "qty": 10, "price": "534.82",
                         "stop": "529.47"})


def entry(signal: Signal) -> OrderIntent:
    return OrderIntent(client_order_id(LEDGER_ID, signal.signal_id, Leg.ENTRY), Leg.ENTRY, signal.side, "limit",
                       "day", signal.qty, limit_price=D("535.09"))


def submitted(signal: Signal, n: int) -> Writes:
    return Writes(updates=[OrderUpdate(client_order_id(LEDGER_ID, signal.signal_id, Leg.ENTRY), "new",
                                       broker_order_id=f"b-{n}")])


@pytest.fixture
def commits(ledger: Ledger) -> Iterator[list[int]]:
    """Every commit the ledger's engine makes (one entry each)."""
    seen: list[int] = []

    def counted(_conn: Any) -> None:
        seen.append(1)

    event.listen(ledger.engine, "commit", counted)
    yield seen
    event.remove(ledger.engine, "commit", counted)


def together(workers: Workers, calls: list[Callable[[], Awaitable[T]]]) -> list[T | BaseException]:
    """Run `calls` while the writer is held, so all of them are waiting when it frees: one drain."""

    async def go() -> list[T | BaseException]:
        gate = threading.Event()
        held = asyncio.ensure_future(workers.db(gate.wait, 10))
        tasks = [asyncio.ensure_future(call()) for call in calls]
        while len(workers.group._waiting) < len(calls) and not any(task.done() for task in tasks):
            await asyncio.sleep(0.001)
        gate.set()
        await held
        return await asyncio.gather(*tasks, return_exceptions=True)

    return asyncio.run(go())


def opened(ledger: Ledger, names: list[str]) -> list[Lifecycle]:
    return [ledger.open_lifecycle(s, mode=Mode.SMART, extended_hours=False, at=T0, writes=Writes(intents=[entry(s)]))[0]
            for s in map(a_signal, names)]


def states(url: str) -> dict[int, tuple[str, int]]:
    """The lifecycles as a second connection sees them: what has been committed."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {row.id: (row.state, row.version)
                    for row in conn.execute(select(lifecycles.c.id, lifecycles.c.state, lifecycles.c.version))}
    finally:
        engine.dispose()


def test_writes_waiting_together_commit_in_one_transaction(ledger: Ledger, commits: list[int]) -> None:
    """The point of group commit: N lifecycles opened and moved at once cost one commit each step, not N."""
    workers = Workers(RateLimiter(), 1)
    signals = [a_signal(f"together-{i}") for i in range(N)]
    try:
        made = together(workers, [lambda s=s: workers.persist(  # type: ignore[misc]
            ledger.open_lifecycle, s, mode=Mode.SMART, extended_hours=False, at=T0, writes=Writes(intents=[entry(s)]))
            for s in signals])
        assert len(commits) == 1 and workers.group.batches == 1
        assert all(created for _, created in made)  # type: ignore[misc]
        lcs = [lc for lc, _ in made]  # type: ignore[misc]
        assert len({lc.id for lc in lcs}) == N
        moved = together(workers, [lambda lc=lc, i=i: workers.persist(  # type: ignore[misc]
            ledger.record, lc, "submitted", {"entry_deadline": T0 + timedelta(seconds=60)}, at=T0, source="engine",
            writes=submitted(signals[i], i)) for i, lc in enumerate(lcs)])
        assert len(commits) == 2 and workers.group.batches == 2
        assert [(lc.state, outcome) for lc, outcome in moved] == [(State.LIMIT_SUBMITTED, Outcome.MOVED)] * N  # type: ignore[misc]
    finally:
        asyncio.run(workers.close(1.0))
    for i, (lc, s) in enumerate(zip(lcs, signals)):
        assert ledger.get(lc.id).state is State.LIMIT_SUBMITTED  # type: ignore[union-attr]
        assert ledger.order(client_order_id(LEDGER_ID, s.signal_id, Leg.ENTRY))["broker_order_id"] == f"b-{i}"  # type: ignore[index]
    # The cached chain heads are right after the batch: a lone write links onto them, and it all verifies.
    ledger.record(ledger.get(lcs[0].id), "fill", {"filled_qty": "10", "filled_avg_price": "535.00"},  # type: ignore[arg-type]
                  at=T0, source="stream")
    result = verified(ledger.url)
    assert result.problems == [] and result.transitions == 2 * N + 1


def test_a_batch_moves_each_chain_head_once_for_all_its_writes(ledger: Ledger) -> None:
    """N writes in one transaction link their transitions and their records with one head move
    each (not one per write), and the chains verify."""
    workers = Workers(RateLimiter(), 1)
    moves: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE CHAIN_HEAD"):
            moves.append(statement)

    event.listen(ledger.engine, "before_cursor_execute", seen)
    try:
        together(workers, [lambda s=s: workers.persist(  # type: ignore[misc]
            ledger.open_lifecycle, s, mode=Mode.SMART, extended_hours=False, at=T0, writes=Writes(intents=[entry(s)]))
            for s in (a_signal(f"heads-{i}") for i in range(N))])
        assert workers.group.batches == 1 and len(moves) == 2
    finally:
        event.remove(ledger.engine, "before_cursor_execute", seen)
        asyncio.run(workers.close(1.0))
    result = verified(ledger.url)
    assert result.problems == [] and result.transitions == N


def test_reads_alone_commit_nothing_and_intake_reads_do_not_wait_for_the_writer(
        ledger: Ledger, commits: list[int]) -> None:
    """A batch of reads ends in a rollback, as a lone read does; a read of committed rows
    (`snapshot_read`: the intake's) is answered while the writer is still busy."""
    workers = Workers(RateLimiter(), 1)
    [lc] = opened(ledger, ["reads-0"])
    before = len(commits)

    async def go() -> tuple[TradingStateChange, bool]:
        gate = threading.Event()
        held = asyncio.ensure_future(workers.db(gate.wait, 10))
        try:
            state = await asyncio.wait_for(workers.persist(ledger.trading_state), 5)
        finally:
            busy = not held.done()
            gate.set()
            await held
        return state, busy

    try:
        state, busy = asyncio.run(go())
        assert busy and state == ACTIVE_SINCE_EVER
        got = together(workers, [lambda: workers.persist(ledger.get, lc.id) for _ in range(N)])
        assert got == [lc] * N and workers.group.batches == 1 and len(commits) == before
    finally:
        asyncio.run(workers.close(1.0))


def test_a_stale_write_in_a_batch_fails_alone_and_the_others_commit(ledger: Ledger, commits: list[int]) -> None:
    """Prevents one lifecycle's optimistic version check from losing (or failing) its neighbours'
    writes: the batch rolls back and each runs alone, getting its own answer."""
    lcs = opened(ledger, [f"stale-{i}" for i in range(N)])
    stale = lcs[2]
    ledger.record(stale, "submitted", {}, at=T0, source="engine")  # someone else moved it
    before = len(commits)
    workers = Workers(RateLimiter(), 1)
    try:
        answers = together(workers, [lambda lc=lc: workers.persist(  # type: ignore[misc]
            ledger.record, lc, "submitted", {}, at=T0, source="engine") for lc in lcs])
    finally:
        asyncio.run(workers.close(1.0))
    assert isinstance(answers[2], StaleLifecycle)
    assert [a[0].state for i, a in enumerate(answers) if i != 2] == [State.LIMIT_SUBMITTED] * (N - 1)  # type: ignore[index]
    assert workers.group.batches == 0 and len(commits) - before == N - 1  # the batch rolled back, each ran alone
    assert {lc_id: state for lc_id, (state, _) in states(ledger.url).items()} == {
        lc.id: "LIMIT_SUBMITTED" for lc in lcs}
    assert ledger.get(stale.id).version == 2  # type: ignore[union-attr]  # written once, by the first writer
    assert verified(ledger.url).problems == []  # the heads were forgotten after the rollback


def test_a_failure_the_write_catches_itself_still_rolls_the_batch_back(ledger: Ledger) -> None:
    """Prevents half of a write from committing with its batch: open_lifecycle catches an
    IntegrityError (a raced intake) and reads the winner; inside a shared transaction it would find
    its own half-written row. Alone it rolls back and raises, so in a batch it must too."""
    [taken] = opened(ledger, ["taken"])
    clash = a_signal("clash")
    # The client order id another lifecycle holds (unique): the INSERT fails after the lifecycle's.
    its_entry = OrderIntent(client_order_id(LEDGER_ID, "taken", Leg.ENTRY), Leg.ENTRY, clash.side, "limit", "day",
                            D(10), limit_price=D("535.09"))
    workers = Workers(RateLimiter(), 1)
    others = [a_signal(f"neighbour-{i}") for i in range(3)]
    try:
        answers = together(workers, [
            lambda s=s: workers.persist(ledger.open_lifecycle, s, mode=Mode.SMART,  # type: ignore[misc]
                                        extended_hours=False, at=T0, writes=Writes(intents=[entry(s)]))
            for s in others[:1]] + [
            lambda: workers.persist(ledger.open_lifecycle, clash, mode=Mode.SMART, extended_hours=False, at=T0,
                                    writes=Writes(intents=[its_entry]))] + [
            lambda s=s: workers.persist(ledger.open_lifecycle, s, mode=Mode.SMART,  # type: ignore[misc]
                                        extended_hours=False, at=T0, writes=Writes(intents=[entry(s)]))
            for s in others[1:]])
    finally:
        asyncio.run(workers.close(1.0))
    assert isinstance(answers[1], IntegrityError)
    assert ledger.find_by_signal("clash") is None
    assert all(ledger.find_by_signal(s.signal_id) is not None for s in others)
    assert taken.id in states(ledger.url)
    assert verified(ledger.url).problems == []


def test_the_same_signal_twice_in_one_batch_opens_one_lifecycle(ledger: Ledger) -> None:
    workers = Workers(RateLimiter(), 1)
    s = a_signal("twice")
    try:
        first, second = together(workers, [lambda: workers.persist(
            ledger.open_lifecycle, s, mode=Mode.SMART, extended_hours=False, at=T0) for _ in range(2)])
    finally:
        asyncio.run(workers.close(1.0))
    assert first[1] is True and second[1] is False and first[0].id == second[0].id  # type: ignore[index]
    assert len(states(ledger.url)) == 1
    assert verified(ledger.url).problems == []


def test_no_await_returns_before_its_commit_is_durable(ledger: Ledger) -> None:
    """Persist, then act: the moment a caller's await returns (and it may call the broker), a second
    connection already sees its write."""
    lcs = opened(ledger, [f"durable-{i}" for i in range(N)])
    workers = Workers(RateLimiter(), 1)
    seen: dict[int, tuple[str, int]] = {}

    def then_read(lc: Lifecycle) -> Callable[[], Awaitable[Lifecycle]]:
        async def call() -> Lifecycle:
            moved, _ = await workers.persist(ledger.record, lc, "submitted", {}, at=T0, source="engine")
            seen[lc.id] = states(ledger.url)[lc.id]  # at once, on the loop, before anything else runs
            return moved
        return call

    try:
        together(workers, [then_read(lc) for lc in lcs])
    finally:
        asyncio.run(workers.close(1.0))
    assert workers.group.batches == 1
    assert seen == {lc.id: ("LIMIT_SUBMITTED", 2) for lc in lcs}


class CountingFence:
    """A lease fence that counts its checks (and can be lost)."""

    def __init__(self) -> None:
        self.checks = 0
        self.lost = False

    def check_in(self, conn: Connection) -> None:
        self.checks += 1
        if self.lost:
            raise Deposed("default", "taken over; nothing was written")


def test_the_fence_is_checked_once_per_batch_and_fences_every_write(ledger: Ledger) -> None:
    lcs = opened(ledger, [f"fenced-{i}" for i in range(N)])
    fence = CountingFence()
    ledger.fence = fence  # type: ignore[assignment]
    workers = Workers(RateLimiter(), 1)
    try:
        together(workers, [lambda lc=lc: workers.persist(  # type: ignore[misc]
            ledger.record, lc, "submitted", {}, at=T0, source="engine") for lc in lcs])
        assert fence.checks == 1
        fence.lost = True
        answers = together(workers, [lambda lc=lc: workers.persist(  # type: ignore[misc]
            ledger.record, ledger.get(lc.id), "fill", {"filled_qty": "10", "filled_avg_price": "535.00"}, at=T0,
            source="stream") for lc in lcs])
    finally:
        asyncio.run(workers.close(1.0))
        ledger.fence = None
    assert all(isinstance(a, Deposed) for a in answers)
    assert {state for state, _ in states(ledger.url).values()} == {"LIMIT_SUBMITTED"}
