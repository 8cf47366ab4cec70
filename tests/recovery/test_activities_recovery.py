"""Executions whose trade_updates were lost get their fills rows from the account's FILL activities.

REST orders carry only cumulative quantities: without the activity record an execution sent while
the engine was down, or while its socket was dropped or mute, would never get a fills row, and the
ledger's fills would no longer add up to what the broker says was filled. Each reconcile reads
GET /v2/account/activities/FILL when a listed order has filled more than its rows hold; the
activity's id becomes the row's execution id. Every test ends with the books agreeing: one order
per client order id at the venue, the venue's position equal to the ledger's fills (bought minus
sold), and each order's fills adding up to its `filled_qty`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import LimitOrderRequest
from harness import FILL_QUOTE, SYMBOL, Rig, a_signal, errors, quote, run, until
from sqlalchemy import select

from engine.broker.alpaca import AlpacaBroker
from engine.core.domain import ledger_prefix
from engine.core.lifecycle import State
from engine.ledger.schema import orders
from engine.service import activities
from engine.sim import Venue
from engine.sim.testing import trading_client

ACTIVITIES_ROUTE = "/v2/account/activities/FILL"
ENTRY_LIMIT = "100.05"  # the harness signal's limit: a hand-placed order at it fills with ours
UNREADABLE = "could not be read"  # said of the day read and of the paged read alike


# --- what the venue did, what the ledger holds -------------------------------------------------

def activities_of(venue: Venue, client_order_id: str) -> dict[str, tuple[str, Decimal]]:
    """The venue's FILL activities of one order: activity id -> (the stream's execution id, qty)."""
    order = venue.order(client_order_id)
    assert order is not None
    return {a.id: (str(a.execution_id), a.qty) for a in list(venue.exchange.activities.fills)
            if a.order_id == order.id}


def rows_of(rig: Rig, client_order_id: str) -> dict[str, Decimal]:
    """The ledger's fills rows of one order: execution id -> qty."""
    return {eid: qty for eid, (coid, qty, _) in rig.fills().items() if coid == client_order_id}


def assert_one_row_per_execution(rig: Rig, client_order_id: str, *, streamed: int = 0) -> None:
    """Each of the order's executions has exactly one row: under its activity id when it was
    recovered, under the stream's execution id when its event came (the first `streamed` ones)."""
    executions = activities_of(rig.venue, client_order_id)
    rows = rows_of(rig, client_order_id)
    expected = {}
    for n, (activity_id, (stream_id, qty)) in enumerate(executions.items()):
        expected[stream_id if n < streamed else activity_id] = qty
    assert rows == expected


def assert_books_agree(rig: Rig, *, not_ours: Decimal = Decimal(0)) -> None:
    """One order per client order id at the venue; the venue's position is the ledger's fills
    (plus `not_ours`, what orders of no lifecycle of this ledger bought); every order's fills
    add up to its filled_qty."""
    ids = [o.client_order_id for o in rig.venue.orders()]
    assert len(ids) == len(set(ids))
    with rig.ledger.engine.connect() as conn:
        rows = {r.client_order_id: r for r in conn.execute(select(orders.c.client_order_id, orders.c.side,
                                                                  orders.c.filled_qty))}
    held = Decimal(0)
    summed: dict[str, Decimal] = {coid: Decimal(0) for coid in rows}
    for coid, qty, _ in rig.fills().values():
        held += qty if rows[coid].side == "buy" else -qty
        summed[coid] += qty
    assert rig.position() == held + not_ours
    assert summed == {coid: row.filled_qty for coid, row in rows.items()}


# --- moving the market -----------------------------------------------------------------------------

async def executions(rig: Rig, client_order_id: str, *sizes: int) -> None:
    """Let the resting order fill in one execution per size (each waits for the last)."""
    order = rig.venue.order(client_order_id)
    assert order is not None
    filled = order.filled_qty
    for size in sizes:
        await quote(rig.venue, FILL_QUOTE, size=size)
        filled += size
        await until(lambda f=filled: _filled(rig.venue, client_order_id) == f, f"{client_order_id} filled {filled}")


def _filled(venue: Venue, client_order_id: str) -> Decimal:
    order = venue.order(client_order_id)
    return Decimal(-1) if order is None else order.filled_qty


async def placed_while_down(rig: Rig, signal_id: str, *sizes: int, qty: int = 30) -> int:
    """Submit a signal, stop the engine once its entry rests, let it fill in executions of `sizes`
    while no engine runs. Returns the lifecycle id."""
    async with rig.running() as executor:
        lc = await executor.submit(a_signal(signal_id, qty=qty))
        await rig.reach(executor, lc.id, State.LIMIT_SUBMITTED)
    await executions(rig, rig.coid(signal_id), *sizes)
    return lc.id


def place_by_hand(venue: Venue, coid: str, qty: int) -> None:
    """An order straight to the venue through the SDK, as a person or another engine would."""
    request = LimitOrderRequest(symbol=SYMBOL, qty=qty, side=OrderSide.BUY, time_in_force=TimeInForce.DAY,
                                limit_price=float(ENTRY_LIMIT), client_order_id=coid)
    trading_client(venue).submit_order(request)


@pytest.fixture
def activity_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """Every call of the adapter's fill_activities (one REST read each): its arguments."""
    calls: list[dict[str, Any]] = []
    for name in ("fill_activities", "fill_activities_on"):
        real: Callable[..., Any] = getattr(AlpacaBroker, name)

        def counted(self: AlpacaBroker, *, _real: Callable[..., Any] = real, **kwargs: Any) -> Any:
            calls.append(kwargs)
            return _real(self, **kwargs)

        monkeypatch.setattr(AlpacaBroker, name, counted)
    yield calls


# --- the scenarios ---------------------------------------------------------------------------------

def test_partial_executions_made_while_the_engine_was_down_each_get_one_row_on_resume(
        rig_on_both: Rig, caplog: pytest.LogCaptureFixture) -> None:
    """Prevents a resumed ledger whose fills say nothing of an entry that filled, in three
    executions, while no engine ran: the listing alone moves the lifecycle on, but only the
    activities tell each execution."""
    rig = rig_on_both
    caplog.set_level(logging.INFO, logger="smartexec")

    async def body() -> int:
        lifecycle_id = await placed_while_down(rig, "down", 10, 5, 15)
        assert rig.fills() == {}
        async with rig.running() as executor:
            await rig.reach(executor, lifecycle_id, State.EXITS_PLACED)
        return lifecycle_id

    lifecycle_id = run(body)
    coid = rig.coid("down")
    assert_one_row_per_execution(rig, coid)
    assert sorted(rows_of(rig, coid).values()) == [5, 10, 15]
    assert rig.source_of(lifecycle_id, "fill") == "reconcile"
    assert_books_agree(rig)
    assert rig.position() == 30
    assert any("3 fills recovered" in r.getMessage() for r in caplog.records)
    assert errors(caplog) == []


def test_an_execution_seen_on_the_stream_is_not_stored_again_when_the_activities_list_it(
        rig_on_both: Rig, caplog: pytest.LogCaptureFixture) -> None:
    """Prevents a doubled fill (and a ledger position above the broker's) when the reconcile after
    a reconnect reads activities that include an execution the stream had already delivered:
    only the two sent while the socket was down are new."""
    rig = rig_on_both
    caplog.set_level(logging.INFO, logger="smartexec")

    async def body() -> None:
        async with rig.running() as executor:
            lc = await executor.submit(a_signal("gap", qty=30))
            await rig.reach(executor, lc.id, State.LIMIT_SUBMITTED)
            await executions(rig, rig.coid("gap"), 10)
            await rig.reach(executor, lc.id, State.PARTIALLY_FILLED)
            await until(lambda: len(rig.fills()) == 1, "the streamed execution's row")
            # Muted, the venue holds back the reconnect's handshake: both executions happen unheard.
            rig.venue.faults.mute_streams()
            assert rig.venue.faults.drop_streams() == 1
            await executions(rig, rig.coid("gap"), 12, 8)
            rig.venue.faults.unmute_streams()
            await rig.reach(executor, lc.id, State.EXITS_PLACED)

    run(body)
    coid = rig.coid("gap")
    assert_one_row_per_execution(rig, coid, streamed=1)
    assert sorted(rows_of(rig, coid).values()) == [8, 10, 12]
    assert_books_agree(rig)
    assert any("2 fills recovered" in r.getMessage() for r in caplog.records)
    assert errors(caplog) == []


def test_a_recovered_execution_is_not_stored_again_when_its_event_arrives_late(
        rig_on_both: Rig, caplog: pytest.LogCaptureFixture) -> None:
    """Prevents a doubled fill when the poll loop recovers an execution from the activities and
    the stream then delivers its (held back) event: the event's execution id differs from the
    activity's, so only the (order, cum_qty) key can tell it is the same execution."""
    rig = rig_on_both
    caplog.set_level(logging.INFO, logger="smartexec")
    held = 3.0  # real seconds: far past the poll loop's catch-up

    async def body() -> int:
        async with rig.running(poll_interval=0.5) as executor:
            lc = await executor.submit(a_signal("late", qty=30))
            await rig.reach(executor, lc.id, State.LIMIT_SUBMITTED)
            rig.venue.faults.delay_events(held, events="fill")
            await executions(rig, rig.coid("late"), 30)
            await rig.reach(executor, lc.id, State.EXITS_PLACED)
            recovered = rows_of(rig, rig.coid("late"))
            assert list(recovered) == list(activities_of(rig.venue, rig.coid("late")))  # the activity's id
            await asyncio.sleep(held + 1.0)  # the event arrives meanwhile, and is handled
            assert not rig.venue.faults.pending()["events"]
        return lc.id

    lifecycle_id = run(body)
    assert rig.source_of(lifecycle_id, "fill") == "reconcile"
    assert_one_row_per_execution(rig, rig.coid("late"))
    assert_books_agree(rig)
    assert errors(caplog) == []


def test_executions_of_orders_not_this_ledgers_are_not_stored(
        rig_on_both: Rig, caplog: pytest.LogCaptureFixture) -> None:
    """Prevents fills rows for a person's order and for an orphan under this ledger's prefix,
    whose executions sit on the same activity pages as the ledger's own: they have no `orders`
    row here, and their shares are not this ledger's position."""
    rig = rig_on_both
    caplog.set_level(logging.INFO, logger="smartexec")
    by_hand, orphan = "by-hand-1", f"{ledger_prefix(rig.ledger.identity())}ghost-en1"

    async def body() -> None:
        async with rig.running() as executor:
            lc = await executor.submit(a_signal("mine", qty=30))
            await rig.reach(executor, lc.id, State.LIMIT_SUBMITTED)
        await asyncio.to_thread(place_by_hand, rig.venue, by_hand, 5)
        await asyncio.to_thread(place_by_hand, rig.venue, orphan, 7)
        await quote(rig.venue, FILL_QUOTE)  # all three fill
        await until(lambda: all(_filled(rig.venue, c) == q for c, q in
                                ((rig.coid("mine"), 30), (by_hand, 5), (orphan, 7))), "all three filled")
        async with rig.running() as executor:
            await rig.reach(executor, lc.id, State.EXITS_PLACED)

    run(body)
    assert len(activities_of(rig.venue, by_hand)) == len(activities_of(rig.venue, orphan)) == 1
    assert {coid for coid, _, _ in rig.fills().values()} == {rig.coid("mine")}
    assert_one_row_per_execution(rig, rig.coid("mine"))
    assert [o["client_order_id"] for o in rig.ledger.orphans()] == [orphan]
    assert_books_agree(rig, not_ours=Decimal(12))


@pytest.mark.parametrize(("sizes", "reads"), [((10, 10, 10, 10), 2), ((10, 10, 10, 10, 10), 3)],
                         ids=["full-pages", "short-last-page"])
def test_more_than_one_page_of_activities_recovers_every_execution(
        rig: Rig, monkeypatch: pytest.MonkeyPatch, activity_reads: list[dict[str, Any]],
        sizes: tuple[int, ...], reads: int) -> None:
    """The paged reader (what a reconcile uses when the day reads did not find every lost
    execution, e.g. an exit filled weeks after it was placed; here the day reads find nothing).
    Prevents executions beyond the first page being lost (a token not passed on, a full page
    taken for the last), and a read more than needed: once every short order's executions are
    read, the page that would only say "no more" is not asked for."""
    monkeypatch.setattr(activities, "PAGE_SIZE", 2)

    async def no_day_found(*_: Any, **__: Any) -> bool:
        return False

    monkeypatch.setattr(activities, "recover_by_day", no_day_found)

    async def body() -> None:
        lifecycle_id = await placed_while_down(rig, "paged", *sizes, qty=sum(sizes))
        activity_reads.clear()  # the first engine read none: nothing was missing then
        async with rig.running() as executor:
            await rig.reach(executor, lifecycle_id, State.EXITS_PLACED)

    run(body)
    coid = rig.coid("paged")
    assert_one_row_per_execution(rig, coid)
    assert len(rows_of(rig, coid)) == len(sizes)
    assert len(activity_reads) == reads
    tokens = [call.get("page_token") for call in activity_reads]
    assert tokens[0] is None and len(set(tokens)) == reads  # each page after the last one's end
    assert all(call["page_size"] == 2 for call in activity_reads)
    assert_books_agree(rig)


def test_a_day_of_lost_executions_is_recovered_in_one_read(rig: Rig, activity_reads: list[dict[str, Any]]) -> None:
    """Prevents a resume whose reads grow with the executions lost: Alpaca's `date` parameter
    serves a whole day at once (beyond the 100-per-page limit), and the reconcile knows from its
    listing which orders are short, so 150 lost executions cost one read."""

    async def body() -> None:
        lifecycle_id = await placed_while_down(rig, "many", *([2] * 150), qty=300)
        activity_reads.clear()
        async with rig.running() as executor:
            await rig.reach(executor, lifecycle_id, State.EXITS_PLACED)

    run(body)
    coid = rig.coid("many")
    assert_one_row_per_execution(rig, coid)
    assert len(rows_of(rig, coid)) == 150
    assert len(activity_reads) == 1 and set(activity_reads[0]) == {"day"}
    assert_books_agree(rig)


def test_activities_that_cannot_be_read_do_not_stop_the_reconcile_and_are_read_at_the_next(
        rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    """Prevents a failing activities route from holding up a resume (the lifecycles must still be
    caught up and protected) or from losing the executions for good: the reconcile after the
    next reconnect reads them again."""
    caplog.set_level(logging.INFO, logger="smartexec")

    async def body() -> None:
        lifecycle_id = await placed_while_down(rig, "flaky", 10, 20)
        # Every read fails (the resume's and the first connect's reconcile both try) until cleared.
        rig.venue.faults.fail_route("GET", ACTIVITIES_ROUTE, 500, count=None)
        async with rig.running() as executor:
            await rig.reach(executor, lifecycle_id, State.EXITS_PLACED)
            assert any(UNREADABLE in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
            assert rig.fills() == {}
            rig.venue.faults.clear()
            assert rig.venue.faults.drop_streams() == 1  # the SDK reconnects, and the engine reconciles
            await until(lambda: len(rig.fills()) == 2, "both executions recovered after the reconnect")

    run(body)
    assert_one_row_per_execution(rig, rig.coid("flaky"))
    assert_books_agree(rig)
    assert errors(caplog) == []
