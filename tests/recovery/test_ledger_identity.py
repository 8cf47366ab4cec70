"""Ledgers share a broker account without sharing client order ids.

Alpaca keeps client order ids unique per account forever. Every ledger draws a random identity
when it is created (migration 0007) and every id it places carries it: `sx-<ledger>-<signal>-en1`.
So a second ledger on the account (a new database, another machine, a test run) trading the same
signal ids places orders of its own, tells the other ledger's orders from orphans, and an order
found under one of its ids that its intent did not make is never taken for its own.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import LimitOrderRequest
from harness import (
    BACKENDS,
    FILL_QUOTE,
    SYMBOL,
    Rig,
    a_signal,
    database,
    errors,
    migrated_ledger,
    quote,
    rejections,
    resting_venue,
    run,
    sqlite_url,
    until,
)
from sqlalchemy import create_engine, select

from engine.core.domain import Leg, Mode, Side, ledger_prefix
from engine.core.lifecycle import State
from engine.core.orders import OrderIntent, OrderUpdate
from engine.ledger import Ledger, Writes
from engine.ledger import database as db
from engine.ledger.schema import orders
from engine.sim import Venue
from engine.sim.testing import trading_client

TWINS = ["twin-1", "twin-2"]  # the signal ids both ledgers trade
ENTRY_LIMIT = Decimal("100.05")  # the signals' price (harness PRICE) plus the regular buffer


def place_by_hand(venue: Venue, coid: str, *, qty: int, limit: str) -> str:
    """An order straight to the venue through the SDK, as a person (or another engine) would; its id."""
    request = LimitOrderRequest(symbol=SYMBOL, qty=qty, side=OrderSide.BUY, time_in_force=TimeInForce.DAY,
                                limit_price=float(limit), client_order_id=coid)
    return str(trading_client(venue).submit_order(request).id)  # type: ignore[union-attr]


def ledger_position(rig: Rig) -> Decimal:
    """What the ledger says it holds: the fills of its orders, bought minus sold."""
    held = Decimal(0)
    with rig.ledger.engine.connect() as conn:
        sides = dict(conn.execute(select(orders.c.client_order_id, orders.c.side)).all())
    for coid, qty, _ in rig.fills().values():
        held += qty if sides[coid] == "buy" else -qty
    return held


def foreign(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "is another ledger's" in r.getMessage()]


def orphan_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "orphan" in r.getMessage()]


@pytest.fixture
def venue_pair(tmp_path: Path) -> Iterator[tuple[Rig, Rig]]:
    """Two ledgers, one on SQLite and one on PostgreSQL, on the same venue account. Alpaca lets
    only one of them hold the trade_updates stream; this venue lets both, since what is studied
    here is what each ledger records of the other's orders (the stream and the listing show both)."""
    with (resting_venue(stream_connections_per_key=None) as venue, migrated_ledger(sqlite_url(tmp_path)) as first,
          database("postgresql", tmp_path) as url, migrated_ledger(url) as second):
        yield Rig(venue, first), Rig(venue, second)


@pytest.mark.postgres
def test_two_ledgers_on_one_account_trade_the_same_signal_ids_each_with_its_own_orders(
        venue_pair: tuple[Rig, Rig], caplog: pytest.LogCaptureFixture) -> None:
    """Prevents the race two ledgers on one account ran: the second one's entry met "duplicate
    client_order_id", looked the order up and took the first ledger's order, fill and exits as its
    own, so both ledgers claimed the one position. And prevents either ledger recording the
    other's orders (seen on the shared stream and in the reconcile listing) as orphans."""
    first, second = venue_pair
    caplog.set_level(logging.INFO, logger="smartexec")
    assert first.ledger.identity() != second.ledger.identity()
    said: list[int] = []  # how many "another ledger's" lines before the restart

    async def body() -> None:
        async with first.running() as a, second.running(others=1) as b:
            lifecycles = await asyncio.gather(*(engine.submit(a_signal(signal_id))
                                                for engine in (a, b) for signal_id in TWINS))
            for lc, (rig, engine) in zip(lifecycles, [(first, a)] * 2 + [(second, b)] * 2):
                await rig.reach(engine, lc.id, State.LIMIT_SUBMITTED)
            await quote(first.venue, FILL_QUOTE)
            for lc, (rig, engine) in zip(lifecycles, [(first, a)] * 2 + [(second, b)] * 2):
                await rig.reach(engine, lc.id, State.EXITS_PLACED)
        said.append(len(foreign(caplog)))
        # A restart lists every order on the account: the other ledger's are still not orphans.
        async with second.running() as b:
            await b.reconcile(list(b.book.open.values()))

    run(body)
    for rig in (first, second):
        prefix = ledger_prefix(rig.ledger.identity())
        mine = {rig.coid(signal_id, leg) for signal_id in TWINS for leg in (Leg.ENTRY, Leg.TAKE_PROFIT)}
        assert {row["client_order_id"] for row in all_orders(rig.ledger) if row["leg"] != Leg.STOP.value} == mine
        assert all(coid.startswith(prefix) for coid in mine)
        for signal_id in TWINS:
            lc = rig.ledger.find_by_signal(signal_id)
            assert lc is not None and lc.state is State.EXITS_PLACED and lc.filled_qty == 30
            assert rig.venue.received(rig.coid(signal_id)).statuses == [200]  # no duplicate-id answer
        assert rig.ledger.orphans() == []
    assert first.position() == ledger_position(first) + ledger_position(second) == Decimal(120)
    assert orphan_warnings(caplog) == []
    # Each engine says once, at INFO, of each of the other ledger's orders (2 entries, 2 exit
    # pairs) that it is someone else's, however many events and listings show it.
    [before] = said
    lines = foreign(caplog)
    assert before == len(set(lines[:before])) == 2 * 4
    assert sorted(lines[before:]) == sorted(line for line in lines[:before]
                                            if ledger_prefix(first.ledger.identity()) in line.split()[1])
    assert {r.levelno for r in caplog.records if "is another ledger's" in r.getMessage()} == {logging.INFO}
    assert errors(caplog) == []


def all_orders(ledger: Ledger) -> list[dict[str, object]]:
    with ledger.engine.connect() as conn:
        return [dict(row) for row in conn.execute(select(orders)).mappings()]


@pytest.mark.parametrize("canceled", [False, True], ids=["resting", "canceled"])
def test_an_entry_whose_id_is_taken_by_a_different_order_fails_with_the_true_reason(
        rig: Rig, canceled: bool, caplog: pytest.LogCaptureFixture) -> None:
    """Prevents adopting someone else's order found under our id after "duplicate client_order_id"
    (its fills would be booked as this lifecycle's position), and the crash the canceled case
    caused: `IllegalTransition: PENDING -> canceled`, then FAILED "the entry never reached the
    broker", which was untrue."""
    coid = rig.coid("taken")
    placed = place_by_hand(rig.venue, coid, qty=5, limit="99.00")  # below the market: it rests
    if canceled:
        trading_client(rig.venue).cancel_order_by_id(placed)

    async def body() -> None:
        async with rig.running() as executor:
            lc = await executor.submit(a_signal("taken"))
            await rig.reach(executor, lc.id)

    run(body)
    lc = rig.ledger.find_by_signal("taken")
    assert lc is not None and lc.state is State.FAILED
    reason = (f"client order id {coid} is taken at the broker by a different order "
              f"(qty 5, not 30; limit 99, not {ENTRY_LIMIT})")
    assert lc.reject_reason == reason
    assert rig.path(lc) == ["PENDING", "FAILED"]
    assert rejections(caplog.records) == [f"Smart executor rejected taken {reason}"]
    held = rig.venue.order(coid)
    assert held is not None and held.qty == 5 and held.status == ("canceled" if canceled else "new")  # left alone
    assert rig.venue.received(coid).statuses == [200, 422]  # the hand-placed one, then our refused POST
    assert rig.position() == 0
    assert errors(caplog) == []
    assert "IllegalTransition" not in caplog.text


def test_after_a_restart_the_order_holding_a_taken_id_is_still_not_ours(rig: Rig) -> None:
    """Prevents booking a stranger's fill against a refused intent: the refused row is marked
    `id_taken`, so when the engine restarts and the hand-placed order under our id fills, its
    news is an orphan's, never this lifecycle's (no fills row, the row keeps its refusal)."""
    coid = rig.coid("taken")
    place_by_hand(rig.venue, coid, qty=5, limit="99.98")  # rests until the ask comes down

    async def refused() -> None:
        async with rig.running() as executor:
            lc = await executor.submit(a_signal("taken"))
            await rig.reach(executor, lc.id)

    async def restarted() -> None:
        async with rig.running():
            await quote(rig.venue, ("99.90", "99.95"))  # the stranger's order fills while this engine listens
            await until(lambda: any((o["client_order_id"], o["status"]) == (coid, "filled")
                                    for o in rig.ledger.orphans()), "the stranger's fill to be seen as an orphan's")

    run(refused)
    run(restarted)
    lc = rig.ledger.find_by_signal("taken")
    assert lc is not None and lc.state is State.FAILED
    [row] = [o for o in rig.ledger.orders_of(lc.id)]
    assert (row["client_order_id"], row["status"], row["filled_qty"]) == (coid, "id_taken", 0)
    assert rig.fills() == {}
    held = rig.venue.order(coid)
    assert held is not None and held.status == "filled" and held.filled_qty == 5


def test_the_same_order_found_under_the_id_is_ours(rig: Rig) -> None:
    """The look-up after a lost reply finds the order the intent made (same symbol, side, qty,
    type, price, placed after the intent): the lifecycle carries on with it, no second order."""
    rig.venue.faults.lose_response("POST", "/v2/orders")

    async def body() -> None:
        async with rig.running() as executor:
            lc = await executor.submit(a_signal("lost-reply"))
            await rig.reach(executor, lc.id, State.LIMIT_SUBMITTED)

    run(body)
    assert rig.our_orders() == {rig.coid("lost-reply")}
    assert rig.venue.received(rig.coid("lost-reply")).attempts == 1


# --- the migration -------------------------------------------------------------------------------

OLD_ENTRY = "sx-before-identity-en1"  # the format before 0007: no ledger identity


def old_ledger(url: str, venue: Venue | None = None) -> int:
    """A ledger at revision 0005 with one lifecycle whose entry rests at the broker (if `venue`).
    Written by today's Ledger at the head revision (which reads columns 0005 lacks), then taken
    down to 0005: the rows 0005 has stay as they were written."""
    db.upgrade(url)
    ledger = Ledger(url)
    try:
        signal = a_signal("before-identity")
        at = venue.clock.now() if venue is not None else datetime(2024, 6, 12, 14, 0, tzinfo=timezone.utc)
        intent = OrderIntent(OLD_ENTRY, Leg.ENTRY, Side.BUY, "limit", "day", signal.qty, limit_price=ENTRY_LIMIT)
        lc, _ = ledger.open_lifecycle(signal, mode=Mode.SMART,
                                      extended_hours=False, at=at, facts={"limit_price": ENTRY_LIMIT},
                                      writes=Writes(intents=[intent]))
        if venue is not None:
            request = LimitOrderRequest(symbol=SYMBOL, qty=30, side=OrderSide.BUY, time_in_force=TimeInForce.DAY,
                                        limit_price=float(ENTRY_LIMIT), client_order_id=OLD_ENTRY)
            broker_id = str(trading_client(venue).submit_order(request).id)  # type: ignore[union-attr]
            ledger.record(lc, "submitted", {"broker_order_id": broker_id, "status": "new",
                                            "entry_deadline": at.replace(hour=20)}, at=at, source="engine",
                          writes=Writes(updates=[OrderUpdate(OLD_ENTRY, "new", broker_order_id=broker_id)]))
        return lc.id
    finally:
        ledger.close()
        db.downgrade(url, "0005")


def identities(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.exec_driver_sql("SELECT ledger_id FROM ledger_identity").scalars())
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_migration_gives_an_existing_ledger_an_identity_and_keeps_its_orders_ids(
        backend: str, tmp_path: Path) -> None:
    with database(backend, tmp_path) as url:
        lifecycle_id = old_ledger(url)
        db.upgrade(url)
        db.check(url)
        [identity] = identities(url)
        assert re.fullmatch(r"[0-9a-z]{8}", identity)
        ledger = Ledger(url)
        try:
            assert ledger.identity() == identity
            assert [row["client_order_id"] for row in ledger.orders_of(lifecycle_id)] == [OLD_ENTRY]
            assert ledger.replay_differences(lifecycle_id) == []
        finally:
            ledger.close()
        db.downgrade(url, "0005")
        db.upgrade(url)
        assert len(identities(url)) == 1


def test_every_new_ledger_draws_its_own_identity(tmp_path: Path) -> None:
    drawn = set()
    for n in range(3):
        (tmp_path / str(n)).mkdir()
        with migrated_ledger(sqlite_url(tmp_path / str(n))) as ledger:
            drawn.add(ledger.identity())
    assert len(drawn) == 3 and all(re.fullmatch(r"[0-9a-z]{8}", identity) for identity in drawn)


def test_a_lifecycle_in_flight_across_the_upgrade_finishes_under_its_recorded_ids(
        venue: Venue, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Prevents an upgrade from orphaning, resending or losing the orders a ledger placed before
    it had an identity: the `orders` rows are the truth for them."""
    url = sqlite_url(tmp_path)
    lifecycle_id = old_ledger(url, venue)
    with migrated_ledger(url) as ledger:
        rig = Rig(venue, ledger)

        async def body() -> None:
            async with rig.running() as executor:
                await quote(venue, FILL_QUOTE)
                await rig.reach(executor, lifecycle_id, State.EXITS_PLACED)
                await until(lambda: ledger.orphans() == [], "no orphan")

        run(body)
        coids = [row["client_order_id"] for row in ledger.orders_of(lifecycle_id)]
        assert coids[0] == OLD_ENTRY
        assert coids[1] == rig.coid("before-identity", Leg.TAKE_PROFIT)  # what it places now carries the identity
        assert venue.received(OLD_ENTRY).statuses == [200]  # never resent
        assert ledger.orphans() == []
        assert rig.position() == ledger_position(rig) == 30
    assert errors(caplog) == []
