"""Ledger outage: another session holds the ledger's tables locked (SQLite: an exclusive
transaction; PostgreSQL: LOCK TABLE … ACCESS EXCLUSIVE), so every read and write of the engine
fails. Persist-then-act means nothing that depends on the failed write reaches the broker; the
engine says so plainly, retries, and carries on once the lock is gone."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from harness import FILL_QUOTE, HAPPY_PATH, TARGET_QUOTE, Rig, a_signal, quote, run, until
from sqlalchemy import create_engine, event
from sqlalchemy.engine import make_url

from engine.core.domain import Leg
from engine.core.lifecycle import State
from engine.ledger import Ledger

LEDGER_TABLES = "lifecycles, transitions, chain_head, orders, fills"


def impatient(ledger: Ledger) -> None:
    """Give up waiting for a held lock after 0.25 s (the engine's own settings wait 10 s on
    SQLite and forever on PostgreSQL), so the outage shows up as failures at once."""
    sqlite = ledger.engine.dialect.name == "sqlite"

    @event.listens_for(ledger.engine, "connect")
    def _lock_wait(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=250" if sqlite else "SET lock_timeout = '250ms'")
        cursor.close()
        if not sqlite:
            dbapi_connection.commit()

    ledger.engine.dispose()  # no pooled connection keeps the patient setting


@contextmanager
def locked(ledger: Ledger) -> Iterator[None]:
    """Hold every ledger table from a second session until the block ends."""
    if ledger.engine.dialect.name == "sqlite":
        holder = sqlite3.connect(make_url(ledger.url).database or "", isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    engine = create_engine(ledger.url)
    try:
        with engine.connect() as holder:
            holder.exec_driver_sql(f"LOCK TABLE {LEDGER_TABLES} IN ACCESS EXCLUSIVE MODE")
            try:
                yield
            finally:
                holder.rollback()
    finally:
        engine.dispose()


def order_status(ledger: Ledger, coid: str) -> str | None:
    row = ledger.order(coid)
    return None if row is None else str(row["status"])


def outage_reports(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "smartexec" and "ledger unavailable" in r.getMessage()]


def assert_reported_plainly(caplog: pytest.LogCaptureFixture) -> None:
    reports = outage_reports(caplog)
    assert reports and all(r.levelno == logging.ERROR and r.exc_info is None for r in reports)
    assert "no order will be sent until it is back" in reports[0].getMessage()


def test_a_signal_during_an_outage_sends_nothing_until_the_ledger_is_back(
        rig_on_both: Rig, caplog: pytest.LogCaptureFixture) -> None:
    """Prevents an entry at the broker that the ledger never recorded (persist, then act)."""
    rig = rig_on_both
    impatient(rig.ledger)

    async def body() -> None:
        async with rig.running() as executor:
            with locked(rig.ledger):
                submitting = asyncio.create_task(executor.submit(a_signal("outage")))
                await until(lambda: len(outage_reports(caplog)) >= 2, "the engine to retry the ledger")
                assert rig.venue.received(rig.coid("outage")).attempts == 0
                assert rig.our_orders() == set()
                assert not submitting.done()
            lc = await submitting
            await rig.reach(executor, lc.id, State.LIMIT_SUBMITTED)
            await quote(rig.venue, FILL_QUOTE)
            await rig.reach(executor, lc.id, State.EXITS_PLACED)
            await quote(rig.venue, TARGET_QUOTE)
            await rig.reach(executor, lc.id, State.CLOSED)
        assert rig.path(lc.id) == HAPPY_PATH

    run(body)
    assert_reported_plainly(caplog)
    assert rig.venue.received(rig.coid("outage")).statuses == [200]


def test_a_fill_during_an_outage_is_recorded_once_the_ledger_is_back(
        rig_on_both: Rig, caplog: pytest.LogCaptureFixture) -> None:
    """Prevents a fill event lost to a failed write (the stream will not send it again), and
    exits sent for a fill the ledger does not hold."""
    rig = rig_on_both
    impatient(rig.ledger)
    exits = rig.coid("outage", Leg.TAKE_PROFIT)

    async def body() -> None:
        async with rig.running() as executor:
            lc = await executor.submit(a_signal("outage"))
            await rig.reach(executor, lc.id, State.LIMIT_SUBMITTED)
            # The entry's own `new` event handled: the writes that fail below are the fill's.
            await until(lambda: order_status(rig.ledger, rig.coid("outage")) == "new", "the entry's new event")
            with locked(rig.ledger):
                await quote(rig.venue, FILL_QUOTE)
                await until(lambda: len(outage_reports(caplog)) >= 2, "the engine to retry the ledger")
                assert rig.venue.received(exits).attempts == 0
            await rig.reach(executor, lc.id, State.EXITS_PLACED)
            await quote(rig.venue, TARGET_QUOTE)
            await rig.reach(executor, lc.id, State.CLOSED)
        assert rig.path(lc.id) == HAPPY_PATH
        assert rig.source_of(lc.id, "fill") == "stream"  # the held event itself, not a later look-up

    run(body)
    assert_reported_plainly(caplog)
    assert rig.fills() == rig.executions()
    assert rig.venue.received(exits).statuses == [200]
